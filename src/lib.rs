//! # maddconv
//!
//! Trained convolution layers made cheaper by replacing multiply-adds with learned table
//! look-ups (MADDNESS, Blalock & Guttag, ICML 2021), run as WGSL compute shaders through wgpu
//! on any GPU, next to an exact direct-convolution kernel on the same adapter.
//!
//! Modules:
//! * [`spec`] — convolution parameters and shape arithmetic (PyTorch/ONNX conventions).
//! * [`tensor`] — dense f32 tensors and `.npy` files.
//! * [`layer`] — [`ConvLayer`]: a spec with its weight and bias, checked once.
//! * [`io`] — atomic, kill-safe file output.
//! * [`reference`](mod@reference) — the exact CPU convolution in f64 (the oracle).
//! * [`gpu`] — GPU context and the kernels' host code.
//! * [`fft`] — exact conv1d by FFT overlap-save on the CPU: block size, filter spectra, the
//!   CPU mirror of the GPU FFT kernels.
//! * [`data`] — layer folders (`layer.json` + `.npy` files).
//! * [`maddness`] — learned hash trees and look-up tables: training, the CPU mirror of
//!   inference, the table file.
//! * [`model`] (feature `onnx`) — whole ONNX models on tract with chosen Conv nodes
//!   captured or replaced by MADDNESS tables.
//! * [`boxes`] — YOLOX box decoding and the matching of two runs' boxes (a detector's end
//!   task; also in the browser).
//! * [`clock`] — the one clock (std natively, `performance.now()` in browsers).
//! * [`metrics`] — the error of an approximate layer (NMSE, DESIGN.md §5).
//! * [`filters`] — fixed filters as conv layers for demos and tests (Sobel and Gaussian image
//!   filters, a band-pass FIR bank, image-source room responses).
//! * `plot` (feature `cli`) — the font and palette the tool's and the examples' plots share.

#![warn(missing_docs)]

pub mod bench;
pub mod boxes;
pub mod clock;
pub mod data;
pub mod error;
pub mod fft;
pub mod filters;
pub mod gpu;
pub mod io;
pub mod layer;
pub mod maddness;
pub mod metrics;
#[cfg(feature = "onnx")]
pub mod model;
#[cfg(feature = "cli")]
pub mod plot;
pub mod reference;
pub mod rng;
pub mod spec;
pub mod tensor;

pub use error::{Error, Result};
pub use layer::ConvLayer;
pub use spec::{ConvKind, ConvSpec, Geometry};
pub use tensor::Tensor;
