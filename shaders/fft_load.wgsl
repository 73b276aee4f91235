// fft_load — gathers the blocks of one chunk of segments from the input into complex
// transforms: block 2p in the real part, block 2p + 1 in the imaginary part, zeros where a block
// reaches into the padding or past the input.
//
// Bindings (group 0):
//   0 params: uniform FftParams (common/fft_params.wgsl)
//   1 input:  array<f32>, [batch, C, L], NCL
//   2 dst:    array<vec2<f32>>, [segs, C, N] (re, im); segment s of the chunk is global segment
//             seg0 + s = n·pairs + p
// Invocations: one per element of dst, linear index over the folded grid; past the end return.
// CPU mirror: fft::load_segment (src/fft.rs).

@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec2<f32>>;

fn padded(n: u32, c: u32, t: u32) -> f32 {
    if t < params.pad_left {
        return 0.0;
    }
    let i = t - params.pad_left;
    if i >= params.in_len {
        return 0.0;
    }
    return input[(n * params.in_channels + c) * params.in_len + i];
}

@compute @workgroup_size(256)
fn fft_load(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = fft_index(wid, nwg, lid);
    let nf = params.n_fft;
    if i >= params.segs * params.in_channels * nf {
        return;
    }
    let m = i % nf;
    let rest = i / nf;
    let c = rest % params.in_channels;
    let seg = params.seg0 + rest / params.in_channels;
    let n = seg / params.pairs;
    let p = seg % params.pairs;
    let t0 = 2u * p * params.step + m;
    dst[i] = vec2<f32>(padded(n, c, t0), padded(n, c, t0 + params.step));
}
