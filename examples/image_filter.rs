//! The image-filtering experiment of the MADDNESS paper (Blalock & Guttag 2021, §5): learn a
//! 3×3 Sobel pair and a 5×5 Gaussian pair (σ = 1, 2) over the RGB windows of some photos,
//! then apply each pair exactly (direct kernel) and approximately (MADDNESS tables) on the GPU
//! to other photos; print the held-out error and the kernel times, and write side-by-side
//! PNGs: original | exact | approximate | error map.
//!
//! ```text
//! cargo run --release --example image_filter                      # the photos in assets/
//! cargo run --release --example image_filter -- --images ../shared/data/images
//!     [--test NAME,NAME] [--codebooks C] [--max-side PX] [--max-windows N] [--reps N]
//!     [--out DIR]
//! ```
//!
//! With no arguments it trains on `assets/chelsea.png` and tests on `assets/astronaut.png`
//! (both embedded in the binary, so it runs on a fresh clone). With `--images DIR` it reads
//! every `.png` in DIR (shrunk by an integer box factor to at most `--max-side` pixels a side),
//! tests on the photos named by `--test` (file stems; default: every third photo in name
//! order) and trains on the others.
//!
//! Each filter pair is one conv2d layer with 3 input channels and 2 outputs that applies the
//! filter to the mean of R, G and B (window D = 3·K², as in the paper), valid windows only.
//! Pictures (one PNG per test photo and filter, under `--out`, default `out/image_filter/`):
//! * Sobel: one row, the gradient magnitude `√(gx² + gy²)`, scaled so that the 99th percentile
//!   of the exact magnitude is white; the error map is the length of the error vector
//!   `√((ĝx − gx)² + (ĝy − gy)²)` at the same scale, in heat colours (black → red → yellow →
//!   white).
//! * Gaussian: two rows (σ = 1, σ = 2), the blurred mean of R, G, B on its own [0, 1] scale;
//!   the error map is `|ŷ − y|` × 4 in heat colours.
//!
//! The original is cropped by K/2 pixels a side so that all panels align.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context as _, Result};
use common::imageio::{gray, grid, heat, Rgb};
use maddconv::bench::Repetitions;
use maddconv::filters::{ColourMix, ImageFilter};
use maddconv::metrics::relative_l2;
use maddconv::reference::conv_reference;
use maddconv::Tensor;

const USAGE: &str = "usage: image_filter [--images DIR] [--test NAME,NAME] [--codebooks C] \
[--max-side PX] [--max-windows N] [--reps N] [--no-augment] [--out DIR]";

/// The photos kept in the repository (see assets/NOTICE.md).
const EMBEDDED: [(&str, &[u8]); 2] = [
    ("chelsea", include_bytes!("../assets/chelsea.png")),
    ("astronaut", include_bytes!("../assets/astronaut.png")),
];

/// Gain of the Gaussian error maps relative to the image scale.
const GAUSSIAN_ERROR_GAIN: f32 = 4.0;

struct Options {
    images: Option<PathBuf>,
    test: Option<Vec<String>>,
    codebooks: usize,
    max_side: usize,
    max_windows: usize,
    reps: usize,
    augment: bool,
    out: PathBuf,
}

fn options() -> Result<Options> {
    let mut o = Options {
        images: None,
        test: None,
        codebooks: 16,
        max_side: 384,
        max_windows: 100_000,
        reps: 30,
        augment: true,
        out: PathBuf::from("out/image_filter"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        common::exit_on_help(&a, USAGE);
        if a == "--no-augment" {
            o.augment = false;
            continue;
        }
        let value = common::flag_value(&mut args, &a, USAGE)?;
        match a.as_str() {
            "--images" => o.images = Some(PathBuf::from(value)),
            "--test" => o.test = Some(value.split(',').map(|s| s.trim().to_string()).collect()),
            "--codebooks" => o.codebooks = common::parse(&a, &value)?,
            "--max-side" => o.max_side = common::parse(&a, &value)?,
            "--max-windows" => o.max_windows = common::parse(&a, &value)?,
            "--reps" => o.reps = common::parse(&a, &value)?,
            "--out" => o.out = PathBuf::from(value),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    ensure!(o.codebooks >= 1, "--codebooks must be at least 1");
    ensure!(
        o.max_side >= 16,
        "--max-side {} is below 16 pixels",
        o.max_side
    );
    common::check_windows_and_reps(o.max_windows, o.reps)?;
    Ok(o)
}

/// (name, photo) pairs: train set and test set.
type Photos = Vec<(String, Rgb)>;

fn load_photos(o: &Options) -> Result<(Photos, Photos)> {
    let Some(dir) = &o.images else {
        ensure!(
            o.test.is_none(),
            "--test picks photos of --images DIR; without --images the split is fixed \
             (train on chelsea, test on astronaut)"
        );
        let mut photos = EMBEDDED
            .iter()
            .map(|(name, bytes)| Ok((name.to_string(), Rgb::decode_png(bytes, name)?)))
            .collect::<Result<Vec<_>>>()?;
        let test = photos.split_off(1);
        return Ok((photos, test));
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("--images {}: cannot list the folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    ensure!(
        files.len() >= 2,
        "--images {}: {} PNG file(s) found, need at least 2 (some to train on, some to test on)",
        dir.display(),
        files.len()
    );
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let is_test: Vec<bool> = match &o.test {
        Some(names) => {
            for n in names {
                ensure!(
                    files.iter().any(|f| &stem(f) == n),
                    "--test {n:?}: no {n}.png in {}",
                    dir.display()
                );
            }
            files.iter().map(|f| names.contains(&stem(f))).collect()
        }
        None => (0..files.len()).map(|i| i % 3 == 2).collect(),
    };
    ensure!(
        is_test.iter().any(|&t| !t) && is_test.iter().any(|&t| t),
        "--test must leave at least one photo to train on and name at least one to test on"
    );
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (f, t) in files.iter().zip(is_test) {
        let photo = Rgb::read_png(f)?.shrink_to(o.max_side);
        let entry = (stem(f), photo);
        if t {
            test.push(entry)
        } else {
            train.push(entry)
        }
    }
    Ok((train, test))
}

/// The training variants of a photo: itself and, with `on`, its mirror image, its negative
/// (1 − x) and its two channel rotations (GBR, BRG). The filters read the mean of the channels,
/// so none of these changes what the layer computes; they widen the range of windows the trees
/// see (colours and dark areas a single training photo lacks).
fn augment(photo: &Rgb, on: bool) -> Vec<Tensor> {
    let x = photo.to_tensor();
    if !on {
        return vec![x];
    }
    let (h, w) = (photo.height, photo.width);
    let plane = h * w;
    let map = |f: &dyn Fn(usize, usize, usize) -> f32| {
        let mut v = vec![0.0f32; 3 * plane];
        for c in 0..3 {
            for y in 0..h {
                for xx in 0..w {
                    v[c * plane + y * w + xx] = f(c, y, xx);
                }
            }
        }
        Tensor::new(vec![1, 3, h, w], v).expect("1×3×H×W")
    };
    let d = x.data();
    let at = |c: usize, y: usize, xx: usize| d[c * plane + y * w + xx];
    vec![
        x.clone(),
        map(&|c, y, xx| at(c, y, w - 1 - xx)),
        map(&|c, y, xx| 1.0 - at(c, y, xx)),
        map(&|c, y, xx| at((c + 1) % 3, y, xx)),
        map(&|c, y, xx| at((c + 2) % 3, y, xx)),
    ]
}

/// Channel `m` of a `1×O×H×W` output.
fn channel(t: &Tensor, m: usize) -> &[f32] {
    let p = t.shape()[2] * t.shape()[3];
    &t.data()[m * p..(m + 1) * p]
}

/// The `q`-quantile of `values` (0 ≤ q ≤ 1).
fn quantile(values: &[f32], q: f64) -> f32 {
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// The picture rows for one filter: each row is [original, exact, approximate, error].
fn picture(filter: ImageFilter, photo: &Rgb, exact: &Tensor, approx: &Tensor) -> Vec<Vec<Rgb>> {
    let (h, w) = (exact.shape()[2], exact.shape()[3]);
    let r = filter.kernel_size() / 2;
    let original = photo.crop(r, r, h, w);
    let heatmap = |e: Vec<f32>| Rgb {
        width: w,
        height: h,
        data: e.into_iter().flat_map(heat).collect(),
    };
    match filter {
        ImageFilter::Sobel => {
            let mag = |t: &Tensor| -> Vec<f32> {
                channel(t, 0)
                    .iter()
                    .zip(channel(t, 1))
                    .map(|(x, y)| x.hypot(*y))
                    .collect()
            };
            let (me, ma) = (mag(exact), mag(approx));
            let gain = 1.0 / quantile(&me, 0.99).max(1e-6);
            let scaled = |v: &[f32]| v.iter().map(|x| x * gain).collect::<Vec<_>>();
            let err: Vec<f32> = (0..h * w)
                .map(|i| {
                    let dx = approx.data()[i] - exact.data()[i];
                    let dy = approx.data()[h * w + i] - exact.data()[h * w + i];
                    dx.hypot(dy) * gain
                })
                .collect();
            vec![vec![
                original,
                gray(&scaled(&me), h, w),
                gray(&scaled(&ma), h, w),
                heatmap(err),
            ]]
        }
        ImageFilter::Gaussian => (0..2)
            .map(|m| {
                let (e, a) = (channel(exact, m), channel(approx, m));
                let err = e
                    .iter()
                    .zip(a)
                    .map(|(x, y)| (y - x).abs() * GAUSSIAN_ERROR_GAIN)
                    .collect();
                vec![original.clone(), gray(e, h, w), gray(a, h, w), heatmap(err)]
            })
            .collect(),
    }
}

fn main() -> Result<()> {
    let o = options()?;
    let started = Instant::now();
    let (train_photos, test_photos) = load_photos(&o)?;
    let describe = |set: &Photos| {
        set.iter()
            .map(|(n, p)| format!("{n} ({}×{})", p.width, p.height))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("image_filter: the MADDNESS paper's image-filtering experiment");
    match &o.images {
        None => println!("photos: embedded in the binary (assets/, see assets/NOTICE.md)"),
        Some(d) => println!(
            "photos: {} (shrunk to ≤ {} px a side)",
            d.display(),
            o.max_side
        ),
    }
    println!("train on: {}", describe(&train_photos));
    println!("test on:  {}", describe(&test_photos));
    let ctx = common::gpu()?;
    println!("adapter: {}", common::describe_adapter(&ctx));
    common::make_out_dir(&o.out)?;

    let train_x: Vec<Tensor> = train_photos
        .iter()
        .flat_map(|(_, p)| augment(p, o.augment))
        .collect();
    let reps = Repetitions {
        warmup: 3,
        timed: o.reps,
    };
    let mut summary = Vec::new();
    for filter in ImageFilter::ALL {
        let (spec, weight) = filter.layer(ColourMix::Mean, 0);
        let d = spec.in_channels * spec.kernel.iter().product::<usize>();
        let c = o.codebooks.min(d);
        let (tables, report, train_s) =
            common::train_timed(&spec, &weight, None, &train_x, c, o.max_windows)?;
        println!(
            "\n{}: {}; D = {d}, C = {c} codebooks; trained on {} of {} windows in {train_s:.2} s",
            filter.name(),
            spec.describe(),
            report.windows_trained,
            report.windows_available
        );
        let mut outputs = Vec::new();
        for (name, photo) in &test_photos {
            let x = photo.to_tensor();
            let cmp = common::compare(&ctx, &spec, &weight, None, &tables, &x, reps)?;
            let reference = conv_reference(&spec, &x, &weight, None)?;
            let exact_err = relative_l2(cmp.exact.data(), reference.data());
            ensure!(
                exact_err < 1e-5,
                "{name}: the direct kernel differs from the f64 reference (relative L2 {exact_err:.2e})"
            );
            let one_minus = common::one_minus_nmse_over(&[(&cmp.approx, &reference)])?;
            println!(
                "  {name}: 1 − NMSE {one_minus:.4}; kernel time direct ({}) {:.3} ms, MADDNESS ({}) {:.3} ms → {:.2}× (medians of {}, {} clock); direct vs f64 reference: relative L2 {exact_err:.1e}",
                cmp.direct_kernel,
                cmp.direct.median_ms,
                cmp.maddness_kernels,
                cmp.maddness.median_ms,
                cmp.direct.median_ms / cmp.maddness.median_ms,
                cmp.direct.repetitions,
                cmp.direct.clock,
            );
            let rows = picture(filter, photo, &cmp.exact, &cmp.approx);
            let path = o.out.join(format!("{name}_{}.png", filter.name()));
            grid(&rows, 4).write_png(&path)?;
            println!("    wrote {}", path.display());
            summary.push(serde_json::json!({
                "filter": filter.name(),
                "photo": name,
                "shape": x.shape(),
                "codebooks": c,
                "one_minus_nmse": one_minus,
                "direct_kernel": cmp.direct_kernel,
                "direct_ms": cmp.direct.median_ms,
                "maddness_kernels": cmp.maddness_kernels,
                "maddness_ms": cmp.maddness.median_ms,
                "clock": cmp.direct.clock,
                "repetitions": cmp.direct.repetitions,
                "picture": path.display().to_string(),
            }));
            outputs.push((cmp.approx, reference));
        }
        let pairs: Vec<(&Tensor, &Tensor)> = outputs.iter().map(|(a, e)| (a, e)).collect();
        let all = common::one_minus_nmse_over(&pairs)?;
        println!("  all test photos: 1 − NMSE {all:.4} (held out: none of them was trained on)");
    }
    let summary_path = o.out.join("summary.json");
    let json = serde_json::json!({
        "adapter": ctx.summary().to_string(),
        "train": train_photos.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "test": test_photos.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "panels": "original | exact (direct kernel) | approximate (MADDNESS) | error map",
        "sobel_scale": "gradient magnitude, 99th percentile of the exact one = white; error = length of the error vector at the same scale",
        "gaussian_scale": format!("blurred mean of R, G, B on [0, 1]; error = |approx − exact| × {GAUSSIAN_ERROR_GAIN}"),
        "rows": summary,
    });
    common::write_json(&summary_path, &json)?;
    println!(
        "\npanels: original | exact (direct kernel) | approximate (MADDNESS) | error map (heat colours)"
    );
    println!(
        "wrote {} pictures and {} in {:.1} s",
        test_photos.len() * 2,
        summary_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
