//! Host side of the exact FFT overlap-save conv1d ([`FftConv`]; `shaders/fft_load.wgsl`,
//! `fft_stage.wgsl`, `fft_multiply.wgsl`, `fft_extract.wgsl`), and the choice between it and
//! the direct kernel ([`ExactMethod`], [`exact_conv`], [`Crossover`]).
//!
//! The algorithm and its CPU mirror are in [`crate::fft`]: blocks of N = 2^p samples
//! ([`FftPlan`]) paired into complex transforms, a radix-4 (and one radix-2) Stockham FFT in
//! global memory, the products with the filter spectra summed over the group's input channels
//! in the frequency domain, one more forward FFT for the inverse, and the valid B = N − Kd + 1
//! outputs of each block written out. Inputs `N×C×L`, weight `O×(C/groups)×K`, outputs
//! `N×O×OL`; any padding, groups and bias; stride by decimation and dilation by a dilated
//! filter (exact, but no faster than stride and dilation 1). conv2d is refused
//! ([`Error::Unsupported`]): use [`crate::gpu::DirectConv`].
//!
//! The filter spectra are computed once on the host in f64 ([`crate::fft::filter_spectra`]) and
//! kept on the GPU as half spectra, split over several buffers by output channel when they
//! exceed the storage-binding limit. The segments of a run go through scratch buffers in chunks
//! that fit the binding limit (and [`MAX_SCRATCH_BYTES`]); the scratch is kept between runs.
//! Everything a run does is one compute pass (one timer slot).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::fft::{filter_spectra, FftPlan};
use crate::gpu::context::Pipeline;
use crate::gpu::conv::{check_io, GpuConv};
use crate::gpu::kernel::{shader_source, uniform_struct, Binding, Kernel};
use crate::gpu::{Context, DirectConv, GpuTensor, GpuTimer};
use crate::layer::ConvLayer;
use crate::spec::{ConvKind, ConvSpec};

use Binding::{StorageRead as R, StorageReadWrite as RW, Uniform as U};

/// The most bytes of each of the two scratch buffers (segments are processed in chunks below
/// this and the binding limit).
pub const MAX_SCRATCH_BYTES: u64 = 256 << 20;

/// Gathers blocks of the input into complex transforms (two blocks per transform).
pub const FFT_LOAD: Kernel = Kernel {
    name: "fft_load",
    source: shader_source!("common/fft_params", "fft_load"),
    bindings: &[U, R, RW],
    uniform: FftParams::LAYOUT,
    workgroup_size: 256,
    workgroup_bytes: 0,
    subgroups: false,
};

/// One radix-4 (override `RADIX = 4`) or radix-2 pass of a Stockham FFT.
pub const FFT_STAGE: Kernel = Kernel {
    name: "fft_stage",
    source: shader_source!("common/fft_params", "fft_stage"),
    bindings: &[U, R, R, RW],
    ..FFT_LOAD
};

/// The frequency-domain products, summed over a group's input channels.
pub const FFT_MULTIPLY: Kernel = Kernel {
    name: "fft_multiply",
    source: shader_source!("common/fft_params", "fft_multiply"),
    bindings: &[U, R, R, RW],
    ..FFT_LOAD
};

/// The valid outputs of each block, scaled, with bias.
pub const FFT_EXTRACT: Kernel = Kernel {
    name: "fft_extract",
    source: shader_source!("common/fft_params", "fft_extract"),
    bindings: &[U, R, R, RW],
    ..FFT_LOAD
};

uniform_struct! {
    /// The uniform block of the FFT kernels (struct `FftParams` in
    /// `shaders/common/fft_params.wgsl`).
    pub struct FftParams {
        /// N, the transform size.
        n_fft: u32,
        /// fft_stage: length of the sub-transforms already done.
        ns: u32,
        /// fft_stage: transforms of length N in the buffer.
        transforms: u32,
        /// B = N − Kd + 1.
        step: u32,
        /// L.
        in_len: u32,
        /// C.
        in_channels: u32,
        /// Zeros before the input.
        pad_left: u32,
        /// Block pairs per sample.
        pairs: u32,
        /// First segment of the chunk.
        seg0: u32,
        /// Segments in the chunk.
        segs: u32,
        /// C / groups.
        in_per_group: u32,
        /// O.
        out_channels: u32,
        /// O / groups.
        out_per_group: u32,
        /// fft_multiply: first output channel of the bound filter part.
        o0: u32,
        /// fft_multiply: output channels of the bound filter part.
        o_count: u32,
        /// OL.
        out_len: u32,
        /// Output stride.
        stride: u32,
        /// Samples.
        batch: u32,
        /// 1 / N.
        scale: f32,
    }
}

/// The filter spectra of output channels `o0 .. o0 + count`, `[count, C/groups, N/2 + 1]`.
struct FilterPart {
    o0: usize,
    count: usize,
    spectra: wgpu::Buffer,
}

/// Scratch buffers for `segs` segments.
struct Scratch {
    segs: usize,
    ping: wgpu::Buffer,
    pong: wgpu::Buffer,
}

/// An exact conv1d layer on the GPU by FFT overlap-save, filter spectra resident.
pub struct FftConv {
    spec: ConvSpec,
    plan: FftPlan,
    parts: Vec<FilterPart>,
    twiddle: wgpu::Buffer,
    bias: wgpu::Buffer,
    scratch: Mutex<Option<Scratch>>,
    max_scratch: u64,
}

impl FftConv {
    /// Uploads the layer with the block size [`FftPlan::for_spec`] chooses from K, the
    /// dilation and the channels.
    ///
    /// Fails with [`Error::Unsupported`] for a conv2d, with [`Error::TooLarge`] when one
    /// output channel's filter spectra or one segment's scratch exceed the binding limit.
    pub fn new(ctx: &Context, layer: &ConvLayer) -> Result<Self> {
        Self::with_plan(ctx, layer, FftPlan::for_spec(layer.spec())?)
    }

    /// Uploads the layer with a given plan (block size).
    pub fn with_plan(ctx: &Context, layer: &ConvLayer, plan: FftPlan) -> Result<Self> {
        let spec = layer.spec();
        if plan != FftPlan::with_block(spec, plan.n_fft)? {
            return Err(Error::Argument(format!(
                "the FFT plan is for a dilated filter of {} taps, the layer's has {}",
                plan.dilated_len,
                FftPlan::with_block(spec, plan.n_fft)?.dilated_len
            )));
        }
        for k in [&FFT_LOAD, &FFT_STAGE, &FFT_MULTIPLY, &FFT_EXTRACT] {
            crate::gpu::limits::check_kernel(ctx.limits(), &ctx.adapter_info().name, k)?;
        }
        let n = plan.n_fft;
        let (o, cg) = (spec.out_channels, spec.in_channels / spec.groups);
        let max_c = spec.in_channels.max(o);
        let limit = ctx.max_binding_bytes();
        let seg_bytes = (max_c * n * 8) as u64;
        if seg_bytes > limit {
            return Err(Error::TooLarge {
                what: format!(
                    "FFT scratch of one segment ({max_c} channels × {n}-point transforms, bytes)"
                ),
                value: seg_bytes,
                limit,
                why: format!(
                    "max_storage_buffer_binding_size of {}; use the direct kernel or fewer \
                     channels",
                    ctx.adapter_info().name
                ),
            });
        }
        let half = n / 2 + 1;
        let per_channel = (cg * half * 8) as u64;
        let per_part = (limit / per_channel) as usize;
        if per_part == 0 {
            return Err(Error::TooLarge {
                what: "filter spectra of one output channel (bytes)".into(),
                value: per_channel,
                limit,
                why: format!(
                    "max_storage_buffer_binding_size of {}; use the direct kernel",
                    ctx.adapter_info().name
                ),
            });
        }
        let w = filter_spectra(layer, &plan)?;
        let flat: Vec<f32> = w.iter().flat_map(|c| [c.re, c.im]).collect();
        let mut parts = Vec::new();
        for o0 in (0..o).step_by(per_part) {
            let count = per_part.min(o - o0);
            let data = &flat[o0 * cg * half * 2..(o0 + count) * cg * half * 2];
            parts.push(FilterPart {
                o0,
                count,
                spectra: ctx.storage("fft filter spectra", data)?,
            });
        }
        let twiddle: Vec<f32> = (0..n)
            .flat_map(|t| {
                let a = -2.0 * std::f64::consts::PI * t as f64 / n as f64;
                [a.cos() as f32, a.sin() as f32]
            })
            .collect();
        let bias = match layer.bias() {
            Some(b) => b.data().to_vec(),
            None => vec![0.0; o],
        };
        Ok(FftConv {
            spec: spec.clone(),
            plan,
            parts,
            twiddle: ctx.storage("fft twiddle", &twiddle)?,
            bias: ctx.storage("fft bias", &bias)?,
            scratch: Mutex::new(None),
            max_scratch: limit.min(MAX_SCRATCH_BYTES),
        })
    }

    /// The plan (block size N, dilated filter length).
    pub fn plan(&self) -> FftPlan {
        self.plan
    }

    /// How many buffers the filter spectra are split over (1 unless they exceed the binding
    /// limit).
    pub fn filter_parts(&self) -> usize {
        self.parts.len()
    }

    /// The scratch buffers for at least `segs` segments (made or grown on demand).
    fn scratch(&self, ctx: &Context, segs: usize) -> Result<(wgpu::Buffer, wgpu::Buffer)> {
        let mut s = self
            .scratch
            .lock()
            .map_err(|_| Error::Gpu("FFT scratch lock poisoned".into()))?;
        if let Some(sc) = s.as_ref().filter(|sc| sc.segs >= segs) {
            return Ok((sc.ping.clone(), sc.pong.clone()));
        }
        let max_c = self.spec.in_channels.max(self.spec.out_channels);
        let bytes = (segs * max_c * self.plan.n_fft * 8) as u64;
        ctx.check_binding_size("fft scratch", bytes)?;
        let make = |label| {
            ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let sc = Scratch {
            segs,
            ping: make("fft scratch ping"),
            pong: make("fft scratch pong"),
        };
        let out = (sc.ping.clone(), sc.pong.clone());
        *s = Some(sc);
        Ok(out)
    }
}

/// Records one dispatch: kernel, overrides, buffers, invocations.
type AddStep<'a> =
    dyn FnMut(&'static Kernel, &[(&'static str, u32)], &[&wgpu::Buffer], usize) -> Result<()> + 'a;

/// One recorded dispatch.
struct Step {
    pipeline: Arc<Pipeline>,
    bind: wgpu::BindGroup,
    grid: (u32, u32, u32),
}

impl GpuConv for FftConv {
    fn name(&self) -> &'static str {
        "fft"
    }

    fn exact(&self) -> bool {
        true
    }

    fn spec(&self) -> &ConvSpec {
        &self.spec
    }

    /// One compute pass holding every dispatch.
    fn passes(&self) -> usize {
        1
    }

    fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        input: &GpuTensor,
        output: &GpuTensor,
        timer: Option<&mut GpuTimer>,
    ) -> Result<()> {
        let g = check_io(self, ctx, input, output)?;
        let nf = self.plan.n_fft;
        let pairs = self.plan.pairs(&g);
        let total = g.batch * pairs;
        let (c, o) = (g.in_channels, g.out_channels);
        let seg_bytes = (c.max(o) * nf * 8) as u64;
        let chunk = ((self.max_scratch / seg_bytes) as usize).clamp(1, total);
        let too_big = |what: &str, v: usize| -> Result<u32> {
            u32::try_from(v).map_err(|_| Error::TooLarge {
                what: format!("{what} of the FFT kernels"),
                value: v as u64,
                limit: u32::MAX as u64,
                why: "32-bit shader index arithmetic".into(),
            })
        };
        too_big("segments", total)?;
        too_big("stride-1 positions", 2 * pairs * self.plan.step())?;
        let (ping, pong) = self.scratch(ctx, chunk)?;
        let base = FftParams {
            n_fft: nf as u32,
            ns: 1,
            transforms: 0,
            step: self.plan.step() as u32,
            in_len: g.in_w as u32,
            in_channels: c as u32,
            pad_left: g.pad_left as u32,
            pairs: pairs as u32,
            seg0: 0,
            segs: 0,
            in_per_group: g.in_per_group() as u32,
            out_channels: o as u32,
            out_per_group: g.out_per_group() as u32,
            o0: 0,
            o_count: 0,
            out_len: g.out_w as u32,
            stride: g.stride_w as u32,
            batch: g.batch as u32,
            scale: 1.0 / nf as f32,
        };
        // Radix-4 passes, then one radix-2 pass when log2 N is odd.
        let log2 = nf.trailing_zeros();
        let radices: Vec<u32> = (0..log2 / 2)
            .map(|_| 4)
            .chain((log2 % 2 == 1).then_some(2))
            .collect();
        let mut steps: Vec<Step> = Vec::new();
        let mut stage_uniforms: HashMap<(u32, u32), wgpu::Buffer> = HashMap::new();
        let mut add = |kernel: &'static Kernel,
                       overrides: &[(&'static str, u32)],
                       buffers: &[&wgpu::Buffer],
                       invocations: usize|
         -> Result<()> {
            let pipeline = ctx.pipeline(kernel, overrides)?;
            let bind = ctx.bind_group(kernel.name, &pipeline, buffers);
            let groups = too_big("workgroups", invocations.div_ceil(256))?;
            steps.push(Step {
                pipeline,
                bind,
                grid: ctx.grid(groups)?,
            });
            Ok(())
        };
        // Records the forward transforms of `transforms` signals starting in `from`; returns
        // whether the result ended in the other buffer.
        let mut ffts = |add: &mut AddStep, from_ping: bool, transforms: usize| -> Result<bool> {
            let mut ns = 1u32;
            let mut in_ping = from_ping;
            for &r in &radices {
                let u = stage_uniforms
                    .entry((ns, transforms as u32))
                    .or_insert_with(|| {
                        ctx.uniform(
                            "fft_stage",
                            &FftParams {
                                ns,
                                transforms: transforms as u32,
                                ..base
                            },
                        )
                    })
                    .clone();
                let (src, dst) = if in_ping {
                    (&ping, &pong)
                } else {
                    (&pong, &ping)
                };
                add(
                    &FFT_STAGE,
                    &[("RADIX", r)],
                    &[&u, src, &self.twiddle, dst],
                    transforms * nf / r as usize,
                )?;
                in_ping = !in_ping;
                ns *= r;
            }
            Ok(in_ping)
        };
        for seg0 in (0..total).step_by(chunk) {
            let segs = chunk.min(total - seg0);
            let p = FftParams {
                seg0: seg0 as u32,
                segs: segs as u32,
                ..base
            };
            let u = ctx.uniform("fft_load", &p);
            add(&FFT_LOAD, &[], &[&u, &input.buffer, &ping], segs * c * nf)?;
            let x_in_ping = ffts(&mut add, true, segs * c)?;
            let (x, y) = if x_in_ping {
                (&ping, &pong)
            } else {
                (&pong, &ping)
            };
            for part in &self.parts {
                let u = ctx.uniform(
                    "fft_multiply",
                    &FftParams {
                        o0: part.o0 as u32,
                        o_count: part.count as u32,
                        ..p
                    },
                );
                add(
                    &FFT_MULTIPLY,
                    &[],
                    &[&u, x, &part.spectra, y],
                    segs * part.count * nf,
                )?;
            }
            let f_in_ping = ffts(&mut add, !x_in_ping, segs * o)?;
            let f = if f_in_ping { &ping } else { &pong };
            add(
                &FFT_EXTRACT,
                &[],
                &[&u, f, &self.bias, &output.buffer],
                segs * o * 2 * self.plan.step(),
            )?;
        }
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("fft"),
            timestamp_writes: timer.and_then(|t| t.pass()),
        });
        for s in &steps {
            pass.set_pipeline(&s.pipeline.pipeline);
            pass.set_bind_group(0, &s.bind, &[]);
            pass.dispatch_workgroups(s.grid.0, s.grid.1, s.grid.2);
        }
        Ok(())
    }
}

/// How an exact layer is computed: `direct` ([`DirectConv`]), `fft` ([`FftConv`], conv1d
/// only) or `auto` (FFT for a conv1d whose dilated filter length reaches the adapter's measured
/// [`Crossover`], direct otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ExactMethod {
    /// The direct kernel ([`crate::gpu::DirectKernel::default_for`]).
    #[default]
    Direct,
    /// FFT overlap-save (conv1d only; conv2d is refused).
    Fft,
    /// FFT from the measured crossover on, direct below it and for conv2d.
    Auto,
}

/// The exact GPU layer for `method`: for `Auto` the crossover of this adapter is measured once
/// per process and stored (see [`Crossover::for_context`]).
pub fn exact_conv(
    ctx: &Context,
    layer: &ConvLayer,
    method: ExactMethod,
) -> Result<Box<dyn GpuConv>> {
    let spec = layer.spec();
    let fft = match method {
        ExactMethod::Direct => false,
        ExactMethod::Fft => true,
        ExactMethod::Auto => {
            spec.kind == ConvKind::Conv1d && {
                let kd = spec.dilation[0] * (spec.kernel[0] - 1) + 1;
                Crossover::for_context(ctx)?.prefers_fft(kd)
            }
        }
    };
    Ok(if fft {
        Box::new(FftConv::new(ctx, layer)?)
    } else {
        Box::new(DirectConv::new(ctx, layer)?)
    })
}

/// The filter length from which the FFT kernel beats the direct one on an adapter, measured on
/// a 1 → 1 channel conv1d of [`Crossover::SIGNAL`] samples for K = 8, 16, 32, … (both kernels
/// interleaved, median of 5 runs each), stopping at the second K in a row where FFT is faster;
/// the crossover is the first of those two (a few seconds on lavapipe, ~70 s when its two
/// cores are shared with other work).
///
/// Stored: once per process in memory, and natively as JSON in
/// `$MADDCONV_CACHE_DIR/fft_crossover.json` (else `$XDG_CACHE_HOME/maddconv/…`, else
/// `$HOME/.cache/maddconv/…`), one entry per adapter (name, backend, device type, driver).
/// Delete the file to measure again.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Crossover {
    /// The adapter it was measured on.
    pub adapter: String,
    /// The first of two consecutive measured K where FFT was faster, or `None` when no such
    /// pair was found up to the largest of [`Crossover::KS`].
    pub k: Option<usize>,
    /// The measurements: (K, direct ms, FFT ms).
    pub measured: Vec<(usize, f64, f64)>,
}

impl Crossover {
    /// The signal length of the measurement.
    pub const SIGNAL: usize = 1 << 16;
    /// The filter lengths measured.
    pub const KS: &'static [usize] = &[8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

    /// Whether a filter of `kd` (dilated) taps is at or past the crossover.
    pub fn prefers_fft(&self, kd: usize) -> bool {
        self.k.is_some_and(|k| kd >= k)
    }

    /// The adapter's key in the store.
    fn key(ctx: &Context) -> String {
        let i = ctx.adapter_info();
        format!(
            "{} ({:?}, {:?}, {} {})",
            i.name, i.backend, i.device_type, i.driver, i.driver_info
        )
    }

    /// This adapter's crossover: from memory, else from the JSON store, else measured (and
    /// stored; a store that cannot be written is reported on the log and skipped).
    pub fn for_context(ctx: &Context) -> Result<Crossover> {
        static MEMO: Mutex<Vec<Crossover>> = Mutex::new(Vec::new());
        let key = Self::key(ctx);
        let memo = |c: &Crossover| {
            if let Ok(mut m) = MEMO.lock() {
                m.push(c.clone());
            }
        };
        if let Some(c) = MEMO
            .lock()
            .ok()
            .and_then(|m| m.iter().find(|c| c.adapter == key).cloned())
        {
            return Ok(c);
        }
        let path = Self::store_path();
        let mut stored: Vec<Crossover> = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if let Some(c) = stored.iter().find(|c| c.adapter == key) {
            memo(c);
            return Ok(c.clone());
        }
        let c = Self::measure(ctx)?;
        memo(&c);
        if let Some(p) = path {
            stored.retain(|s| s.adapter != key);
            stored.push(c.clone());
            let write = || -> Result<()> {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir).map_err(|error| Error::Io {
                        path: dir.to_path_buf(),
                        error,
                    })?;
                }
                let json = serde_json::to_vec_pretty(&stored)
                    .map_err(|e| Error::Argument(format!("crossover JSON: {e}")))?;
                crate::io::write_atomic(&p, |w| std::io::Write::write_all(w, &json))
            };
            if let Err(e) = write() {
                log::warn!("could not store the FFT crossover in {}: {e}", p.display());
            }
        }
        Ok(c)
    }

    /// Where the crossover is stored natively (`None` on the web or without a home).
    pub fn store_path() -> Option<std::path::PathBuf> {
        if cfg!(target_arch = "wasm32") {
            return None;
        }
        let var = |v| std::env::var_os(v).filter(|s| !s.is_empty());
        let dir = var("MADDCONV_CACHE_DIR")
            .map(std::path::PathBuf::from)
            .or_else(|| var("XDG_CACHE_HOME").map(|d| std::path::PathBuf::from(d).join("maddconv")))
            .or_else(|| {
                var("HOME").map(|h| std::path::PathBuf::from(h).join(".cache").join("maddconv"))
            })?;
        Some(dir.join("fft_crossover.json"))
    }

    /// Measures the crossover on this adapter (see [`Crossover`] for the cost).
    pub fn measure(ctx: &Context) -> Result<Crossover> {
        let reps = crate::bench::Repetitions {
            warmup: 1,
            timed: 5,
        };
        let x = crate::tensor::Tensor::new(
            vec![1, 1, Self::SIGNAL],
            (0..Self::SIGNAL)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect(),
        )?;
        let xg = ctx.upload("crossover input", &x)?;
        let mut measured = Vec::new();
        for &k in Self::KS {
            let spec = ConvSpec::conv1d(1, 1, k);
            let w = crate::tensor::Tensor::new(
                vec![1, 1, k],
                (0..k).map(|i| 1.0 / (1.0 + i as f32)).collect(),
            )?;
            let layer = ConvLayer::new(spec, w, None)?;
            let direct = DirectConv::new(ctx, &layer)?;
            let fft = FftConv::new(ctx, &layer)?;
            let shape = layer.output_shape(x.shape())?;
            let (y1, y2) = (
                ctx.create_tensor("crossover output", &shape)?,
                ctx.create_tensor("crossover output", &shape)?,
            );
            let methods = [
                crate::bench::Method {
                    conv: &direct,
                    input: &xg,
                    output: &y1,
                },
                crate::bench::Method {
                    conv: &fft,
                    input: &xg,
                    output: &y2,
                },
            ];
            let t = pollster_block_on(crate::bench::time_interleaved(ctx, &methods, reps))?;
            measured.push((k, t[0].median_ms, t[1].median_ms));
            let n = measured.len();
            if n >= 2 && measured[n - 2..].iter().all(|&(_, d, f)| f < d) {
                break;
            }
        }
        let n = measured.len();
        let k =
            (n >= 2 && measured[n - 2..].iter().all(|&(_, d, f)| f < d)).then(|| measured[n - 2].0);
        Ok(Crossover {
            adapter: Self::key(ctx),
            k,
            measured,
        })
    }
}

/// Blocks on a future natively; on the web the measurement cannot block (refused).
fn pollster_block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        pollster::block_on(f)
    }
    #[cfg(target_arch = "wasm32")]
    {
        drop(f);
        Err(Error::Unsupported(
            "measuring the FFT crossover needs a blocking wait, which the web lacks; choose \
             direct or fft"
                .into(),
        ))
    }
}
