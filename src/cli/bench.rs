//! `maddconv bench`: kernel timings on the same adapter, methods interleaved in one process.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use maddconv::bench::{time_interleaved, Record, Repetitions, Table};
use maddconv::data::LayerDir;
use maddconv::gpu::direct::{DirectConv, DirectKernel};
use maddconv::gpu::Context;
use maddconv::reference::{conv_reference, relative_l2};
use maddconv::{ConvSpec, Tensor};
use serde::Serialize;

/// Arguments of `maddconv bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Only the exact direct kernels (tiled, and the naive one for comparison).
    #[arg(long)]
    pub direct: bool,
    /// Small mode (for CI): the repository's fixture layers and one small CNN shape, few
    /// repetitions.
    #[arg(long)]
    pub small: bool,
    /// Benchmark this layer folder (layer.json + weight/bias/test .npy); repeatable. Replaces
    /// the default set.
    #[arg(long = "layer", value_name = "DIR")]
    pub layers: Vec<PathBuf>,
    /// The data folder whose layers/ make the default set.
    #[arg(long, default_value = "../shared/data", env = "MADDCONV_DATA")]
    pub data: PathBuf,
    /// Skip the batch-8 CNN shapes (64ch 56×56, 128ch 28×28, 256ch 14×14, 3×3 pad 1).
    #[arg(long)]
    pub no_cnn: bool,
    /// Timed repetitions per method (median reported).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Print one JSON array of rows instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One benchmark workload: a layer and an input.
pub struct Workload {
    pub name: String,
    pub spec: ConvSpec,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub input: Tensor,
}

/// One row of output.
#[derive(Serialize, Clone, Debug)]
pub struct Row {
    pub layer: String,
    pub shape: String,
    pub method: String,
    pub kernel_ms: f64,
    pub gflops: f64,
    pub speedup_vs_direct: f64,
    pub rel_l2_vs_f64: f64,
    pub clock: String,
    pub adapter: String,
}

/// The default workloads: real layers (their test inputs) and the batch-8 CNN shapes.
pub fn workloads(args: &BenchArgs) -> Result<Vec<Workload>> {
    let mut out = Vec::new();
    let dirs = if !args.layers.is_empty() {
        args.layers
            .iter()
            .map(LayerDir::open)
            .collect::<maddconv::Result<Vec<_>>>()?
    } else if !args.small && args.data.join("layers").is_dir() {
        LayerDir::list(args.data.join("layers"))?
    } else {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/layers");
        if !args.small {
            eprintln!(
                "note: {} not found; benchmarking the repository's small fixtures instead",
                args.data.join("layers").display()
            );
        }
        LayerDir::list(&fixtures).with_context(|| format!("fixtures in {}", fixtures.display()))?
    };
    for d in dirs {
        out.push(Workload {
            name: d.name.clone(),
            weight: d.weight()?,
            bias: d.bias()?,
            input: d.test()?,
            spec: d.spec.clone(),
        });
    }
    if args.layers.is_empty() && !args.no_cnn {
        let shapes: &[(usize, usize)] = if args.small {
            &[(16, 14)]
        } else {
            &[(64, 56), (128, 28), (256, 14)]
        };
        for &(c, hw) in shapes {
            out.push(cnn_workload(c, hw, 8));
        }
    }
    Ok(out)
}

/// A dense 3×3, padding 1 layer with `c` channels in and out on an `n×c×hw×hw` input, weights
/// and input drawn from a fixed seed (structured: smooth images plus noise, He-scaled weights).
pub fn cnn_workload(c: usize, hw: usize, n: usize) -> Workload {
    let mut spec = ConvSpec::conv2d(c, c, 3, 3);
    spec.padding = vec![1; 4];
    spec.bias = true;
    let mut rng = SplitMix(c as u64 * 1000 + hw as u64);
    let scale = (2.0 / (c * 9) as f64).sqrt() as f32;
    let weight: Vec<f32> = (0..c * c * 9).map(|_| rng.normal() * scale).collect();
    let bias: Vec<f32> = (0..c).map(|_| rng.normal() * 0.1).collect();
    let mut input = Vec::with_capacity(n * c * hw * hw);
    for _ in 0..n * c {
        let (fx, fy, ph) = (
            rng.uniform() * 0.5,
            rng.uniform() * 0.5,
            rng.uniform() * 6.0,
        );
        for y in 0..hw {
            for x in 0..hw {
                let smooth = ((x as f32 * fx + ph).sin() + (y as f32 * fy).cos()).max(0.0);
                input.push(smooth + 0.1 * rng.normal());
            }
        }
    }
    Workload {
        name: format!("cnn{c}x{hw}x{hw}_b{n}"),
        weight: Tensor::new(vec![c, c, 3, 3], weight).expect("shape"),
        bias: Some(Tensor::new(vec![c], bias).expect("shape")),
        input: Tensor::new(vec![n, c, hw, hw], input).expect("shape"),
        spec,
    }
}

/// A small seeded generator for the synthetic workloads.
pub struct SplitMix(pub u64);
impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

/// Runs the benchmark and prints the table (or JSON).
pub fn run(args: BenchArgs) -> Result<()> {
    let ctx = super::gpu()?;
    let reps = Repetitions {
        warmup: 3,
        timed: args.reps.unwrap_or(if args.small { 5 } else { 30 }),
    };
    let adapter = ctx.summary().to_string();
    eprintln!(
        "adapter: {adapter}; clock: {}; {} timed repetitions per method, interleaved",
        if ctx.has_timestamps() {
            "timestamp queries"
        } else {
            "wall time (no timestamp queries)"
        },
        reps.timed
    );
    let mut rows = Vec::new();
    for w in workloads(&args)? {
        eprintln!("{}: {} on {:?}", w.name, w.spec.describe(), w.input.shape());
        rows.extend(bench_direct(&ctx, &w, reps, &adapter)?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut t = Table::new(&[
        "layer",
        "input",
        "method",
        "kernel ms (median)",
        "GFLOP/s",
        "× vs direct",
        "rel L2 vs f64",
    ]);
    for r in &rows {
        t.row(vec![
            r.layer.clone(),
            r.shape.clone(),
            r.method.clone(),
            format!("{:.3}", r.kernel_ms),
            format!("{:.1}", r.gflops),
            format!("{:.2}", r.speedup_vs_direct),
            format!("{:.1e}", r.rel_l2_vs_f64),
        ]);
    }
    println!("{}", t.to_markdown());
    println!(
        "adapter: {adapter}; clock: {}",
        rows.first().map(|r| r.clock.as_str()).unwrap_or("-")
    );
    Ok(())
}

/// Tiled vs naive direct kernels on one workload, with their error against the f64 reference.
pub fn bench_direct(
    ctx: &Context,
    w: &Workload,
    reps: Repetitions,
    adapter: &str,
) -> Result<Vec<Row>> {
    let g = w.spec.geometry(w.input.shape())?;
    let exact = conv_reference(&w.spec, &w.input, &w.weight, w.bias.as_ref())?;
    let kernels = [DirectKernel::Tiled, DirectKernel::Naive];
    let layers: Vec<DirectConv> = kernels
        .iter()
        .map(|&k| DirectConv::with_kernel(ctx, &w.spec, &w.weight, w.bias.as_ref(), k))
        .collect::<maddconv::Result<_>>()?;
    let x = ctx.upload("bench input", &w.input)?;
    let out_shape = g.output_shape(w.spec.kind);
    let outputs = layers
        .iter()
        .map(|_| ctx.create_tensor("bench output", &out_shape))
        .collect::<maddconv::Result<Vec<_>>>()?;
    let mut errors = Vec::new();
    for (layer, y) in layers.iter().zip(&outputs) {
        ctx.fill(y, f32::NAN);
        let mut enc = ctx.encoder("bench check");
        layer.encode(ctx, &mut enc, &x, y, None)?;
        ctx.submit(enc);
        let got = pollster::block_on(ctx.download(y))?;
        errors.push(relative_l2(got.data(), exact.data()));
    }
    let mut records: Vec<Box<Record>> = layers
        .iter()
        .zip(&outputs)
        .map(|(layer, y)| {
            let x = &x;
            Box::new(
                move |enc: &mut wgpu::CommandEncoder,
                      timer: Option<&mut maddconv::gpu::GpuTimer>| {
                    layer.encode(ctx, enc, x, y, timer.and_then(|t| t.pass()))
                },
            ) as Box<Record>
        })
        .collect();
    let mut refs: Vec<&mut Record> = records.iter_mut().map(|b| b.as_mut()).collect();
    let timings = pollster::block_on(time_interleaved(ctx, &mut refs, &[1, 1], reps))?;
    let flops = 2.0 * g.macs() as f64;
    let direct_ms = timings[0].median_ms;
    Ok(kernels
        .iter()
        .zip(&timings)
        .zip(errors)
        .map(|((k, t), err)| Row {
            layer: w.name.clone(),
            shape: format!("{:?}", w.input.shape()),
            method: match k {
                DirectKernel::Tiled => "direct".into(),
                DirectKernel::Naive => "direct_naive".into(),
            },
            kernel_ms: t.median_ms,
            gflops: flops / (t.median_ms * 1e6),
            speedup_vs_direct: direct_ms / t.median_ms,
            rel_l2_vs_f64: err,
            clock: t.clock.to_string(),
            adapter: adapter.to_string(),
        })
        .collect())
}
