//! `maddconv model`: whole ONNX models (run by tract) with chosen Conv nodes replaced by
//! MADDNESS tables through the CPU mirror: `inspect`, `calibrate`, `eval`, `run`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use maddconv::maddness::TrainConfig;
use maddconv::model::{
    self, bundle::BundleSettings, Bundle, CalibrateConfig, Metric, Model, Replace,
};
use maddconv::Tensor;

/// Arguments of `maddconv model`.
#[derive(Args, Debug)]
pub struct ModelArgs {
    #[command(subcommand)]
    pub command: ModelCommand,
}

/// Subcommands of `maddconv model`.
#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// List every Conv node: shape, window length D, MACs and share, the following op.
    Inspect(InspectArgs),
    /// Learn tables for chosen Conv nodes (sequentially by default) into one bundle file.
    Calibrate(CalibrateArgs),
    /// The model with a bundle's tables against the exact model: output errors, task metric.
    Eval(EvalArgs),
    /// Run the model (exactly, or with a bundle's tables) and write its first output.
    Run(RunArgs),
}

/// The model file and its inputs.
#[derive(Args, Debug)]
pub struct ModelInputs {
    /// The ONNX model file.
    pub model: PathBuf,
    /// An input as NAME=FILE.npy (repeat per input), or a bare FILE.npy for a single-input
    /// model. Rows of an input whose declared batch is 1 are run one at a time.
    #[arg(long, required = true)]
    pub input: Vec<String>,
}

/// Arguments of `maddconv model inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub io: ModelInputs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `maddconv model calibrate`.
#[derive(Args, Debug)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub io: ModelInputs,
    /// Conv node names, comma-separated, or "all" (every replaceable node).
    #[arg(long)]
    pub layers: String,
    /// Codebooks per group C (default: the learner's per layer).
    #[arg(long)]
    pub codebooks: Option<usize>,
    /// Train every layer on the exact model's inputs (default: sequential, each layer on the
    /// inputs it sees with the earlier chosen layers replaced).
    #[arg(long)]
    pub independent: bool,
    /// Tree learner: "output" (default) or "maddness".
    #[arg(long, default_value = "output")]
    pub learner: String,
    /// Output bundle (`.safetensors`, written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Arguments of `maddconv model eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub io: ModelInputs,
    /// Bundle made by `maddconv model calibrate` for this model.
    #[arg(long)]
    pub tables: PathBuf,
    /// Task metric: threshold:T (agreement of y > T) or argmax[:AXIS] (top-1 agreement).
    #[arg(long)]
    pub metric: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `maddconv model run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub io: ModelInputs,
    /// Bundle whose tables replace their Conv nodes (default: the exact model).
    #[arg(long)]
    pub tables: Option<PathBuf>,
    /// Output `.npy`: the model's first output, runs concatenated on axis 0.
    #[arg(short, long)]
    pub output: PathBuf,
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// Reads the inputs and loads the model for them.
fn load(io: &ModelInputs) -> Result<(Model, Vec<Vec<Tensor>>)> {
    let names = model::graph_inputs(&io.model)?;
    let mut named = Vec::new();
    for spec in &io.input {
        let (name, file) = match spec.split_once('=') {
            Some((n, f)) => (n.to_string(), f.to_string()),
            None if names.len() == 1 => (names[0].clone(), spec.clone()),
            None => bail!(
                "--input {spec}: the model has {} inputs {names:?}; give each as NAME=FILE.npy",
                names.len()
            ),
        };
        if !names.contains(&name) {
            bail!("--input {spec}: the model has no input {name:?}; its inputs are {names:?}");
        }
        let t = Tensor::read_npy(&file).with_context(|| format!("reading input {name:?}"))?;
        named.push((name, t));
    }
    Ok(model::load_for(&io.model, &named)?)
}

fn sources(io: &ModelInputs) -> Vec<String> {
    io.input
        .iter()
        .map(|s| file_name(Path::new(s.split_once('=').map_or(s.as_str(), |(_, f)| f))))
        .collect()
}

/// Runs a `maddconv model` subcommand.
pub fn run(args: ModelArgs) -> Result<()> {
    match args.command {
        ModelCommand::Inspect(a) => inspect(a),
        ModelCommand::Calibrate(a) => calibrate(a),
        ModelCommand::Eval(a) => eval(a),
        ModelCommand::Run(a) => run_model(a),
    }
}

fn inspect(a: InspectArgs) -> Result<()> {
    let (m, runs) = load(&a.io)?;
    let total: u64 = m.convs().iter().map(|c| c.macs()).sum();
    let rows: Vec<serde_json::Value> = m
        .convs()
        .iter()
        .map(|c| {
            let spec = c.layer.as_ref().map(|l| l.spec());
            serde_json::json!({
                "index": c.index,
                "name": c.name,
                "kind": spec.map(|s| s.kind.to_string()),
                "in_channels": spec.map(|s| s.in_channels),
                "out_channels": spec.map(|s| s.out_channels),
                "kernel": spec.map(|s| s.kernel.clone()),
                "stride": spec.map(|s| s.stride.clone()),
                "pads": spec.map(|s| s.padding.clone()),
                "dilation": spec.map(|s| s.dilation.clone()),
                "groups": spec.map(|s| s.groups),
                "D": spec.map(|s| s.in_channels / s.groups * s.kernel.iter().product::<usize>()),
                "M": spec.map(|s| s.out_channels / s.groups),
                "input_shape": c.input_shape,
                "output_shape": c.output_shape,
                "positions": c.output_shape.first().copied().unwrap_or(0)
                    * c.output_shape.iter().skip(2).product::<usize>(),
                "macs": c.macs(),
                "mac_share": if total > 0 { c.macs() as f64 / total as f64 } else { 0.0 },
                "next_op": c.next_op,
                "replaceable": c.unsupported.is_none(),
                "why_not": c.unsupported,
            })
        })
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "model": a.io.model.display().to_string(),
                "sha256": m.sha256(),
                "inputs": m.input_names(),
                "run_input_shapes": m.input_shapes(),
                "runs": runs.len(),
                "outputs": m.output_names(),
                "total_conv_macs_per_run": total,
                "convs": rows,
            }))?
        );
        return Ok(());
    }
    println!(
        "{}: {} Conv nodes, {:.3} GMAC per run, {} run(s); inputs {:?} {:?}; outputs {:?}",
        a.io.model.display(),
        rows.len(),
        total as f64 / 1e9,
        runs.len(),
        m.input_names(),
        m.input_shapes(),
        m.output_names()
    );
    println!(
        "{:>3} {:<22} {:<6} {:>5} {:>5} {:>7} {:>7} {:<12} {:>4} {:>3} {:>6} {:>9} {:>6} {:<22} ok",
        "#",
        "node",
        "kind",
        "C",
        "O",
        "kernel",
        "stride",
        "pads",
        "dil",
        "g",
        "D",
        "positions",
        "MAC%",
        "next op"
    );
    let list = |v: &serde_json::Value| -> String {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join("x")
            })
            .unwrap_or_else(|| "-".into())
    };
    for r in &rows {
        let pads = r["pads"]
            .as_array()
            .map(|a| {
                format!(
                    "[{}]",
                    a.iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            })
            .unwrap_or_else(|| "-".into());
        println!(
            "{:>3} {:<22} {:<6} {:>5} {:>5} {:>7} {:>7} {:<12} {:>4} {:>3} {:>6} {:>9} {:>5.1}% {:<22} {}",
            r["index"].to_string(),
            r["name"].as_str().unwrap_or(""),
            r["kind"].as_str().unwrap_or("-"),
            r["in_channels"].to_string(),
            r["out_channels"].to_string(),
            list(&r["kernel"]),
            list(&r["stride"]),
            pads,
            list(&r["dilation"]),
            r["groups"].to_string(),
            r["D"].to_string(),
            r["positions"].to_string(),
            100.0 * r["mac_share"].as_f64().unwrap_or(0.0),
            r["next_op"].as_str().unwrap_or(""),
            r["why_not"].as_str().map_or("yes".to_string(), |w| format!("no: {w}")),
        );
    }
    Ok(())
}

fn calibrate(a: CalibrateArgs) -> Result<()> {
    let (m, runs) = load(&a.io)?;
    let layers: Vec<String> = if a.layers.trim() == "all" {
        m.convs()
            .iter()
            .filter(|c| c.unsupported.is_none())
            .map(|c| c.name.clone())
            .collect()
    } else {
        a.layers.split(',').map(|s| s.trim().to_string()).collect()
    };
    let train = TrainConfig {
        codebooks: a.codebooks,
        learner: a
            .learner
            .parse()
            .with_context(|| format!("--learner {}", a.learner))?,
        ..TrainConfig::default()
    };
    let learner = train.describe();
    let config = CalibrateConfig {
        train,
        independent: a.independent,
    };
    let t = std::time::Instant::now();
    let trained = model::calibrate(&m, &runs, &layers, &config, &mut |name| {
        eprintln!("calibrating {name} ...")
    })?;
    for (name, t) in &trained {
        eprintln!(
            "  {name}: C = {}, {} of {} windows, {:.2} s",
            t.codebooks, t.meta.windows_trained, t.meta.windows_available, t.meta.train_seconds
        );
    }
    let bundle = Bundle {
        model_sha256: m.sha256().to_string(),
        model_file: file_name(&a.io.model),
        layers: trained,
        settings: BundleSettings {
            sequential: !a.independent,
            codebooks: a.codebooks,
            learner,
            sources: sources(&a.io),
            runs: runs.len(),
        },
    };
    bundle
        .save(&a.output)
        .with_context(|| format!("writing {}", a.output.display()))?;
    eprintln!(
        "{} layer(s) calibrated in {:.1} s; bundle written to {}",
        bundle.layers.len(),
        t.elapsed().as_secs_f64(),
        a.output.display()
    );
    Ok(())
}

fn load_bundle(path: &Path, m: &Model) -> Result<Bundle> {
    let b = Bundle::load(path)?;
    b.check_model(m.sha256())
        .with_context(|| format!("bundle {}", path.display()))?;
    for (name, _) in &b.layers {
        m.conv(name)
            .with_context(|| format!("bundle {}", path.display()))?;
    }
    Ok(b)
}

fn eval(a: EvalArgs) -> Result<()> {
    let (m, runs) = load(&a.io)?;
    let bundle = load_bundle(&a.tables, &m)?;
    let metric: Option<Metric> = a
        .metric
        .as_deref()
        .map(|s| s.parse().with_context(|| format!("--metric {s}")))
        .transpose()?;
    let cmp = model::compare(&m, &runs, &bundle.layers, metric)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&cmp)?);
        return Ok(());
    }
    println!(
        "{} with {} replaced layer(s) from {}, {} run(s)",
        a.io.model.display(),
        bundle.layers.len(),
        a.tables.display(),
        cmp.runs
    );
    for o in &cmp.outputs {
        println!(
            "output {:<16} NMSE {:.3e}  1 - NMSE {:.5}  rel L2 {:.3e}  max abs {:.3e}{}",
            o.name,
            o.nmse,
            o.one_minus_nmse,
            o.relative_l2,
            o.max_abs,
            o.agreement
                .map(|(f, n)| format!("  agreement {:.2}% of {n}", 100.0 * f))
                .unwrap_or_default()
        );
    }
    for l in &cmp.layers {
        println!(
            "layer  {:<24} in place: NMSE {:.4}  1 - NMSE {:.4}",
            l.name, l.nmse, l.one_minus_nmse
        );
    }
    Ok(())
}

fn run_model(a: RunArgs) -> Result<()> {
    let (m, runs) = load(&a.io)?;
    let bundle = a.tables.as_ref().map(|p| load_bundle(p, &m)).transpose()?;
    let replace: std::collections::BTreeMap<String, Replace<'_>> = bundle
        .iter()
        .flat_map(|b| {
            b.layers
                .iter()
                .map(|(n, t)| (n.clone(), Replace::Tables(t)))
        })
        .collect();
    let mut first = Vec::new();
    for r in &runs {
        let out = m.run_with(r, &replace, &[])?;
        first.push(
            out.outputs
                .into_iter()
                .next()
                .context("the model has no output")?,
        );
    }
    let y = if first.len() == 1 {
        first.pop().expect("one")
    } else {
        Tensor::concat_batch(&first)?
    };
    super::check_output_finite(&y, "the model")?;
    y.write_npy(&a.output)?;
    eprintln!(
        "{} {:?} ({} replaced layer(s), {} run(s)) written to {}",
        m.output_names()
            .first()
            .map(String::as_str)
            .unwrap_or("output"),
        y.shape(),
        replace.len(),
        runs.len(),
        a.output.display()
    );
    Ok(())
}
