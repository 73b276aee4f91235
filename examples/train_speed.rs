//! Training speed of the MADDNESS learner on a synthetic but structured layer: a 3×3 conv2d
//! with 96 input and 96 output channels (D = 864, M = 96), inputs that are low-rank mixtures of
//! smooth random fields plus noise after a ReLU (like real activations), 204 800 windows of
//! which 200 000 are sampled, C = 64 codebooks. Prints the time of each stage.
//!
//! ```text
//! cargo run --release --example train_speed            # the issue's target size
//! cargo run --release --example train_speed -- --small # a quick run for CI
//! cargo run --release --example train_speed -- --learner maddness   # faithful MADDNESS
//! ```

use std::time::Instant;

use anyhow::Context;

use maddconv::maddness::learn::{train_with_report, TrainConfig};
use maddconv::rng::SplitMix64 as Rng;
use maddconv::{ConvSpec, Tensor};

fn main() -> anyhow::Result<()> {
    let small = std::env::args().any(|a| a == "--small");
    let repeat: usize = std::env::args()
        .skip_while(|a| a != "--repeat")
        .nth(1)
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(1);
    let (n, c_in, m, hw, codebooks, max_windows) = if small {
        (2, 32, 32, 48, 16, 4_000)
    } else {
        (8, 96, 96, 160, 64, 200_000)
    };
    let rank = 8;
    let mut rng = Rng(42);
    // Smooth fields: sums of three random plane waves each.
    let waves: Vec<[f32; 9]> = (0..n * rank)
        .map(|_| {
            let mut w = [0.0; 9];
            for v in &mut w {
                *v = rng.uniform();
            }
            w
        })
        .collect();
    let mix: Vec<f32> = (0..c_in * rank).map(|_| rng.normal()).collect();
    let mut x = vec![0.0f32; n * c_in * hw * hw];
    let mut field = vec![0.0f32; rank * hw * hw];
    for s in 0..n {
        for r in 0..rank {
            let w = &waves[s * rank + r];
            for y in 0..hw {
                for xx in 0..hw {
                    let mut v = 0.0;
                    for k in 0..3 {
                        let (fy, fx, ph) = (w[3 * k] * 0.4, w[3 * k + 1] * 0.4, w[3 * k + 2] * 6.3);
                        v += (fy * y as f32 + fx * xx as f32 + ph).sin();
                    }
                    field[(r * hw + y) * hw + xx] = v;
                }
            }
        }
        for c in 0..c_in {
            for p in 0..hw * hw {
                let mut v = 0.3 * rng.normal();
                for r in 0..rank {
                    v += mix[c * rank + r] * field[r * hw * hw + p];
                }
                x[(s * c_in + c) * hw * hw + p] = v.max(0.0);
            }
        }
    }
    let input = Tensor::new(vec![n, c_in, hw, hw], x)?;
    let mut spec = ConvSpec::conv2d(c_in, m, 3, 3);
    spec.padding = vec![1, 1, 1, 1];
    spec.bias = true;
    let d = c_in * 9;
    let weight = Tensor::new(
        vec![m, c_in, 3, 3],
        (0..m * d)
            .map(|_| rng.normal() / (d as f32).sqrt())
            .collect(),
    )?;
    let bias = Tensor::new(vec![m], (0..m).map(|_| rng.normal()).collect())?;
    let learner = std::env::args()
        .skip_while(|a| a != "--learner")
        .nth(1)
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or_default();
    let config = TrainConfig {
        codebooks: Some(codebooks),
        max_windows: Some(max_windows),
        learner,
        ..Default::default()
    };
    println!(
        "layer {} on {:?}: D = {d}, M = {m}, C = {codebooks}, {} threads; learner {}",
        spec.describe(),
        input.shape(),
        rayon::current_num_threads(),
        config.describe()
    );
    // Each stage's time: the median over the runs (this machine is shared and noisy).
    let mut runs = Vec::new();
    let mut tables = None;
    let mut report = None;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let (tb, rp) = train_with_report(
            &maddconv::ConvLayer::new(spec.clone(), weight.clone(), Some(bias.clone()))?,
            std::slice::from_ref(&input),
            &config,
            &mut |_| {},
        )?;
        let s = &rp.seconds;
        runs.push([
            s.windows,
            s.trees,
            s.ridge,
            s.tables,
            t.elapsed().as_secs_f64(),
        ]);
        tables = Some(tb);
        report = Some(rp);
    }
    let (tables, report) = (tables.context("no run")?, report.context("no run")?);
    let median = |k: usize| {
        let mut v: Vec<f64> = runs.iter().map(|r| r[k]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let all = |k: usize| {
        runs.iter()
            .map(|r| format!("{:.2}", r[k]))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "windows {} of {}; {} run(s), median (all runs)",
        report.windows_trained,
        report.windows_available,
        runs.len()
    );
    println!("| stage | seconds |\n|---|---|");
    for (k, name) in [
        "windows (sample + extract)",
        "trees",
        "ridge (GᵀG, GᵀA, Cholesky, solve)",
        "tables (float + 8-bit)",
        "total",
    ]
    .iter()
    .enumerate()
    {
        println!("| {name} | {:.2} ({}) |", median(k), all(k));
    }
    // Training-set quality, to show the run learned something.
    let probe = input.slice_batch(0, 1)?;
    let exact = maddconv::reference::conv_reference(&spec, &probe, &weight, Some(&bias))?;
    let fit = maddconv::maddness::evaluate(&tables, &probe, &exact, "training sample")?;
    println!(
        "training-sample NMSE {:.4} (1 − NMSE {:.4})",
        fit.nmse,
        fit.one_minus_nmse()
    );
    Ok(())
}
