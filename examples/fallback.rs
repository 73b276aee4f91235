//! "Exact where the tables are unsure" (issue 13, item 5), measured before it is built: how
//! much of the held-out error would be removed by computing the least confident positions
//! exactly, for a confidence the encoder can compute for free.
//!
//! For every real layer: tables trained on `train.npy` (the default learner); on `test.npy`,
//! each output position's squared error against `test_expected.npy` and two confidences from
//! the encoder's own comparisons (each split value's distance to its threshold, in units of
//! that window dimension's standard deviation on the input):
//!
//! * `min-margin` — the smallest distance over every codebook and level;
//! * `near-count` — the number of codebooks with a level closer than 0.1 standard deviations.
//!
//! The positions ranked least confident first are replaced by their exact outputs, for
//! fractions of 1–20 % of the positions, against a random choice (what the confidence must
//! beat) and the oracle (the positions with the largest errors, an upper bound). Prints
//! 1 − NMSE for each.
//!
//! ```text
//! cargo run --release --example fallback -- [--data ../shared/data] [--layers A,B] [--codebooks 32]
//! ```

mod common;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use maddconv::maddness::learn::TrainConfig;
use maddconv::maddness::{mirror, Tables};
use maddconv::rng::SplitMix64;
use maddconv::Tensor;

const FRACTIONS: [f64; 5] = [0.01, 0.02, 0.05, 0.10, 0.20];

/// Per output position (`q = (n·OH + oy)·OW + ox`, group 0): the smallest margin over every
/// codebook and level, and the number of codebooks with a margin under `near`.
fn confidences(t: &Tables, x: &Tensor, near: f64) -> Result<(Vec<f64>, Vec<f64>)> {
    if t.groups() != 1 {
        bail!("only single-group layers are measured here");
    }
    let geom = t.spec.geometry(x.shape())?;
    let d = geom.window_len();
    let q_total = geom.batch * geom.positions();
    let mut windows = vec![0.0f32; q_total * d];
    for q in 0..q_total {
        let (n, p) = (q / geom.positions(), q % geom.positions());
        let (oy, ox) = (p / geom.out_w, p % geom.out_w);
        mirror::window_into(
            &geom,
            x.data(),
            n,
            0,
            oy,
            ox,
            &mut windows[q * d..(q + 1) * d],
        )?;
    }
    let mut sd = vec![0.0f64; d];
    for j in 0..d {
        let (mut s, mut s2) = (0.0f64, 0.0f64);
        for q in 0..q_total {
            let v = windows[q * d + j] as f64;
            s += v;
            s2 += v * v;
        }
        let m = s / q_total as f64;
        sd[j] = (s2 / q_total as f64 - m * m).max(0.0).sqrt().max(1e-12);
    }
    let (mut min_margin, mut near_count) = (vec![0.0f64; q_total], vec![0.0f64; q_total]);
    for q in 0..q_total {
        let a = &windows[q * d..(q + 1) * d];
        let (mut lo, mut count) = (f64::INFINITY, 0usize);
        for c in 0..t.codebooks {
            let mut i = 0usize;
            let mut cb = f64::INFINITY;
            let (depth, slots) = (t.depth, t.level_slots());
            for level in 0..depth {
                let dim = t.split_dims[c * depth + level] as usize;
                let thr = t.thresholds[(c * depth + level) * slots + i];
                cb = cb.min((a[dim] - thr).abs() as f64 / sd[dim]);
                i = 2 * i + usize::from(a[dim] > thr);
            }
            lo = lo.min(cb);
            count += usize::from(cb < near);
        }
        min_margin[q] = lo;
        near_count[q] = -(count as f64);
    }
    Ok((min_margin, near_count))
}

fn main() -> Result<()> {
    let mut data = common::default_data_dir();
    let mut only: Option<Vec<String>> = None;
    let mut codebooks = 32usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--data" => data = PathBuf::from(value()?),
            "--layers" => only = Some(value()?.split(',').map(str::to_string).collect()),
            "--codebooks" => codebooks = value()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    println!(
        "| layer | C | exact at | none | random | min-margin | near-count | oracle (largest errors) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for layer in common::chosen_layers(&data, &only)? {
        if layer.spec.groups != 1 {
            continue;
        }
        let (w, b) = (layer.weight()?, layer.bias()?);
        let config = TrainConfig {
            codebooks: Some(codebooks),
            ..TrainConfig::default()
        };
        let (tables, _) =
            common::train_secs(&layer.spec, &w, b.as_ref(), &layer.train()?, &config)?;
        let (x, y) = (layer.test()?, layer.test_expected()?);
        let yh = mirror::apply(&tables, &x)?;
        let (n, o) = (y.shape()[0], y.shape()[1]);
        let p = y.len() / n / o;
        // Per-position squared error and the per-channel variance (the NMSE's denominator).
        let mut err = vec![0.0f64; n * p];
        let mut den = 0.0f64;
        for ch in 0..o {
            let idx = |i: usize, j: usize| (i * o + ch) * p + j;
            let mean = (0..n)
                .flat_map(|i| (0..p).map(move |j| (i, j)))
                .map(|(i, j)| y.data()[idx(i, j)] as f64)
                .sum::<f64>()
                / (n * p) as f64;
            for i in 0..n {
                for j in 0..p {
                    let k = idx(i, j);
                    err[i * p + j] += (y.data()[k] as f64 - yh.data()[k] as f64).powi(2);
                    den += (y.data()[k] as f64 - mean).powi(2);
                }
            }
        }
        let total: f64 = err.iter().sum();
        let (margin, near) = confidences(&tables, &x, 0.1)?;
        let kept = |order: &[usize], f: f64| -> f64 {
            let k = ((order.len() as f64) * f).round() as usize;
            let removed: f64 = order[..k].iter().map(|&q| err[q]).sum();
            1.0 - (total - removed) / den
        };
        let ranked = |score: &[f64]| -> Vec<usize> {
            let mut o: Vec<usize> = (0..score.len()).collect();
            o.sort_by(|&a, &b| score[a].total_cmp(&score[b]).then(a.cmp(&b)));
            o
        };
        let by_margin = ranked(&margin);
        let by_near = ranked(&near);
        let neg_err: Vec<f64> = err.iter().map(|e| -e).collect();
        let oracle = ranked(&neg_err);
        let mut random: Vec<usize> = (0..err.len()).collect();
        let mut rng = SplitMix64::new(7);
        for i in (1..random.len()).rev() {
            random.swap(i, rng.below(i + 1));
        }
        for f in FRACTIONS {
            println!(
                "| {} | {codebooks} | {:.0} % | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                layer.name,
                100.0 * f,
                1.0 - total / den,
                kept(&random, f),
                kept(&by_margin, f),
                kept(&by_near, f),
                kept(&oracle, f)
            );
        }
    }
    Ok(())
}
