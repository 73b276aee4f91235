//! Learning MADDNESS trees, prototypes and tables for a convolution layer on the CPU
//! (DESIGN.md §3), from the layer's weight (and bias) and real inputs of the layer.
//!
//! Three learners ([`TrainConfig::learner`]):
//!
//! * [`Learner::Maddness`] — faithful MADDNESS, steps 1–4 below.
//! * [`Learner::Output`] (the default) — output-aware trees (issue 7): step 1, then trees grown
//!   on the residual of the layer's output `A·wᵀ`, on a seeded subset of
//!   [`TrainConfig::tree_rows`] windows, starting from MADDNESS's trees and tables (learned on
//!   those rows) or from nothing (forward boosting), whichever fits better ([`Start`]), refined
//!   by [`TrainConfig::passes`] backfitting passes; then the tables are refit on all windows,
//!   `T = argmin ‖A·wᵀ − G·T‖² + λ‖T − T0‖²` towards the trees' leaf values `T0` (Cholesky, or
//!   conjugate gradients above [`MAX_TRAIN_CODEBOOKS`] codebooks), and step 4. Each stage
//!   lowers (or keeps) the training error it optimises.
//!
//! * [`Learner::Tied`] — tied per-pixel encoding (issue 13, item 4; module `tied`): `C/area`
//!   trees over an input pixel's channel vector, shared by every tap of the window, one table
//!   per (tap, tree); stored as `C` untied codebooks whose trees are shifted copies
//!   ([`Tables::tied_trees_per_tap`]), so that the GPU hashes each pixel once. Its trees are
//!   MADDNESS's on the pixels (channels weighted by the weight's norm; `--grouping
//!   contiguous | channels | correlation` over channels) or, with [`Grouping::Free`], the
//!   output-aware learner's on the per-tap contributions; the tables are refit as the
//!   matching untied learner's.
//!
//! With an activation ([`TrainConfig::activation`], e.g. the ReLU or SiLU the model applies to
//! the conv's output), the tables are then refit for the error **after** it by
//! majorize–minimize steps (module `after`; [`activation`](super::activation)), and the
//! output-aware trees can be grown on the activation's output ([`TrainConfig::activation_trees`]).
//!
//! Both quantize with rounding-aware offsets unless [`TrainConfig::refit_offsets`] is off.
//! Codebooks may cover other groupings than contiguous ranges ([`Grouping`]).
//!
//! Per convolution group, independently:
//!
//! 1. **Windows**: all output positions of all training inputs, or a seeded uniform subset of
//!    [`TrainConfig::max_windows`] of them (the same positions for every group), extracted into a
//!    contiguous `N×D` f32 matrix (channel-first rows as in
//!    [`mirror::window_into`](super::mirror::window_into)).
//! 2. **Trees**: `C` codebooks, each a depth-4 tree learned level by level on its dimensions.
//! 3. **Prototypes**: bucket means `P0` (an empty bucket takes the mean of its nearest non-empty
//!    ancestor), refined by ridge regression `P = P0 + W`, `(GᵀG + λI) W = Gᵀ(A − G·P0)`,
//!    solved by a Cholesky factorisation of the `16C×16C` system, projected on `wᵀ` before the
//!    solve (only the tables `P·wᵀ` are needed).
//! 4. **Tables**: `lut = P·wᵀ` (f32), then 8-bit: per (codebook, output) offset = min over
//!    buckets, per output scale `255 / max range` (1 where every range is 0),
//!    `q = round((lut − offset)·scale)`.
//!
//! Deterministic for a given seed, whatever the number of threads. Parallel (rayon) over
//! codebooks for the trees and the ridge statistics, and over rows elsewhere.
//!
//! # Modules
//!
//! This module holds the settings and the orchestration of [`train`]; the steps live in private
//! modules, none of which imports from a module that imports it back:
//!
//! * `options` — the named choices [`Learner`], [`Grouping`], [`Start`].
//! * `windows` — step 1: sampling positions, extracting the `N×D` window matrix.
//! * `grouping` — which dimensions each codebook covers.
//! * `tree` — the hash trees, MADDNESS's tree learning (step 2), the radix sort.
//! * `maddness` — the faithful learner's prototypes and tables (step 3).
//! * `output` — the output-aware learner's boosted trees.
//! * `tied` — the tied per-pixel trees and their expansion into untied codebooks.
//! * `refit` — ridge, Cholesky and conjugate-gradient refits, 8-bit quantization (step 4).
//! * `after` — the refit for the error after the activation.
//! * `linalg` — dot products, `A·Wᵀ`, Gram matrices, Cholesky, subspace iteration.

mod after;
mod fit;
mod grouping;
mod linalg;
mod maddness;
mod options;
mod output;
mod refit;
#[cfg(test)]
mod testing;
mod tied;
mod tree;
mod windows;

pub use fit::MIN_TRAIN_WINDOWS;
pub use options::{Grouping, Learner, Start};

use output::{BoostParams, Boosted};
use refit::{check_lambda, refit_with, Solver};
use tree::{learn_trees_in_groups, Trees};
use windows::{extract_windows, sample_positions, Windows};

use super::activation::Activation;
use super::{
    check_codebook_limit, check_depth, HeldOut, TableMeta, Tables, DEFAULT_DEPTH,
    MAX_CODEBOOKS_U32_SUM,
};
use crate::error::{Error, Result};
use crate::layer::ConvLayer;
use crate::spec::ConvSpec;
use crate::tensor::Tensor;

/// Largest number of codebooks per group the MADDNESS learner accepts with trees of depth 4:
/// the ridge system is `KC × KC` doubles (`K` buckets; 128 MiB and a few seconds of
/// factorisation at this limit). The output-aware learner solves larger systems by conjugate
/// gradients instead.
pub const MAX_TRAIN_CODEBOOKS: usize = 256;

/// Largest ridge system factorised (`K·C` rows, any depth): [`MAX_TRAIN_CODEBOOKS`] codebooks
/// of 16 buckets.
pub const MAX_RIDGE_ROWS: usize = 16 * MAX_TRAIN_CODEBOOKS;

/// Whether the ridge system of `c_total` codebooks of `nb` buckets is small enough to
/// factorise ([`MAX_RIDGE_ROWS`]); larger ones are solved by conjugate gradients.
pub(crate) fn factorise(c_total: usize, nb: usize) -> bool {
    c_total.saturating_mul(nb) <= MAX_RIDGE_ROWS
}

/// Tree rows the output-aware learner's linear candidate score is computed on.
const SCORE_ROWS: usize = 4096;

/// Settings of [`train`].
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Codebooks per group `C` (`1 ≤ C ≤ D`, at most [`MAX_TRAIN_CODEBOOKS`]). `None` picks
    /// [`default_codebooks`]`(D)`: `D/8`, at least `min(D, 8)`, at most 64.
    pub codebooks: Option<usize>,
    /// Ridge regularisation λ of the prototype refinement (finite, `> 0`; default 1).
    pub lambda: f32,
    /// Most training windows; when the inputs hold more, a uniform random subset of this many
    /// (without replacement, seeded by [`seed`](Self::seed)) is used. `None`: all windows.
    /// Default `Some(200_000)`. Memory: `max_windows × D × 4` bytes for the window matrix.
    pub max_windows: Option<usize>,
    /// Seed of the window sampling (default 0).
    pub seed: u64,
    /// Keep the float tables (`luts_f32`) next to the 8-bit ones, to measure the quantization's
    /// share of the error (default true; 4× the size of the 8-bit tables).
    pub keep_f32_tables: bool,
    /// Which learner grows the trees (default [`Learner::Output`]).
    pub learner: Learner,
    /// Which dimensions each codebook may split on. `None`: the learner's own default
    /// ([`Grouping::Contiguous`] for MADDNESS, [`Grouping::Free`] for the output-aware learner).
    /// MADDNESS cannot use [`Grouping::Free`].
    pub grouping: Option<Grouping>,
    /// Output-aware learner: candidate dimensions evaluated exactly per tree, the best by the
    /// linear score (`≥ 1`; default 24).
    pub shortlist: usize,
    /// Output-aware learner: principal directions of the output residual the split criterion
    /// sees (`0`: all `M` outputs; default 16).
    pub rank: usize,
    /// Output-aware learner: most windows the trees are grown on (a seeded subset; the tables
    /// are refit on all windows; `≥ 16`; default 16 384).
    pub tree_rows: usize,
    /// Output-aware learner: fewest tree rows on each side of a split (`≥ 1`; default 8).
    pub min_leaf: usize,
    /// Output-aware learner: shrinkage `ν ∈ (0, 1]` of the leaf values while boosting forward
    /// (default 0.5; backfitting always fits whole leaves).
    pub shrinkage: f32,
    /// Output-aware learner: what the trees start from (default [`Start::Best`]).
    pub start: Start,
    /// Output-aware learner: backfitting passes over the codebooks after the start (each
    /// codebook regrown on the output residual of all the others, kept only if it fits that
    /// residual better; default 1).
    pub passes: usize,
    /// After rounding to 8 bits, move each (codebook, output) offset by the mean rounding error
    /// of that codebook's entries, weighted by how often the training windows hit each bucket
    /// (default true).
    pub refit_offsets: bool,
    /// Fewest training windows accepted (default [`MIN_TRAIN_WINDOWS`] = 128: 16 buckets per
    /// tree × 8 windows each). Fewer give tables that fit noise; lower it only for hand-made
    /// data whose few windows are chosen to be enough (at least 1).
    pub min_windows: u64,
    /// What follows the conv (bias included): with anything but
    /// [`Activation::Identity`] (the default) the trees are grown on the activation's output
    /// and the tables refit for the error after it ([`activation`](super::activation)).
    pub activation: Activation,
    /// Majorize–minimize steps of the refit after the activation (default 8; `0`: only the
    /// trees see the activation).
    pub activation_steps: usize,
    /// Grow the output-aware learner's trees on the activation's output `f(z)` rather than on
    /// `z` (no effect without an activation or with MADDNESS's trees). Default true: it beat
    /// the refit alone in 3 of 5 end-task comparisons and was level in one (ddddocr's eight
    /// head convs: box recall 45 % vs 15 %, plain 12.5 %; silero VAD at C = 16: 96.8 % vs
    /// 92.3 % of frames, plain 91.7 %; lost at C = 64: 98.5 % vs 99.4 %), although on single
    /// layers it helps about as often as it hurts (BENCHMARKS.md, issue 13).
    pub activation_trees: bool,
    /// Weight each training window's error by `1 / (e + floor · ē)` in the table refit, `e` the
    /// mean square of its exact output (after the activation, if one is set) and `ē` its mean
    /// over the windows, so that quiet positions count as much as loud ones relative to their
    /// own output (issue 13, item 3); the value is `floor` (finite, `> 0`). `None` (default):
    /// every window counts the same. The trees are grown unweighted.
    pub relative_weights: Option<f32>,
    /// One weight per sample (batch row) of the training inputs, in order (input 0's rows,
    /// then input 1's, …): each window's error in the table refit counts this much
    /// (times its [relative weight](Self::relative_weights), if set), e.g. the end-task
    /// sensitivity that [`calibrate`](crate::model::calibrate::calibrate) measures (issue 13,
    /// item 3). Finite and ≥ 0, not all 0; scaled to mean 1 over the training windows. `None`
    /// (default): every sample counts the same. The trees are grown unweighted.
    pub sample_weights: Option<Vec<f32>>,
    /// The outputs the layer should give on the training inputs, one tensor per input of the
    /// layer's output shape for it, bias included: the table refit fits these instead of the
    /// layer's own outputs on the inputs (the trees are grown as usual). For sequential
    /// calibration, the exact model's outputs of the layer while the inputs come from earlier
    /// approximated layers, so that the tables also undo what those layers got wrong
    /// ([`CalibrateConfig::exact_targets`](crate::model::calibrate::CalibrateConfig::exact_targets)).
    /// Finite. `None` (default): the layer's own outputs.
    pub target_outputs: Option<Vec<crate::Tensor>>,
    /// Depth of every hash tree ([`MIN_DEPTH`](crate::maddness::MIN_DEPTH) to
    /// [`MAX_DEPTH`](crate::maddness::MAX_DEPTH)): `2^depth` buckets per codebook, each a
    /// table row; the look-ups still read one byte per codebook and output, the encode tests
    /// `depth` values per codebook (issue 13, item 2). Default 4 (16 buckets).
    pub depth: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            codebooks: None,
            lambda: 1.0,
            max_windows: Some(200_000),
            seed: 0,
            keep_f32_tables: true,
            learner: Learner::default(),
            grouping: None,
            shortlist: 24,
            rank: 16,
            tree_rows: 16_384,
            min_leaf: 8,
            shrinkage: 0.5,
            start: Start::default(),
            passes: 1,
            refit_offsets: true,
            min_windows: MIN_TRAIN_WINDOWS,
            activation: Activation::Identity,
            activation_steps: 8,
            activation_trees: true,
            relative_weights: None,
            sample_weights: None,
            target_outputs: None,
            depth: DEFAULT_DEPTH,
        }
    }
}

impl TrainConfig {
    /// The grouping in force: [`grouping`](Self::grouping) or the learner's default.
    pub fn grouping(&self) -> Grouping {
        self.grouping.unwrap_or(match self.learner {
            Learner::Maddness => Grouping::Contiguous,
            Learner::Tied => Grouping::Correlation,
            Learner::Output => Grouping::Free,
        })
    }

    /// A one-line description of the learner and its settings (stored in the table metadata).
    pub fn describe(&self) -> String {
        let mut learner = self.describe_learner();
        if self.depth != DEFAULT_DEPTH {
            learner = format!("{learner} depth={}", self.depth);
        }
        if !self.activation.is_identity() {
            learner = format!(
                "{learner} activation={} activation_steps={} activation_trees={}",
                self.activation, self.activation_steps, self.activation_trees
            );
        }
        if let Some(f) = self.relative_weights {
            learner = format!("{learner} relative_weights={f}");
        }
        if let Some(w) = &self.sample_weights {
            learner = format!("{learner} sample_weights={}", w.len());
        }
        if self.target_outputs.is_some() {
            learner = format!("{learner} targets=given");
        }
        learner
    }

    fn describe_learner(&self) -> String {
        match self.learner {
            Learner::Maddness => format!(
                "maddness grouping={} lambda={} refit_offsets={}",
                self.grouping().name(),
                self.lambda,
                self.refit_offsets
            ),
            Learner::Tied => format!(
                "tied grouping={} lambda={} refit_offsets={}",
                self.grouping().name(),
                self.lambda,
                self.refit_offsets
            ),
            Learner::Output => format!(
                "output start={} passes={} grouping={} shortlist={} rank={} tree_rows={} \
                 min_leaf={} shrinkage={} lambda={} refit_offsets={}",
                self.start.name(),
                self.passes,
                self.grouping().name(),
                self.shortlist,
                self.rank,
                self.tree_rows,
                self.min_leaf,
                self.shrinkage,
                self.lambda,
                self.refit_offsets
            ),
        }
    }

    fn check(&self) -> Result<()> {
        check_lambda(self.lambda)?;
        check_depth(self.depth)?;
        let bad = |m: String| Err(Error::Argument(m));
        if self.learner == Learner::Maddness && self.grouping() == Grouping::Free {
            return bad(
                "grouping free needs the output-aware learner; MADDNESS trees split inside \
                 their codebook's dimensions"
                    .into(),
            );
        }
        if self.shortlist == 0 {
            return bad("shortlist = 0; at least 1 candidate dimension is needed".into());
        }
        if self.tree_rows < 16 {
            return bad(format!(
                "tree_rows = {}; at least 16 rows are needed to grow a tree",
                self.tree_rows
            ));
        }
        if self.min_leaf == 0 {
            return bad("min_leaf = 0; it must be at least 1".into());
        }
        if let Some(f) = self.relative_weights {
            if !(f.is_finite() && f > 0.0) {
                return bad(format!(
                    "relative weights floor = {f}; it must be finite and > 0 (the floor keeps \
                     windows whose output is 0 from taking all the weight)"
                ));
            }
        }
        if let Some(w) = &self.sample_weights {
            if let Some((i, v)) = w
                .iter()
                .enumerate()
                .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
            {
                return bad(format!(
                    "sample weight {i} = {v}; every sample weight must be finite and ≥ 0"
                ));
            }
            if !w.iter().any(|&v| v > 0.0) {
                return bad(format!(
                    "all {} sample weights are 0; at least one sample must count",
                    w.len()
                ));
            }
        }
        if !(self.shrinkage > 0.0 && self.shrinkage <= 1.0) {
            return bad(format!(
                "shrinkage = {}; it must be in (0, 1]",
                self.shrinkage
            ));
        }
        Ok(())
    }
}

/// The default number of codebooks for windows of length `D`: `D/8` (each codebook covers about
/// 8 dimensions), at least `min(D, 8)` and at most 64.
///
/// Why: on every real layer of the project's data the held-out error falls steadily with `C`
/// (BENCHMARKS.md), while the work per output grows with it (`C` table look-ups instead of `D`
/// multiply-adds, `4·C` input reads to encode). `D/8` keeps about an eighth of the dense layer's
/// operation count; it gives held-out 1 − NMSE 0.48–0.97 on those 14 layers (0.6 or more on
/// 11). The cap of 64 bounds the ridge system (`16C × 16C`) and the table size for the very wide
/// layers (D = 864–8192), whose accuracy still improves beyond it (pass a larger `C`).
pub fn default_codebooks(d: usize) -> usize {
    (d / 8).clamp(d.min(8), 64)
}

/// What the trainer is doing, for progress displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainStage {
    /// Choosing and extracting the training windows (`done`/`total`: groups).
    Windows,
    /// Learning the hash trees (`done`/`total`: codebooks of the current group).
    Trees,
    /// Bucket means and the ridge refinement (`done`/`total`: steps of the current group).
    Ridge,
    /// Float and 8-bit tables (`done`/`total`: groups).
    Tables,
}

impl std::fmt::Display for TrainStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrainStage::Windows => "windows",
            TrainStage::Trees => "trees",
            TrainStage::Ridge => "ridge",
            TrainStage::Tables => "tables",
        })
    }
}

/// A progress report of [`train`]: `done` of `total` units of `stage`, in `group` of `groups`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainProgress {
    /// The group being trained (0-based).
    pub group: usize,
    /// Groups in all.
    pub groups: usize,
    /// The current stage.
    pub stage: TrainStage,
    /// Units done in this stage.
    pub done: usize,
    /// Units of this stage.
    pub total: usize,
}

/// Wall-clock seconds per stage, summed over groups.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageSeconds {
    /// Sampling and extracting windows.
    pub windows: f64,
    /// Learning the trees.
    pub trees: f64,
    /// Bucket means, `GᵀG`, `GᵀA` and the ridge solve.
    pub ridge: f64,
    /// Float and 8-bit tables.
    pub tables: f64,
    /// Everything, including input checks.
    pub total: f64,
}

/// Diagnostics of a training run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainReport {
    /// Windows the inputs held.
    pub windows_available: u64,
    /// Windows used (per group).
    pub windows_trained: usize,
    /// Codebooks per group.
    pub codebooks: usize,
    /// Per group: the SSE of the training windows around their bucket means, summed over the
    /// codebooks (and so over all `D` dimensions), before any split (index 0) and after each of
    /// the tree levels ([`TrainConfig::depth`] of them). Never increases along the array.
    pub level_sse: Vec<Vec<f64>>,
    /// Time per stage.
    pub seconds: StageSeconds,
    /// Output-aware learner, per group: the training SSE of the output residual on the tree
    /// rows before any codebook (index 0) and after each tree step (forward, then backfitting).
    /// Never increases along the array.
    pub boost_sse: Vec<Vec<f64>>,
    /// Per group: the NMSE of the 8-bit tables on (up to 4096 of) their own training windows
    /// (after the activation when [`TrainConfig::activation`] is set).
    pub train_nmse: Vec<f64>,
    /// Per group, with an activation: the training loss after it, `Σ (f(ẑ) − f(z))²`, of the
    /// learner's tables (index 0) and after each majorize–minimize step of the refit.
    pub after_loss: Vec<Vec<f64>>,
}

/// Seconds since a start, on the library's clock ([`crate::clock`], also in browsers).
struct Stopwatch(crate::clock::Instant);

impl Stopwatch {
    fn start() -> Self {
        Stopwatch(crate::clock::Instant::now())
    }
    fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// Learns the tables of a `layer` (spec, weight `O×(C/g)×KH×KW` or `O×(C/g)×K`, bias `O`)
/// from training `inputs` (each `N×C×H×W` or `N×C×L`, sizes may differ).
///
/// Fails on input shapes that do not fit the layer, non-finite inputs ([`Error::NonFinite`]),
/// invalid settings ([`Error::Argument`]), degenerate training data (fewer than
/// [`MIN_TRAIN_WINDOWS`] windows, constant inputs, tables no better than the mean) and an
/// unsolvable ridge system ([`Error::Training`]).
pub fn train(layer: &ConvLayer, inputs: &[Tensor], config: &TrainConfig) -> Result<Tables> {
    train_with_report(layer, inputs, config, &mut |_| {}).map(|(t, _)| t)
}

/// [`train`], calling `progress` on the calling thread as the stages advance, and also
/// returning diagnostics: per-level SSE of the trees, the training fit and time per stage.
pub fn train_with_report(
    layer: &ConvLayer,
    inputs: &[Tensor],
    config: &TrainConfig,
    progress: &mut dyn FnMut(TrainProgress),
) -> Result<(Tables, TrainReport)> {
    let (spec, weight, bias) = (layer.spec(), layer.weight(), layer.bias());
    let clock = Stopwatch::start();
    let (total, d, c_total) = check_inputs(spec, weight, bias, inputs, config)?;
    let groups = spec.groups;
    let mg = spec.out_channels / groups;
    let area: usize = spec.kernel.iter().product();

    let mut report = TrainReport {
        windows_available: total,
        codebooks: c_total,
        ..Default::default()
    };
    let t = Stopwatch::start();
    let positions = sample_positions(total, config.max_windows, config.seed);
    report.windows_trained = positions.len();
    let targets = config.target_outputs.as_deref();
    let row_weights = config
        .sample_weights
        .as_deref()
        .map(|w| windows::window_weights(spec, inputs, &positions, w))
        .transpose()?;
    report.seconds.windows += t.seconds();
    log::info!(
        "training {}: D = {d}, C = {c_total}, {} of {total} windows (seed {}), λ = {}",
        spec.describe(),
        positions.len(),
        config.seed,
        config.lambda
    );

    let mut tables = empty_tables(spec, c_total, config.depth, bias);
    let mut luts_f32 = vec![0.0f32; tables.luts.len()];
    for g in 0..groups {
        let report_stage = |progress: &mut dyn FnMut(TrainProgress), stage, done, total| {
            progress(TrainProgress {
                group: g,
                groups,
                stage,
                done,
                total,
            })
        };
        let t = Stopwatch::start();
        report_stage(progress, TrainStage::Windows, g, groups);
        let windows = extract_windows(spec, inputs, &positions, g)?;
        report.seconds.windows += t.seconds();
        log::info!(
            "group {g}: {}×{} windows extracted in {:.2} s",
            windows.rows,
            windows.dim,
            t.seconds()
        );

        let t = Stopwatch::start();
        let w_g = &weight.data()[g * mg * d..(g + 1) * mg * d];
        let b_g: Vec<f32> = match bias {
            Some(b) => b.data()[g * mg..(g + 1) * mg].to_vec(),
            None => vec![0.0; mg],
        };
        let (dims, mut grown) =
            if config.learner == Learner::Tied && config.grouping() == Grouping::Free {
                let b = tied::grow_output(
                    &windows,
                    w_g,
                    mg,
                    area,
                    c_total / area,
                    config,
                    &mut |done, total| report_stage(progress, TrainStage::Trees, done, total),
                )?;
                (None, Grown::Output(b))
            } else if config.learner == Learner::Tied {
                let (trees, dims) = tied::grow(
                    &windows,
                    w_g,
                    area,
                    c_total / area,
                    config.grouping(),
                    (config.depth, config.seed),
                    &mut |done, total| report_stage(progress, TrainStage::Trees, done, total),
                )?;
                (Some(dims), Grown::Maddness(trees))
            } else {
                let dims = grouping::groups(config.grouping(), d, area, c_total, &windows)?;
                let grown = grow_trees(
                    &windows,
                    w_g,
                    &b_g,
                    c_total,
                    dims.as_deref(),
                    config,
                    &mut |done, total| report_stage(progress, TrainStage::Trees, done, total),
                )?;
                (dims, grown)
            };
        if let Grown::Output(b) = &mut grown {
            report.boost_sse.push(std::mem::take(&mut b.sse));
        }
        let sse = level_sse(grown.trees());
        log::info!(
            "group {g}: {c_total} trees in {:.2} s; SSE per level {:?}",
            t.seconds(),
            sse.iter().map(|v| format!("{v:.4e}")).collect::<Vec<_>>()
        );
        report.level_sse.push(sse);
        report.seconds.trees += t.seconds();

        let t = Stopwatch::start();
        let lut = fit_tables(
            &windows,
            &grown,
            dims.as_deref(),
            w_g,
            mg,
            config.lambda,
            &mut |done, total| report_stage(progress, TrainStage::Ridge, done, total),
        )?;
        let target_rows = targets
            .map(|t| windows::extract_outputs(spec, t, &positions, g, &b_g))
            .transpose()?;
        let refit_again = (!config.activation.is_identity() && config.activation_steps > 0)
            || config.relative_weights.is_some()
            || row_weights.is_some()
            || target_rows.is_some();
        let lut = if !refit_again {
            lut
        } else {
            let (lut, fit) = after::refit_after(
                &windows,
                &grown.trees().codes,
                (c_total, grown.trees().buckets()),
                &lut,
                config.lambda as f64,
                w_g,
                mg,
                &b_g,
                config.activation,
                config.relative_weights.map(f64::from),
                row_weights.as_deref(),
                target_rows.as_deref(),
                // One step is the weighted least-squares fit of the plain output.
                config.activation_steps.max(1),
                &mut |done, total| report_stage(progress, TrainStage::Ridge, done, total),
            )?;
            log::info!(
                "group {g}: refit for the error after {}{}{}{}: loss {:.4e} → {:.4e} (step {} of {})",
                config.activation,
                if target_rows.is_some() {
                    ", given targets"
                } else {
                    ""
                },
                if config.relative_weights.is_some() {
                    ", relative weights"
                } else {
                    ""
                },
                if row_weights.is_some() {
                    ", sample weights"
                } else {
                    ""
                },
                fit.loss[0],
                fit.loss[fit.kept],
                fit.kept,
                fit.loss.len() - 1
            );
            report.after_loss.push(fit.loss);
            lut
        };
        report.seconds.ridge += t.seconds();
        log::info!("group {g}: prototypes and ridge in {:.2} s", t.seconds());

        let t = Stopwatch::start();
        refit::store_group(
            &mut tables,
            &mut luts_f32,
            g,
            grown.trees(),
            &lut,
            windows.rows,
            config.refit_offsets,
        )?;
        let fit = fit::check_group_fit(
            &tables,
            g,
            &windows,
            &grown.trees().codes,
            w_g,
            mg,
            config.activation,
            target_rows.as_deref(),
        )?;
        report.train_nmse.push(fit);
        log::info!("group {g}: training NMSE of the 8-bit tables {fit:.4}");
        drop(windows);
        report_stage(progress, TrainStage::Tables, g + 1, groups);
        report.seconds.tables += t.seconds();
    }
    if config.keep_f32_tables {
        tables.luts_f32 = Some(luts_f32);
    }
    report.seconds.total = clock.seconds();
    tables.meta = TableMeta {
        lambda: config.lambda,
        windows_trained: report.windows_trained,
        windows_available: total,
        seed: config.seed,
        max_windows: config.max_windows,
        sources: Vec::new(),
        train_seconds: report.seconds.total,
        heldout: None::<HeldOut>,
        trainer_version: env!("CARGO_PKG_VERSION").to_string(),
        learner: config.describe(),
        activation: config.activation,
    };
    tables.validate()?;
    log::info!(
        "trained in {:.2} s (windows {:.2}, trees {:.2}, ridge {:.2}, tables {:.2})",
        report.seconds.total,
        report.seconds.windows,
        report.seconds.trees,
        report.seconds.ridge,
        report.seconds.tables
    );
    Ok((tables, report))
}

/// Checks the layer, the settings and the inputs before any work; returns the windows the
/// inputs hold, the window length `D` and the codebooks per group `C`.
fn check_inputs(
    spec: &ConvSpec,
    weight: &Tensor,
    bias: Option<&Tensor>,
    inputs: &[Tensor],
    config: &TrainConfig,
) -> Result<(u64, usize, usize)> {
    super::check_spec_sizes(spec)?;
    spec.check_weight(weight.shape())?;
    spec.check_bias(bias.map(|b| b.shape()))?;
    config.check()?;
    weight.check_finite("weight")?;
    if let Some(b) = bias {
        b.check_finite("bias")?;
    }
    if inputs.is_empty() {
        return Err(Error::Argument("no training inputs were given".into()));
    }
    let mut total: u64 = 0;
    for (i, x) in inputs.iter().enumerate() {
        let g = spec
            .geometry(x.shape())
            .map_err(|e| Error::Argument(format!("training input {i}: {e}")))?;
        x.check_finite(&format!("training input {i}"))?;
        total += (g.batch * g.positions()) as u64;
    }
    if let Some(w) = &config.sample_weights {
        let samples: usize = inputs.iter().map(|x| x.shape()[0]).sum();
        if w.len() != samples {
            return Err(Error::Argument(format!(
                "{} sample weights for {samples} training samples (the batch rows of the {} \
                 inputs); give one per sample",
                w.len(),
                inputs.len()
            )));
        }
    }
    if let Some(t) = &config.target_outputs {
        if t.len() != inputs.len() {
            return Err(Error::Argument(format!(
                "{} target outputs for {} training inputs; give one per input",
                t.len(),
                inputs.len()
            )));
        }
        for (i, (y, x)) in t.iter().zip(inputs).enumerate() {
            let want = spec.output_shape(x.shape())?;
            if y.shape() != want.as_slice() {
                return Err(Error::Shape(format!(
                    "target output {i} has shape {:?}; the layer's output for training input \
                     {i} {:?} has shape {want:?}",
                    y.shape(),
                    x.shape()
                )));
            }
            y.check_finite(&format!("target output {i}"))?;
        }
    }
    if config.max_windows == Some(0) {
        return Err(Error::Argument(
            "max_windows = 0; at least 1 window is needed".into(),
        ));
    }
    let d = spec.geometry(inputs[0].shape())?.window_len();
    let mut c_total = config.codebooks.unwrap_or_else(|| default_codebooks(d));
    if config.learner == Learner::Tied {
        let area: usize = spec.kernel.iter().product();
        let per_tap = tied::trees_per_tap(d, area, c_total)?;
        if config.grouping() == Grouping::Free {
            tied::check_output_trees(spec.out_channels / spec.groups, area)?;
        }
        if per_tap * area != c_total {
            log::info!(
                "tied encoding: {c_total} codebooks rounded to {} ({per_tap} trees × {area} taps)",
                per_tap * area
            );
        }
        c_total = per_tap * area;
    }
    if config.learner == Learner::Maddness {
        let k = 1usize << config.depth;
        check_codebook_limit(
            c_total,
            MAX_RIDGE_ROWS / k,
            &format!(
                "MADDNESS's ridge system is KC×KC doubles, K = {k} buckets, at most \
                 {MAX_RIDGE_ROWS} rows (the output-aware learner, --learner output, takes more)"
            ),
        )?;
    }
    check_codebook_limit(
        c_total,
        MAX_CODEBOOKS_U32_SUM,
        "exact u32 sums of 8-bit table entries",
    )?;
    grouping::codebook_ranges(d, c_total)?;
    // The data last: settings errors name the setting even on too little data.
    if total < config.min_windows.max(1) {
        return Err(Error::Training(format!(
            "the training inputs hold {total} windows (output positions); training needs at \
             least {} (min_windows; by default 16 buckets per tree × 8 windows each): give \
             more or larger inputs",
            config.min_windows.max(1)
        )));
    }
    Ok((total, d, c_total))
}

/// Tables of `C` codebooks and trees of `depth` for `spec` before any group is trained: no
/// trees, zero tables, scales 1, the bias copied.
fn empty_tables(spec: &ConvSpec, c_total: usize, depth: usize, bias: Option<&Tensor>) -> Tables {
    let groups = spec.groups;
    let gcm = groups * c_total * (spec.out_channels / groups);
    let k = 1usize << depth;
    Tables {
        spec: spec.clone(),
        codebooks: c_total,
        depth,
        split_dims: Vec::with_capacity(groups * c_total * depth),
        thresholds: Vec::with_capacity(groups * c_total * depth * k),
        luts: vec![0; gcm * k],
        lut_offsets: vec![0.0; gcm],
        scales: vec![1.0; spec.out_channels],
        bias: bias.map(|b| b.data().to_vec()),
        luts_f32: None,
        meta: TableMeta::default(),
    }
}

/// The trees of one group, as each learner grows them.
enum Grown {
    /// MADDNESS's trees on the input sub-vectors.
    Maddness(Trees),
    /// The output-aware learner's trees with their leaf values, the prior of the refit.
    Output(Boosted),
}

impl Grown {
    fn trees(&self) -> &Trees {
        match self {
            Grown::Maddness(t) => t,
            Grown::Output(b) => &b.trees,
        }
    }
}

/// Step 2 of one group: the trees of `config.learner` over the windows, for the group's
/// weight `w` (`M×D`), bias `bias` (`[M]`) and the codebooks' dimension lists `dims` (`None`:
/// free trees).
fn grow_trees(
    windows: &Windows,
    w: &[f32],
    bias: &[f32],
    c_total: usize,
    dims: Option<&[Vec<u32>]>,
    config: &TrainConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Grown> {
    let m = bias.len();
    let after = (!config.activation.is_identity() && config.activation_trees)
        .then(|| (config.activation, bias.to_vec()));
    Ok(match config.learner {
        Learner::Tied => {
            return Err(Error::Argument(
                "tied trees are grown over pixels (module tied), not over windows".into(),
            ))
        }
        Learner::Maddness => Grown::Maddness(learn_trees_in_groups(
            windows,
            dims.unwrap_or_default(),
            config.depth,
            progress,
        )?),
        Learner::Output => {
            let params = BoostParams {
                codebooks: c_total,
                depth: config.depth,
                groups: dims.map(<[Vec<u32>]>::to_vec),
                shortlist: config.shortlist,
                rank: config.rank,
                tree_rows: config.tree_rows,
                score_rows: SCORE_ROWS,
                min_leaf: config.min_leaf,
                shrinkage: config.shrinkage as f64,
                passes: config.passes,
                seed: config.seed ^ 0x7472_6565,
                after,
            };
            Grown::Output(output::learn(
                windows,
                w,
                m,
                &params,
                config.start,
                config.lambda,
                progress,
            )?)
        }
    })
}

/// The summed SSE per tree level of a group's trees ([`TrainReport::level_sse`]).
fn level_sse(trees: &Trees) -> Vec<f64> {
    let mut sse = vec![0.0f64; trees.depth + 1];
    for tree in &trees.trees {
        for (s, &v) in sse.iter_mut().zip(&tree.level_sse) {
            *s += v;
        }
    }
    sse
}

/// Steps 3 (and the output-aware refit) of one group: the float tables (`[C, 16, M]`) for the
/// grown trees' codes, the weight `w` (`M×D`) and the ridge regularisation `lambda`.
fn fit_tables(
    windows: &Windows,
    grown: &Grown,
    dims: Option<&[Vec<u32>]>,
    w: &[f32],
    m: usize,
    lambda: f32,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    match grown {
        Grown::Output(b) => {
            let t = refit_with(
                windows,
                &b.trees.codes,
                b.trees.trees.len(),
                b.trees.buckets(),
                &b.prior,
                lambda as f64,
                w,
                m,
                Solver::Auto,
                progress,
            )?;
            // Added to a zero base, as the tables always were (this turns −0 into +0).
            Ok(t.into_iter().map(|v| 0.0 + v).collect())
        }
        Grown::Maddness(trees) => {
            let dims = dims.ok_or_else(|| {
                Error::Argument("MADDNESS needs a grouping of the dimensions".into())
            })?;
            maddness::tables(
                windows,
                &trees.codes,
                dims,
                trees.buckets(),
                lambda,
                w,
                m,
                progress,
            )
        }
    }
}
