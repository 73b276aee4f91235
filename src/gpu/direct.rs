//! Host side of the exact direct-convolution kernels (`shaders/direct.wgsl`, the tiled baseline,
//! and `shaders/direct_naive.wgsl`, the untiled comparison).
//!
//! Weights (`O×(C/g)×KH×KW`) are uploaded once; the tiled kernel keeps them transposed to
//! `[groups, K, O/groups]`. Inputs are `N×C×H×W` / `N×C×L`, outputs `N×O×OH×OW` / `N×O×OL`.
//! [`DirectConv::run`] processes the batch in slices when a whole batch would exceed the
//! device's storage-binding limit, and refuses (naming sizes and limit) when one sample does.

use crate::error::{Error, Result};
use crate::gpu::{kernel, Context, GpuTensor};
use crate::spec::{ConvSpec, Geometry};
use crate::tensor::Tensor;

/// The uniform parameter block shared by `direct` and `direct_naive` (struct `Params` there).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ConvParams {
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
    pub dilation_h: u32,
    pub dilation_w: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub in_per_group: u32,
    pub out_per_group: u32,
    pub k_len: u32,
    pub q_len: u32,
    pub m_tiles: u32,
    pub n_tiles: u32,
}

impl ConvParams {
    /// The geometry's sizes (all checked to fit 32 bits by [`ConvSpec::geometry`]).
    pub(crate) fn new(g: &Geometry) -> Self {
        ConvParams {
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
            dilation_h: g.dilation_h as u32,
            dilation_w: g.dilation_w as u32,
            pad_top: g.pad_top as u32,
            pad_left: g.pad_left as u32,
            in_per_group: g.in_per_group() as u32,
            out_per_group: g.out_per_group() as u32,
            k_len: g.window_len() as u32,
            q_len: (g.batch * g.positions()) as u32,
            m_tiles: 0,
            n_tiles: 0,
        }
    }
}

/// Which direct kernel to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DirectKernel {
    /// `direct`: implicit GEMM tiled through workgroup memory, 16 outputs per invocation.
    Tiled,
    /// `direct_subgroup`: one position × 8 channels per invocation, weights handed out by
    /// subgroup broadcasts (adapters with subgroups of ≥ 8 invocations).
    Subgroup,
    /// `direct_naive`: one output per invocation from global memory (benchmark comparison).
    Naive,
}

impl DirectKernel {
    /// Kernel name as in `shaders/`.
    pub fn name(self) -> &'static str {
        match self {
            DirectKernel::Tiled => kernel::DIRECT.name,
            DirectKernel::Subgroup => kernel::DIRECT_SUBGROUP.name,
            DirectKernel::Naive => kernel::DIRECT_NAIVE.name,
        }
    }

    /// The default exact kernel for a device: `Subgroup` where it can run (it measured faster
    /// than `Tiled` on the CPU adapter, BENCHMARKS.md), else `Tiled`.
    pub fn default_for(ctx: &Context) -> Self {
        if DirectKernel::Subgroup.available(ctx)
            && ctx.adapter_info().device_type == wgpu::DeviceType::Cpu
        {
            DirectKernel::Subgroup
        } else {
            DirectKernel::Tiled
        }
    }

    /// Whether this kernel can run on the context's device.
    pub fn available(self, ctx: &Context) -> bool {
        match self {
            DirectKernel::Subgroup => {
                ctx.has_subgroups() && ctx.adapter_info().subgroup_min_size >= 8
            }
            _ => true,
        }
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
    /// `weight`: `O×(C/g)×KH×KW` (conv2d) or `O×(C/g)×K` (conv1d); `bias`: `O`, present iff
    /// `spec.bias`.
    pub fn new(
        ctx: &Context,
        spec: &ConvSpec,
        weight: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Self> {
        Self::with_kernel(ctx, spec, weight, bias, DirectKernel::default_for(ctx))
    }

    /// Uploads the layer for the given kernel.
    pub fn with_kernel(
        ctx: &Context,
        spec: &ConvSpec,
        weight: &Tensor,
        bias: Option<&Tensor>,
        kernel: DirectKernel,
    ) -> Result<Self> {
        spec.check_weight(weight.shape())?;
        spec.check_bias(bias.map(|b| b.shape()))?;
        weight.check_finite("weight")?;
        if let Some(b) = bias {
            b.check_finite("bias")?;
        }
        check_workgroup_limits(ctx)?;
        if !kernel.available(ctx) {
            return Err(Error::Argument(format!(
                "the {} kernel needs subgroups of at least 8 invocations; {} has {}",
                kernel.name(),
                ctx.adapter_info().name,
                if ctx.has_subgroups() {
                    format!("subgroups of {}", ctx.adapter_info().subgroup_min_size)
                } else {
                    "none".to_string()
                }
            )));
        }
        let o = spec.out_channels;
        let og = o / spec.groups;
        let k = weight.len() / o;
        let data: Vec<f32> = match kernel {
            DirectKernel::Naive => weight.data().to_vec(),
            DirectKernel::Tiled | DirectKernel::Subgroup => {
                // [O, K] → [groups, K, O4] with O4 = O/groups rounded up to 4 (8 for the
                // subgroup kernel), zero-padded.
                let align = if kernel == DirectKernel::Subgroup {
                    8
                } else {
                    4
                };
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
            }
        };
        let bias_data = match bias {
            Some(b) => b.data().to_vec(),
            None => vec![0.0; o],
        };
        Ok(DirectConv {
            spec: spec.clone(),
            kernel,
            weight: ctx.storage(&format!("{} weight", kernel.name()), &data)?,
            bias: ctx.storage(&format!("{} bias", kernel.name()), &bias_data)?,
        })
    }

    /// The layer's spec.
    pub fn spec(&self) -> &ConvSpec {
        &self.spec
    }

    /// Which kernel this layer runs.
    pub fn kernel(&self) -> DirectKernel {
        self.kernel
    }

    /// Records the convolution of `input` into `output` (both on the GPU, shapes as in the
    /// module docs) as one compute pass, with optional timestamp writes around it.
    pub fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        input: &GpuTensor,
        output: &GpuTensor,
        timestamps: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) -> Result<()> {
        let g = self.spec.geometry(input.shape())?;
        let expected = g.output_shape(self.spec.kind);
        if output.shape() != expected.as_slice() {
            return Err(Error::Shape(format!(
                "output tensor has shape {:?}, expected {expected:?}",
                output.shape()
            )));
        }
        ctx.check_binding_size("input", g.input_len() as u64 * 4)?;
        ctx.check_binding_size("output", g.output_len() as u64 * 4)?;
        let mut params = ConvParams::new(&g);
        let kh_kw = [("KH", g.kernel_h as u32), ("KW", g.kernel_w as u32)];
        let (kernel, overrides, workgroups) = match self.kernel {
            DirectKernel::Tiled => {
                let t = TileConfig::for_outputs(g.out_per_group());
                params.m_tiles = (g.out_per_group() as u32).div_ceil(4).div_ceil(t.wg_m);
                params.n_tiles = params.q_len.div_ceil(t.bn());
                (
                    &kernel::DIRECT,
                    [&kh_kw[..], &[("WG_M", t.wg_m), ("BK", t.bk)]].concat(),
                    params.m_tiles as u64 * params.n_tiles as u64 * g.groups as u64,
                )
            }
            DirectKernel::Subgroup => {
                params.m_tiles = (g.out_per_group() as u32).div_ceil(8);
                params.n_tiles = params.q_len.div_ceil(512);
                (
                    &kernel::DIRECT_SUBGROUP,
                    kh_kw.to_vec(),
                    params.m_tiles as u64 * params.n_tiles as u64 * g.groups as u64,
                )
            }
            DirectKernel::Naive => (
                &kernel::DIRECT_NAIVE,
                kh_kw.to_vec(),
                (g.output_len() as u64).div_ceil(256),
            ),
        };
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
            timestamps,
        )
    }

    /// Convolves a host tensor: uploads, runs and reads back, in batch slices when the whole
    /// batch would exceed the device's binding limit. Input must be finite.
    pub async fn run(&self, ctx: &Context, input: &Tensor) -> Result<Tensor> {
        let g = self.spec.geometry(input.shape())?;
        input.check_finite("input")?;
        let chunk = batch_chunk(ctx, &g)?;
        let mut parts = Vec::new();
        let mut start = 0;
        while start < g.batch {
            let end = (start + chunk).min(g.batch);
            let part = if start == 0 && end == g.batch {
                None
            } else {
                Some(input.slice_batch(start, end)?)
            };
            let x = ctx.upload("input", part.as_ref().unwrap_or(input))?;
            let y = ctx.create_tensor(
                "output",
                &g.with_batch(end - start).output_shape(self.spec.kind),
            )?;
            let mut encoder = ctx.encoder(self.kernel.name());
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
}

/// How many samples fit one dispatch under the device's binding limits (input and output);
/// fails when not even one does.
pub(crate) fn batch_chunk(ctx: &Context, g: &Geometry) -> Result<usize> {
    let per_in = (g.input_len() / g.batch) as u64 * 4;
    let per_out = (g.output_len() / g.batch) as u64 * 4;
    let per = per_in.max(per_out).max(1);
    let limit = ctx.max_binding_bytes();
    let chunk = (limit / per) as usize;
    if chunk == 0 {
        let (what, value) = if per_in >= per_out {
            ("one sample of the input", per_in)
        } else {
            ("one sample of the output", per_out)
        };
        return Err(Error::TooLarge {
            what: format!("{what} (bytes)"),
            value,
            limit,
            why: format!(
                "max_storage_buffer_binding_size of {}; slicing goes no finer than one sample",
                ctx.adapter_info().name
            ),
        });
    }
    Ok(chunk.min(g.batch))
}

/// The tiled kernels need 256 invocations per workgroup and 12 KiB of workgroup memory, both
/// within the WebGPU defaults; some downlevel adapters grant less.
pub(crate) fn check_workgroup_limits(ctx: &Context) -> Result<()> {
    let l = ctx.limits();
    let need = [
        (
            "max_compute_invocations_per_workgroup",
            l.max_compute_invocations_per_workgroup,
            256,
        ),
        (
            "max_compute_workgroup_size_x",
            l.max_compute_workgroup_size_x,
            256,
        ),
        (
            "max_compute_workgroup_storage_size",
            l.max_compute_workgroup_storage_size,
            12288,
        ),
    ];
    for (name, have, want) in need {
        if have < want {
            return Err(Error::TooLarge {
                what: format!("{name} needed by the kernels"),
                value: want as u64,
                limit: have as u64,
                why: format!("{name} granted by {}", ctx.adapter_info().name),
            });
        }
    }
    Ok(())
}
