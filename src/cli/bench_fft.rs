//! `maddconv bench --fft`: long filters, exact direct vs exact FFT overlap-save on the GPU, and
//! the CPU peer (f32 overlap-save on rustfft, [`maddconv::fft::fft_conv1d_with_spectra`],
//! all cores) on the same machine, for K ∈ {16, …, 65 536} on a 2^20-sample signal, 1 → 1 and
//! 16 → 16 channels. Errors against the f64 reference (`conv_reference` where it is cheap,
//! else the full-length f64 FFT correlation [`maddconv::fft::correlate_f64`]).
//!
//! Direct runs whose work would exceed [`DIRECT_FULL_MACS`] are timed on a prefix of the
//! signal and scaled by the ratio of output positions (direct time is linear in them); such
//! rows say `extrapolated_from` and carry no error.
//!
//! MADDNESS rows (one per codebook count) come from tables trained on another seeded noise
//! signal than the timed one (held out), for window lengths C·K up to [`MADDNESS_MAX_WINDOW`]
//! on at most [`MADDNESS_TRAIN_FLOATS`] / (C·K) windows. White noise is the look-ups' worst
//! case: it has no structure for the trees to learn (the `reverb` example measures real
//! speech).

use std::time::Instant;

use anyhow::Result;
use maddconv::bench::{median, time_interleaved, Method, Repetitions, Table};
use maddconv::fft::{correlate_f64, fft_conv1d_with_spectra, filter_spectra};
use maddconv::gpu::{Context, DirectConv, FftConv, GpuConv, MaddnessConv};
use maddconv::{ConvLayer, ConvSpec, Tensor};
use serde::Serialize;

/// Direct runs above this many multiply-adds are timed on a shorter signal.
pub const DIRECT_FULL_MACS: u64 = 1 << 30;

/// The longest window (input channels × K) MADDNESS is trained for here.
pub const MADDNESS_MAX_WINDOW: usize = 1 << 16;

/// The floats of training windows MADDNESS may hold (1 GiB).
pub const MADDNESS_TRAIN_FLOATS: usize = 1 << 28;

/// At most this many training windows.
pub const MADDNESS_MAX_WINDOWS: usize = 4096;

/// One row of `bench --fft`.
#[derive(Serialize, Clone, Debug)]
pub struct FftRow {
    /// Filter length K.
    pub k: usize,
    /// Input and output channels (C = O).
    pub channels: usize,
    /// Signal length L (samples per channel, batch 1).
    pub signal: usize,
    /// "direct" (GPU), "fft" (GPU), "maddness" (GPU) or "cpu-fft" (rustfft overlap-save on
    /// the CPU).
    pub method: String,
    /// MADDNESS codebooks.
    pub codebooks: Option<usize>,
    /// MADDNESS training windows and seconds.
    pub train_windows: Option<usize>,
    pub train_seconds: Option<f64>,
    /// The kernel ([`GpuConv::name`]) or CPU threads.
    pub kernels: String,
    /// FFT block size N (FFT rows).
    pub n_fft: Option<usize>,
    /// Median time in ms (GPU: kernel time; CPU: wall time of the convolution, filter spectra
    /// precomputed as on the GPU).
    pub ms: f64,
    /// Timed repetitions.
    pub repetitions: usize,
    /// Median direct time / this time.
    pub speedup_vs_direct: f64,
    /// Relative L2 error against the f64 reference (None for extrapolated rows).
    pub rel_l2_vs_f64: Option<f64>,
    /// Which f64 reference: "direct" or "fft-f64".
    pub reference: String,
    /// For direct rows timed on a shorter signal: that length.
    pub extrapolated_from: Option<usize>,
    /// "timestamp", "wall" or "cpu-wall".
    pub clock: String,
    /// The adapter.
    pub adapter: String,
}

/// The filter lengths and signal of the full and the small (CI) run.
pub fn sizes(small: bool) -> (Vec<usize>, usize, Vec<usize>) {
    if small {
        (vec![16, 256], 1 << 14, vec![1, 4])
    } else {
        (
            vec![16, 64, 256, 1024, 4096, 16_384, 65_536],
            1 << 20,
            vec![1, 16],
        )
    }
}

/// A reverb-like filter: seeded noise under an exponential decay, energy 1.
fn decaying_filter(shape: &[usize], seed: u64) -> Tensor {
    let k = shape[shape.len() - 1];
    let mut rng = maddconv::rng::SplitMix64::new(seed);
    let n: usize = shape.iter().product();
    let mut data: Vec<f32> = (0..n)
        .map(|i| {
            let t = (i % k) as f32 / k as f32;
            (rng.uniform() * 2.0 - 1.0) * (-6.0 * t).exp()
        })
        .collect();
    for row in data.chunks_mut(k) {
        let e = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-20);
        row.iter_mut().for_each(|v| *v /= e);
    }
    Tensor::new(shape.to_vec(), data).expect("filter shape")
}

fn rel_l2(computed: &[f32], exact: &[f64]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (a, b) in computed.iter().zip(exact) {
        num += (*a as f64 - b).powi(2);
        den += b * b;
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

/// Seeded uniform noise in [−1, 1), `1 × c × len`.
fn noise(c: usize, len: usize, seed: u64) -> Result<Tensor> {
    let mut rng = maddconv::rng::SplitMix64::new(seed);
    Ok(Tensor::new(
        vec![1, c, len],
        (0..c * len).map(|_| rng.uniform() * 2.0 - 1.0).collect(),
    )?)
}

/// Runs the long-filter benchmark, MADDNESS at each of `codebooks`; rows in the order K,
/// channels, method.
pub fn run(
    ctx: &Context,
    small: bool,
    reps: usize,
    codebooks: &[usize],
    adapter: &str,
) -> Result<Vec<FftRow>> {
    let (ks, signal, channels) = sizes(small);
    let mut rows = Vec::new();
    for &c in &channels {
        let x = noise(c, signal, 7 + c as u64)?;
        let xg = ctx.upload("bench input", &x)?;
        for &k in &ks {
            let mut spec = ConvSpec::conv1d(c, c, k);
            spec.padding = vec![k / 2, k - 1 - k / 2]; // "same"
            let layer = ConvLayer::new(spec, decaying_filter(&[c, c, k], k as u64), None)?;
            let g = layer.spec().geometry(x.shape())?;
            eprintln!("K = {k}, {c} → {c} channels, L = {signal}");
            let t0 = Instant::now();
            let (exact, reference) = if g.macs() <= 1 << 28 {
                let e = layer.exact(&x)?;
                (e.data().iter().map(|&v| v as f64).collect(), "direct")
            } else {
                (correlate_f64(&layer, &x)?, "fft-f64")
            };
            eprintln!(
                "  f64 reference ({reference}) in {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            let fft = FftConv::new(ctx, &layer)?;
            let direct = DirectConv::new(ctx, &layer)?;
            // MADDNESS, trained on other noise than the timed signal.
            let window = c * k;
            let mut madd = Vec::new();
            if window <= MADDNESS_MAX_WINDOW {
                let windows = (MADDNESS_TRAIN_FLOATS / window).min(MADDNESS_MAX_WINDOWS);
                let train_x = noise(c, (windows + k).min(signal), 1_000_003 + c as u64)?;
                let mut counts: Vec<usize> = codebooks.iter().map(|&cb| cb.min(window)).collect();
                counts.dedup();
                for cb in counts {
                    let t = Instant::now();
                    let tables = maddconv::maddness::train(
                        &layer,
                        std::slice::from_ref(&train_x),
                        &maddconv::maddness::TrainConfig {
                            codebooks: Some(cb),
                            max_windows: Some(windows),
                            keep_f32_tables: false,
                            ..Default::default()
                        },
                    )?;
                    let secs = t.elapsed().as_secs_f64();
                    eprintln!("  MADDNESS C = {cb} trained in {secs:.1} s");
                    madd.push((
                        cb,
                        MaddnessConv::new(ctx, &tables)?,
                        ctx.create_tensor("maddness out", &layer.output_shape(x.shape())?)?,
                        secs,
                        windows,
                    ));
                }
            } else {
                eprintln!(
                    "  MADDNESS skipped: window {c} × {k} = {window} is above \
                     {MADDNESS_MAX_WINDOW}"
                );
            }
            // Direct on the whole signal, or on a prefix scaled up.
            let direct_len = if g.macs() <= DIRECT_FULL_MACS {
                signal
            } else {
                let per_pos = g.macs() / g.out_w as u64;
                ((DIRECT_FULL_MACS / per_pos) as usize)
                    .max(1024)
                    .min(signal)
            };
            let xd_host;
            let xd = if direct_len == signal {
                None
            } else {
                let mut d = Vec::with_capacity(c * direct_len);
                for ci in 0..c {
                    d.extend_from_slice(&x.data()[ci * signal..ci * signal + direct_len]);
                }
                xd_host = Tensor::new(vec![1, c, direct_len], d)?;
                Some(ctx.upload("bench direct input", &xd_host)?)
            };
            let xdir = xd.as_ref().unwrap_or(&xg);
            let y_fft = ctx.create_tensor("fft out", &fft.output_shape(x.shape())?)?;
            let y_dir = ctx.create_tensor("direct out", &direct.output_shape(xdir.shape())?)?;
            let big = direct_len < signal || g.macs() > 1 << 30;
            let r = Repetitions {
                warmup: if big { 1 } else { 3 },
                timed: if big { reps.clamp(1, 3) } else { reps },
            };
            let mut methods = vec![
                Method {
                    conv: &direct,
                    input: xdir,
                    output: &y_dir,
                },
                Method {
                    conv: &fft,
                    input: &xg,
                    output: &y_fft,
                },
            ];
            methods.extend(madd.iter().map(|(_, conv, y, _, _)| Method {
                conv,
                input: &xg,
                output: y,
            }));
            // Errors first, outputs poisoned: direct (unless timed on a prefix), FFT, MADDNESS.
            let mut errs = Vec::new();
            for m in &methods {
                let got = pollster::block_on(m.checked_output(ctx))?;
                errs.push(rel_l2(got.data(), &exact));
            }
            let direct_err = xd.is_none().then_some(errs[0]);
            let (fft_err, madd_errs) = (errs[1], &errs[2..]);
            let t = pollster::block_on(time_interleaved(ctx, &methods, r))?;
            let scale = g.out_w as f64 / direct.output_shape(xdir.shape())?[2] as f64;
            let direct_ms = t[0].median_ms * scale;
            // CPU peer.
            let plan = fft.plan();
            let w = filter_spectra(&layer, &plan)?;
            let mut cpu = Vec::new();
            let mut cpu_err = None;
            for i in 0..(if big { 3 } else { reps.clamp(1, 10) }) {
                let t = Instant::now();
                let y = fft_conv1d_with_spectra(&layer, &w, &x, &plan, &g)?;
                cpu.push(t.elapsed().as_secs_f64() * 1e3);
                if i == 0 {
                    cpu_err = Some(rel_l2(y.data(), &exact));
                }
            }
            let cpu_reps = cpu.len();
            let cpu_ms = median(&mut cpu);
            let row =
                |method: &str, kernels: String, ms: f64, reps, err, n_fft, from, clock| FftRow {
                    k,
                    channels: c,
                    signal,
                    method: method.to_string(),
                    codebooks: None,
                    train_windows: None,
                    train_seconds: None,
                    kernels,
                    n_fft,
                    ms,
                    repetitions: reps,
                    speedup_vs_direct: direct_ms / ms,
                    rel_l2_vs_f64: err,
                    reference: reference.to_string(),
                    extrapolated_from: from,
                    clock,
                    adapter: adapter.to_string(),
                };
            rows.push(row(
                "direct",
                direct.name().to_string(),
                direct_ms,
                t[0].repetitions,
                direct_err,
                None,
                (direct_len < signal).then_some(direct_len),
                t[0].clock.to_string(),
            ));
            rows.push(row(
                "fft",
                "fft".into(),
                t[1].median_ms,
                t[1].repetitions,
                Some(fft_err),
                Some(plan.n_fft),
                None,
                t[1].clock.to_string(),
            ));
            rows.push(row(
                "cpu-fft",
                format!("rustfft, {} threads", rayon::current_num_threads()),
                cpu_ms,
                cpu_reps,
                cpu_err,
                Some(plan.n_fft),
                None,
                "cpu-wall".into(),
            ));
            for (((cb, conv, _, secs, windows), t), err) in madd.iter().zip(&t[2..]).zip(madd_errs)
            {
                let mut r = row(
                    "maddness",
                    conv.name().to_string(),
                    t.median_ms,
                    t.repetitions,
                    Some(*err),
                    None,
                    None,
                    t.clock.to_string(),
                );
                r.codebooks = Some(*cb);
                r.train_windows = Some(*windows);
                r.train_seconds = Some(*secs);
                eprintln!(
                    "  maddness C = {cb}: {:.3} ms, rel L2 {err:.3}",
                    t.median_ms
                );
                rows.push(r);
            }
            eprintln!(
                "  direct {direct_ms:.2} ms{}, fft {:.3} ms (N = {}), cpu {cpu_ms:.2} ms",
                if direct_len < signal {
                    format!(" (from L = {direct_len})")
                } else {
                    String::new()
                },
                t[1].median_ms,
                plan.n_fft
            );
        }
    }
    Ok(rows)
}

/// The rows as a markdown table.
pub fn table(rows: &[FftRow]) -> String {
    let mut t = Table::new(&[
        "K",
        "C→O",
        "method",
        "N",
        "ms",
        "× vs direct",
        "rel L2 vs f64",
        "reps",
    ]);
    for r in rows {
        t.row(vec![
            r.k.to_string(),
            format!("{0}→{0}", r.channels),
            match (r.extrapolated_from, r.codebooks) {
                (Some(l), _) => format!("{} ({}, from L = {l})", r.method, r.kernels),
                (None, Some(cb)) => format!("{} C={cb} ({})", r.method, r.kernels),
                (None, None) => format!("{} ({})", r.method, r.kernels),
            },
            r.n_fft.map(|n| n.to_string()).unwrap_or_default(),
            format!("{:.3}", r.ms),
            format!("{:.1}", r.speedup_vs_direct),
            r.rel_l2_vs_f64
                .map(|e| format!("{e:.2e} ({})", r.reference))
                .unwrap_or_else(|| "-".into()),
            r.repetitions.to_string(),
        ]);
    }
    t.to_markdown()
}
