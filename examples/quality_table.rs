//! Held-out quality and training time of MADDNESS on every real layer of the data folder:
//! trains on `train.npy` at several codebook counts, evaluates 8-bit and float tables on
//! `test.npy` against `test_expected.npy` (computed by another engine), and prints a markdown
//! table.
//!
//! ```text
//! cargo run --release --example quality_table -- [--data ../shared/data] [--codebooks 8,16,32,64]
//!     [--layers NAME,NAME] [--seed 0] [--max-windows 200000]
//! ```
//!
//! `--codebooks default` uses `learn::default_codebooks(D)` for each layer.

mod common;

use std::path::PathBuf;

use anyhow::{Context, Result};
use maddconv::maddness::{evaluate, learn};

fn main() -> Result<()> {
    let mut data = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data"));
    let mut codebooks = vec![8usize, 16, 32, 64];
    let mut only: Option<Vec<String>> = None;
    let mut seed = 0u64;
    let mut max_windows = Some(200_000usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--data" => data = PathBuf::from(value()?),
            "--codebooks" => codebooks = common::parse_codebooks(&value()?, true)?,
            "--layers" => only = Some(value()?.split(',').map(str::to_string).collect()),
            "--seed" => seed = value()?.parse()?,
            "--max-windows" => max_windows = Some(value()?.parse()?),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let layers = common::chosen_layers(&data, &only)?;
    println!("| layer | D | M | train windows | C | 1−NMSE 8-bit | 1−NMSE f32 tables | train s |");
    println!("|---|---|---|---|---|---|---|---|");
    for layer in layers {
        let weight = layer.weight()?;
        let bias = layer.bias()?;
        let train = layer.train()?;
        let test = layer.test()?;
        let expected = layer.test_expected()?;
        let d = layer.spec.in_channels / layer.spec.groups
            * layer.spec.kernel.iter().product::<usize>();
        for &c in &codebooks {
            // 0 stands for the default, `learn::default_codebooks(D)`.
            let c = if c == 0 {
                learn::default_codebooks(d)
            } else {
                c
            };
            if c > d {
                continue;
            }
            // Faithful MADDNESS with plain 8-bit rounding (the baseline of BENCHMARKS.md's CPU
            // section; the default output-aware learner is measured by examples/ablation.rs).
            let config = learn::TrainConfig {
                codebooks: Some(c),
                seed,
                max_windows,
                learner: learn::Learner::Maddness,
                grouping: Some(learn::Grouping::Contiguous),
                refit_offsets: false,
                ..Default::default()
            };
            let (tables, secs) =
                common::train_secs(&layer.spec, &weight, bias.as_ref(), &train, &config)?;
            let held = evaluate(&tables, &test, &expected, "test")?;
            println!(
                "| {} | {d} | {} | {} | {c} | {:.3} | {:.3} | {secs:.2} |",
                layer.name,
                layer.spec.out_channels,
                tables.meta.windows_trained,
                held.one_minus_nmse(),
                held.one_minus_nmse_f32_tables().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}
