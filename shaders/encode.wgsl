// encode — MADDNESS hashing: one 4-bit code per (output position, codebook), read straight
// from the NCHW input through stride / padding / dilation index arithmetic (no im2col buffer).
//
// Codebook c of group g is a depth-4 tree; level t tests window dimension d_t, whose position
// in the window was decoded on the host into (ci, ky·dilation_h, kx·dilation_w):
//   i = 0; for t in 0..4 { i = 2i + (a[d_t] > threshold[g][c][t][i]) }   (ties go left)
// where a[d] = input[n, g·C/groups + ci, oy·stride_h − pad_top + dy, ox·stride_w − pad_left + dx],
// or 0 where that falls into the padding.
//
// Bindings (group 0):
//   0 params:     uniform MaddParams
//   1 input:      array<f32>, [N, C, H, W] (conv1d: H = 1), NCHW
//   2 splits:     array<vec4<i32>>, [G, CB, 4]: (ci, dy, dx, 0) of the dimension each level tests
//   3 thresholds: array<f32>, [G, CB, 4, 16]: level t uses slots 0..2^t
//   4 codes:      array<u32>, [G, Q, W]: W = ceil(CB/8) words per position, codebook c in word
//                 c/8, bits 4·(c%8)..+4 (unused nibbles 0); Q = N·OH·OW, q = (n·OH + oy)·OW + ox
// Invocations: one per code word, linear index (wid.x + wid.y·num_workgroups.x)·256 + local
// index over G × Q × W (words fastest).
// CPU mirror: maddness::mirror::encode.

struct MaddParams {
    batch: u32,
    in_channels: u32,
    in_h: u32,
    in_w: u32,
    out_channels: u32,
    out_h: u32,
    out_w: u32,
    groups: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    in_per_group: u32,
    out_per_group: u32,
    codebooks: u32,     // CB, per group
    words: u32,         // W = ceil(CB/8)
    q_len: u32,         // Q = N·OH·OW
    m_chunks: u32,      // MW = ceil((O/groups)/16): 16-output chunks of a table row
    q_tiles: u32,       // accumulate: position tiles
    m_tiles: u32,       // accumulate: chunk tiles
}

@group(0) @binding(0) var<uniform> params: MaddParams;
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
    if idx >= params.groups * params.q_len * words {
        return;
    }
    let w = idx % words;
    let q = (idx / words) % params.q_len;
    let g = idx / (words * params.q_len);
    let positions = params.out_h * params.out_w;
    let n = q / positions;
    let p = q % positions;
    let iy0 = i32((p / params.out_w) * params.stride_h) - i32(params.pad_top);
    let ix0 = i32((p % params.out_w) * params.stride_w) - i32(params.pad_left);
    let plane = params.in_h * params.in_w;
    let base = (n * params.in_channels + g * params.in_per_group) * plane;
    let c_end = min(params.codebooks, 8u * w + 8u);
    var word = 0u;
    for (var c = 8u * w; c < c_end; c++) {
        let gc = g * params.codebooks + c;
        var i = 0u;
        for (var t = 0u; t < 4u; t++) {
            let s = splits[gc * 4u + t];
            let iy = iy0 + s.y;
            let ix = ix0 + s.z;
            var a = 0.0;
            if iy >= 0 && ix >= 0 && u32(iy) < params.in_h && u32(ix) < params.in_w {
                a = input[base + u32(s.x) * plane + u32(iy) * params.in_w + u32(ix)];
            }
            i = 2u * i + select(0u, 1u, a > thresholds[(gc * 4u + t) * 16u + i]);
        }
        word |= i << (4u * (c % 8u));
    }
    codes[idx] = word;
}
