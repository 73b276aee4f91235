// direct — exact f32 convolution (conv1d and conv2d), an implicit GEMM tiled through workgroup
// memory. No im2col buffer: window elements are gathered straight from the NCHW input.
//
// Per group g the layer is the product  Y_g[m, q] = Σ_k Wt_g[k, m] · X_g[k, q]  with
//   m ∈ 0..O/groups (output channel in the group), q ∈ 0..N·OH·OW (sample and output position),
//   k ∈ 0..K, K = (C/groups)·KH·KW, k = (ci·KH + ky)·KW + kx (the weight's own flattening).
// A workgroup of 256 invocations, arranged WG_M × WG_N, computes a BM × BN tile of Y_g
// (BM = 4·WG_M, BN = 4·WG_N); each invocation 4 consecutive channels × 4 consecutive positions,
// held in four vec4 accumulators. The reduction walks K in slices of BK: a BK × BM slice of Wt
// and a BK × BN slice of X are staged in workgroup memory as vec4s, so the inner step is two
// vec4 loads and four vec4 multiply-adds. Sums are in f32, in increasing k.
//
// WGSL has no includes: the host (gpu::direct) prepends common/conv_params.wgsl (Params,
// KH, KW).
//
// Bindings (group 0):
//   0 params: uniform Params (common/conv_params.wgsl; m_tiles = ceil(O/groups / BM),
//             n_tiles = ceil(q_len / BN))
//   1 input:  array<f32>, [N, C, H, W] (conv1d: H = 1), NCHW
//   2 weight: array<vec4<f32>>, [groups, K, O4/4] — the OIHW weight transposed on the host so
//             that output channels are contiguous, each group's channels zero-padded to
//             O4 = 4·ceil((O/groups)/4)
//   3 bias:   array<f32>, [O] (zeros when the layer has none)
//   4 output: array<f32>, [N, O, OH, OW], NCHW
// Workgroups: linear index wid.x + wid.y·num_workgroups.x over groups × m_tiles × n_tiles
// (q tiles fastest); indices past the total return at once.
// CPU mirror: reference::conv_reference (f64; this kernel is exact up to f32 rounding).

override WG_M: u32 = 16u;  // invocations along m (4, 8 or 16); WG_N = 256 / WG_M
override BK: u32 = 16u;    // reduction slice; BK·WG_M ≤ 256 and BK·WG_N ≤ 512

const WG: u32 = 256u;

@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

var<workgroup> w_tile: array<vec4<f32>, 256>;  // [BK, WG_M] vec4 = [BK, BM] floats
var<workgroup> x_tile: array<vec4<f32>, 512>;  // [BK, WG_N] vec4 = [BK, BN] floats

@compute @workgroup_size(256)
fn direct(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let WG_N = WG / WG_M;
    let tile = wid.x + wid.y * nwg.x;
    if tile >= params.geo.groups * params.m_tiles * params.n_tiles {
        return;
    }
    let n_tile = tile % params.n_tiles;
    let rest = tile / params.n_tiles;
    let m_tile = rest % params.m_tiles;
    let g = rest / params.m_tiles;
    let og = params.geo.out_per_group;
    let og4 = (og + 3u) / 4u;           // vec4 columns of the weight per k
    let m4_0 = m_tile * WG_M;           // first vec4 column of this tile
    let q0 = n_tile * 4u * WG_N;
    let kk_len = KH * KW;
    let plane = params.geo.in_h * params.geo.in_w;
    let positions = params.geo.out_h * params.geo.out_w;

    // Staging of X: this invocation fills vec4 column `xc` (positions q0 + 4·xc .. +4) of rows
    // xr0, xr0 + 256/WG_N, ...; the four positions are decoded once.
    let xc = lid % WG_N;
    let xr0 = lid / WG_N;
    let xr_step = WG / WG_N;
    var iy0: vec4<i32>;
    var ix0: vec4<i32>;
    var base: vec4<u32>;
    var valid: vec4<bool>;
    for (var j = 0u; j < 4u; j++) {
        let q = q0 + 4u * xc + j;
        let ok = q < params.q_len;
        let n = select(0u, q / positions, ok);
        let p = select(0u, q % positions, ok);
        iy0[j] = i32((p / params.geo.out_w) * params.geo.stride_h) - i32(params.geo.pad_top);
        ix0[j] = i32((p % params.geo.out_w) * params.geo.stride_w) - i32(params.geo.pad_left);
        base[j] = (n * params.geo.in_channels + g * params.geo.in_per_group) * plane;
        valid[j] = ok;
    }
    // Staging of Wt: vec4 column `wc` of rows wr0, wr0 + 256/WG_M, ...
    let wc = lid % WG_M;
    let wr0 = lid / WG_M;
    let wr_step = WG / WG_M;
    let w_col = m4_0 + wc;
    let w_base = g * params.k_len * og4;

    let tm = lid / WG_N;
    let tn = lid % WG_N;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < params.k_len; k0 += BK) {
        for (var r = wr0; r < BK; r += wr_step) {
            let k = k0 + r;
            var v = vec4<f32>(0.0);
            if k < params.k_len && w_col < og4 {
                v = weight[w_base + k * og4 + w_col];
            }
            w_tile[r * WG_M + wc] = v;
        }
        for (var r = xr0; r < BK; r += xr_step) {
            let k = k0 + r;
            var v = vec4<f32>(0.0);
            if k < params.k_len {
                let ci = k / kk_len;
                let kr = k % kk_len;
                let dy = i32((kr / KW) * params.dilation_h);
                let dx = i32((kr % KW) * params.dilation_w);
                let off = ci * plane;
                for (var j = 0u; j < 4u; j++) {
                    let iy = iy0[j] + dy;
                    let ix = ix0[j] + dx;
                    if valid[j] && iy >= 0 && ix >= 0 && u32(iy) < params.geo.in_h && u32(ix) < params.geo.in_w {
                        v[j] = input[base[j] + off + u32(iy) * params.geo.in_w + u32(ix)];
                    }
                }
            }
            x_tile[r * WG_N + xc] = v;
        }
        workgroupBarrier();
        // Past K both tiles hold zeros, so the slice is always summed whole (fixed trip count).
        for (var kk = 0u; kk < BK; kk++) {
            let a = w_tile[kk * WG_M + tm];
            let b = x_tile[kk * WG_N + tn];
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            acc1 = fma(vec4<f32>(a.y), b, acc1);
            acc2 = fma(vec4<f32>(a.z), b, acc2);
            acc3 = fma(vec4<f32>(a.w), b, acc3);
        }
        workgroupBarrier();
    }

    let m_first = 4u * (m4_0 + tm);
    let q_first = q0 + 4u * tn;
    for (var i = 0u; i < 4u; i++) {
        let m = m_first + i;
        if m >= og {
            break;
        }
        var row = acc0;
        if i == 1u { row = acc1; }
        if i == 2u { row = acc2; }
        if i == 3u { row = acc3; }
        let o = g * og + m;
        let bv = bias[o];
        for (var j = 0u; j < 4u; j++) {
            let q = q_first + j;
            if q < params.q_len {
                let n = q / positions;
                let p = q % positions;
                output[(n * params.geo.out_channels + o) * positions + p] = row[j] + bv;
            }
        }
    }
}
