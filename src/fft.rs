//! Exact conv1d by FFT overlap-save, on the CPU: the block-size choice shared with the GPU
//! kernels ([`FftPlan`]), the filter spectra they keep resident ([`filter_spectra`]), and the
//! CPU mirror of `shaders/fft_*.wgsl` ([`fft_conv1d_cpu`], on rustfft), which is also the CPU
//! peer of the benchmarks.
//!
//! Layout: inputs `N×C×L`, weight `O×(C/groups)×K`, bias `O`, outputs `N×O×OL` (PyTorch
//! conventions, DESIGN.md §2: the layer is a cross-correlation).
//!
//! The algorithm (the same on the GPU):
//! * Kd = dilation·(K − 1) + 1, the dilated filter length; a block size N = 2^p ≥ Kd chosen
//!   from Kd and the channel counts ([`FftPlan::for_spec`]); B = N − Kd + 1 outputs per block.
//! * Stride 1 positions `t = 0 ..` of the zero-padded input; block j covers `j·B .. j·B + N`.
//!   Blocks 2p and 2p + 1 are transformed together as the real and imaginary parts of one
//!   complex signal (the filter is real, so the two results come back in the real and
//!   imaginary parts): a "segment" `s = n·pairs + p`.
//! * Per segment: the spectra X of every input channel; per output channel o of group g the
//!   product `Σ_ci conj(X_ci) · W[o, ci]`, with W the spectrum of the zero-padded (dilated)
//!   filter, computed once in f64 and kept as its half spectrum (N/2 + 1 bins); one more forward
//!   transform F of that product is N·conj(correlation), so the outputs are `Re F[m] / N` (block
//!   2p) and `−Im F[m] / N` (block 2p + 1) for `m < B`.
//! * Dilation by the dilated filter (zeros between taps); stride by decimation: only every
//!   stride-th stride-1 position is written. Both exact, neither faster than stride 1.

use rayon::prelude::*;
use rustfft::num_complex::Complex;

use crate::error::{Error, Result};
use crate::layer::ConvLayer;
use crate::spec::{ConvKind, ConvSpec, Geometry};
use crate::tensor::Tensor;

/// The largest transform size (2^22): twiddle table and u32 index arithmetic stay small.
pub const MAX_BLOCK: usize = 1 << 22;

/// The most bytes of filter spectra [`FftPlan::for_spec`] chooses a larger block for.
pub const MAX_SPECTRA_BYTES: u64 = 64 << 20;

/// The transform size of an FFT overlap-save layer and what follows from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FftPlan {
    /// N, the transform (block) size, a power of two ≥ [`Self::dilated_len`].
    pub n_fft: usize,
    /// Kd = dilation·(K − 1) + 1.
    pub dilated_len: usize,
}

impl FftPlan {
    /// The plan whose block size minimises the modelled work per output (forward and inverse
    /// transforms of every channel plus the frequency-domain products, over the B outputs of a
    /// block), for N from the smallest power of two ≥ Kd (and ≥ 32) up to 256 times that, and
    /// no larger than keeps the filter spectra within [`MAX_SPECTRA_BYTES`] (the two smallest
    /// always qualify).
    /// Fails with [`Error::Unsupported`] for a conv2d and [`Error::TooLarge`] when Kd needs a
    /// block above [`MAX_BLOCK`].
    pub fn for_spec(spec: &ConvSpec) -> Result<FftPlan> {
        let kd = dilated_len(spec)?;
        let (c, o, cg) = (
            spec.in_channels as f64,
            spec.out_channels as f64,
            (spec.in_channels / spec.groups.max(1)) as f64,
        );
        let first = kd.next_power_of_two().max(32);
        let mut best: Option<(f64, usize)> = None;
        let mut n = first;
        let spectra_bytes = |n: usize| (o * cg) as u64 * (n as u64 / 2 + 1) * 8;
        while n <= MAX_BLOCK
            && n <= first * 256
            && (n <= 2 * first || spectra_bytes(n) <= MAX_SPECTRA_BYTES)
        {
            let b = (n - kd + 1) as f64;
            let nf = n as f64;
            // Radix-4 passes: each touches every element once, log4 N of them per transform.
            let fft = nf * (nf.log2() / 2.0) * (c + o);
            let mult = nf * o * cg;
            let cost = (fft + mult) / b;
            if best.is_none_or(|(bc, _)| cost < bc) {
                best = Some((cost, n));
            }
            n *= 2;
        }
        match best {
            Some((_, n)) => FftPlan::with_block(spec, n),
            None => FftPlan::with_block(spec, first),
        }
    }

    /// The plan with block size `n_fft`; fails with [`Error::Argument`] unless it is a power
    /// of two ≥ Kd and ≥ 4, with [`Error::TooLarge`] above [`MAX_BLOCK`].
    pub fn with_block(spec: &ConvSpec, n_fft: usize) -> Result<FftPlan> {
        let kd = dilated_len(spec)?;
        if n_fft > MAX_BLOCK {
            return Err(Error::TooLarge {
                what: "FFT block size".into(),
                value: n_fft as u64,
                limit: MAX_BLOCK as u64,
                why: format!(
                    "the FFT kernels' largest transform; the dilated filter has {kd} taps"
                ),
            });
        }
        if !n_fft.is_power_of_two() || n_fft < 4 || n_fft < kd {
            return Err(Error::Argument(format!(
                "FFT block size {n_fft}: must be a power of two, at least 4 and at least the \
                 dilated filter length {kd}"
            )));
        }
        Ok(FftPlan {
            n_fft,
            dilated_len: kd,
        })
    }

    /// B = N − Kd + 1, the outputs (stride-1 positions) one block yields.
    pub fn step(&self) -> usize {
        self.n_fft - self.dilated_len + 1
    }

    /// Stride-1 positions a sample of geometry `g` needs: `(OL − 1)·stride + 1`.
    pub fn positions(&self, g: &Geometry) -> usize {
        (g.out_w - 1) * g.stride_w + 1
    }

    /// Block pairs (segments) per sample of geometry `g`.
    pub fn pairs(&self, g: &Geometry) -> usize {
        self.positions(g).div_ceil(self.step()).div_ceil(2)
    }
}

/// Kd = dilation·(K − 1) + 1 of a conv1d spec; [`Error::Unsupported`] for a conv2d.
fn dilated_len(spec: &ConvSpec) -> Result<usize> {
    if spec.kind != ConvKind::Conv1d {
        return Err(Error::Unsupported(format!(
            "the FFT kernels do conv1d only; {} is a conv2d (use the direct kernel)",
            spec.describe()
        )));
    }
    spec.validate()?;
    Ok(spec.dilation[0] * (spec.kernel[0] - 1) + 1)
}

/// The filter spectra of a conv1d layer for block size `plan.n_fft`: `[O, C/groups, N/2 + 1]`
/// complex values, W = FFT of the filter placed at taps `0, d, 2d, ...` (dilation d) of a
/// zero block of N, computed in f64 (realfft) and rounded to f32 once.
pub fn filter_spectra(layer: &ConvLayer, plan: &FftPlan) -> Result<Vec<Complex<f32>>> {
    let spec = layer.spec();
    let n = plan.n_fft;
    let (o, cg, k, d) = (
        spec.out_channels,
        spec.in_channels / spec.groups,
        spec.kernel[0],
        dilated_len(spec).map(|_| spec.dilation[0])?,
    );
    let half = n / 2 + 1;
    let r2c = realfft::RealFftPlanner::<f64>::new().plan_fft_forward(n);
    let w = layer.weight().data();
    let mut out = vec![Complex::new(0.0f32, 0.0); o * cg * half];
    out.par_chunks_mut(half)
        .enumerate()
        .try_for_each(|(row, dst)| -> Result<()> {
            let mut buf = vec![0.0f64; n];
            for (tap, &v) in w[row * k..(row + 1) * k].iter().enumerate() {
                buf[tap * d] = v as f64;
            }
            let mut spec = r2c.make_output_vec();
            r2c.process(&mut buf, &mut spec)
                .map_err(|e| Error::Argument(format!("filter spectrum: {e}")))?;
            for (a, b) in dst.iter_mut().zip(&spec) {
                *a = Complex::new(b.re as f32, b.im as f32);
            }
            Ok(())
        })?;
    Ok(out)
}

/// Segment `seg = n·pairs + p` of channel `c`: blocks 2p and 2p + 1 of the zero-padded input
/// as real and imaginary parts (the mirror of `shaders/fft_load.wgsl`).
pub fn load_segment(
    x: &[f32],
    g: &Geometry,
    plan: &FftPlan,
    pairs: usize,
    seg: usize,
    c: usize,
    dst: &mut [Complex<f32>],
) {
    let (n, p) = (seg / pairs, seg % pairs);
    let b = plan.step();
    let row = &x[(n * g.in_channels + c) * g.in_w..][..g.in_w];
    let at = |t: usize| {
        t.checked_sub(g.pad_left)
            .and_then(|i| row.get(i))
            .copied()
            .unwrap_or(0.0)
    };
    for (m, v) in dst.iter_mut().enumerate() {
        let t0 = 2 * p * b + m;
        *v = Complex::new(at(t0), at(t0 + b));
    }
}

/// `Σ_ci conj(X_ci[k]) · W[o, ci, k]` for one output channel `o` (the mirror of
/// `shaders/fft_multiply.wgsl`); `xs` holds the segment's `C` input spectra, `w` the
/// [`filter_spectra`].
pub fn multiply_segment(
    xs: &[Complex<f32>],
    w: &[Complex<f32>],
    g: &Geometry,
    n_fft: usize,
    o: usize,
    dst: &mut [Complex<f32>],
) {
    let cg = g.in_per_group();
    let group = o / g.out_per_group();
    let half = n_fft / 2 + 1;
    for (k, acc) in dst.iter_mut().enumerate() {
        let (kk, flip) = if k > n_fft / 2 {
            (n_fft - k, -1.0)
        } else {
            (k, 1.0)
        };
        let mut a = Complex::new(0.0f32, 0.0);
        for ci in 0..cg {
            let x = xs[(group * cg + ci) * n_fft + k];
            let mut wv = w[(o * cg + ci) * half + kk];
            wv.im *= flip;
            a += x.conj() * wv;
        }
        *acc = a;
    }
}

/// The outputs of one segment and channel from F (the mirror of `shaders/fft_extract.wgsl`):
/// `(output position, value)` for every position the segment owns.
pub fn extract_segment(
    f: &[Complex<f32>],
    g: &Geometry,
    plan: &FftPlan,
    pairs: usize,
    seg: usize,
    bias: f32,
    mut put: impl FnMut(usize, f32),
) {
    let b = plan.step();
    let scale = 1.0 / plan.n_fft as f32;
    let p = seg % pairs;
    for part in 0..2 {
        for (m, v) in f[..b].iter().enumerate() {
            let t = (2 * p + part) * b + m;
            if !t.is_multiple_of(g.stride_w) || t / g.stride_w >= g.out_w {
                continue;
            }
            let re = if part == 0 { v.re } else { -v.im };
            put(t / g.stride_w, re * scale + bias);
        }
    }
}

/// Exact conv1d of `input` (`N×C×L`) by f32 FFT overlap-save on rustfft with the plan's block
/// size: the CPU mirror of the GPU kernels (same blocks, pairing, half spectra and order of
/// summation over channels; rustfft's own transform order) and the CPU peer of the benchmarks.
/// Parallel over segments. Returns `N×O×OL`.
pub fn fft_conv1d_cpu(layer: &ConvLayer, input: &Tensor, plan: &FftPlan) -> Result<Tensor> {
    let spec = layer.spec();
    dilated_len(spec)?;
    if plan.dilated_len != dilated_len(spec)? {
        return Err(Error::Argument(format!(
            "the FFT plan is for a dilated filter of {} taps, the layer has {}",
            plan.dilated_len,
            dilated_len(spec)?
        )));
    }
    let g = spec.geometry(input.shape())?;
    let w = filter_spectra(layer, plan)?;
    fft_conv1d_with_spectra(layer, &w, input, plan, &g)
}

/// [`fft_conv1d_cpu`] with the filter spectra already computed (benchmarks time this part).
pub fn fft_conv1d_with_spectra(
    layer: &ConvLayer,
    w: &[Complex<f32>],
    input: &Tensor,
    plan: &FftPlan,
    g: &Geometry,
) -> Result<Tensor> {
    let nf = plan.n_fft;
    let pairs = plan.pairs(g);
    let fft = rustfft::FftPlanner::<f32>::new().plan_fft_forward(nf);
    let x = input.data();
    let bias: Vec<f32> = match layer.bias() {
        Some(b) => b.data().to_vec(),
        None => vec![0.0; g.out_channels],
    };
    let out_len = g.out_w;
    let segs = g.batch * pairs;
    // Each segment yields its outputs as (position, value) per channel, scattered afterwards.
    let parts: Vec<Vec<Vec<(u32, f32)>>> = (0..segs)
        .into_par_iter()
        .map(|seg| {
            let mut xs = vec![Complex::new(0.0f32, 0.0); g.in_channels * nf];
            let mut scratch = vec![Complex::new(0.0f32, 0.0); fft.get_inplace_scratch_len()];
            for (c, dst) in xs.chunks_mut(nf).enumerate() {
                load_segment(x, g, plan, pairs, seg, c, dst);
                fft.process_with_scratch(dst, &mut scratch);
            }
            let mut acc = vec![Complex::new(0.0f32, 0.0); nf];
            let mut vals = vec![Vec::new(); g.out_channels];
            for (o, vo) in vals.iter_mut().enumerate() {
                multiply_segment(&xs, w, g, nf, o, &mut acc);
                fft.process_with_scratch(&mut acc, &mut scratch);
                extract_segment(&acc, g, plan, pairs, seg, bias[o], |q, v| {
                    vo.push((q as u32, v))
                });
            }
            vals
        })
        .collect();
    let mut out = vec![0.0f32; g.output_len()];
    for (seg, vals) in parts.into_iter().enumerate() {
        let n = seg / pairs;
        for (o, vo) in vals.into_iter().enumerate() {
            let row = &mut out[(n * g.out_channels + o) * out_len..][..out_len];
            for (q, v) in vo {
                row[q as usize] = v;
            }
        }
    }
    Tensor::new(g.output_shape(ConvKind::Conv1d), out)
}

/// An f64 reference for long filters where the direct one is too slow: each (sample, output)
/// row is the sum over the group's input channels of one full-length correlation, by real
/// FFTs of size ≥ L + pads + Kd in f64 (realfft), then decimated by the stride. Shares no code
/// with the overlap-save path (no blocks, no pairing); tested against
/// [`conv_reference`](crate::reference::conv_reference). Returns `N×O×OL` values in f64, C
/// order.
pub fn correlate_f64(layer: &ConvLayer, input: &Tensor) -> Result<Vec<f64>> {
    use realfft::num_complex::Complex as C64;
    let spec = layer.spec();
    let kd = dilated_len(spec)?;
    let g = spec.geometry(input.shape())?;
    let (n, c, l, o) = (g.batch, g.in_channels, g.in_w, g.out_channels);
    let (cg, og, k, d) = (
        g.in_per_group(),
        g.out_per_group(),
        spec.kernel[0],
        spec.dilation[0],
    );
    let lp = l + g.pad_left + g.pad_right;
    let m = (lp + kd).next_power_of_two();
    let mut planner = realfft::RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(m);
    let inv = planner.plan_fft_inverse(m);
    let spectrum = |v: &mut Vec<f64>| -> Result<Vec<C64<f64>>> {
        let mut s = fwd.make_output_vec();
        fwd.process(v, &mut s)
            .map_err(|e| Error::Argument(format!("f64 reference FFT: {e}")))?;
        Ok(s)
    };
    let x = input.data();
    let w = layer.weight().data();
    let bias = layer.bias().map(|b| b.data());
    // The spectrum of the reversed (dilated) filter of (output, input-in-group) `row`.
    let filter = |row: usize| {
        let mut v = vec![0.0f64; m];
        for j in 0..k {
            v[kd - 1 - j * d] = w[row * k + j] as f64;
        }
        spectrum(&mut v)
    };
    let mut out = vec![0.0f64; g.output_len()];
    for ni in 0..n {
        let xs: Vec<Vec<C64<f64>>> = (0..c)
            .into_par_iter()
            .map(|ci| {
                let mut v = vec![0.0f64; m];
                for i in 0..l {
                    v[g.pad_left + i] = x[(ni * c + ci) * l + i] as f64;
                }
                spectrum(&mut v)
            })
            .collect::<Result<_>>()?;
        let rows: Vec<Vec<f64>> = (0..o)
            .into_par_iter()
            .map(|oi| -> Result<Vec<f64>> {
                let grp = oi / og;
                let mut acc = vec![C64::new(0.0f64, 0.0); m / 2 + 1];
                for ci in 0..cg {
                    let ws = filter(oi * cg + ci)?;
                    for (a, (xv, wv)) in acc.iter_mut().zip(xs[grp * cg + ci].iter().zip(&ws)) {
                        *a += xv * wv;
                    }
                }
                let mut y = inv.make_output_vec();
                inv.process(&mut acc, &mut y)
                    .map_err(|e| Error::Argument(format!("f64 reference FFT: {e}")))?;
                let b = bias.map_or(0.0, |b| b[oi] as f64);
                Ok((0..g.out_w)
                    .map(|p| y[p * g.stride_w + kd - 1] / m as f64 + b)
                    .collect())
            })
            .collect::<Result<_>>()?;
        for (oi, r) in rows.into_iter().enumerate() {
            out[(ni * o + oi) * g.out_w..][..g.out_w].copy_from_slice(&r);
        }
    }
    Ok(out)
}
