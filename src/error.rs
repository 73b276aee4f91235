//! The library's one error type.
//!
//! Every fallible public function returns [`Result<T>`]. Each variant says what went wrong and
//! carries the offending value and, where one applies, the limit it broke, so a message can be
//! acted on without reading the source.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in maddconv.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The convolution parameters contradict each other or the tensors (zero sizes, a window
    /// larger than the padded input, channels not divisible by groups, ...).
    /// Fix the spec or the tensors; the message names the value at fault.
    #[error("invalid convolution: {0}")]
    Spec(String),

    /// A tensor has the wrong rank or shape for the operation.
    /// The message names the tensor, its shape and the shape expected.
    #[error("shape mismatch: {0}")]
    Shape(String),

    /// A value is larger than a limit of the device or of 32-bit shader index arithmetic.
    /// Use a smaller batch or layer, or an adapter with larger limits.
    #[error("{what} is {value}, above the limit of {limit} ({why})")]
    TooLarge {
        /// What was measured, e.g. "input buffer size in bytes".
        what: String,
        /// The measured value.
        value: u64,
        /// The limit it exceeds.
        limit: u64,
        /// Which limit it is, e.g. "max_storage_buffer_binding_size of this adapter".
        why: String,
    },

    /// A tensor contains NaN or infinity where finite values are required.
    #[error("{what} contains a non-finite value {value} at flat index {index}")]
    NonFinite {
        /// The tensor at fault.
        what: String,
        /// Flat (C-order) index of the first offending element.
        index: usize,
        /// The offending value.
        value: f32,
    },

    /// An invalid argument that is not a shape or convolution problem (e.g. zero codebooks).
    #[error("invalid argument: {0}")]
    Argument(String),

    /// Reading or writing a file failed at the operating-system level.
    ///
    /// The message includes the operating system's; the error is not also returned by
    /// [`source`](std::error::Error::source), so that printing the chain of causes (as
    /// `anyhow`'s `{:#}` does) shows it once.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },

    /// A `.npy` file is malformed or of an unsupported kind (dtype, order).
    /// Save float32 C-order arrays, e.g. `np.save(path, x.astype(np.float32))`.
    #[error("{}: {message}", path.display())]
    Npy {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// A table file (`.safetensors`) is corrupt, truncated, of another format version, or
    /// inconsistent with itself. Re-create it with `maddconv train`.
    #[error("table file {}: {message}", path.display())]
    TableFile {
        /// The file involved (empty when loading from memory).
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// A table file's contents do not match the checksum written with them at training time: a
    /// byte of a table, a scale or the metadata (e.g. the spec) was changed afterwards.
    /// Re-create the file with `maddconv train`; do not edit table files by hand.
    #[error(
        "the table file was modified after training: {} carries checksum {expected} but its \
         contents hash to {found}; re-create it with `maddconv train`",
        path.display()
    )]
    TableModified {
        /// The file involved (the name given when loading from memory).
        path: PathBuf,
        /// The checksum stored in the file.
        expected: String,
        /// The checksum of the file's contents.
        found: String,
    },

    /// No GPU adapter could be found (or none of the requested backend).
    /// Check drivers, or `WGPU_BACKEND`; on a machine without a GPU install a software Vulkan
    /// driver (Mesa's lavapipe).
    #[error("no GPU adapter found: {0}")]
    NoAdapter(String),

    /// The adapter refused to create a device with the features and limits asked for.
    #[error("could not create a GPU device: {0}")]
    RequestDevice(String),

    /// The GPU reported an error (validation, out of memory, lost device, failed mapping).
    /// This is a bug in maddconv or a driver problem unless the message says otherwise.
    #[error("GPU error: {0}")]
    Gpu(String),

    /// The adapter lacks a feature a chosen kernel needs (e.g. subgroups, or subgroups of at
    /// least 8 invocations). Choose another kernel (the defaults run everywhere) or adapter.
    #[error("{0}")]
    Unsupported(String),

    /// Learning the tables failed (e.g. no training windows, a singular system).
    #[error("training failed: {0}")]
    Training(String),

    /// An ONNX model could not be loaded or run (not an ONNX file, an unknown input or node
    /// name, a wrong input shape, an op tract cannot run). The message names the file, node,
    /// op or shape at fault.
    #[error("model: {0}")]
    Model(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }
}
