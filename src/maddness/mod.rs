//! MADDNESS for convolution layers: learned hash trees and look-up tables that replace the
//! layer's multiply-adds (Blalock & Guttag, ICML 2021), adapted to windows of a convolution.
//!
//! # The model (one per convolution group)
//!
//! The window of output position `p` in group `g` is the vector `a ∈ R^D`,
//! `D = (C/groups)·KH·KW`, flattened channel-first: `d = (ci·KH + ky)·KW + kx`, zeros where the
//! window reaches into padding (see [`Geometry::input_offset`](crate::spec::Geometry::input_offset)).
//!
//! * **Encode**: codebook `c` is a balanced binary tree of depth `L` ([`Tables::depth`], 4 to 8;
//!   4 unless trained otherwise). All nodes of level `t` test window dimension
//!   `split_dims[g][c][t]`, each node its own threshold:
//!   `i = 0; for t in 0..L { i = 2·i + (a[split_dims[g][c][t]] > thresholds[g][c][t][i]) as u32 }`
//!   gives the code `i ∈ 0..K`, `K = 2^L` buckets (ties go left).
//!   With tied tables ([`Tables::tied_trees_per_tap`]: `C = area·T`, codebook `t·T + c` the
//!   same tree as codebook `c` shifted to tap `t`) the codes are the same, and the GPU computes
//!   each input pixel's `T` codes once (`encode_pixels`) and gathers them (`expand_codes`).
//! * **Accumulate** (8-bit tables): `y[p, o] = (Σ_c luts[g][c][code_c(p)][m]) · inv_scale[o] + offset[o]`
//!   with `o = g·(O/groups) + m`, the u8 entries summed exactly in u32,
//!   `inv_scale[o] = 1 / scale[o]` and `offset[o] = Σ_c lut_offsets[g][c][m] + bias[o]`, both
//!   computed once in f32 by [`Tables::inference_constants`] and shared by the CPU mirror and the
//!   GPU kernels so that they agree.
//!
//! # Layouts of [`Tables`] (C order, `G = groups`, `C = codebooks`, `Mg = O/groups`)
//!
//! | field          | type | shape              |
//! |----------------|------|--------------------|
//! | `split_dims`   | u32  | `[G, C, L]`        |
//! | `thresholds`   | f32  | `[G, C, L, K]` (level `t` uses slots `0..2^t`, the rest are 0) |
//! | `luts`         | u8   | `[G, C, K, Mg]`    |
//! | `lut_offsets`  | f32  | `[G, C, Mg]`       |
//! | `scales`       | f32  | `[O]`              |
//! | `bias`         | f32  | `[O]` or absent    |
//! | `luts_f32`     | f32  | `[G, C, K, Mg]` or absent (float tables, to measure quantization) |
//!
//! # Codes (between encode and accumulate)
//!
//! Packed codes of `B` bits ([`Tables::code_bits`]: 4 for depth 4, 8 for deeper trees),
//! `P = 32 / B` per `u32`, as `[G, Q, ceil(C/P)]` words with `Q = N·OH·OW` and
//! `q = (n·OH + oy)·OW + ox`: codebook `c` sits in word `c / P`, bits `B·(c % P) .. B·(c % P) + B`;
//! unused bits of the last word are 0. Exact sums of the accumulate step are laid out like the
//! output, `[N, O, OH·OW]`.
//!
//! # Modules
//!
//! * [`learn`] — learning trees, prototypes and tables from a layer's weight and real inputs:
//!   the settings ([`TrainConfig`]) and [`train`]; inside it, private modules for the training
//!   windows, the dimension groupings, the hash trees, the faithful MADDNESS learner, the
//!   output-aware learner, the table refits and quantization, and their linear algebra.
//! * [`activation`] — what follows the conv ([`Activation`]), for learning tables that keep
//!   the error small after it.
//! * [`mirror`] — the CPU mirror of inference (encode, exact accumulate, scale/offset/bias).
//! * [`file`](mod@file) — the `.safetensors` table file.
//! * [`evaluate`](fn@evaluate) — the held-out error of trained tables.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::spec::ConvSpec;

pub mod activation;
mod evaluate;
pub mod file;
pub mod learn;
pub mod mirror;

pub use activation::Activation;
pub use evaluate::{evaluate, nmse_after};
pub use learn::{
    train, train_with_report, Grouping, Learner, Start, TrainConfig, TrainProgress, TrainReport,
    TrainStage,
};

/// Depth of the hash trees unless trained otherwise ([`TrainConfig::depth`]): 16 buckets, the
/// CPU's 16-lane byte shuffle of the original MADDNESS.
pub const DEFAULT_DEPTH: usize = 4;
/// Shallowest tree depth the tables, the mirror and the GPU kernels support.
pub const MIN_DEPTH: usize = 4;
/// Deepest tree depth the tables, the mirror and the GPU kernels support (256 buckets: 8-bit
/// codes).
pub const MAX_DEPTH: usize = 8;
/// Most codebooks per group the 8-bit path allows: the exact u32 sum of `C` entries of at most
/// 255 must not overflow.
pub const MAX_CODEBOOKS_U32_SUM: usize = (u32::MAX / 255) as usize;

/// Learned hash trees and look-up tables for one convolution layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Tables {
    /// The layer's convolution parameters.
    pub spec: ConvSpec,
    /// Codebooks per group (`C`).
    pub codebooks: usize,
    /// Depth `L` of every hash tree, [`MIN_DEPTH`]`..=`[`MAX_DEPTH`]: `K = 2^L` buckets.
    pub depth: usize,
    /// `[G, C, L]`: the window dimension (in `0..D`) each tree level tests.
    pub split_dims: Vec<u32>,
    /// `[G, C, L, K]`: node thresholds per level.
    pub thresholds: Vec<f32>,
    /// `[G, C, K, Mg]`: 8-bit tables.
    pub luts: Vec<u8>,
    /// `[G, C, Mg]`: per (codebook, output) offset `o[c][m] = min_k lut[c][k][m]`.
    pub lut_offsets: Vec<f32>,
    /// `[O]`: per output scale `s[m]`; `q = round((lut − o)·s)`.
    pub scales: Vec<f32>,
    /// `[O]`: the layer's bias, if it has one.
    pub bias: Option<Vec<f32>>,
    /// `[G, C, K, Mg]`: the float tables before quantization, if kept.
    pub luts_f32: Option<Vec<f32>>,
    /// How the tables were made (training settings, sources, held-out error). Stored in the
    /// table file's JSON header; not used by inference.
    pub meta: TableMeta,
}

/// How a set of tables was trained: settings, data and the held-out error measured at training
/// time. Every field is informational (inference never reads it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableMeta {
    /// Ridge regularisation λ of the prototype refinement.
    pub lambda: f32,
    /// Training windows used (per group).
    pub windows_trained: usize,
    /// Windows (output positions) the training inputs held in all.
    pub windows_available: u64,
    /// Seed of the window sampling.
    pub seed: u64,
    /// The cap on training windows (`None`: all windows were used).
    pub max_windows: Option<usize>,
    /// Names of the training input files (as given by the caller; may be empty).
    pub sources: Vec<String>,
    /// Wall-clock seconds the training took.
    pub train_seconds: f64,
    /// Held-out error measured right after training, if a test input was given.
    pub heldout: Option<HeldOut>,
    /// Version of maddconv that trained the tables.
    pub trainer_version: String,
    /// The learner and its settings ([`TrainConfig::describe`](learn::TrainConfig::describe));
    /// empty in files written before it was recorded.
    #[serde(default)]
    pub learner: String,
    /// The activation after the conv the tables were fit for ([`TrainConfig::activation`];
    /// the identity in files written before it was recorded).
    #[serde(default)]
    pub activation: Activation,
}

/// The error of the tables on inputs not used for training (DESIGN.md §5).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    /// Name of the held-out input file.
    pub source: String,
    /// NMSE of 8-bit inference against the exact convolution.
    pub nmse: f64,
    /// NMSE with the float tables, if they were kept.
    pub nmse_f32_tables: Option<f64>,
    /// The NMSE of the 8-bit tables after the activation the tables were trained for
    /// ([`TableMeta::activation`]), when it is not the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nmse_after_activation: Option<f64>,
}

/// Per-output constants of 8-bit inference, shared by the CPU mirror and the GPU kernels.
#[derive(Clone, Debug, PartialEq)]
pub struct InferenceConstants {
    /// `[O]`: `1 / scale`.
    pub inv_scale: Vec<f32>,
    /// `[O]`: `Σ_c lut_offsets[g][c][m] + bias[o]`.
    pub offset: Vec<f32>,
}

impl Tables {
    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.spec.groups
    }
    /// Buckets (codes, table rows) per codebook: `K = 2^depth`.
    pub fn buckets(&self) -> usize {
        1usize << self.depth.min(MAX_DEPTH)
    }
    /// Threshold slots stored per tree level: `K`.
    pub fn level_slots(&self) -> usize {
        self.buckets()
    }
    /// Bits of one packed code: 4 for depth 4, 8 for deeper trees.
    pub fn code_bits(&self) -> usize {
        code_bits(self.depth)
    }
    /// Output channels per group (`Mg`).
    pub fn out_per_group(&self) -> usize {
        self.spec.out_channels / self.spec.groups
    }
    /// Window length `D = (C_in/groups)·KH·KW` of one group (saturating, for specs that have not
    /// been validated).
    pub fn window_len(&self) -> usize {
        self.spec
            .kernel
            .iter()
            .fold(self.spec.in_channels / self.spec.groups.max(1), |a, &k| {
                a.saturating_mul(k)
            })
    }
    /// `Some(T)` when the trees are tied per pixel ([`Learner::Tied`]): the kernel has
    /// `area > 1` taps, `C = area·T`, and in every group codebook `t·T + c` tests, at each
    /// level, the dimension codebook `c` tests shifted to tap `t` (`d + t`, with `d` at tap 0:
    /// `d mod area = 0`), against the same thresholds. The GPU then encodes each input pixel
    /// once ([`crate::gpu::MaddnessConv`]). Read from the trees themselves, not the metadata.
    pub fn tied_trees_per_tap(&self) -> Option<usize> {
        let area: usize = self.spec.kernel.iter().product();
        let c = self.codebooks;
        if area < 2 || c == 0 || !c.is_multiple_of(area) {
            return None;
        }
        let per = c / area;
        let depth = self.depth;
        let slots = depth * self.level_slots();
        for g in 0..self.groups() {
            for cb in 0..per {
                let base = g * c + cb;
                let dims = &self.split_dims[base * depth..(base + 1) * depth];
                if dims.iter().any(|&d| !(d as usize).is_multiple_of(area)) {
                    return None;
                }
                let th = &self.thresholds[base * slots..(base + 1) * slots];
                for t in 1..area {
                    let other = g * c + t * per + cb;
                    let shifted = &self.split_dims[other * depth..(other + 1) * depth];
                    if dims
                        .iter()
                        .zip(shifted)
                        .any(|(&a, &b)| a as usize + t != b as usize)
                        || th != &self.thresholds[other * slots..(other + 1) * slots]
                    {
                        return None;
                    }
                }
            }
        }
        Some(per)
    }

    /// Packed codes per `u32` word: `P = 32 / B` ([`Tables::code_bits`]).
    pub fn codes_per_word(&self) -> usize {
        32 / self.code_bits()
    }

    /// `u32` words of packed codes per (group, position): `ceil(C / P)`
    /// ([`Tables::codes_per_word`]).
    pub fn code_words(&self) -> usize {
        self.codebooks.div_ceil(self.codes_per_word())
    }

    /// Codebook `c`'s code in one position's packed code words `row` (see the
    /// [module docs](self)).
    #[inline]
    pub fn code_at(&self, row: &[u32], c: usize) -> usize {
        let (bits, per) = (self.code_bits(), self.codes_per_word());
        ((row[c / per] >> (bits * (c % per))) & ((1u32 << bits) - 1)) as usize
    }

    /// Puts codebook `c`'s `code` into one position's packed code words `row` (whose bits for
    /// it must be 0).
    #[inline]
    pub fn put_code(&self, row: &mut [u32], c: usize, code: u32) {
        let (bits, per) = (self.code_bits(), self.codes_per_word());
        row[c / per] |= code << (bits * (c % per));
    }

    /// The per-output constants of 8-bit inference, computed in f32 (sums over codebooks in
    /// increasing `c`, then the bias).
    pub fn inference_constants(&self) -> InferenceConstants {
        let o_total = self.spec.out_channels;
        let mg = self.out_per_group();
        let c = self.codebooks;
        let mut offset = vec![0.0f32; o_total];
        for (o, off) in offset.iter_mut().enumerate() {
            let (g, m) = (o / mg, o % mg);
            let mut s = 0.0f32;
            for cb in 0..c {
                s += self.lut_offsets[(g * c + cb) * mg + m];
            }
            if let Some(b) = &self.bias {
                s += b[o];
            }
            *off = s;
        }
        InferenceConstants {
            inv_scale: self.scales.iter().map(|s| 1.0 / s).collect(),
            offset,
        }
    }

    /// Checks the tables against themselves and their spec: a valid spec, a depth in
    /// [`MIN_DEPTH`]`..=`[`MAX_DEPTH`], `1 ≤ C ≤ D`, every
    /// field's length, split dimensions `< D`, finite thresholds, offsets, bias and float tables,
    /// scales finite and `> 0`, finite inference constants, and the bias present exactly when
    /// the spec says so. The table-file loader runs this on everything it reads, and the CPU
    /// mirror on every call, so that no inconsistent table can make them index out of bounds.
    pub fn validate(&self) -> Result<()> {
        check_spec_sizes(&self.spec)?;
        self.spec.validate()?;
        let bad = |m: String| Err(Error::Argument(m));
        check_depth(self.depth)?;
        let d = self.window_len();
        let c = self.codebooks;
        if c == 0 || c > d {
            return bad(format!(
                "codebooks = {c}; it must be between 1 and the window length D = {d}"
            ));
        }
        check_codebook_limit(
            c,
            MAX_CODEBOOKS_U32_SUM,
            "exact u32 sums of 8-bit table entries",
        )?;
        let g = self.groups();
        let mg = self.out_per_group();
        let o = self.spec.out_channels;
        let gc = checked(&[g, c])?;
        let expect = |name: &str, len: usize, dims: &[usize]| -> Result<()> {
            let want = checked(dims)?;
            if len != want {
                return Err(Error::Shape(format!(
                    "tables field {name} has {len} values; {dims:?} needs {want}"
                )));
            }
            Ok(())
        };
        let (depth, k) = (self.depth, self.buckets());
        expect("split_dims", self.split_dims.len(), &[gc, depth])?;
        expect("thresholds", self.thresholds.len(), &[gc, depth, k])?;
        expect("luts", self.luts.len(), &[gc, k, mg])?;
        expect("lut_offsets", self.lut_offsets.len(), &[gc, mg])?;
        expect("scales", self.scales.len(), &[o])?;
        if let Some(t) = &self.luts_f32 {
            expect("luts_f32", t.len(), &[gc, k, mg])?;
        }
        match (&self.bias, self.spec.bias) {
            (Some(b), true) => expect("bias", b.len(), &[o])?,
            (None, false) => {}
            (Some(_), false) => return bad("tables hold a bias but the spec has none".into()),
            (None, true) => return bad("the spec has a bias but the tables hold none".into()),
        }
        if let Some((i, &v)) = self
            .split_dims
            .iter()
            .enumerate()
            .find(|(_, &v)| v as usize >= d)
        {
            return bad(format!(
                "split_dims[{i}] = {v} is outside the window (D = {d})"
            ));
        }
        crate::tensor::check_finite("thresholds", &self.thresholds)?;
        crate::tensor::check_finite("lut_offsets", &self.lut_offsets)?;
        crate::tensor::check_finite("scales", &self.scales)?;
        if let Some(b) = &self.bias {
            crate::tensor::check_finite("bias", b)?;
        }
        if let Some(t) = &self.luts_f32 {
            crate::tensor::check_finite("luts_f32", t)?;
        }
        if let Some((i, &s)) = self.scales.iter().enumerate().find(|(_, &s)| s <= 0.0) {
            return bad(format!("scales[{i}] = {s}; scales must be > 0"));
        }
        let k = self.inference_constants();
        crate::tensor::check_finite("1/scales", &k.inv_scale)?;
        crate::tensor::check_finite("offsets (Σ lut_offsets + bias)", &k.offset)?;
        Ok(())
    }
}

/// Fails when the spec's window size `in_channels · Π kernel` overflows 64 bits, before
/// [`ConvSpec::validate`] multiplies them unchecked (specs read from files can hold any numbers).
pub(crate) fn check_spec_sizes(spec: &ConvSpec) -> Result<()> {
    let window = spec
        .kernel
        .iter()
        .try_fold(spec.in_channels as u64, |acc, &k| acc.checked_mul(k as u64));
    if window.is_none() {
        return Err(Error::Spec(format!(
            "in_channels {} × kernel {:?} overflows",
            spec.in_channels, spec.kernel
        )));
    }
    Ok(())
}

/// Bits of one packed code for trees of `depth`: 4 up to depth 4, else 8.
pub fn code_bits(depth: usize) -> usize {
    if depth <= 4 {
        4
    } else {
        8
    }
}

/// Fails unless `depth` is in [`MIN_DEPTH`]`..=`[`MAX_DEPTH`].
pub fn check_depth(depth: usize) -> Result<()> {
    if !(MIN_DEPTH..=MAX_DEPTH).contains(&depth) {
        return Err(Error::Argument(format!(
            "tree depth {depth} is not supported: it must be {MIN_DEPTH} to {MAX_DEPTH} \
             ({} to {} buckets per codebook)",
            1usize << MIN_DEPTH,
            1usize << MAX_DEPTH
        )));
    }
    Ok(())
}

/// Fails with [`Error::TooLarge`] when `codebooks` exceeds `limit`, saying `why` the limit is.
pub(crate) fn check_codebook_limit(codebooks: usize, limit: usize, why: &str) -> Result<()> {
    if codebooks > limit {
        return Err(Error::TooLarge {
            what: "codebooks".into(),
            value: codebooks as u64,
            limit: limit as u64,
            why: why.into(),
        });
    }
    Ok(())
}

/// Product of sizes, failing (instead of wrapping) on overflow.
fn checked(dims: &[usize]) -> Result<usize> {
    dims.iter().try_fold(1usize, |acc, &x| {
        acc.checked_mul(x)
            .ok_or_else(|| Error::Shape(format!("size {dims:?} overflows")))
    })
}
