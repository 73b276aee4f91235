// direct — exact f32 convolution (conv1d and conv2d), an implicit GEMM tiled through workgroup
// memory. No im2col buffer: window elements are gathered straight from the NCHW input.
//
// Per group g the layer is the product  Y_g[m, q] = Σ_k Wt_g[k, m] · X_g[k, q]  with
//   m ∈ 0..O/groups (output channel in the group), q ∈ 0..N·OH·OW (sample and output position),
//   k ∈ 0..K, K = (C/groups)·KH·KW, k = (ci·KH + ky)·KW + kx (the weight's own flattening).
// A workgroup computes a BM × BN tile of Y_g (BM = 4·WG_M, BN = 4·WG_N, WG_M·WG_N = 256), each
// invocation 4 × 4 outputs spaced WG_M apart in m and WG_N apart in q (conflict-free reads of
// the tiles). The reduction walks K in steps of BK: a BK × BM slice of Wt and a BK × BN slice of
// X are staged in workgroup memory. Sums are in f32, in increasing k.
//
// Bindings (group 0):
//   0 params: uniform Params
//   1 input:  array<f32>, [N, C, H, W] (conv1d: H = 1), NCHW
//   2 weight: array<f32>, [groups, K, O/groups] — the OIHW weight transposed on the host so that
//             output channels are contiguous
//   3 bias:   array<f32>, [O] (zeros when the layer has none)
//   4 output: array<f32>, [N, O, OH, OW], NCHW
// Workgroups: linear index wid.x + wid.y·num_workgroups.x over groups × m_tiles × n_tiles
// (q tiles fastest); indices past the total return at once.
// CPU mirror: reference::conv_reference (f64; this kernel is exact up to f32 rounding).

override KH: u32 = 1u;     // kernel height
override KW: u32 = 1u;     // kernel width
override WG_M: u32 = 16u;  // invocations along m; WG_N = 256 / WG_M
override BK: u32 = 16u;    // reduction slice; BK·BM ≤ 1024 and BK·BN ≤ 2048

const WG: u32 = 256u;
const TM: u32 = 4u;
const TN: u32 = 4u;

struct Params {
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
    dilation_h: u32,
    dilation_w: u32,
    pad_top: u32,
    pad_left: u32,
    in_per_group: u32,
    out_per_group: u32,
    k_len: u32,        // K
    q_len: u32,        // N·OH·OW
    m_tiles: u32,      // ceil(O/groups / BM)
    n_tiles: u32,      // ceil(q_len / BN)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

var<workgroup> w_tile: array<f32, 1024>;  // [BK, BM]
var<workgroup> x_tile: array<f32, 2048>;  // [BK, BN]

@compute @workgroup_size(256)
fn direct(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let WG_N = WG / WG_M;
    let BM = WG_M * TM;
    let BN = WG_N * TN;
    let tile = wid.x + wid.y * nwg.x;
    if tile >= params.groups * params.m_tiles * params.n_tiles {
        return;
    }
    let n_tile = tile % params.n_tiles;
    let rest = tile / params.n_tiles;
    let m_tile = rest % params.m_tiles;
    let g = rest / params.m_tiles;
    let m0 = m_tile * BM;
    let q0 = n_tile * BN;
    let og = params.out_per_group;
    let kk_len = KH * KW;
    let plane = params.in_h * params.in_w;
    let positions = params.out_h * params.out_w;

    // The input position this invocation stages: its column of x_tile is fixed (256 % BN == 0).
    let x_col = lid % BN;
    let x_row0 = lid / BN;
    let x_rows_step = WG / BN;
    let q_load = q0 + x_col;
    let q_ok = q_load < params.q_len;
    let qn = select(0u, q_load / positions, q_ok);
    let qp = select(0u, q_load % positions, q_ok);
    let oy = qp / params.out_w;
    let ox = qp % params.out_w;
    let iy0 = i32(oy * params.stride_h) - i32(params.pad_top);
    let ix0 = i32(ox * params.stride_w) - i32(params.pad_left);
    let in_base = (qn * params.in_channels + g * params.in_per_group) * plane;

    let tm = lid / WG_N;
    let tn = lid % WG_N;
    var acc: array<array<f32, 4>, 4>;
    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
            acc[i][j] = 0.0;
        }
    }

    let w_base = g * params.k_len * og;
    for (var k0 = 0u; k0 < params.k_len; k0 += BK) {
        // Stage Wt[k0 .. k0+BK, m0 .. m0+BM] (contiguous along m).
        for (var e = lid; e < BK * BM; e += WG) {
            let kk = e / BM;
            let mm = e % BM;
            let k = k0 + kk;
            let m = m0 + mm;
            var v = 0.0;
            if k < params.k_len && m < og {
                v = weight[w_base + k * og + m];
            }
            w_tile[e] = v;
        }
        // Stage X[k0 .. k0+BK, q0 .. q0+BN], gathering window elements from the input.
        for (var r = x_row0; r < BK; r += x_rows_step) {
            let k = k0 + r;
            var v = 0.0;
            if k < params.k_len && q_ok {
                let ci = k / kk_len;
                let kr = k % kk_len;
                let ky = kr / KW;
                let kx = kr % KW;
                let iy = iy0 + i32(ky * params.dilation_h);
                let ix = ix0 + i32(kx * params.dilation_w);
                if iy >= 0 && ix >= 0 && u32(iy) < params.in_h && u32(ix) < params.in_w {
                    v = input[in_base + ci * plane + u32(iy) * params.in_w + u32(ix)];
                }
            }
            x_tile[r * BN + x_col] = v;
        }
        workgroupBarrier();
        // Past K both tiles hold zeros, so the slice is always summed whole (fixed trip count).
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < TM; i++) {
                a[i] = w_tile[kk * BM + tm + i * WG_M];
            }
            for (var j = 0u; j < TN; j++) {
                b[j] = x_tile[kk * BN + tn + j * WG_N];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i][j] = fma(a[i], b[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < TM; i++) {
        let m = m0 + tm + i * WG_M;
        if m >= og {
            continue;
        }
        let o = g * og + m;
        let bv = bias[o];
        for (var j = 0u; j < TN; j++) {
            let q = q0 + tn + j * WG_N;
            if q < params.q_len {
                let n = q / positions;
                let p = q % positions;
                output[(n * params.out_channels + o) * positions + p] = acc[i][j] + bv;
            }
        }
    }
}
