// fft_extract — writes the outputs of one chunk of segments: F = the forward FFT of
// conj(X·conj(W)) is N·conj(correlation), so block 2p's outputs are Re F / N and block 2p + 1's
// −Im F / N, at the first B indices of each transform (overlap-save: the rest wrapped around).
// Full position t = j·B + m becomes output t / stride when stride divides t; bias added.
//
// Bindings (group 0):
//   0 params: uniform FftParams (common/fft_params.wgsl)
//   1 src:    array<vec2<f32>>, [segs, O, N], F
//   2 bias:   array<f32>, [O] (zeros when the layer has none)
//   3 output: array<f32>, [batch, O, OL], NCL
// Invocations: one per (s, o, m2), m2 < 2·B (both blocks of the pair); past the end return.
// CPU mirror: fft::extract_segment (src/fft.rs).

@group(0) @binding(1) var<storage, read> src: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(256)
fn fft_extract(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = fft_index(wid, nwg, lid);
    let b = params.step;
    if i >= params.segs * params.out_channels * 2u * b {
        return;
    }
    let m2 = i % (2u * b);
    let rest = i / (2u * b);
    let o = rest % params.out_channels;
    let s = rest / params.out_channels;
    let seg = params.seg0 + s;
    let n = seg / params.pairs;
    let p = seg % params.pairs;
    let part = m2 / b;
    let m = m2 % b;
    let t = (2u * p + part) * b + m;
    if t % params.stride != 0u {
        return;
    }
    let q = t / params.stride;
    if q >= params.out_len {
        return;
    }
    let v = src[(s * params.out_channels + o) * params.n_fft + m];
    let re = select(v.x, -v.y, part == 1u);
    output[(n * params.out_channels + o) * params.out_len + q] = re * params.scale + bias[o];
}
