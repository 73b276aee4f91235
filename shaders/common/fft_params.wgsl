// fft_params — the uniform parameters of the FFT overlap-save kernels (fft_load, fft_stage,
// fft_multiply, fft_extract). WGSL has no includes: the host (gpu::fft) prepends this file.
// Mirrors gpu::fft::FftParams field by field (tests check name, offset and type of every field).
//
// Terms: N = n_fft, the transform size (a power of two); Kd = dilation·(K − 1) + 1, the dilated
// filter length; B = step = N − Kd + 1, the outputs one block yields. Block j of sample n covers
// positions j·B .. j·B + N of the zero-padded input; blocks 2p and 2p + 1 travel together as the
// real and imaginary parts of one complex transform, segment s = n·pairs + p.

struct FftParams {
    n_fft: u32,          // N
    ns: u32,             // fft_stage: length of the sub-transforms already done (1, R, R², ...)
    transforms: u32,     // fft_stage: transforms of length N in the buffer
    step: u32,           // B
    in_len: u32,         // L
    in_channels: u32,    // C
    pad_left: u32,       // zeros before the input
    pairs: u32,          // block pairs per sample
    seg0: u32,           // first segment of this chunk
    segs: u32,           // segments in this chunk
    in_per_group: u32,   // C / groups
    out_channels: u32,   // O
    out_per_group: u32,  // O / groups
    o0: u32,             // fft_multiply: first output channel of the bound filter part
    o_count: u32,        // fft_multiply: output channels of the bound filter part
    out_len: u32,        // OL
    stride: u32,         // output stride (outputs are every stride-th full position)
    batch: u32,          // samples
    scale: f32,          // 1 / N
}

@group(0) @binding(0) var<uniform> params: FftParams;

// Complex product of (re, im) pairs.
fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

// The linear invocation index over a folded grid of 256-invocation workgroups.
fn fft_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid;
}
