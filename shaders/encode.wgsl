// encode — MADDNESS hashing: one code per (output position, codebook), read straight from the
// NCHW input through stride / padding / dilation index arithmetic (no im2col buffer).
//
// Codebook c of group g is a tree of depth L = DEPTH (4..=8, K = 2^L buckets); level t tests
// window dimension d_t, whose position in the window was decoded on the host into
// (ci, ky·dilation_h, kx·dilation_w):
//   i = 0; for t in 0..L { i = 2i + (a[d_t] > threshold[g][c][t][i]) }   (ties go left)
// where a[d] = input[n, g·C/groups + ci, oy·stride_h − pad_top + dy, ox·stride_w − pad_left + dx],
// or 0 where that falls into the padding.
//
// WGSL has no includes: the host (gpu::maddness) prepends common/maddness_params.wgsl
// and common/maddness_tree.wgsl.
//
// Bindings (group 0):
//   0 params:    uniform MaddParams (common/maddness_params.wgsl)
//   1 input:      array<f32>, [N, C, H, W] (conv1d: H = 1), NCHW
//   2 splits:     array<vec4<i32>>, [G, CB, L]: (ci, dy, dx, 0) of the dimension each level tests
//   3 thresholds: array<f32>, [G, CB, L, K]: level t uses slots 0..2^t
//   4 codes:      array<u32>, [G, Q, W]: B = CODE_BITS bits per code, P = 32 / B codes per word,
//                 W = ceil(CB/P) words per position, codebook c in word c/P, bits B·(c%P)..+B
//                 (unused bits 0); Q = N·OH·OW, q = (n·OH + oy)·OW + ox
// Invocations: one per code word, linear index (wid.x + wid.y·num_workgroups.x)·256 + local
// index over G × Q × W (words fastest).
// CPU mirror: maddness::mirror::encode.

@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> splits: array<vec4<i32>>;
@group(0) @binding(3) var<storage, read> thresholds: array<f32>;
@group(0) @binding(4) var<storage, read_write> codes: array<u32>;

@compute @workgroup_size(256)
fn encode(
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
    codes[idx] = code_word(g, q, w);
}
