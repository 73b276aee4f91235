//! `maddconv model`: whole ONNX models (run by tract) with chosen Conv nodes replaced by
//! MADDNESS tables, on the GPU (or the CPU mirror with `--cpu`): `inspect`, `calibrate`,
//! `eval`, `run`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use maddconv::model::{
    self, bundle::BundleSettings, Backend, Bundle, CalibrateConfig, Metric, Model, Replacements,
    Target, Task,
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
    Calibrate(Box<CalibrateArgs>),
    /// The model with a bundle's tables against the exact model: output errors, task metric.
    Eval(EvalArgs),
    /// Run the model (exactly, or with a bundle's tables) and write its outputs.
    Run(RunArgs),
    /// Write one conv layer as a single-node ONNX model, for other engines (onnxruntime, ONNX
    /// Runtime Web) to run the same layer.
    ExportConv(ExportConvArgs),
    /// Cut the model at chosen Conv nodes into ONNX segments for another engine (ONNX Runtime
    /// Web), with each cut conv's layer folder (and its tables, from a bundle) for our kernels:
    /// a folder with `split.json` saying in which order to run them.
    Split(SplitArgs),
}

/// Arguments of `maddconv model split`.
#[derive(Args, Debug)]
pub struct SplitArgs {
    #[command(flatten)]
    pub io: ModelInputs,
    /// Conv nodes to cut at, comma-separated (default: the nodes of --tables).
    #[arg(long, required_unless_present = "tables")]
    pub layers: Option<String>,
    /// Bundle made by `maddconv model calibrate` for this model: each cut conv's tables are
    /// written as `conv-K/tables.safetensors` (a table file).
    #[arg(long)]
    pub tables: Option<PathBuf>,
    /// Output folder (must not exist, or be empty; it is filled under another name and renamed
    /// when complete).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Arguments of `maddconv model export-conv`.
#[derive(Args, Debug)]
pub struct ExportConvArgs {
    /// A layer folder (layer.json, weight.npy, bias.npy), as in the project's data sets.
    #[arg(long, conflicts_with_all = ["weight", "bias"], required_unless_present = "weight")]
    pub layer: Option<PathBuf>,
    /// Weight `.npy` (instead of --layer): O×(C/groups)×KH×KW or O×(C/groups)×K.
    #[arg(long)]
    pub weight: Option<PathBuf>,
    /// Bias `.npy` of shape O (with --weight).
    #[arg(long, requires = "weight")]
    pub bias: Option<PathBuf>,
    #[command(flatten)]
    pub spec: super::SpecArgs,
    /// Output ONNX file (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// The model file and its inputs.
#[derive(Args, Debug)]
pub struct ModelInputs {
    /// The ONNX model file.
    pub model: PathBuf,
    /// An input as NAME=FILE.npy (repeat per input), or a bare FILE.npy for a single-input
    /// model. Rows of an input whose declared batch is 1 are run one at a time. Several files
    /// for one name: stacked on axis 0 when its declared batch is 1, else one run per file
    /// (inputs given once go to every run).
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
    /// Conv nodes to replace: "all" (every replaceable node), "auto" (greedy by MACs, each kept
    /// only while the whole model meets --target on the held-out part), or node names,
    /// comma-separated.
    #[arg(long)]
    pub layers: String,
    /// What --layers auto must keep, METRIC:VALUE: threshold:T:V (agreement of y > T and the
    /// IoU of its positives ≥ V),
    /// argmax[:AXIS]:V, yolox[:SCORE[:NMS]]:V (box recall and precision ≥ V) or nmse:V (every
    /// output's NMSE ≤ V).
    #[arg(long)]
    pub target: Option<String>,
    /// Task metric measured on the held-out part and stored in the bundle (default: the
    /// target's): threshold:T, argmax[:AXIS] or yolox[:SCORE[:NMS]].
    #[arg(long)]
    pub metric: Option<String>,
    /// The output the task metric reads (default: the model's first output).
    #[arg(long)]
    pub metric_output: Option<String>,
    /// Fraction of the calibration inputs held out of training to measure the whole model
    /// (the last runs, or the last rows of a single run's free first dimension); 0 trains on
    /// everything and measures nothing.
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    /// Train every layer on the exact model's inputs (default: sequential, each layer on the
    /// inputs it sees with the earlier chosen layers replaced).
    #[arg(long)]
    pub independent: bool,
    /// Sequential calibration: what each layer's tables are refit to (the trees are grown as
    /// usual on the inputs the layer sees). No effect with --independent.
    #[arg(long, value_enum, default_value_t = Targets::Exact)]
    pub targets: Targets,
    /// Weigh each calibration sample by the end task's sensitivity to the layer: train, put
    /// the tables in place, weigh each batch row by how near its decisions (--metric or
    /// --target: threshold or argmax; the output's first axis must be the layer's batch) come
    /// to flipping per unit of layer error, capped at 20× the mean, plus FLOOR (default 0.1
    /// when given without a value), and refit the tables with those weights.
    #[arg(long, value_name = "FLOOR", num_args = 0..=1, default_missing_value = "0.1")]
    pub sensitivity: Option<f32>,
    /// --layers auto: try at most this many candidates (the largest by MACs).
    #[arg(long)]
    pub max_candidates: Option<usize>,
    /// --layers auto on the GPU: drop a candidate whose look-up kernels are not at least this
    /// many times faster than the direct kernel on its input here (0: keep any speed).
    #[arg(long, default_value_t = 1.0)]
    pub min_speedup: f64,
    /// Run the replaced layers on the CPU mirror instead of the GPU (same tables; the GPU
    /// kernels compute the mirror's integer sums).
    #[arg(long)]
    pub cpu: bool,
    #[command(flatten)]
    pub learner: super::train::LearnerArgs,
    /// Output bundle (`.safetensors`, written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// What a sequentially calibrated layer's tables are refit to (`--targets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Targets {
    /// The exact model's output of the layer: the tables also undo what the earlier
    /// approximated layers got wrong (measured best, BENCHMARKS.md).
    Exact,
    /// The layer's own output on the inputs the earlier approximated layers give it.
    Own,
}

/// Arguments of `maddconv model eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub io: ModelInputs,
    /// Bundle made by `maddconv model calibrate` for this model.
    #[arg(long)]
    pub tables: PathBuf,
    /// Task metric: threshold:T (agreement of y > T and IoU of the positives), argmax[:AXIS]
    /// (top-1 agreement) or yolox[:SCORE[:NMS]] (detector boxes: recall and precision at IoU
    /// 0.5 against the exact model's).
    #[arg(long)]
    pub metric: Option<String>,
    /// The output the task metric reads (default: the model's first output).
    #[arg(long)]
    pub metric_output: Option<String>,
    /// Run the replaced layers on the CPU mirror instead of the GPU.
    #[arg(long)]
    pub cpu: bool,
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
    /// Run the replaced layers on the CPU mirror instead of the GPU.
    #[arg(long)]
    pub cpu: bool,
    /// Output: a `.npy` file for a single-output model, else a directory (created if missing)
    /// that receives
    /// `<output name>.npy` for every output (runs concatenated on axis 0).
    #[arg(short, long)]
    pub output: PathBuf,
}

impl ModelInputs {
    /// The input files named by `--input`.
    fn files(&self) -> Vec<PathBuf> {
        self.input
            .iter()
            .map(|s| PathBuf::from(s.split_once('=').map_or(s.as_str(), |(_, f)| f)))
            .collect()
    }
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
    io.files().iter().map(|p| file_name(p)).collect()
}

/// Runs a `maddconv model` subcommand.
pub fn run(args: ModelArgs) -> Result<()> {
    match args.command {
        ModelCommand::Inspect(a) => inspect(a),
        ModelCommand::Calibrate(a) => calibrate(*a),
        ModelCommand::Eval(a) => eval(a),
        ModelCommand::Run(a) => run_model(a),
        ModelCommand::ExportConv(a) => export_conv(a),
        ModelCommand::Split(a) => split(a),
    }
}

fn export_conv(a: ExportConvArgs) -> Result<()> {
    let (layer, name) = match (&a.layer, &a.weight) {
        (Some(dir), _) => {
            let d = maddconv::data::LayerDir::open(dir)?;
            (d.layer()?, d.name)
        }
        (None, Some(w)) => {
            let weight = Tensor::read_npy(w)?;
            let bias = a.bias.as_ref().map(Tensor::read_npy).transpose()?;
            let spec = a.spec.spec(weight.shape(), bias.is_some())?;
            (maddconv::ConvLayer::new(spec, weight, bias)?, file_name(w))
        }
        (None, None) => bail!("give --layer DIR or --weight FILE.npy"),
    };
    let bytes = model::export::conv_onnx(&layer, &name);
    maddconv::tensor::write_atomic(&a.output, |w| std::io::Write::write_all(w, &bytes))?;
    eprintln!(
        "wrote {} ({} bytes): {}; input {:?}, output {:?}",
        a.output.display(),
        bytes.len(),
        layer.spec().describe(),
        model::export::INPUT_NAME,
        model::export::OUTPUT_NAME
    );
    Ok(())
}

fn split(a: SplitArgs) -> Result<()> {
    use maddconv::model::split::Step;
    if a.output.exists()
        && std::fs::read_dir(&a.output)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} exists and is not an empty folder; remove it or choose another",
            a.output.display()
        );
    }
    let (m, _) = load(&a.io)?;
    let bundle = a.tables.as_ref().map(Bundle::load).transpose()?;
    if let Some(b) = &bundle {
        b.check_model(m.sha256())?;
    }
    let names: Vec<String> = match (&a.layers, &bundle) {
        (Some(l), _) => l.split(',').map(|s| s.trim().to_string()).collect(),
        (None, Some(b)) => b.layers.iter().map(|(n, _)| n.clone()).collect(),
        (None, None) => bail!("give --layers or --tables"),
    };
    if let Some(b) = &bundle {
        if let Some(n) = names.iter().find(|n| b.get(n).is_none()) {
            bail!(
                "the bundle has no tables for {n:?} (it holds {:?})",
                b.layers.iter().map(|(n, _)| n).collect::<Vec<_>>()
            );
        }
    }
    for n in &names {
        let c = m.conv(n)?;
        if let Some(why) = &c.unsupported {
            bail!("Conv node {n:?} cannot be cut for our kernels: {why}");
        }
    }
    let cut = m.split(&names)?;

    let parent = a
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile_dir(parent, &a.output)?;
    let result = (|| -> Result<serde_json::Value> {
        let mut steps = Vec::new();
        let mut convs = 0;
        for step in &cut.steps {
            match step {
                Step::Segment(s) => {
                    let file = format!("segment-{}.onnx", s.index);
                    std::fs::write(tmp.join(&file), &s.onnx)?;
                    steps.push(serde_json::json!({
                        "kind": "segment", "file": file, "inputs": s.inputs,
                        "outputs": s.outputs, "nodes": s.nodes,
                    }));
                }
                Step::Conv(c) => {
                    let folder = format!("conv-{convs}");
                    convs += 1;
                    let dir = tmp.join(&folder);
                    std::fs::create_dir(&dir)?;
                    let node = m.conv(&c.name)?;
                    let layer = node.layer.as_ref().context("no layer")?;
                    std::fs::write(
                        dir.join("layer.json"),
                        serde_json::to_string_pretty(layer.spec())?,
                    )?;
                    layer.weight().write_npy(dir.join("weight.npy"))?;
                    if let Some(b) = layer.bias() {
                        b.write_npy(dir.join("bias.npy"))?;
                    }
                    let tables = bundle.as_ref().and_then(|b| b.get(&c.name));
                    if let Some(t) = tables {
                        t.save(dir.join("tables.safetensors"))?;
                    }
                    steps.push(serde_json::json!({
                        "kind": "conv", "name": c.name, "input": c.input, "output": c.output,
                        "folder": folder, "hasBias": layer.bias().is_some(),
                        "tables": tables.map(|_| format!("{folder}/tables.safetensors")),
                        "activation": node.activation.to_string(), "macs": node.macs(),
                        "inputShape": node.input_shape, "outputShape": node.output_shape,
                    }));
                }
            }
        }
        let manifest = serde_json::json!({
            "model": file_name(&a.io.model),
            "sha256": m.sha256(),
            "inputs": cut.inputs,
            "outputs": cut.outputs,
            "loadedInputShapes": m.input_shapes(),
            "tables": a.tables.as_ref().map(|p| file_name(p)),
            "steps": steps,
        });
        std::fs::write(
            tmp.join("split.json"),
            serde_json::to_string_pretty(&manifest)?,
        )?;
        Ok(manifest)
    })();
    let _manifest = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if a.output.exists() {
        std::fs::remove_dir(&a.output)
            .with_context(|| format!("replacing the empty folder {}", a.output.display()))?;
    }
    if let Err(e) = std::fs::rename(&tmp, &a.output) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e).with_context(|| format!("renaming into {}", a.output.display()));
    }
    let segments = cut.segments().count();
    eprintln!(
        "wrote {}: {} segments and {} cut convs ({}), split.json gives the order",
        a.output.display(),
        segments,
        names.len(),
        if bundle.is_some() {
            "with tables"
        } else {
            "no tables"
        }
    );
    Ok(())
}

/// A new empty folder in `parent`, named after `target`, for output to be renamed into place.
fn tempfile_dir(parent: &Path, target: &Path) -> Result<PathBuf> {
    let stem = file_name(target);
    for i in 0..1000u32 {
        let p = parent.join(format!(".{stem}.partial-{}-{i}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", p.display())),
        }
    }
    bail!(
        "could not create a temporary folder in {}",
        parent.display()
    )
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

/// The GPU for replaced layers, or the CPU mirror with `--cpu`.
fn backend_context(cpu: bool) -> Result<Option<maddconv::gpu::Context>> {
    if cpu {
        Ok(None)
    } else {
        Ok(Some(super::gpu()?))
    }
}

fn backend(ctx: &Option<maddconv::gpu::Context>) -> Backend<'_> {
    match ctx {
        Some(c) => Backend::Gpu(c),
        None => Backend::Cpu,
    }
}

fn parse_metric(s: Option<&str>) -> Result<Option<Metric>> {
    s.map(|s| s.parse().with_context(|| format!("--metric {s}")))
        .transpose()
}

/// The index of `--metric-output NAME` (default 0, the first output).
fn output_index(m: &Model, name: Option<&str>) -> Result<usize> {
    match name {
        None => Ok(0),
        Some(n) => m
            .output_names()
            .iter()
            .position(|o| o == n)
            .with_context(|| {
                format!(
                    "--metric-output {n:?}: the model's outputs are {:?}",
                    m.output_names()
                )
            }),
    }
}

fn calibrate(a: CalibrateArgs) -> Result<()> {
    let mut read: Vec<&Path> = vec![a.io.model.as_path()];
    let files = a.io.files();
    read.extend(files.iter().map(PathBuf::as_path));
    super::check_output_path(&a.output, &read)?;
    let target: Option<Target> = a
        .target
        .as_deref()
        .map(|s| s.parse().with_context(|| format!("--target {s}")))
        .transpose()?;
    let metric = parse_metric(a.metric.as_deref())?;
    let auto = a.layers.trim() == "auto";
    if auto && target.is_none() {
        bail!("--layers auto needs --target METRIC:VALUE (e.g. threshold:0.5:0.99, yolox:0.98)");
    }
    if !auto && target.is_some() {
        bail!("--target is for --layers auto; with chosen layers use --metric to measure them");
    }
    if auto && a.holdout == 0.0 {
        bail!("--layers auto measures the model on held-out inputs: --holdout must be > 0");
    }
    let (m, runs) = load(&a.io)?;
    let out = output_index(&m, a.metric_output.as_deref())?;
    let target = target.map(|t| match t {
        Target::Agreement(task, v) => Target::Agreement(
            Task {
                output: out,
                ..task
            },
            v,
        ),
        t => t,
    });
    let task = metric
        .map(|metric| Task {
            metric,
            output: out,
        })
        .or(target.and_then(|t| t.task()));
    let split = if a.holdout == 0.0 {
        model::Split {
            train: runs.clone(),
            held: Vec::new(),
        }
    } else {
        model::holdout(&m, &runs, a.holdout).context("--holdout")?
    };
    let (train_runs, held) = (&split.train, &split.held);
    let ctx = backend_context(a.cpu)?;
    let train = a.learner.config();
    let graph_activations = matches!(
        a.learner.activation,
        None | Some(super::train::ActivationArg::Graph)
    );
    let learner = if graph_activations {
        format!(
            "{} activation=graph activation_steps={} activation_trees={}",
            train.describe(),
            train.activation_steps,
            train.activation_trees
        )
    } else {
        train.describe()
    };
    let sensitivity = match (a.sensitivity, task) {
        (None, _) => None,
        (Some(floor), Some(task)) => {
            if !(floor.is_finite() && floor >= 0.0) {
                bail!("--sensitivity {floor}: the floor must be finite and ≥ 0");
            }
            if let Metric::Yolox(_) = task.metric {
                bail!(
                    "--sensitivity needs a threshold or argmax metric (per-sample decisions); \
                     yolox boxes have no per-sample margin"
                );
            }
            Some(model::calibrate::Sensitivity { task, floor })
        }
        (Some(_), None) => bail!(
            "--sensitivity watches the end task's decisions: give --metric threshold:T or \
             argmax[:AXIS] (or --target)"
        ),
    };
    let learner = match sensitivity {
        Some(s) => format!("{learner} sensitivity={}:{}", s.task.metric, s.floor),
        None => learner,
    };
    let exact_targets = a.targets == Targets::Exact && !a.independent;
    let learner = if exact_targets {
        format!("{learner} targets=exact-model")
    } else {
        learner
    };
    let config = CalibrateConfig {
        train,
        independent: a.independent,
        graph_activations,
        sensitivity,
        exact_targets,
    };
    let replaceable: Vec<String> = m
        .convs()
        .iter()
        .filter(|c| c.unsupported.is_none())
        .map(|c| c.name.clone())
        .collect();
    let total_macs: u64 = m.convs().iter().map(|c| c.macs()).sum();
    eprintln!(
        "{}: {} run(s) for training, {} held out; replaced layers on {}",
        a.io.model.display(),
        train_runs.len(),
        held.len(),
        ctx.as_ref()
            .map(|c| c.adapter_info().name.clone())
            .unwrap_or_else(|| "the CPU mirror".into())
    );
    let t = std::time::Instant::now();
    let (trained, steps) = if auto {
        let target = target.expect("checked");
        let mut candidates = replaceable.clone();
        candidates.sort_by_key(|n| std::cmp::Reverse(m.conv(n).map(|c| c.macs()).unwrap_or(0)));
        if let Some(k) = a.max_candidates {
            candidates.truncate(k);
        }
        eprintln!(
            "auto: {} candidate(s) by MACs, target {target}",
            candidates.len()
        );
        let auto = model::AutoConfig {
            calibrate: config.clone(),
            target,
            min_speedup: (a.min_speedup > 0.0).then_some(a.min_speedup),
        };
        let result =
            model::calibrate_auto(&m, &split, &candidates, &auto, backend(&ctx), &mut |s| {
                eprintln!(
                    "  {:<24} {:>5.1}% of MACs  {}",
                    s.name,
                    100.0 * s.mac_share,
                    match &s.skipped {
                        Some(why) => format!("dropped: {why}"),
                        None => format!(
                            "{target} measured {:.4} -> {}",
                            s.measured,
                            if s.kept { "kept" } else { "dropped" }
                        ),
                    }
                )
            })?;
        (result.tables, Some(result.steps))
    } else {
        let layers: Vec<String> = if a.layers.trim() == "all" {
            replaceable.clone()
        } else {
            a.layers.split(',').map(|s| s.trim().to_string()).collect()
        };
        let trained = model::calibrate(
            &m,
            train_runs,
            &layers,
            &config,
            backend(&ctx),
            &mut |name| {
                let fit = config
                    .for_layer(&m, name)
                    .map(|t| t.activation)
                    .unwrap_or_default();
                if fit.is_identity() {
                    eprintln!("calibrating {name} ...")
                } else {
                    eprintln!("calibrating {name} (fit for the error after {fit}) ...")
                }
            },
        )?;
        (trained, None)
    };
    if trained.is_empty() {
        bail!(
            "no layer was kept: every candidate broke the target on the held-out inputs \
             (try more codebooks, a looser --target, or name the layers)"
        );
    }
    let replaced_macs: u64 = trained
        .iter()
        .filter_map(|(n, _)| m.conv(n).ok())
        .map(|c| c.macs())
        .sum();
    for (name, t) in &trained {
        eprintln!(
            "  {name}: C = {}, {} of {} windows, {:.2} s",
            t.codebooks, t.meta.windows_trained, t.meta.windows_available, t.meta.train_seconds
        );
    }
    eprintln!(
        "{} layer(s) replaced, {:.1}% of the conv MACs",
        trained.len(),
        100.0 * replaced_macs as f64 / total_macs.max(1) as f64
    );
    let held_report = if held.is_empty() {
        None
    } else {
        let reps = Replacements::with(backend(&ctx), &trained)?;
        let cmp = model::compare(&m, held, &reps, task)?;
        for l in output_lines(&cmp, "held-out") {
            eprintln!("{l}");
        }
        Some(serde_json::json!({
            "fraction": a.holdout,
            "runs": held.len(),
            "metric": task.map(|t| t.metric.to_string()),
            "metric_output": task.map(|t| m.output_names()[t.output].clone()),
            "outputs": cmp.outputs,
            "layers": cmp.layers.iter().map(|l| serde_json::json!({
                "name": l.name, "one_minus_nmse": l.one_minus_nmse})).collect::<Vec<_>>(),
        }))
    };
    // Each replaced layer's kernel speedup on this adapter, on its input of one held-out (or
    // calibration) run.
    let mut speed = Vec::new();
    if let Some(ctx) = &ctx {
        let run = held.first().unwrap_or(&train_runs[0]);
        let names: Vec<String> = trained.iter().map(|(n, _)| n.clone()).collect();
        let reps = Replacements::with(Backend::Gpu(ctx), &trained)?;
        let captured = m.run_with(run, &reps.map(), &names, false)?.conv_inputs;
        for (name, tables) in &trained {
            let layer = m.conv(name)?.layer.as_ref().context("replaceable")?;
            let (d, l) = model::calibrate::kernel_times(ctx, layer, tables, &captured[name])?;
            eprintln!(
                "  {name:<24} direct {d:8.3} ms  look-ups {l:8.3} ms  speedup {:.2}x ({})",
                d / l,
                ctx.adapter_info().name
            );
            speed.push(serde_json::json!({"name": name, "direct_ms": d, "lookup_ms": l}));
        }
    }
    let bundle = Bundle {
        model_sha256: m.sha256().to_string(),
        model_file: file_name(&a.io.model),
        layers: trained,
        settings: BundleSettings {
            sequential: !a.independent,
            codebooks: a.learner.codebooks,
            learner,
            sources: sources(&a.io),
            runs: train_runs.len(),
            layers: a.layers.trim().to_string(),
            target: target.map(|t| t.to_string()),
            held_out: held_report,
            auto_steps: steps.map(|s| serde_json::to_value(s).unwrap_or_default()),
            kernel_times: (!speed.is_empty()).then_some(serde_json::Value::Array(speed)),
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

/// The comparison's lines: per output the errors and task metric, per layer in place.
fn output_lines(cmp: &model::Comparison, what: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for o in &cmp.outputs {
        let task = match (&o.boxes, o.agreement, o.positives_iou) {
            (Some(b), _, _) => format!(
                "  boxes: {} exact, {} approx, {} matched: recall {:.2}%, precision {:.2}%",
                b.exact,
                b.approx,
                b.matched,
                100.0 * b.recall(),
                100.0 * b.precision()
            ),
            (None, Some((f, n)), iou) => format!(
                "  agreement {:.2}% of {n}{}",
                100.0 * f,
                iou.map(|v| format!(", positives IoU {v:.4}"))
                    .unwrap_or_default()
            ),
            _ => String::new(),
        };
        lines.push(format!(
            "{what} output {:<14} 1 - NMSE {:.5}  rel L2 {:.3e}  max |d| {:.3e}  mean |d| {:.3e}{task}",
            o.name, o.one_minus_nmse, o.relative_l2, o.max_abs, o.mean_abs
        ));
    }
    for l in &cmp.layers {
        let after = l
            .after_activation
            .map(|(act, v)| format!(", after {act} {:.4}", 1.0 - v))
            .unwrap_or_default();
        lines.push(format!(
            "{what} layer  {:<24} in place: 1 - NMSE {:.4}{after}",
            l.name, l.one_minus_nmse
        ));
    }
    lines
}

fn eval(a: EvalArgs) -> Result<()> {
    let (m, runs) = load(&a.io)?;
    let bundle = load_bundle(&a.tables, &m)?;
    let task = parse_metric(a.metric.as_deref())?
        .map(|metric| -> Result<Task> {
            Ok(Task {
                metric,
                output: output_index(&m, a.metric_output.as_deref())?,
            })
        })
        .transpose()?;
    let ctx = backend_context(a.cpu)?;
    let reps = Replacements::with(backend(&ctx), &bundle.layers)?;
    let cmp = model::compare(&m, &runs, &reps, task)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&cmp)?);
        return Ok(());
    }
    println!(
        "{} with {} replaced layer(s) from {} on {}, {} run(s)",
        a.io.model.display(),
        bundle.layers.len(),
        a.tables.display(),
        ctx.as_ref()
            .map(|c| c.adapter_info().name.clone())
            .unwrap_or_else(|| "the CPU mirror".into()),
        cmp.runs
    );
    for l in output_lines(&cmp, "") {
        println!("{}", l.trim_start());
    }
    println!(
        "time: exact model {:.1} ms; replaced model {:.1} ms (includes tract's exact conv at each \
         replaced node, {:.1} ms, run to measure the layers in place)",
        cmp.exact_ms,
        cmp.approx_ms,
        cmp.layers.iter().map(|l| l.timing.exact_ms).sum::<f64>()
    );
    println!(
        "{:<24} {:>6} {:>10} {:>10} {:>10} {:>11} {:>12}",
        "layer", "calls", "kernel ms", "compute ms", "cpu ms", "transfer ms", "tract conv ms"
    );
    for l in &cmp.layers {
        let t = &l.timing;
        println!(
            "{:<24} {:>6} {:>10} {:>10.2} {:>10.2} {:>11.2} {:>12.2}",
            l.name,
            t.calls,
            t.gpu
                .kernel_ms
                .map_or("-".to_string(), |k| format!("{k:.2}")),
            t.gpu.compute_ms,
            t.cpu_ms,
            t.transfer_ms(),
            t.exact_ms
        );
    }
    Ok(())
}

fn output_file_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.npy", clean.trim_start_matches('.'))
}

fn run_model(a: RunArgs) -> Result<()> {
    let (m, runs) = load(&a.io)?;
    let single = m.output_names().len() == 1 && a.output.extension().is_some_and(|e| e == "npy");
    let targets: Vec<PathBuf> = if single {
        vec![a.output.clone()]
    } else {
        if (a.output.exists() && !a.output.is_dir())
            || a.output.extension().is_some_and(|e| e == "npy")
        {
            bail!(
                "-o {}: the model has {} outputs {:?}; give a directory (each output is written \
                 as <name>.npy there)",
                a.output.display(),
                m.output_names().len(),
                m.output_names()
            );
        }
        m.output_names()
            .iter()
            .map(|n| a.output.join(output_file_name(n)))
            .collect()
    };
    let mut read: Vec<&Path> = vec![a.io.model.as_path()];
    read.extend(a.tables.as_deref());
    let files = a.io.files();
    read.extend(files.iter().map(PathBuf::as_path));
    if !single {
        std::fs::create_dir_all(&a.output)
            .with_context(|| format!("creating the output directory {}", a.output.display()))?;
    }
    for t in &targets {
        super::check_output_path(t, &read)?;
    }
    let bundle = a.tables.as_ref().map(|p| load_bundle(p, &m)).transpose()?;
    let ctx = if bundle.is_some() {
        backend_context(a.cpu)?
    } else {
        None
    };
    let reps = Replacements::with(
        backend(&ctx),
        bundle.as_ref().map_or(&[][..], |b| b.layers.as_slice()),
    )?;
    let replace = reps.map();
    let mut outs: Vec<Vec<Tensor>> = vec![Vec::new(); m.output_names().len()];
    for r in &runs {
        let run = m.run_with(r, &replace, &[], false)?;
        for (i, y) in run.outputs.into_iter().enumerate() {
            outs[i].push(y);
        }
    }
    let mut ys = Vec::new();
    for (parts, name) in outs.iter_mut().zip(m.output_names()) {
        let y = if parts.len() == 1 {
            parts.pop().expect("one")
        } else {
            Tensor::concat_batch(parts)
                .with_context(|| format!("output {name:?}: the runs' shapes differ"))?
        };
        super::check_output_finite(&y, &format!("the model's output {name:?}"))?;
        ys.push(y);
    }
    for ((y, path), name) in ys.iter().zip(&targets).zip(m.output_names()) {
        y.write_npy(path)?;
        eprintln!(
            "{name} {:?} ({} replaced layer(s), {} run(s)) written to {}",
            y.shape(),
            replace.len(),
            runs.len(),
            path.display()
        );
    }
    Ok(())
}
