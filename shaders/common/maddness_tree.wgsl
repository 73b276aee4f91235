// maddness_tree — the MADDNESS hash (DESIGN.md §3), shared by encode and fused (the host
// prepends it after maddness_params.wgsl). Needs the kernel's `input`, `splits` and
// `thresholds` bindings (see encode.wgsl). CPU mirror: maddness::mirror::encode.

// The code word `w` (codebooks P·w .. P·w + P, CODE_BITS bits each, P = 32 / CODE_BITS) of
// position q in group g: each tree reads the DEPTH window values it tests straight from the NCHW
// input (0 in the padding) and walks its levels, ties going left.
fn code_word(g: u32, q: u32, w: u32) -> u32 {
    let positions = params.geo.out_h * params.geo.out_w;
    let n = q / positions;
    let p = q % positions;
    let iy0 = i32((p / params.geo.out_w) * params.geo.stride_h) - i32(params.geo.pad_top);
    let ix0 = i32((p % params.geo.out_w) * params.geo.stride_w) - i32(params.geo.pad_left);
    let plane = params.geo.in_h * params.geo.in_w;
    let base = (n * params.geo.in_channels + g * params.geo.in_per_group) * plane;
    let per = 32u / CODE_BITS;
    let slots = 1u << DEPTH;
    let c_end = min(params.codebooks, per * w + per);
    var word = 0u;
    for (var c = per * w; c < c_end; c++) {
        let gc = g * params.codebooks + c;
        var i = 0u;
        for (var t = 0u; t < DEPTH; t++) {
            let s = splits[gc * DEPTH + t];
            let iy = iy0 + s.y;
            let ix = ix0 + s.z;
            var a = 0.0;
            if iy >= 0 && ix >= 0 && u32(iy) < params.geo.in_h && u32(ix) < params.geo.in_w {
                a = input[base + u32(s.x) * plane + u32(iy) * params.geo.in_w + u32(ix)];
            }
            i = 2u * i + select(0u, 1u, a > thresholds[(gc * DEPTH + t) * slots + i]);
        }
        word |= i << (CODE_BITS * (c % per));
    }
    return word;
}
