// encode_pixels — the first pass of the tied per-pixel encoding: the T tied trees' codes
// of every input pixel's channel vector, computed once per pixel (the untied encode computes
// them once per (output position, tap)).
//
// Tree c of group g is codebook c of the tables (tap 0: its levels test channels
// splits[g·CB + c][l].x at offset (0, 0)):
//   i = 0; for l in 0..L { i = 2i + (x[ch_l] > threshold[g][c][l][i]) }   (ties go left, L = DEPTH)
// where x[ch] = input[n, g·C/groups + ch, iy, ix].
//
// WGSL has no includes: the host (gpu::maddness) prepends common/geometry.wgsl and
// common/tied_params.wgsl.
//
// Bindings (group 0):
//   0 params:      uniform TiedParams (common/tied_params.wgsl)
//   1 input:       array<f32>, [N, C, H, W] (conv1d: H = 1)
//   2 splits:      array<vec4<i32>>, [G, CB, L]: (ci, dy, dx, 0) as in encode.wgsl
//   3 thresholds:  array<f32>, [G, CB, L, 2^L]
//   4 pixel_codes: array<u32>, [G, P, TW]: tree c in word c/R, bits B·(c%R)..+B (unused 0;
//                  B = CODE_BITS, R = 32 / B);
//                  pixel (n·H + iy)·W + ix
// Invocations: one per pixel code word, linear index (wid.x + wid.y·num_workgroups.x)·256 +
// local index over G × P × TW (words fastest).
// CPU mirror: maddness::mirror::encode (the expanded codes, after expand_codes).

@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> splits: array<vec4<i32>>;
@group(0) @binding(3) var<storage, read> thresholds: array<f32>;
@group(0) @binding(4) var<storage, read_write> pixel_codes: array<u32>;

@compute @workgroup_size(256)
fn encode_pixels(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + lid;
    let tw = params.tap_words;
    if idx >= params.geo.groups * params.pixels * tw {
        return;
    }
    let w = idx % tw;
    let px = (idx / tw) % params.pixels;
    let g = idx / (tw * params.pixels);
    let plane = params.geo.in_h * params.geo.in_w;
    let n = px / plane;
    let base = (n * params.geo.in_channels + g * params.geo.in_per_group) * plane + px % plane;
    let per = 32u / CODE_BITS;
    let slots = 1u << DEPTH;
    let c_end = min(params.per_tap, per * w + per);
    var word = 0u;
    for (var c = per * w; c < c_end; c++) {
        let gc = g * params.codebooks + c;
        var i = 0u;
        for (var l = 0u; l < DEPTH; l++) {
            let a = input[base + u32(splits[gc * DEPTH + l].x) * plane];
            i = 2u * i + select(0u, 1u, a > thresholds[(gc * DEPTH + l) * slots + i]);
        }
        word |= i << (CODE_BITS * (c % per));
    }
    pixel_codes[idx] = word;
}
