//! Host side of the MADDNESS kernels: `shaders/encode.wgsl` (hash the windows into 4-bit codes)
//! and `shaders/accumulate.wgsl` (sum the 8-bit table entries the codes select, then scale).
//!
//! The tables are uploaded once ([`MaddnessConv::new`]) and stay on the GPU; the codes buffer is
//! kept and reused across calls. Inputs are `N×C×H×W` / `N×C×L`, outputs `N×O×OH×OW` /
//! `N×O×OL`, exactly as the exact layer's. The CPU mirror of both kernels is
//! [`crate::maddness::mirror`].

use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::gpu::direct::{batch_chunk, check_workgroup_limits};
use crate::gpu::{kernel, Context, GpuTensor, GpuTimer};
use crate::maddness::{Tables, BUCKETS, LEVEL_SLOTS, TREE_DEPTH};
use crate::spec::Geometry;
use crate::tensor::Tensor;

/// The uniform block of `encode` and `accumulate` (struct `MaddParams` there).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MaddParams {
    pub batch: u32,
    pub in_channels: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub out_channels: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub groups: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub in_per_group: u32,
    pub out_per_group: u32,
    pub codebooks: u32,
    pub words: u32,
    pub q_len: u32,
    pub m_chunks: u32,
    pub q_tiles: u32,
    pub m_tiles: u32,
}

/// Tile shape of `accumulate`: `mch` chunks of 16 outputs × `256 / mch` positions per
/// workgroup, `cc` codebooks staged at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AccumulateTiles {
    mch: u32,
    cc: u32,
}

impl AccumulateTiles {
    /// As many output chunks per workgroup as the layer has, up to 8, split evenly.
    fn for_chunks(m_chunks: u32) -> Self {
        let tiles = m_chunks.div_ceil(8).max(1);
        let mch = m_chunks.div_ceil(tiles).max(1);
        let cc = ((64 / mch) / 8 * 8).max(8);
        AccumulateTiles { mch, cc }
    }
    fn positions(self) -> u32 {
        256 / self.mch
    }
}

/// Tile shape of `fused`: like [`AccumulateTiles`] but with at most 4 chunks and 8 KiB of table
/// rows, leaving 8 KiB of workgroup memory for the codes of the tile's positions.
fn fused_tiles(m_chunks: u32, words: u32) -> Option<AccumulateTiles> {
    let tiles = m_chunks.div_ceil(4).max(1);
    let mut mch = m_chunks.div_ceil(tiles).max(1);
    // More chunks per workgroup means fewer positions, hence room for more code words.
    while (256 / mch) * words > 2048 && mch < 4 {
        mch += 1;
    }
    if (256 / mch) * words > 2048 {
        return None;
    }
    let cc = ((32 / mch) / 8 * 8).max(8);
    Some(AccumulateTiles { mch, cc })
}

/// How the layer runs on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaddnessKernels {
    /// `encode` then `accumulate`: two dispatches, codes in a global buffer.
    TwoPass,
    /// `fused`: one dispatch, codes in workgroup memory. Falls back to two passes when the
    /// codes of a tile do not fit (more than 2048 code words per workgroup).
    Fused,
    /// `encode` then `accumulate_shuffle`: look-ups by subgroup shuffles (the default where
    /// the device has subgroups). Falls back to `TwoPositions` on devices without subgroups.
    Shuffle,
    /// `encode` then `accumulate2`: `accumulate` with two positions per invocation sharing the
    /// table reads (the default on devices without subgroups: 1.1–1.6× faster than `TwoPass`
    /// on lavapipe, BENCHMARKS.md).
    TwoPositions,
}

impl MaddnessKernels {
    /// Short name for reports: "two-pass", "fused", "shuffle" or "two-positions".
    pub fn name(self) -> &'static str {
        match self {
            MaddnessKernels::TwoPass => "two-pass",
            MaddnessKernels::Fused => "fused",
            MaddnessKernels::Shuffle => "shuffle",
            MaddnessKernels::TwoPositions => "two-positions",
        }
    }
}

/// A MADDNESS layer on the GPU, tables resident.
pub struct MaddnessConv {
    kernels: MaddnessKernels,
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
}

impl MaddnessConv {
    /// Checks the tables and uploads them.
    pub fn new(ctx: &Context, tables: &Tables) -> Result<Self> {
        tables.validate()?;
        check_workgroup_limits(ctx)?;
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
        let mut bytes = vec![0u8; g * cb * BUCKETS * row];
        for (r, src) in tables.luts.chunks_exact(mg).enumerate() {
            bytes[r * row..r * row + mg].copy_from_slice(src);
        }
        let words: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        // [G·CB, 16, MW·4] words → [G·CB, MW·4, 16] for the shuffle kernel.
        let luts_by_code = if ctx.has_subgroups() {
            let row_words = m_chunks * 4;
            let mut t = vec![0u32; words.len()];
            for (r, row) in words.chunks_exact(BUCKETS * row_words).enumerate() {
                for k in 0..BUCKETS {
                    for j in 0..row_words {
                        t[(r * row_words + j) * BUCKETS + k] = row[k * row_words + j];
                    }
                }
            }
            Some(ctx.storage("maddness luts by code", &t)?)
        } else {
            None
        };
        let consts = tables.inference_constants();
        debug_assert_eq!(tables.thresholds.len(), g * cb * TREE_DEPTH * LEVEL_SLOTS);
        Ok(MaddnessConv {
            // Measured fastest (BENCHMARKS.md): the shuffle look-ups where subgroups exist,
            // else two positions per invocation.
            kernels: if luts_by_code.is_some() {
                MaddnessKernels::Shuffle
            } else {
                MaddnessKernels::TwoPositions
            },
            splits: ctx.storage("maddness splits", &splits)?,
            thresholds: ctx.storage("maddness thresholds", &tables.thresholds)?,
            luts: ctx.storage("maddness luts", &words)?,
            luts_by_code,
            inv_scale: ctx.storage("maddness inv_scale", &consts.inv_scale)?,
            offset: ctx.storage("maddness offset", &consts.offset)?,
            m_chunks: m_chunks as u32,
            tables: tables.clone(),
            codes: Mutex::new(None),
        })
    }

    /// The tables this layer runs.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Chooses the kernels (by default `Shuffle` on devices with subgroups, else
    /// `TwoPositions`).
    pub fn with_kernels(mut self, kernels: MaddnessKernels) -> Self {
        self.kernels = kernels;
        self
    }

    /// The kernels that [`Self::encode`] records for this layer: `Fused` only when its tiles
    /// fit (else `TwoPass`), `Shuffle` only with subgroups (else `TwoPositions`).
    pub fn kernels(&self) -> MaddnessKernels {
        match self.kernels {
            MaddnessKernels::Fused
                if fused_tiles(self.m_chunks, self.tables.codebooks.div_ceil(8) as u32)
                    .is_some() =>
            {
                MaddnessKernels::Fused
            }
            MaddnessKernels::Shuffle if self.luts_by_code.is_some() => MaddnessKernels::Shuffle,
            MaddnessKernels::Shuffle | MaddnessKernels::TwoPositions => {
                MaddnessKernels::TwoPositions
            }
            MaddnessKernels::Fused | MaddnessKernels::TwoPass => MaddnessKernels::TwoPass,
        }
    }

    /// Compute passes [`Self::encode`] records (for timers).
    pub fn passes(&self) -> usize {
        match self.kernels() {
            MaddnessKernels::TwoPass | MaddnessKernels::Shuffle | MaddnessKernels::TwoPositions => {
                2
            }
            MaddnessKernels::Fused => 1,
        }
    }

    fn params(&self, g: &Geometry, t: AccumulateTiles) -> MaddParams {
        let q_len = (g.batch * g.positions()) as u32;
        MaddParams {
            batch: g.batch as u32,
            in_channels: g.in_channels as u32,
            in_h: g.in_h as u32,
            in_w: g.in_w as u32,
            out_channels: g.out_channels as u32,
            out_h: g.out_h as u32,
            out_w: g.out_w as u32,
            groups: g.groups as u32,
            stride_h: g.stride_h as u32,
            stride_w: g.stride_w as u32,
            pad_top: g.pad_top as u32,
            pad_left: g.pad_left as u32,
            in_per_group: g.in_per_group() as u32,
            out_per_group: g.out_per_group() as u32,
            codebooks: self.tables.codebooks as u32,
            words: self.tables.codebooks.div_ceil(8) as u32,
            q_len,
            m_chunks: self.m_chunks,
            q_tiles: q_len.div_ceil(t.positions()),
            m_tiles: self.m_chunks.div_ceil(t.mch),
        }
    }

    /// Bytes of the codes buffer for a geometry.
    fn codes_bytes(&self, g: &Geometry) -> u64 {
        (g.groups * g.batch * g.positions() * self.tables.codebooks.div_ceil(8)) as u64 * 4
    }

    /// The reused codes buffer, grown when a larger one is needed.
    fn codes_buffer(&self, ctx: &Context, bytes: u64) -> Result<wgpu::Buffer> {
        ctx.check_binding_size("codes", bytes)?;
        let mut slot = self
            .codes
            .lock()
            .map_err(|_| Error::Gpu("codes buffer lock poisoned".into()))?;
        if let Some(b) = slot.as_ref() {
            if b.size() >= bytes {
                return Ok(b.clone());
            }
        }
        let b = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("maddness codes"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        *slot = Some(b.clone());
        Ok(b)
    }

    fn geometry(&self, ctx: &Context, input: &GpuTensor) -> Result<Geometry> {
        let g = self.tables.spec.geometry(input.shape())?;
        ctx.check_binding_size("input", g.input_len() as u64 * 4)?;
        ctx.check_binding_size("output", g.output_len() as u64 * 4)?;
        Ok(g)
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
        let params = self.params(g, AccumulateTiles::for_chunks(self.m_chunks));
        let words = params.groups as u64 * params.q_len as u64 * params.words as u64;
        let uniform = ctx.uniform("encode", &params);
        ctx.dispatch(
            encoder,
            &kernel::ENCODE,
            &[],
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

    #[allow(clippy::too_many_arguments)]
    fn accumulate_pass(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        g: &Geometry,
        codes: &wgpu::Buffer,
        output: &wgpu::Buffer,
        raw_sums: bool,
        timestamps: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) -> Result<()> {
        let shuffle = match (self.kernels(), &self.luts_by_code) {
            (MaddnessKernels::Shuffle, Some(b)) => Some(b),
            _ => None,
        };
        let (t, kernel, overrides) = match shuffle {
            Some(_) => (
                AccumulateTiles { mch: 1, cc: 8 },
                &kernel::ACCUMULATE_SHUFFLE,
                vec![("RAW_SUMS", raw_sums as u32)],
            ),
            None => {
                let t = AccumulateTiles::for_chunks(self.m_chunks);
                let k = if self.kernels() == MaddnessKernels::TwoPositions {
                    &kernel::ACCUMULATE2
                } else {
                    &kernel::ACCUMULATE
                };
                (
                    t,
                    k,
                    vec![("MCH", t.mch), ("CC", t.cc), ("RAW_SUMS", raw_sums as u32)],
                )
            }
        };
        let mut params = self.params(g, t);
        if self.kernels() == MaddnessKernels::TwoPositions || shuffle.is_some() {
            params.q_tiles = params.q_len.div_ceil(2 * t.positions());
        }
        let uniform = ctx.uniform(kernel.name, &params);
        ctx.dispatch(
            encoder,
            kernel,
            &overrides,
            &[
                &uniform,
                codes,
                shuffle.unwrap_or(&self.luts),
                &self.inv_scale,
                &self.offset,
                output,
            ],
            params.groups as u64 * params.m_tiles as u64 * params.q_tiles as u64,
            timestamps,
        )
    }

    fn fused_pass(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        g: &Geometry,
        input: &GpuTensor,
        output: &GpuTensor,
        timestamps: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) -> Result<()> {
        let words = self.tables.codebooks.div_ceil(8) as u32;
        let t = fused_tiles(self.m_chunks, words)
            .ok_or_else(|| Error::Argument("the fused kernel's tiles do not fit".into()))?;
        let params = self.params(g, t);
        let uniform = ctx.uniform("fused", &params);
        ctx.dispatch(
            encoder,
            &kernel::FUSED,
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
            params.groups as u64 * params.m_tiles as u64 * params.q_tiles as u64,
            timestamps,
        )
    }

    /// Records the approximate convolution of `input` into `output` (both on the GPU): two
    /// compute passes, `encode` then `accumulate`, or one `fused` pass (see
    /// [`Self::kernels`]), each timed when a timer is given.
    pub fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        input: &GpuTensor,
        output: &GpuTensor,
        mut timer: Option<&mut GpuTimer>,
    ) -> Result<()> {
        let g = self.geometry(ctx, input)?;
        let expected = g.output_shape(self.tables.spec.kind);
        if output.shape() != expected.as_slice() {
            return Err(Error::Shape(format!(
                "output tensor has shape {:?}, expected {expected:?}",
                output.shape()
            )));
        }
        if self.kernels() == MaddnessKernels::Fused {
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
        self.encode_pass(
            ctx,
            encoder,
            &g,
            input,
            &codes,
            timer.as_deref_mut().and_then(|t| t.pass()),
        )?;
        self.accumulate_pass(
            ctx,
            encoder,
            &g,
            &codes,
            &output.buffer,
            false,
            timer.and_then(|t| t.pass()),
        )
    }

    /// Applies the layer to a host tensor: uploads, runs and reads back, in batch slices when
    /// the whole batch would exceed the device's binding limits. Input must be finite.
    pub async fn run(&self, ctx: &Context, input: &Tensor) -> Result<Tensor> {
        let spec = &self.tables.spec;
        let g = spec.geometry(input.shape())?;
        input.check_finite("input")?;
        let mut chunk = batch_chunk(ctx, &g)?;
        let per_codes = self.codes_bytes(&g.with_batch(1));
        chunk = chunk
            .min((ctx.max_binding_bytes() / per_codes.max(1)) as usize)
            .max(1);
        let mut parts = Vec::new();
        let mut start = 0;
        while start < g.batch {
            let end = (start + chunk).min(g.batch);
            let part = input.slice_batch(start, end)?;
            let x = ctx.upload("input", &part)?;
            let y =
                ctx.create_tensor("output", &g.with_batch(end - start).output_shape(spec.kind))?;
            let mut encoder = ctx.encoder("maddness");
            self.encode(ctx, &mut encoder, &x, &y, None)?;
            ctx.submit(encoder);
            parts.push(ctx.download(&y).await?);
            start = end;
        }
        if parts.len() == 1 {
            Ok(parts.remove(0))
        } else {
            Tensor::concat_batch(&parts)
        }
    }

    /// The packed codes the GPU computes for `input` (layout `[G, Q, ceil(C/8)]`, as
    /// [`crate::maddness::mirror::encode`]). For tests and debugging.
    pub async fn codes(&self, ctx: &Context, input: &Tensor) -> Result<Vec<u32>> {
        let x = ctx.upload("input", input)?;
        let g = self.geometry(ctx, &x)?;
        let bytes = self.codes_bytes(&g);
        let codes = self.codes_buffer(ctx, bytes)?;
        let mut encoder = ctx.encoder("maddness codes");
        self.encode_pass(ctx, &mut encoder, &g, &x, &codes, None)?;
        ctx.submit(encoder);
        let raw = ctx.read_buffer(&codes, 0, bytes).await?;
        Ok(bytemuck::pod_collect_to_vec(&raw))
    }

    /// The exact integer sums the GPU computes for packed `codes` (layout `[N, O, OH·OW]`, as
    /// [`crate::maddness::mirror::accumulate_sums`]). For tests and debugging.
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
        self.accumulate_pass(ctx, &mut encoder, &g, &codes_buf, &out.buffer, true, None)?;
        ctx.submit(encoder);
        let raw = ctx
            .read_buffer(&out.buffer, 0, g.output_len() as u64 * 4)
            .await?;
        Ok(bytemuck::pod_collect_to_vec(&raw))
    }
}
