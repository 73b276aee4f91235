//! Calibration of chosen Conv nodes of a [`Model`] and the comparison of a replaced model with
//! the exact one.
//!
//! * [`calibrate`] — sequential by default (DESIGN.md §7): layer `k` learns on its inputs
//!   captured from runs with layers `0..k` already replaced; `independent` trains every layer on
//!   the exact model's inputs.
//! * [`calibrate_auto`] — greedy choice of the layers: candidates in order of MACs, each kept
//!   only if the whole model still meets a [`Target`] on held-out runs.
//! * [`compare`] — per output NMSE (global variance), 1 − NMSE, relative L2, max and mean abs;
//!   per replaced layer its NMSE in place (channel-wise, [`crate::metrics::nmse`]); the task
//!   metric ([`Metric`]); where the time went.
//! * [`holdout`] — splits calibration runs into a training and a held-out part.
//!
//! Inputs are runs: one `Vec<Tensor>` per model call, in [`Model::input_names`] order.

use std::collections::BTreeMap;

use serde::Serialize;

use super::boxes::{self, BoxAgreement, YoloxDecode};
use super::{LayerTiming, Model, Replace};
use crate::error::{Error, Result};
use crate::gpu::{Context, MaddnessConv};
use crate::layer::ConvLayer;
use crate::maddness::{learn, Tables, TrainConfig};
use crate::tensor::Tensor;

/// Where replaced layers run.
#[derive(Clone, Copy)]
pub enum Backend<'a> {
    /// The CPU mirror ([`crate::maddness::mirror`]).
    Cpu,
    /// The look-up kernels on this GPU.
    Gpu(&'a Context),
}

impl std::fmt::Debug for Backend<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Cpu => write!(f, "Cpu"),
            Backend::Gpu(c) => write!(f, "Gpu({})", c.adapter_info().name),
        }
    }
}

/// The replaced layers of a model and where they run: owns each layer's tables and, on the
/// GPU, its uploaded [`MaddnessConv`].
pub struct Replacements<'a> {
    backend: Backend<'a>,
    layers: Vec<(String, Tables, Option<MaddnessConv>)>,
}

impl<'a> Replacements<'a> {
    /// No layer replaced yet.
    pub fn new(backend: Backend<'a>) -> Self {
        Replacements {
            backend,
            layers: Vec::new(),
        }
    }

    /// These layers' tables, on `backend`.
    pub fn with(backend: Backend<'a>, tables: &[(String, Tables)]) -> Result<Self> {
        let mut r = Replacements::new(backend);
        for (name, t) in tables {
            r.push(name.clone(), t.clone())?;
        }
        Ok(r)
    }

    /// Adds (or replaces) one layer's tables; on the GPU they are uploaded here.
    pub fn push(&mut self, name: String, tables: Tables) -> Result<()> {
        let gpu = match self.backend {
            Backend::Cpu => None,
            Backend::Gpu(ctx) => Some(MaddnessConv::new(ctx, &tables)?),
        };
        self.layers.retain(|(n, _, _)| *n != name);
        self.layers.push((name, tables, gpu));
        Ok(())
    }

    /// Removes the layer added last.
    pub fn pop(&mut self) -> Option<(String, Tables)> {
        self.layers.pop().map(|(n, t, _)| (n, t))
    }

    /// The backend.
    pub fn backend(&self) -> Backend<'a> {
        self.backend
    }

    /// Replaced layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True when no layer is replaced.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// (name, tables) of every replaced layer, in the order they were added.
    pub fn tables(&self) -> Vec<(String, Tables)> {
        self.layers
            .iter()
            .map(|(n, t, _)| (n.clone(), t.clone()))
            .collect()
    }

    /// Names of the replaced layers.
    pub fn names(&self) -> Vec<String> {
        self.layers.iter().map(|(n, _, _)| n.clone()).collect()
    }

    /// What [`Model::run_with`] takes.
    pub fn map(&self) -> BTreeMap<String, Replace<'_>> {
        self.layers
            .iter()
            .map(|(n, t, g)| {
                let r = match (self.backend, g) {
                    (Backend::Gpu(ctx), Some(conv)) => Replace::Gpu(ctx, conv),
                    _ => Replace::Tables(t),
                };
                (n.clone(), r)
            })
            .collect()
    }
}

/// Settings of [`calibrate`].
#[derive(Clone, Debug, Default)]
pub struct CalibrateConfig {
    /// The learner's settings, used for every layer.
    pub train: TrainConfig,
    /// Train every layer on the exact model's inputs instead of sequentially.
    pub independent: bool,
    /// Fit each layer for the error after the activation the graph applies to its output
    /// ([`ConvNode::activation`](super::ConvNode::activation)) instead of
    /// [`TrainConfig::activation`].
    pub graph_activations: bool,
    /// Weigh each calibration sample by the end task's sensitivity to the layer
    /// ([`Sensitivity`]; issue 13, item 3). `None` (default): every sample counts the same.
    pub sensitivity: Option<Sensitivity>,
    /// Sequential calibration: refit each layer's tables to the exact model's outputs of that
    /// layer ([`TrainConfig::target_outputs`]) instead of the layer's own outputs on the inputs
    /// it sees behind the earlier approximated layers, so that its tables also undo those
    /// layers' errors where they can. The trees are grown as usual. No effect with
    /// [`independent`](Self::independent) (the inputs are the exact ones).
    pub exact_targets: bool,
}

/// End-task sensitivity weights: each layer is trained once, its tables are put in place, and
/// each calibration sample (a row of the layer's batch, which must be the first axis of the
/// task's output too, as for silero VAD's frames) is weighted by how close that perturbation
/// brings the sample's decisions to flipping, per unit of the layer's error on it:
/// `g_n = Σ_j Δ_j² / (m_j² + τ²) / mean_n((ẑ − z)²)`, `Δ_j` the change of decision `j`'s
/// margin when the tables replace the layer, `m_j` the exact model's margin (`y − T` for a
/// threshold, top-1 − top-2 for an arg-max) and `τ² = 0.01 · mean m²`. The weights
/// `min(g_n / mean g, 20) + floor` then refit the tables (the trees stay; see
/// [`TrainConfig::sample_weights`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sensitivity {
    /// The decisions watched (a threshold or arg-max metric; boxes have no per-sample margin).
    pub task: Task,
    /// Weight every sample has at least (finite, ≥ 0; with 0 a sample no decision depends on
    /// is ignored).
    pub floor: f32,
}

/// Cap on a sample's sensitivity relative to the mean (before the floor): one sample at the
/// threshold must not take over the fit.
const SENSITIVITY_CAP: f64 = 20.0;

impl CalibrateConfig {
    /// The learner's settings for the Conv node `name`.
    pub fn for_layer(&self, model: &Model, name: &str) -> Result<TrainConfig> {
        let mut t = self.train.clone();
        if self.graph_activations {
            t.activation = model.conv(name)?.activation;
        }
        Ok(t)
    }
}

/// The sensitivity weight of every sample of the calibration `runs` (in order: run 0's batch
/// rows, then run 1's, …) for the layer `name` with `tables` in place after the layers in
/// `replaced` ([`Sensitivity`]).
fn sensitivity_weights(
    model: &Model,
    runs: &[Vec<Tensor>],
    exact: &[Vec<Tensor>],
    name: &str,
    replaced: &mut Replacements<'_>,
    tables: &Tables,
    s: Sensitivity,
) -> Result<Vec<f32>> {
    if !(s.floor.is_finite() && s.floor >= 0.0) {
        return Err(Error::Argument(format!(
            "sensitivity floor = {}; it must be finite and ≥ 0",
            s.floor
        )));
    }
    let task = s.task;
    let out_name = model
        .output_names()
        .get(task.output)
        .cloned()
        .ok_or_else(|| {
            Error::Argument(format!(
                "the task reads output {} but the model has {}",
                task.output,
                model.output_names().len()
            ))
        })?;
    let base_map = replaced.map();
    let base: Vec<Tensor> = runs
        .iter()
        .map(|r| {
            Ok(model
                .run_with(r, &base_map, &[], false)?
                .outputs
                .swap_remove(task.output))
        })
        .collect::<Result<_>>()?;
    drop(base_map);
    replaced.push(name.to_string(), tables.clone())?;
    let perturbed: Result<Vec<(Tensor, Tensor, Tensor)>> = {
        let map = replaced.map();
        runs.iter()
            .map(|r| {
                let mut run = model.run_with(r, &map, &[], true)?;
                let (e, a) = run
                    .replaced
                    .remove(name)
                    .ok_or_else(|| Error::Model(format!("layer {name:?} did not run in place")))?;
                Ok((run.outputs.swap_remove(task.output), e, a))
            })
            .collect()
    };
    replaced.pop();
    let perturbed = perturbed?;
    // Per sample: Σ Δ² / (m² + τ²) needs τ, so first the margins and changes.
    let mut per_sample: Vec<(Vec<(f64, f64)>, f64)> = Vec::new();
    for (((p, e, a), b), x) in perturbed.iter().zip(&base).zip(exact) {
        let y = &x[task.output];
        let n = e.shape()[0];
        if y.shape().first() != Some(&n) || p.shape() != y.shape() || b.shape() != y.shape() {
            return Err(Error::Argument(format!(
                "sensitivity weights need the task output's first axis to be the layer's \
                 batch: output {out_name:?} has shape {:?}, layer {name:?}'s output {:?}",
                y.shape(),
                e.shape()
            )));
        }
        let margins = decision_margins(y, task.metric)?;
        let (mp, mb) = (
            decision_margins(p, task.metric)?,
            decision_margins(b, task.metric)?,
        );
        let per_y = margins.len() / n.max(1);
        let per_z = e.len() / n.max(1);
        for i in 0..n {
            let d: Vec<(f64, f64)> = (i * per_y..(i + 1) * per_y)
                .map(|j| (margins[j], mp[j] - mb[j]))
                .collect();
            let err: f64 = e.data()[i * per_z..(i + 1) * per_z]
                .iter()
                .zip(&a.data()[i * per_z..(i + 1) * per_z])
                .map(|(&z, &zh)| (z as f64 - zh as f64).powi(2))
                .sum::<f64>()
                / per_z.max(1) as f64;
            per_sample.push((d, err));
        }
    }
    let count: usize = per_sample.iter().map(|(d, _)| d.len()).sum();
    let tau2 = 0.01
        * per_sample
            .iter()
            .flat_map(|(d, _)| d.iter().map(|(m, _)| m * m))
            .sum::<f64>()
        / count.max(1) as f64;
    let tau2 = tau2.max(f64::MIN_POSITIVE);
    let mean_err = per_sample.iter().map(|(_, e)| e).sum::<f64>() / per_sample.len().max(1) as f64;
    let gains: Vec<f64> = per_sample
        .iter()
        .map(|(d, err)| {
            let risk: f64 = d.iter().map(|(m, dm)| dm * dm / (m * m + tau2)).sum();
            risk / (err + 1e-6 * mean_err + f64::MIN_POSITIVE)
        })
        .collect();
    let mean = gains.iter().sum::<f64>() / gains.len().max(1) as f64;
    Ok(gains
        .iter()
        .map(|g| {
            let rel = if mean > 0.0 { g / mean } else { 1.0 };
            (rel.min(SENSITIVITY_CAP) + s.floor as f64) as f32
        })
        .collect())
}

/// The margin of each decision of `t` under `metric`, in [`decisions`]' order: `y − T` for a
/// threshold, top-1 − top-2 along the axis for an arg-max (the top two of `t` itself).
fn decision_margins(t: &Tensor, metric: Metric) -> Result<Vec<f64>> {
    match metric {
        Metric::Threshold(th) => Ok(t.data().iter().map(|&v| v as f64 - th as f64).collect()),
        Metric::Argmax(axis) => {
            if argmax_axis(t, axis)? == 0 {
                return Err(Error::Argument(format!(
                    "sensitivity weights need an arg-max along an axis after the batch; axis \
                     {axis} of an output of shape {:?} is the batch",
                    t.shape()
                )));
            }
            Ok(top_two(t, axis)?
                .into_iter()
                .map(|(_, top, second)| top as f64 - second as f64)
                .collect())
        }
        Metric::Yolox(_) => Err(Error::Argument(
            "sensitivity weights need a threshold or argmax metric: yolox boxes have no \
             per-sample margin"
                .into(),
        )),
    }
}

/// Trains `name`'s tables on its captured `inputs` and, with
/// [`CalibrateConfig::sensitivity`], refits them with the end-task sensitivity of every
/// sample, the tables in place after the layers in `replaced`.
#[allow(clippy::too_many_arguments)]
fn train_for_task(
    model: &Model,
    runs: &[Vec<Tensor>],
    exact: Option<&[Vec<Tensor>]>,
    name: &str,
    inputs: &[Tensor],
    replaced: &mut Replacements<'_>,
    config: &CalibrateConfig,
) -> Result<Tables> {
    let layer = model.conv(name)?.layer.as_ref().expect("checked");
    let mut train = config.for_layer(model, name)?;
    if config.exact_targets && !config.independent && !replaced.is_empty() {
        train.target_outputs = Some(exact_layer_outputs(model, runs, name, layer)?);
    }
    let tables = train_layer(layer, inputs, &train)
        .map_err(|e| Error::Training(format!("layer {name:?}: {e}")))?;
    let Some(s) = config.sensitivity else {
        return Ok(tables);
    };
    let exact = exact.expect("exact outputs are computed with a sensitivity");
    let w = sensitivity_weights(model, runs, exact, name, replaced, &tables, s)?;
    let (lo, hi) = w
        .iter()
        .fold((f32::INFINITY, 0.0f32), |(l, h), &v| (l.min(v), h.max(v)));
    log::info!(
        "layer {name:?}: sensitivity weights of {} samples in [{lo:.3}, {hi:.3}]",
        w.len()
    );
    let weighted = TrainConfig {
        sample_weights: Some(w),
        ..train
    };
    train_layer(layer, inputs, &weighted)
        .map_err(|e| Error::Training(format!("layer {name:?}: {e}")))
}

/// Trains one layer's tables (the single call into the learner, so that a change of its
/// signature is one line here).
pub fn train_layer(layer: &ConvLayer, inputs: &[Tensor], config: &TrainConfig) -> Result<Tables> {
    learn::train(layer, inputs, config)
}

/// The chosen Conv nodes in graph order, checked to be replaceable.
fn chosen_in_order(model: &Model, layers: &[String]) -> Result<Vec<String>> {
    let mut chosen = Vec::new();
    for name in layers {
        let c = model.conv(name)?;
        if let Some(why) = &c.unsupported {
            return Err(Error::Model(format!(
                "Conv node {name:?} cannot be replaced: {why}"
            )));
        }
        if !chosen.contains(&c.index) {
            chosen.push(c.index);
        }
    }
    chosen.sort_unstable();
    Ok(chosen
        .iter()
        .map(|&i| model.convs()[i].name.clone())
        .collect())
}

/// The exact model's output of the Conv node `name` (`layer`) on every run, bias included.
fn exact_layer_outputs(
    model: &Model,
    runs: &[Vec<Tensor>],
    name: &str,
    layer: &ConvLayer,
) -> Result<Vec<Tensor>> {
    capture_inputs(model, runs, name, &Replacements::new(Backend::Cpu))?
        .iter()
        .map(|x| layer.exact(x))
        .collect()
}

/// Captures `name`'s inputs on every run with `replaced` in place.
fn capture_inputs(
    model: &Model,
    runs: &[Vec<Tensor>],
    name: &str,
    replaced: &Replacements<'_>,
) -> Result<Vec<Tensor>> {
    let map = replaced.map();
    runs.iter()
        .map(|r| {
            let mut run = model.run_with(r, &map, &[name.to_string()], false)?;
            Ok(run.conv_inputs.remove(name).expect("captured"))
        })
        .collect()
}

#[cfg(not(target_arch = "wasm32"))]
fn speed_of(ctx: &Context, layer: &ConvLayer, t: &Tables, x: &Tensor) -> Result<(f64, f64)> {
    kernel_times(ctx, layer, t, x)
}

#[cfg(target_arch = "wasm32")]
fn speed_of(_: &Context, _: &ConvLayer, _: &Tables, _: &Tensor) -> Result<(f64, f64)> {
    Err(Error::Unsupported(
        "kernel timing in calibrate_auto runs only natively".into(),
    ))
}

/// Median kernel times in ms of `layer` exactly (the default direct kernel) and by `tables`
/// (the default look-up kernels) on `input`, interleaved on the GPU (warm-up 2, 10 timed).
#[cfg(not(target_arch = "wasm32"))]
pub fn kernel_times(
    ctx: &Context,
    layer: &ConvLayer,
    tables: &Tables,
    input: &Tensor,
) -> Result<(f64, f64)> {
    use crate::bench::{time_interleaved, Method, Repetitions};
    use crate::gpu::{DirectConv, GpuConv};
    let direct = DirectConv::new(ctx, layer)?;
    let lookup = MaddnessConv::new(ctx, tables)?;
    let x = ctx.upload("speed input", input)?;
    let shape = direct.output_shape(input.shape())?;
    let (y0, y1) = (
        ctx.create_tensor("direct", &shape)?,
        ctx.create_tensor("lookup", &shape)?,
    );
    let methods = [
        Method {
            conv: &direct,
            input: &x,
            output: &y0,
        },
        Method {
            conv: &lookup,
            input: &x,
            output: &y1,
        },
    ];
    let reps = Repetitions {
        warmup: 2,
        timed: 10,
    };
    let t = pollster::block_on(time_interleaved(ctx, &methods, reps))?;
    Ok((t[0].median_ms, t[1].median_ms))
}

/// Learns tables for the Conv nodes `layers` (any order; trained in graph order) from the
/// calibration `runs`, the earlier layers running on `backend` while the later ones capture
/// their inputs. `progress` is told each layer's name as it starts. Returns (node name,
/// tables) in graph order.
pub fn calibrate(
    model: &Model,
    runs: &[Vec<Tensor>],
    layers: &[String],
    config: &CalibrateConfig,
    backend: Backend<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<(String, Tables)>> {
    if runs.is_empty() {
        return Err(Error::Argument("no calibration inputs were given".into()));
    }
    let names = chosen_in_order(model, layers)?;
    let mut replaced = Replacements::new(backend);
    let mut captured_exact: Option<Vec<BTreeMap<String, Tensor>>> = None;
    if config.independent {
        captured_exact = Some(
            runs.iter()
                .map(|r| {
                    Ok(model
                        .run_with(r, &BTreeMap::new(), &names, false)?
                        .conv_inputs)
                })
                .collect::<Result<_>>()?,
        );
    }
    let exact = match config.sensitivity {
        Some(_) => Some(exact_outputs(model, runs)?.0),
        None => None,
    };
    let mut trained = Vec::new();
    for name in &names {
        progress(name);
        let tables = match &captured_exact {
            Some(all) => {
                let inputs: Vec<Tensor> = all.iter().map(|m| m[name].clone()).collect();
                let mut alone = Replacements::new(backend);
                train_for_task(
                    model,
                    runs,
                    exact.as_deref(),
                    name,
                    &inputs,
                    &mut alone,
                    config,
                )?
            }
            None => {
                let inputs = capture_inputs(model, runs, name, &replaced)?;
                let t = train_for_task(
                    model,
                    runs,
                    exact.as_deref(),
                    name,
                    &inputs,
                    &mut replaced,
                    config,
                )?;
                replaced.push(name.clone(), t.clone())?;
                t
            }
        };
        trained.push((name.clone(), tables));
    }
    Ok(trained)
}

/// The end-task measure of [`compare`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// Agreement of the decisions `y > T` over all elements of each output (and the IoU of the
    /// positive sets).
    Threshold(f32),
    /// Agreement of the arg-max along an axis (negative: from the end) of each output.
    Argmax(isize),
    /// Boxes of a YOLOX detector output ([`boxes::decode_yolox`]), matched one to one:
    /// recall and precision against the exact model's boxes.
    Yolox(YoloxDecode),
}

impl std::str::FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Metric> {
        let bad = || {
            Error::Argument(format!(
                "metric {s:?}; expected threshold:T, argmax[:AXIS] or yolox[:SCORE[:NMS_IOU]]"
            ))
        };
        let mut parts = s.split(':');
        let kind = parts.next().unwrap_or("");
        let rest: Vec<&str> = parts.collect();
        let f = |v: &str| v.parse::<f32>().map_err(|_| bad());
        match (kind, rest.as_slice()) {
            ("threshold", [t]) => Ok(Metric::Threshold(f(t)?)),
            ("argmax", []) => Ok(Metric::Argmax(-1)),
            ("argmax", [a]) => a.parse().map(Metric::Argmax).map_err(|_| bad()),
            ("yolox", rest) if rest.len() <= 2 => {
                let mut d = YoloxDecode::default();
                if let Some(v) = rest.first() {
                    d.score = f(v)?;
                }
                if let Some(v) = rest.get(1) {
                    d.nms_iou = f(v)?;
                }
                Ok(Metric::Yolox(d))
            }
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Metric::Threshold(t) => write!(f, "threshold:{t}"),
            Metric::Argmax(a) => write!(f, "argmax:{a}"),
            Metric::Yolox(d) => write!(f, "yolox:{}:{}", d.score, d.nms_iou),
        }
    }
}

/// A task metric on one of the model's outputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Task {
    /// The measure.
    pub metric: Metric,
    /// Index of the output it reads (in [`Model::output_names`] order; 0 is the first).
    pub output: usize,
}

impl Task {
    /// The metric on the model's first output.
    pub fn first(metric: Metric) -> Task {
        Task { metric, output: 0 }
    }
}

/// What `--layers auto` must keep: a task metric and its bound.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// The metric's agreement (threshold: also the positives' IoU; argmax) or min(recall,
    /// precision) (yolox) on its output ≥ the value.
    Agreement(Task, f64),
    /// Every output's NMSE ≤ the value.
    Nmse(f64),
}

impl std::str::FromStr for Target {
    type Err = Error;
    /// `METRIC:VALUE`, e.g. `threshold:0.5:0.995`, `argmax:0.99`, `yolox:0.98`, `nmse:0.01`.
    fn from_str(s: &str) -> Result<Target> {
        let bad = |why: &str| {
            Error::Argument(format!(
                "target {s:?}: {why}; expected METRIC:VALUE, e.g. threshold:0.5:0.995, \
                 argmax:0.99, yolox:0.98 or nmse:0.01"
            ))
        };
        let (metric, value) = s.rsplit_once(':').ok_or_else(|| bad("no value"))?;
        let value: f64 = value
            .parse()
            .map_err(|_| bad("the value is not a number"))?;
        if !value.is_finite() || value < 0.0 {
            return Err(bad("the value must be a finite number ≥ 0"));
        }
        if metric == "nmse" {
            return Ok(Target::Nmse(value));
        }
        if value > 1.0 {
            return Err(bad("an agreement is at most 1"));
        }
        Ok(Target::Agreement(Task::first(metric.parse()?), value))
    }
}

impl Target {
    /// The task metric to measure (`None` for an NMSE target).
    pub fn task(&self) -> Option<Task> {
        match self {
            Target::Agreement(m, _) => Some(*m),
            Target::Nmse(_) => None,
        }
    }

    /// The measured value the target bounds: for an agreement target the task output's
    /// agreement — for `threshold` the smaller of it and the IoU of the positives, so that an
    /// output whose positives are rare (a detection map) cannot meet the target by predicting
    /// none; for `nmse` the worst output's NMSE.
    pub fn measured(&self, c: &Comparison) -> f64 {
        match self {
            Target::Agreement(..) => c
                .outputs
                .iter()
                .filter_map(|o| {
                    o.agreement
                        .map(|(a, _)| o.positives_iou.map_or(a, |iou| a.min(iou)))
                })
                .fold(f64::INFINITY, f64::min),
            Target::Nmse(_) => c.outputs.iter().map(|o| o.nmse).fold(0.0, f64::max),
        }
    }

    /// Whether `c` meets the target.
    pub fn met(&self, c: &Comparison) -> bool {
        let v = self.measured(c);
        match self {
            Target::Agreement(_, t) => v >= *t,
            Target::Nmse(t) => v <= *t,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Agreement(t, v) => write!(f, "{}:{v}", t.metric),
            Target::Nmse(v) => write!(f, "nmse:{v}"),
        }
    }
}

/// The error of one model output.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OutputError {
    /// The output's name.
    pub name: String,
    /// `Σ (y − ŷ)² / Σ (y − ȳ)²` over all runs and elements (ȳ: the global mean).
    pub nmse: f64,
    /// `1 − NMSE`.
    pub one_minus_nmse: f64,
    /// `‖y − ŷ‖ / ‖y‖`.
    pub relative_l2: f64,
    /// `max |y − ŷ|`.
    pub max_abs: f64,
    /// `mean |y − ŷ|`.
    pub mean_abs: f64,
    /// The task metric's agreement in `[0, 1]` with the count of decisions compared (for
    /// yolox: min(recall, precision) and the exact model's box count).
    pub agreement: Option<(f64, usize)>,
    /// threshold: `|E ∩ A| / |E ∪ A|` of the exact and approximate positives.
    pub positives_iou: Option<f64>,
    /// yolox: box counts and matches over all runs.
    pub boxes: Option<BoxAgreement>,
}

/// One replaced layer's error in place (on the inputs it saw with the earlier layers replaced).
#[derive(Clone, Debug, Default, Serialize)]
pub struct LayerError {
    /// The node name.
    pub name: String,
    /// Channel-wise NMSE ([`crate::metrics::nmse`]) over all runs.
    pub nmse: f64,
    /// `1 − NMSE`.
    pub one_minus_nmse: f64,
    /// The activation the graph applies to the layer's output and the NMSE after it, when it
    /// is not the identity.
    pub after_activation: Option<(crate::maddness::Activation, f64)>,
    /// Where the layer's time went over all runs.
    pub timing: LayerTiming,
}

/// The replaced model against the exact one.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Comparison {
    /// Per model output.
    pub outputs: Vec<OutputError>,
    /// Per replaced layer, in graph order.
    pub layers: Vec<LayerError>,
    /// Model calls.
    pub runs: usize,
    /// Wall time of the exact runs, milliseconds (all runs).
    pub exact_ms: f64,
    /// Wall time of the replaced runs, milliseconds (all runs; these also evaluate tract's
    /// exact conv at every replaced node, to measure it in place).
    pub approx_ms: f64,
}

/// `axis` of `t` counted from the front (a negative one from the back), refused outside it.
fn argmax_axis(t: &Tensor, axis: isize) -> Result<usize> {
    let rank = t.shape().len() as isize;
    let a = if axis < 0 { rank + axis } else { axis };
    if a < 0 || a >= rank {
        return Err(Error::Argument(format!(
            "argmax axis {axis} is outside an output of shape {:?}",
            t.shape()
        )));
    }
    Ok(a as usize)
}

/// For every position of `t` off `axis`, in row-major order: the index of the largest value
/// along `axis` (the first of equals), that value and the second largest (the largest again
/// when the axis has one entry).
fn top_two(t: &Tensor, axis: isize) -> Result<Vec<(usize, f32, f32)>> {
    let a = argmax_axis(t, axis)?;
    let n = t.shape()[a];
    let inner: usize = t.shape()[a + 1..].iter().product();
    let outer: usize = t.shape()[..a].iter().product();
    let d = t.data();
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let (mut best, mut top, mut second) = (0usize, f32::NEG_INFINITY, f32::NEG_INFINITY);
            for k in 0..n {
                let v = d[(o * n + k) * inner + i];
                if v > top {
                    (best, second, top) = (k, top, v);
                } else if v > second {
                    second = v;
                }
            }
            out.push((best, top, if n > 1 { second } else { top }));
        }
    }
    Ok(out)
}

fn decisions(t: &Tensor, metric: Metric) -> Result<Vec<i64>> {
    match metric {
        Metric::Threshold(th) => Ok(t.data().iter().map(|&v| (v > th) as i64).collect()),
        Metric::Argmax(axis) => Ok(top_two(t, axis)?
            .into_iter()
            .map(|(k, _, _)| k as i64)
            .collect()),
        Metric::Yolox(_) => Err(Error::Argument("yolox boxes are not decisions".into())),
    }
}

/// Height and width of the run's image: the last two dimensions of its first 4-D input.
fn image_size(run: &[Tensor]) -> Result<(usize, usize)> {
    run.iter()
        .find(|t| t.shape().len() == 4)
        .map(|t| (t.shape()[2], t.shape()[3]))
        .ok_or_else(|| {
            Error::Argument("the yolox metric needs a model with an N×C×H×W image input".into())
        })
}

/// The exact model's outputs on every run (computed once for many comparisons).
pub fn exact_outputs(model: &Model, runs: &[Vec<Tensor>]) -> Result<(Vec<Vec<Tensor>>, f64)> {
    let t = std::time::Instant::now();
    let out = runs
        .iter()
        .map(|r| model.run(r))
        .collect::<Result<Vec<_>>>()?;
    Ok((out, t.elapsed().as_secs_f64() * 1e3))
}

/// Runs the model exactly and with `replaced` on every run, and measures the difference; the
/// `task` metric is measured on its output.
pub fn compare(
    model: &Model,
    runs: &[Vec<Tensor>],
    replaced: &Replacements<'_>,
    task: Option<Task>,
) -> Result<Comparison> {
    let (exact, ms) = exact_outputs(model, runs)?;
    let mut c = compare_with(model, runs, &exact, replaced, task)?;
    c.exact_ms = ms;
    Ok(c)
}

/// [`compare`] against exact outputs computed before ([`exact_outputs`]).
pub fn compare_with(
    model: &Model,
    runs: &[Vec<Tensor>],
    exact: &[Vec<Tensor>],
    replaced: &Replacements<'_>,
    task: Option<Task>,
) -> Result<Comparison> {
    if let Some(t) = task {
        if t.output >= model.output_names().len() {
            return Err(Error::Argument(format!(
                "the task metric reads output {}, but the model has {} ({:?})",
                t.output,
                model.output_names().len(),
                model.output_names()
            )));
        }
    }
    let replace = replaced.map();
    let n_out = model.output_names().len();
    let mut approx_out: Vec<Vec<Tensor>> = vec![Vec::new(); n_out];
    let mut layer_pairs: BTreeMap<String, (Vec<Tensor>, Vec<Tensor>)> = BTreeMap::new();
    let mut timing: BTreeMap<String, LayerTiming> = BTreeMap::new();
    let mut cmp = Comparison {
        runs: runs.len(),
        ..Comparison::default()
    };
    for r in runs {
        let approx = model.run_with(r, &replace, &[], true)?;
        cmp.approx_ms += approx.total_ms;
        for (i, a) in approx.outputs.into_iter().enumerate() {
            approx_out[i].push(a);
        }
        for (name, (e, a)) in approx.replaced {
            let entry = layer_pairs.entry(name).or_default();
            entry.0.push(e);
            entry.1.push(a);
        }
        for (name, t) in approx.timing {
            timing.entry(name).or_default().add(&t);
        }
    }
    for (i, name) in model.output_names().iter().enumerate() {
        let metric = task.filter(|t| t.output == i).map(|t| t.metric);
        let (mut num, mut den, mut l2, mut max_abs, mut sum_abs, mut sum, mut count) =
            (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64, 0usize);
        for e in exact.iter().map(|o| &o[i]) {
            sum += e.data().iter().map(|&v| v as f64).sum::<f64>();
            count += e.len();
        }
        let mean = sum / count.max(1) as f64;
        let (mut agree, mut total, mut inter, mut union) = (0usize, 0usize, 0usize, 0usize);
        let mut boxes_all: Option<BoxAgreement> = None;
        for ((e, a), run) in exact.iter().map(|o| &o[i]).zip(&approx_out[i]).zip(runs) {
            for (&y, &yh) in e.data().iter().zip(a.data()) {
                let d = y as f64 - yh as f64;
                num += d * d;
                den += (y as f64 - mean).powi(2);
                l2 += (y as f64).powi(2);
                max_abs = max_abs.max(d.abs());
                sum_abs += d.abs();
            }
            match metric {
                None => {}
                Some(Metric::Yolox(d)) => {
                    let (h, w) = image_size(run)?;
                    let be = boxes::decode_yolox(e, h, w, &d)?;
                    let ba = boxes::decode_yolox(a, h, w, &d)?;
                    boxes_all
                        .get_or_insert_with(BoxAgreement::default)
                        .add(&boxes::match_boxes(&be, &ba, d.match_iou));
                }
                Some(m) => {
                    let (de, da) = (decisions(e, m)?, decisions(a, m)?);
                    agree += de.iter().zip(&da).filter(|(x, y)| x == y).count();
                    total += de.len();
                    if let Metric::Threshold(_) = m {
                        inter += de
                            .iter()
                            .zip(&da)
                            .filter(|(&x, &y)| x == 1 && y == 1)
                            .count();
                        union += de
                            .iter()
                            .zip(&da)
                            .filter(|(&x, &y)| x == 1 || y == 1)
                            .count();
                    }
                }
            }
        }
        let nmse = if den > 0.0 { num / den } else { 0.0 };
        cmp.outputs.push(OutputError {
            name: name.clone(),
            nmse,
            one_minus_nmse: 1.0 - nmse,
            relative_l2: if l2 > 0.0 { (num / l2).sqrt() } else { 0.0 },
            max_abs,
            mean_abs: sum_abs / count.max(1) as f64,
            agreement: match (metric, &boxes_all) {
                (Some(Metric::Yolox(_)), Some(b)) => Some((b.recall().min(b.precision()), b.exact)),
                (Some(_), _) => Some((agree as f64 / total.max(1) as f64, total)),
                (None, _) => None,
            },
            positives_iou: match metric {
                Some(Metric::Threshold(_)) => Some(if union > 0 {
                    inter as f64 / union as f64
                } else {
                    1.0
                }),
                _ => None,
            },
            boxes: boxes_all,
        });
    }
    for name in replaced.names() {
        let Some((e, a)) = layer_pairs.get(&name) else {
            continue;
        };
        let node = model.conv(&name)?;
        let kind = node.layer.as_ref().expect("replaced").spec().kind;
        let (a, e) = (Tensor::concat_batch(a)?, Tensor::concat_batch(e)?);
        let nmse = crate::metrics::nmse(kind, &a, &e)?;
        let act = node.activation;
        let after = (!act.is_identity())
            .then(|| crate::maddness::nmse_after(kind, act, &a, &e).map(|v| (act, v)))
            .transpose()?;
        cmp.layers.push(LayerError {
            timing: timing.get(&name).copied().unwrap_or_default(),
            name,
            nmse,
            one_minus_nmse: 1.0 - nmse,
            after_activation: after,
        });
    }
    let order = |n: &str| model.conv(n).map(|c| c.index).unwrap_or(usize::MAX);
    cmp.layers.sort_by_key(|l| order(&l.name));
    Ok(cmp)
}

/// Calibration runs split by [`holdout`].
#[derive(Clone, Debug)]
pub struct Split {
    /// Runs the tables are trained on.
    pub train: Vec<Vec<Tensor>>,
    /// Runs the whole model is measured on.
    pub held: Vec<Vec<Tensor>>,
}

/// What [`calibrate_auto`] found.
#[derive(Clone, Debug)]
pub struct AutoResult {
    /// The kept layers' tables, in graph order.
    pub tables: Vec<(String, Tables)>,
    /// Every candidate, in the order tried.
    pub steps: Vec<AutoStep>,
    /// The model with the kept layers against the exact one on the held-out runs.
    pub comparison: Comparison,
}

/// Splits calibration runs into a training and a held-out part: with several runs the last
/// `⌈fraction · runs⌉` are held out (at least one of each part); with one run, its inputs whose
/// declared first dimension is free (e.g. silero VAD's frames) are cut there: the last
/// `⌈fraction · rows⌉` rows are held out, the other inputs (e.g. the LSTM state) go to both.
pub fn holdout(model: &Model, runs: &[Vec<Tensor>], fraction: f64) -> Result<Split> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::Argument(format!(
            "holdout fraction {fraction}: must be strictly between 0 and 1"
        )));
    }
    let cut = |n: usize| ((fraction * n as f64).ceil() as usize).clamp(1, n - 1);
    if runs.len() >= 2 {
        let k = runs.len() - cut(runs.len());
        return Ok(Split {
            train: runs[..k].to_vec(),
            held: runs[k..].to_vec(),
        });
    }
    let Some(run) = runs.first() else {
        return Err(Error::Argument("no calibration inputs were given".into()));
    };
    let free: Vec<usize> = model
        .declared_input_shapes()
        .iter()
        .enumerate()
        .filter(|(i, d)| {
            d.first() == Some(&None) && run[*i].shape().first().copied().unwrap_or(0) >= 2
        })
        .map(|(i, _)| i)
        .collect();
    let rows: Vec<usize> = free.iter().map(|&i| run[i].shape()[0]).collect();
    let Some(&n) = rows.first() else {
        return Err(Error::Argument(
            "cannot hold out part of the calibration inputs: they make one model run and no \
             input has a free first dimension to cut; give more input rows or files"
                .into(),
        ));
    };
    if rows.iter().any(|&r| r != n) {
        return Err(Error::Argument(format!(
            "cannot hold out: the inputs with a free first dimension have different lengths {rows:?}"
        )));
    }
    let k = n - cut(n);
    let part = |a: usize, b: usize| -> Result<Vec<Tensor>> {
        run.iter()
            .enumerate()
            .map(|(i, t)| {
                if free.contains(&i) {
                    t.slice_batch(a, b)
                } else {
                    Ok(t.clone())
                }
            })
            .collect()
    };
    Ok(Split {
        train: vec![part(0, k)?],
        held: vec![part(k, n)?],
    })
}

/// Settings of [`calibrate_auto`].
#[derive(Clone, Debug)]
pub struct AutoConfig {
    /// The learner and sequential/independent, as for [`calibrate`].
    pub calibrate: CalibrateConfig,
    /// What the whole model must keep on the held-out runs.
    pub target: Target,
    /// On the GPU: drop a candidate whose look-up kernels are less than this many times
    /// faster than the direct kernel on its input (measured on the adapter); `None` keeps
    /// layers whatever their speed (and on the CPU mirror no speed is measured).
    pub min_speedup: Option<f64>,
}

/// One candidate of [`calibrate_auto`].
#[derive(Clone, Debug, Serialize)]
pub struct AutoStep {
    /// The Conv node.
    pub name: String,
    /// Its share of the model's conv MACs.
    pub mac_share: f64,
    /// The target's measured value on the held-out runs with this layer added.
    pub measured: f64,
    /// Kept (the target held) or dropped.
    pub kept: bool,
    /// Why it was not tried, failed to train or was too slow (`None` when it was measured).
    pub skipped: Option<String>,
    /// Median kernel times (direct, look-ups) in ms on the GPU, when measured.
    pub kernel_ms: Option<(f64, f64)>,
}

/// Fails when the exact model gives the task nothing to agree on in the held-out runs — no
/// value above a threshold target's T, no box for a yolox target: every candidate would then
/// "meet" the target, whatever it does to the model.
fn check_target_measurable(
    model: &Model,
    held: &[Vec<Tensor>],
    exact: &[Vec<Tensor>],
    target: Target,
) -> Result<()> {
    let Some(task) = target.task() else {
        return Ok(());
    };
    let name = model
        .output_names()
        .get(task.output)
        .cloned()
        .unwrap_or_default();
    let positives: usize = match task.metric {
        Metric::Threshold(t) => exact
            .iter()
            .map(|o| o[task.output].data().iter().filter(|&&v| v > t).count())
            .sum(),
        Metric::Yolox(d) => {
            let mut n = 0;
            for (o, run) in exact.iter().zip(held) {
                let (h, w) = image_size(run)?;
                n += boxes::decode_yolox(&o[task.output], h, w, &d)?.len();
            }
            n
        }
        Metric::Argmax(_) => return Ok(()),
    };
    if positives == 0 {
        return Err(Error::Argument(format!(
            "the exact model's output {name:?} has no {} on the {} held-out run(s), so the \
             target {target} cannot tell a harmless layer from a harmful one; calibrate on \
             inputs where the model fires (e.g. photos with text for a text detector)",
            match task.metric {
                Metric::Yolox(_) => "box".to_string(),
                Metric::Threshold(t) => format!("value above {t}"),
                Metric::Argmax(_) => unreachable!(),
            },
            held.len()
        )));
    }
    Ok(())
}

/// Greedy layer choice: `candidates` in order of MACs (largest first); each is trained
/// sequentially on the split's training runs (with the layers kept so far replaced), dropped
/// when its look-ups are slower than `min_speedup` on the GPU, and kept only if the whole model
/// on the held-out runs still meets the target.
pub fn calibrate_auto(
    model: &Model,
    split: &Split,
    candidates: &[String],
    auto: &AutoConfig,
    backend: Backend<'_>,
    progress: &mut dyn FnMut(&AutoStep),
) -> Result<AutoResult> {
    let (train, held) = (&split.train, &split.held);
    let (config, target) = (&auto.calibrate, auto.target);
    let total: u64 = model.convs().iter().map(|c| c.macs()).sum();
    let mut order = chosen_in_order(model, candidates)?;
    order.sort_by_key(|n| std::cmp::Reverse(model.conv(n).map(|c| c.macs()).unwrap_or(0)));
    let (exact, exact_ms) = exact_outputs(model, held)?;
    check_target_measurable(model, held, &exact, target)?;
    let mut kept = Replacements::new(backend);
    let mut exact_train: Option<Vec<BTreeMap<String, Tensor>>> = None;
    let sens_exact = match config.sensitivity {
        Some(_) => Some(exact_outputs(model, train)?.0),
        None => None,
    };
    let mut steps = Vec::new();
    for name in order {
        let share = model.conv(&name)?.macs() as f64 / total.max(1) as f64;
        let inputs = if config.independent {
            if exact_train.is_none() {
                let all: Vec<String> = candidates.to_vec();
                exact_train = Some(
                    train
                        .iter()
                        .map(|r| {
                            Ok(model
                                .run_with(r, &BTreeMap::new(), &all, false)?
                                .conv_inputs)
                        })
                        .collect::<Result<_>>()?,
                );
            }
            exact_train
                .as_ref()
                .expect("captured")
                .iter()
                .map(|m| m[&name].clone())
                .collect()
        } else {
            capture_inputs(model, train, &name, &kept)?
        };
        let mut alone;
        let in_place = if config.independent {
            alone = Replacements::new(backend);
            &mut alone
        } else {
            &mut kept
        };
        let trained = train_for_task(
            model,
            train,
            sens_exact.as_deref(),
            &name,
            &inputs,
            in_place,
            config,
        )
        .map(|t| (t, inputs));
        let mut step = AutoStep {
            name: name.clone(),
            mac_share: share,
            measured: f64::NAN,
            kept: false,
            skipped: None,
            kernel_ms: None,
        };
        match trained {
            Err(e) => step.skipped = Some(e.to_string()),
            Ok((t, inputs)) => {
                if let (Backend::Gpu(ctx), Some(min)) = (backend, auto.min_speedup) {
                    let layer = model.conv(&name)?.layer.as_ref().expect("checked");
                    let (d, l) = speed_of(ctx, layer, &t, &inputs[0])?;
                    step.kernel_ms = Some((d, l));
                    if d / l < min {
                        step.skipped = Some(format!(
                            "look-ups {:.2}× the direct kernel's speed ({l:.3} vs {d:.3} ms), \
                             below the minimum speedup {min}",
                            d / l
                        ));
                    }
                }
                if step.skipped.is_none() {
                    kept.push(name.clone(), t)?;
                    let c = compare_with(model, held, &exact, &kept, target.task())?;
                    step.kept = target.met(&c);
                    step.measured = target.measured(&c);
                    if !step.kept {
                        kept.pop();
                    }
                }
            }
        }
        progress(&step);
        steps.push(step);
    }
    let mut c = compare_with(model, held, &exact, &kept, target.task())?;
    c.exact_ms = exact_ms;
    let mut tables = kept.tables();
    tables.sort_by_key(|(n, _)| model.conv(n).map(|c| c.index).unwrap_or(usize::MAX));
    Ok(AutoResult {
        tables,
        steps,
        comparison: c,
    })
}
