// direct_naive — exact f32 convolution, one output per invocation, reading input and weight
// straight from global memory. Kept only as the benchmarks' "untiled" row, to show what the
// tiling of `direct` gains; `direct` is the baseline every speedup is quoted against.
//
// WGSL has no includes: the host (gpu::direct) prepends common/conv_params.wgsl (Params,
// KH, KW).
//
// Bindings (group 0):
//   0 params: uniform Params (common/conv_params.wgsl; the tile counts are unused)
//   1 input:  array<f32>, [N, C, H, W] (conv1d: H = 1), NCHW
//   2 weight: array<f32>, [O, C/groups, KH, KW], OIHW as given by the user
//   3 bias:   array<f32>, [O] (zeros when the layer has none)
//   4 output: array<f32>, [N, O, OH, OW], NCHW
// Invocations: linear index (wid.x + wid.y·num_workgroups.x)·256 + local index over N·O·OH·OW.
// CPU mirror: reference::conv_reference.

@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(256)
fn direct_naive(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + lid;
    let positions = params.geo.out_h * params.geo.out_w;
    if idx >= params.q_len * params.geo.out_channels {
        return;
    }
    let p = idx % positions;
    let o = (idx / positions) % params.geo.out_channels;
    let n = idx / (positions * params.geo.out_channels);
    let oy = p / params.geo.out_w;
    let ox = p % params.geo.out_w;
    let g = o / params.geo.out_per_group;
    let plane = params.geo.in_h * params.geo.in_w;
    var acc = 0.0;
    for (var ci = 0u; ci < params.geo.in_per_group; ci++) {
        let c = g * params.geo.in_per_group + ci;
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(oy * params.geo.stride_h + ky * params.dilation_h) - i32(params.geo.pad_top);
            if iy < 0 || u32(iy) >= params.geo.in_h {
                continue;
            }
            for (var kx = 0u; kx < KW; kx++) {
                let ix = i32(ox * params.geo.stride_w + kx * params.dilation_w) - i32(params.geo.pad_left);
                if ix < 0 || u32(ix) >= params.geo.in_w {
                    continue;
                }
                let xv = input[(n * params.geo.in_channels + c) * plane + u32(iy) * params.geo.in_w + u32(ix)];
                let wv = weight[((o * params.geo.in_per_group + ci) * KH + ky) * KW + kx];
                acc = fma(xv, wv, acc);
            }
        }
    }
    output[idx] = acc + bias[o];
}
