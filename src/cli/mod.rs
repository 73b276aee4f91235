//! Subcommands of the `maddconv` binary.

pub mod bench;
pub mod conv;
pub mod eval;
pub mod info;
#[cfg(feature = "onnx")]
pub mod model;
pub mod report;
pub mod run;
pub mod train;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use maddconv::gpu::{Context, ContextOptions};
use maddconv::ConvSpec;

/// Convolution flags shared by the subcommands that build a layer from a weight file.
#[derive(Args, Clone, Debug, Default)]
pub struct SpecArgs {
    /// Stride: one value for every axis, or one per axis ("2" or "2,1").
    #[arg(long, value_name = "S")]
    pub stride: Option<String>,
    /// Zero padding: one value for every side, or per side in ONNX pads order
    /// (2-D "top,left,bottom,right", 1-D "left,right").
    #[arg(long, value_name = "P")]
    pub padding: Option<String>,
    /// Dilation: one value for every axis, or one per axis.
    #[arg(long, value_name = "D")]
    pub dilation: Option<String>,
    /// Groups (in and out channels split into this many independent convolutions).
    #[arg(long, default_value_t = 1)]
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

/// The GPU context, with a hint on failure.
pub fn gpu() -> Result<Context> {
    Context::new_blocking(ContextOptions::default()).context(
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
