//! Reverb on real speech with long room impulse responses: exact direct, exact FFT
//! overlap-save and MADDNESS table look-ups on the GPU, side by side, and where look-ups stand
//! on long filters.
//!
//! ```text
//! cargo run --example reverb -- [--data DIR] [--taps K,K,...] [--codebooks C]
//!     [--max-windows N] [--maddness-max-taps K] [--reps N] [--out DIR]
//! ```
//!
//! Speech: `DIR/audio` (default `../shared/data`, or `MADDCONV_DATA`), 16 kHz; the tables are
//! learned on `vm-instructions.wav` and `agent-incorrect.wav` and every error is measured on
//! `vm-intro.wav`, which the tables never saw (held out).
//!
//! Impulse responses: synthetic, seeded — Gaussian noise under an exponential decay of 60 dB
//! over the response's length (RT60 = its length), with a direct-path tap at 0 — *not* the
//! image-source method and not measured rooms. Lengths (default 256, 1024, 4096, 16 384 and
//! 32 000 taps = 16 ms … 2 s at 16 kHz) each make a conv1d layer 1 → 1, "same" padding.
//!
//! For each length it prints and writes to `OUT/summary.json` (default `out/reverb/`): kernel
//! times (median, interleaved) of direct, FFT and MADDNESS, and the SNR in dB and 1 − NMSE of
//! each against the f64 reference (the direct f64 CPU convolution up to 2^31 multiply-adds, the
//! full-length f64 FFT correlation `maddconv::fft::correlate_f64` above). WAVs: the input and,
//! per length, `reverb_K_{direct,fft,maddness}.wav` (one gain per length, peak of the exact
//! output → 0.9). MADDNESS is trained only up to `--maddness-max-taps` (default 16 384): its
//! training holds `max-windows × K` floats in memory.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use maddconv::bench::{time_interleaved, Method, Repetitions};
use maddconv::gpu::{DirectConv, FftConv, GpuConv, MaddnessConv};
use maddconv::maddness::{train, TrainConfig};
use maddconv::{ConvLayer, ConvSpec, Tensor};

struct Options {
    data: PathBuf,
    taps: Vec<usize>,
    codebooks: usize,
    max_windows: usize,
    maddness_max_taps: usize,
    reps: usize,
    out: PathBuf,
}

fn options() -> Result<Options> {
    let mut o = Options {
        data: common::default_data_dir(),
        taps: vec![256, 1024, 4096, 16_384, 32_000],
        codebooks: 32,
        max_windows: 8000,
        maddness_max_taps: 16_384,
        reps: 10,
        out: PathBuf::from("out/reverb"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--data" => o.data = PathBuf::from(val()?),
            "--taps" => o.taps = common::parse_list("--taps", &val()?)?,
            "--codebooks" => o.codebooks = common::parse("--codebooks", &val()?)?,
            "--max-windows" => o.max_windows = common::parse("--max-windows", &val()?)?,
            "--maddness-max-taps" => {
                o.maddness_max_taps = common::parse("--maddness-max-taps", &val()?)?
            }
            "--reps" => o.reps = common::parse("--reps", &val()?)?,
            "--out" => o.out = PathBuf::from(val()?),
            other => bail!("unknown argument {other:?}; see the doc comment of examples/reverb.rs"),
        }
    }
    Ok(o)
}

fn read_wav(path: &std::path::Path) -> Result<(u32, Vec<f32>)> {
    let mut r =
        hound::WavReader::open(path).with_context(|| format!("reading {}", path.display()))?;
    let spec = r.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.channels != 1 {
        bail!("{}: expected mono integer PCM", path.display());
    }
    let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
    let s = r
        .samples::<i32>()
        .map(|v| v.map(|v| v as f32 * scale))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((spec.sample_rate, s))
}

fn write_wav(path: &std::path::Path, rate: u32, samples: &[f32], gain: f32) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    maddconv::tensor::write_atomic(path, |w| {
        let mut wr = hound::WavWriter::new(w, spec).map_err(std::io::Error::other)?;
        for &s in samples {
            let v = (s * gain).clamp(-1.0, 1.0) * 32767.0;
            wr.write_sample(v.round() as i16)
                .map_err(std::io::Error::other)?;
        }
        wr.finalize().map_err(std::io::Error::other)
    })
    .with_context(|| format!("writing {}", path.display()))
}

/// A seeded synthetic room response of `k` taps: direct path 1 at tap 0, then Gaussian noise
/// decaying by 60 dB over the length, scaled to unit energy.
fn room_response(k: usize, seed: u64) -> Vec<f32> {
    let mut rng = maddconv::rng::SplitMix64::new(seed);
    let decay = (1e-3f64).ln() / k as f64; // 60 dB over k taps (amplitude 1e-3)
    let mut h: Vec<f32> = (0..k)
        .map(|i| (rng.normal() as f64 * 0.3 * (decay * i as f64).exp()) as f32)
        .collect();
    h[0] = 1.0;
    let e = h.iter().map(|v| v * v).sum::<f32>().sqrt();
    h.iter_mut().for_each(|v| *v /= e);
    h
}

/// (SNR dB, 1 − NMSE) of `y` against the f64 reference `e` (one channel: NMSE about its mean).
fn errors(y: &[f32], e: &[f64]) -> (f64, f64) {
    let mean = e.iter().sum::<f64>() / e.len() as f64;
    let (mut num, mut sig, mut var) = (0.0, 0.0, 0.0);
    for (&a, &b) in y.iter().zip(e) {
        num += (a as f64 - b).powi(2);
        sig += b * b;
        var += (b - mean).powi(2);
    }
    (
        10.0 * (sig / num.max(f64::MIN_POSITIVE)).log10(),
        1.0 - num / var.max(f64::MIN_POSITIVE),
    )
}

#[derive(serde::Serialize)]
struct Row {
    taps: usize,
    seconds: f64,
    method: String,
    kernel_ms: f64,
    snr_db: f64,
    one_minus_nmse: f64,
    train_seconds: Option<f64>,
}

fn main() -> Result<()> {
    let o = options()?;
    let audio = o.data.join("audio");
    let (rate, test) = read_wav(&audio.join("vm-intro.wav"))?;
    let train_clips = ["vm-instructions.wav", "agent-incorrect.wav"]
        .iter()
        .map(|n| read_wav(&audio.join(n)).map(|(_, s)| s))
        .collect::<Result<Vec<_>>>()?;
    let ctx = common::gpu()?;
    println!("{}", common::describe_adapter(&ctx));
    println!(
        "test clip vm-intro.wav ({:.2} s at {rate} Hz); tables trained on vm-instructions.wav + \
         agent-incorrect.wav; C = {}, ≤ {} training windows",
        test.len() as f64 / rate as f64,
        o.codebooks,
        o.max_windows
    );
    common::make_out_dir(&o.out)?;
    write_wav(&o.out.join("input.wav"), rate, &test, 1.0)?;
    let x = Tensor::new(vec![1, 1, test.len()], test.clone())?;
    let xg = ctx.upload("reverb input", &x)?;
    let reps = Repetitions {
        warmup: 2,
        timed: o.reps,
    };
    let mut rows = Vec::new();
    let mut table = maddconv::bench::Table::new(&[
        "taps",
        "seconds",
        "method",
        "kernel ms",
        "× vs direct",
        "SNR dB",
        "1 − NMSE",
    ]);
    for &k in &o.taps {
        let mut spec = ConvSpec::conv1d(1, 1, k);
        spec.padding = vec![k / 2, k - 1 - k / 2];
        let h = room_response(k, k as u64);
        let layer = ConvLayer::new(spec, Tensor::new(vec![1, 1, k], h)?, None)?;
        let g = layer.spec().geometry(x.shape())?;
        let exact: Vec<f64> = if g.macs() <= 1 << 31 {
            layer.exact(&x)?.data().iter().map(|&v| v as f64).collect()
        } else {
            maddconv::fft::correlate_f64(&layer, &x)?
        };
        let mut convs: Vec<(String, Box<dyn GpuConv>, Option<f64>)> = vec![
            (
                "direct".into(),
                Box::new(DirectConv::new(&ctx, &layer)?),
                None,
            ),
            ("fft".into(), Box::new(FftConv::new(&ctx, &layer)?), None),
        ];
        if k <= o.maddness_max_taps {
            let t = Instant::now();
            let trains: Vec<Tensor> = train_clips
                .iter()
                .map(|s| Tensor::new(vec![1, 1, s.len()], s.clone()))
                .collect::<maddconv::Result<_>>()?;
            let tables = train(
                &layer,
                &trains,
                &TrainConfig {
                    codebooks: Some(o.codebooks.min(k)),
                    max_windows: Some(o.max_windows),
                    keep_f32_tables: false,
                    ..TrainConfig::default()
                },
            )?;
            let secs = t.elapsed().as_secs_f64();
            convs.push((
                format!("maddness C={}", o.codebooks.min(k)),
                Box::new(MaddnessConv::new(&ctx, &tables)?),
                Some(secs),
            ));
        }
        let shape = layer.output_shape(x.shape())?;
        let outs = convs
            .iter()
            .map(|_| ctx.create_tensor("reverb output", &shape))
            .collect::<maddconv::Result<Vec<_>>>()?;
        let mut ys = Vec::new();
        for ((_, c, _), y) in convs.iter().zip(&outs) {
            ctx.fill(y, f32::NAN);
            let mut enc = ctx.encoder("reverb");
            c.encode(&ctx, &mut enc, &xg, y, None)?;
            ctx.submit(enc);
            ys.push(pollster::block_on(ctx.download(y))?);
        }
        let methods: Vec<Method> = convs
            .iter()
            .zip(&outs)
            .map(|((_, c, _), y)| Method {
                conv: c.as_ref(),
                input: &xg,
                output: y,
            })
            .collect();
        let times = pollster::block_on(time_interleaved(&ctx, &methods, reps))?;
        let peak = exact.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
        let gain = (0.9 / peak) as f32;
        for (((name, _, train_s), y), t) in convs.iter().zip(&ys).zip(&times) {
            let (snr, q) = errors(y.data(), &exact);
            let file = format!("reverb_{k}_{}.wav", name.split(' ').next().unwrap_or("x"));
            write_wav(&o.out.join(file), rate, y.data(), gain)?;
            table.row(vec![
                k.to_string(),
                format!("{:.3}", k as f64 / rate as f64),
                name.clone(),
                format!("{:.3}", t.median_ms),
                format!("{:.2}", times[0].median_ms / t.median_ms),
                format!("{snr:.1}"),
                format!("{q:.5}"),
            ]);
            rows.push(Row {
                taps: k,
                seconds: k as f64 / rate as f64,
                method: name.clone(),
                kernel_ms: t.median_ms,
                snr_db: snr,
                one_minus_nmse: q,
                train_seconds: *train_s,
            });
        }
        eprintln!("{k} taps done");
    }
    println!("{}", table.to_markdown());
    let json = serde_json::to_vec_pretty(&rows)?;
    maddconv::tensor::write_atomic(&o.out.join("summary.json"), |w| {
        std::io::Write::write_all(w, &json)
    })?;
    println!("wrote {}", o.out.display());
    Ok(())
}
