//! Training windows: which output positions the learners train on (a seeded uniform sample)
//! and their extraction from the layer's inputs into one matrix per group.
//!
//! A window is the input patch of one output position of one group, `D = (C/groups)·KH·KW`
//! values flattened channel-first (`d = (ci·KH + ky)·KW + kx`, zeros where it reaches into
//! padding; [`mirror::window_into`](crate::maddness::mirror::window_into)). Positions are
//! numbered globally over the concatenation of all inputs (input by input,
//! `q = (n·OH + oy)·OW + ox` inside each). [`Windows`] holds `N` of them as a row-major `N×D`
//! f32 matrix.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::rng::SplitMix64;
use crate::spec::{ConvSpec, Geometry};
use crate::tensor::Tensor;

/// Training windows of one group: an `N×D` f32 matrix, row-major, rows channel-first
/// (`d = (ci·KH + ky)·KW + kx`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Windows {
    /// Rows `N`.
    pub(crate) rows: usize,
    /// Columns `D`.
    pub(crate) dim: usize,
    /// `N·D` values.
    pub(crate) data: Vec<f32>,
}

impl Windows {
    /// Wraps an `N×D` matrix; fails when the length does not match or a value is not finite.
    pub(crate) fn new(rows: usize, dim: usize, data: Vec<f32>) -> Result<Windows> {
        if rows.checked_mul(dim) != Some(data.len()) || rows == 0 || dim == 0 {
            return Err(Error::Shape(format!(
                "windows: {} values do not form a non-empty {rows}×{dim} matrix",
                data.len()
            )));
        }
        if rows > u32::MAX as usize {
            return Err(Error::TooLarge {
                what: "training windows".into(),
                value: rows as u64,
                limit: u32::MAX as u64,
                why: "32-bit row indices of the trainer".into(),
            });
        }
        crate::tensor::check_finite("training windows", &data)?;
        Ok(Windows { rows, dim, data })
    }

    /// Row `i`.
    pub(crate) fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows `rows` (each `< N`), in that order, as a new matrix.
    pub(crate) fn select(&self, rows: &[u64]) -> Windows {
        let d = self.dim;
        let mut data = vec![0.0f32; rows.len() * d];
        data.par_chunks_mut(d)
            .zip(rows.par_iter())
            .for_each(|(dst, &r)| dst.copy_from_slice(self.row(r as usize)));
        Windows {
            rows: rows.len(),
            dim: d,
            data,
        }
    }
}

/// The training positions: global window indices into the concatenation of all inputs'
/// positions (input by input, `q = (n·OH + oy)·OW + ox` inside each), sorted. All of `0..total`
/// when `max` is `None` or at least `total`; otherwise `max` distinct indices drawn uniformly
/// without replacement (Floyd's algorithm) with a SplitMix64 generator seeded by `seed`.
pub(crate) fn sample_positions(total: u64, max: Option<usize>, seed: u64) -> Vec<u64> {
    match max {
        Some(k) if (k as u64) < total => {
            let mut rng = SplitMix64(seed);
            let mut chosen: HashSet<u64> = HashSet::with_capacity(k);
            for j in (total - k as u64)..total {
                let t = rng.below_or_eq(j);
                if !chosen.insert(t) {
                    chosen.insert(j);
                }
            }
            let mut v: Vec<u64> = chosen.into_iter().collect();
            v.sort_unstable();
            v
        }
        _ => (0..total).collect(),
    }
}

/// The weight of each training window at the global `positions` (see [`sample_positions`]):
/// the weight of the sample (batch row, counted over all `inputs` in order) it lies in, scaled
/// to mean 1 over the windows. Errors if the chosen windows all weigh 0.
pub(crate) fn window_weights(
    spec: &ConvSpec,
    inputs: &[Tensor],
    positions: &[u64],
    sample_weights: &[f32],
) -> Result<Vec<f64>> {
    // (first global position, first global sample, positions per sample) of each input.
    let mut starts = Vec::with_capacity(inputs.len());
    let (mut pos, mut sample) = (0u64, 0usize);
    for x in inputs {
        let g = spec.geometry(x.shape())?;
        starts.push((pos, sample, g.positions() as u64));
        pos += (g.batch * g.positions()) as u64;
        sample += g.batch;
    }
    let raw: Vec<f64> = positions
        .iter()
        .map(|&p| {
            let i = starts.partition_point(|s| s.0 <= p) - 1;
            let (p0, s0, per) = starts[i];
            sample_weights
                .get(s0 + ((p - p0) / per) as usize)
                .map(|&w| w as f64)
                .ok_or_else(|| {
                    Error::Argument(format!(
                        "window {p} lies in sample {} but {} sample weights were given",
                        s0 + ((p - p0) / per) as usize,
                        sample_weights.len()
                    ))
                })
        })
        .collect::<Result<_>>()?;
    let sum: f64 = raw.iter().sum();
    if sum.is_nan() || sum <= 0.0 {
        return Err(Error::Training(format!(
            "the {} training windows all lie in samples of weight 0",
            raw.len()
        )));
    }
    let scale = raw.len() as f64 / sum;
    Ok(raw.iter().map(|w| w * scale).collect())
}

/// Extracts the windows of group `group` at the given global positions (see
/// [`sample_positions`]) from `inputs` (each `N×C×H×W` or `N×C×L`) into an `N×D` matrix.
pub(crate) fn extract_windows(
    spec: &ConvSpec,
    inputs: &[Tensor],
    positions: &[u64],
    group: usize,
) -> Result<Windows> {
    let geoms: Vec<Geometry> = inputs
        .iter()
        .map(|x| spec.geometry(x.shape()))
        .collect::<Result<_>>()?;
    let geom0 = geoms
        .first()
        .ok_or_else(|| Error::Argument("no training inputs were given".into()))?;
    if group >= geom0.groups {
        return Err(Error::Argument(format!(
            "group {group} does not exist (the layer has {})",
            geom0.groups
        )));
    }
    let d = geom0.window_len();
    // Start of each input's positions in the global numbering.
    let mut starts = Vec::with_capacity(geoms.len());
    let mut acc = 0u64;
    for g in &geoms {
        starts.push(acc);
        acc += (g.batch * g.positions()) as u64;
    }
    if let Some(&p) = positions.iter().find(|&&p| p >= acc) {
        return Err(Error::Argument(format!(
            "window position {p} is outside the {acc} windows of the inputs"
        )));
    }
    let len = positions
        .len()
        .checked_mul(d)
        .ok_or_else(|| Error::Shape("window matrix size overflows".into()))?;
    let mut data = vec![0.0f32; len];
    data.par_chunks_mut(d)
        .zip(positions.par_iter())
        .try_for_each(|(row, &p)| {
            let i = starts.partition_point(|&s| s <= p) - 1;
            let g = &geoms[i];
            let q = (p - starts[i]) as usize;
            let (n, r) = (q / g.positions(), q % g.positions());
            crate::maddness::mirror::window_into(
                g,
                inputs[i].data(),
                n,
                group,
                r / g.out_w,
                r % g.out_w,
                row,
            )
        })?;
    Windows::new(positions.len(), d, data)
}

/// The rows of `outputs` (one per training input, `[N, O, OH, OW]` / `[N, O, OL]`, bias
/// included) at the global `positions` (see [`sample_positions`]) for `group`'s output
/// channels, bias `bias` of the group subtracted: an `N×Mg` matrix in the order of
/// [`extract_windows`]' rows. The shapes were checked against the inputs' geometries.
pub(crate) fn extract_outputs(
    spec: &ConvSpec,
    outputs: &[Tensor],
    positions: &[u64],
    group: usize,
    bias: &[f32],
) -> Result<Vec<f32>> {
    let mg = bias.len();
    let mut starts = Vec::with_capacity(outputs.len());
    let mut acc = 0u64;
    for y in outputs {
        let s = y.shape();
        if s.len() < 3 || s[1] != spec.out_channels {
            return Err(Error::Shape(format!(
                "target output of shape {s:?} does not hold {} output channels",
                spec.out_channels
            )));
        }
        let per: usize = s[2..].iter().product();
        starts.push((acc, per));
        acc += (s[0] * per) as u64;
    }
    if let Some(&p) = positions.iter().find(|&&p| p >= acc) {
        return Err(Error::Argument(format!(
            "window position {p} is outside the {acc} positions of the target outputs"
        )));
    }
    let mut rows = vec![0.0f32; positions.len() * mg];
    rows.par_chunks_mut(mg.max(1))
        .zip(positions.par_iter())
        .for_each(|(row, &p)| {
            let i = starts.partition_point(|s| s.0 <= p) - 1;
            let (p0, per) = starts[i];
            let q = (p - p0) as usize;
            let (n, r) = (q / per, q % per);
            let y = outputs[i].data();
            for (m, (v, b)) in row.iter_mut().zip(bias).enumerate() {
                *v = y[(n * spec.out_channels + group * mg + m) * per + r] - b;
            }
        });
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_weights_follow_their_samples() {
        // 1-D, kernel 1: a [2, 1, 3] and a [1, 1, 3] input; 9 windows, 3 per sample.
        let spec = ConvSpec::conv1d(1, 1, 1);
        let inputs = [
            Tensor::zeros(vec![2, 1, 3]).unwrap(),
            Tensor::zeros(vec![1, 1, 3]).unwrap(),
        ];
        let w = window_weights(&spec, &inputs, &[0, 2, 3, 8], &[1.0, 3.0, 0.0]).unwrap();
        // raw 1, 1, 3, 0 → mean 1.25
        let expect = [0.8, 0.8, 2.4, 0.0];
        for (i, (a, b)) in w.iter().zip(expect).enumerate() {
            assert!((a - b).abs() < 1e-12, "window {i}: {a} vs {b}");
        }
        let err = window_weights(&spec, &inputs, &[8], &[1.0, 3.0, 0.0]).unwrap_err();
        assert!(err.to_string().contains("weight 0"), "{err}");
        assert!(window_weights(&spec, &inputs, &[8], &[1.0, 3.0]).is_err());
    }

    #[test]
    fn sampling_is_seeded_uniform_and_distinct() {
        let a = sample_positions(1000, Some(100), 7);
        let b = sample_positions(1000, Some(100), 7);
        let c = sample_positions(1000, Some(100), 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 100);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        assert!(a.iter().all(|&p| p < 1000));
        assert_eq!(sample_positions(5, Some(100), 0), vec![0, 1, 2, 3, 4]);
        assert_eq!(sample_positions(5, None, 0), vec![0, 1, 2, 3, 4]);
        // Uniform: over many seeds each of 10 positions is drawn about half the time.
        let mut hits = [0usize; 10];
        for seed in 0..4000 {
            for p in sample_positions(10, Some(5), seed) {
                hits[p as usize] += 1;
            }
        }
        for (i, &h) in hits.iter().enumerate() {
            assert!(
                (1800..2200).contains(&h),
                "position {i} drawn {h} times of 4000"
            );
        }
    }
}
