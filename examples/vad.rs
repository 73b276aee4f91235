//! Voice activity detection with silero VAD, exact and with chosen convs replaced by MADDNESS
//! tables: speech WAVs → frames → the whole ONNX model (tract) → speech probabilities of the
//! exact and the replaced model, their frame agreement at 0.5, mean |Δp|, the speech segments
//! of both, and a plot of the two curves with the segments under them.
//!
//! ```text
//! cargo run --release --example vad                       # ../shared/data/audio
//! cargo run --release --example vad -- --train a.wav,b.wav --test c.wav,d.wav
//!     [--model silero.onnx] [--layers /encoder.1/Conv,...|all] [--codebooks C] [--cpu]
//!     [--out DIR]
//! ```
//!
//! The model defaults to the repository's copy of silero-vad 6.2.3's 16 kHz sequence export
//! (`tests/fixtures/models/silero_vad/model.onnx`, MIT). WAVs must be 16 kHz (any bit depth,
//! channels averaged). Preprocessing as silero's `sequence_vad.py` (`frame_blocks`): each clip
//! on its own, ⌈len/512⌉ frames of 512 samples (the last zero-padded), each prefixed with the
//! last 64 samples of the previous frame (zeros for the first): rows of 576 samples, all frames
//! of a clip in one model call with `h = c = 0`. Tables are calibrated sequentially on the
//! training clips (default: vm-instructions) and scored on the test clips (default: vm-intro,
//! agent-incorrect — other recordings). Segments follow silero's `get_speech_timestamps`
//! (threshold 0.5, end after ≥ 100 ms below 0.35, segments < 250 ms dropped, 30 ms padding).
//! Outputs under `--out` (default `out/vad/`): `CLIP.svg` (the plot) and `CLIP.csv`
//! (frame, exact p, approximate p).

mod common;

use std::path::PathBuf;

use anyhow::{bail, ensure, Context as _, Result};
use common::wav::read_wav;
use maddconv::model::{Backend, Model, Replacements};
use maddconv::Tensor;
use plotters::prelude::*;

const USAGE: &str = "usage: vad [--train A.wav,B.wav] [--test C.wav,D.wav] [--model M.onnx] \
                     [--layers NAMES|all] [--codebooks C] [--cpu] [--out DIR]";
const FRAME: usize = 512;
const CONTEXT: usize = 64;
const RATE: u32 = 16_000;

/// silero's frames of one clip: `[T, 576]`.
fn frames(samples: &[f32]) -> Result<Tensor> {
    let t = samples.len().div_ceil(FRAME).max(1);
    let mut data = Vec::with_capacity(t * (CONTEXT + FRAME));
    for i in 0..t {
        for k in 0..CONTEXT + FRAME {
            // Sample index of this row's position: the context is the previous frame's tail.
            let pos = (i * FRAME + k) as isize - CONTEXT as isize;
            data.push(if pos < 0 {
                0.0
            } else {
                samples.get(pos as usize).copied().unwrap_or(0.0)
            });
        }
    }
    Ok(Tensor::new(vec![t, CONTEXT + FRAME], data)?)
}

/// Speech segments in frames (start, end exclusive), as silero's `get_speech_timestamps`.
fn segments(p: &[f32]) -> Vec<(usize, usize)> {
    let ms_per_frame = FRAME as f64 * 1000.0 / RATE as f64;
    let min_silence = (100.0 / ms_per_frame).ceil() as usize;
    let min_speech = (250.0 / ms_per_frame).ceil() as usize;
    let pad = (30.0 / ms_per_frame).round().max(1.0) as usize;
    let (mut out, mut start, mut below) = (Vec::new(), None, 0usize);
    for (i, &v) in p.iter().enumerate() {
        match start {
            None if v > 0.5 => {
                start = Some(i);
                below = 0;
            }
            Some(s) => {
                if v < 0.35 {
                    below += 1;
                    if below >= min_silence {
                        let end = i + 1 - below;
                        if end - s >= min_speech {
                            out.push((s.saturating_sub(pad), (end + pad).min(p.len())));
                        }
                        start = None;
                    }
                } else {
                    below = 0;
                }
            }
            None => {}
        }
    }
    if let Some(s) = start {
        if p.len() - s >= min_speech {
            out.push((s.saturating_sub(pad), p.len()));
        }
    }
    out
}

fn plot(path: &PathBuf, title: &str, exact: &[f32], approx: &[f32]) -> Result<()> {
    register_font()?;
    let root = SVGBackend::new(path, (1200, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let secs = |i: usize| i as f64 * FRAME as f64 / RATE as f64;
    let n = exact.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..secs(n), -0.35f64..1.05f64)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("speech probability")
        .draw()?;
    let exact_colour = RGBColor(31, 119, 180);
    let approx_colour = RGBColor(214, 39, 40);
    for (data, colour, label, lane) in [
        (exact, exact_colour, "exact model", -0.12),
        (approx, approx_colour, "replaced convs", -0.27),
    ] {
        chart
            .draw_series(LineSeries::new(
                data.iter().enumerate().map(|(i, &v)| (secs(i), v as f64)),
                colour.stroke_width(2),
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        for (s, e) in segments(data) {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(secs(s), lane), (secs(e), lane + 0.1)],
                colour.mix(0.6).filled(),
            )))?;
        }
    }
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.5), (secs(n), 0.5)],
            BLACK.mix(0.3),
        ))?
        .label("threshold 0.5; bars: speech segments")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.3)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn register_font() -> Result<()> {
    use plotters::style::FontStyle;
    static ONCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *ONCE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
    });
    ensure!(ok, "the embedded DejaVu Sans font could not be loaded");
    Ok(())
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let audio = common::default_data_dir().join("audio");
    let mut train: Vec<PathBuf> = vec![audio.join("vm-instructions.wav")];
    let mut test: Vec<PathBuf> = vec![
        audio.join("vm-intro.wav"),
        audio.join("agent-incorrect.wav"),
    ];
    let mut model_path = common::repo_root().join("tests/fixtures/models/silero_vad/model.onnx");
    let mut layers = "/encoder.0/Conv,/encoder.1/Conv,/encoder.2/Conv,/encoder.3/Conv".to_string();
    let mut codebooks = 64usize;
    let mut cpu = false;
    let mut out = PathBuf::from("out/vad");
    let list = |v: &str| v.split(',').map(PathBuf::from).collect::<Vec<_>>();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        common::exit_on_help(&a, USAGE);
        let mut value = || {
            args.next()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--train" => train = list(&value()?),
            "--test" => test = list(&value()?),
            "--model" => model_path = PathBuf::from(value()?),
            "--layers" => layers = value()?,
            "--codebooks" => codebooks = common::parse("--codebooks", &value()?)?,
            "--cpu" => cpu = true,
            "--out" => out = PathBuf::from(value()?),
            _ => bail!("unknown argument {a:?}\n{USAGE}"),
        }
    }
    let read = |paths: &[PathBuf]| -> Result<Vec<(String, Tensor)>> {
        paths
            .iter()
            .map(|p| {
                let clip = read_wav(p)?;
                ensure!(
                    clip.rate == RATE,
                    "{}: {} Hz; silero VAD's sequence model takes {RATE} Hz",
                    p.display(),
                    clip.rate
                );
                Ok((clip.name.clone(), frames(&clip.samples)?))
            })
            .collect()
    };
    let (train, test) = (read(&train)?, read(&test)?);
    let zeros = Tensor::zeros(vec![1, 1, 128])?;
    let run_of = |x: &Tensor| vec![x.clone(), zeros.clone(), zeros.clone()];
    let m = Model::load(
        &model_path,
        &[
            ("input".into(), train[0].1.shape().to_vec()),
            ("h".into(), vec![1, 1, 128]),
            ("c".into(), vec![1, 1, 128]),
        ],
    )?;
    let names: Vec<String> = if layers == "all" {
        m.convs().iter().map(|c| c.name.clone()).collect()
    } else {
        layers.split(',').map(str::to_string).collect()
    };
    let ctx = if cpu { None } else { Some(common::gpu()?) };
    let backend = ctx.as_ref().map_or(Backend::Cpu, Backend::Gpu);
    if let Some(c) = &ctx {
        println!("{}", common::describe_adapter(c));
    }
    let train_runs: Vec<Vec<Tensor>> = train.iter().map(|(_, x)| run_of(x)).collect();
    let (tables, secs, share) =
        common::calibrate_model(&m, &train_runs, &names, codebooks, backend)?;
    println!(
        "{} layer(s) at C = {codebooks} calibrated on {} in {:.1} s ({:.1}% of the conv MACs)",
        tables.len(),
        train
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        secs,
        100.0 * share
    );
    let reps = Replacements::with(backend, &tables)?;
    common::make_out_dir(&out)?;
    let (mut agree, mut frames_all, mut sum_abs) = (0usize, 0usize, 0f64);
    for (name, x) in &test {
        let exact = m.run(&run_of(x))?;
        let approx = m.run_with(&run_of(x), &reps.map(), &[], false)?;
        let (pe, pa) = (exact[0].data(), approx.outputs[0].data());
        let a = pe
            .iter()
            .zip(pa)
            .filter(|(e, a)| (**e > 0.5) == (**a > 0.5))
            .count();
        let mad = pe
            .iter()
            .zip(pa)
            .map(|(e, a)| (e - a).abs() as f64)
            .sum::<f64>();
        agree += a;
        frames_all += pe.len();
        sum_abs += mad;
        let fmt = |s: &[(usize, usize)]| {
            s.iter()
                .map(|(a, b)| {
                    let t = |i: usize| i as f64 * FRAME as f64 / RATE as f64;
                    format!("{:.2}-{:.2}", t(*a), t(*b))
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "{name}: {} frames, agreement at 0.5 {:.2}%, mean |dp| {:.4}\n  exact segments (s):    {}\n  replaced segments (s): {}",
            pe.len(),
            100.0 * a as f64 / pe.len() as f64,
            mad / pe.len() as f64,
            fmt(&segments(pe)),
            fmt(&segments(pa))
        );
        let svg = out.join(format!("{name}.svg"));
        plot(
            &svg,
            &format!(
                "{name}: silero VAD, exact vs {} convs replaced (C = {codebooks})",
                tables.len()
            ),
            pe,
            pa,
        )?;
        let csv: String = std::iter::once("frame,exact,replaced\n".to_string())
            .chain(
                pe.iter()
                    .zip(pa)
                    .enumerate()
                    .map(|(i, (e, a))| format!("{i},{e},{a}\n")),
            )
            .collect();
        std::fs::write(out.join(format!("{name}.csv")), csv)?;
        println!("  wrote {}", svg.display());
    }
    println!(
        "all test clips: agreement {:.2}% of {frames_all} frames, mean |dp| {:.4}",
        100.0 * agree as f64 / frames_all as f64,
        sum_abs / frames_all as f64
    );
    Ok(())
}
