//! Learning MADDNESS trees, prototypes and tables for a convolution layer on the CPU
//! (DESIGN.md §3), from the layer's weight (and bias) and real inputs of the layer.
//!
//! Two learners ([`TrainConfig::learner`]):
//!
//! * [`Learner::Maddness`] — faithful MADDNESS, steps 1–4 below.
//! * [`Learner::Output`] (the default) — output-aware trees (issue 7): step 1, then the trees of
//!   [`boost`](super::boost) grown on the residual of the layer's output `A·wᵀ`, on a seeded
//!   subset of [`TrainConfig::tree_rows`] windows, starting from MADDNESS's trees and tables
//!   (learned on those rows) or from nothing (forward boosting), whichever fits better
//!   ([`Start`]), refined by [`TrainConfig::passes`] backfitting passes; then the tables are
//!   refit on all windows, `T = argmin ‖A·wᵀ − G·T‖² + λ‖T − T0‖²` towards the trees' leaf
//!   values `T0` ([`refit_tables`]: Cholesky, or conjugate gradients above
//!   [`MAX_TRAIN_CODEBOOKS`] codebooks), and step 4. Each stage lowers (or keeps) the training
//!   error it optimises.
//!
//! Both quantize with rounding-aware offsets unless [`TrainConfig::refit_offsets`] is off.
//! Codebooks may cover other groupings than contiguous ranges ([`Grouping`]).
//!
//! Per convolution group, independently:
//!
//! 1. **Windows**: all output positions of all training inputs, or a seeded uniform subset of
//!    [`TrainConfig::max_windows`] of them (the same positions for every group), extracted into a
//!    contiguous `N×D` f32 matrix ([`Windows`], channel-first rows as in
//!    [`mirror::window_into`](super::mirror::window_into)).
//! 2. **Trees** ([`learn_trees`]): `C` codebooks over contiguous dimension ranges (the first
//!    `D mod C` ranges one longer), each a depth-4 tree learned level by level: the 4 dimensions
//!    of the codebook with the largest summed within-bucket SSE are candidates; for each, every
//!    bucket's best split (minimum SSE(left) + SSE(right) over all the codebook's dimensions,
//!    threshold = midpoint of the neighbouring values) is found by one walk over the rows in
//!    that dimension's sorted order (sorted once per dimension) with running per-bucket sums;
//!    the candidate with the smallest summed loss becomes the level's split dimension. A bucket
//!    with fewer than 2 rows has loss 0 and a threshold that sends its row (if any) left.
//! 3. **Prototypes**: bucket means `P0` (an empty bucket takes the mean of its nearest non-empty
//!    ancestor), refined by ridge regression `P = P0 + W`,
//!    `(GᵀG + λI) W = Gᵀ(A − G·P0)`, solved by a Cholesky factorisation of the `16C×16C` system.
//!    Training only needs the tables `P·wᵀ`, so the right-hand side is multiplied by `wᵀ` before
//!    the solve (`M` instead of `D` right-hand sides); [`learn_prototypes`] gives the dense `P`.
//! 4. **Tables**: `lut = P·wᵀ` (f32), then 8-bit: per (codebook, output) offset = min over
//!    buckets, per output scale `255 / max range` (1 where every range is 0),
//!    `q = round((lut − offset)·scale)`.
//!
//! Deterministic for a given seed, whatever the number of threads. Parallel (rayon) over
//! codebooks for the trees and the ridge statistics, and over rows elsewhere.

use std::collections::HashSet;
use std::ops::Range;

use rayon::prelude::*;

use super::boost::{boost, BoostParams, Boosted, Init};
use super::MAX_CODEBOOKS_U32_SUM;

pub use super::grouping::Grouping;
use super::{HeldOut, TableMeta, Tables, BUCKETS, LEVEL_SLOTS, TREE_DEPTH};
use crate::error::{Error, Result};
use crate::rng::SplitMix64;
use crate::spec::{ConvSpec, Geometry};
use crate::tensor::Tensor;

/// Largest number of codebooks per group the MADDNESS learner accepts: the ridge system is
/// `16C × 16C` doubles (128 MiB and a few seconds of factorisation at this limit). The
/// output-aware learner solves larger systems by conjugate gradients instead.
pub const MAX_TRAIN_CODEBOOKS: usize = 256;

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
}

/// What the output-aware learner starts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// No trees: grow every codebook forward on the residual of the previous ones (boosting),
    /// then backfit.
    Empty,
    /// MADDNESS's trees and ridge tables (over the grouping, or contiguous ranges for free
    /// trees), then backfit on the output residual.
    Maddness,
    /// Both, keeping the one whose trees fit the output residual of the tree rows better
    /// (twice the tree time). On the real layers of the project's data this picks the better
    /// held-out start in 7 of 8 cases measured (BENCHMARKS.md).
    #[default]
    Best,
}

impl Start {
    /// The name used on the command line and in the table metadata.
    pub fn name(self) -> &'static str {
        match self {
            Start::Empty => "empty",
            Start::Maddness => "maddness",
            Start::Best => "best",
        }
    }
}

impl std::str::FromStr for Start {
    type Err = Error;
    fn from_str(s: &str) -> Result<Start> {
        match s {
            "empty" => Ok(Start::Empty),
            "maddness" => Ok(Start::Maddness),
            "best" => Ok(Start::Best),
            other => Err(Error::Argument(format!(
                "start {other:?}; expected empty, maddness or best"
            ))),
        }
    }
}

/// The tree learner of [`train`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Learner {
    /// Faithful MADDNESS (DESIGN.md §3): trees on the input sub-vectors of contiguous codebook
    /// ranges, bucket-mean prototypes refined by ridge regression.
    Maddness,
    /// Output-aware boosted trees ([`boost`](super::boost)): each tree grown on the residual of
    /// the layer's output left by the previous ones, then one ridge refit of all tables in
    /// output space towards the boosted leaf values.
    #[default]
    Output,
}

impl Learner {
    /// The name used on the command line and in the table metadata.
    pub fn name(self) -> &'static str {
        match self {
            Learner::Maddness => "maddness",
            Learner::Output => "output",
        }
    }
}

impl std::str::FromStr for Learner {
    type Err = Error;
    fn from_str(s: &str) -> Result<Learner> {
        match s {
            "maddness" => Ok(Learner::Maddness),
            "output" => Ok(Learner::Output),
            other => Err(Error::Argument(format!(
                "learner {other:?}; expected maddness or output"
            ))),
        }
    }
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
        }
    }
}

impl TrainConfig {
    /// The grouping in force: [`grouping`](Self::grouping) or the learner's default.
    pub fn grouping(&self) -> Grouping {
        self.grouping.unwrap_or(match self.learner {
            Learner::Maddness => Grouping::Contiguous,
            Learner::Output => Grouping::Free,
        })
    }

    /// A one-line description of the learner and its settings (stored in the table metadata).
    pub fn describe(&self) -> String {
        match self.learner {
            Learner::Maddness => format!(
                "maddness grouping={} lambda={} refit_offsets={}",
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
    /// the 4 tree levels. Never increases along the array.
    pub level_sse: Vec<[f64; TREE_DEPTH + 1]>,
    /// Time per stage.
    pub seconds: StageSeconds,
    /// Output-aware learner, per group: the training SSE of the output residual on the tree
    /// rows before any codebook (index 0) and after each one ([`Boosted::sse`]). Never
    /// increases along the array.
    pub boost_sse: Vec<Vec<f64>>,
}

/// Training windows of one group: an `N×D` f32 matrix, row-major, rows channel-first
/// (`d = (ci·KH + ky)·KW + kx`).
#[derive(Clone, Debug, PartialEq)]
pub struct Windows {
    /// Rows `N`.
    pub rows: usize,
    /// Columns `D`.
    pub dim: usize,
    /// `N·D` values.
    pub data: Vec<f32>,
}

impl Windows {
    /// Wraps an `N×D` matrix; fails when the length does not match or a value is not finite.
    pub fn new(rows: usize, dim: usize, data: Vec<f32>) -> Result<Windows> {
        if rows.checked_mul(dim) != Some(data.len()) || rows == 0 || dim == 0 {
            return Err(Error::Shape(format!(
                "windows: {} values do not form a non-empty {rows}×{dim} matrix",
                data.len()
            )));
        }
        if rows > u32::MAX as usize {
            return Err(Error::TooLarge {
                what: "training windows".into(),
                value: rows as u64,
                limit: u32::MAX as u64,
                why: "32-bit row indices of the trainer".into(),
            });
        }
        crate::tensor::check_finite("training windows", &data)?;
        Ok(Windows { rows, dim, data })
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// The training positions: global window indices into the concatenation of all inputs'
/// positions (input by input, `q = (n·OH + oy)·OW + ox` inside each), sorted. All of `0..total`
/// when `max` is `None` or at least `total`; otherwise `max` distinct indices drawn uniformly
/// without replacement (Floyd's algorithm) with a SplitMix64 generator seeded by `seed`.
pub fn sample_positions(total: u64, max: Option<usize>, seed: u64) -> Vec<u64> {
    match max {
        Some(k) if (k as u64) < total => {
            let mut rng = SplitMix64(seed);
            let mut chosen: HashSet<u64> = HashSet::with_capacity(k);
            for j in (total - k as u64)..total {
                let t = rng.below_or_eq(j);
                if !chosen.insert(t) {
                    chosen.insert(j);
                }
            }
            let mut v: Vec<u64> = chosen.into_iter().collect();
            v.sort_unstable();
            v
        }
        _ => (0..total).collect(),
    }
}

/// Extracts the windows of group `group` at the given global positions (see
/// [`sample_positions`]) from `inputs` (each `N×C×H×W` or `N×C×L`) into an `N×D` matrix.
pub fn extract_windows(
    spec: &ConvSpec,
    inputs: &[Tensor],
    positions: &[u64],
    group: usize,
) -> Result<Windows> {
    let geoms: Vec<Geometry> = inputs
        .iter()
        .map(|x| spec.geometry(x.shape()))
        .collect::<Result<_>>()?;
    let geom0 = geoms
        .first()
        .ok_or_else(|| Error::Argument("no training inputs were given".into()))?;
    if group >= geom0.groups {
        return Err(Error::Argument(format!(
            "group {group} does not exist (the layer has {})",
            geom0.groups
        )));
    }
    let d = geom0.window_len();
    // Start of each input's positions in the global numbering.
    let mut starts = Vec::with_capacity(geoms.len());
    let mut acc = 0u64;
    for g in &geoms {
        starts.push(acc);
        acc += (g.batch * g.positions()) as u64;
    }
    if let Some(&p) = positions.iter().find(|&&p| p >= acc) {
        return Err(Error::Argument(format!(
            "window position {p} is outside the {acc} windows of the inputs"
        )));
    }
    let len = positions
        .len()
        .checked_mul(d)
        .ok_or_else(|| Error::Shape("window matrix size overflows".into()))?;
    let mut data = vec![0.0f32; len];
    data.par_chunks_mut(d)
        .zip(positions.par_iter())
        .try_for_each(|(row, &p)| {
            let i = starts.partition_point(|&s| s <= p) - 1;
            let g = &geoms[i];
            let q = (p - starts[i]) as usize;
            let (n, r) = (q / g.positions(), q % g.positions());
            super::mirror::window_into(g, inputs[i].data(), n, group, r / g.out_w, r % g.out_w, row)
        })?;
    Windows::new(positions.len(), d, data)
}

/// The `C` contiguous dimension ranges of the codebooks over `0..d`: the first `d mod C` ranges
/// hold `d/C + 1` dimensions, the others `d/C`.
pub fn codebook_ranges(d: usize, codebooks: usize) -> Result<Vec<Range<usize>>> {
    if codebooks == 0 || codebooks > d {
        return Err(Error::Argument(format!(
            "codebooks = {codebooks}; it must be between 1 and the window length D = {d}"
        )));
    }
    let (base, extra) = (d / codebooks, d % codebooks);
    let mut start = 0;
    Ok((0..codebooks)
        .map(|c| {
            let len = base + usize::from(c < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect())
}

/// One learned hash tree (one codebook).
#[derive(Clone, Debug, PartialEq)]
pub struct Tree {
    /// The window dimension (in `0..D`) each level tests.
    pub split_dims: [u32; TREE_DEPTH],
    /// Thresholds per level; level `t` uses slots `0..2^t`, the rest are 0.
    pub thresholds: [[f32; LEVEL_SLOTS]; TREE_DEPTH],
    /// SSE of the training rows around their bucket means on the codebook's dimensions, before
    /// any split (index 0) and after each level.
    pub level_sse: [f64; TREE_DEPTH + 1],
}

impl Tree {
    /// The code (`0..16`) of a window `a` (`D` values): the encoding rule of the module docs.
    pub fn encode(&self, a: &[f32]) -> u8 {
        let mut i = 0usize;
        for t in 0..TREE_DEPTH {
            let v = a[self.split_dims[t] as usize];
            i = 2 * i + usize::from(v > self.thresholds[t][i]);
        }
        i as u8
    }
}

/// The trees of one group and the codes of the training windows.
#[derive(Clone, Debug, PartialEq)]
pub struct Trees {
    /// One tree per codebook.
    pub trees: Vec<Tree>,
    /// `[N, C]`: the code of every training window in every codebook.
    pub codes: Vec<u8>,
}

/// Learns one tree per codebook range over `windows` (see the module docs).
pub fn learn_trees(windows: &Windows, ranges: &[Range<usize>]) -> Result<Trees> {
    learn_trees_in_groups(windows, &ranges_to_groups(ranges), &mut |_, _| {})
}

/// The dimensions of each range, as lists.
pub fn ranges_to_groups(ranges: &[Range<usize>]) -> Vec<Vec<u32>> {
    ranges
        .iter()
        .map(|r| r.clone().map(|j| j as u32).collect())
        .collect()
}

/// [`learn_trees`] over codebooks that cover any lists of dimensions (`groups[c]`, each
/// non-empty, in `0..D`), with progress reports `(done, total)` in codebooks.
pub fn learn_trees_in_groups(
    windows: &Windows,
    groups: &[Vec<u32>],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Trees> {
    if let Some(r) = groups
        .iter()
        .find(|r| r.is_empty() || r.iter().any(|&j| j as usize >= windows.dim))
    {
        return Err(Error::Argument(format!(
            "codebook dimensions {r:?} are empty or outside the window (D = {})",
            windows.dim
        )));
    }
    let c_total = groups.len();
    // Chunks of codebooks between progress reports; a multiple of the thread count.
    let chunk = (rayon::current_num_threads() * 4).max(8);
    let mut results: Vec<(Tree, Vec<u8>)> = Vec::with_capacity(c_total);
    progress(0, c_total);
    for start in (0..c_total).step_by(chunk) {
        let end = (start + chunk).min(c_total);
        let part: Vec<(Tree, Vec<u8>)> = groups[start..end]
            .par_iter()
            .map(|r| learn_tree(windows, r))
            .collect();
        results.extend(part);
        progress(end, c_total);
    }
    let n = windows.rows;
    let mut codes = vec![0u8; n * c_total];
    for (c, (_, b)) in results.iter().enumerate() {
        for (r, &k) in b.iter().enumerate() {
            codes[r * c_total + c] = k;
        }
    }
    Ok(Trees {
        trees: results.into_iter().map(|(t, _)| t).collect(),
        codes,
    })
}

/// Per-bucket statistics of the rows on a codebook's dimensions, from the centred rows
/// (`x − μ`, for numerical stability; the SSE does not change).
struct BucketStats {
    count: Vec<usize>,
    /// `[buckets, w]`: Σ (x − μ).
    sum: Vec<f64>,
    /// `[buckets, w]`: Σ (x − μ)².
    sumsq: Vec<f64>,
}

impl BucketStats {
    fn new(xc: &[f32], w: usize, bucket: &[u8], buckets: usize) -> BucketStats {
        let mut s = BucketStats {
            count: vec![0; buckets],
            sum: vec![0.0; buckets * w],
            sumsq: vec![0.0; buckets * w],
        };
        for (row, &b) in xc.chunks_exact(w).zip(bucket) {
            let b = b as usize;
            s.count[b] += 1;
            let sum = &mut s.sum[b * w..(b + 1) * w];
            let sq = &mut s.sumsq[b * w..(b + 1) * w];
            for ((s, q), &v) in sum.iter_mut().zip(sq.iter_mut()).zip(row) {
                let v = v as f64;
                *s += v;
                *q += v * v;
            }
        }
        s
    }

    /// Within-bucket SSE of bucket `b`, dimension `j`.
    fn sse(&self, b: usize, j: usize, w: usize) -> f64 {
        let n = self.count[b];
        if n == 0 {
            return 0.0;
        }
        let s = self.sum[b * w + j];
        (self.sumsq[b * w + j] - s * s / n as f64).max(0.0)
    }
}

/// A key whose unsigned order is the numeric order of finite f32 values.
#[inline]
fn order_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The inverse of [`order_key`].
#[inline]
fn key_value(k: u32) -> f32 {
    f32::from_bits(if k & 0x8000_0000 != 0 {
        k & 0x7FFF_FFFF
    } else {
        !k
    })
}

/// One column of a codebook's rows in increasing order.
pub(crate) struct SortedColumn {
    /// Row indices, ties in increasing row order.
    pub(crate) order: Vec<u32>,
    /// The column's values in that order.
    pub(crate) values: Vec<f32>,
}

/// Sorts column `j` of the `n×w` matrix `x`: a stable LSD radix sort on [`order_key`]
/// (3 passes of 11 bits, passes where every key shares the digit skipped).
pub(crate) fn sort_column(x: &[f32], w: usize, j: usize) -> SortedColumn {
    const BITS: u32 = 11;
    const RADIX: usize = 1 << BITS;
    let n = x.len() / w;
    let mut keys: Vec<u32> = x.chunks_exact(w).map(|row| order_key(row[j])).collect();
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut keys2 = vec![0u32; n];
    let mut order2 = vec![0u32; n];
    for pass in 0..3 {
        let shift = pass * BITS;
        let mut hist = vec![0usize; RADIX];
        for &k in &keys {
            hist[((k >> shift) as usize) & (RADIX - 1)] += 1;
        }
        if hist.contains(&n) {
            continue;
        }
        let mut pos = 0;
        for h in hist.iter_mut() {
            let c = *h;
            *h = pos;
            pos += c;
        }
        for (&k, &o) in keys.iter().zip(&order) {
            let digit = ((k >> shift) as usize) & (RADIX - 1);
            keys2[hist[digit]] = k;
            order2[hist[digit]] = o;
            hist[digit] += 1;
        }
        std::mem::swap(&mut keys, &mut keys2);
        std::mem::swap(&mut order, &mut order2);
    }
    SortedColumn {
        order,
        values: keys.into_iter().map(key_value).collect(),
    }
}

/// A threshold `t` with `lo ≤ t < hi` (so `lo` goes left and `hi` right): the midpoint where
/// f32 rounding allows, else `lo`.
#[inline]
pub(crate) fn midpoint(lo: f32, hi: f32) -> f32 {
    let m = ((lo as f64 + hi as f64) * 0.5) as f32;
    if m >= lo && m < hi {
        m
    } else {
        lo
    }
}

/// Values per [`Line`].
const LINE: usize = 16;

/// A cache line of row values: a codebook's row is stored as `ceil(w/16)` lines, zero-padded, so
/// that gathering a row in sorted order touches as few cache lines as possible.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; LINE]);

fn lines_as_f32(lines: &[Line]) -> &[f32] {
    // SAFETY: `Line` is `repr(C)` holding exactly `LINE` f32 values and no padding (64 bytes).
    unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<f32>(), lines.len() * LINE) }
}

/// Asks the CPU to bring `lines` into the cache (a hint; no effect off x86-64).
#[inline(always)]
fn prefetch(lines: &[Line]) {
    #[cfg(target_arch = "x86_64")]
    for line in lines {
        // SAFETY: a prefetch is only a hint and never faults; the pointer comes from a reference.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                (line as *const Line).cast::<i8>(),
                std::arch::x86_64::_MM_HINT_T0,
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = lines;
}

/// The best split of every bucket of one level on one column.
///
/// `rows` holds the centred rows (`n×w`) and `bucket` their buckets, both in the column's
/// sorted order, whose values are `values`. Returns the summed loss and the thresholds.
fn best_splits(
    rows: &[Line],
    bucket: &[u8],
    values: &[f32],
    w: usize,
    stats: &BucketStats,
    buckets: usize,
) -> (f64, [f32; LEVEL_SLOTS]) {
    let lines = w.div_ceil(LINE);
    let rows: &[f32] = lines_as_f32(rows);
    let ws = lines * LINE;
    // Running left sums and the buckets' totals, zero-padded to whole lines so that the loops
    // below have fixed-size blocks (the padding contributes 0).
    let mut left = vec![0.0f64; buckets * ws];
    let mut total = vec![0.0f64; buckets * ws];
    for b in 0..buckets {
        total[b * ws..b * ws + w].copy_from_slice(&stats.sum[b * w..(b + 1) * w]);
    }
    let mut n_left = [0usize; LEVEL_SLOTS];
    let mut last = [0.0f32; LEVEL_SLOTS];
    let mut best_gain = [f64::NEG_INFINITY; LEVEL_SLOTS];
    let mut thr = [0.0f32; LEVEL_SLOTS];
    for ((row, &b), &v) in rows.chunks_exact(ws).zip(bucket).zip(values) {
        let b = b as usize;
        let nl = n_left[b];
        let lb = &mut left[b * ws..(b + 1) * ws];
        if nl > 0 && v > last[b] {
            // Split between the rows so far (left) and this one onwards (right):
            // SSE(L) + SSE(R) = Σ x² − (Σ_d L_d²/n_l + R_d²/n_r); maximise the bracket.
            let nr = stats.count[b] - nl;
            let (il, ir) = (1.0 / nl as f64, 1.0 / nr as f64);
            let sb = &total[b * ws..(b + 1) * ws];
            // Eight partial sums in a fixed order: vectorises, and stays deterministic.
            let mut acc = [0.0f64; 8];
            for (lc, sc) in lb.chunks_exact(8).zip(sb.chunks_exact(8)) {
                for k in 0..8 {
                    let (l, r) = (lc[k], sc[k] - lc[k]);
                    acc[k] += l * l * il + r * r * ir;
                }
            }
            let gain =
                ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            if gain > best_gain[b] {
                best_gain[b] = gain;
                thr[b] = midpoint(last[b], v);
            }
        }
        for (l, &xv) in lb.iter_mut().zip(row) {
            *l += xv as f64;
        }
        n_left[b] = nl + 1;
        last[b] = v;
    }
    // After the walk `last[b]` is the largest value of bucket b.
    let mut loss = 0.0f64;
    for b in 0..buckets {
        let n = stats.count[b];
        if n < 2 {
            // Any threshold; the row (if any) goes left. Loss 0.
            thr[b] = if n == 1 { last[b] } else { 0.0 };
            continue;
        }
        if best_gain[b] == f64::NEG_INFINITY {
            // Every row has the same value here: no threshold separates them; all go left.
            thr[b] = last[b];
            loss += (0..w).map(|d| stats.sse(b, d, w)).sum::<f64>();
            continue;
        }
        let total_sq: f64 = stats.sumsq[b * w..(b + 1) * w].iter().sum();
        loss += (total_sq - best_gain[b]).max(0.0);
    }
    (loss, thr)
}

/// Learns the tree of one codebook; returns it with the codes of the rows.
fn learn_tree(windows: &Windows, group: &[u32]) -> (Tree, Vec<u8>) {
    let n = windows.rows;
    let w = group.len();
    let mut x = vec![0.0f32; n * w];
    for (dst, src) in x
        .chunks_exact_mut(w)
        .zip(windows.data.chunks_exact(windows.dim))
    {
        for (v, &j) in dst.iter_mut().zip(group) {
            *v = src[j as usize];
        }
    }
    let mut mu = vec![0.0f64; w];
    for row in x.chunks_exact(w) {
        for (m, &v) in mu.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    let mu: Vec<f32> = mu.iter().map(|&m| (m / n as f64) as f32).collect();
    // Centred rows, for the sums.
    let xc: Vec<f32> = x
        .chunks_exact(w)
        .flat_map(|row| row.iter().zip(&mu).map(|(&v, &m)| v - m))
        .collect();
    // The same as cache lines, zero-padded.
    let lines = w.div_ceil(LINE);
    let mut xl = vec![Line([0.0; LINE]); n * lines];
    for (dst, src) in xl.chunks_exact_mut(lines).zip(xc.chunks_exact(w)) {
        for (line, part) in dst.iter_mut().zip(src.chunks(LINE)) {
            line.0[..part.len()].copy_from_slice(part);
        }
    }
    let mut bucket = vec![0u8; n];
    let mut sorted: Vec<Option<SortedColumn>> = (0..w).map(|_| None).collect();
    // Rows gathered in a column's sorted order (reused). Keeping one copy per column across
    // levels was measured slower than gathering again from the cache-resident `xl`.
    let mut rows_sorted = vec![Line([0.0; LINE]); n * lines];
    let mut bucket_sorted = vec![0u8; n];
    let mut tree = Tree {
        split_dims: [0; TREE_DEPTH],
        thresholds: [[0.0; LEVEL_SLOTS]; TREE_DEPTH],
        level_sse: [0.0; TREE_DEPTH + 1],
    };
    for t in 0..TREE_DEPTH {
        let buckets = 1usize << t;
        let stats = BucketStats::new(&xc, w, &bucket, buckets);
        let col_sse: Vec<f64> = (0..w)
            .map(|j| (0..buckets).map(|b| stats.sse(b, j, w)).sum())
            .collect();
        if t == 0 {
            tree.level_sse[0] = col_sse.iter().sum();
        }
        let mut dims: Vec<usize> = (0..w).collect();
        dims.sort_by(|&a, &b| col_sse[b].total_cmp(&col_sse[a]).then(a.cmp(&b)));
        dims.truncate(TREE_DEPTH.min(w));
        let mut best: Option<(f64, usize, [f32; LEVEL_SLOTS])> = None;
        for &j in &dims {
            let col = sorted[j].get_or_insert_with(|| sort_column(&x, w, j));
            for (bs, &r) in bucket_sorted.iter_mut().zip(&col.order) {
                *bs = bucket[r as usize];
            }
            // Gather the rows in sorted order (random reads): prefetching a few rows ahead
            // was measured to save 10–20 % of the tree time.
            const AHEAD: usize = 16;
            for (i, (dst, &r)) in rows_sorted
                .chunks_exact_mut(lines)
                .zip(&col.order)
                .enumerate()
            {
                if let Some(&next) = col.order.get(i + AHEAD) {
                    prefetch(&xl[next as usize * lines..][..lines]);
                }
                // (An element loop: `copy_from_slice` calls memmove, slow for one line.)
                for (d, s) in dst.iter_mut().zip(&xl[r as usize * lines..][..lines]) {
                    *d = *s;
                }
            }
            let (loss, thr) = best_splits(
                &rows_sorted,
                &bucket_sorted,
                &col.values,
                w,
                &stats,
                buckets,
            );
            if best.as_ref().is_none_or(|b| loss < b.0) {
                best = Some((loss, j, thr));
            }
        }
        // `dims` is never empty (w ≥ 1), so `best` is set.
        let (loss, j, thr) = best.unwrap_or((tree.level_sse[t], 0, [0.0; LEVEL_SLOTS]));
        for (b, row) in bucket.iter_mut().zip(x.chunks_exact(w)) {
            *b = 2 * *b + u8::from(row[j] > thr[*b as usize]);
        }
        tree.split_dims[t] = group[j];
        tree.thresholds[t][..buckets].copy_from_slice(&thr[..buckets]);
        tree.level_sse[t + 1] = loss;
    }
    (tree, bucket)
}

/// `GᵀG` of the one-hot code matrix (`16C × 16C`, as f64): bucket counts on the diagonal
/// blocks, co-occurrence counts of codebook pairs off them.
fn gram(codes: &[u8], n: usize, c_total: usize) -> Vec<f64> {
    let k = BUCKETS * c_total;
    // Rows 16c..16c+16 for the columns of codebooks c' ≥ c, one task per codebook.
    let blocks: Vec<Vec<u32>> = (0..c_total)
        .into_par_iter()
        .map(|c| {
            let mut m = vec![0u32; BUCKETS * k];
            for row in codes.chunks_exact(c_total).take(n) {
                let mrow = &mut m[row[c] as usize * k..][..k];
                for (c2, &code) in row.iter().enumerate().skip(c) {
                    mrow[BUCKETS * c2 + code as usize] += 1;
                }
            }
            m
        })
        .collect();
    let mut g = vec![0.0f64; k * k];
    for (c, m) in blocks.iter().enumerate() {
        for i in 0..BUCKETS {
            let r = BUCKETS * c + i;
            for col in BUCKETS * c..k {
                let v = m[i * k + col] as f64;
                g[r * k + col] = v;
                g[col * k + r] = v;
            }
        }
    }
    g
}

/// `GᵀA` (`16C × D`, f64): the sums of the windows falling in each bucket of each codebook.
/// Each task streams the rows once for its codebooks, summing blocks of rows in f32 and the
/// blocks in f64, in an order that does not depend on the number of threads.
fn gt_a(windows: &Windows, codes: &[u8], c_total: usize) -> Vec<f64> {
    const BLOCK: usize = 256;
    const FLUSH: usize = 4096;
    let d = windows.dim;
    let n = windows.rows;
    let per_task = c_total.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let mut out = vec![0.0f64; BUCKETS * c_total * d];
    out.par_chunks_mut(per_task * BUCKETS * d)
        .enumerate()
        .for_each(|(task, out)| {
            let c0 = task * per_task;
            let cs = out.len() / (BUCKETS * d);
            let mut acc = vec![0.0f32; cs * BUCKETS * d];
            let flush = |acc: &mut [f32], out: &mut [f64]| {
                for (o, a) in out.iter_mut().zip(acc.iter_mut()) {
                    *o += *a as f64;
                    *a = 0.0;
                }
            };
            for start in (0..n).step_by(BLOCK) {
                let end = (start + BLOCK).min(n);
                for ci in 0..cs {
                    let c = c0 + ci;
                    let acc_c = &mut acc[ci * BUCKETS * d..(ci + 1) * BUCKETS * d];
                    for r in start..end {
                        let k = codes[r * c_total + c] as usize;
                        let dst = &mut acc_c[k * d..(k + 1) * d];
                        for (a, &v) in dst.iter_mut().zip(windows.row(r)) {
                            *a += v;
                        }
                    }
                }
                if end.is_multiple_of(FLUSH) || end == n {
                    flush(&mut acc, out);
                }
            }
        });
    out
}

/// The bucket means `P0` (`16C × D`, zero outside each codebook's range); an empty bucket takes
/// the mean of its nearest ancestor (in its tree) that has rows.
fn bucket_means(gta: &[f64], counts: &[f64], groups: &[Vec<u32>], d: usize) -> Vec<f64> {
    let mut p0 = vec![0.0f64; BUCKETS * groups.len() * d];
    for (c, r) in groups.iter().enumerate() {
        for k in 0..BUCKETS {
            // Subtrees from the leaf upwards: 1, 2, 4, 8, 16 leaves.
            for level in 0..=TREE_DEPTH {
                let first = (k >> level) << level;
                let leaves = first..first + (1 << level);
                let n: f64 = leaves.clone().map(|l| counts[BUCKETS * c + l]).sum();
                if n > 0.0 {
                    let dst = &mut p0[(BUCKETS * c + k) * d..][..d];
                    for l in leaves {
                        let src = &gta[(BUCKETS * c + l) * d..][..d];
                        for &j in r {
                            dst[j as usize] += src[j as usize];
                        }
                    }
                    for &j in r {
                        dst[j as usize] /= n;
                    }
                    break;
                }
            }
        }
    }
    p0
}

/// In-place Cholesky factorisation of the symmetric positive definite `n×n` matrix `a`
/// (row-major); the lower triangle becomes `L` with `a = L·Lᵀ`.
fn cholesky(a: &mut [f64], n: usize) -> Result<()> {
    for j in 0..n {
        let (row_j, below) = a[j * n..].split_at_mut(n);
        let s = row_j[j] - dot(&row_j[..j], &row_j[..j]);
        if !(s > 0.0 && s.is_finite()) {
            return Err(Error::Training(format!(
                "the ridge system is not positive definite (pivot {j} is {s}); \
                 use a larger lambda"
            )));
        }
        let ljj = s.sqrt();
        row_j[j] = ljj;
        let lj = &row_j[..j];
        below.par_chunks_mut(n).for_each(|row_i| {
            row_i[j] = (row_i[j] - dot(&row_i[..j], lj)) / ljj;
        });
    }
    Ok(())
}

#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Four partial sums: vectorises, and the order is fixed.
    let mut s = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..4 {
            s[i] += x[i] * y[i];
        }
    }
    let mut t = (s[0] + s[1]) + (s[2] + s[3]);
    for (x, y) in ra.iter().zip(rb) {
        t += x * y;
    }
    t
}

/// Solves `L·Lᵀ·X = B` in place for `B` (`n × k`, row-major), `L` from [`cholesky`].
fn cholesky_solve(l: &[f64], n: usize, b: &mut [f64], k: usize) {
    // Forward: L·Y = B.
    for i in 0..n {
        let (done, rest) = b.split_at_mut(i * k);
        let bi = &mut rest[..k];
        for (p, prev) in done.chunks_exact(k).enumerate() {
            let lip = l[i * n + p];
            if lip != 0.0 {
                for (x, &y) in bi.iter_mut().zip(prev) {
                    *x -= lip * y;
                }
            }
        }
        let inv = 1.0 / l[i * n + i];
        bi.iter_mut().for_each(|x| *x *= inv);
    }
    // Backward: Lᵀ·X = Y.
    for i in (0..n).rev() {
        let (head, tail) = b.split_at_mut((i + 1) * k);
        let bi = &mut head[i * k..];
        for (p, next) in tail.chunks_exact(k).enumerate() {
            let lpi = l[(i + 1 + p) * n + i];
            if lpi != 0.0 {
                for (x, &y) in bi.iter_mut().zip(next) {
                    *x -= lpi * y;
                }
            }
        }
        let inv = 1.0 / l[i * n + i];
        bi.iter_mut().for_each(|x| *x *= inv);
    }
}

/// How the ridge solution is projected before the solve.
enum Projection<'a> {
    /// Dense prototypes: `K = D` columns.
    Identity,
    /// Tables: `T = wᵀ` for a weight `w` of `K×D` (row-major).
    Weight(&'a [f32], usize),
}

/// Where the ridge refinement starts from (and shrinks towards).
enum Prior<'a> {
    /// MADDNESS: the bucket means of the windows on each codebook's dimensions.
    BucketMeans(&'a [Vec<u32>]),
    /// Given tables `[C, 16, M]` (only with [`Projection::Weight`]).
    Tables(&'a [f64]),
}

/// The ridge refinement of one group, projected: returns `(P0·T, W·T)`, both `16C × K`, where
/// `W` solves `(GᵀG + λI)·W = Gᵀ(A − G·P0)`; with a table prior `T0`, `(T0, W)` where
/// `(GᵀG + λI)·W = GᵀA·wᵀ − GᵀG·T0`, i.e. `T0 + W` minimises `‖A·wᵀ − G·T‖² + λ‖T − T0‖²`.
fn ridge(
    windows: &Windows,
    codes: &[u8],
    c_total: usize,
    prior: Prior<'_>,
    lambda: f64,
    proj: Projection<'_>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<f64>, Vec<f64>)> {
    const STEPS: usize = 4;
    let n_sys = BUCKETS * c_total;
    let d = windows.dim;
    progress(0, STEPS);
    let mut g = gram(codes, windows.rows, c_total);
    let gta = gt_a(windows, codes, c_total);
    progress(1, STEPS);
    let counts: Vec<f64> = (0..n_sys).map(|i| g[i * n_sys + i]).collect();
    // Project P0 and GᵀA: (16C × D)·T.
    let (k, p0t, gtat) = match (proj, prior) {
        (Projection::Identity, Prior::BucketMeans(groups)) => {
            (d, bucket_means(&gta, &counts, groups, d), gta)
        }
        (Projection::Identity, Prior::Tables(_)) => {
            return Err(Error::Argument(
                "a table prior needs the weight projection".into(),
            ))
        }
        (Projection::Weight(w, m), prior) => {
            let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
            let p0t = match prior {
                Prior::Tables(t0) => t0.to_vec(),
                Prior::BucketMeans(groups) => {
                    let p0 = bucket_means(&gta, &counts, groups, d);
                    let mut out = vec![0.0f64; n_sys * m];
                    out.par_chunks_mut(m).enumerate().for_each(|(i, o)| {
                        let s = &p0[i * d..(i + 1) * d];
                        let dims = &groups[i / BUCKETS];
                        for (mm, o) in o.iter_mut().enumerate() {
                            let wr = &w64[mm * d..(mm + 1) * d];
                            *o = dims.iter().map(|&j| s[j as usize] * wr[j as usize]).sum();
                        }
                    });
                    out
                }
            };
            (m, p0t, project_rows(&gta, d, &w64, m))
        }
    };
    // Right-hand side: Gᵀ(A − G·P0)·T = GᵀA·T − GᵀG·(P0·T).
    let mut rhs = gtat;
    rhs.par_chunks_mut(k).enumerate().for_each(|(i, r)| {
        let gi = &g[i * n_sys..(i + 1) * n_sys];
        for (p, &gip) in gi.iter().enumerate() {
            if gip != 0.0 {
                for (x, &y) in r.iter_mut().zip(&p0t[p * k..(p + 1) * k]) {
                    *x -= gip * y;
                }
            }
        }
    });
    progress(2, STEPS);
    for i in 0..n_sys {
        g[i * n_sys + i] += lambda;
    }
    cholesky(&mut g, n_sys)?;
    progress(3, STEPS);
    cholesky_solve(&g, n_sys, &mut rhs, k);
    progress(STEPS, STEPS);
    Ok((p0t, rhs))
}

/// `src·wᵀ` for `src` (`rows×d`, f64) and `w` (`m×d`): `rows×m`.
fn project_rows(src: &[f64], d: usize, w64: &[f64], m: usize) -> Vec<f64> {
    let rows = src.len() / d;
    let mut out = vec![0.0f64; rows * m];
    out.par_chunks_mut(m).enumerate().for_each(|(i, o)| {
        let s = &src[i * d..(i + 1) * d];
        for (mm, o) in o.iter_mut().enumerate() {
            *o = dot(s, &w64[mm * d..(mm + 1) * d]);
        }
    });
    out
}

/// Dense prototypes of one group.
#[derive(Clone, Debug, PartialEq)]
pub struct Prototypes {
    /// `[C, 16, D]`: bucket means, zero outside each codebook's range.
    pub p0: Vec<f32>,
    /// `[C, 16, D]`: after the ridge refinement (dense).
    pub p: Vec<f32>,
}

/// Bucket means and their ridge refinement for windows encoded by `trees` (see the module
/// docs), as dense `[C, 16, D]` prototypes. [`train`] computes only their projection on the
/// weight; this is for analysis and tests (it solves for `D` right-hand sides instead of `M`).
pub fn learn_prototypes(
    windows: &Windows,
    ranges: &[Range<usize>],
    trees: &Trees,
    lambda: f32,
) -> Result<Prototypes> {
    check_lambda(lambda)?;
    check_codes(windows, ranges, trees)?;
    let (p0, w) = ridge(
        windows,
        &trees.codes,
        ranges.len(),
        Prior::BucketMeans(&ranges_to_groups(ranges)),
        lambda as f64,
        Projection::Identity,
        &mut |_, _| {},
    )?;
    let p = p0.iter().zip(&w).map(|(a, b)| (a + b) as f32).collect();
    Ok(Prototypes {
        p0: p0.into_iter().map(|v| v as f32).collect(),
        p,
    })
}

fn check_codes(windows: &Windows, ranges: &[Range<usize>], trees: &Trees) -> Result<()> {
    if trees.trees.len() != ranges.len()
        || trees.codes.len() != windows.rows * ranges.len()
        || trees.codes.iter().any(|&c| c as usize >= BUCKETS)
    {
        return Err(Error::Argument(format!(
            "trees ({} trees, {} codes) do not fit {} windows and {} codebooks",
            trees.trees.len(),
            trees.codes.len(),
            windows.rows,
            ranges.len()
        )));
    }
    Ok(())
}

fn check_lambda(lambda: f32) -> Result<()> {
    if !(lambda.is_finite() && lambda > 0.0) {
        return Err(Error::Argument(format!(
            "lambda = {lambda}; the ridge regularisation must be finite and > 0 (the system \
             GᵀG alone is singular)"
        )));
    }
    Ok(())
}

/// A stopwatch that reads 0 where the platform has no clock (wasm32-unknown-unknown).
struct Stopwatch(#[cfg(not(target_arch = "wasm32"))] std::time::Instant);

impl Stopwatch {
    fn start() -> Self {
        Stopwatch(
            #[cfg(not(target_arch = "wasm32"))]
            std::time::Instant::now(),
        )
    }
    fn seconds(&self) -> f64 {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.0.elapsed().as_secs_f64()
        }
        #[cfg(target_arch = "wasm32")]
        {
            0.0
        }
    }
}

/// Learns the tables of a layer: `spec`, its `weight` (`O×(C/g)×KH×KW` or `O×(C/g)×K`), `bias`
/// (`O`, present iff `spec.bias`) and training `inputs` (each `N×C×H×W` or `N×C×L`, sizes may
/// differ). `progress` is called on the calling thread as the stages advance.
///
/// Fails on shape mismatches, non-finite values ([`Error::NonFinite`]), invalid settings
/// ([`Error::Argument`]) and an unsolvable ridge system ([`Error::Training`]).
pub fn train(
    spec: &ConvSpec,
    weight: &Tensor,
    bias: Option<&Tensor>,
    inputs: &[Tensor],
    config: &TrainConfig,
    progress: &mut dyn FnMut(TrainProgress),
) -> Result<Tables> {
    train_with_report(spec, weight, bias, inputs, config, progress).map(|(t, _)| t)
}

/// [`train`], also returning diagnostics: per-level SSE of the trees and time per stage.
pub fn train_with_report(
    spec: &ConvSpec,
    weight: &Tensor,
    bias: Option<&Tensor>,
    inputs: &[Tensor],
    config: &TrainConfig,
    progress: &mut dyn FnMut(TrainProgress),
) -> Result<(Tables, TrainReport)> {
    let clock = Stopwatch::start();
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
    if config.max_windows == Some(0) {
        return Err(Error::Argument(
            "max_windows = 0; at least 1 window is needed".into(),
        ));
    }
    let geom = spec.geometry(inputs[0].shape())?;
    let d = geom.window_len();
    let c_total = config.codebooks.unwrap_or_else(|| default_codebooks(d));
    if config.learner == Learner::Maddness && c_total > MAX_TRAIN_CODEBOOKS {
        return Err(Error::TooLarge {
            what: "codebooks".into(),
            value: c_total as u64,
            limit: MAX_TRAIN_CODEBOOKS as u64,
            why: "MADDNESS's ridge system is 16C×16C doubles (the output-aware learner, \
                  --learner output, takes more)"
                .into(),
        });
    }
    if c_total > MAX_CODEBOOKS_U32_SUM {
        return Err(Error::TooLarge {
            what: "codebooks".into(),
            value: c_total as u64,
            limit: MAX_CODEBOOKS_U32_SUM as u64,
            why: "exact u32 sums of 8-bit table entries".into(),
        });
    }
    codebook_ranges(d, c_total)?;
    let area: usize = spec.kernel.iter().product();
    let groups = spec.groups;
    let mg = spec.out_channels / groups;

    let mut report = TrainReport {
        windows_available: total,
        codebooks: c_total,
        ..Default::default()
    };
    let t = Stopwatch::start();
    let positions = sample_positions(total, config.max_windows, config.seed);
    report.windows_trained = positions.len();
    report.seconds.windows += t.seconds();
    log::info!(
        "training {}: D = {d}, C = {c_total}, {} of {total} windows (seed {}), λ = {}",
        spec.describe(),
        positions.len(),
        config.seed,
        config.lambda
    );

    let gcm = groups * c_total * mg;
    let mut tables = Tables {
        spec: spec.clone(),
        codebooks: c_total,
        split_dims: Vec::with_capacity(groups * c_total * TREE_DEPTH),
        thresholds: Vec::with_capacity(groups * c_total * TREE_DEPTH * LEVEL_SLOTS),
        luts: vec![0; gcm * BUCKETS],
        lut_offsets: vec![0.0; gcm],
        scales: vec![1.0; spec.out_channels],
        bias: bias.map(|b| b.data().to_vec()),
        luts_f32: None,
        meta: TableMeta::default(),
    };
    let mut luts_f32 = vec![0.0f32; gcm * BUCKETS];

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
        let groups_g = super::grouping::groups(config.grouping(), d, area, c_total, &windows)?;
        let mut tree_progress =
            |done, total| report_stage(progress, TrainStage::Trees, done, total);
        let (trees, boosted_prior) = match config.learner {
            Learner::Maddness => {
                let groups_g = groups_g.as_deref().unwrap_or_default();
                (
                    learn_trees_in_groups(&windows, groups_g, &mut tree_progress)?,
                    None,
                )
            }
            Learner::Output => {
                // The tree rows (the same seeded subset `boost` draws).
                let tree_seed = config.seed ^ 0x7472_6565;
                let sub;
                let tree_windows = if windows.rows > config.tree_rows {
                    let rows =
                        sample_positions(windows.rows as u64, Some(config.tree_rows), tree_seed);
                    let mut data = vec![0.0f32; rows.len() * d];
                    data.par_chunks_mut(d)
                        .zip(rows.par_iter())
                        .for_each(|(dst, &r)| dst.copy_from_slice(windows.row(r as usize)));
                    sub = Windows::new(rows.len(), d, data)?;
                    &sub
                } else {
                    &windows
                };
                // The starting point: MADDNESS's trees and tables (learned on the tree rows),
                // or nothing.
                let maddness_start = || -> Result<(Vec<Tree>, Vec<f64>)> {
                    let g0 = match &groups_g {
                        Some(g) => g.clone(),
                        None => ranges_to_groups(&codebook_ranges(d, c_total)?),
                    };
                    let t = learn_trees_in_groups(tree_windows, &g0, &mut |_, _| {})?;
                    let tables = if c_total > MAX_TRAIN_CODEBOOKS {
                        let t0 = bucket_mean_tables(tree_windows, &t.codes, &g0, w_g, mg);
                        refit_with(
                            tree_windows,
                            &t.codes,
                            c_total,
                            &t0,
                            config.lambda as f64,
                            w_g,
                            mg,
                            Solver::ConjugateGradient,
                            &mut |_, _| {},
                        )?
                    } else {
                        let (l0, lw) = ridge(
                            tree_windows,
                            &t.codes,
                            c_total,
                            Prior::BucketMeans(&g0),
                            config.lambda as f64,
                            Projection::Weight(w_g, mg),
                            &mut |_, _| {},
                        )?;
                        l0.iter().zip(&lw).map(|(a, b)| a + b).collect()
                    };
                    Ok((t.trees, tables))
                };
                let params = BoostParams {
                    codebooks: c_total,
                    groups: groups_g.clone(),
                    shortlist: config.shortlist,
                    rank: config.rank,
                    tree_rows: config.tree_rows,
                    score_rows: SCORE_ROWS,
                    min_leaf: config.min_leaf,
                    shrinkage: config.shrinkage as f64,
                    passes: config.passes,
                    seed: tree_seed,
                };
                let mut run = |start: Start| -> Result<Boosted> {
                    match start {
                        Start::Empty => boost(&windows, w_g, mg, &params, None, &mut tree_progress),
                        _ => {
                            let (trees, tables) = maddness_start()?;
                            let init = Init {
                                trees: &trees,
                                tables: &tables,
                            };
                            boost(&windows, w_g, mg, &params, Some(init), &mut tree_progress)
                        }
                    }
                };
                let b = match config.start {
                    Start::Best => {
                        // Both starts; the one that fits the tree rows better wins.
                        let a = run(Start::Maddness)?;
                        let e = run(Start::Empty)?;
                        let last = |b: &Boosted| b.sse.last().copied().unwrap_or(f64::INFINITY);
                        if last(&e) < last(&a) {
                            e
                        } else {
                            a
                        }
                    }
                    start => run(start)?,
                };
                report.boost_sse.push(b.sse);
                (b.trees, Some(b.prior))
            }
        };
        let mut sse = [0.0f64; TREE_DEPTH + 1];
        for tree in &trees.trees {
            for (s, v) in sse.iter_mut().zip(tree.level_sse) {
                *s += v;
            }
        }
        report.level_sse.push(sse);
        report.seconds.trees += t.seconds();
        log::info!(
            "group {g}: {c_total} trees in {:.2} s; SSE per level {:?}",
            t.seconds(),
            sse.map(|v| format!("{v:.4e}"))
        );

        let t = Stopwatch::start();
        let prior = match (&boosted_prior, &groups_g) {
            (Some(t0), _) => Prior::Tables(t0),
            (None, Some(groups_g)) => Prior::BucketMeans(groups_g),
            (None, None) => {
                return Err(Error::Argument(
                    "MADDNESS needs a grouping of the dimensions".into(),
                ))
            }
        };
        let mut ridge_progress =
            |done, total| report_stage(progress, TrainStage::Ridge, done, total);
        let (l0, lw) = if let Some(t0) = &boosted_prior {
            let t = refit_with(
                &windows,
                &trees.codes,
                c_total,
                t0,
                config.lambda as f64,
                w_g,
                mg,
                Solver::Auto,
                &mut ridge_progress,
            )?;
            (vec![0.0; t.len()], t)
        } else {
            ridge(
                &windows,
                &trees.codes,
                c_total,
                prior,
                config.lambda as f64,
                Projection::Weight(w_g, mg),
                &mut ridge_progress,
            )?
        };
        report.seconds.ridge += t.seconds();
        log::info!("group {g}: prototypes and ridge in {:.2} s", t.seconds());

        let t = Stopwatch::start();
        for tree in &trees.trees {
            tables.split_dims.extend_from_slice(&tree.split_dims);
            for level in &tree.thresholds {
                tables.thresholds.extend_from_slice(level);
            }
        }
        let base = g * c_total * BUCKETS * mg;
        for (i, (a, b)) in l0.iter().zip(&lw).enumerate() {
            let v = (a + b) as f32;
            if !v.is_finite() {
                return Err(Error::Training(format!(
                    "table entry {i} of group {g} is {v}; the inputs or weight are too large \
                     for f32"
                )));
            }
            luts_f32[base + i] = v;
        }
        quantize_group(&mut tables, &luts_f32, g);
        if config.refit_offsets {
            refit_offsets(&mut tables, &luts_f32, g, &trees.codes, windows.rows);
        }
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

/// The solver of [`refit_tables`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Solver {
    /// Cholesky up to [`MAX_TRAIN_CODEBOOKS`] codebooks, conjugate gradients above.
    #[default]
    Auto,
    /// Forms `GᵀG` (`16C × 16C` doubles) and factorises it.
    Cholesky,
    /// Preconditioned conjugate gradients on the codes, never forming `GᵀG`.
    ConjugateGradient,
}

/// The tables (`[C, 16, M]`) minimising `‖A·wᵀ − G·T‖² + λ‖T − T0‖²` over the training windows
/// `A` (`N×D`) encoded by `trees`, for the weight `w` (`M×D`, row-major) and the prior `T0`
/// (`[C, 16, M]`). For any `λ > 0` its training error `‖A·wᵀ − G·T‖²` is at most that of `T0`.
pub fn refit_tables(
    windows: &Windows,
    trees: &Trees,
    prior: &[f64],
    lambda: f32,
    weight: &[f32],
    m: usize,
    solver: Solver,
) -> Result<Vec<f64>> {
    check_lambda(lambda)?;
    let c_total = trees.trees.len();
    if trees.codes.len() != windows.rows * c_total
        || prior.len() != c_total * BUCKETS * m
        || weight.len() != m * windows.dim
    {
        return Err(Error::Argument(format!(
            "refit: {} codes, {} prior values and {} weights do not fit {} windows of D = {}, \
             {c_total} codebooks and M = {m}",
            trees.codes.len(),
            prior.len(),
            weight.len(),
            windows.rows,
            windows.dim
        )));
    }
    refit_with(
        windows,
        &trees.codes,
        c_total,
        prior,
        lambda as f64,
        weight,
        m,
        solver,
        &mut |_, _| {},
    )
}

#[allow(clippy::too_many_arguments)]
fn refit_with(
    windows: &Windows,
    codes: &[u8],
    c_total: usize,
    prior: &[f64],
    lambda: f64,
    weight: &[f32],
    m: usize,
    solver: Solver,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    let cg = match solver {
        Solver::Auto => c_total > MAX_TRAIN_CODEBOOKS,
        Solver::Cholesky => false,
        Solver::ConjugateGradient => true,
    };
    if cg {
        refit_cg(windows, codes, c_total, prior, lambda, weight, m, progress)
    } else {
        let (t0, w) = ridge(
            windows,
            codes,
            c_total,
            Prior::Tables(prior),
            lambda,
            Projection::Weight(weight, m),
            progress,
        )?;
        Ok(t0.iter().zip(&w).map(|(a, b)| a + b).collect())
    }
}

/// MADDNESS's bucket-mean tables `P0·wᵀ` (`[C, 16, M]`) computed sparsely: each codebook's
/// bucket sums only over its own dimensions (`16·D` values in all when the groups partition
/// the window), an empty bucket taking its nearest non-empty ancestor's mean.
fn bucket_mean_tables(
    windows: &Windows,
    codes: &[u8],
    groups: &[Vec<u32>],
    weight: &[f32],
    m: usize,
) -> Vec<f64> {
    let c_total = groups.len();
    let d = windows.dim;
    let per: Vec<Vec<f64>> = groups
        .par_iter()
        .enumerate()
        .map(|(c, g)| {
            let w = g.len();
            let mut sums = vec![0.0f64; BUCKETS * w];
            let mut counts = [0.0f64; BUCKETS];
            for r in 0..windows.rows {
                let k = codes[r * c_total + c] as usize;
                counts[k] += 1.0;
                let row = windows.row(r);
                for (s, &j) in sums[k * w..(k + 1) * w].iter_mut().zip(g) {
                    *s += row[j as usize] as f64;
                }
            }
            let mut out = vec![0.0f64; BUCKETS * m];
            for k in 0..BUCKETS {
                for level in 0..=TREE_DEPTH {
                    let first = (k >> level) << level;
                    let leaves = first..first + (1 << level);
                    let n: f64 = leaves.clone().map(|l| counts[l]).sum();
                    if n > 0.0 {
                        let mut mean = vec![0.0f64; w];
                        for l in leaves {
                            for (a, &b) in mean.iter_mut().zip(&sums[l * w..(l + 1) * w]) {
                                *a += b;
                            }
                        }
                        for (mm, o) in out[k * m..(k + 1) * m].iter_mut().enumerate() {
                            *o = mean
                                .iter()
                                .zip(g)
                                .map(|(&a, &j)| a / n * weight[mm * d + j as usize] as f64)
                                .sum();
                        }
                        break;
                    }
                }
            }
            out
        })
        .collect();
    per.concat()
}

/// Rounding-aware offsets: after [`quantize_group`], each (codebook, output) offset of group `g`
/// moves by the mean rounding error of that codebook's entries, weighted by how often the
/// training windows (`codes`, `[n, C]`) fall in each bucket, so that the 8-bit tables are
/// unbiased on the training data. Lowers (or keeps) the training error of each codebook's
/// dequantized column (the weighted mean is its least-squares offset).
fn refit_offsets(tables: &mut Tables, luts_f32: &[f32], g: usize, codes: &[u8], n: usize) {
    let c_total = tables.codebooks;
    let mg = tables.out_per_group();
    let mut counts = vec![0usize; c_total * BUCKETS];
    for row in codes.chunks_exact(c_total).take(n) {
        for (c, &k) in row.iter().enumerate() {
            counts[c * BUCKETS + k as usize] += 1;
        }
    }
    for c in 0..c_total {
        let gc = g * c_total + c;
        let total: usize = counts[c * BUCKETS..(c + 1) * BUCKETS].iter().sum();
        if total == 0 {
            continue;
        }
        for m in 0..mg {
            let scale = tables.scales[g * mg + m];
            let off = tables.lut_offsets[gc * mg + m];
            let mut err = 0.0f64;
            for k in 0..BUCKETS {
                let i = (gc * BUCKETS + k) * mg + m;
                let deq = off as f64 + tables.luts[i] as f64 / scale as f64;
                err += counts[c * BUCKETS + k] as f64 * (luts_f32[i] as f64 - deq);
            }
            tables.lut_offsets[gc * mg + m] = (off as f64 + err / total as f64) as f32;
        }
    }
}

/// Ridge refit of the tables by preconditioned conjugate gradients, for systems too large to
/// factorise (`C` above [`MAX_TRAIN_CODEBOOKS`]): solves `(GᵀG + λI)·T = Gᵀ·Y + λ·T0` with
/// `Y = A·wᵀ`, starting from `T0`, never forming `GᵀG` (each product `GᵀG·X` is one gather and
/// one scatter over the codes), Jacobi preconditioner `diag(GᵀG) + λ` (`GᵀG`'s diagonal blocks
/// are diagonal). Returns `T` (`[C, 16, M]`).
#[allow(clippy::too_many_arguments)]
fn refit_cg(
    windows: &Windows,
    codes: &[u8],
    c_total: usize,
    t0: &[f64],
    lambda: f64,
    w: &[f32],
    m: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    const MAX_ITERS: usize = 60;
    const TOL: f64 = 1e-5;
    const CHUNKS: usize = 8;
    let n = windows.rows;
    let d = windows.dim;
    let n_sys = BUCKETS * c_total;
    progress(0, MAX_ITERS + 1);
    let y = super::boost::matmul_nt(&windows.data, n, d, w, m);
    let rows_per = n.div_ceil(CHUNKS).max(1);
    // GᵀY and the counts, by chunks of rows (fixed order).
    let parts: Vec<(Vec<f64>, Vec<f64>)> = (0..n.div_ceil(rows_per))
        .into_par_iter()
        .map(|ch| {
            let mut acc = vec![0.0f64; n_sys * m];
            let mut cnt = vec![0.0f64; n_sys];
            for r in ch * rows_per..((ch + 1) * rows_per).min(n) {
                let yr = &y[r * m..(r + 1) * m];
                for (c, &k) in codes[r * c_total..(r + 1) * c_total].iter().enumerate() {
                    let i = BUCKETS * c + k as usize;
                    cnt[i] += 1.0;
                    for (a, &v) in acc[i * m..(i + 1) * m].iter_mut().zip(yr) {
                        *a += v as f64;
                    }
                }
            }
            (acc, cnt)
        })
        .collect();
    drop(y);
    let mut b = vec![0.0f64; n_sys * m];
    let mut counts = vec![0.0f64; n_sys];
    for (acc, cnt) in parts {
        b.iter_mut().zip(acc).for_each(|(x, v)| *x += v);
        counts.iter_mut().zip(cnt).for_each(|(x, v)| *x += v);
    }
    b.iter_mut().zip(t0).for_each(|(x, &t)| *x += lambda * t);
    // (GᵀG + λI)·X.
    let apply = |x: &[f64]| -> Vec<f64> {
        let parts: Vec<Vec<f64>> = (0..n.div_ceil(rows_per))
            .into_par_iter()
            .map(|ch| {
                let mut acc = vec![0.0f64; n_sys * m];
                let mut s = vec![0.0f64; m];
                for r in ch * rows_per..((ch + 1) * rows_per).min(n) {
                    let row = &codes[r * c_total..(r + 1) * c_total];
                    s.fill(0.0);
                    for (c, &k) in row.iter().enumerate() {
                        let i = BUCKETS * c + k as usize;
                        for (a, &v) in s.iter_mut().zip(&x[i * m..(i + 1) * m]) {
                            *a += v;
                        }
                    }
                    for (c, &k) in row.iter().enumerate() {
                        let i = BUCKETS * c + k as usize;
                        for (a, &v) in acc[i * m..(i + 1) * m].iter_mut().zip(&s) {
                            *a += v;
                        }
                    }
                }
                acc
            })
            .collect();
        let mut out: Vec<f64> = x.iter().map(|&v| lambda * v).collect();
        for p in parts {
            out.iter_mut().zip(p).for_each(|(o, v)| *o += v);
        }
        out
    };
    let col_dots = |a: &[f64], b: &[f64]| -> Vec<f64> {
        let mut s = vec![0.0f64; m];
        for (ra, rb) in a.chunks_exact(m).zip(b.chunks_exact(m)) {
            for ((s, &x), &y) in s.iter_mut().zip(ra).zip(rb) {
                *s += x * y;
            }
        }
        s
    };
    let inv_diag: Vec<f64> = counts.iter().map(|&c| 1.0 / (c + lambda)).collect();
    let precond = |r: &[f64]| -> Vec<f64> {
        r.chunks_exact(m)
            .zip(&inv_diag)
            .flat_map(|(row, &p)| row.iter().map(move |&v| v * p))
            .collect()
    };
    let b_norm = b
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    let mut x = t0.to_vec();
    let ax = apply(&x);
    let mut r: Vec<f64> = b.iter().zip(&ax).map(|(b, a)| b - a).collect();
    let mut z = precond(&r);
    let mut p = z.clone();
    let mut rz = col_dots(&r, &z);
    for iter in 0..MAX_ITERS {
        let r_norm = r.iter().map(|v| v * v).sum::<f64>().sqrt();
        if r_norm <= TOL * b_norm {
            break;
        }
        let q = apply(&p);
        let pq = col_dots(&p, &q);
        let alpha: Vec<f64> = rz
            .iter()
            .zip(&pq)
            .map(|(&a, &b)| if b > 0.0 { a / b } else { 0.0 })
            .collect();
        for ((xr, rr), (pr, qr)) in x
            .chunks_exact_mut(m)
            .zip(r.chunks_exact_mut(m))
            .zip(p.chunks_exact(m).zip(q.chunks_exact(m)))
        {
            for j in 0..m {
                xr[j] += alpha[j] * pr[j];
                rr[j] -= alpha[j] * qr[j];
            }
        }
        z = precond(&r);
        let rz_new = col_dots(&r, &z);
        let beta: Vec<f64> = rz_new
            .iter()
            .zip(&rz)
            .map(|(&a, &b)| if b > 0.0 { a / b } else { 0.0 })
            .collect();
        for (pr, zr) in p.chunks_exact_mut(m).zip(z.chunks_exact(m)) {
            for j in 0..m {
                pr[j] = zr[j] + beta[j] * pr[j];
            }
        }
        rz = rz_new;
        progress(iter + 1, MAX_ITERS + 1);
    }
    progress(MAX_ITERS + 1, MAX_ITERS + 1);
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::Training(format!(
            "the conjugate-gradient refit diverged (entry {i}); use a larger lambda"
        )));
    }
    Ok(x)
}

/// 8-bit tables of group `g` from the float tables: per (c, m) offset = min over buckets, per
/// output scale `255 / max_c (max_k lut − offset)` (1 where that range is 0 or the quotient is
/// not finite), `q = round((lut − offset)·scale)` clamped to `0..=255`.
fn quantize_group(tables: &mut Tables, luts_f32: &[f32], g: usize) {
    let c_total = tables.codebooks;
    let mg = tables.out_per_group();
    let mut range = vec![0.0f32; mg];
    for c in 0..c_total {
        let gc = g * c_total + c;
        for m in 0..mg {
            let col = (0..BUCKETS).map(|k| luts_f32[(gc * BUCKETS + k) * mg + m]);
            let (lo, hi) = col.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
            tables.lut_offsets[gc * mg + m] = lo;
            range[m] = range[m].max(hi - lo);
        }
    }
    for (m, &r) in range.iter().enumerate() {
        let s = 255.0 / r;
        tables.scales[g * mg + m] = if s.is_finite() && s > 0.0 { s } else { 1.0 };
    }
    for c in 0..c_total {
        let gc = g * c_total + c;
        for k in 0..BUCKETS {
            for m in 0..mg {
                let i = (gc * BUCKETS + k) * mg + m;
                let q = ((luts_f32[i] - tables.lut_offsets[gc * mg + m])
                    * tables.scales[g * mg + m])
                    .round();
                tables.luts[i] = q.clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_and_first_ones_are_longer() {
        let r = codebook_ranges(10, 4).unwrap();
        assert_eq!(r, vec![0..3, 3..6, 6..8, 8..10]);
        assert!(codebook_ranges(3, 4).is_err());
        assert!(codebook_ranges(3, 0).is_err());
        assert_eq!(codebook_ranges(5, 5).unwrap().len(), 5);
    }

    #[test]
    fn sampling_is_seeded_uniform_and_distinct() {
        let a = sample_positions(1000, Some(100), 7);
        let b = sample_positions(1000, Some(100), 7);
        let c = sample_positions(1000, Some(100), 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 100);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        assert!(a.iter().all(|&p| p < 1000));
        assert_eq!(sample_positions(5, Some(100), 0), vec![0, 1, 2, 3, 4]);
        assert_eq!(sample_positions(5, None, 0), vec![0, 1, 2, 3, 4]);
        // Uniform: over many seeds each of 10 positions is drawn about half the time.
        let mut hits = [0usize; 10];
        for seed in 0..4000 {
            for p in sample_positions(10, Some(5), seed) {
                hits[p as usize] += 1;
            }
        }
        for (i, &h) in hits.iter().enumerate() {
            assert!(
                (1800..2200).contains(&h),
                "position {i} drawn {h} times of 4000"
            );
        }
    }

    #[test]
    fn midpoint_separates_neighbours() {
        let lo = 1.0f32;
        let hi = f32::from_bits(lo.to_bits() + 1);
        let t = midpoint(lo, hi);
        assert!(lo <= t && t < hi, "{lo} {t} {hi}");
        assert_eq!(midpoint(1.0, 3.0), 2.0);
        let t = midpoint(-f32::MAX, f32::MAX);
        assert!(t.is_finite());
    }

    #[test]
    fn order_key_sorts_like_floats() {
        let v = [-3.5f32, -0.0, 0.0, 1e-40, 2.0, f32::MAX, -f32::MAX];
        for &a in &v {
            for &b in &v {
                if a < b {
                    assert!(order_key(a) < order_key(b), "{a} {b}");
                }
            }
        }
    }

    #[test]
    fn radix_sort_matches_std_sort() {
        let vals = [3.0f32, -1.0, 0.0, -0.0, 3.0, 1e-30, -1e30, 7.5, 2.0, 3.0];
        let x: Vec<f32> = vals.iter().flat_map(|&v| [v, 1.0]).collect();
        let s = sort_column(&x, 2, 0);
        let mut want: Vec<u32> = (0..vals.len() as u32).collect();
        want.sort_by(|&a, &b| {
            order_key(vals[a as usize])
                .cmp(&order_key(vals[b as usize]))
                .then(a.cmp(&b))
        });
        assert_eq!(s.order, want);
        for (i, &r) in s.order.iter().enumerate() {
            assert_eq!(
                s.values[i].to_bits(),
                vals[r as usize].to_bits(),
                "position {i}"
            );
        }
    }

    #[test]
    fn cholesky_solves_small_system() {
        // A = [[4, 2], [2, 3]], b = [[2], [1]] → x = [0.5, 0].
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        cholesky(&mut a, 2).unwrap();
        let mut b = vec![2.0, 1.0];
        cholesky_solve(&a, 2, &mut b, 1);
        assert!((b[0] - 0.5).abs() < 1e-12 && b[1].abs() < 1e-12, "{b:?}");
        let mut s = vec![1.0, 2.0, 2.0, 1.0];
        assert!(matches!(cholesky(&mut s, 2), Err(Error::Training(_))));
    }
}
