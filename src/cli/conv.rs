//! `maddconv conv`: exact convolution of `.npy` files on the GPU (or the CPU reference).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Args;
use maddconv::gpu::{exact_conv, ExactMethod};
use maddconv::{ConvLayer, Tensor};

/// Arguments of `maddconv conv`.
#[derive(Args, Debug)]
pub struct ConvArgs {
    /// Input `.npy`: N×C×H×W (conv2d) or N×C×L (conv1d), float32.
    #[arg(long)]
    pub input: PathBuf,
    /// Weight `.npy`: O×(C/groups)×KH×KW (conv2d) or O×(C/groups)×K (conv1d).
    #[arg(long)]
    pub weight: PathBuf,
    /// Bias `.npy` of shape O.
    #[arg(long)]
    pub bias: Option<PathBuf>,
    #[command(flatten)]
    pub spec: super::SpecArgs,
    /// Use the exact CPU reference (f64 accumulation) instead of the GPU.
    #[arg(long)]
    pub cpu: bool,
    /// The exact GPU method: `direct` (the direct kernel), `fft` (FFT overlap-save, conv1d
    /// only) or `auto` (FFT for a conv1d from the filter length where it was measured faster
    /// on this adapter, direct otherwise; the measurement, seconds, is stored per
    /// adapter in the cache directory's fft_crossover.json).
    #[arg(long, value_enum, default_value_t = ExactMethod::Direct)]
    pub method: ExactMethod,
    /// Output `.npy` (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Runs the convolution and writes the output.
pub fn run(args: ConvArgs) -> Result<()> {
    let mut inputs = vec![args.input.as_path(), args.weight.as_path()];
    inputs.extend(args.bias.as_deref());
    super::check_output_path(&args.output, &inputs)?;
    let input = Tensor::read_npy(&args.input)?;
    let weight = Tensor::read_npy(&args.weight)?;
    let bias = args.bias.as_ref().map(Tensor::read_npy).transpose()?;
    let spec = args.spec.spec(weight.shape(), bias.is_some())?;
    let layer = ConvLayer::new(spec, weight, bias)?;
    let spec = layer.spec();
    let out_shape = spec
        .output_shape(input.shape())
        .with_context(|| format!("input {}", args.input.display()))?;
    layer.check_input(&input, &format!("input {}", args.input.display()))?;
    let t = Instant::now();
    let mut used = "CPU reference".to_string();
    let y = if args.cpu {
        layer.exact(&input)?
    } else {
        let ctx = super::gpu()?;
        let gpu = exact_conv(&ctx, &layer, args.method)?;
        used = match gpu.name() {
            "fft" => "GPU fft".to_string(),
            k => format!("GPU direct ({k})"),
        };
        pollster::block_on(gpu.run(&ctx, &input))?
    };
    let secs = t.elapsed().as_secs_f64();
    super::check_output_finite(&y, "the convolution")?;
    y.write_npy(&args.output)?;
    eprintln!(
        "{} on {:?} -> {:?} ({}, {:.3} s) written to {}",
        spec.describe(),
        input.shape(),
        out_shape,
        used,
        secs,
        args.output.display()
    );
    Ok(())
}
