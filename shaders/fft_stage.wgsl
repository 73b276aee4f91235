// fft_stage — one pass of a Stockham autosort FFT (forward, e^{-2πi·jk/N}) over many transforms
// of length N at once, radix RADIX (4, or 2 for the last pass when log2 N is odd). Pass after
// pass the host swaps src and dst; after log_R passes dst holds the spectra in natural order.
// With ns the sub-transform length done so far, invocation j of a transform takes the RADIX
// inputs j + r·N/RADIX, twiddles them by w^(r·(j mod ns)) with w = e^{-2πi/(ns·RADIX)}, does a
// RADIX-point DFT and writes output r to (j / ns)·ns·RADIX + (j mod ns) + r·ns.
//
// Bindings (group 0):
//   0 params:  uniform FftParams (common/fft_params.wgsl; n_fft, ns, transforms)
//   1 src:     array<vec2<f32>>, [transforms, N] (re, im)
//   2 twiddle: array<vec2<f32>>, [N], twiddle[t] = e^{-2πi t/N}, computed in f64 on the host
//   3 dst:     array<vec2<f32>>, [transforms, N]
// Invocations: one per (transform, j), j < N/RADIX; past the end return.
// CPU mirror: rustfft's forward transform in fft::fft_conv1d_cpu (src/fft.rs); the GPU result
// is checked against the f64 reference, not bit for bit.

override RADIX: u32 = 4u;

@group(0) @binding(1) var<storage, read> src: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> twiddle: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec2<f32>>;

@compute @workgroup_size(256)
fn fft_stage(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = fft_index(wid, nwg, lid);
    let nf = params.n_fft;
    let quarter = nf / RADIX;
    if i >= params.transforms * quarter {
        return;
    }
    let j = i % quarter;
    let base = (i / quarter) * nf;
    let ns = params.ns;
    let k = j % ns;
    let tw = nf / (ns * RADIX);  // twiddle index of w^1 in the table
    let out0 = base + (j / ns) * ns * RADIX + k;
    if RADIX == 4u {
        let v0 = src[base + j];
        let v1 = cmul(src[base + j + quarter], twiddle[k * tw]);
        let v2 = cmul(src[base + j + 2u * quarter], twiddle[2u * k * tw]);
        let v3 = cmul(src[base + j + 3u * quarter], twiddle[3u * k * tw]);
        let a0 = v0 + v2;
        let a1 = v0 - v2;
        let a2 = v1 + v3;
        let d = v1 - v3;
        let a3 = vec2<f32>(d.y, -d.x);  // −i·(v1 − v3)
        dst[out0] = a0 + a2;
        dst[out0 + ns] = a1 + a3;
        dst[out0 + 2u * ns] = a0 - a2;
        dst[out0 + 3u * ns] = a1 - a3;
    } else {
        let v0 = src[base + j];
        let v1 = cmul(src[base + j + quarter], twiddle[k * tw]);
        dst[out0] = v0 + v1;
        dst[out0 + ns] = v0 - v1;
    }
}
