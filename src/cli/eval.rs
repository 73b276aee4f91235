//! `maddconv eval`: the error (NMSE, DESIGN.md §5) of a table file on an input, against the
//! exact convolution.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use maddconv::gpu::maddness::MaddnessConv;
use maddconv::gpu::GpuConv;
use maddconv::maddness::{mirror, nmse_after, Activation, HeldOut, Tables};
use maddconv::{ConvLayer, Tensor};

/// Arguments of `maddconv eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Table file made by `maddconv train`.
    #[arg(long)]
    pub tables: PathBuf,
    /// Input `.npy` (N×C×H×W or N×C×L); use inputs not seen in training.
    #[arg(long)]
    pub input: PathBuf,
    /// The exact output on `--input` (`.npy`). Without it the exact output is computed by the CPU
    /// reference from `--weight` (and the bias stored in the tables).
    #[arg(long)]
    pub expected: Option<PathBuf>,
    /// The layer's weight, to compute the exact output when `--expected` is not given.
    #[arg(long)]
    pub weight: Option<PathBuf>,
    /// Run the 8-bit layer through the CPU mirror instead of the GPU kernels.
    #[arg(long)]
    pub cpu: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also report the NMSE after this activation (applied to both outputs). Default: the
    /// activation the tables were trained for, if any (none, relu, leaky:ALPHA, clip:LO,HI,
    /// sigmoid, silu, hardsigmoid[:ALPHA,BETA], hardswish).
    #[arg(long)]
    pub activation: Option<Activation>,
}

/// Outputs of the approximate layer.
struct Approx {
    /// 8-bit tables.
    y8: Tensor,
    /// Float tables, when the file holds them.
    yf: Option<Tensor>,
    /// Where the 8-bit layer ran: "cpu" or "gpu: <adapter>".
    backend: String,
}

/// Runs the approximate layer: the 8-bit tables on the GPU kernels (or, with `cpu`, the CPU
/// mirror); the float tables, which have no GPU kernel, always through the mirror.
fn approximate(tables: &Tables, input: &Tensor, cpu: bool) -> Result<Approx> {
    let (y8, backend) = if cpu {
        (mirror::apply(tables, input)?, "cpu".to_string())
    } else {
        let ctx = super::gpu()?;
        let layer = MaddnessConv::new(&ctx, tables)?;
        let y = pollster::block_on(layer.run(&ctx, input))?;
        (
            y,
            format!(
                "gpu: {} ({} kernels)",
                ctx.summary(),
                layer.kernels().name()
            ),
        )
    };
    let yf = if tables.luts_f32.is_some() {
        Some(mirror::apply_f32(tables, input)?)
    } else {
        None
    };
    Ok(Approx { y8, yf, backend })
}

/// Loads the tables and the input, runs both layers, prints the errors.
pub fn run(args: EvalArgs) -> Result<()> {
    let tables = Tables::load(&args.tables)?;
    let spec = &tables.spec;
    let input = Tensor::read_npy(&args.input).context("reading the input")?;
    let out_shape = spec
        .output_shape(input.shape())
        .with_context(|| format!("input {}", args.input.display()))?;
    input.check_finite("input")?;
    let exact = match (&args.expected, &args.weight) {
        (Some(p), _) => {
            let e = Tensor::read_npy(p).context("reading the expected output")?;
            if e.shape() != out_shape.as_slice() {
                bail!(
                    "the expected output {} has shape {:?}, but the layer gives {:?} for this input",
                    p.display(),
                    e.shape(),
                    out_shape
                );
            }
            e
        }
        (None, Some(w)) => {
            let weight = Tensor::read_npy(w).context("reading the weight")?;
            let bias = tables
                .bias
                .as_ref()
                .map(|b| Tensor::new(vec![b.len()], b.clone()))
                .transpose()?;
            let layer = ConvLayer::new(spec.clone(), weight, bias)
                .with_context(|| format!("the weight {} for these tables", w.display()))?;
            layer
                .exact(&input)
                .context("exact convolution of the input")?
        }
        (None, None) => bail!(
            "give --expected y.npy (the exact output) or --weight w.npy (to compute it); the \
             table file does not hold the weight"
        ),
    };
    let t = Instant::now();
    let approx = approximate(&tables, &input, args.cpu)?;
    let seconds = t.elapsed().as_secs_f64();
    let heldout = HeldOut::measure(
        spec.kind,
        &approx.y8,
        approx.yf.as_ref(),
        &exact,
        &args.input.display().to_string(),
    )?;
    let (e8, ef) = (heldout.nmse, heldout.nmse_f32_tables);
    let act = args.activation.unwrap_or(tables.meta.activation);
    let after = (!act.is_identity())
        .then(|| nmse_after(spec.kind, act, &approx.y8, &exact))
        .transpose()?;
    let m = &tables.meta;
    if args.json {
        let v = serde_json::json!({
            "tables": args.tables.display().to_string(),
            "input": args.input.display().to_string(),
            "layer": spec,
            "codebooks": tables.codebooks,
            "lambda": m.lambda,
            "learner": m.learner,
            "windows_trained": m.windows_trained,
            "windows_available": m.windows_available,
            "seed": m.seed,
            "train_seconds": m.train_seconds,
            "sources": m.sources,
            "heldout_at_training": m.heldout,
            "nmse": e8,
            "one_minus_nmse": 1.0 - e8,
            "nmse_f32_tables": ef,
            "one_minus_nmse_f32_tables": ef.map(|v| 1.0 - v),
            "activation": act.to_string(),
            "trained_for_activation": tables.meta.activation.to_string(),
            "nmse_after_activation": after,
            "backend": approx.backend,
            "approx_seconds": seconds,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("layer:        {}", spec.describe());
        println!(
            "tables:       C = {}, λ = {}, {} windows trained in {:.2} s",
            tables.codebooks, m.lambda, m.windows_trained, m.train_seconds
        );
        if !m.learner.is_empty() {
            println!("learner:      {}", m.learner);
        }
        println!(
            "input:        {} {:?} -> {:?} ({}, {:.3} s)",
            args.input.display(),
            input.shape(),
            out_shape,
            approx.backend,
            seconds
        );
        println!("8-bit tables: NMSE {e8:.5}  1 − NMSE {:.5}", 1.0 - e8);
        match ef {
            Some(v) => println!("float tables: NMSE {v:.5}  1 − NMSE {:.5}", 1.0 - v),
            None => println!("float tables: not in the file"),
        }
        if let Some(v) = after {
            println!(
                "after {act}: NMSE {v:.5}  1 − NMSE {:.5} (8-bit tables; trained for {})",
                1.0 - v,
                tables.meta.activation
            );
        }
    }
    Ok(())
}
