//! Calibration of chosen Conv nodes of a [`Model`] and the comparison of a replaced model with
//! the exact one.
//!
//! * [`calibrate`] — sequential by default (DESIGN.md §7): layer `k` learns on its inputs
//!   captured from runs with layers `0..k` already replaced; `independent` trains every layer on
//!   the exact model's inputs.
//! * [`compare`] — per output NMSE (global variance), 1 − NMSE, relative L2 and max abs; per
//!   replaced layer its NMSE in place (channel-wise, [`crate::metrics::nmse`]); the task metric
//!   ([`Metric`]).
//!
//! Inputs are runs: one `Vec<Tensor>` per model call, in [`Model::input_names`] order.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Model, Replace};
use crate::error::{Error, Result};
use crate::layer::ConvLayer;
use crate::maddness::{learn, Tables, TrainConfig};
use crate::tensor::Tensor;

/// Settings of [`calibrate`].
#[derive(Clone, Debug, Default)]
pub struct CalibrateConfig {
    /// The learner's settings, used for every layer.
    pub train: TrainConfig,
    /// Train every layer on the exact model's inputs instead of sequentially.
    pub independent: bool,
}

/// Trains one layer's tables (the single call into the learner, so that a change of its
/// signature is one line here).
pub fn train_layer(layer: &ConvLayer, inputs: &[Tensor], config: &TrainConfig) -> Result<Tables> {
    learn::train(layer, inputs, config)
}

/// Learns tables for the Conv nodes `layers` (any order; trained in graph order) from the
/// calibration `runs`. `progress` is told each layer's name as it starts. Returns
/// (node name, tables) in graph order.
pub fn calibrate(
    model: &Model,
    runs: &[Vec<Tensor>],
    layers: &[String],
    config: &CalibrateConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<(String, Tables)>> {
    if runs.is_empty() {
        return Err(Error::Argument("no calibration inputs were given".into()));
    }
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
    let names: Vec<String> = chosen
        .iter()
        .map(|&i| model.convs()[i].name.clone())
        .collect();
    let mut trained: Vec<(String, Tables)> = Vec::new();
    let mut captured_exact: Option<Vec<BTreeMap<String, Tensor>>> = None;
    if config.independent {
        captured_exact = Some(
            runs.iter()
                .map(|r| Ok(model.run_with(r, &BTreeMap::new(), &names)?.conv_inputs))
                .collect::<Result<_>>()?,
        );
    }
    for name in &names {
        progress(name);
        let inputs: Vec<Tensor> = match &captured_exact {
            Some(all) => all.iter().map(|m| m[name].clone()).collect(),
            None => {
                let replace: BTreeMap<String, Replace<'_>> = trained
                    .iter()
                    .map(|(n, t)| (n.clone(), Replace::Tables(t)))
                    .collect();
                runs.iter()
                    .map(|r| {
                        let mut run = model.run_with(r, &replace, std::slice::from_ref(name))?;
                        Ok(run.conv_inputs.remove(name).expect("captured"))
                    })
                    .collect::<Result<_>>()?
            }
        };
        let layer = model.conv(name)?.layer.as_ref().expect("checked");
        let tables = train_layer(layer, &inputs, &config.train)
            .map_err(|e| Error::Training(format!("layer {name:?}: {e}")))?;
        trained.push((name.clone(), tables));
    }
    Ok(trained)
}

/// The end-task measure of [`compare`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// Agreement of the decisions `y > T` over all elements of each output.
    Threshold(f32),
    /// Agreement of the arg-max along an axis (negative: from the end) of each output.
    Argmax(isize),
}

impl std::str::FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Metric> {
        let bad = || {
            Error::Argument(format!(
                "metric {s:?}; expected threshold:T or argmax[:AXIS]"
            ))
        };
        match s.split_once(':') {
            Some(("threshold", t)) => t.parse().map(Metric::Threshold).map_err(|_| bad()),
            Some(("argmax", a)) => a.parse().map(Metric::Argmax).map_err(|_| bad()),
            None if s == "argmax" => Ok(Metric::Argmax(-1)),
            _ => Err(bad()),
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
    /// The task metric's agreement in `[0, 1]`, with the count of decisions compared.
    pub agreement: Option<(f64, usize)>,
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
}

fn decisions(t: &Tensor, metric: Metric) -> Result<Vec<i64>> {
    match metric {
        Metric::Threshold(th) => Ok(t.data().iter().map(|&v| (v > th) as i64).collect()),
        Metric::Argmax(axis) => {
            let rank = t.shape().len() as isize;
            let a = if axis < 0 { rank + axis } else { axis };
            if a < 0 || a >= rank {
                return Err(Error::Argument(format!(
                    "argmax axis {axis} is outside an output of shape {:?}",
                    t.shape()
                )));
            }
            let a = a as usize;
            let n = t.shape()[a];
            let inner: usize = t.shape()[a + 1..].iter().product();
            let outer: usize = t.shape()[..a].iter().product();
            let d = t.data();
            let mut out = Vec::with_capacity(outer * inner);
            for o in 0..outer {
                for i in 0..inner {
                    let mut best = (0usize, f32::NEG_INFINITY);
                    for k in 0..n {
                        let v = d[(o * n + k) * inner + i];
                        if v > best.1 {
                            best = (k, v);
                        }
                    }
                    out.push(best.0 as i64);
                }
            }
            Ok(out)
        }
    }
}

/// Runs the model exactly and with the `tables` replacing their nodes on every run, and
/// measures the difference.
pub fn compare(
    model: &Model,
    runs: &[Vec<Tensor>],
    tables: &[(String, Tables)],
    metric: Option<Metric>,
) -> Result<Comparison> {
    let replace: BTreeMap<String, Replace<'_>> = tables
        .iter()
        .map(|(n, t)| (n.clone(), Replace::Tables(t)))
        .collect();
    let n_out = model.output_names().len();
    let mut exact_out: Vec<Vec<Tensor>> = vec![Vec::new(); n_out];
    let mut approx_out: Vec<Vec<Tensor>> = vec![Vec::new(); n_out];
    let mut layer_pairs: BTreeMap<String, (Vec<Tensor>, Vec<Tensor>)> = BTreeMap::new();
    for r in runs {
        let exact = model.run(r)?;
        let approx = model.run_with(r, &replace, &[])?;
        for (i, (e, a)) in exact.into_iter().zip(approx.outputs).enumerate() {
            exact_out[i].push(e);
            approx_out[i].push(a);
        }
        for (name, (e, a)) in approx.replaced {
            let entry = layer_pairs.entry(name).or_default();
            entry.0.push(e);
            entry.1.push(a);
        }
    }
    let mut cmp = Comparison {
        runs: runs.len(),
        ..Comparison::default()
    };
    for (i, name) in model.output_names().iter().enumerate() {
        let (mut num, mut den, mut l2, mut max_abs, mut sum, mut count) =
            (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64, 0usize);
        for e in &exact_out[i] {
            sum += e.data().iter().map(|&v| v as f64).sum::<f64>();
            count += e.len();
        }
        let mean = sum / count.max(1) as f64;
        let (mut agree, mut total) = (0usize, 0usize);
        for (e, a) in exact_out[i].iter().zip(&approx_out[i]) {
            for (&y, &yh) in e.data().iter().zip(a.data()) {
                let d = y as f64 - yh as f64;
                num += d * d;
                den += (y as f64 - mean).powi(2);
                l2 += (y as f64).powi(2);
                max_abs = max_abs.max(d.abs());
            }
            if let Some(m) = metric {
                let (de, da) = (decisions(e, m)?, decisions(a, m)?);
                agree += de.iter().zip(&da).filter(|(x, y)| x == y).count();
                total += de.len();
            }
        }
        let nmse = if den > 0.0 { num / den } else { 0.0 };
        cmp.outputs.push(OutputError {
            name: name.clone(),
            nmse,
            one_minus_nmse: 1.0 - nmse,
            relative_l2: if l2 > 0.0 { (num / l2).sqrt() } else { 0.0 },
            max_abs,
            agreement: metric.map(|_| (agree as f64 / total.max(1) as f64, total)),
        });
    }
    for (name, _) in tables {
        let Some((e, a)) = layer_pairs.get(name) else {
            continue;
        };
        let kind = model
            .conv(name)?
            .layer
            .as_ref()
            .expect("replaced")
            .spec()
            .kind;
        let nmse =
            crate::metrics::nmse(kind, &Tensor::concat_batch(a)?, &Tensor::concat_batch(e)?)?;
        cmp.layers.push(LayerError {
            name: name.clone(),
            nmse,
            one_minus_nmse: 1.0 - nmse,
        });
    }
    Ok(cmp)
}
