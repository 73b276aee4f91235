//! Text detection with the ddddocr detector (a YOLOX-style ONNX model), exact and with chosen
//! convs replaced by MADDNESS tables: the boxes of both drawn side by side on each photo, and
//! the recall and precision of the replaced model's boxes against the exact model's (greedy
//! one-to-one matching at IoU ≥ 0.5).
//!
//! ```text
//! cargo run --release --example text_detect                   # ../shared/data/models/ddddocr_det
//! cargo run --release --example text_detect -- --images a.png,b.png
//!     [--model M.onnx] [--calib calib.npy] [--test rows.npy] [--layers Conv_76,...]
//!     [--codebooks C] [--cpu] [--out DIR]
//! ```
//!
//! Inputs are 416×416 letterboxed photos, BGR, integer values 0..255 as f32, NCHW (ddddocr
//! 1.6.1's `DetectionEngine.preproc`; see `../shared/data/models/ddddocr_det/README.md`). By
//! default the test rows are that folder's `test_text.npy` (four photos with words drawn on
//! them) and the tables are calibrated sequentially on its `calib.npy` (other photos), by
//! default for the two convs `model calibrate --layers auto` chose (BENCHMARKS.md). With
//! `--images`, PNGs are letterboxed here: scaled by `r = min(416/h, 416/w)` with a bilinear
//! (triangle) filter whose support widens when shrinking, the scheme of Pillow's BILINEAR that
//! made the shared data (not checked pixel for pixel against it; ddddocr itself uses OpenCV's
//! resize, so boxes can differ slightly), placed
//! top-left on a canvas of 114. Boxes are decoded as ddddocr's `get_bbox` does (score > 0.1,
//! NMS at IoU 0.45; `maddconv::model::boxes`). Outputs under `--out` (default
//! `out/text_detect/`): `rowN.png`, exact boxes (green) left, replaced (red) right.

mod common;

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use common::imageio::{grid, Rgb};
use maddconv::model::boxes::{decode_yolox, match_boxes, BoxAgreement, Detection, YoloxDecode};
use maddconv::model::{self, Backend, Replacements};
use maddconv::Tensor;

const USAGE: &str =
    "usage: text_detect [--images A.png,B.png | --test rows.npy] [--calib calib.npy] \
                     [--model M.onnx] [--layers NAMES] [--codebooks C] [--cpu] [--out DIR]";
const SIDE: usize = 416;

/// Resamples one axis with a triangle filter (support scaled by the shrink factor).
fn resample_axis(src: &[f32], n_in: usize, n_out: usize, stride: usize, lines: usize) -> Vec<f32> {
    let scale = n_in as f64 / n_out as f64;
    let support = scale.max(1.0);
    let mut out = vec![0f32; n_out * lines];
    for o in 0..n_out {
        let centre = (o as f64 + 0.5) * scale;
        let lo = ((centre - support).floor().max(0.0)) as usize;
        let hi = ((centre + support).ceil() as usize).min(n_in);
        let weights: Vec<(usize, f64)> = (lo..hi)
            .map(|i| {
                (
                    i,
                    (1.0 - ((i as f64 + 0.5 - centre) / support).abs()).max(0.0),
                )
            })
            .filter(|(_, w)| *w > 0.0)
            .collect();
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        for l in 0..lines {
            let v: f64 = weights
                .iter()
                .map(|&(i, w)| w * src[l * stride + i] as f64)
                .sum();
            out[l * n_out + o] = (v / total) as f32;
        }
    }
    out
}

/// ddddocr's letterbox of a photo: `[1, 3, 416, 416]` BGR 0..255, and the ratio r.
fn letterbox(img: &Rgb) -> Result<(Tensor, f64)> {
    let r = (SIDE as f64 / img.height as f64).min(SIDE as f64 / img.width as f64);
    let (nw, nh) = (
        ((img.width as f64 * r) as usize).max(1),
        ((img.height as f64 * r) as usize).max(1),
    );
    let mut data = vec![114f32; 3 * SIDE * SIDE];
    for c in 0..3 {
        let plane: Vec<f32> = (0..img.width * img.height)
            .map(|i| img.data[i * 3 + c] as f32)
            .collect();
        // Rows first (width), then columns (height) on the transposed result.
        let wide = resample_axis(&plane, img.width, nw, img.width, img.height);
        let mut cols = vec![0f32; nw * img.height];
        for y in 0..img.height {
            for x in 0..nw {
                cols[x * img.height + y] = wide[y * nw + x];
            }
        }
        let tall = resample_axis(&cols, img.height, nh, img.height, nw);
        let bgr = 2 - c;
        for y in 0..nh {
            for x in 0..nw {
                data[(bgr * SIDE + y) * SIDE + x] = tall[x * nh + y].round().clamp(0.0, 255.0);
            }
        }
    }
    Ok((Tensor::new(vec![1, 3, SIDE, SIDE], data)?, r))
}

/// A preprocessed row back to an RGB picture.
fn to_rgb(x: &Tensor) -> Rgb {
    let d = x.data();
    let mut img = Rgb::filled(SIDE, SIDE, [0, 0, 0]);
    for y in 0..SIDE {
        for xx in 0..SIDE {
            for c in 0..3 {
                img.data[(y * SIDE + xx) * 3 + c] =
                    d[((2 - c) * SIDE + y) * SIDE + xx].clamp(0.0, 255.0) as u8;
            }
        }
    }
    img
}

fn draw_boxes(img: &mut Rgb, boxes: &[Detection], colour: [u8; 3]) {
    let (w, h) = (img.width as i64, img.height as i64);
    let mut put = |x: i64, y: i64| {
        if x >= 0 && y >= 0 && x < w && y < h {
            let i = ((y * w + x) * 3) as usize;
            img.data[i..i + 3].copy_from_slice(&colour);
        }
    };
    for b in boxes {
        let [x0, y0, x1, y1] = b.bbox.map(|v| v.round() as i64);
        for t in 0..2 {
            for x in x0..=x1 {
                put(x, y0 + t);
                put(x, y1 - t);
            }
            for y in y0..=y1 {
                put(x0 + t, y);
                put(x1 - t, y);
            }
        }
    }
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let dir = common::default_data_dir().join("models/ddddocr_det");
    let mut model_path = dir.join("model.onnx");
    let mut calib = dir.join("calib.npy");
    let mut test = Some(dir.join("test_text.npy"));
    let mut images: Vec<PathBuf> = Vec::new();
    let mut layers = "Conv_248,Conv_251".to_string();
    let mut codebooks = 64usize;
    let mut cpu = false;
    let mut out = PathBuf::from("out/text_detect");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        common::exit_on_help(&a, USAGE);
        let mut value = || {
            args.next()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--model" => model_path = PathBuf::from(value()?),
            "--calib" => calib = PathBuf::from(value()?),
            "--test" => test = Some(PathBuf::from(value()?)),
            "--images" => {
                images = value()?.split(',').map(PathBuf::from).collect();
                test = None;
            }
            "--layers" => layers = value()?,
            "--codebooks" => codebooks = common::parse("--codebooks", &value()?)?,
            "--cpu" => cpu = true,
            "--out" => out = PathBuf::from(value()?),
            _ => bail!("unknown argument {a:?}\n{USAGE}"),
        }
    }
    let rows: Vec<Tensor> = match &test {
        Some(p) => {
            let t = Tensor::read_npy(p).with_context(|| format!("reading {}", p.display()))?;
            (0..t.shape().first().copied().unwrap_or(0))
                .map(|i| t.slice_batch(i, i + 1))
                .collect::<maddconv::Result<_>>()?
        }
        None => images
            .iter()
            .map(|p| Ok(letterbox(&Rgb::read_png(p)?)?.0))
            .collect::<Result<_>>()?,
    };
    let calib = Tensor::read_npy(&calib).with_context(|| format!("reading {}", calib.display()))?;
    let (m, calib_runs) = model::load_for(&model_path, &[("images".into(), calib)])?;
    let ctx = if cpu { None } else { Some(common::gpu()?) };
    let backend = ctx.as_ref().map_or(Backend::Cpu, Backend::Gpu);
    if let Some(c) = &ctx {
        println!("{}", common::describe_adapter(c));
    }
    let names: Vec<String> = layers.split(',').map(str::to_string).collect();
    let (tables, secs, share) =
        common::calibrate_model(&m, &calib_runs, &names, codebooks, backend)?;
    println!(
        "{} layer(s) at C = {codebooks} calibrated on {} photos in {:.1} s ({:.1}% of the conv MACs)",
        tables.len(),
        calib_runs.len(),
        secs,
        100.0 * share
    );
    let reps = Replacements::with(backend, &tables)?;
    let decode = YoloxDecode::default();
    common::make_out_dir(&out)?;
    let mut all = BoxAgreement::default();
    for (i, x) in rows.iter().enumerate() {
        let run = vec![x.clone()];
        let exact = m.run(&run)?;
        let approx = m.run_with(&run, &reps.map(), &[], false)?;
        let be = decode_yolox(&exact[0], SIDE, SIDE, &decode)?;
        let ba = decode_yolox(&approx.outputs[0], SIDE, SIDE, &decode)?;
        let a = match_boxes(&be, &ba, decode.match_iou);
        all.add(&a);
        println!(
            "row {i}: {} exact boxes, {} replaced, {} matched: recall {:.1}%, precision {:.1}%",
            a.exact,
            a.approx,
            a.matched,
            100.0 * a.recall(),
            100.0 * a.precision()
        );
        let base = to_rgb(x);
        let (mut left, mut right) = (base.clone(), base);
        draw_boxes(&mut left, &be, [40, 220, 40]);
        draw_boxes(&mut right, &ba, [230, 30, 30]);
        let path = out.join(format!("row{i}.png"));
        grid(&[vec![left, right]], 8).write_png(&path)?;
        println!("  wrote {}", path.display());
    }
    println!(
        "all rows: {} exact boxes, {} replaced, {} matched: recall {:.1}%, precision {:.1}%",
        all.exact,
        all.approx,
        all.matched,
        100.0 * all.recall(),
        100.0 * all.precision()
    );
    Ok(())
}
