// direct_subgroup — exact f32 convolution (conv1d and conv2d) for adapters with subgroups of at
// least 8 invocations: two output positions (q and q + SPAN) × 8 output channels per invocation,
// in registers. For each window element k, each invocation reads its own two input values
// (straight from the NCHW input, no im2col buffer) and lanes 0..8 of the subgroup read the
// weights of the 8 channels, which subgroupBroadcast hands to every lane, each weight serving
// both positions — no workgroup memory, no barrier, no data-dependent reads besides the input.
// (Two positions per invocation measured 1.2–1.4× faster than one on lavapipe.) On adapters
// whose invocations are SIMD lanes (CPU drivers such as lavapipe) this replaces `direct`'s
// workgroup-memory gathers: DirectKernel::default_for picks it on CPU adapters with subgroups of
// ≥ 8 lanes (2.4–5.3× faster than `direct` on lavapipe); `maddconv bench --direct` times both.
//
// Per group g: Y_g[m, q] = Σ_k Wt_g[k, m] · X_g[k, q], k = (ci·KH + ky)·KW + kx, summed in f32 in
// increasing k. A workgroup computes 2·SPAN positions × 8·(256/SPAN) channels: invocation slot
// s = subgroup_id·subgroup_size + lane (a bijection onto 0..256 in which every subgroup holds
// consecutive slots) takes channel block s / SPAN and positions q = tile start + s % SPAN and
// q + SPAN. SPAN = 256 (the default: 512 positions × 8 channels) suits many positions; 128 and 64
// leave fewer lanes idle when positions are few (silero_L04: 339). The host requires
// subgroup_max_size ≤ SPAN, so that each subgroup's channel block is uniform. A subgroup whose
// positions are all past the end returns at once (its broadcasts serve only itself).
//
// WGSL has no includes: the host (gpu::direct) prepends common/conv_params.wgsl (Params,
// KH, KW).
//
// Bindings (group 0):
//   0 params: uniform Params (common/conv_params.wgsl; n_tiles counts 2·SPAN-position tiles and
//             m_tiles tiles of 8·(256/SPAN) channels)
//   1 input:  array<f32>, [N, C, H, W] (conv1d: H = 1), NCHW
//   2 weight: array<f32>, [groups, K, O8] — transposed on the host, each group's channels
//             zero-padded to O8 = 8·ceil((O/groups)/8)
//   3 bias:   array<f32>, [O] (zeros when the layer has none)
//   4 output: array<f32>, [N, O, OH, OW], NCHW
// Workgroups: linear index wid.x + wid.y·num_workgroups.x over groups × m_tiles × n_tiles
// (position tiles fastest). Needs the `subgroups` feature and subgroups of ≥ 8 invocations.
// CPU mirror: reference::conv_reference (f64; this kernel is exact up to f32 rounding).

override SPAN: u32 = 256u;  // positions per half tile: 256, 128 or 64 (≥ subgroup_max_size)

@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(256)
fn direct_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
    @builtin(subgroup_id) sg_id: u32,
) {
    let tile = wid.x + wid.y * nwg.x;
    if tile >= params.geo.groups * params.m_tiles * params.n_tiles {
        return;
    }
    let n_tile = tile % params.n_tiles;
    let rest = tile / params.n_tiles;
    let slot = sg_id * sg_size + lane;
    let m0 = ((rest % params.m_tiles) * (256u / SPAN) + slot / SPAN) * 8u;
    let g = rest / params.m_tiles;
    let og = params.geo.out_per_group;
    let og8 = (og + 7u) / 8u * 8u;
    let plane = params.geo.in_h * params.geo.in_w;
    let positions = params.geo.out_h * params.geo.out_w;

    let q = n_tile * 2u * SPAN + slot % SPAN;
    let live = q < params.q_len && m0 < og;
    if !subgroupAny(live) {
        return;
    }
    let n = select(0u, q / positions, live);
    let p = select(0u, q % positions, live);
    let iy0 = i32((p / params.geo.out_w) * params.geo.stride_h) - i32(params.geo.pad_top);
    let ix0 = i32((p % params.geo.out_w) * params.geo.stride_w) - i32(params.geo.pad_left);
    let base = (n * params.geo.in_channels + g * params.geo.in_per_group) * plane;
    let qb = q + SPAN;
    let live_b = qb < params.q_len && live;
    let n_b = select(0u, qb / positions, live_b);
    let p_b = select(0u, qb % positions, live_b);
    let iy0_b = i32((p_b / params.geo.out_w) * params.geo.stride_h) - i32(params.geo.pad_top);
    let ix0_b = i32((p_b % params.geo.out_w) * params.geo.stride_w) - i32(params.geo.pad_left);
    let base_b = (n_b * params.geo.in_channels + g * params.geo.in_per_group) * plane;
    // Lane l (mod 8) fetches the weight of channel m0 + l for every k.
    var w_at = g * params.k_len * og8 + m0 + lane % 8u;

    var a0 = 0.0;
    var a1 = 0.0;
    var a2 = 0.0;
    var a3 = 0.0;
    var a4 = 0.0;
    var a5 = 0.0;
    var a6 = 0.0;
    var a7 = 0.0;
    var b0 = 0.0;
    var b1 = 0.0;
    var b2 = 0.0;
    var b3 = 0.0;
    var b4 = 0.0;
    var b5 = 0.0;
    var b6 = 0.0;
    var b7 = 0.0;
    for (var ci = 0u; ci < params.geo.in_per_group; ci++) {
        let c_base = base + ci * plane;
        let c_base_b = base_b + ci * plane;
        for (var ky = 0u; ky < KH; ky++) {
            let dy = i32(ky * params.dilation_h);
            let iy = iy0 + dy;
            let iy_b = iy0_b + dy;
            let row_ok = live && iy >= 0 && u32(iy) < params.geo.in_h;
            let row_ok_b = live_b && iy_b >= 0 && u32(iy_b) < params.geo.in_h;
            let row = c_base + u32(max(iy, 0)) * params.geo.in_w;
            let row_b = c_base_b + u32(max(iy_b, 0)) * params.geo.in_w;
            for (var kx = 0u; kx < KW; kx++) {
                let dx = i32(kx * params.dilation_w);
                let ix = ix0 + dx;
                let ix_b = ix0_b + dx;
                var x = 0.0;
                if row_ok && ix >= 0 && u32(ix) < params.geo.in_w {
                    x = input[row + u32(ix)];
                }
                var y = 0.0;
                if row_ok_b && ix_b >= 0 && u32(ix_b) < params.geo.in_w {
                    y = input[row_b + u32(ix_b)];
                }
                let w = weight[w_at];
                w_at += og8;
                var v = subgroupBroadcast(w, 0u);
                a0 = fma(x, v, a0);
                b0 = fma(y, v, b0);
                v = subgroupBroadcast(w, 1u);
                a1 = fma(x, v, a1);
                b1 = fma(y, v, b1);
                v = subgroupBroadcast(w, 2u);
                a2 = fma(x, v, a2);
                b2 = fma(y, v, b2);
                v = subgroupBroadcast(w, 3u);
                a3 = fma(x, v, a3);
                b3 = fma(y, v, b3);
                v = subgroupBroadcast(w, 4u);
                a4 = fma(x, v, a4);
                b4 = fma(y, v, b4);
                v = subgroupBroadcast(w, 5u);
                a5 = fma(x, v, a5);
                b5 = fma(y, v, b5);
                v = subgroupBroadcast(w, 6u);
                a6 = fma(x, v, a6);
                b6 = fma(y, v, b6);
                v = subgroupBroadcast(w, 7u);
                a7 = fma(x, v, a7);
                b7 = fma(y, v, b7);
            }
        }
    }
    if !live {
        return;
    }
    let acc = array<f32, 8>(a0, a1, a2, a3, a4, a5, a6, a7);
    let acc_b = array<f32, 8>(b0, b1, b2, b3, b4, b5, b6, b7);
    for (var i = 0u; i < 8u; i++) {
        let m = m0 + i;
        if m < og {
            let o = g * og + m;
            output[(n * params.geo.out_channels + o) * positions + p] = acc[i] + bias[o];
            if live_b {
                output[(n_b * params.geo.out_channels + o) * positions + p_b] = acc_b[i] + bias[o];
            }
        }
    }
}
