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

    /// The default exact kernel (the one place it is chosen): `Subgroup` on CPU adapters where
    /// it can run (2.4–5.3× faster than `Tiled` on lavapipe, BENCHMARKS.md), else `Tiled`.
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

/// Tile shape of the `direct` kernel: 256 invocations as `wg_m × (256 / wg_m)`, 4×4 outputs
/// each, reduction slices of `bk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TileConfig {
    wg_m: u32,
    bk: u32,
}

impl TileConfig {
    /// The widest tile along output channels that the group's channels fill reasonably.
    fn for_outputs(out_per_group: usize) -> Self {
        if out_per_group >= 48 {
            TileConfig { wg_m: 16, bk: 16 } // 64 channels × 64 positions
        } else if out_per_group >= 24 {
            TileConfig { wg_m: 8, bk: 16 } // 32 × 128
        } else {
            TileConfig { wg_m: 4, bk: 8 } // 16 × 256
        }
    }
    fn bn(self) -> u32 {
        (256 / self.wg_m) * 4
    }
}

/// An exact convolution layer on the GPU, weights resident.
pub struct DirectConv {
    spec: ConvSpec,
    kernel: DirectKernel,
    weight: wgpu::Buffer,
    bias: wgpu::Buffer,
}

impl DirectConv {
    /// Uploads the layer for the device's default exact kernel
    /// ([`DirectKernel::default_for`]).
    ///
    /// The layer's weight and bias were checked when the [`ConvLayer`] was made.
    pub fn new(ctx: &Context, layer: &ConvLayer) -> Result<Self> {
        Self::with_kernel(ctx, layer, DirectKernel::default_for(ctx))
    }

    /// Uploads the layer for the given kernel; fails with [`Error::Unsupported`] when the
    /// device cannot run it (never falls back to another kernel).
    pub fn with_kernel(ctx: &Context, layer: &ConvLayer, kernel: DirectKernel) -> Result<Self> {
        let (spec, weight, bias) = (layer.spec(), layer.weight(), layer.bias());
        kernel.check(ctx)?;
        let o = spec.out_channels;
        let og = o / spec.groups;
        let k = weight.len() / o;
        // [O, K] → [groups, K, O4] with O4 = O/groups rounded up to 4 (8 for the subgroup
        // kernel), zero-padded; the naive kernel reads the weight as it is.
        let align = match kernel {
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
        let bias_data = match bias {
            Some(b) => b.data().to_vec(),
            None => vec![0.0; o],
        };
        let label = kernel.kernel().name;
        Ok(DirectConv {
            spec: spec.clone(),
            kernel,
            weight: ctx.storage(&format!("{label} weight"), &data)?,
            bias: ctx.storage(&format!("{label} bias"), &bias_data)?,
        })
    }

    /// Which kernel this layer runs.
    pub fn kernel(&self) -> DirectKernel {
        self.kernel
    }
}

impl GpuConv for DirectConv {
    fn name(&self) -> &'static str {
        self.kernel.name()
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
        let mut params = ConvParams::new(&g);
        let kh_kw = [("KH", g.kernel_h as u32), ("KW", g.kernel_w as u32)];
        let (overrides, workgroups) = match self.kernel {
            DirectKernel::Tiled => {
                let t = TileConfig::for_outputs(g.out_per_group());
                params.m_tiles = (g.out_per_group() as u32).div_ceil(4).div_ceil(t.wg_m);
                params.n_tiles = params.q_len.div_ceil(t.bn());
                (
                    [&kh_kw[..], &[("WG_M", t.wg_m), ("BK", t.bk)]].concat(),
                    params.m_tiles as u64 * params.n_tiles as u64 * g.groups as u64,
                )
            }
            DirectKernel::Subgroup => {
                params.m_tiles = (g.out_per_group() as u32).div_ceil(8);
                params.n_tiles = params.q_len.div_ceil(512);
                (
                    kh_kw.to_vec(),
                    params.m_tiles as u64 * params.n_tiles as u64 * g.groups as u64,
                )
            }
            #[cfg(feature = "extra-kernels")]
            DirectKernel::Naive => (kh_kw.to_vec(), (g.output_len() as u64).div_ceil(256)),
        };
        let kernel = self.kernel.kernel();
        let uniform = ctx.uniform(kernel.name, &params);
        ctx.dispatch(
            encoder,
            kernel,
            &overrides,
            &[
                &uniform,
                &input.buffer,
                &self.weight,
                &self.bias,
                &output.buffer,
            ],
            workgroups,
            timer.and_then(|t| t.pass()),
        )
    }
}
