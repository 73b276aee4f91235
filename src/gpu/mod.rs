//! GPU side, one concern per module:
//!
//! - [`context`]: the [`Context`] (adapter info, device, queue, granted limits, pipeline cache
//!   keyed by kernel and override constants, GPU error collection).
//! - [`buffer`]: [`GpuTensor`] and the context's uniform/storage/upload/readback methods.
//! - [`kernel`]: what a WGSL kernel is to the host ([`Kernel`]: source, bindings, uniform
//!   layout, workgroup size and workgroup memory), checked against each shader by naga.
//! - [`limits`]: checks against the granted limits (workgroup size and memory, binding sizes,
//!   batch slices), made before anything reaches the GPU.
//! - [`timer`]: [`GpuTimer`], kernel times from timestamp queries.
//! - [`tune`]: [`Tuner`], the per-adapter cache of the fastest kernel variant per shape class
//!   (in memory and as a JSON file), and [`TuneMode`].
//! - [`conv`]: the [`GpuConv`] trait every GPU layer implements (`encode` with one timer type,
//!   `passes`, `output_shape`, `name`, and a batched `run`).
//! - [`direct`]: [`DirectConv`], the exact kernels; [`maddness`]: [`MaddnessConv`], the
//!   MADDNESS kernels; [`fft`]: [`FftConv`], exact conv1d by FFT overlap-save, and the choice
//!   between it and direct ([`ExactMethod`], [`exact_conv`]). Each declares its [`Kernel`]s
//!   and uniform struct beside its host code.
//!
//! Imports between these modules go one way: `kernel`, `tune` ← `limits` ← `context` ← `buffer`,
//! `timer` ← `conv` ← `direct`, `maddness` ← `fft`.
//!
//! Async only at the edges: creating a context and reading results back are `async` (use
//! `pollster::block_on` natively, `wasm-bindgen-futures` on the web); recording and submitting
//! work is synchronous. GPU errors (validation, out of memory) are collected by an error
//! handler and returned as [`crate::Error::Gpu`] at the next readback or
//! [`Context::check_errors`], never as panics.

#![warn(missing_docs)]

pub mod buffer;
pub mod context;
pub mod conv;
pub mod direct;
pub mod fft;
pub mod kernel;
pub mod limits;
pub mod maddness;
pub mod timer;
pub mod tune;

pub use buffer::GpuTensor;
pub use context::{AdapterSummary, Context, ContextOptions};
pub use conv::{GpuConv, RunTiming};
pub use direct::{DirectConv, DirectKernel, DirectVariant};
pub use fft::{exact_conv, Crossover, ExactMethod, FftConv};
pub use kernel::Kernel;
pub use maddness::{LookupKernel, LookupVariant, MaddnessConv};
pub use timer::GpuTimer;
pub use tune::{TuneMode, Tuner};

/// Every kernel of the crate (also those whose host code is behind the `extra-kernels`
/// feature), for validation tests and warm-up.
pub const KERNELS: &[&Kernel] = &[
    &direct::DIRECT,
    &direct::DIRECT_SUBGROUP,
    &direct::DIRECT_NAIVE,
    &maddness::ENCODE,
    &maddness::ENCODE_PIXELS,
    &maddness::EXPAND_CODES,
    &maddness::ACCUMULATE,
    &maddness::ACCUMULATE_SHUFFLE,
    &maddness::FUSED,
    &fft::FFT_LOAD,
    &fft::FFT_STAGE,
    &fft::FFT_MULTIPLY,
    &fft::FFT_EXTRACT,
];
