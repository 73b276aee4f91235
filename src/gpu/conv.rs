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
        Box::pin(async move { Ok(run_batched(self, ctx, input, false).await?.0) })
    }

    /// Whatever the layer does before it runs on inputs of `shape` ([`Self::run`],
    /// [`Self::run_timed`]); the tuned layers time their variants for the shape's class here
    /// the first time it is seen. Nothing by default.
    fn prepare<'a>(&'a self, ctx: &'a Context, shape: &'a [usize]) -> LocalFuture<'a, Result<()>> {
        let _ = (ctx, shape);
        Box::pin(async { Ok(()) })
    }

    /// [`Self::run`], timing each step apart: the upload, the compute passes (wall time of
    /// submit → idle and, where the device has timestamp queries, the passes' own GPU time)
    /// and the read-back. Each step is waited for before the next starts, so the times do not
    /// overlap (and their sum exceeds a pipelined run's).
    fn run_timed<'a>(
        &'a self,
        ctx: &'a Context,
        input: &'a Tensor,
    ) -> LocalFuture<'a, Result<(Tensor, RunTiming)>> {
        Box::pin(run_batched(self, ctx, input, true))
    }
}

/// Where the time of one [`GpuConv::run_timed`] went, in milliseconds (summed over batch
/// slices).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct RunTiming {
    /// Host → GPU: writing the input and waiting for the copy.
    pub upload_ms: f64,
    /// Submit → idle of the compute passes (includes dispatch overhead).
    pub compute_ms: f64,
    /// The compute passes' own time from timestamp queries (`None` without them).
    pub kernel_ms: Option<f64>,
    /// GPU → host: copying and mapping the output.
    pub download_ms: f64,
}

impl RunTiming {
    /// Adds another run's times (e.g. over the runs of a model).
    pub fn add(&mut self, other: &RunTiming) {
        if *self == RunTiming::default() {
            *self = *other;
            return;
        }
        self.upload_ms += other.upload_ms;
        self.compute_ms += other.compute_ms;
        self.kernel_ms = self.kernel_ms.zip(other.kernel_ms).map(|(a, b)| a + b);
        self.download_ms += other.download_ms;
    }

    /// Upload + download: the time spent moving tensors, apart from the compute.
    pub fn transfer_ms(&self) -> f64 {
        self.upload_ms + self.download_ms
    }
}

/// [`GpuConv::run`]'s and [`GpuConv::run_timed`]'s body (`timed`: wait after each step),
/// after [`GpuConv::prepare`].
async fn run_batched<C: GpuConv + ?Sized>(
    conv: &C,
    ctx: &Context,
    input: &Tensor,
    timed: bool,
) -> Result<(Tensor, RunTiming)> {
    let g = conv.spec().geometry(input.shape())?;
    input.check_finite("input")?;
    conv.prepare(ctx, input.shape()).await?;
    let chunk = limits::batch_chunk(
        ctx.limits(),
        &ctx.adapter_info().name,
        g.batch,
        &conv.bytes_per_sample(&g.with_batch(1)),
    )?;
    let mut timing = RunTiming::default();
    let mut timer = if timed {
        GpuTimer::new(ctx, conv.passes() as u32)
    } else {
        None
    };
    if timed && timer.is_some() {
        timing.kernel_ms = Some(0.0);
    }
    let ms = |t: crate::clock::Instant| t.elapsed().as_secs_f64() * 1e3;
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
        let t = crate::clock::Instant::now();
        let x = ctx.upload("input", part)?;
        let y = ctx.create_tensor("output", &conv.output_shape(x.shape())?)?;
        if timed {
            ctx.wait_idle().await?;
            timing.upload_ms += ms(t);
        }
        let t = crate::clock::Instant::now();
        let mut encoder = ctx.encoder(conv.name());
        conv.encode(ctx, &mut encoder, &x, &y, timer.as_mut())?;
        if let Some(timer) = &timer {
            timer.resolve(&mut encoder);
        }
        ctx.submit(encoder);
        if timed {
            ctx.wait_idle().await?;
            timing.compute_ms += ms(t);
            if let Some(timer) = &mut timer {
                let passes = timer.read(ctx).await?;
                *timing.kernel_ms.get_or_insert(0.0) += passes.iter().sum::<f64>();
            }
        }
        let t = crate::clock::Instant::now();
        parts.push(ctx.download(&y).await?);
        if timed {
            timing.download_ms += ms(t);
        }
    }
    let y = if parts.len() == 1 {
        parts.remove(0)
    } else {
        Tensor::concat_batch(&parts)?
    };
    Ok((y, timing))
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
