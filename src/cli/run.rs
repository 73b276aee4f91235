//! `maddconv run`: apply a trained layer (a table file) to an input on the GPU, or with `--cpu`
//! through the CPU mirror.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Args;
use maddconv::gpu::maddness::MaddnessConv;
use maddconv::gpu::GpuConv;
use maddconv::maddness::{mirror, Tables};
use maddconv::Tensor;

/// Arguments of `maddconv run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Table file made by `maddconv train` (it holds the conv spec: no spec flags needed).
    #[arg(long)]
    pub tables: PathBuf,
    /// Input `.npy`: N×C×H×W (conv2d) or N×C×L (conv1d), float32.
    #[arg(long)]
    pub input: PathBuf,
    /// Use the CPU mirror of the kernels instead of the GPU.
    #[arg(long)]
    pub cpu: bool,
    /// Output `.npy` (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Applies the approximate layer and writes its output.
pub fn run(args: RunArgs) -> Result<()> {
    super::check_output_path(&args.output, &[&args.tables, &args.input])?;
    let tables = Tables::load(&args.tables)?;
    let input = Tensor::read_npy(&args.input).context("reading the input")?;
    let out_shape = tables
        .spec
        .output_shape(input.shape())
        .with_context(|| format!("input {}", args.input.display()))?;
    input.check_finite("input")?;
    let t = Instant::now();
    let (y, backend) = if args.cpu {
        (mirror::apply(&tables, &input)?, "CPU mirror".to_string())
    } else {
        let ctx = super::gpu()?;
        let layer = MaddnessConv::new(&ctx, &tables)?;
        let y = pollster::block_on(layer.run(&ctx, &input))?;
        (y, format!("GPU, {}", ctx.summary()))
    };
    let secs = t.elapsed().as_secs_f64();
    super::check_output_finite(&y, "the approximate layer")?;
    y.write_npy(&args.output)?;
    eprintln!(
        "{} with {} codebooks on {:?} -> {:?} ({backend}, {secs:.3} s) written to {}",
        tables.spec.describe(),
        tables.codebooks,
        input.shape(),
        out_shape,
        args.output.display()
    );
    Ok(())
}
