//! Host side of the MADDNESS kernels: `shaders/encode.wgsl` (hash the windows into packed codes:
//! 4 bits for trees of depth 4, 8 bits for deeper trees; WGSL overrides `DEPTH`, `CODE_BITS`)
//! and a look-up kernel that sums the 8-bit table entries the codes select, then scales:
//! `shaders/accumulate.wgsl` (one or two positions per invocation, a WGSL `override`),
//! `shaders/accumulate_shuffle.wgsl` (subgroup shuffles) or, with the `extra-kernels` feature,
//! `shaders/fused.wgsl` (encode and look-ups in one pass). [`LookupKernel`] chooses.
//!
//! Tied tables ([`Tables::tied_trees_per_tap`]) are encoded in two passes instead of `encode`:
//! `shaders/encode_pixels.wgsl` hashes each input pixel once with the shared trees, and
//! `shaders/expand_codes.wgsl` gathers those codes into the layout `encode` writes, so the
//! look-up kernels run unchanged. Where the context tunes, whether that beats `encode` on the
//! same tables is timed per shape class like the look-up tiles ([`LookupVariant::untied_encode`]:
//! on inputs with few pixels the extra dispatch can cost more than it saves);
//! [`MaddnessConv::with_tied_encode`] pins it on or off, to measure.
//!
//! Tables of depth 5 to 8 (32–256 rows per codebook) run `encode` (or the tied encoding) and
//! `accumulate`, which then reads the table words from the storage buffer instead of staging
//! them in workgroup memory (override `STAGE = 0`); `accumulate_shuffle` (rows of 16 codes held
//! across the subgroup) and `fused` are for depth 4 only and refuse deeper tables.
//!
//! The tables are uploaded once ([`MaddnessConv::new`]) and stay on the GPU; the codes buffer is
//! kept and reused across calls. Inputs are `N×C×H×W` / `N×C×L`, outputs `N×O×OH×OW` /
//! `N×O×OL`, exactly as the exact layer's. The CPU mirror of the kernels is
//! [`crate::maddness::mirror`]. The kernels ([`ENCODE`], [`ENCODE_PIXELS`], [`EXPAND_CODES`],
//! [`ACCUMULATE`], [`ACCUMULATE_SHUFFLE`], [`FUSED`]) and their uniform structs ([`MaddParams`],
//! [`TiedParams`]) are declared here.

use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::gpu::conv::{check_io, GpuConv};
use crate::gpu::kernel::{shader_source, uniform_struct, Binding, GeometryParams, Kernel};
use crate::gpu::{Context, GpuTensor, GpuTimer};
use crate::maddness::{Tables, DEFAULT_DEPTH};
use crate::spec::{ConvSpec, Geometry};

use Binding::{StorageRead as R, StorageReadWrite as RW, Uniform as U};

/// MADDNESS hashing: 4-bit codes per (position, codebook), packed 8 per word.
pub const ENCODE: Kernel = Kernel {
    name: "encode",
    source: shader_source!(
        "common/geometry",
        "common/maddness_params",
        "common/maddness_tree",
        "encode"
    ),
    bindings: &[U, R, R, R, RW],
    uniform: MaddParams::LAYOUT,
    workgroup_size: 256,
    workgroup_bytes: 0,
    subgroups: false,
};

/// Tied per-pixel encoding, pass 1: the tied trees' codes of every input pixel.
pub const ENCODE_PIXELS: Kernel = Kernel {
    name: "encode_pixels",
    source: shader_source!("common/geometry", "common/tied_params", "encode_pixels"),
    uniform: TiedParams::LAYOUT,
    ..ENCODE
};

/// Tied per-pixel encoding, pass 2: the packed codes of every output position, as [`ENCODE`]
/// writes them, gathered from the pixel codes.
pub const EXPAND_CODES: Kernel = Kernel {
    name: "expand_codes",
    source: shader_source!("common/geometry", "common/tied_params", "expand_codes"),
    ..ENCODE_PIXELS
};

/// Table rows the look-up kernels stage in workgroup memory at most (`lut_tile` in
/// `shaders/accumulate.wgsl`): `CC·16·MCH ≤ 896`, i.e. CC·MCH ≤ 56, 14 KiB — within wgpu's
/// downlevel limit of 16 352 bytes.
const LUT_TILE_ROWS: u32 = 896;

/// MADDNESS table look-ups from workgroup memory, `POSITIONS` (1 or 2) positions per
/// invocation: exact u32 sums of u8 entries, then scale, offset and bias.
pub const ACCUMULATE: Kernel = Kernel {
    name: "accumulate",
    source: shader_source!(
        "common/geometry",
        "common/lut_stage",
        "common/maddness_params",
        "common/maddness_sums",
        "accumulate"
    ),
    bindings: &[U, R, R, R, R, RW],
    workgroup_bytes: LUT_TILE_ROWS * 16,
    ..ENCODE
};

/// MADDNESS table look-ups through subgroup shuffles (adapters with subgroups).
pub const ACCUMULATE_SHUFFLE: Kernel = Kernel {
    name: "accumulate_shuffle",
    source: shader_source!(
        "common/geometry",
        "common/maddness_params",
        "common/maddness_sums",
        "accumulate_shuffle"
    ),
    workgroup_bytes: 0,
    subgroups: true,
    ..ACCUMULATE
};

/// Code words `fused` holds in workgroup memory at most (`codes_tile`).
const FUSED_CODE_WORDS: u32 = 2040;

/// MADDNESS encode and look-ups in one dispatch, codes in workgroup memory (host code behind
/// the `extra-kernels` feature; always validated by the shader tests).
pub const FUSED: Kernel = Kernel {
    name: "fused",
    source: shader_source!(
        "common/geometry",
        "common/lut_stage",
        "common/maddness_params",
        "common/maddness_sums",
        "common/maddness_tree",
        "fused"
    ),
    bindings: &[U, R, R, R, R, R, R, RW],
    workgroup_bytes: FUSED_CODE_WORDS * 4 + 512 * 16,
    ..ENCODE
};

uniform_struct! {
    /// The uniform block of every MADDNESS kernel (struct `MaddParams` in
    /// `shaders/common/maddness_params.wgsl`): the [`Geometry`]'s sizes, the tables' sizes and
    /// the dispatch's tiles.
    pub struct MaddParams {
        /// The sizes (`shaders/common/geometry.wgsl`).
        geo: GeometryParams,
        /// Codebooks per group.
        codebooks: u32,
        /// Code words per position, ceil(codebooks / 8).
        words: u32,
        /// N·OH·OW, the positions of the batch.
        q_len: u32,
        /// 16-output chunks of a table row, ceil((O/groups) / 16).
        m_chunks: u32,
        /// Look-ups: position tiles.
        q_tiles: u32,
        /// Look-ups: chunk tiles.
        m_tiles: u32,
    }
}

uniform_struct! {
    /// The uniform block of the tied per-pixel encoding (struct `TiedParams` in
    /// `shaders/common/tied_params.wgsl`).
    pub struct TiedParams {
        /// The sizes (`shaders/common/geometry.wgsl`).
        geo: GeometryParams,
        /// Codebooks per group, `taps · per_tap`.
        codebooks: u32,
        /// Code words per output position, ceil(codebooks / 8).
        words: u32,
        /// N·OH·OW, the positions of the batch.
        q_len: u32,
        /// Tied trees per group.
        per_tap: u32,
        /// Code words per input pixel, ceil(per_tap / 8).
        tap_words: u32,
        /// N·H·W, the input pixels of the batch.
        pixels: u32,
        /// Padding.
        reserved0: u32,
        /// Padding.
        reserved1: u32,
    }
}

/// Tile shape of the look-ups from workgroup memory: `mch` chunks of 16 outputs × `256 / mch`
/// invocations along positions per workgroup, `cc` codebooks staged at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LookupTiles {
    mch: u32,
    cc: u32,
}

impl LookupTiles {
    /// As many output chunks per workgroup as the layer has, up to 7, split evenly; as many
    /// codebooks staged as fit [`LUT_TILE_ROWS`] (a multiple of 8).
    fn for_chunks(m_chunks: u32) -> Self {
        let max = LUT_TILE_ROWS / 16;
        let tiles = m_chunks.div_ceil(max / 8).max(1);
        let mch = m_chunks.div_ceil(tiles).max(1);
        Self::with_mch(mch)
    }
    /// `mch` chunks (1..=7) and as many codebooks staged as fit [`LUT_TILE_ROWS`].
    fn with_mch(mch: u32) -> Self {
        let max = LUT_TILE_ROWS / 16;
        let cc = ((max / mch) / 8 * 8).max(8);
        LookupTiles { mch, cc }
    }
    fn positions(self) -> u32 {
        256 / self.mch
    }
}

/// Tile shape of `fused`: like [`LookupTiles`] but with at most 4 chunks and 8 KiB of table
/// rows, leaving the rest of the workgroup memory for the codes of the tile's positions.
#[cfg(feature = "extra-kernels")]
fn fused_tiles(m_chunks: u32, words: u32) -> Option<LookupTiles> {
    let tiles = m_chunks.div_ceil(4).max(1);
    let mut mch = m_chunks.div_ceil(tiles).max(1);
    // More chunks per workgroup means fewer positions, hence room for more code words.
    while (256 / mch) * words > FUSED_CODE_WORDS && mch < 4 {
        mch += 1;
    }
    if (256 / mch) * words > FUSED_CODE_WORDS {
        return None;
    }
    let cc = ((32 / mch) / 8 * 8).max(8);
    Some(LookupTiles { mch, cc })
}

/// Which look-up kernel a [`MaddnessConv`] runs after `encode`. Names (Rust, CLI, reports):
/// `one-position`, `two-positions`, `shuffle`, `fused`. The default is
/// [`LookupKernel::default_for`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum LookupKernel {
    /// `accumulate` with one position per invocation. Runs everywhere.
    OnePosition,
    /// `accumulate` with two positions per invocation sharing each table read. Runs
    /// everywhere; 1.1–1.6× faster than one position on lavapipe (BENCHMARKS.md).
    TwoPositions,
    /// `accumulate_shuffle`: look-ups by subgroup shuffles. Needs subgroups.
    Shuffle,
    /// `fused`: encode and look-ups in one dispatch, codes in workgroup memory; only for
    /// layers whose tile codes fit (at most 2040 code words per workgroup). Feature
    /// `extra-kernels` (it measured no gain).
    #[cfg(feature = "extra-kernels")]
    Fused,
}

impl LookupKernel {
    /// Every look-up kernel this build has.
    pub const ALL: &'static [LookupKernel] = &[
        LookupKernel::OnePosition,
        LookupKernel::TwoPositions,
        LookupKernel::Shuffle,
        #[cfg(feature = "extra-kernels")]
        LookupKernel::Fused,
    ];

    /// The name in the CLI and reports: "one-position", "two-positions", "shuffle" or
    /// "fused".
    pub fn name(self) -> &'static str {
        match self {
            LookupKernel::OnePosition => "one-position",
            LookupKernel::TwoPositions => "two-positions",
            LookupKernel::Shuffle => "shuffle",
            #[cfg(feature = "extra-kernels")]
            LookupKernel::Fused => "fused",
        }
    }

    /// The shader it runs after `encode` (`fused` replaces `encode`).
    pub fn kernel(self) -> &'static Kernel {
        match self {
            LookupKernel::OnePosition | LookupKernel::TwoPositions => &ACCUMULATE,
            LookupKernel::Shuffle => &ACCUMULATE_SHUFFLE,
            #[cfg(feature = "extra-kernels")]
            LookupKernel::Fused => &FUSED,
        }
    }

    /// The fixed (untuned) default (the one place it is chosen; measured fastest on lavapipe,
    /// BENCHMARKS.md; with tuning on, [`MaddnessConv::tune`] measures instead): `Shuffle`
    /// where the device has subgroups, else `TwoPositions`.
    pub fn default_for(ctx: &Context) -> Self {
        if ctx.has_subgroups() {
            LookupKernel::Shuffle
        } else {
            LookupKernel::TwoPositions
        }
    }

    /// [`Self::default_for`] the device, for `tables`: `TwoPositions` for trees deeper than 4
    /// (the kernels of [`Self::depth4_only`] refuse them).
    pub fn default_for_tables(ctx: &Context, tables: &Tables) -> Self {
        let k = Self::default_for(ctx);
        if k.depth4_only() && tables.depth != DEFAULT_DEPTH {
            LookupKernel::TwoPositions
        } else {
            k
        }
    }

    /// Whether it serves trees of depth 4 only (`shuffle` holds a row of 16 codes across the
    /// subgroup's lanes; `fused` stages 16 rows per codebook).
    pub fn depth4_only(self) -> bool {
        match self {
            LookupKernel::OnePosition | LookupKernel::TwoPositions => false,
            LookupKernel::Shuffle => true,
            #[cfg(feature = "extra-kernels")]
            LookupKernel::Fused => true,
        }
    }
}

/// A look-up kernel with its tile: what [`MaddnessConv::tune`] chooses among and what
/// [`MaddnessConv::with_variant`] runs exactly. Names: `two-positions` (the tile chosen from the
/// layer's outputs), `two-positions-mch2` (2 chunks of 16 outputs per workgroup), `shuffle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct LookupVariant {
    /// The look-up kernel.
    pub kernel: LookupKernel,
    /// For `one-position` and `two-positions`: 16-output chunks per workgroup, 1..=7 (0: as
    /// many as the layer has, up to 7, split evenly — the fixed default). 0 for the others.
    pub mch: u32,
    /// For tied tables ([`Tables::tied_trees_per_tap`]): make the codes with `encode` (every
    /// window's codebooks hashed on their own) instead of the tied encoding (`encode_pixels`
    /// then `expand_codes`, the default). The codes are the same; on layers with few input
    /// pixels the tied encoding's extra dispatch can cost more than it saves. Always false for
    /// untied tables.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub untied_encode: bool,
}

impl LookupVariant {
    /// The chunk counts tried besides the default.
    pub const MCH: &'static [u32] = &[1, 2, 4];

    /// The fixed (untuned) variant of `kernel`.
    pub fn default_for(kernel: LookupKernel) -> Self {
        LookupVariant {
            kernel,
            mch: 0,
            untied_encode: false,
        }
    }

    /// Its name: `two-positions`, `one-position-mch4`, `shuffle`, `shuffle+encode` (tied
    /// tables, codes by `encode`), ...
    pub fn name(self) -> String {
        let encode = if self.untied_encode { "+encode" } else { "" };
        match self.mch {
            0 => format!("{}{encode}", self.kernel.name()),
            m => format!("{}-mch{m}{encode}", self.kernel.name()),
        }
    }

    /// The same look-ups with the codes of tied tables made by `encode`.
    pub fn with_untied_encode(self) -> Self {
        LookupVariant {
            untied_encode: true,
            ..self
        }
    }

    /// Every variant of `kernel` for a layer of `m_chunks` chunks of 16 outputs (tiles wider
    /// than the layer left out).
    pub fn all(kernel: LookupKernel, m_chunks: u32) -> Vec<Self> {
        let mut v = vec![Self::default_for(kernel)];
        if matches!(
            kernel,
            LookupKernel::OnePosition | LookupKernel::TwoPositions
        ) {
            let auto = LookupTiles::for_chunks(m_chunks).mch;
            v.extend(
                Self::MCH
                    .iter()
                    .filter(|&&m| m <= m_chunks && m != auto)
                    .map(|&mch| LookupVariant {
                        kernel,
                        mch,
                        untied_encode: false,
                    }),
            );
        }
        v
    }
}

/// How a [`MaddnessConv`] picks its look-ups for an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Choice {
    /// Exactly this variant.
    Fixed(LookupVariant),
    /// The tuned variant of the input's shape class among those of `kernel` (any look-up
    /// kernel the device runs when `None`); the fixed default until the class is tuned.
    Tuned(Option<LookupKernel>),
}

/// A MADDNESS layer on the GPU, tables resident.
pub struct MaddnessConv {
    /// The untuned look-up kernel.
    kernels: LookupKernel,
    choice: Choice,
    tables: Tables,
    splits: wgpu::Buffer,
    thresholds: wgpu::Buffer,
    luts: wgpu::Buffer,
    /// The tables with codes innermost, for `accumulate_shuffle` (devices with subgroups).
    luts_by_code: Option<wgpu::Buffer>,
    inv_scale: wgpu::Buffer,
    offset: wgpu::Buffer,
    m_chunks: u32,
    codes: Mutex<Option<wgpu::Buffer>>,
    /// Tied trees per group when the tables are tied ([`Tables::tied_trees_per_tap`]).
    tied: Option<usize>,
    /// Whether `encode` hashes each input pixel once (tied tables only): pinned on or off by
    /// [`Self::with_tied_encode`], else (`None`) the variant's choice
    /// ([`LookupVariant::untied_encode`]; tuned when the context tunes, on by default).
    tied_encode: Option<bool>,
    pixel_codes: Mutex<Option<wgpu::Buffer>>,
}

impl MaddnessConv {
    /// Checks the tables and uploads them, for the device's default look-up kernel
    /// ([`LookupKernel::default_for`]).
    pub fn new(ctx: &Context, tables: &Tables) -> Result<Self> {
        tables.validate()?;
        let spec = &tables.spec;
        let (kh, kw, dh, dw) = match spec.kind {
            crate::ConvKind::Conv1d => (1, spec.kernel[0], 1, spec.dilation[0]),
            crate::ConvKind::Conv2d => (
                spec.kernel[0],
                spec.kernel[1],
                spec.dilation[0],
                spec.dilation[1],
            ),
        };
        let splits: Vec<[i32; 4]> = tables
            .split_dims
            .iter()
            .map(|&d| {
                let d = d as usize;
                let (ci, r) = (d / (kh * kw), d % (kh * kw));
                [ci as i32, ((r / kw) * dh) as i32, ((r % kw) * dw) as i32, 0]
            })
            .collect();
        let g = spec.groups;
        let cb = tables.codebooks;
        let mg = tables.out_per_group();
        let m_chunks = mg.div_ceil(16);
        let row = m_chunks * 16;
        let k = tables.buckets();
        let mut bytes = vec![0u8; g * cb * k * row];
        for (r, src) in tables.luts.chunks_exact(mg).enumerate() {
            bytes[r * row..r * row + mg].copy_from_slice(src);
        }
        let words: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        // [G·CB, 16, MW·4] words → [G·CB, MW·4, 16] for the shuffle kernel (depth 4 only).
        let luts_by_code = if ctx.has_subgroups() && tables.depth == DEFAULT_DEPTH {
            let row_words = m_chunks * 4;
            let mut t = vec![0u32; words.len()];
            for (r, row) in words.chunks_exact(k * row_words).enumerate() {
                for code in 0..k {
                    for j in 0..row_words {
                        t[(r * row_words + j) * k + code] = row[code * row_words + j];
                    }
                }
            }
            Some(ctx.storage("maddness luts by code", &t)?)
        } else {
            None
        };
        let consts = tables.inference_constants();
        let tied = tables.tied_trees_per_tap();
        debug_assert_eq!(
            tables.thresholds.len(),
            g * cb * tables.depth * tables.level_slots()
        );
        let default = LookupKernel::default_for_tables(ctx, tables);
        let layer = MaddnessConv {
            kernels: default,
            choice: Choice::Fixed(LookupVariant::default_for(default)),
            splits: ctx.storage("maddness splits", &splits)?,
            thresholds: ctx.storage("maddness thresholds", &tables.thresholds)?,
            luts: ctx.storage("maddness luts", &words)?,
            luts_by_code,
            inv_scale: ctx.storage("maddness inv_scale", &consts.inv_scale)?,
            offset: ctx.storage("maddness offset", &consts.offset)?,
            m_chunks: m_chunks as u32,
            tables: tables.clone(),
            codes: Mutex::new(None),
            tied,
            tied_encode: None,
            pixel_codes: Mutex::new(None),
        };
        let mut layer = layer.with_kernels(ctx, default)?;
        if ctx.tuner().is_some() {
            layer.choice = Choice::Tuned(None);
        }
        Ok(layer)
    }

    /// The tables this layer runs.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Whether the codes may come from the tied per-pixel encoding (`encode_pixels`, then
    /// `expand_codes`): for tied tables ([`Tables::tied_trees_per_tap`]) unless
    /// [`Self::with_tied_encode`] turned it off. With tuning on, whether it runs for an input is
    /// part of the tuned variant ([`LookupVariant::untied_encode`]).
    pub fn tied_encode(&self) -> bool {
        self.tied.is_some() && self.tied_encode != Some(false)
    }

    /// The tied trees per group when the codes for `variant` come from the tied encoding.
    fn tied_trees(&self, variant: LookupVariant) -> Option<usize> {
        self.tied
            .filter(|_| self.tied_encode.unwrap_or(!variant.untied_encode))
    }

    /// Encodes each input pixel once (`on`, tied tables only) or every window's codebooks
    /// independently with `encode`, whatever the variant or the tuner chooses (the codes are
    /// the same; this is for measuring). Fails with [`Error::Unsupported`] when `on` and the
    /// tables are not tied.
    pub fn with_tied_encode(mut self, ctx: &Context, on: bool) -> Result<Self> {
        if on && self.tied.is_none() {
            return Err(Error::Unsupported(
                "the tied per-pixel encoding needs tied tables (trained with --learner tied: \
                 every tap's trees shifted copies of the first tap's); these are not"
                    .into(),
            ));
        }
        if on {
            let adapter = &ctx.adapter_info().name;
            crate::gpu::limits::check_kernel(ctx.limits(), adapter, &ENCODE_PIXELS)?;
            crate::gpu::limits::check_kernel(ctx.limits(), adapter, &EXPAND_CODES)?;
        }
        self.tied_encode = Some(on);
        Ok(self)
    }

    /// Chooses the look-up kernel (its tile tuned per shape class when the context tunes, else
    /// the fixed default); fails with [`Error::Unsupported`] when the device or the
    /// layer cannot run it, or [`Error::TooLarge`] when the device's workgroup limits are too
    /// small for it (never falls back to another kernel).
    pub fn with_kernels(self, ctx: &Context, kernels: LookupKernel) -> Result<Self> {
        let tuned = ctx.tuner().is_some();
        let mut layer = self.with_variant(ctx, LookupVariant::default_for(kernels))?;
        if tuned {
            layer.choice = Choice::Tuned(Some(kernels));
        }
        Ok(layer)
    }

    /// Runs exactly this variant, never tuned; fails as [`Self::with_kernels`] does, or with
    /// [`Error::Argument`] for a chunk count outside 0..=7 or one given to a kernel without
    /// chunk tiles.
    pub fn with_variant(mut self, ctx: &Context, variant: LookupVariant) -> Result<Self> {
        let kernels = variant.kernel;
        let tiled = matches!(
            kernels,
            LookupKernel::OnePosition | LookupKernel::TwoPositions
        );
        if variant.untied_encode && self.tied.is_none() {
            return Err(Error::Argument(format!(
                "look-up variant {}: the choice of encoding is for tied tables only; these are \
                 not tied",
                variant.name()
            )));
        }
        if variant.mch > LUT_TILE_ROWS / 16 / 8 || (variant.mch != 0 && !tiled) {
            return Err(Error::Argument(format!(
                "look-up variant {}: mch = {} is outside 0..=7 or the kernel has no chunk tiles",
                variant.name(),
                variant.mch
            )));
        }
        let adapter = &ctx.adapter_info().name;
        let depth = self.tables.depth;
        if kernels.depth4_only() && depth != DEFAULT_DEPTH {
            return Err(Error::Unsupported(format!(
                "the {} look-ups serve trees of depth {DEFAULT_DEPTH} only; these tables have \
                 depth {depth} (choose two-positions or one-position)",
                kernels.name()
            )));
        }
        if kernels == LookupKernel::Shuffle && self.luts_by_code.is_none() {
            return Err(Error::Unsupported(format!(
                "the shuffle look-ups (accumulate_shuffle) need subgroup operations, which {adapter} \
                 lacks; choose two-positions"
            )));
        }
        #[cfg(feature = "extra-kernels")]
        if kernels == LookupKernel::Fused {
            let words = self.tables.code_words() as u32;
            if fused_tiles(self.m_chunks, words).is_none() {
                return Err(Error::Unsupported(format!(
                    "the fused kernel holds at most {FUSED_CODE_WORDS} code words per workgroup; \
                     with {} codebooks ({words} words per position) and {} outputs per group \
                     even its smallest tile needs more",
                    self.tables.codebooks,
                    self.tables.out_per_group()
                )));
            }
        }
        #[cfg(feature = "extra-kernels")]
        let needs_encode = kernels != LookupKernel::Fused;
        #[cfg(not(feature = "extra-kernels"))]
        let needs_encode = true;
        if needs_encode {
            crate::gpu::limits::check_kernel(ctx.limits(), adapter, &ENCODE)?;
        }
        crate::gpu::limits::check_kernel(ctx.limits(), adapter, kernels.kernel())?;
        self.kernels = kernels;
        self.choice = Choice::Fixed(variant);
        Ok(self)
    }

    /// The shape class of geometry `g` in the tuning cache, or `None` for a fixed variant.
    fn class(&self, g: &Geometry) -> Option<String> {
        let Choice::Tuned(kernels) = self.choice else {
            return None;
        };
        // Deeper trees run other kernels (tables read in place): a class of their own; depth 4
        // keeps the names caches already hold.
        let depth = match self.tables.depth {
            DEFAULT_DEPTH => String::new(),
            d => format!("/d{d}"),
        };
        // Tied tables choose their encoding too (unless pinned): a class of their own, so that
        // an entry made before that choice existed is not taken for one.
        let tied = if self.tied.is_some() && self.tied_encode.is_none() {
            "/tied"
        } else {
            ""
        };
        Some(format!(
            "lookup/{}/q{}/o{}/c{}{depth}{tied}",
            kernels.map(|k| k.name()).unwrap_or("any"),
            crate::gpu::tune::bucket(g.batch * g.positions()),
            crate::gpu::tune::bucket(g.out_per_group()),
            crate::gpu::tune::bucket(self.tables.codebooks),
        ))
    }

    /// The variant an input of geometry `g` runs: the fixed one, the tuned one of its shape
    /// class, or (class not yet tuned) the untuned default.
    pub fn variant_for(&self, ctx: &Context, g: &Geometry) -> LookupVariant {
        let default = LookupVariant::default_for(self.kernels);
        let (Choice::Tuned(kernels), Some(tuner), Some(class)) =
            (self.choice, ctx.tuner(), self.class(g))
        else {
            return match self.choice {
                Choice::Fixed(v) => v,
                Choice::Tuned(_) => default,
            };
        };
        let Some(entry) = tuner.get(&class) else {
            return default;
        };
        match serde_json::from_value::<LookupVariant>(entry.variant.clone()) {
            Ok(v)
                if kernels.map_or(v.kernel.kernel().name != FUSED.name, |k| v.kernel == k)
                    && (v.kernel != LookupKernel::Shuffle || self.luts_by_code.is_some())
                    && v.mch <= 7
                    && (!v.untied_encode || self.tied.is_some()) =>
            {
                v
            }
            _ => {
                log::warn!(
                    "the tuning cache's entry for {class} ({}) does not fit this layer; running \
                     the default {} (retune with `maddconv tune`)",
                    entry.variant,
                    default.name()
                );
                default
            }
        }
    }

    /// A layer sharing this one's tables that runs exactly `variant`.
    fn fixed(&self, ctx: &Context, variant: LookupVariant) -> Result<MaddnessConv> {
        MaddnessConv {
            kernels: self.kernels,
            choice: self.choice,
            tables: self.tables.clone(),
            splits: self.splits.clone(),
            thresholds: self.thresholds.clone(),
            luts: self.luts.clone(),
            luts_by_code: self.luts_by_code.clone(),
            inv_scale: self.inv_scale.clone(),
            offset: self.offset.clone(),
            m_chunks: self.m_chunks,
            codes: Mutex::new(None),
            tied: self.tied,
            tied_encode: self.tied_encode,
            pixel_codes: Mutex::new(None),
        }
        .with_variant(ctx, variant)
    }

    /// This layer's tables, running exactly the variant its input of shape `input_shape` runs
    /// now (for benchmarks that compare the tuned and the untuned choice side by side).
    pub fn pinned(&self, ctx: &Context, input_shape: &[usize]) -> Result<MaddnessConv> {
        let g = self.tables.spec.geometry(input_shape)?;
        self.fixed(ctx, self.variant_for(ctx, &g))
    }

    /// The shape class in the tuning cache of an input of shape `input_shape` (of the batch
    /// slice [`GpuConv::run`] dispatches), or `None` for a fixed variant.
    pub fn tune_class(&self, ctx: &Context, input_shape: &[usize]) -> Result<Option<String>> {
        let g = self.tables.spec.geometry(input_shape)?;
        let chunk = crate::gpu::limits::batch_chunk(
            ctx.limits(),
            &ctx.adapter_info().name,
            g.batch,
            &self.bytes_per_sample(&g.with_batch(1)),
        )?;
        Ok(self.class(&g.with_batch(chunk)))
    }

    /// The variant an input of shape `input_shape` runs, after timing every variant this layer
    /// may run (look-up kernels and tiles) on a random input of that shape when the context
    /// tunes and its shape class has no choice yet; the fixed default is kept unless another
    /// is more than 3 % faster. Without tuning (or with a fixed variant) nothing is timed.
    pub async fn tune(&self, ctx: &Context, input_shape: &[usize]) -> Result<LookupVariant> {
        let g = self.tables.spec.geometry(input_shape)?;
        let chunk = crate::gpu::limits::batch_chunk(
            ctx.limits(),
            &ctx.adapter_info().name,
            g.batch,
            &self.bytes_per_sample(&g.with_batch(1)),
        )?;
        let g = g.with_batch(chunk);
        let (Some(tuner), Some(class), Choice::Tuned(kernels)) =
            (ctx.tuner(), self.class(&g), self.choice)
        else {
            return Ok(self.variant_for(ctx, &g));
        };
        if tuner.get(&class).is_some() {
            return Ok(self.variant_for(ctx, &g));
        }
        let mut shape = input_shape.to_vec();
        shape[0] = chunk;
        let default = LookupVariant::default_for(self.kernels);
        let mut candidates = vec![default];
        let allowed: Vec<LookupKernel> = match kernels {
            Some(k) => vec![k],
            // `fused` (one pass instead of two, feature `extra-kernels`) only when asked for.
            None => LookupKernel::ALL
                .iter()
                .copied()
                .filter(|k| k.kernel().name != FUSED.name)
                .collect(),
        };
        for k in allowed {
            for v in LookupVariant::all(k, self.m_chunks) {
                if v != default && self.fixed(ctx, v).is_ok() {
                    candidates.push(v);
                }
            }
        }
        // Tied tables: each variant also with the codes made by `encode`.
        if self.tied.is_some() && self.tied_encode.is_none() {
            let untied: Vec<LookupVariant> = candidates
                .iter()
                .map(|v| v.with_untied_encode())
                .filter(|&v| self.fixed(ctx, v).is_ok())
                .collect();
            candidates.extend(untied);
        }
        let layers: Vec<MaddnessConv> = candidates
            .iter()
            .map(|&v| self.fixed(ctx, v))
            .collect::<Result<_>>()?;
        crate::gpu::tune::time_and_record(ctx, tuner, &class, &shape, &layers, &candidates, |v| {
            v.name()
        })
        .await
    }

    /// The look-up kernel [`GpuConv::encode`] records for this layer.
    pub fn kernels(&self) -> LookupKernel {
        self.kernels
    }

    fn params(&self, g: &Geometry, t: LookupTiles) -> MaddParams {
        let q_len = (g.batch * g.positions()) as u32;
        MaddParams {
            geo: GeometryParams::new(g),
            codebooks: self.tables.codebooks as u32,
            words: self.tables.code_words() as u32,
            q_len,
            m_chunks: self.m_chunks,
            q_tiles: q_len.div_ceil(t.positions()),
            m_tiles: self.m_chunks.div_ceil(t.mch),
        }
    }

    /// The tree overrides of the encode and look-up kernels: `DEPTH` and `CODE_BITS`.
    fn tree_overrides(&self) -> Vec<(&'static str, u32)> {
        vec![
            ("DEPTH", self.tables.depth as u32),
            ("CODE_BITS", self.tables.code_bits() as u32),
        ]
    }

    /// Code words per input pixel of the tied encoding for `per_tap` trees.
    fn pixel_code_words(&self, per_tap: usize) -> usize {
        per_tap.div_ceil(self.tables.codes_per_word())
    }

    /// Bytes of the codes buffer for a geometry.
    fn codes_bytes(&self, g: &Geometry) -> u64 {
        (g.groups * g.batch * g.positions() * self.tables.code_words()) as u64 * 4
    }

    /// The reused codes buffer, grown when a larger one is needed.
    fn codes_buffer(&self, ctx: &Context, bytes: u64) -> Result<wgpu::Buffer> {
        Self::reused_buffer(ctx, &self.codes, "maddness codes", bytes)
    }

    /// The reused buffer in `slot`, grown to `bytes` when smaller.
    fn reused_buffer(
        ctx: &Context,
        slot: &Mutex<Option<wgpu::Buffer>>,
        label: &'static str,
        bytes: u64,
    ) -> Result<wgpu::Buffer> {
        ctx.check_binding_size(label, bytes)?;
        let mut slot = slot
            .lock()
            .map_err(|_| Error::Gpu(format!("{label} buffer lock poisoned")))?;
        if let Some(b) = slot.as_ref() {
            if b.size() >= bytes {
                return Ok(b.clone());
            }
        }
        let b = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        *slot = Some(b.clone());
        Ok(b)
    }

    /// The codes of `input` into `codes`: `encode`, or for tied tables whose `variant` runs
    /// the tied encoding, `encode_pixels` then `expand_codes` (two timed passes).
    #[allow(clippy::too_many_arguments)]
    fn codes_passes(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        g: &Geometry,
        variant: LookupVariant,
        input: &GpuTensor,
        codes: &wgpu::Buffer,
        mut timer: Option<&mut GpuTimer>,
    ) -> Result<()> {
        let per_tap = match self.tied_trees(variant) {
            Some(t) => t,
            None => {
                return self.encode_pass(
                    ctx,
                    encoder,
                    g,
                    input,
                    codes,
                    timer.and_then(|t| t.pass()),
                )
            }
        };
        let pixels = g.batch * g.in_h * g.in_w;
        let tap_words = self.pixel_code_words(per_tap);
        let params = TiedParams {
            geo: GeometryParams::new(g),
            codebooks: self.tables.codebooks as u32,
            words: self.tables.code_words() as u32,
            q_len: (g.batch * g.positions()) as u32,
            per_tap: per_tap as u32,
            tap_words: tap_words as u32,
            pixels: pixels as u32,
            ..Default::default()
        };
        let pixel_words = (g.groups * pixels * tap_words) as u64;
        let tree = self.tree_overrides();
        let pixel_codes = Self::reused_buffer(
            ctx,
            &self.pixel_codes,
            "maddness pixel codes",
            pixel_words * 4,
        )?;
        let uniform = ctx.uniform(ENCODE_PIXELS.name, &params);
        ctx.dispatch(
            encoder,
            &ENCODE_PIXELS,
            &tree,
            &[
                &uniform,
                &input.buffer,
                &self.splits,
                &self.thresholds,
                &pixel_codes,
            ],
            pixel_words.div_ceil(256),
            timer.as_deref_mut().and_then(|t| t.pass()),
        )?;
        let words = params.geo.groups as u64 * params.q_len as u64 * params.words as u64;
        let uniform = ctx.uniform(EXPAND_CODES.name, &params);
        ctx.dispatch(
            encoder,
            &EXPAND_CODES,
            &tree,
            &[
                &uniform,
                &pixel_codes,
                &self.splits,
                &self.thresholds,
                codes,
            ],
            words.div_ceil(256),
            timer.and_then(|t| t.pass()),
        )
    }

    fn encode_pass(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        g: &Geometry,
        input: &GpuTensor,
        codes: &wgpu::Buffer,
        timestamps: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) -> Result<()> {
        let params = self.params(g, LookupTiles::for_chunks(self.m_chunks));
        let words = params.geo.groups as u64 * params.q_len as u64 * params.words as u64;
        let uniform = ctx.uniform(ENCODE.name, &params);
        ctx.dispatch(
            encoder,
            &ENCODE,
            &self.tree_overrides(),
            &[
                &uniform,
                &input.buffer,
                &self.splits,
                &self.thresholds,
                codes,
            ],
            words.div_ceil(256),
            timestamps,
        )
    }

    /// The look-ups of `codes` into `output` (the exact u32 sums as bit patterns with
    /// `raw_sums`), with `variant`'s look-up kernel and tiles (`accumulate` for `fused`).
    #[allow(clippy::too_many_arguments)]
    fn lookup_pass(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        g: &Geometry,
        variant: LookupVariant,
        codes: &wgpu::Buffer,
        output: &wgpu::Buffer,
        raw_sums: bool,
        timestamps: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) -> Result<()> {
        let raw = ("RAW_SUMS", raw_sums as u32);
        let (kernel, luts, overrides, params) = match (variant.kernel, &self.luts_by_code) {
            (LookupKernel::Shuffle, Some(by_code)) => {
                // 512 positions (two per invocation) × one chunk per workgroup.
                let mut params = self.params(g, LookupTiles { mch: 1, cc: 8 });
                params.q_tiles = params.q_len.div_ceil(512);
                (&ACCUMULATE_SHUFFLE, by_code, vec![raw], params)
            }
            (kernels, _) => {
                let t = match variant.mch {
                    0 => LookupTiles::for_chunks(self.m_chunks),
                    m => LookupTiles::with_mch(m),
                };
                let positions = if kernels == LookupKernel::TwoPositions {
                    2
                } else {
                    1
                };
                let mut params = self.params(g, t);
                params.q_tiles = params.q_len.div_ceil(positions * t.positions());
                let mut overrides =
                    vec![("MCH", t.mch), ("CC", t.cc), ("POSITIONS", positions), raw];
                overrides.extend(self.tree_overrides());
                // Depth-4 tables are staged in workgroup memory; deeper ones are read in place.
                overrides.push(("STAGE", u32::from(self.tables.depth == DEFAULT_DEPTH)));
                (&ACCUMULATE, &self.luts, overrides, params)
            }
        };
        let uniform = ctx.uniform(kernel.name, &params);
        ctx.dispatch(
            encoder,
            kernel,
            &overrides,
            &[&uniform, codes, luts, &self.inv_scale, &self.offset, output],
            params.geo.groups as u64 * params.m_tiles as u64 * params.q_tiles as u64,
            timestamps,
        )
    }

    #[cfg(feature = "extra-kernels")]
    fn fused_pass(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        g: &Geometry,
        input: &GpuTensor,
        output: &GpuTensor,
        timestamps: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) -> Result<()> {
        let words = self.tables.code_words() as u32;
        let t = fused_tiles(self.m_chunks, words)
            .ok_or_else(|| Error::Unsupported("the fused kernel's tiles do not fit".into()))?;
        let params = self.params(g, t);
        let uniform = ctx.uniform(FUSED.name, &params);
        ctx.dispatch(
            encoder,
            &FUSED,
            &[("MCH", t.mch), ("CC", t.cc)],
            &[
                &uniform,
                &input.buffer,
                &self.splits,
                &self.thresholds,
                &self.luts,
                &self.inv_scale,
                &self.offset,
                &output.buffer,
            ],
            params.geo.groups as u64 * params.m_tiles as u64 * params.q_tiles as u64,
            timestamps,
        )
    }

    /// The packed codes the GPU computes for `input` (layout `[G, Q, W]`, as
    /// [`crate::maddness::mirror::encode`]). For tests and debugging.
    pub async fn codes(&self, ctx: &Context, input: &crate::Tensor) -> Result<Vec<u32>> {
        let x = ctx.upload("input", input)?;
        let g = self.tables.spec.geometry(x.shape())?;
        ctx.check_binding_size("input", g.input_len() as u64 * 4)?;
        let bytes = self.codes_bytes(&g);
        let codes = self.codes_buffer(ctx, bytes)?;
        let mut encoder = ctx.encoder("maddness codes");
        self.codes_passes(
            ctx,
            &mut encoder,
            &g,
            self.variant_for(ctx, &g),
            &x,
            &codes,
            None,
        )?;
        ctx.submit(encoder);
        let raw = ctx.read_buffer(&codes, 0, bytes).await?;
        Ok(bytemuck::pod_collect_to_vec(&raw))
    }

    /// The exact integer sums the GPU computes for packed `codes` (layout `[N, O, OH·OW]`, as
    /// [`crate::maddness::mirror::accumulate_sums`]), with [`Self::kernels`]' look-ups
    /// (`accumulate` for `fused`). For tests and debugging.
    pub async fn sums(
        &self,
        ctx: &Context,
        input_shape: &[usize],
        codes: &[u32],
    ) -> Result<Vec<u32>> {
        let g = self.tables.spec.geometry(input_shape)?;
        let expected = (self.codes_bytes(&g) / 4) as usize;
        if codes.len() != expected {
            return Err(Error::Shape(format!(
                "{} code words given, {expected} expected for input {input_shape:?}",
                codes.len()
            )));
        }
        let codes_buf = ctx.storage("codes", codes)?;
        let out = ctx.create_tensor("sums", &g.output_shape(self.tables.spec.kind))?;
        ctx.fill(&out, f32::NAN);
        let mut encoder = ctx.encoder("maddness sums");
        let variant = self.variant_for(ctx, &g);
        self.lookup_pass(
            ctx,
            &mut encoder,
            &g,
            variant,
            &codes_buf,
            &out.buffer,
            true,
            None,
        )?;
        ctx.submit(encoder);
        let raw = ctx
            .read_buffer(&out.buffer, 0, g.output_len() as u64 * 4)
            .await?;
        Ok(bytemuck::pod_collect_to_vec(&raw))
    }
}

impl GpuConv for MaddnessConv {
    fn name(&self) -> &'static str {
        self.kernels.name()
    }

    fn exact(&self) -> bool {
        false
    }

    fn prepare<'a>(
        &'a self,
        ctx: &'a Context,
        shape: &'a [usize],
    ) -> crate::gpu::conv::LocalFuture<'a, Result<()>> {
        Box::pin(async move { self.tune(ctx, shape).await.map(|_| ()) })
    }

    fn spec(&self) -> &ConvSpec {
        &self.tables.spec
    }

    /// Two (`encode`, then the look-ups), three when the tied encoding may run
    /// (`encode_pixels`, `expand_codes`, the look-ups), or one for `fused`.
    fn passes(&self) -> usize {
        #[cfg(feature = "extra-kernels")]
        if self.kernels == LookupKernel::Fused {
            return 1;
        }
        if self.tied_encode() {
            3
        } else {
            2
        }
    }

    fn bytes_per_sample(&self, g: &Geometry) -> Vec<(&'static str, u64)> {
        vec![
            ("input", g.input_len() as u64 * 4),
            ("output", g.output_len() as u64 * 4),
            ("codes", self.codes_bytes(g)),
            (
                "pixel codes",
                self.tied.filter(|_| self.tied_encode()).map_or(0, |t| {
                    (g.groups * g.in_h * g.in_w * self.pixel_code_words(t)) as u64 * 4
                }),
            ),
        ]
    }

    fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        input: &GpuTensor,
        output: &GpuTensor,
        mut timer: Option<&mut GpuTimer>,
    ) -> Result<()> {
        let g = check_io(self, ctx, input, output)?;
        #[cfg(feature = "extra-kernels")]
        if self.kernels == LookupKernel::Fused {
            return self.fused_pass(
                ctx,
                encoder,
                &g,
                input,
                output,
                timer.and_then(|t| t.pass()),
            );
        }
        let codes = self.codes_buffer(ctx, self.codes_bytes(&g))?;
        // One look-up of the tuned choice per dispatch, for both passes.
        let variant = self.variant_for(ctx, &g);
        self.codes_passes(
            ctx,
            encoder,
            &g,
            variant,
            input,
            &codes,
            timer.as_deref_mut(),
        )?;
        self.lookup_pass(
            ctx,
            encoder,
            &g,
            variant,
            &codes,
            &output.buffer,
            false,
            timer.and_then(|t| t.pass()),
        )
    }
}
