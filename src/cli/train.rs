//! `maddconv train`: learn MADDNESS tables for a layer from its weight and real inputs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use maddconv::maddness;
use maddconv::maddness::learn::{self, TrainConfig, TrainProgress};
use maddconv::{ConvLayer, Tensor};

/// Arguments of `maddconv train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Weight `.npy`: O×(C/groups)×KH×KW (conv2d) or O×(C/groups)×K (conv1d).
    #[arg(long)]
    pub weight: PathBuf,
    /// Bias `.npy` of shape O.
    #[arg(long)]
    pub bias: Option<PathBuf>,
    /// Training inputs of the layer (`.npy`, N×C×H×W or N×C×L); repeat for several files.
    #[arg(long, required = true)]
    pub input: Vec<PathBuf>,
    /// Held-out input (not used for training): its NMSE is printed and stored in the file.
    #[arg(long)]
    pub test: Option<PathBuf>,
    #[command(flatten)]
    pub spec: super::SpecArgs,
    /// Codebooks per group C (1 ≤ C ≤ D). Default: D/8, at least min(D, 8), at most 64.
    #[arg(long)]
    pub codebooks: Option<usize>,
    /// Ridge regularisation λ of the prototype refinement (> 0).
    #[arg(long, default_value_t = 1.0)]
    pub lambda: f32,
    /// Most training windows (a seeded uniform subset when the inputs hold more), or "all".
    #[arg(long, default_value = "200000")]
    pub max_windows: String,
    /// Seed of the window sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Do not store the float tables (smaller file; `eval` then reports only 8-bit tables).
    #[arg(long)]
    pub no_f32_tables: bool,
    /// Tree learner: "output" (default: output-aware boosted trees, each grown on the residual
    /// of the layer's output, then one ridge refit of all tables) or "maddness" (faithful
    /// MADDNESS: trees on the input sub-vectors, ridge-refined prototypes).
    #[arg(long, default_value = "output")]
    pub learner: String,
    /// Dimensions each codebook may split on: "contiguous" (MADDNESS's ranges), "channels"
    /// (whole input channels), "correlation" (greedy clusters of correlated dimensions) or
    /// "free" (any dimension; output learner only). Default: contiguous for maddness, free for
    /// output.
    #[arg(long)]
    pub grouping: Option<String>,
    /// Output learner: candidate dimensions evaluated exactly per tree (default 24).
    #[arg(long)]
    pub shortlist: Option<usize>,
    /// Output learner: principal directions of the output residual the splits see; 0 = all
    /// outputs (default 16).
    #[arg(long)]
    pub rank: Option<usize>,
    /// Output learner: most windows the trees are grown on; the tables are refit on all
    /// (default 16384).
    #[arg(long)]
    pub tree_rows: Option<usize>,
    /// Output learner: fewest tree rows on each side of a split (default 8).
    #[arg(long)]
    pub min_leaf: Option<usize>,
    /// Output learner: shrinkage of the leaf values while boosting forward, in (0, 1]
    /// (default 0.5).
    #[arg(long)]
    pub shrinkage: Option<f32>,
    /// Output learner: what the trees start from: "maddness" (MADDNESS's trees and tables),
    /// "empty" (grow every codebook forward on the output residual, boosting) or "best"
    /// (default: both, keeping the one that fits the training windows better).
    #[arg(long)]
    pub start: Option<String>,
    /// Output learner: backfitting passes over the codebooks after the start (default 1).
    #[arg(long)]
    pub passes: Option<usize>,
    /// Keep MADDNESS's plain rounding of the 8-bit tables (no rounding-aware offsets).
    #[arg(long)]
    pub no_refit_offsets: bool,
    /// Output table file (`.safetensors`, written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
}

fn read(path: &Path, what: &str) -> Result<Tensor> {
    Tensor::read_npy(path).with_context(|| format!("reading the {what}"))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// Trains, optionally measures the held-out error, and writes the table file.
pub fn run(args: TrainArgs) -> Result<()> {
    let mut inputs = vec![args.weight.as_path()];
    inputs.extend(args.bias.as_deref());
    inputs.extend(args.input.iter().map(|p| p.as_path()));
    inputs.extend(args.test.as_deref());
    super::check_output_path(&args.output, &inputs)?;
    let max_windows = match args.max_windows.trim() {
        "all" => None,
        v => match v.parse::<usize>() {
            Ok(0) | Err(_) => bail!("--max-windows: {v:?} is not a positive integer or \"all\""),
            Ok(n) => Some(n),
        },
    };
    let weight = read(&args.weight, "weight")?;
    let bias = args.bias.as_ref().map(|p| read(p, "bias")).transpose()?;
    let spec = args.spec.spec(weight.shape(), bias.is_some())?;
    let layer = ConvLayer::new(spec, weight, bias)?;
    let spec = layer.spec();
    let inputs = args
        .input
        .iter()
        .map(|p| {
            let x = read(p, "training input")?;
            spec.geometry(x.shape())
                .with_context(|| format!("training input {}", p.display()))?;
            Ok(x)
        })
        .collect::<Result<Vec<_>>>()?;
    let test = args
        .test
        .as_ref()
        .map(|p| -> Result<Tensor> {
            let t = read(p, "test input")?;
            layer.check_input(&t, &format!("test input {}", p.display()))?;
            Ok(t)
        })
        .transpose()?;
    let defaults = TrainConfig::default();
    let config = TrainConfig {
        codebooks: args.codebooks,
        lambda: args.lambda,
        max_windows,
        seed: args.seed,
        keep_f32_tables: !args.no_f32_tables,
        learner: args
            .learner
            .parse()
            .with_context(|| format!("--learner {}", args.learner))?,
        grouping: args
            .grouping
            .as_deref()
            .map(|g| g.parse().with_context(|| format!("--grouping {g}")))
            .transpose()?,
        shortlist: args.shortlist.unwrap_or(defaults.shortlist),
        rank: args.rank.unwrap_or(defaults.rank),
        tree_rows: args.tree_rows.unwrap_or(defaults.tree_rows),
        min_leaf: args.min_leaf.unwrap_or(defaults.min_leaf),
        shrinkage: args.shrinkage.unwrap_or(defaults.shrinkage),
        start: args
            .start
            .as_deref()
            .map(|v| v.parse().with_context(|| format!("--start {v}")))
            .transpose()?
            .unwrap_or(defaults.start),
        passes: args.passes.unwrap_or(defaults.passes),
        refit_offsets: !args.no_refit_offsets,
    };

    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut on_progress = |p: TrainProgress| {
        bar.set_message(format!("group {}/{}: {}", p.group + 1, p.groups, p.stage));
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
    };
    let result = learn::train(
        spec,
        layer.weight(),
        layer.bias(),
        &inputs,
        &config,
        &mut on_progress,
    );
    bar.finish_and_clear();
    let mut tables = result.context("training failed")?;
    tables.meta.sources = args.input.iter().map(|p| file_name(p)).collect();
    eprintln!(
        "trained {} ({}): C = {}, {} of {} windows, {:.2} s",
        spec.describe(),
        tables.meta.learner,
        tables.codebooks,
        tables.meta.windows_trained,
        tables.meta.windows_available,
        tables.meta.train_seconds
    );

    if let (Some(test), Some(path)) = (&test, &args.test) {
        let exact = layer.exact(test)?;
        let heldout = maddness::evaluate(&tables, test, &exact, &file_name(path))?;
        println!(
            "held-out NMSE on {}: {:.4} (1 − NMSE {:.4}){}",
            heldout.source,
            heldout.nmse,
            heldout.one_minus_nmse(),
            heldout
                .nmse_f32_tables
                .map(|v| format!("; float tables {v:.4} (1 − NMSE {:.4})", 1.0 - v))
                .unwrap_or_default()
        );
        tables.meta.heldout = Some(heldout);
    }
    tables
        .save(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("tables written to {}", args.output.display());
    Ok(())
}
