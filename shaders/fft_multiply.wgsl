// fft_multiply — the frequency-domain product of one chunk of input spectra with the filter
// spectra of a range of output channels, summed over the group's input channels:
//   dst[s, o, k] = Σ_ci conj(X[s, g·C/groups + ci, k]) · W[o, ci, k],   g = o / (O/groups).
// That is conj(X · conj(W)), the conjugated spectrum of the cross-correlation (the layer); the
// host then runs the forward fft_stage passes on it, which computes N·conj(IFFT) of the
// product, and fft_extract conjugates and scales.
//
// Bindings (group 0):
//   0 params: uniform FftParams (common/fft_params.wgsl; o0, o_count name the bound part)
//   1 src:    array<vec2<f32>>, [segs, C, N], the input spectra
//   2 spectra: array<vec2<f32>>, [o_count, C/groups, N/2 + 1], W = FFT of the zero-padded
//             (dilated) filter, half spectrum; W[k] for k > N/2 is conj(W[N − k]) (real filter)
//   3 dst:    array<vec2<f32>>, [segs, O, N]
// Invocations: one per (s, o − o0, k); past the end return.
// CPU mirror: fft::multiply_segment (src/fft.rs).

@group(0) @binding(1) var<storage, read> src: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> spectra: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec2<f32>>;

@compute @workgroup_size(256)
fn fft_multiply(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = fft_index(wid, nwg, lid);
    let nf = params.n_fft;
    if i >= params.segs * params.o_count * nf {
        return;
    }
    let k = i % nf;
    let rest = i / nf;
    let ol = rest % params.o_count;
    let s = rest / params.o_count;
    let o = params.o0 + ol;
    let cg = params.in_per_group;
    let g = o / params.out_per_group;
    let half = nf / 2u + 1u;
    let upper = k > nf / 2u;
    let kk = select(k, nf - k, upper);
    let flip = select(1.0, -1.0, upper);
    var acc = vec2<f32>(0.0);
    for (var ci = 0u; ci < cg; ci++) {
        let x = src[(s * params.in_channels + g * cg + ci) * nf + k];
        var w = spectra[(ol * cg + ci) * half + kk];
        w.y *= flip;
        // conj(x)·w
        acc += vec2<f32>(x.x * w.x + x.y * w.y, x.x * w.y - x.y * w.x);
    }
    dst[(s * params.out_channels + o) * nf + k] = acc;
}
