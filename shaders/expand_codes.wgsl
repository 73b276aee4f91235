// expand_codes — the second pass of the tied per-pixel encoding: the packed codes of every
// output position, exactly as encode.wgsl lays them out, gathered from the pixel codes of
// encode_pixels. Codebook c' = t·T + c of position q is tree c's code of the pixel tap t reads,
// or, where that pixel lies in the padding, tree c's code of a zero vector (walked here from the
// thresholds). The look-up kernels then run unchanged.
//
// WGSL has no includes: the host (gpu::maddness) prepends common/geometry.wgsl and
// common/tied_params.wgsl.
//
// Bindings (group 0):
//   0 params:      uniform TiedParams (common/tied_params.wgsl)
//   1 pixel_codes: array<u32>, [G, P, TW] (encode_pixels.wgsl)
//   2 splits:      array<vec4<i32>>, [G, CB, L]: level 0's (dy, dx) is codebook c''s tap offset
//   3 thresholds:  array<f32>, [G, CB, L, 2^L] (L = DEPTH)
//   4 codes:       array<u32>, [G, Q, W] as in encode.wgsl
// Invocations: one per code word, linear index (wid.x + wid.y·num_workgroups.x)·256 + local
// index over G × Q × W (words fastest).
// CPU mirror: maddness::mirror::encode.

@group(0) @binding(1) var<storage, read> pixel_codes: array<u32>;
@group(0) @binding(2) var<storage, read> splits: array<vec4<i32>>;
@group(0) @binding(3) var<storage, read> thresholds: array<f32>;
@group(0) @binding(4) var<storage, read_write> codes: array<u32>;

@compute @workgroup_size(256)
fn expand_codes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + lid;
    let words = params.words;
    if idx >= params.geo.groups * params.q_len * words {
        return;
    }
    let w = idx % words;
    let q = (idx / words) % params.q_len;
    let g = idx / (words * params.q_len);
    let positions = params.geo.out_h * params.geo.out_w;
    let n = q / positions;
    let p = q % positions;
    let iy0 = i32((p / params.geo.out_w) * params.geo.stride_h) - i32(params.geo.pad_top);
    let ix0 = i32((p % params.geo.out_w) * params.geo.stride_w) - i32(params.geo.pad_left);
    let per = 32u / CODE_BITS;
    let mask = (1u << CODE_BITS) - 1u;
    let slots = 1u << DEPTH;
    let c_end = min(params.codebooks, per * w + per);
    var word = 0u;
    for (var c = per * w; c < c_end; c++) {
        let gc = g * params.codebooks + c;
        let s = splits[gc * DEPTH];
        let iy = iy0 + s.y;
        let ix = ix0 + s.z;
        let tree = c % params.per_tap;
        var k = 0u;
        if iy >= 0 && ix >= 0 && u32(iy) < params.geo.in_h && u32(ix) < params.geo.in_w {
            let px = (n * params.geo.in_h + u32(iy)) * params.geo.in_w + u32(ix);
            let pw = pixel_codes[(g * params.pixels + px) * params.tap_words + tree / per];
            k = (pw >> (CODE_BITS * (tree % per))) & mask;
        } else {
            for (var l = 0u; l < DEPTH; l++) {
                k = 2u * k + select(0u, 1u, 0.0 > thresholds[(gc * DEPTH + l) * slots + k]);
            }
        }
        word |= k << (CODE_BITS * (c % per));
    }
    codes[idx] = word;
}
