//! Subcommands of the `maddconv` binary.

pub mod bench;
pub mod bench_fft;
pub mod conv;
pub mod eval;
pub mod info;
#[cfg(feature = "onnx")]
pub mod model;
pub mod report;
pub mod run;
pub mod train;
pub mod tune;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use maddconv::gpu::{Context, ContextOptions};
use maddconv::ConvSpec;

/// Convolution flags shared by the subcommands that build a layer from a weight file.
#[derive(Args, Clone, Debug, Default)]
pub struct SpecArgs {
    /// Stride: one value for every axis, or one per axis ("2" or "2,1").
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub stride: Option<String>,
    /// Zero padding: one value for every side, or per side in ONNX pads order
    /// (2-D "top,left,bottom,right", 1-D "left,right").
    #[arg(long, value_name = "P", allow_hyphen_values = true)]
    pub padding: Option<String>,
    /// Dilation: one value for every axis, or one per axis.
    #[arg(long, value_name = "D", allow_hyphen_values = true)]
    pub dilation: Option<String>,
    /// Groups (in and out channels split into this many independent convolutions).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub groups: usize,
}

impl SpecArgs {
    /// The spec for a weight of this shape, with or without bias.
    pub fn spec(&self, weight_shape: &[usize], bias: bool) -> Result<ConvSpec> {
        let mut spec = ConvSpec::for_weight(weight_shape, self.groups, bias)?;
        let dims = spec.kind.spatial_dims();
        if let Some(s) = &self.stride {
            spec.stride = parse_list("--stride", s, dims)?;
        }
        if let Some(s) = &self.dilation {
            spec.dilation = parse_list("--dilation", s, dims)?;
        }
        if let Some(s) = &self.padding {
            spec.padding = parse_list("--padding", s, 2 * dims)?;
        }
        spec.validate()?;
        Ok(spec)
    }
}

/// Parses "3" (repeated `len` times) or "a,b,..." (exactly `len` values).
pub fn parse_list(flag: &str, text: &str, len: usize) -> Result<Vec<usize>> {
    let values: Vec<usize> = text
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .with_context(|| format!("{flag}: {v:?} is not a non-negative integer"))
        })
        .collect::<Result<_>>()?;
    match values.len() {
        1 => Ok(vec![values[0]; len]),
        n if n == len => Ok(values),
        n => bail!("{flag} takes 1 or {len} comma-separated values here, got {n} ({text:?})"),
    }
}

/// Set by the global `--no-tune` flag: contexts use the fixed kernel defaults.
static NO_TUNE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns tuning off for every context the CLI creates (`--no-tune`).
pub fn set_no_tune(off: bool) {
    NO_TUNE.store(off, std::sync::atomic::Ordering::Relaxed);
}

/// The tuning mode of the CLI's contexts: off with `--no-tune` or `MADDCONV_NO_TUNE=1`, else
/// the cache file of the adapter in `$MADDCONV_TUNE_CACHE` or the platform's cache directory.
pub fn tune_mode() -> maddconv::gpu::TuneMode {
    if NO_TUNE.load(std::sync::atomic::Ordering::Relaxed) {
        maddconv::gpu::TuneMode::Off
    } else {
        maddconv::gpu::TuneMode::from_env()
    }
}

/// The GPU context (tuning as [`tune_mode`] says), with a hint on failure.
pub fn gpu() -> Result<Context> {
    Context::new_blocking(ContextOptions {
        tune: tune_mode(),
        ..ContextOptions::default()
    })
    .context(
        "no usable GPU (on a machine without one, install Mesa's lavapipe Vulkan driver and \
         set WGPU_BACKEND=vulkan; or pass --cpu where the command has it)",
    )
}

/// Refuses an output with NaN or infinite values computed from finite inputs (an f32 overflow
/// of the sums): such a result is never written as if it were correct.
pub fn check_output_finite(y: &maddconv::Tensor, what: &str) -> Result<()> {
    let bad: Vec<usize> = y
        .data()
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_finite())
        .map(|(i, _)| i)
        .collect();
    if let Some(&first) = bad.first() {
        bail!(
            "{what} gave {} non-finite output value(s) from finite inputs (first: {} at flat \
             index {first} of {}): the sums overflow f32; scale the input or the weight down",
            bad.len(),
            y.data()[first],
            y.len()
        );
    }
    Ok(())
}

/// Checks an output path before any work is done: its directory exists and can be written, it
/// is not a directory, and it is none of the command's `inputs` (the same file, also through
/// symbolic or hard links), so a typo never costs a long run or replaces an input.
pub fn check_output_path(output: &std::path::Path, inputs: &[&std::path::Path]) -> Result<()> {
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !dir.is_dir() {
        bail!(
            "the output {}: its directory {} does not exist",
            output.display(),
            dir.display()
        );
    }
    if output.is_dir() {
        bail!("the output {} is a directory, not a file", output.display());
    }
    // Writable: a probe file that is removed at once (permission bits do not tell, e.g. on a
    // read-only mount or for root).
    let probe = dir.join(format!(".maddconv-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => bail!(
            "the output {}: its directory {} cannot be written ({e})",
            output.display(),
            dir.display()
        ),
    }
    if let Ok(out_meta) = std::fs::metadata(output) {
        for input in inputs {
            if same_file(&out_meta, output, input) {
                bail!(
                    "the output {} is the input {} (the same file); choose another output path",
                    output.display(),
                    input.display()
                );
            }
        }
    }
    Ok(())
}

/// Whether `a` (with metadata `a_meta`) and `b` name the same file.
#[cfg(unix)]
fn same_file(a_meta: &std::fs::Metadata, _a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(b).is_ok_and(|m| a_meta.dev() == m.dev() && a_meta.ino() == m.ino())
}

/// Whether `a` and `b` name the same file.
#[cfg(not(unix))]
fn same_file(_a_meta: &std::fs::Metadata, a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
