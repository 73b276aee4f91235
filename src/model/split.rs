//! A model cut at chosen Conv nodes into ONNX segments, so that another engine (ONNX Runtime
//! Web in the browser, tract here) runs every op but those convs, and our kernels run the convs
//! in between.
//!
//! # How the cut is made
//!
//! Every value of the graph gets a *stage*: the graph inputs are stage 0, a node's outputs take
//! the largest stage of its inputs, and a cut Conv's output is one more than its data input's
//! stage. Values computed from constants only (initializers, `Constant` nodes, shapes of them)
//! have no stage. Segment `k` holds the nodes of stage `k`, in graph order, plus copies of the
//! constant nodes and initializers they need; its inputs are the values it reads that an earlier
//! step made (graph inputs, earlier segments, cut convs), its outputs those a later step, a cut
//! conv or the model's outputs read. The steps run in order: segment 0, the convs whose input is
//! of stage 0, segment 1, … A value crossing a cut is declared with its element type (from
//! tract's type inference) and no shape, so the segments run on inputs of any size the model
//! accepts.
//!
//! Graphs with control flow (a node with a subgraph attribute) are refused: their subgraphs may
//! read outer values that no segment boundary would carry.

use std::collections::{BTreeSet, HashMap, HashSet};

use prost::Message;
use serde::Serialize;
use tract_onnx::pb;
use tract_onnx::prelude::DatumType;
use tract_onnx::tract_hir::infer::Factoid;

use super::Model;
use crate::error::{Error, Result};

/// One step of a [`ModelSplit`]: a segment of the graph for an ONNX engine, or a cut conv.
#[derive(Clone, Debug)]
pub enum Step {
    /// Part of the original graph, as an ONNX model of its own.
    Segment(Segment),
    /// A Conv node of the original graph, left to our kernels.
    Conv(CutConv),
}

/// A segment: an ONNX model whose inputs and outputs are values of the original graph (same
/// names).
#[derive(Clone, Debug, Serialize)]
pub struct Segment {
    /// The segment's position among the segments (0, 1, …).
    pub index: usize,
    /// The encoded ONNX model (not serialized into the manifest; written next to it).
    #[serde(skip)]
    pub onnx: Vec<u8>,
    /// Value names it reads, in its graph input order.
    pub inputs: Vec<String>,
    /// Value names it makes for later steps, in its graph output order.
    pub outputs: Vec<String>,
    /// How many nodes of the original graph it holds (constant copies included).
    pub nodes: usize,
}

/// A cut Conv node: its data input and output value names.
#[derive(Clone, Debug, Serialize)]
pub struct CutConv {
    /// The ONNX node name.
    pub name: String,
    /// The value holding its data input.
    pub input: String,
    /// The value it writes.
    pub output: String,
}

/// A model cut at some Conv nodes ([module docs](self)).
#[derive(Clone, Debug)]
pub struct ModelSplit {
    /// The model's graph inputs, in order.
    pub inputs: Vec<String>,
    /// The model's graph outputs, in order.
    pub outputs: Vec<String>,
    /// The steps, in the order they must run.
    pub steps: Vec<Step>,
}

impl ModelSplit {
    /// The segments, in running order.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.steps.iter().filter_map(|s| match s {
            Step::Segment(g) => Some(g),
            Step::Conv(_) => None,
        })
    }
}

impl Model {
    /// Cuts the model at the Conv nodes `convs` ([module docs](split)). Fails when a name is
    /// not a Conv node of the model, is given twice, when a conv's input is a constant, or the
    /// graph has control flow or is not in topological order.
    pub fn split(&self, convs: &[String]) -> Result<ModelSplit> {
        if convs.is_empty() {
            return Err(Error::Model("split: no Conv node to cut at".into()));
        }
        let mut seen = HashSet::new();
        for name in convs {
            self.conv(name)?;
            if !seen.insert(name.as_str()) {
                return Err(Error::Model(format!(
                    "split: Conv node {name:?} given twice"
                )));
            }
        }
        let types = self.value_types()?;
        split_proto(&self.proto, &types, convs)
    }

    /// The element type of every value tract infers for the loaded input shapes, by ONNX value
    /// name.
    fn value_types(&self) -> Result<HashMap<String, i32>> {
        let model = super::analysed(&self.proto, &self.input_names, &self.input_shapes)?;
        let mut types = HashMap::new();
        for node in model.nodes() {
            for (ix, out) in node.outputs.iter().enumerate() {
                let outlet = tract_onnx::prelude::OutletId::new(node.id, ix);
                let Some(label) = model.outlet_label(outlet) else {
                    continue;
                };
                if let Some(dt) = out.fact.datum_type.concretize() {
                    if let Some(t) = onnx_type(dt) {
                        types.insert(label.to_string(), t);
                    }
                }
            }
        }
        Ok(types)
    }
}

/// The ONNX `TensorProto.DataType` of a tract datum type (`None` for types ONNX has no code for).
fn onnx_type(dt: DatumType) -> Option<i32> {
    use pb::tensor_proto::DataType as D;
    let t = match dt {
        DatumType::Bool => D::Bool,
        DatumType::U8 => D::Uint8,
        DatumType::U16 => D::Uint16,
        DatumType::U32 => D::Uint32,
        DatumType::U64 => D::Uint64,
        DatumType::I8 => D::Int8,
        DatumType::I16 => D::Int16,
        DatumType::I32 => D::Int32,
        DatumType::I64 => D::Int64,
        DatumType::F16 => D::Float16,
        DatumType::F32 => D::Float,
        DatumType::F64 => D::Double,
        _ => return None,
    };
    Some(t as i32)
}

/// [`Model::split`] on the proto, with the element types of the values (by name).
fn split_proto(
    proto: &pb::ModelProto,
    types: &HashMap<String, i32>,
    cut: &[String],
) -> Result<ModelSplit> {
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| Error::Model("the ONNX model has no graph".into()))?;
    let initializers: HashMap<&str, &pb::TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|v| !initializers.contains_key(v.name.as_str()))
        .collect();
    let is_cut = |n: &pb::NodeProto| n.op_type == "Conv" && cut.contains(&n.name);

    // Stages, in graph order (ONNX requires it topological).
    let mut stage: HashMap<&str, Option<usize>> = HashMap::new();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for v in &inputs {
        stage.insert(v.name.as_str(), Some(0));
    }
    for name in initializers.keys() {
        stage.insert(name, None);
    }
    let mut node_stage: Vec<Option<usize>> = Vec::with_capacity(graph.node.len());
    for (i, n) in graph.node.iter().enumerate() {
        if n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
        {
            return Err(Error::Model(format!(
                "split: node {:?} ({}) has a subgraph; models with control flow cannot be cut",
                n.name, n.op_type
            )));
        }
        let mut s: Option<usize> = None;
        for input in n.input.iter().filter(|v| !v.is_empty()) {
            let st = stage.get(input.as_str()).ok_or_else(|| {
                Error::Model(format!(
                    "split: node {:?} reads {input:?} before any node makes it (the graph is not \
                     in topological order)",
                    n.name
                ))
            })?;
            s = s.max(*st);
        }
        let out_stage = if is_cut(n) {
            let data = n.input.first().map(String::as_str).unwrap_or("");
            let Some(s_in) = stage.get(data).copied().flatten() else {
                return Err(Error::Model(format!(
                    "split: the input of Conv node {:?} is a constant; there is nothing to cut",
                    n.name
                )));
            };
            node_stage.push(Some(s_in));
            Some(s_in + 1)
        } else {
            node_stage.push(s);
            s
        };
        for o in n.output.iter().filter(|v| !v.is_empty()) {
            stage.insert(o.as_str(), out_stage);
            producer.insert(o.as_str(), i);
        }
    }
    for o in &graph.output {
        if stage.get(o.name.as_str()).copied().flatten().is_none() {
            return Err(Error::Model(format!(
                "split: the model output {:?} is a constant (or not made by any node)",
                o.name
            )));
        }
    }

    // Who reads each value outside its own segment: nodes of other stages, cut convs, outputs.
    let graph_outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let last_stage = node_stage.iter().flatten().copied().max().unwrap_or(0)
        + usize::from(graph.node.iter().any(is_cut));
    let mut steps = Vec::new();
    let mut segment_count = 0;
    for k in 0..=last_stage {
        let members: Vec<usize> = (0..graph.node.len())
            .filter(|&i| node_stage[i] == Some(k) && !is_cut(&graph.node[i]))
            .collect();
        if !members.is_empty() {
            steps.push(Step::Segment(segment(
                proto,
                graph,
                &members,
                &node_stage,
                &producer,
                &initializers,
                &stage,
                &graph_outputs,
                types,
                &is_cut,
                segment_count,
            )?));
            segment_count += 1;
        }
        for (i, n) in graph.node.iter().enumerate() {
            if is_cut(n) && node_stage[i] == Some(k) {
                let first = |v: &[String]| v.first().cloned().unwrap_or_default();
                steps.push(Step::Conv(CutConv {
                    name: n.name.clone(),
                    input: first(&n.input),
                    output: first(&n.output),
                }));
            }
        }
    }
    Ok(ModelSplit {
        inputs: inputs.iter().map(|v| v.name.clone()).collect(),
        outputs: graph.output.iter().map(|o| o.name.clone()).collect(),
        steps,
    })
}

/// One segment's ONNX model ([module docs](self)).
#[allow(clippy::too_many_arguments)]
fn segment(
    proto: &pb::ModelProto,
    graph: &pb::GraphProto,
    members: &[usize],
    node_stage: &[Option<usize>],
    producer: &HashMap<&str, usize>,
    initializers: &HashMap<&str, &pb::TensorProto>,
    stage: &HashMap<&str, Option<usize>>,
    graph_outputs: &HashSet<&str>,
    types: &HashMap<String, i32>,
    is_cut: &dyn Fn(&pb::NodeProto) -> bool,
    index: usize,
) -> Result<Segment> {
    let member_set: HashSet<usize> = members.iter().copied().collect();
    // The constant nodes and initializers the members need, transitively.
    let mut nodes: BTreeSet<usize> = members.iter().copied().collect();
    let mut inits: BTreeSet<&str> = BTreeSet::new();
    let mut todo: Vec<usize> = members.to_vec();
    while let Some(i) = todo.pop() {
        for v in graph.node[i].input.iter().filter(|v| !v.is_empty()) {
            if stage.get(v.as_str()).copied().flatten().is_some() {
                continue;
            }
            if initializers.contains_key(v.as_str()) && !producer.contains_key(v.as_str()) {
                inits.insert(v.as_str());
            } else if let Some(&p) = producer.get(v.as_str()) {
                if nodes.insert(p) {
                    todo.push(p);
                }
            }
        }
    }
    // Inputs: staged values the segment's nodes read that no member makes.
    let mut seg_inputs: Vec<String> = Vec::new();
    for &i in &nodes {
        for v in graph.node[i].input.iter().filter(|v| !v.is_empty()) {
            let staged = stage.get(v.as_str()).copied().flatten().is_some();
            let made_here = producer
                .get(v.as_str())
                .is_some_and(|p| member_set.contains(p));
            if staged && !made_here && !seg_inputs.contains(v) {
                seg_inputs.push(v.clone());
            }
        }
    }
    // Outputs: values members make that other steps or the model's outputs read.
    let mut seg_outputs: Vec<String> = Vec::new();
    for &i in members {
        for v in graph.node[i].output.iter().filter(|v| !v.is_empty()) {
            let read_elsewhere = graph.node.iter().enumerate().any(|(j, n)| {
                (is_cut(n) || !member_set.contains(&j))
                    && node_stage[j].is_some()
                    && n.input.iter().any(|x| x == v)
            });
            if (read_elsewhere || graph_outputs.contains(v.as_str())) && !seg_outputs.contains(v) {
                seg_outputs.push(v.clone());
            }
        }
    }
    let info = |name: &str, declared: &[pb::ValueInfoProto]| -> Result<pb::ValueInfoProto> {
        if let Some(v) = declared.iter().find(|v| v.name == name) {
            return Ok(v.clone());
        }
        let elem_type = *types.get(name).ok_or_else(|| {
            Error::Model(format!(
                "split: tract inferred no element type for the value {name:?} that crosses a cut"
            ))
        })?;
        Ok(pb::ValueInfoProto {
            name: name.to_string(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type,
                    shape: None,
                })),
                ..Default::default()
            }),
            ..Default::default()
        })
    };
    let input = seg_inputs
        .iter()
        .map(|n| info(n, &graph.input))
        .collect::<Result<Vec<_>>>()?;
    let output = seg_outputs
        .iter()
        .map(|n| info(n, &graph.output))
        .collect::<Result<Vec<_>>>()?;
    let seg_graph = pb::GraphProto {
        name: format!("{} segment {index}", graph.name),
        node: nodes.iter().map(|&i| graph.node[i].clone()).collect(),
        initializer: inits.iter().map(|n| initializers[n].clone()).collect(),
        input,
        output,
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: proto.ir_version,
        opset_import: proto.opset_import.clone(),
        producer_name: "maddconv model split".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: proto.domain.clone(),
        model_version: proto.model_version,
        graph: Some(seg_graph),
        functions: proto.functions.clone(),
        ..Default::default()
    };
    Ok(Segment {
        index,
        onnx: model.encode_to_vec(),
        inputs: seg_inputs,
        outputs: seg_outputs,
        nodes: nodes.len(),
    })
}
