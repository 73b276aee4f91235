//! One real layer of the data set, end to end: learn MADDNESS tables on its `train.npy`,
//! apply them on the GPU to `test.npy` (inputs from other sources, never trained on) next to
//! the exact direct kernel, compare both with `test_expected.npy` (the layer's output computed
//! by another engine: onnxruntime or float64 numpy) and time both methods interleaved.
//!
//! ```text
//! cargo run --release --example real_layer -- ddddocr_det_L21
//!     [--data DIR] [--codebooks C,C,...] [--max-windows N] [--reps N] [--out DIR]
//! ```
//!
//! `NAME` is a folder of `DIR/layers` (default `../shared/data`, or `MADDCONV_DATA`), or a path
//! to any layer folder (`layer.json`, `weight.npy`, [`bias.npy`], `train.npy`, `test.npy`,
//! `test_expected.npy`). Writes, under `--out` (default `out/real_layer/NAME/`), the table file
//! of each C (`tables_C.safetensors`, usable with `maddconv eval` / `maddconv run`) and
//! `summary.json`.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, ensure, Context as _, Result};
use maddconv::bench::Repetitions;
use maddconv::data::LayerDir;
use maddconv::maddness::{HeldOut, Tables};
use maddconv::metrics::nmse;
use maddconv::metrics::relative_l2;

const USAGE: &str = "usage: real_layer NAME [--data DIR] [--codebooks C,C,...] \
[--max-windows N] [--reps N] [--out DIR]";

struct Options {
    name: String,
    data: PathBuf,
    codebooks: Option<Vec<usize>>,
    max_windows: usize,
    reps: usize,
    out: Option<PathBuf>,
}

fn options() -> Result<Options> {
    let mut name = None;
    let mut o = Options {
        name: String::new(),
        data: common::default_data_dir(),
        codebooks: None,
        max_windows: 200_000,
        reps: 30,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        common::exit_on_help(&a, USAGE);
        if !a.starts_with("--") {
            ensure!(
                name.is_none(),
                "one layer at a time: got {:?} and {a:?}\n{USAGE}",
                name.unwrap_or_default()
            );
            name = Some(a);
            continue;
        }
        let value = common::flag_value(&mut args, &a, USAGE)?;
        match a.as_str() {
            "--data" => o.data = PathBuf::from(value),
            "--codebooks" => o.codebooks = Some(common::parse_list(&a, &value)?),
            "--max-windows" => o.max_windows = common::parse(&a, &value)?,
            "--reps" => o.reps = common::parse(&a, &value)?,
            "--out" => o.out = Some(PathBuf::from(value)),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    o.name = name.with_context(|| format!("which layer? {USAGE}"))?;
    common::check_windows_and_reps(o.max_windows, o.reps)?;
    Ok(o)
}

fn open_layer(o: &Options) -> Result<LayerDir> {
    let as_path = PathBuf::from(&o.name);
    let dir = if as_path.join("layer.json").is_file() {
        as_path
    } else {
        o.data.join("layers").join(&o.name)
    };
    if !dir.join("layer.json").is_file() {
        let known = LayerDir::list(o.data.join("layers"))
            .map(|l| l.into_iter().map(|d| d.name).collect::<Vec<_>>().join(", "))
            .unwrap_or_else(|_| format!("none: {} has no layers/ folder", o.data.display()));
        bail!(
            "layer {:?}: no layer.json in {} (layers known: {known})",
            o.name,
            dir.display()
        );
    }
    Ok(LayerDir::open(&dir)?)
}

fn main() -> Result<()> {
    let o = options()?;
    let started = Instant::now();
    let layer = open_layer(&o)?;
    let weight = layer.weight()?;
    let bias = layer.bias()?;
    let train = layer
        .train()
        .context("this example trains on the layer's train.npy")?;
    let test = layer.test()?;
    let expected = layer.test_expected()?;
    let spec = &layer.spec;
    let g = spec.geometry(test.shape())?;
    let d = g.window_len();
    println!("real_layer: {} ({})", layer.name, layer.path.display());
    println!(
        "layer: {}; window D = {d}; train.npy {:?}, test.npy {:?}",
        spec.describe(),
        train.shape(),
        test.shape()
    );
    let ctx = common::gpu()?;
    println!("adapter: {}", common::describe_adapter(&ctx));
    let out = o
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out/real_layer").join(&layer.name));
    common::make_out_dir(&out)?;
    let codebooks: Vec<usize> = match &o.codebooks {
        Some(c) => c.clone(),
        None => [8, 16, 32, 64].into_iter().filter(|&c| c <= d).collect(),
    };
    for &c in &codebooks {
        ensure!(
            (1..=d).contains(&c),
            "--codebooks {c}: must be between 1 and the window length D = {d}"
        );
    }
    let reps = Repetitions {
        warmup: 3,
        timed: o.reps,
    };
    let mut rows = Vec::new();
    println!("\n| C | train s | 1 − NMSE vs test_expected | direct ms | MADDNESS ms | speedup |");
    println!("|---|---|---|---|---|---|");
    let mut direct_note = String::new();
    for &c in &codebooks {
        let (mut tables, report, train_s) = common::train_timed(
            spec,
            &weight,
            bias.as_ref(),
            std::slice::from_ref(&train),
            c,
            o.max_windows,
        )?;
        let cmp = common::compare(&ctx, spec, &weight, bias.as_ref(), &tables, &test, reps)?;
        let exact_rel = relative_l2(cmp.exact.data(), expected.data());
        ensure!(
            exact_rel < 1e-5,
            "the direct kernel differs from test_expected.npy (relative L2 {exact_rel:.2e})"
        );
        let e = nmse(spec.kind, &cmp.approx, &expected)?;
        tables.meta.sources = vec![layer.path.join("train.npy").display().to_string()];
        tables.meta.heldout = Some(HeldOut {
            source: layer.path.join("test.npy").display().to_string(),
            nmse: e,
            nmse_f32_tables: None,
            nmse_after_activation: None,
        });
        let table_path = out.join(format!("tables_{c}.safetensors"));
        save(&tables, &table_path)?;
        direct_note = format!(
            "direct kernel ({}) vs test_expected.npy: relative L2 {exact_rel:.1e}",
            cmp.direct_kernel
        );
        println!(
            "| {c} | {train_s:.1} | {:.4} | {:.3} | {:.3} ({}) | {:.2}× |",
            1.0 - e,
            cmp.direct.median_ms,
            cmp.maddness.median_ms,
            cmp.maddness_kernels,
            cmp.direct.median_ms / cmp.maddness.median_ms
        );
        rows.push(serde_json::json!({
            "codebooks": c,
            "train_seconds": train_s,
            "windows_trained": report.windows_trained,
            "windows_available": report.windows_available,
            "one_minus_nmse": 1.0 - e,
            "direct_kernel": cmp.direct_kernel,
            "direct_ms": cmp.direct.median_ms,
            "direct_rel_l2_vs_expected": exact_rel,
            "maddness_kernels": cmp.maddness_kernels,
            "maddness_ms": cmp.maddness.median_ms,
            "speedup": cmp.direct.median_ms / cmp.maddness.median_ms,
            "clock": cmp.direct.clock,
            "repetitions": cmp.direct.repetitions,
            "tables": table_path.display().to_string(),
        }));
    }
    println!(
        "\n{direct_note}; times are medians of {} interleaved runs (kernel time only)",
        o.reps
    );
    let summary_path = out.join("summary.json");
    let json = serde_json::json!({
        "layer": layer.name,
        "spec": spec.describe(),
        "adapter": ctx.summary().to_string(),
        "train_shape": train.shape(),
        "test_shape": test.shape(),
        "rows": rows,
    });
    common::write_json(&summary_path, &json)?;
    println!(
        "wrote {} table file(s) and {} in {:.1} s",
        codebooks.len(),
        summary_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn save(tables: &Tables, path: &std::path::Path) -> Result<()> {
    tables
        .save(path)
        .with_context(|| format!("writing {}", path.display()))
}
