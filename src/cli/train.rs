//! `maddconv train`: learn MADDNESS tables for a layer from its weight and real inputs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use maddconv::maddness;
use maddconv::maddness::learn::{self, Grouping, Learner, Start, TrainConfig, TrainProgress};
use maddconv::maddness::Activation;
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
    #[command(flatten)]
    pub learner: LearnerArgs,
    /// Output table file (`.safetensors`, written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// The learner's settings, shared by `train` and `model calibrate`.
#[derive(Args, Debug, Clone)]
pub struct LearnerArgs {
    /// Codebooks per group C (1 ≤ C ≤ D): table look-ups per output. Default: D/8, at least
    /// min(D, 8), at most 64. The tied learner rounds C to the nearest multiple of the kernel
    /// area (C/area trees, one table per tap).
    #[arg(long)]
    pub codebooks: Option<usize>,
    /// Ridge regularisation λ of the prototype refinement (> 0).
    #[arg(long, default_value_t = defaults().lambda)]
    pub lambda: f32,
    /// Most training windows (a seeded uniform subset when the inputs hold more), or "all".
    #[arg(long, default_value_t = MaxWindows(defaults().max_windows))]
    pub max_windows: MaxWindows,
    /// Seed of the window sampling.
    #[arg(long, default_value_t = defaults().seed)]
    pub seed: u64,
    /// Do not store the float tables (smaller file; `eval` then reports only 8-bit tables).
    #[arg(long)]
    pub no_f32_tables: bool,
    /// Tree learner: output-aware boosted trees (each grown on the residual of the layer's
    /// output, then one ridge refit of all tables), faithful MADDNESS (trees on the input
    /// sub-vectors, ridge-refined prototypes), or tied per-pixel trees (shared by every tap of
    /// the window, one table per tap).
    #[arg(long, value_enum, default_value_t = defaults().learner)]
    pub learner: Learner,
    /// Dimensions each codebook may split on: MADDNESS's contiguous ranges, whole input
    /// channels, greedy clusters of correlated dimensions, or any dimension (output learner
    /// only); for tied trees, over the channels (free: output-aware tied trees). Default: the
    /// learner's own (contiguous for maddness, free for output, correlation for tied).
    #[arg(long, value_enum)]
    pub grouping: Option<Grouping>,
    /// Output learner: candidate dimensions evaluated exactly per tree.
    #[arg(long, default_value_t = defaults().shortlist)]
    pub shortlist: usize,
    /// Output learner: principal directions of the output residual the splits see; 0 = all
    /// outputs.
    #[arg(long, default_value_t = defaults().rank)]
    pub rank: usize,
    /// Output learner: most windows the trees are grown on; the tables are refit on all.
    #[arg(long, default_value_t = defaults().tree_rows)]
    pub tree_rows: usize,
    /// Output learner: fewest tree rows on each side of a split.
    #[arg(long, default_value_t = defaults().min_leaf)]
    pub min_leaf: usize,
    /// Output learner: shrinkage of the leaf values while boosting forward, in (0, 1].
    #[arg(long, default_value_t = defaults().shrinkage)]
    pub shrinkage: f32,
    /// Output learner: what the trees start from: MADDNESS's trees and tables, nothing
    /// (grow every codebook forward on the output residual, boosting), or the better fit of
    /// both on the training windows.
    #[arg(long, value_enum, default_value_t = defaults().start)]
    pub start: Start,
    /// Output learner: backfitting passes over the codebooks after the start.
    #[arg(long, default_value_t = defaults().passes)]
    pub passes: usize,
    /// Keep MADDNESS's plain rounding of the 8-bit tables (no rounding-aware offsets).
    #[arg(long)]
    pub no_refit_offsets: bool,
    /// Fewest training windows accepted; fewer give tables that fit noise.
    #[arg(long, default_value_t = defaults().min_windows)]
    pub min_windows: u64,
    /// What follows the conv (its output with the bias): fit the tables for the error after
    /// it. none, relu, leaky:ALPHA, clip:LO,HI, sigmoid, silu, hardsigmoid[:ALPHA,BETA],
    /// hardswish, or (model calibrate only) graph. Default: none for train; for model
    /// calibrate, graph: what the ONNX graph applies to each conv's output.
    #[arg(long)]
    pub activation: Option<ActivationArg>,
    /// Majorize–minimize steps of the refit after the activation (0: only the trees see it).
    #[arg(long, default_value_t = defaults().activation_steps)]
    pub activation_steps: usize,
    /// Output learner: grow the trees on the conv's output before the activation even when
    /// one is set (only the table refit then sees it).
    #[arg(long)]
    pub no_activation_trees: bool,
    /// Weight each training window's error in the table refit relative to its own output
    /// energy (after the activation): 1 / (e + FLOOR · mean e), FLOOR > 0, e.g. 0.1.
    #[arg(long, value_name = "FLOOR")]
    pub relative_weights: Option<f32>,
    /// Depth of every hash tree, 4 to 8: 2^depth buckets (table rows) per codebook. Deeper
    /// trees hold more per codebook at the same look-up cost per output (one byte per codebook)
    /// but test more values per codebook in the encode and make larger tables (8-bit codes
    /// above depth 4).
    #[arg(long, default_value_t = defaults().depth)]
    pub depth: usize,
}

/// `--activation`: an activation, or `graph` (what the model's graph says, per conv).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActivationArg {
    /// Read it from the ONNX graph (model calibrate).
    Graph,
    /// This activation for every layer.
    Given(Activation),
}

impl std::str::FromStr for ActivationArg {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "graph" => Ok(ActivationArg::Graph),
            v => v
                .parse::<Activation>()
                .map(ActivationArg::Given)
                .map_err(|e| format!("{e}, or graph")),
        }
    }
}

impl LearnerArgs {
    /// The settings as the library takes them.
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            codebooks: self.codebooks,
            lambda: self.lambda,
            max_windows: self.max_windows.0,
            seed: self.seed,
            keep_f32_tables: !self.no_f32_tables,
            learner: self.learner,
            grouping: self.grouping,
            shortlist: self.shortlist,
            rank: self.rank,
            tree_rows: self.tree_rows,
            min_leaf: self.min_leaf,
            shrinkage: self.shrinkage,
            start: self.start,
            passes: self.passes,
            refit_offsets: !self.no_refit_offsets,
            min_windows: self.min_windows,
            activation: match self.activation {
                Some(ActivationArg::Given(a)) => a,
                Some(ActivationArg::Graph) | None => Activation::Identity,
            },
            activation_steps: self.activation_steps,
            activation_trees: !self.no_activation_trees,
            relative_weights: self.relative_weights,
            sample_weights: None,
            target_outputs: None,
            depth: self.depth,
        }
    }
}

/// The library's defaults, the one place they are stated (the help shows them).
fn defaults() -> TrainConfig {
    TrainConfig::default()
}

/// `--max-windows`: a positive count, or "all" (no cap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxWindows(pub Option<usize>);

impl std::str::FromStr for MaxWindows {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "all" => Ok(MaxWindows(None)),
            v => match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(MaxWindows(Some(n))),
                _ => Err(format!("{v:?} is not a positive integer or \"all\"")),
            },
        }
    }
}

impl std::fmt::Display for MaxWindows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("all"),
        }
    }
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
    if args.learner.activation == Some(ActivationArg::Graph) {
        anyhow::bail!(
            "--activation graph needs a model (model calibrate); for one layer name the \
             activation that follows it, e.g. --activation relu"
        );
    }
    let config = args.learner.config();

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
    let result = learn::train_with_report(&layer, &inputs, &config, &mut on_progress);
    bar.finish_and_clear();
    let (mut tables, report) = result.context("training failed")?;
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
    let worst = report.train_nmse.iter().copied().fold(0.0f64, f64::max);
    eprintln!(
        "training fit: 1 − NMSE {:.4} on the training windows (worst group)",
        1.0 - worst
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
        if let Some(v) = heldout.nmse_after_activation {
            println!(
                "held-out NMSE after {}: {v:.4} (1 − NMSE {:.4})",
                config.activation,
                1.0 - v
            );
        }
        tables.meta.heldout = Some(heldout);
    }
    tables
        .save(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("tables written to {}", args.output.display());
    Ok(())
}
