//! Whole ONNX models: loaded and run by [tract](https://github.com/sonos/tract) (`tract-onnx`,
//! pure Rust), with chosen Conv nodes captured or replaced by MADDNESS tables run through the CPU
//! mirror ([`mirror::apply`](crate::maddness::mirror::apply)). No ONNX interpreter of our own:
//! every op that is not replaced runs on tract (DESIGN.md §7).
//!
//! # Data layout
//!
//! * Model inputs and outputs are f32 [`Tensor`]s in C order, in the shapes of the ONNX graph
//!   (e.g. silero VAD `input` `[T, 576]`, `h`/`c` `[1, 1, 128]`; a detector's `images`
//!   `N×3×H×W`).
//! * A Conv node's input is `N×C×H×W` (2-D) or `N×C×L` (1-D), its output `N×O×OH×OW` or
//!   `N×O×OL`; its weight `O×(C/group)×KH×KW` or `O×(C/group)×K` ([`ConvLayer`]). Pads are in
//!   ONNX order ([`ConvSpec::padding`](crate::ConvSpec)).
//!
//! # How a run is hooked
//!
//! The model is translated to tract's typed graph without optimisation, so every ONNX Conv stays
//! one node that keeps its name. [`Model::run_with`] runs tract's plan with an evaluation hook:
//! at a captured Conv the hook copies the node's data input; at a replaced Conv it also evaluates
//! the exact conv (to measure the layer's error in place) and hands the downstream nodes the
//! approximate output instead.
//!
//! # Modules
//!
//! * [`boxes`] — YOLOX box decoding and box matching (the crate's [`crate::boxes`], re-exported).
//! * [`bundle`] — the `.safetensors` bundle of every replaced layer's tables.
//! * [`calibrate`](mod@calibrate) — sequential (or independent) calibration and the end-task
//!   comparison of a replaced model against the exact one.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use tract_onnx::pb;
use tract_onnx::prelude::{
    Framework, InferenceFact, InferenceModel, InferenceModelExt, TValue, TVec, TypedModel,
    TypedSimplePlan, TypedSimpleState,
};
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_hir::internal::Datum;

use crate::error::{Error, Result};
use crate::gpu::{Context, GpuConv, MaddnessConv, RunTiming};
use crate::layer::ConvLayer;
use crate::maddness::{mirror, Activation, Tables};
use crate::spec::{ConvKind, ConvSpec};
use crate::tensor::Tensor;

pub use crate::boxes;
pub mod bundle;
pub mod calibrate;
pub mod export;
pub mod split;

pub use bundle::Bundle;
pub use calibrate::{
    calibrate, calibrate_auto, compare, holdout, AutoConfig, Backend, CalibrateConfig, Comparison,
    Metric, Replacements, Split, Target, Task,
};

/// One ONNX Conv node of a loaded model, in graph order.
#[derive(Clone, Debug)]
pub struct ConvNode {
    /// The ONNX node name (the key of the node everywhere: bundles, `--layers`).
    pub name: String,
    /// Position among the model's Conv nodes (graph order).
    pub index: usize,
    /// The conv as a checked layer (spec, weight, bias), when it is a conv1d or conv2d with
    /// constant f32 weights and explicit pads; `None` with the reason in
    /// [`unsupported`](Self::unsupported) otherwise.
    pub layer: Option<ConvLayer>,
    /// Why this node cannot be replaced (`None`: it can).
    pub unsupported: Option<String>,
    /// The node's data input shape for the inputs the model was loaded with.
    pub input_shape: Vec<usize>,
    /// The node's output shape.
    pub output_shape: Vec<usize>,
    /// The op(s) reading this conv's output: "Relu", "Sigmoid", "SiLU (Sigmoid, Mul)", several
    /// joined by " + ", or "(model output)".
    pub next_op: String,
    /// The elementwise activation the graph applies to this conv's output (the identity when
    /// several nodes read it or it is not one [`Activation`] knows): what
    /// [`calibrate`] fits the tables for when asked to follow the graph.
    pub activation: Activation,
}

impl ConvNode {
    /// Multiply-adds of one run: output elements × window length `(C/group)·Π kernel`.
    pub fn macs(&self) -> u64 {
        let Some(layer) = &self.layer else { return 0 };
        let s = layer.spec();
        let window = (s.in_channels / s.groups) as u64 * s.kernel.iter().product::<usize>() as u64;
        self.output_shape.iter().product::<usize>() as u64 * window
    }
}

/// A loaded ONNX model, ready to run on inputs of any shape its graph allows.
///
/// tract plans a model for fixed input shapes; a plan is made for the shapes the model was
/// loaded with, and another, kept for later runs, the first time a run has other shapes (e.g.
/// a held-out part of silero VAD's frames). The Conv list ([`Self::convs`]) describes the
/// loaded shapes.
pub struct Model {
    sha256: String,
    proto: pb::ModelProto,
    input_names: Vec<String>,
    input_shapes: Vec<Vec<usize>>,
    declared_inputs: Vec<Vec<Option<usize>>>,
    output_names: Vec<String>,
    convs: Vec<ConvNode>,
    plans: PlanCache,
}

/// Plans by input shapes.
type PlanCache = Mutex<Vec<(Vec<Vec<usize>>, Arc<Plan>)>>;

/// tract's plan for one set of input shapes, and where each Conv node is in it.
struct Plan {
    plan: Arc<TypedSimplePlan>,
    /// Conv node name → node id in the typed graph (only nodes tract kept as one Conv).
    conv_ids: HashMap<String, usize>,
}

/// Plans kept per model (distinct input shapes); the oldest is dropped beyond this.
const MAX_PLANS: usize = 8;

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("sha256", &self.sha256)
            .field("inputs", &self.input_names)
            .field("input_shapes", &self.input_shapes)
            .field("outputs", &self.output_names)
            .field("convs", &self.convs.len())
            .finish()
    }
}

/// What to do at a Conv node in [`Model::run_with`].
#[derive(Clone, Copy)]
pub enum Replace<'a> {
    /// Run the 8-bit tables through the CPU mirror.
    Tables(&'a Tables),
    /// Run the tables on the GPU with the project's look-up kernels (bit-identical to the
    /// mirror up to f32 summation order, see DESIGN.md).
    Gpu(&'a Context, &'a MaddnessConv),
    /// Run the f64 CPU reference ([`ConvLayer::exact`]) of the node's layer: the model's output
    /// must then equal the exact run (a check of the hook and of the extracted layer).
    Reference,
}

impl std::fmt::Debug for Replace<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replace::Tables(t) => write!(f, "Tables(C = {})", t.codebooks),
            Replace::Gpu(_, c) => write!(f, "Gpu({})", c.name()),
            Replace::Reference => write!(f, "Reference"),
        }
    }
}

impl Replace<'_> {
    fn tables(&self) -> Option<&Tables> {
        match self {
            Replace::Tables(t) => Some(t),
            Replace::Gpu(_, c) => Some(c.tables()),
            Replace::Reference => None,
        }
    }
}

/// Where a replaced layer's time went over the runs of [`Model::run_with`], in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LayerTiming {
    /// Calls of the layer.
    pub calls: usize,
    /// Converting the layer's input from tract's tensor and its output back (host copies).
    pub convert_ms: f64,
    /// The CPU mirror or reference (0 on the GPU).
    pub cpu_ms: f64,
    /// On the GPU: upload, compute and read-back ([`RunTiming`]; zero on the CPU).
    pub gpu: RunTiming,
    /// tract's exact conv of the node, when it was evaluated (to measure the layer in place).
    pub exact_ms: f64,
}

impl LayerTiming {
    /// Adds another run's times.
    pub fn add(&mut self, o: &LayerTiming) {
        self.calls += o.calls;
        self.convert_ms += o.convert_ms;
        self.cpu_ms += o.cpu_ms;
        self.gpu.add(&o.gpu);
        self.exact_ms += o.exact_ms;
    }

    /// Time spent moving the layer's tensors between tract and our kernels (conversions,
    /// upload and read-back), apart from the compute.
    pub fn transfer_ms(&self) -> f64 {
        self.convert_ms + self.gpu.transfer_ms()
    }
}

/// The result of [`Model::run_with`].
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// The model's outputs, in graph order.
    pub outputs: Vec<Tensor>,
    /// Captured data inputs of the Conv nodes asked for (and of every replaced one), by name.
    pub conv_inputs: BTreeMap<String, Tensor>,
    /// For every replaced node when the run measured in place: (exact conv output on the input
    /// it saw, approximate output).
    pub replaced: BTreeMap<String, (Tensor, Tensor)>,
    /// Per replaced node: where its time went.
    pub timing: BTreeMap<String, LayerTiming>,
    /// Wall time of the whole run, milliseconds.
    pub total_ms: f64,
}

fn tract_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    // `{:#}`: tract's (anyhow) chain of causes on one line, without a backtrace.
    Error::Model(format!("{what}: {e:#}"))
}

/// Hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn to_tvalue(t: &Tensor) -> Result<TValue> {
    let tt = tract_onnx::prelude::Tensor::from_shape(t.shape(), t.data())
        .map_err(|e| tract_err("converting an input", e))?;
    Ok(tt.into())
}

fn from_tvalue(v: &TValue, what: &str) -> Result<Tensor> {
    let t = v
        .cast_to::<f32>()
        .map_err(|e| tract_err(format!("{what} is not f32"), e))?;
    let view = t
        .to_plain_array_view::<f32>()
        .map_err(|e| tract_err(what, e))?;
    Tensor::new(view.shape().to_vec(), view.iter().copied().collect())
}

fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn ints(node: &pb::NodeProto, name: &str) -> Option<Vec<usize>> {
    attr(node, name).map(|a| a.ints.iter().map(|&v| v.max(0) as usize).collect())
}

/// The declared shape of a graph input: `Some(n)` for a fixed dimension, `None` for a symbol.
fn declared_shape(v: &pb::ValueInfoProto) -> Vec<Option<usize>> {
    use pb::tensor_shape_proto::dimension::Value;
    let Some(pb::type_proto::Value::TensorType(t)) =
        v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return vec![];
    };
    t.shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(Value::DimValue(n)) if n > 0 => Some(n as usize),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A scalar f32 constant of the graph (an initializer or a `Constant` node's output).
fn scalar_f32(graph: &pb::GraphProto, name: &str) -> Option<f32> {
    let from = |t: &pb::TensorProto| -> Option<f32> {
        if let Some(&v) = t.float_data.first() {
            return Some(v);
        }
        let b: [u8; 4] = t.raw_data.get(..4)?.try_into().ok()?;
        (t.data_type == pb::tensor_proto::DataType::Float as i32).then(|| f32::from_le_bytes(b))
    };
    if let Some(t) = graph.initializer.iter().find(|t| t.name == name) {
        return from(t);
    }
    let node = graph
        .node
        .iter()
        .find(|n| n.op_type == "Constant" && n.output.iter().any(|o| o == name))?;
    from(attr(node, "value")?.t.as_ref()?)
}

/// The activation the graph applies to `output` when one node reads it and is an elementwise
/// activation of [`Activation::from_onnx`], or a SiLU (`Sigmoid` and a `Mul` by it); the
/// identity otherwise (several readers, an output of the model, any other op).
fn following_activation(graph: &pb::GraphProto, output: &str) -> Activation {
    let readers: Vec<&pb::NodeProto> = graph
        .node
        .iter()
        .filter(|n| n.input.iter().any(|i| i == output))
        .collect();
    if graph.output.iter().any(|o| o.name == output) {
        return Activation::Identity;
    }
    match readers.as_slice() {
        [n] => {
            let float = |name: &str| attr(n, name).map(|a| a.f);
            let clip = match (n.input.get(1), n.input.get(2)) {
                (Some(lo), Some(hi)) if !lo.is_empty() && !hi.is_empty() => {
                    scalar_f32(graph, lo).zip(scalar_f32(graph, hi))
                }
                _ => None,
            };
            Activation::from_onnx(&n.op_type, &float, clip).unwrap_or_default()
        }
        [a, b] => {
            let silu = |sig: &pb::NodeProto, mul: &pb::NodeProto| {
                sig.op_type == "Sigmoid"
                    && mul.op_type == "Mul"
                    && sig.output.iter().any(|so| mul.input.contains(so))
            };
            if silu(a, b) || silu(b, a) {
                Activation::Silu
            } else {
                Activation::Identity
            }
        }
        _ => Activation::Identity,
    }
}

/// What reads `output` in the ONNX graph.
fn following_op(graph: &pb::GraphProto, output: &str) -> String {
    let readers: Vec<&pb::NodeProto> = graph
        .node
        .iter()
        .filter(|n| n.input.iter().any(|i| i == output))
        .collect();
    let is_output = graph.output.iter().any(|o| o.name == output);
    let mut ops: Vec<String> = readers.iter().map(|n| n.op_type.clone()).collect();
    // x · sigmoid(x): a Sigmoid of the conv output whose result a Mul multiplies by it.
    if let Some(sig) = readers.iter().find(|n| n.op_type == "Sigmoid") {
        let silu = readers.iter().any(|m| {
            m.op_type == "Mul"
                && m.input.iter().any(|i| i == output)
                && sig.output.iter().any(|so| m.input.contains(so))
        });
        if silu && readers.len() == 2 {
            ops = vec!["SiLU (Sigmoid, Mul)".into()];
        }
    }
    if is_output {
        ops.push("(model output)".into());
    }
    if ops.is_empty() {
        "(none)".into()
    } else {
        ops.join(" + ")
    }
}

/// The spec of an ONNX Conv node for its weight shape, or why it is not supported.
fn conv_spec(
    node: &pb::NodeProto,
    weight_shape: &[usize],
    bias: bool,
) -> std::result::Result<ConvSpec, String> {
    let kind = match weight_shape.len() {
        3 => ConvKind::Conv1d,
        4 => ConvKind::Conv2d,
        r => {
            return Err(format!(
                "a {}-d convolution (weight rank {r})",
                r.saturating_sub(2)
            ))
        }
    };
    if let Some(a) = attr(node, "auto_pad") {
        let s = String::from_utf8_lossy(&a.s);
        if !(s.is_empty() || s == "NOTSET") {
            return Err(format!("auto_pad {s} (only explicit pads are supported)"));
        }
    }
    let dims = kind.spatial_dims();
    let group = attr(node, "group")
        .map(|a| a.i.max(1) as usize)
        .unwrap_or(1);
    let kernel = weight_shape[2..].to_vec();
    if let Some(k) = ints(node, "kernel_shape") {
        if k != kernel {
            return Err(format!(
                "kernel_shape {k:?} differs from the weight's {kernel:?}"
            ));
        }
    }
    let spec = ConvSpec {
        kind,
        in_channels: weight_shape[1] * group,
        out_channels: weight_shape[0],
        kernel,
        stride: ints(node, "strides").unwrap_or_else(|| vec![1; dims]),
        padding: ints(node, "pads").unwrap_or_else(|| vec![0; 2 * dims]),
        dilation: ints(node, "dilations").unwrap_or_else(|| vec![1; dims]),
        groups: group,
        bias,
    };
    spec.validate().map_err(|e| e.to_string())?;
    Ok(spec)
}

fn konst(model: &InferenceModel, outlet: tract_onnx::prelude::OutletId) -> Option<Tensor> {
    let fact = model.outlet_fact(outlet).ok()?;
    let value = fact.value.concretize()?;
    let t = value.cast_to::<f32>().ok()?;
    let view = t.to_plain_array_view::<f32>().ok()?;
    Tensor::new(view.shape().to_vec(), view.iter().copied().collect()).ok()
}

fn fact_shape(model: &InferenceModel, outlet: tract_onnx::prelude::OutletId) -> Vec<usize> {
    model
        .outlet_fact(outlet)
        .ok()
        .and_then(|f| f.shape.as_concrete_finite().ok().flatten())
        .map(|s| s.to_vec())
        .unwrap_or_default()
}

/// Fails unless `shape` fits the ONNX declaration `decl` of input `name` (same rank, fixed
/// dimensions equal; an empty declaration accepts any shape).
fn check_declared(name: &str, decl: &[Option<usize>], shape: &[usize]) -> Result<()> {
    let fits = decl.is_empty()
        || (decl.len() == shape.len()
            && decl
                .iter()
                .zip(shape)
                .all(|(d, &s)| d.is_none_or(|d| d == s)));
    if fits {
        return Ok(());
    }
    let shown: Vec<String> = decl
        .iter()
        .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
        .collect();
    Err(Error::Model(format!(
        "input {name:?} has shape {shape:?}; the model declares [{}]",
        shown.join(", ")
    )))
}

/// tract's inference model of `proto` with its inputs fixed to `shapes`, analysed.
fn analysed(
    proto: &pb::ModelProto,
    names: &[String],
    shapes: &[Vec<usize>],
) -> Result<InferenceModel> {
    let mut model = tract_onnx::onnx()
        .model_for_proto_model(proto)
        .map_err(|e| tract_err("tract could not load the model", e))?;
    for (i, (name, shape)) in names.iter().zip(shapes).enumerate() {
        model
            .set_input_fact(
                i,
                InferenceFact::dt_shape(f32::datum_type(), shape.as_slice()),
            )
            .map_err(|e| tract_err(format!("input {name:?}"), e))?;
    }
    model
        .analyse(false)
        .map_err(|e| tract_err("tract could not infer the model's shapes", e))?;
    Ok(model)
}

/// Translates an analysed model to tract's typed graph and plans it; finds the Conv nodes
/// `convs` in it. Returns the plan and, per conv, why it cannot be hooked (`None`: it can).
fn plan_of(model: InferenceModel, convs: &[String]) -> Result<(Plan, Vec<Option<String>>)> {
    let typed: TypedModel = model
        .into_typed()
        .map_err(|e| tract_err("tract could not translate the model", e))?;
    let mut conv_ids = HashMap::new();
    let mut why = Vec::new();
    for name in convs {
        why.push(match typed.node_by_name(name) {
            Ok(n) if n.op.name() == "Conv" && !n.inputs.is_empty() => {
                conv_ids.insert(name.clone(), n.id);
                None
            }
            Ok(n) => Some(format!("tract turned it into a {} node", n.op.name())),
            Err(_) => Some("tract folded it away (constant input?)".into()),
        });
    }
    let plan =
        TypedSimplePlan::new(typed).map_err(|e| tract_err("tract could not plan the model", e))?;
    Ok((Plan { plan, conv_ids }, why))
}

impl Model {
    /// Loads an ONNX file and fixes its inputs' shapes: `inputs` gives a shape per input name
    /// (every graph input must be named). See [`Model::from_bytes`].
    pub fn load(path: impl AsRef<Path>, inputs: &[(String, Vec<usize>)]) -> Result<Model> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Model::from_bytes(&bytes, inputs).map_err(|e| match e {
            Error::Model(m) => Error::Model(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses ONNX bytes, lists the Conv nodes, and builds tract's plan for the given input
    /// shapes. Fails with [`Error::Model`] when the bytes are not an ONNX model, an input is
    /// unknown, missing or of a shape the model refuses, or tract cannot translate an op (the
    /// message names the node and op).
    pub fn from_bytes(bytes: &[u8], inputs: &[(String, Vec<usize>)]) -> Result<Model> {
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| tract_err("not a readable ONNX model", e))?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| Error::Model("the ONNX model has no graph".into()))?;
        let initializers: Vec<&str> = graph.initializer.iter().map(|i| i.name.as_str()).collect();
        let input_names: Vec<String> = graph
            .input
            .iter()
            .filter(|v| !initializers.contains(&v.name.as_str()))
            .map(|v| v.name.clone())
            .collect();
        for (name, _) in inputs {
            if !input_names.contains(name) {
                return Err(Error::Model(format!(
                    "the model has no input {name:?}; its inputs are {input_names:?}"
                )));
            }
        }
        let declared_inputs: Vec<Vec<Option<usize>>> = input_names
            .iter()
            .map(|n| {
                graph
                    .input
                    .iter()
                    .find(|v| &v.name == n)
                    .map(declared_shape)
                    .unwrap_or_default()
            })
            .collect();
        let mut input_shapes = Vec::new();
        for (name, decl) in input_names.iter().zip(&declared_inputs) {
            let shape = inputs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.clone())
                .ok_or_else(|| {
                    Error::Model(format!(
                        "no tensor given for the model's input {name:?} (inputs: {input_names:?})"
                    ))
                })?;
            check_declared(name, decl, &shape)?;
            input_shapes.push(shape);
        }
        let model = analysed(&proto, &input_names, &input_shapes)?;

        // Conv nodes, in ONNX graph order.
        let mut convs = Vec::new();
        for pnode in graph.node.iter().filter(|n| n.op_type == "Conv") {
            let name = pnode.name.clone();
            let inode = model
                .node_by_name(&name)
                .map_err(|_| Error::Model(format!("Conv node {name:?} is not in tract's graph")))?;
            let input_shape = fact_shape(&model, inode.inputs[0]);
            let output_shape = fact_shape(&model, tract_onnx::prelude::OutletId::new(inode.id, 0));
            let weight = inode.inputs.get(1).and_then(|&o| konst(&model, o));
            let bias = inode.inputs.get(2).and_then(|&o| konst(&model, o));
            let (layer, unsupported) = match (&weight, inode.inputs.len() > 2 && bias.is_none()) {
                (None, _) => (None, Some("the weight is not a constant f32 tensor".into())),
                (_, true) => (None, Some("the bias is not a constant f32 tensor".into())),
                (Some(w), false) => {
                    match conv_spec(pnode, w.shape(), bias.is_some()).and_then(|s| {
                        ConvLayer::new(s, w.clone(), bias.clone()).map_err(|e| e.to_string())
                    }) {
                        Ok(l) => (Some(l), None),
                        Err(why) => (None, Some(why)),
                    }
                }
            };
            let out = pnode.output.first().map(String::as_str).unwrap_or("");
            convs.push(ConvNode {
                index: convs.len(),
                next_op: following_op(graph, out),
                activation: following_activation(graph, out),
                name,
                layer,
                unsupported,
                input_shape,
                output_shape,
            });
        }
        let output_names: Vec<String> = model
            .output_outlets()
            .map_err(|e| tract_err("outputs", e))?
            .iter()
            .map(|&o| {
                model
                    .outlet_label(o)
                    .map(str::to_string)
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        let names: Vec<String> = convs.iter().map(|c| c.name.clone()).collect();
        let (plan, why) = plan_of(model, &names)?;
        for (c, why) in convs.iter_mut().zip(why) {
            if let Some(why) = why {
                c.unsupported.get_or_insert(why);
                c.layer = None;
            }
        }
        Ok(Model {
            sha256: sha256_hex(bytes),
            proto,
            plans: Mutex::new(vec![(input_shapes.clone(), Arc::new(plan))]),
            input_names,
            input_shapes,
            declared_inputs,
            output_names,
            convs,
        })
    }

    /// sha256 of the ONNX file (hex).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
    /// The graph inputs' names, in order.
    pub fn input_names(&self) -> &[String] {
        &self.input_names
    }
    /// The input shapes the model was loaded with.
    pub fn input_shapes(&self) -> &[Vec<usize>] {
        &self.input_shapes
    }
    /// The shapes the ONNX graph declares for its inputs (`None`: a symbolic dimension).
    pub fn declared_input_shapes(&self) -> &[Vec<Option<usize>>] {
        &self.declared_inputs
    }
    /// The graph outputs' names, in order.
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }
    /// Every Conv node, in graph order.
    pub fn convs(&self) -> &[ConvNode] {
        &self.convs
    }
    /// The Conv node of this name, or an error listing the names.
    pub fn conv(&self, name: &str) -> Result<&ConvNode> {
        self.convs.iter().find(|c| c.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.convs.iter().map(|c| c.name.as_str()).collect();
            Error::Model(format!(
                "the model has no Conv node {name:?}; its Conv nodes are {names:?}"
            ))
        })
    }

    /// Runs the model exactly on one set of inputs (one tensor per input, in
    /// [`input_names`](Self::input_names) order, of any shape the graph declares).
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(self.run_with(inputs, &BTreeMap::new(), &[], false)?.outputs)
    }

    /// tract's plan for these inputs' shapes: the kept one, or a new one (checked against
    /// the declared shapes first).
    fn plan_for(&self, inputs: &[Tensor]) -> Result<Arc<Plan>> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let mut plans = self
            .plans
            .lock()
            .map_err(|_| Error::Model("a previous run panicked".into()))?;
        if let Some((_, p)) = plans.iter().find(|(s, _)| *s == shapes) {
            return Ok(p.clone());
        }
        let model = analysed(&self.proto, &self.input_names, &shapes)?;
        let names: Vec<String> = self.convs.iter().map(|c| c.name.clone()).collect();
        let (plan, _) = plan_of(model, &names)?;
        let plan = Arc::new(plan);
        if plans.len() >= MAX_PLANS {
            plans.remove(1);
        }
        plans.push((shapes, plan.clone()));
        Ok(plan)
    }

    /// Runs the model with the Conv nodes in `replace` replaced, capturing the data inputs of
    /// the nodes in `capture` (and of every replaced node). With `in_place`, tract's exact
    /// conv is also evaluated at every replaced node, on the input that node saw, and both
    /// outputs are returned in [`Run::replaced`]; without it the exact conv is skipped.
    pub fn run_with(
        &self,
        inputs: &[Tensor],
        replace: &BTreeMap<String, Replace<'_>>,
        capture: &[String],
        in_place: bool,
    ) -> Result<Run> {
        let clock = std::time::Instant::now();
        self.check_inputs(inputs)?;
        let plan = self.plan_for(inputs)?;
        let id_of = |name: &str, what: &str| -> Result<usize> {
            let c = self.conv(name)?;
            plan.conv_ids.get(name).copied().ok_or_else(|| {
                Error::Model(format!(
                    "Conv node {name:?} cannot be {what}: {}",
                    c.unsupported
                        .as_deref()
                        .unwrap_or("tract does not keep it as one node for these input shapes")
                ))
            })
        };
        let mut hooked: HashMap<usize, (&ConvNode, Option<Replace<'_>>)> = HashMap::new();
        for name in capture {
            hooked.insert(id_of(name, "captured")?, (self.conv(name)?, None));
        }
        for (name, r) in replace {
            let c = self.conv(name)?;
            let Some(layer) = &c.layer else {
                return Err(Error::Model(format!(
                    "Conv node {name:?} cannot be replaced: {}",
                    c.unsupported.as_deref().unwrap_or("unknown")
                )));
            };
            if let Some(t) = r.tables() {
                if &t.spec != layer.spec() {
                    return Err(Error::Model(format!(
                        "the tables for {name:?} are for {}, but the node is {}",
                        t.spec.describe(),
                        layer.spec().describe()
                    )));
                }
            }
            hooked.insert(id_of(name, "replaced")?, (c, Some(*r)));
        }
        let tv: TVec<TValue> = inputs.iter().map(to_tvalue).collect::<Result<_>>()?;
        let mut state = TypedSimpleState::new(&plan.plan).map_err(|e| tract_err("run", e))?;
        let mut run = Run::default();
        let mut failure: Option<Error> = None;
        let outputs = state.run_plan_with_eval(tv, |ctx, op_state, node, node_inputs| {
            let Some((c, r)) = hooked.get(&node.id) else {
                return tract_onnx::tract_core::plan::eval(ctx, op_state, node, node_inputs);
            };
            let mut timing = LayerTiming {
                calls: 1,
                ..LayerTiming::default()
            };
            let exact = if r.is_none() || in_place {
                let t = std::time::Instant::now();
                let out =
                    tract_onnx::tract_core::plan::eval(ctx, op_state, node, node_inputs.clone())?;
                timing.exact_ms = t.elapsed().as_secs_f64() * 1e3;
                Some(out)
            } else {
                None
            };
            let step = (|| -> Result<Option<TValue>> {
                let t = std::time::Instant::now();
                let x = from_tvalue(&node_inputs[0], &format!("input of {}", c.name))?;
                timing.convert_ms += t.elapsed().as_secs_f64() * 1e3;
                let approx = match r {
                    None => None,
                    Some(r) => {
                        let layer = c.layer.as_ref().expect("checked above");
                        let t = std::time::Instant::now();
                        let y = match r {
                            Replace::Tables(tables) => mirror::apply(tables, &x)?,
                            Replace::Reference => layer.exact(&x)?,
                            Replace::Gpu(gpu, conv) => {
                                let (y, g) = run_on_gpu(gpu, conv, &x)?;
                                timing.gpu = g;
                                y
                            }
                        };
                        if !matches!(r, Replace::Gpu(..)) {
                            timing.cpu_ms = t.elapsed().as_secs_f64() * 1e3;
                        }
                        let t = std::time::Instant::now();
                        let v = to_tvalue(&y)?;
                        timing.convert_ms += t.elapsed().as_secs_f64() * 1e3;
                        if let Some(exact) = &exact {
                            let ex = from_tvalue(&exact[0], &format!("output of {}", c.name))?;
                            if ex.shape() != y.shape() {
                                return Err(Error::Model(format!(
                                    "the replacement of {} gives shape {:?}, tract's conv {:?}",
                                    c.name,
                                    y.shape(),
                                    ex.shape()
                                )));
                            }
                            run.replaced.insert(c.name.clone(), (ex, y));
                        }
                        run.timing.entry(c.name.clone()).or_default().add(&timing);
                        Some(v)
                    }
                };
                run.conv_inputs.insert(c.name.clone(), x);
                Ok(approx)
            })();
            match step {
                Ok(Some(v)) => Ok(std::iter::once(v).collect()),
                Ok(None) => Ok(exact.expect("evaluated for a capture")),
                Err(e) => {
                    let msg = e.to_string();
                    failure = Some(e);
                    Err(tract_onnx::prelude::TractError::msg(msg))
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let outputs = outputs.map_err(|e| tract_err("tract failed running the model", e))?;
        run.outputs = outputs
            .iter()
            .zip(&self.output_names)
            .map(|(v, n)| from_tvalue(v, &format!("output {n:?}")))
            .collect::<Result<_>>()?;
        run.total_ms = clock.elapsed().as_secs_f64() * 1e3;
        Ok(run)
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<()> {
        if inputs.len() != self.input_names.len() {
            return Err(Error::Model(format!(
                "{} input tensor(s) given; the model takes {} ({:?})",
                inputs.len(),
                self.input_names.len(),
                self.input_names
            )));
        }
        for ((t, name), decl) in inputs
            .iter()
            .zip(&self.input_names)
            .zip(&self.declared_inputs)
        {
            check_declared(name, decl, t.shape())?;
            t.check_finite(&format!("input {name:?}"))?;
        }
        Ok(())
    }
}

/// One replaced layer on the GPU, timed step by step.
#[cfg(not(target_arch = "wasm32"))]
fn run_on_gpu(ctx: &Context, conv: &MaddnessConv, x: &Tensor) -> Result<(Tensor, RunTiming)> {
    pollster::block_on(conv.run_timed(ctx, x))
}

/// In the browser a model run cannot block on the GPU.
#[cfg(target_arch = "wasm32")]
fn run_on_gpu(_: &Context, _: &MaddnessConv, _: &Tensor) -> Result<(Tensor, RunTiming)> {
    Err(Error::Unsupported(
        "replaced layers of a whole model run on the GPU only natively".into(),
    ))
}

/// Splits whole input tensors into the runs of a model whose inputs declare a fixed batch of 1
/// (e.g. a detector exported with `images` `[1, 3, 416, 416]`): `N` rows become `N` runs of one
/// row each. Inputs whose first declared dimension is not a fixed 1 are passed whole to every run
/// (and must then be the same for all). Returns one input set per run and the per-run shapes.
pub fn split_runs(declared: &[Vec<Option<usize>>], inputs: &[Tensor]) -> Result<Vec<Vec<Tensor>>> {
    let batched: Vec<bool> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            declared.get(i).and_then(|d| d.first().copied()) == Some(Some(1))
                && t.shape().len() == declared[i].len()
                && t.shape()[0] > 1
        })
        .collect();
    let rows: Vec<usize> = inputs
        .iter()
        .zip(&batched)
        .filter(|(_, &b)| b)
        .map(|(t, _)| t.shape()[0])
        .collect();
    let Some(&n) = rows.first() else {
        return Ok(vec![inputs.to_vec()]);
    };
    if rows.iter().any(|&r| r != n) {
        return Err(Error::Model(format!(
            "the batched inputs have different row counts {rows:?}"
        )));
    }
    (0..n)
        .map(|r| {
            inputs
                .iter()
                .zip(&batched)
                .map(|(t, &b)| {
                    if b {
                        t.slice_batch(r, r + 1)
                    } else {
                        Ok(t.clone())
                    }
                })
                .collect()
        })
        .collect()
}

/// An ONNX file's bytes and its parsed protobuf.
fn read_proto(path: &Path) -> Result<(Vec<u8>, pb::ModelProto)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| tract_err(format!("{}: not a readable ONNX model", path.display()), e))?;
    Ok((bytes, proto))
}

/// The names of an ONNX file's graph inputs (initializers left out), in order.
pub fn graph_inputs(path: impl AsRef<Path>) -> Result<Vec<String>> {
    let path = path.as_ref();
    let (_, proto) = read_proto(path)?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| Error::Model(format!("{}: the ONNX model has no graph", path.display())))?;
    Ok(graph
        .input
        .iter()
        .filter(|v| !graph.initializer.iter().any(|i| i.name == v.name))
        .map(|v| v.name.clone())
        .collect())
}

/// Loads a model for whole input tensors: splits them into runs ([`split_runs`]) using the
/// shapes the ONNX file declares, then loads the model for the first run's shapes. `inputs`
/// are (name, tensor) pairs; a name may come several times (several files): an input whose
/// declared first dimension is a fixed 1 has them stacked on axis 0 (each row one run), any
/// other input has one run per tensor (inputs given once go to every run). Returns the model
/// and the runs (tensors in the model's input order).
pub fn load_for(
    path: impl AsRef<Path>,
    inputs: &[(String, Tensor)],
) -> Result<(Model, Vec<Vec<Tensor>>)> {
    let path = path.as_ref();
    let (bytes, proto) = read_proto(path)?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| Error::Model(format!("{}: the ONNX model has no graph", path.display())))?;
    // Group the tensors by name, in the order the names first appear.
    let mut grouped: Vec<(String, Vec<Tensor>)> = Vec::new();
    for (n, t) in inputs {
        match grouped.iter_mut().find(|(g, _)| g == n) {
            Some((_, v)) => v.push(t.clone()),
            None => grouped.push((n.clone(), vec![t.clone()])),
        }
    }
    let declared: Vec<Vec<Option<usize>>> = grouped
        .iter()
        .map(|(n, _)| {
            graph
                .input
                .iter()
                .find(|v| &v.name == n)
                .map(declared_shape)
                .unwrap_or_default()
        })
        .collect();
    // Several files for a fixed-batch-1 input: stacked rows.
    let mut per_file: Vec<Vec<Tensor>> = Vec::new();
    for ((name, ts), decl) in grouped.iter().zip(&declared) {
        if ts.len() > 1 && decl.first() == Some(&Some(1)) {
            per_file.push(vec![Tensor::concat_batch(ts).map_err(|e| {
                Error::Model(format!(
                    "input {name:?}: its {} files cannot be stacked on axis 0: {e}",
                    ts.len()
                ))
            })?]);
        } else {
            per_file.push(ts.clone());
        }
    }
    let files: Vec<usize> = per_file.iter().map(Vec::len).filter(|&k| k > 1).collect();
    if files.iter().any(|&k| k != files[0]) {
        return Err(Error::Model(format!(
            "inputs given several times must all have the same number of files: {:?}",
            grouped
                .iter()
                .zip(&per_file)
                .map(|((n, _), f)| (n.as_str(), f.len()))
                .collect::<Vec<_>>()
        )));
    }
    let mut runs: Vec<Vec<Tensor>> = Vec::new();
    for k in 0..files.first().copied().unwrap_or(1) {
        let set: Vec<Tensor> = per_file
            .iter()
            .map(|f| f[if f.len() > 1 { k } else { 0 }].clone())
            .collect();
        runs.extend(split_runs(&declared, &set)?);
    }
    let shapes: Vec<(String, Vec<usize>)> = grouped
        .iter()
        .zip(&runs[0])
        .map(|((n, _), t)| (n.clone(), t.shape().to_vec()))
        .collect();
    let model = Model::from_bytes(&bytes, &shapes).map_err(|e| match e {
        Error::Model(m) => Error::Model(format!("{}: {m}", path.display())),
        other => other,
    })?;
    let runs =
        runs.into_iter()
            .map(|run| {
                let mut ordered = Vec::new();
                for name in model.input_names() {
                    let i = grouped.iter().position(|(n, _)| n == name).ok_or_else(|| {
                        Error::Model(format!("no tensor given for input {name:?}"))
                    })?;
                    ordered.push(run[i].clone());
                }
                Ok(ordered)
            })
            .collect::<Result<Vec<_>>>()?;
    Ok((model, runs))
}
