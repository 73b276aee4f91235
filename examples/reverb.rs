//! Reverb on real speech with room impulse responses of 16 ms … 2 s: exact direct, exact FFT
//! overlap-save and MADDNESS table look-ups on the GPU, side by side, and where look-ups stand
//! on long filters.
//!
//! ```text
//! cargo run --release --example reverb -- [--data DIR] [--taps K,K,...] [--codebooks C,C,...]
//!     [--max-windows N] [--maddness-max-taps K] [--reps N] [--out DIR]
//! ```
//!
//! Speech: `DIR/audio` (default `../shared/data`, or `MADDCONV_DATA`), 16 kHz; the tables are
//! learned on `vm-instructions.wav` and `agent-incorrect.wav` and every error is measured on
//! `vm-intro.wav`, which the tables never saw (held out).
//!
//! Impulse responses: the image-source method ([`maddconv::filters::ShoeboxRoom`]) in a seeded
//! shoebox room per length, its walls set so that the response's Schroeder T20 equals the
//! length (RT60 = K / 16 000 s: 0.25 … 2 s for the default 4000 … 32 000 taps; the shorter
//! defaults, 256 and 1024 taps, are the first 16 and 64 ms — direct sound and early
//! reflections — of a 0.25 s room). Each makes a
//! causal conv1d layer 1 → 1 (the response reversed as the weight, padding K − 1 on the left):
//! output sample t is the reverberant sound at t.
//!
//! For each length it prints and writes to `OUT/summary.json` (default `out/reverb/`): kernel
//! times (median, interleaved) of direct, FFT and MADDNESS at each codebook count (default 16,
//! 32, 64), and the SNR in dB and 1 − NMSE of each against the f64 reference (the direct f64
//! CPU convolution up to 2^31 multiply-adds, the full-length f64 FFT correlation
//! `maddconv::fft::correlate_f64` above); `OUT/reverb.svg` plots every method's kernel time
//! against its SNR. WAVs: the input and, per length, `reverb_K_{direct,fft,maddness-C}.wav`
//! (one gain per length, peak of the exact output → 0.9). MADDNESS is trained only up to
//! `--maddness-max-taps` (default 16 384): its training holds `max-windows × K` floats.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context as _, Result};
use maddconv::bench::{time_interleaved, Method, Repetitions};
use maddconv::filters::{schroeder_rt60, ShoeboxRoom};
use maddconv::gpu::{DirectConv, FftConv, GpuConv, MaddnessConv};
use maddconv::maddness::{train, TrainConfig};
use maddconv::{ConvLayer, ConvSpec, Tensor};
use plotters::prelude::*;

/// Shorter responses are the first K taps (direct sound and early reflections) of a room with
/// this reverberation time, in seconds.
const MIN_RT60: f64 = 0.25;

const USAGE: &str = "cargo run --release --example reverb -- [--data DIR] [--taps K,K,...] \
    [--codebooks C,C,...] [--max-windows N] [--maddness-max-taps K] [--reps N] [--out DIR]";

struct Options {
    data: PathBuf,
    taps: Vec<usize>,
    codebooks: Vec<usize>,
    max_windows: usize,
    maddness_max_taps: usize,
    reps: usize,
    out: PathBuf,
}

fn options() -> Result<Options> {
    let mut o = Options {
        data: common::default_data_dir(),
        taps: vec![256, 1024, 4000, 8000, 16_000, 32_000],
        codebooks: vec![16, 32, 64],
        max_windows: 8000,
        maddness_max_taps: 16_384,
        reps: 10,
        out: PathBuf::from("out/reverb"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        common::exit_on_help(&a, USAGE);
        let mut val = || common::flag_value(&mut args, &a, USAGE);
        match a.as_str() {
            "--data" => o.data = PathBuf::from(val()?),
            "--taps" => o.taps = common::parse_list("--taps", &val()?)?,
            "--codebooks" => o.codebooks = common::parse_list("--codebooks", &val()?)?,
            "--max-windows" => o.max_windows = common::parse("--max-windows", &val()?)?,
            "--maddness-max-taps" => {
                o.maddness_max_taps = common::parse("--maddness-max-taps", &val()?)?
            }
            "--reps" => o.reps = common::parse("--reps", &val()?)?,
            "--out" => o.out = PathBuf::from(val()?),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    common::check_windows_and_reps(o.max_windows, o.reps)?;
    ensure!(
        o.taps.iter().all(|&k| k >= 2),
        "--taps: every length must be at least 2, got {:?}",
        o.taps
    );
    ensure!(
        o.codebooks.iter().all(|&c| c >= 1),
        "--codebooks: every count must be at least 1, got {:?}",
        o.codebooks
    );
    Ok(o)
}

fn write_wav(path: &Path, rate: u32, samples: &[f32], gain: f32) -> Result<()> {
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
    /// The room: size (m), reverberation time its walls were set for (s), wall reflection,
    /// Schroeder T20 of the kept taps (s; none when they stop before −25 dB).
    room_size_m: [f64; 3],
    room_rt60_s: f64,
    wall_reflection: f64,
    measured_rt60_s: Option<f64>,
    method: String,
    kernel_ms: f64,
    speedup_vs_direct: f64,
    snr_db: f64,
    one_minus_nmse: f64,
    train_seconds: Option<f64>,
}

/// The causal reverb layer of response `h`: weight = `h` reversed, `K − 1` zeros on the left.
fn reverb_layer(h: &[f32]) -> Result<ConvLayer> {
    let k = h.len();
    let mut spec = ConvSpec::conv1d(1, 1, k);
    spec.padding = vec![k - 1, 0];
    let weight: Vec<f32> = h.iter().rev().copied().collect();
    Ok(ConvLayer::new(
        spec,
        Tensor::new(vec![1, 1, k], weight)?,
        None,
    )?)
}

fn main() -> Result<()> {
    let o = options()?;
    let audio = o.data.join("audio");
    let test = common::wav::read_wav(&audio.join("vm-intro.wav"))?;
    let rate = test.rate;
    let train_clips = ["vm-instructions.wav", "agent-incorrect.wav"]
        .iter()
        .map(|n| common::wav::read_wav(&audio.join(n)))
        .collect::<Result<Vec<_>>>()?;
    for c in &train_clips {
        ensure!(
            c.rate == rate,
            "{}: {} Hz, the test clip has {rate} Hz",
            c.name,
            c.rate
        );
    }
    let ctx = common::gpu()?;
    println!("{}", common::describe_adapter(&ctx));
    println!(
        "test clip vm-intro.wav ({:.2} s at {rate} Hz); tables trained on vm-instructions.wav + \
         agent-incorrect.wav; C = {:?}, ≤ {} training windows",
        test.samples.len() as f64 / rate as f64,
        o.codebooks,
        o.max_windows
    );
    common::make_out_dir(&o.out)?;
    write_wav(&o.out.join("input.wav"), rate, &test.samples, 1.0)?;
    let x = Tensor::new(vec![1, 1, test.samples.len()], test.samples.clone())?;
    let xg = ctx.upload("reverb input", &x)?;
    let trains: Vec<Tensor> = train_clips
        .iter()
        .map(|c| Tensor::new(vec![1, 1, c.samples.len()], c.samples.clone()))
        .collect::<maddconv::Result<_>>()?;
    let reps = Repetitions {
        warmup: 2,
        timed: o.reps,
    };
    let mut rows = Vec::new();
    let mut table = maddconv::bench::Table::new(&[
        "taps",
        "room RT60 s",
        "method",
        "kernel ms",
        "× vs direct",
        "SNR dB",
        "1 − NMSE",
    ]);
    for &k in &o.taps {
        let t = Instant::now();
        let rt60 = (k as f64 / rate as f64).max(MIN_RT60);
        let room = ShoeboxRoom::seeded(rt60, rate as f64, k as u64)?;
        let mut h = room.impulse_response(k)?;
        let measured = schroeder_rt60(&h, rate as f64);
        let e = h.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-30);
        h.iter_mut().for_each(|v| *v /= e);
        eprintln!(
            "{k} taps: room {:.2} × {:.2} × {:.2} m, walls reflect {:.3}, source–mic {:.2} m, \
             T20 {}, made in {:.1} s",
            room.size[0],
            room.size[1],
            room.size[2],
            room.reflection,
            room.direct_distance(),
            measured.map_or("-".into(), |t| format!("{t:.3} s")),
            t.elapsed().as_secs_f64()
        );
        let layer = reverb_layer(&h)?;
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
            for &c in &o.codebooks {
                let c = c.min(k);
                let t = Instant::now();
                let tables = train(
                    &layer,
                    &trains,
                    &TrainConfig {
                        codebooks: Some(c),
                        max_windows: Some(o.max_windows),
                        keep_f32_tables: false,
                        ..TrainConfig::default()
                    },
                )?;
                let secs = t.elapsed().as_secs_f64();
                eprintln!("  C = {c} trained in {secs:.1} s");
                convs.push((
                    format!("maddness C={c}"),
                    Box::new(MaddnessConv::new(&ctx, &tables)?),
                    Some(secs),
                ));
            }
        }
        let shape = layer.output_shape(x.shape())?;
        let outs = convs
            .iter()
            .map(|_| ctx.create_tensor("reverb output", &shape))
            .collect::<maddconv::Result<Vec<_>>>()?;
        let methods: Vec<Method> = convs
            .iter()
            .zip(&outs)
            .map(|((_, c, _), y)| Method {
                conv: c.as_ref(),
                input: &xg,
                output: y,
            })
            .collect();
        let ys = methods
            .iter()
            .map(|m| pollster::block_on(m.checked_output(&ctx)))
            .collect::<maddconv::Result<Vec<_>>>()?;
        let times = pollster::block_on(time_interleaved(&ctx, &methods, reps))?;
        let peak = exact.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
        let gain = (0.9 / peak) as f32;
        for (((name, _, train_s), y), t) in convs.iter().zip(&ys).zip(&times) {
            let (snr, q) = errors(y.data(), &exact);
            let file = format!("reverb_{k}_{}.wav", name.replace(" C=", "-"));
            write_wav(&o.out.join(file), rate, y.data(), gain)?;
            let speedup = times[0].median_ms / t.median_ms;
            table.row(vec![
                k.to_string(),
                format!("{rt60:.3}"),
                name.clone(),
                format!("{:.3}", t.median_ms),
                format!("{speedup:.2}"),
                format!("{snr:.1}"),
                format!("{q:.5}"),
            ]);
            rows.push(Row {
                taps: k,
                seconds: k as f64 / rate as f64,
                room_size_m: room.size,
                room_rt60_s: rt60,
                wall_reflection: room.reflection,
                measured_rt60_s: measured,
                method: name.clone(),
                kernel_ms: t.median_ms,
                speedup_vs_direct: speedup,
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
    plot(&o.out.join("reverb.svg"), &rows, &ctx.summary().to_string())?;
    println!("wrote {}", o.out.display());
    Ok(())
}

/// Kernel time (x, log) against SNR (y) of every row, one colour per method, each point
/// labelled with its length in taps.
fn plot(path: &Path, rows: &[Row], adapter: &str) -> Result<()> {
    maddconv::plot::register_font()?;
    let err = |e: DrawingAreaErrorKind<std::io::Error>| anyhow::anyhow!("drawing the plot: {e}");
    let (lo, hi) = rows.iter().fold((f64::INFINITY, 0f64), |(lo, hi), r| {
        (lo.min(r.kernel_ms), hi.max(r.kernel_ms))
    });
    let top = rows.iter().map(|r| r.snr_db).fold(0f64, f64::max) + 10.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Reverb on held-out speech: time against error — {adapter}"),
                ("sans-serif", 18),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(((lo / 1.5)..(hi * 1.5)).log_scale(), 0f64..top)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("kernel time, ms (log scale, median, interleaved)")
            .y_desc("SNR against the f64 reference, dB")
            .axis_desc_style(("sans-serif", 15))
            .label_style(("sans-serif", 13))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut methods: Vec<&str> = Vec::new();
        for r in rows {
            if !methods.contains(&r.method.as_str()) {
                methods.push(&r.method);
            }
        }
        for (i, m) in methods.iter().enumerate() {
            let colour = maddconv::plot::COLOURS[i % maddconv::plot::COLOURS.len()];
            let pts: Vec<(f64, f64, usize)> = rows
                .iter()
                .filter(|r| r.method == *m)
                .map(|r| (r.kernel_ms, r.snr_db, r.taps))
                .collect();
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|&(x, y, _)| (x, y)),
                    colour.stroke_width(1),
                ))
                .map_err(err)?
                .label(m.to_string())
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, colour.filled()));
            chart
                .draw_series(pts.iter().map(|&(x, y, k)| {
                    EmptyElement::at((x, y))
                        + Circle::new((0, 0), 5, colour.filled())
                        + Text::new(format!("{k}"), (6, -14), ("sans-serif", 11))
                }))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    maddconv::tensor::write_atomic(path, |w| std::io::Write::write_all(w, svg.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
