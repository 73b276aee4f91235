//! The exact CPU convolution, accumulating in f64: the oracle every other path is tested against.
//!
//! Deliberately plain nested loops with their own index arithmetic (it does not share the
//! kernels' [`Geometry::input_offset`](crate::spec::Geometry::input_offset)), parallel over
//! (sample, output channel) only. It is itself checked against outputs computed by onnxruntime
//! and float64 numpy in the tests.

use rayon::prelude::*;

use crate::error::Result;
use crate::spec::ConvSpec;
use crate::tensor::Tensor;

/// Exact convolution of `input` (`N×C×H×W` or `N×C×L`) with `weight` (`O×(C/g)×KH×KW` or
/// `O×(C/g)×K`) and optional `bias` (`O`), summed in f64 and rounded to f32 once.
/// Returns `N×O×OH×OW` or `N×O×OL`.
pub fn conv_reference(
    spec: &ConvSpec,
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    spec.check_weight(weight.shape())?;
    spec.check_bias(bias.map(|b| b.shape()))?;
    let g = spec.geometry(input.shape())?;
    let x = input.data();
    let w = weight.data();
    let b = bias.map(|b| b.data());
    let (cg, og) = (g.in_per_group(), g.out_per_group());
    let plane = g.out_h * g.out_w;

    let compute_plane = |n: usize, o: usize, out: &mut [f32]| {
        let group = o / og;
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let mut acc = 0.0f64;
                for ci in 0..cg {
                    let c = group * cg + ci;
                    for ky in 0..g.kernel_h {
                        let iy = (oy * g.stride_h + ky * g.dilation_h) as i64 - g.pad_top as i64;
                        if iy < 0 || iy >= g.in_h as i64 {
                            continue;
                        }
                        for kx in 0..g.kernel_w {
                            let ix =
                                (ox * g.stride_w + kx * g.dilation_w) as i64 - g.pad_left as i64;
                            if ix < 0 || ix >= g.in_w as i64 {
                                continue;
                            }
                            let xi = ((n * g.in_channels + c) * g.in_h + iy as usize) * g.in_w
                                + ix as usize;
                            let wi = ((o * cg + ci) * g.kernel_h + ky) * g.kernel_w + kx;
                            acc += x[xi] as f64 * w[wi] as f64;
                        }
                    }
                }
                if let Some(b) = b {
                    acc += b[o] as f64;
                }
                out[oy * g.out_w + ox] = acc as f32;
            }
        }
    };

    let mut out = vec![0.0f32; g.output_len()];
    // rayon runs on the calling thread alone where threads are unavailable (wasm).
    out.par_chunks_mut(plane)
        .enumerate()
        .for_each(|(i, chunk)| compute_plane(i / g.out_channels, i % g.out_channels, chunk));
    Tensor::new(g.output_shape(spec.kind), out)
}
