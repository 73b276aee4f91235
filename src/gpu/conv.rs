//! [`GpuConv`]: what every convolution layer on the GPU offers ([`crate::gpu::DirectConv`],
//! [`crate::gpu::MaddnessConv`]): record it into an encoder with one timer type, say how many
//! compute passes that makes and what shape comes out, and run it on a host tensor in batch
//! slices that fit the device's binding limits.
//!
//! The trait is object-safe: benchmarks and the web front end hold `&dyn GpuConv`.

use std::future::Future;
use std::pin::Pin;

use crate::error::Result;
use crate::gpu::{limits, Context, GpuTensor, GpuTimer};
use crate::spec::{ConvSpec, Geometry};
use crate::tensor::Tensor;

/// A boxed future, as [`GpuConv::run`] returns (not `Send`: wgpu's web types are not).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A convolution layer resident on the GPU.
///
/// Inputs are `N×C×H×W` (conv2d) or `N×C×L` (conv1d), outputs `N×O×OH×OW` / `N×O×OL`, as the
/// layer's [`ConvSpec`] says.
pub trait GpuConv {
    /// The kernel choice, as the CLI and reports name it: direct "tiled", "subgroup" or
    /// "naive"; MADDNESS "one-position", "two-positions", "shuffle" or "fused". For a layer
    /// whose variant is tuned per input, the kernel it runs until its shape class is tuned
    /// (`DirectConv::pinned` / `MaddnessConv::pinned` name the tuned one).
    fn name(&self) -> &'static str;

    /// True for an exact layer (direct convolution), false for an approximate one.
    fn exact(&self) -> bool;

    /// The layer's convolution parameters.
    fn spec(&self) -> &ConvSpec;

    /// Compute passes [`Self::encode`] records (each takes one slot of a timer).
    fn passes(&self) -> usize;

    /// The output shape for `input_shape`, or a [`crate::Error::Spec`]/[`crate::Error::Shape`]
    /// error when the input does not fit the layer.
    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        self.spec().output_shape(input_shape)
    }

    /// Bytes one sample of geometry `g` (batch 1) takes in each storage buffer a run binds:
    /// input and output, plus any scratch buffer of the layer. Bounds the batch slices of
    /// [`Self::run`].
    fn bytes_per_sample(&self, g: &Geometry) -> Vec<(&'static str, u64)> {
        vec![
            ("input", g.input_len() as u64 * 4),
            ("output", g.output_len() as u64 * 4),
        ]
    }

    /// Records the layer applied to `input` into `output` (both on the GPU; `output` of
    /// [`Self::output_shape`]). Each compute pass takes its timestamp writes from `timer`
    /// when one is given. Fails before recording anything when the shapes or the device's
    /// limits do not fit.
    fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        input: &GpuTensor,
        output: &GpuTensor,
        timer: Option<&mut GpuTimer>,
    ) -> Result<()>;

    /// Applies the layer to a host tensor: uploads, runs and reads back, in batch slices when
    /// the whole batch would exceed the device's binding limits. The input must be finite.
    fn run<'a>(&'a self, ctx: &'a Context, input: &'a Tensor) -> LocalFuture<'a, Result<Tensor>> {
        Box::pin(run_batched(self, ctx, input))
    }
}

/// [`GpuConv::run`]'s body (also of the layers that tune before running).
pub(crate) async fn run_batched<C: GpuConv + ?Sized>(
    conv: &C,
    ctx: &Context,
    input: &Tensor,
) -> Result<Tensor> {
    let g = conv.spec().geometry(input.shape())?;
    input.check_finite("input")?;
    let chunk = limits::batch_chunk(
        ctx.limits(),
        &ctx.adapter_info().name,
        g.batch,
        &conv.bytes_per_sample(&g.with_batch(1)),
    )?;
    let mut parts = Vec::new();
    for start in (0..g.batch).step_by(chunk) {
        let end = (start + chunk).min(g.batch);
        let slice;
        let part = if end - start == g.batch {
            input
        } else {
            slice = input.slice_batch(start, end)?;
            &slice
        };
        let x = ctx.upload("input", part)?;
        let y = ctx.create_tensor("output", &conv.output_shape(x.shape())?)?;
        let mut encoder = ctx.encoder(conv.name());
        conv.encode(ctx, &mut encoder, &x, &y, None)?;
        ctx.submit(encoder);
        parts.push(ctx.download(&y).await?);
    }
    if parts.len() == 1 {
        Ok(parts.remove(0))
    } else {
        Tensor::concat_batch(&parts)
    }
}

/// The geometry of `input`; fails with [`crate::Error::Shape`] unless `output` has the shape
/// `conv` makes of it, and with [`crate::Error::TooLarge`] when either exceeds the binding
/// limit.
pub(crate) fn check_io<C: GpuConv + ?Sized>(
    conv: &C,
    ctx: &Context,
    input: &GpuTensor,
    output: &GpuTensor,
) -> Result<Geometry> {
    let g = conv.spec().geometry(input.shape())?;
    let expected = g.output_shape(conv.spec().kind);
    if output.shape() != expected.as_slice() {
        return Err(crate::Error::Shape(format!(
            "output tensor has shape {:?}, expected {expected:?}",
            output.shape()
        )));
    }
    ctx.check_binding_size("input", g.input_len() as u64 * 4)?;
    ctx.check_binding_size("output", g.output_len() as u64 * 4)?;
    Ok(g)
}
