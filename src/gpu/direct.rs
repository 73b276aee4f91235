//! Host side of the exact direct-convolution kernels (`shaders/direct.wgsl`, the tiled baseline,
//! and `shaders/direct_naive.wgsl`, the untiled comparison).
//!
//! Weights (`O×(C/g)×KH×KW`) are uploaded once; the tiled kernel keeps them transposed to
//! `[groups, K, O/groups]`. Inputs are `N×C×H×W` / `N×C×L`, outputs `N×O×OH×OW` / `N×O×OL`.
//! [`GpuConv::run`] processes the batch in slices when a whole batch would exceed the
//! device's storage-binding limit, and refuses (naming sizes and limit) when one sample does.
//!
//! The kernels ([`DIRECT`], [`DIRECT_SUBGROUP`], [`DIRECT_NAIVE`]) and their uniform struct
//! ([`ConvParams`], `Params` in `shaders/common/conv_params.wgsl`) are declared here.
//!
//! Each kernel comes in variants ([`DirectVariant`]: the tiled kernel's `WG_M` × `BK`, the
//! subgroup kernel's `SPAN`, WGSL override constants, so one shader serves them all). A layer
//! runs a fixed variant ([`DirectConv::with_variant`]) or, when the context tunes, the variant
//! [`DirectConv::tune`] measured fastest for the input's shape class ([`crate::gpu::tune`]).

use crate::error::{Error, Result};
use crate::gpu::conv::{check_io, GpuConv};
use crate::gpu::kernel::{shader_source, uniform_struct, Binding, GeometryParams, Kernel};
use crate::gpu::{Context, GpuTensor, GpuTimer};
use crate::layer::ConvLayer;
use crate::spec::{ConvSpec, Geometry};

use Binding::{StorageRead as R, StorageReadWrite as RW, Uniform as U};

/// Exact convolution, implicit GEMM tiled through workgroup memory (12 KiB).
pub const DIRECT: Kernel = Kernel {
    name: "direct",
    source: shader_source!("common/conv_params", "common/geometry", "direct"),
    bindings: &[U, R, R, R, RW],
    uniform: ConvParams::LAYOUT,
    workgroup_size: 256,
    workgroup_bytes: 12288,
    subgroups: false,
};

/// Exact convolution, two positions × 8 channels per invocation, weights by subgroup
/// broadcast (adapters with subgroups of ≥ 8 invocations).
pub const DIRECT_SUBGROUP: Kernel = Kernel {
    name: "direct_subgroup",
    source: shader_source!("common/conv_params", "common/geometry", "direct_subgroup"),
    subgroups: true,
    workgroup_bytes: 0,
    ..DIRECT
};

/// Exact convolution, one output per invocation, no tiling: shows the floor the tiling lifts
/// (host code behind the `extra-kernels` feature; always validated by the shader tests).
pub const DIRECT_NAIVE: Kernel = Kernel {
    name: "direct_naive",
    source: shader_source!("common/conv_params", "common/geometry", "direct_naive"),
    workgroup_bytes: 0,
    ..DIRECT
};

uniform_struct! {
    /// The uniform block of the direct kernels (struct `Params` in
    /// `shaders/common/conv_params.wgsl`): the [`Geometry`]'s sizes and the dispatch's tiles.
    pub struct ConvParams {
        /// The sizes (`shaders/common/geometry.wgsl`).
        geo: GeometryParams,
        /// Vertical dilation.
        dilation_h: u32,
        /// Horizontal dilation.
        dilation_w: u32,
        /// K = (C/groups)·KH·KW, the window length.
        k_len: u32,
        /// N·OH·OW, the positions of the batch.
        q_len: u32,
        /// Tiles over a group's output channels (kernel-specific).
        m_tiles: u32,
        /// Tiles over the positions (kernel-specific).
        n_tiles: u32,
    }
}

impl ConvParams {
    /// The geometry's sizes (all checked to fit 32 bits by [`ConvSpec::geometry`]).
    pub(crate) fn new(g: &Geometry) -> Self {
        ConvParams {
            geo: GeometryParams::new(g),
            dilation_h: g.dilation_h as u32,
            dilation_w: g.dilation_w as u32,
            k_len: g.window_len() as u32,
            q_len: (g.batch * g.positions()) as u32,
            m_tiles: 0,
            n_tiles: 0,
        }
    }
}

/// Which exact kernel a [`DirectConv`] runs. Names (Rust, CLI, reports): `tiled`,
/// `subgroup`, `naive`. The default is [`DirectKernel::default_for`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum DirectKernel {
    /// `shaders/direct.wgsl`: implicit GEMM tiled through workgroup memory, 16 outputs per
    /// invocation. Runs everywhere.
    Tiled,
    /// `shaders/direct_subgroup.wgsl`: two positions × 8 channels per invocation, weights
    /// handed out by subgroup broadcasts. Needs subgroups of ≥ 8 invocations.
    Subgroup,
    /// `shaders/direct_naive.wgsl`: one output per invocation from global memory, to show
    /// what the tiling gains (feature `extra-kernels`).
    #[cfg(feature = "extra-kernels")]
    Naive,
}

impl DirectKernel {
    /// Every exact kernel this build has.
    pub const ALL: &'static [DirectKernel] = &[
        DirectKernel::Tiled,
        DirectKernel::Subgroup,
        #[cfg(feature = "extra-kernels")]
        DirectKernel::Naive,
    ];

    /// The name in the CLI and reports: "tiled", "subgroup" or "naive".
    pub fn name(self) -> &'static str {
        match self {
            DirectKernel::Tiled => "tiled",
            DirectKernel::Subgroup => "subgroup",
            #[cfg(feature = "extra-kernels")]
            DirectKernel::Naive => "naive",
        }
    }

    /// The shader it runs.
    pub fn kernel(self) -> &'static Kernel {
        match self {
            DirectKernel::Tiled => &DIRECT,
            DirectKernel::Subgroup => &DIRECT_SUBGROUP,
            #[cfg(feature = "extra-kernels")]
            DirectKernel::Naive => &DIRECT_NAIVE,
        }
    }

    /// The fixed (untuned) exact kernel (the one place it is chosen; with tuning on,
    /// [`DirectConv::tune`] measures instead): `Subgroup` on CPU adapters where it can run
    /// (2.4–5.3× faster than `Tiled` on lavapipe, BENCHMARKS.md), else `Tiled`.
    pub fn default_for(ctx: &Context) -> Self {
        if DirectKernel::Subgroup.check(ctx).is_ok()
            && ctx.adapter_info().device_type == wgpu::DeviceType::Cpu
        {
            DirectKernel::Subgroup
        } else {
            DirectKernel::Tiled
        }
    }

    /// Fails with [`Error::Unsupported`] (or [`Error::TooLarge`] for workgroup limits) when
    /// this kernel cannot run on the context's device, saying what is missing.
    pub fn check(self, ctx: &Context) -> Result<()> {
        let info = ctx.adapter_info();
        if self == DirectKernel::Subgroup && !(ctx.has_subgroups() && info.subgroup_min_size >= 8) {
            return Err(Error::Unsupported(format!(
                "the {} kernel needs subgroups of at least 8 invocations; {} has {}",
                self.kernel().name,
                info.name,
                if ctx.has_subgroups() {
                    format!("subgroups of {}", info.subgroup_min_size)
                } else {
                    "none".to_string()
                }
            )));
        }
        crate::gpu::limits::check_kernel(ctx.limits(), &info.name, self.kernel())
    }
}

/// A direct kernel with its tile sizes: what [`DirectConv::tune`] chooses among, and what
/// [`DirectConv::with_variant`] runs exactly. Names (reports, the tuning cache): `tiled-16x16`
/// (`WG_M` × `BK`), `subgroup-256` (`SPAN`), `naive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kernel", rename_all = "kebab-case")]
pub enum DirectVariant {
    /// `shaders/direct.wgsl` with `wg_m` × (256 / `wg_m`) invocations (tiles of 4·`wg_m`
    /// channels × 4·256/`wg_m` positions) and reduction slices of `bk`; (`wg_m`, `bk`) one of
    /// [`DirectVariant::TILED`].
    Tiled {
        /// Invocations along output channels (4, 8 or 16).
        wg_m: u32,
        /// Window elements per staged slice (8 or 16).
        bk: u32,
    },
    /// `shaders/direct_subgroup.wgsl` with tiles of 2·`span` positions × 8·256/`span`
    /// channels; `span` one of [`DirectVariant::SPANS`] and at least the adapter's largest
    /// subgroup. Smaller spans leave fewer lanes idle when positions are few.
    Subgroup {
        /// Positions per half tile.
        span: u32,
    },
    /// `shaders/direct_naive.wgsl` (feature `extra-kernels`).
    #[cfg(feature = "extra-kernels")]
    Naive,
}

impl DirectVariant {
    /// The (`wg_m`, `bk`) pairs of the tiled kernel: its workgroup arrays hold BK·WG_M ≤ 256
    /// and BK·(256/WG_M) ≤ 512 vec4s.
    pub const TILED: &'static [(u32, u32)] = &[(4, 8), (8, 8), (8, 16), (16, 8), (16, 16)];
    /// The spans of the subgroup kernel.
    pub const SPANS: &'static [u32] = &[256, 128, 64, 32];

    /// The kernel it runs.
    pub fn kernel(self) -> DirectKernel {
        match self {
            DirectVariant::Tiled { .. } => DirectKernel::Tiled,
            DirectVariant::Subgroup { .. } => DirectKernel::Subgroup,
            #[cfg(feature = "extra-kernels")]
            DirectVariant::Naive => DirectKernel::Naive,
        }
    }

    /// Its name: `tiled-16x16`, `subgroup-256`, `naive`.
    pub fn name(self) -> String {
        match self {
            DirectVariant::Tiled { wg_m, bk } => format!("tiled-{wg_m}x{bk}"),
            DirectVariant::Subgroup { span } => format!("subgroup-{span}"),
            #[cfg(feature = "extra-kernels")]
            DirectVariant::Naive => "naive".into(),
        }
    }

    /// Every variant of `kernel`.
    pub fn all(kernel: DirectKernel) -> Vec<DirectVariant> {
        match kernel {
            DirectKernel::Tiled => DirectVariant::TILED
                .iter()
                .map(|&(wg_m, bk)| DirectVariant::Tiled { wg_m, bk })
                .collect(),
            DirectKernel::Subgroup => DirectVariant::SPANS
                .iter()
                .map(|&span| DirectVariant::Subgroup { span })
                .collect(),
            #[cfg(feature = "extra-kernels")]
            DirectKernel::Naive => vec![DirectVariant::Naive],
        }
    }

    /// The fixed (untuned) variant of `kernel` for layers of `out_per_group` outputs per
    /// group: the tiled kernel's widest tile along channels that the group fills reasonably,
    /// the subgroup kernel's 512-position tile.
    pub fn default_for(kernel: DirectKernel, out_per_group: usize) -> DirectVariant {
        match kernel {
            DirectKernel::Tiled => {
                let (wg_m, bk) = if out_per_group >= 48 {
                    (16, 16) // 64 channels × 64 positions
                } else if out_per_group >= 24 {
                    (8, 16) // 32 × 128
                } else {
                    (4, 8) // 16 × 256
                };
                DirectVariant::Tiled { wg_m, bk }
            }
            DirectKernel::Subgroup => DirectVariant::Subgroup { span: 256 },
            #[cfg(feature = "extra-kernels")]
            DirectKernel::Naive => DirectVariant::Naive,
        }
    }

    /// Fails with [`Error::Unsupported`] (or [`Error::TooLarge`]) when the device cannot run
    /// this variant ([`DirectKernel::check`], and for the subgroup kernel a span of at least
    /// the adapter's largest subgroup), or [`Error::Argument`] for tile sizes outside
    /// [`Self::TILED`] / [`Self::SPANS`].
    pub fn check(self, ctx: &Context) -> Result<()> {
        match self {
            DirectVariant::Tiled { wg_m, bk } if !Self::TILED.contains(&(wg_m, bk)) => {
                return Err(Error::Argument(format!(
                    "tiled direct kernel with WG_M = {wg_m}, BK = {bk}: the supported pairs are \
                     {:?}",
                    Self::TILED
                )))
            }
            DirectVariant::Subgroup { span } => {
                if !Self::SPANS.contains(&span) {
                    return Err(Error::Argument(format!(
                        "subgroup direct kernel with SPAN = {span}: the supported spans are {:?}",
                        Self::SPANS
                    )));
                }
                self.kernel().check(ctx)?;
                let max = ctx.adapter_info().subgroup_max_size;
                if span < max {
                    return Err(Error::Unsupported(format!(
                        "the subgroup direct kernel with SPAN = {span} needs subgroups of at most \
                         {span} invocations; {} has up to {max}",
                        ctx.adapter_info().name
                    )));
                }
                return Ok(());
            }
            _ => {}
        }
        self.kernel().check(ctx)
    }

    /// The override constants, workgroup count and uniform tiles of one dispatch over `g`.
    fn plan(self, g: &Geometry, params: &mut ConvParams) -> (Vec<(&'static str, u32)>, u64) {
        let mut overrides = vec![("KH", g.kernel_h as u32), ("KW", g.kernel_w as u32)];
        let og = g.out_per_group() as u32;
        let workgroups = match self {
            DirectVariant::Tiled { wg_m, bk } => {
                params.m_tiles = og.div_ceil(4).div_ceil(wg_m);
                params.n_tiles = params.q_len.div_ceil((256 / wg_m) * 4);
                overrides.extend([("WG_M", wg_m), ("BK", bk)]);
                params.m_tiles as u64 * params.n_tiles as u64 * g.groups as u64
            }
            DirectVariant::Subgroup { span } => {
                params.m_tiles = og.div_ceil(8 * (256 / span));
                params.n_tiles = params.q_len.div_ceil(2 * span);
                overrides.push(("SPAN", span));
                params.m_tiles as u64 * params.n_tiles as u64 * g.groups as u64
            }
            #[cfg(feature = "extra-kernels")]
            DirectVariant::Naive => (g.output_len() as u64).div_ceil(256),
        };
        (overrides, workgroups)
    }
}

/// How a [`DirectConv`] picks its variant for an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Choice {
    /// Exactly this variant.
    Fixed(DirectVariant),
    /// The tuned variant of the input's shape class among those of `kernel` (any kernel the
    /// device runs when `None`); the fixed default until the class is tuned.
    Tuned(Option<DirectKernel>),
}

/// An exact convolution layer on the GPU, weights resident.
pub struct DirectConv {
    spec: ConvSpec,
    choice: Choice,
    /// The untuned kernel ([`DirectKernel::default_for`] or the one asked for).
    kernel: DirectKernel,
    /// The weight as `[groups, K, O4]` (tiled kernel), `[groups, K, O8]` (subgroup kernel) and
    /// `[O, K]` (naive), each present when a variant of that kernel may run.
    weights: Vec<(DirectKernel, wgpu::Buffer)>,
    bias: wgpu::Buffer,
}

impl DirectConv {
    /// Uploads the layer. When the context tunes ([`Context::tuner`]), each input runs the
    /// variant (kernel and tiles) tuned for its shape class ([`Self::tune`]; [`GpuConv::run`]
    /// tunes a class first seen); otherwise, and until a class is tuned, the device's default
    /// kernel ([`DirectKernel::default_for`]) with its default tiles.
    ///
    /// The layer's weight and bias were checked when the [`ConvLayer`] was made.
    pub fn new(ctx: &Context, layer: &ConvLayer) -> Result<Self> {
        let kernel = DirectKernel::default_for(ctx);
        if ctx.tuner().is_some() {
            let kernels: Vec<DirectKernel> = DirectKernel::ALL
                .iter()
                .copied()
                .filter(|k| k.check(ctx).is_ok())
                .collect();
            Self::upload(ctx, layer, Choice::Tuned(None), kernel, &kernels)
        } else {
            Self::with_variant(
                ctx,
                layer,
                DirectVariant::default_for(kernel, layer.spec().out_channels / layer.spec().groups),
            )
        }
    }

    /// Uploads the layer for the given kernel; fails with [`Error::Unsupported`] when the
    /// device cannot run it (never falls back to another kernel). Its tiles are tuned per shape
    /// class when the context tunes, else [`DirectVariant::default_for`].
    pub fn with_kernel(ctx: &Context, layer: &ConvLayer, kernel: DirectKernel) -> Result<Self> {
        kernel.check(ctx)?;
        if ctx.tuner().is_some() {
            Self::upload(ctx, layer, Choice::Tuned(Some(kernel)), kernel, &[kernel])
        } else {
            Self::with_variant(
                ctx,
                layer,
                DirectVariant::default_for(kernel, layer.spec().out_channels / layer.spec().groups),
            )
        }
    }

    /// Uploads the layer for exactly this variant, never tuned; fails as
    /// [`DirectVariant::check`] does when the device cannot run it.
    pub fn with_variant(ctx: &Context, layer: &ConvLayer, variant: DirectVariant) -> Result<Self> {
        variant.check(ctx)?;
        Self::upload(
            ctx,
            layer,
            Choice::Fixed(variant),
            variant.kernel(),
            &[variant.kernel()],
        )
    }

    fn upload(
        ctx: &Context,
        layer: &ConvLayer,
        choice: Choice,
        kernel: DirectKernel,
        kernels: &[DirectKernel],
    ) -> Result<Self> {
        let (spec, weight, bias) = (layer.spec(), layer.weight(), layer.bias());
        let o = spec.out_channels;
        let og = o / spec.groups;
        let k = weight.len() / o;
        let mut weights = Vec::new();
        for &kern in kernels {
            // [O, K] → [groups, K, O4] with O4 = O/groups rounded up to 4 (8 for the subgroup
            // kernel), zero-padded; the naive kernel reads the weight as it is.
            let align = match kern {
                DirectKernel::Tiled => 4,
                DirectKernel::Subgroup => 8,
                #[cfg(feature = "extra-kernels")]
                DirectKernel::Naive => 0,
            };
            let data: Vec<f32> = if align == 0 {
                weight.data().to_vec()
            } else {
                let og4 = og.div_ceil(align) * align;
                let w = weight.data();
                let mut t = vec![0.0f32; spec.groups * k * og4];
                for oc in 0..o {
                    let (g, m) = (oc / og, oc % og);
                    for kk in 0..k {
                        t[(g * k + kk) * og4 + m] = w[oc * k + kk];
                    }
                }
                t
            };
            let label = kern.kernel().name;
            weights.push((kern, ctx.storage(&format!("{label} weight"), &data)?));
        }
        let bias_data = match bias {
            Some(b) => b.data().to_vec(),
            None => vec![0.0; o],
        };
        Ok(DirectConv {
            spec: spec.clone(),
            choice,
            kernel,
            weights,
            bias: ctx.storage("direct bias", &bias_data)?,
        })
    }

    /// The kernel this layer runs when its variant is fixed or its shape class not yet tuned.
    pub fn kernel(&self) -> DirectKernel {
        self.kernel
    }

    /// The shape class of geometry `g` in the tuning cache, or `None` for a fixed variant.
    fn class(&self, g: &Geometry) -> Option<String> {
        let Choice::Tuned(kernels) = self.choice else {
            return None;
        };
        Some(format!(
            "direct/{}/q{}/o{}/k{}",
            kernels.map(|k| k.name()).unwrap_or("any"),
            crate::gpu::tune::bucket(g.batch * g.positions()),
            crate::gpu::tune::bucket(g.out_per_group()),
            crate::gpu::tune::bucket(g.window_len()),
        ))
    }

    /// The variant an input of geometry `g` runs: the fixed one, the tuned one of its shape
    /// class, or (class not yet tuned) the untuned default.
    pub fn variant_for(&self, ctx: &Context, g: &Geometry) -> DirectVariant {
        let default = DirectVariant::default_for(self.kernel, g.out_per_group());
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
        match serde_json::from_value::<DirectVariant>(entry.variant.clone()) {
            Ok(v)
                if kernels.is_none_or(|k| v.kernel() == k)
                    && self.weights.iter().any(|(k, _)| *k == v.kernel())
                    && v.check(ctx).is_ok() =>
            {
                v
            }
            _ => {
                log::warn!(
                    "the tuning cache's entry for {class} ({}) does not fit this layer or device; \
                     running the default {} (retune with `maddconv tune`)",
                    entry.variant,
                    default.name()
                );
                default
            }
        }
    }

    /// The shape class in the tuning cache of an input of shape `input_shape` (of the batch
    /// slice [`GpuConv::run`] dispatches), or `None` for a fixed variant.
    pub fn tune_class(&self, ctx: &Context, input_shape: &[usize]) -> Result<Option<String>> {
        let g = self.spec.geometry(input_shape)?;
        let chunk = crate::gpu::limits::batch_chunk(
            ctx.limits(),
            &ctx.adapter_info().name,
            g.batch,
            &self.bytes_per_sample(&g.with_batch(1)),
        )?;
        Ok(self.class(&g.with_batch(chunk)))
    }

    /// The variant an input of shape `input_shape` runs, after timing every variant this layer
    /// may run on a random input of that shape when the context tunes and its shape class has
    /// no choice yet. The fixed default is kept unless another variant is more than 3 % faster.
    /// Without tuning (or with a fixed variant) nothing is timed.
    pub async fn tune(&self, ctx: &Context, input_shape: &[usize]) -> Result<DirectVariant> {
        let g = self.spec.geometry(input_shape)?;
        // The batch slice `run` dispatches (the whole batch when it fits) is what is timed and
        // whose class `encode` looks up.
        let chunk = crate::gpu::limits::batch_chunk(
            ctx.limits(),
            &ctx.adapter_info().name,
            g.batch,
            &self.bytes_per_sample(&g.with_batch(1)),
        )?;
        let g = g.with_batch(chunk);
        let (Some(tuner), Some(class)) = (ctx.tuner(), self.class(&g)) else {
            return Ok(self.variant_for(ctx, &g));
        };
        if tuner.get(&class).is_some() {
            return Ok(self.variant_for(ctx, &g));
        }
        let mut input_shape = input_shape.to_vec();
        input_shape[0] = chunk;
        let input_shape = &input_shape[..];
        let default = DirectVariant::default_for(self.kernel, g.out_per_group());
        let mut candidates = vec![default];
        for &(k, _) in &self.weights {
            for v in DirectVariant::all(k) {
                if v != default && v.check(ctx).is_ok() {
                    candidates.push(v);
                }
            }
        }
        let layers: Vec<DirectConv> = candidates
            .iter()
            .map(|&v| self.fixed(v))
            .collect::<Result<_>>()?;
        crate::gpu::tune::time_and_record(
            ctx,
            tuner,
            &class,
            input_shape,
            &layers,
            &candidates,
            |v| v.name(),
        )
        .await
    }

    /// A layer sharing this one's buffers that runs exactly `variant` (one of its kernels).
    fn fixed(&self, variant: DirectVariant) -> Result<DirectConv> {
        Ok(DirectConv {
            spec: self.spec.clone(),
            choice: Choice::Fixed(variant),
            kernel: variant.kernel(),
            weights: self
                .weights
                .iter()
                .filter(|(k, _)| *k == variant.kernel())
                .cloned()
                .collect(),
            bias: self.bias.clone(),
        })
    }

    /// This layer's buffers, running exactly the variant its input of shape `input_shape` runs
    /// now (for benchmarks that compare the tuned and the untuned choice side by side).
    pub fn pinned(&self, ctx: &Context, input_shape: &[usize]) -> Result<DirectConv> {
        let g = self.spec.geometry(input_shape)?;
        self.fixed(self.variant_for(ctx, &g))
    }
}

impl GpuConv for DirectConv {
    fn name(&self) -> &'static str {
        match self.choice {
            Choice::Fixed(v) => v.kernel().name(),
            Choice::Tuned(_) => self.kernel.name(),
        }
    }

    fn prepare<'a>(
        &'a self,
        ctx: &'a Context,
        shape: &'a [usize],
    ) -> crate::gpu::conv::LocalFuture<'a, Result<()>> {
        Box::pin(async move { self.tune(ctx, shape).await.map(|_| ()) })
    }

    fn exact(&self) -> bool {
        true
    }

    fn spec(&self) -> &ConvSpec {
        &self.spec
    }

    fn passes(&self) -> usize {
        1
    }

    /// One compute pass.
    fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        input: &GpuTensor,
        output: &GpuTensor,
        timer: Option<&mut GpuTimer>,
    ) -> Result<()> {
        let g = check_io(self, ctx, input, output)?;
        let variant = self.variant_for(ctx, &g);
        let mut params = ConvParams::new(&g);
        let (overrides, workgroups) = variant.plan(&g, &mut params);
        let weight = self
            .weights
            .iter()
            .find(|(k, _)| *k == variant.kernel())
            .map(|(_, b)| b)
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "this layer was not uploaded for the {} kernel",
                    variant.kernel().name()
                ))
            })?;
        let kernel = variant.kernel().kernel();
        let uniform = ctx.uniform(kernel.name, &params);
        ctx.dispatch(
            encoder,
            kernel,
            &overrides,
            &[&uniform, &input.buffer, weight, &self.bias, &output.buffer],
            workgroups,
            timer.and_then(|t| t.pass()),
        )
    }
}
