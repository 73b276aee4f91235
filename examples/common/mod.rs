//! Helpers shared by the examples: the GPU context, running the exact direct kernel and a
//! MADDNESS layer on the same input and timing them interleaved, argument parsing.
#![allow(dead_code)]

pub mod imageio;
pub mod wav;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{ensure, Context as _, Result};
use maddconv::bench::{time_interleaved, Method, Repetitions, Timing};
use maddconv::data::LayerDir;
use maddconv::gpu::direct::DirectConv;
use maddconv::gpu::maddness::MaddnessConv;
use maddconv::gpu::{Context, ContextOptions, GpuConv};
use maddconv::maddness::learn::{train_with_report, TrainConfig, TrainReport};
use maddconv::maddness::Tables;
use maddconv::{ConvSpec, Tensor};

/// The GPU context, with a hint when there is none.
pub fn gpu() -> Result<Context> {
    Context::new_blocking(ContextOptions::default()).context(
        "no usable GPU adapter (on a machine without a GPU, install Mesa's lavapipe Vulkan \
         driver and set WGPU_BACKEND=vulkan; see the README)",
    )
}

/// The adapter and the clock the timings use, for the examples' first lines.
pub fn describe_adapter(ctx: &Context) -> String {
    format!(
        "{}; kernel times from {}",
        ctx.summary(),
        if ctx.has_timestamps() {
            "GPU timestamp queries"
        } else {
            "submit + wait wall time (no timestamp queries)"
        }
    )
}

/// The exact layer and the MADDNESS layer applied on the GPU to one input, and their kernel
/// times measured interleaved in this process.
pub struct Compared {
    /// Output of the exact direct kernel.
    pub exact: Tensor,
    /// Output of the MADDNESS kernels (8-bit tables).
    pub approx: Tensor,
    /// Which direct kernel ran ("tiled", "subgroup", ...).
    pub direct_kernel: &'static str,
    /// Which MADDNESS look-up kernel ran ("one-position", "two-positions", "shuffle", "fused").
    pub maddness_kernels: &'static str,
    /// Direct kernel time.
    pub direct: Timing,
    /// MADDNESS time (all its passes).
    pub maddness: Timing,
}

/// Runs the exact direct kernel (the device's default one) and `tables` on `input` on the GPU,
/// reads both outputs back (outputs poisoned with NaN first), then times both methods
/// interleaved (`reps`), kernel time only (no upload or readback).
pub fn compare(
    ctx: &Context,
    spec: &ConvSpec,
    weight: &Tensor,
    bias: Option<&Tensor>,
    tables: &Tables,
    input: &Tensor,
    reps: Repetitions,
) -> Result<Compared> {
    let direct = DirectConv::new(
        ctx,
        &maddconv::ConvLayer::new(spec.clone(), weight.clone(), bias.cloned())?,
    )?;
    let madd = MaddnessConv::new(ctx, tables)?;
    let out_shape = spec.output_shape(input.shape())?;
    let x = ctx.upload("example input", input)?;
    let y_exact = ctx.create_tensor("exact output", &out_shape)?;
    let y_approx = ctx.create_tensor("approximate output", &out_shape)?;
    ctx.fill(&y_exact, f32::NAN);
    ctx.fill(&y_approx, f32::NAN);
    let mut enc = ctx.encoder("example check");
    direct.encode(ctx, &mut enc, &x, &y_exact, None)?;
    madd.encode(ctx, &mut enc, &x, &y_approx, None)?;
    ctx.submit(enc);
    let exact = pollster::block_on(ctx.download(&y_exact))?;
    let approx = pollster::block_on(ctx.download(&y_approx))?;
    ctx.check_errors()?;

    let methods = [
        Method {
            conv: &direct,
            input: &x,
            output: &y_exact,
        },
        Method {
            conv: &madd,
            input: &x,
            output: &y_approx,
        },
    ];
    let timings = pollster::block_on(time_interleaved(ctx, &methods, reps))?;
    let [direct_t, madd_t]: [Timing; 2] = timings
        .try_into()
        .map_err(|_| anyhow::anyhow!("the timing harness returned the wrong number of rows"))?;
    Ok(Compared {
        exact,
        approx,
        direct_kernel: direct.kernel().name(),
        maddness_kernels: madd.kernels().name(),
        direct: direct_t,
        maddness: madd_t,
    })
}

/// Parses `text` as the value of `flag`, with an error naming both.
pub fn parse<T: FromStr>(flag: &str, text: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    text.trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("{flag}: {text:?} is not valid here ({e})"))
}

/// Parses a comma-separated list for `flag`.
pub fn parse_list<T: FromStr>(flag: &str, text: &str) -> Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    text.split(',').map(|v| parse(flag, v)).collect()
}

/// The repository root (where `Cargo.toml` is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/data` beside the repository, or `MADDCONV_DATA` when set.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("MADDCONV_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"))
}

/// Creates the output folder, with a message naming it on failure.
pub fn make_out_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// `1 − NMSE` (DESIGN.md §5) of `approx` against `exact` over several outputs of different
/// sizes taken together (per-channel means over all of them): each tensor is `1×O×…`.
pub fn one_minus_nmse_over(pairs: &[(&Tensor, &Tensor)]) -> Result<f64> {
    let o = pairs
        .first()
        .map(|(_, e)| e.shape()[1])
        .context("no outputs to compare")?;
    let (mut a, mut e) = (vec![Vec::new(); o], vec![Vec::new(); o]);
    for (approx, exact) in pairs {
        anyhow::ensure!(
            exact.shape()[0] == 1 && exact.shape()[1] == o,
            "outputs of shape {:?} mixed with {o} channels",
            exact.shape()
        );
        let p = exact.len() / o;
        for m in 0..o {
            a[m].extend_from_slice(&approx.data()[m * p..(m + 1) * p]);
            e[m].extend_from_slice(&exact.data()[m * p..(m + 1) * p]);
        }
    }
    let p = e[0].len();
    let flat = |v: Vec<Vec<f32>>| Tensor::new(vec![1, o, p], v.concat());
    let nmse = maddconv::metrics::nmse(maddconv::ConvKind::Conv1d, &flat(a)?, &flat(e)?)?;
    Ok(1.0 - nmse)
}

/// Trains `codebooks` codebooks on at most `max_windows` windows of `train` for the layer
/// (`spec`, `weight`, `bias`): the tables, the report and the training time in seconds.
pub fn train_timed(
    spec: &ConvSpec,
    weight: &Tensor,
    bias: Option<&Tensor>,
    train: &[Tensor],
    codebooks: usize,
    max_windows: usize,
) -> Result<(Tables, TrainReport, f64)> {
    let config = TrainConfig {
        codebooks: Some(codebooks),
        max_windows: Some(max_windows),
        ..TrainConfig::default()
    };
    let t0 = Instant::now();
    let (tables, report) = train_with_report(
        &maddconv::ConvLayer::new(spec.clone(), weight.clone(), bias.cloned())?,
        train,
        &config,
        &mut |_| {},
    )?;
    Ok((tables, report, t0.elapsed().as_secs_f64()))
}

/// Writes `json` pretty-printed to `path` (atomically).
pub fn write_json(path: &Path, json: &serde_json::Value) -> Result<()> {
    maddconv::tensor::write_atomic(path, |w| {
        use std::io::Write;
        writeln!(w, "{}", serde_json::to_string_pretty(json)?)
    })?;
    Ok(())
}

/// The checks every example makes of `--max-windows` and `--reps`.
pub fn check_windows_and_reps(max_windows: usize, reps: usize) -> Result<()> {
    ensure!(max_windows >= 16, "--max-windows {max_windows} is below 16");
    ensure!(reps >= 1, "--reps must be at least 1");
    Ok(())
}

/// Prints `usage` and exits when `arg` asks for help.
pub fn exit_on_help(arg: &str, usage: &str) {
    if arg == "-h" || arg == "--help" {
        println!("{usage}");
        std::process::exit(0);
    }
}

/// The value after the flag `flag`, or an error naming the flag.
pub fn flag_value(
    args: &mut impl Iterator<Item = String>,
    flag: &str,
    usage: &str,
) -> Result<String> {
    args.next()
        .with_context(|| format!("{flag} needs a value\n{usage}"))
}

/// A `--codebooks` list (`8,16,32`); with `default_allowed`, `default` stands for 0.
pub fn parse_codebooks(text: &str, default_allowed: bool) -> Result<Vec<usize>> {
    text.split(',')
        .map(|v| match v {
            "default" if default_allowed => Ok(0),
            v => v.parse().with_context(|| format!("codebooks {v:?}")),
        })
        .collect()
}

/// The layer folders of `data/layers`, only those named in `only` when it is given.
pub fn chosen_layers(data: &Path, only: &Option<Vec<String>>) -> Result<Vec<LayerDir>> {
    let mut layers = LayerDir::list(data.join("layers"))?;
    if let Some(names) = only {
        layers.retain(|layer| names.contains(&layer.name));
    }
    Ok(layers)
}

/// `learn::train` on the layer (`spec`, `weight`, `bias`) with `config`, timed: the tables and
/// the training time in seconds.
pub fn train_secs(
    spec: &ConvSpec,
    weight: &Tensor,
    bias: Option<&Tensor>,
    train: &Tensor,
    config: &TrainConfig,
) -> Result<(Tables, f64)> {
    let t = Instant::now();
    let tables = maddconv::maddness::learn::train(
        &maddconv::ConvLayer::new(spec.clone(), weight.clone(), bias.cloned())?,
        std::slice::from_ref(train),
        config,
    )?;
    Ok((tables, t.elapsed().as_secs_f64()))
}

/// Tables per node name, as [`maddconv::model::calibrate`] returns them.
pub type NodeTables = Vec<(String, Tables)>;

/// Calibrates `names` of a whole model sequentially at `codebooks` (the default learner
/// otherwise), printing progress; returns the tables, the seconds it took and the replaced
/// layers' share of the model's conv MACs.
#[cfg(feature = "onnx")]
pub fn calibrate_model(
    m: &maddconv::model::Model,
    runs: &[Vec<Tensor>],
    names: &[String],
    codebooks: usize,
    backend: maddconv::model::Backend<'_>,
) -> Result<(NodeTables, f64, f64)> {
    use maddconv::model::CalibrateConfig;
    let config = CalibrateConfig {
        train: maddconv::maddness::TrainConfig {
            codebooks: Some(codebooks),
            ..Default::default()
        },
        independent: false,
        graph_activations: true,
        sensitivity: None,
        // As `maddconv model calibrate` by default (`--targets exact`).
        exact_targets: true,
    };
    let t = Instant::now();
    let tables = maddconv::model::calibrate(m, runs, names, &config, backend, &mut |n| {
        eprintln!("calibrating {n} ...")
    })?;
    let total: u64 = m.convs().iter().map(|c| c.macs()).sum();
    let replaced: u64 = names
        .iter()
        .map(|n| m.conv(n).map_or(0, |c| c.macs()))
        .sum();
    Ok((
        tables,
        t.elapsed().as_secs_f64(),
        replaced as f64 / total.max(1) as f64,
    ))
}
