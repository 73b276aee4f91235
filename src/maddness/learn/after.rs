//! The table refit for the error after the activation (issue 13, item 1; see
//! [`activation`](crate::maddness::activation)).
//!
//! With codes fixed, the model of the conv's output is `ẑ = G·T + b` (`G` the one-hot codes,
//! `b` the bias). The error that matters is `Σ (f(ẑ) − f(z))²`, `z = A·wᵀ + b` the exact
//! output. Majorize–minimize: at the current tables each output gets the target
//! [`Activation::target`] (`f(ẑ) = f(z)`: stay; `f` flat at `ẑ`: go to `z`; otherwise a
//! gradient step bounded by the activation's slope), and the tables are refit to those targets
//! by the same ridge system as [`refit`](super::refit),
//! `T = argmin ‖Y' − G·T‖² + λ‖T − T0‖²`, `T0` the tables the learner made. `GᵀG + λI` is
//! factorised once (Cholesky up to [`MAX_RIDGE_ROWS`](super::MAX_RIDGE_ROWS) rows `KC`;
//! conjugate gradients above); each step is one prediction, one scatter and one solve. The tables with the lowest
//! loss after the activation are kept, so the result is never worse than `T0` on the training
//! windows.

use rayon::prelude::*;

use super::factorise;
use super::linalg::{cholesky, cholesky_solve, matmul_nt};
use super::refit::{gram, gram_weighted, solve_cg};
use super::windows::Windows;
use crate::error::Result;
use crate::maddness::activation::Activation;

/// Rows per fixed chunk of the parallel sums (results do not depend on the thread count).
const CHUNK: usize = 2048;

/// What [`refit_after`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct AfterFit {
    /// The training loss after the activation, `Σ (f(ẑ) − f(z))²`, of the start (index 0) and
    /// after each step.
    pub(crate) loss: Vec<f64>,
    /// The step whose tables were kept (0: the start).
    pub(crate) kept: usize,
}

/// The product of the relative weights and the given row weights, scaled to mean 1 (`None`
/// when neither is set).
fn combine_weights(relative: Option<Vec<f64>>, rows: Option<&[f64]>) -> Option<Vec<f64>> {
    match (relative, rows) {
        (None, None) => None,
        (Some(r), None) => Some(r),
        (None, Some(w)) => Some(w.to_vec()),
        (Some(r), Some(w)) => {
            let prod: Vec<f64> = r.iter().zip(w).map(|(a, b)| a * b).collect();
            let sum: f64 = prod.iter().sum();
            let scale = if sum > 0.0 {
                prod.len() as f64 / sum
            } else {
                1.0
            };
            Some(prod.iter().map(|v| v * scale).collect())
        }
    }
}

/// Row weights that make each training window's error count relative to its own output:
/// `1 / (e_r + floor · ē)`, `e_r` the mean square of the window's exact output after the
/// activation, `ē` its mean over the windows; scaled to mean 1 (so that `λ` keeps its weight).
fn relative_weights(y: &[f32], m: usize, bias: &[f32], act: Activation, floor: f64) -> Vec<f64> {
    let energy: Vec<f64> = y
        .par_chunks(m)
        .map(|row| {
            row.iter()
                .zip(bias)
                .map(|(&v, &b)| act.apply(v as f64 + b as f64).powi(2))
                .sum::<f64>()
                / m as f64
        })
        .collect();
    let n = energy.len().max(1) as f64;
    let mean = energy.iter().sum::<f64>() / n;
    let raw: Vec<f64> = energy
        .iter()
        .map(|&e| 1.0 / (e + floor * mean).max(f64::MIN_POSITIVE))
        .collect();
    let scale = n / raw.iter().sum::<f64>();
    raw.iter().map(|v| v * scale).collect()
}

/// `GᵀW·Y` (`[KC, M]`, `K = nb` buckets) for targets `y` (`[N, M]`) and row weights `W`
/// (`None`: all 1), summed in fixed chunks of rows.
fn gt_y(
    codes: &[u8],
    (c_total, nb): (usize, usize),
    y: &[f32],
    m: usize,
    w: Option<&[f64]>,
) -> Vec<f64> {
    let n_sys = nb * c_total;
    let parts: Vec<Vec<f64>> = codes
        .par_chunks(CHUNK * c_total)
        .zip(y.par_chunks(CHUNK * m))
        .enumerate()
        .map(|(ch, (codes, y))| {
            let mut acc = vec![0.0f64; n_sys * m];
            for (r, (row, yr)) in codes
                .chunks_exact(c_total)
                .zip(y.chunks_exact(m))
                .enumerate()
            {
                let wr = w.map_or(1.0, |w| w[ch * CHUNK + r]);
                for (c, &k) in row.iter().enumerate() {
                    let i = nb * c + k as usize;
                    for (a, &v) in acc[i * m..(i + 1) * m].iter_mut().zip(yr) {
                        *a += wr * v as f64;
                    }
                }
            }
            acc
        })
        .collect();
    let mut out = vec![0.0f64; n_sys * m];
    for p in parts {
        out.iter_mut().zip(p).for_each(|(o, v)| *o += v);
    }
    out
}

/// What [`for_rows`] calls per row: (prediction, row index, the row's output slot) → loss.
type RowFn<'a> = dyn Fn(&[f64], usize, &mut [f32]) -> f64 + Sync + 'a;

/// For every row: the prediction `G·T` (without the bias), passed with the row's index and
/// output slot to `each`, which returns the row's loss; returns the loss summed in fixed
/// chunks.
fn for_rows(
    codes: &[u8],
    (c_total, nb): (usize, usize),
    t: &[f64],
    m: usize,
    out: &mut [f32],
    each: &RowFn<'_>,
) -> f64 {
    let parts: Vec<f64> = codes
        .par_chunks(CHUNK * c_total)
        .zip(out.par_chunks_mut(CHUNK * m))
        .enumerate()
        .map(|(ch, (codes, out))| {
            let mut pred = vec![0.0f64; m];
            let mut loss = 0.0f64;
            for (r, (row, o)) in codes
                .chunks_exact(c_total)
                .zip(out.chunks_exact_mut(m))
                .enumerate()
            {
                pred.fill(0.0);
                for (c, &k) in row.iter().enumerate() {
                    let i = nb * c + k as usize;
                    for (p, &v) in pred.iter_mut().zip(&t[i * m..(i + 1) * m]) {
                        *p += v;
                    }
                }
                loss += each(&pred, ch * CHUNK + r, o);
            }
            loss
        })
        .collect();
    parts.iter().sum()
}

/// The tables (`[C, K, M]`, `K = nb` buckets) for the codes of the `N` training windows that lower the error
/// after `act`, starting from (and shrinking towards) the learner's tables `t0`, for the
/// group's weight `w` (`M×D`) and bias `bias` (`[M]`), in at most `steps` steps (see the
/// [module docs](self)). `given` (`N×M`, bias excluded) replaces the exact outputs `A·wᵀ` as
/// what the tables should reproduce ([`TrainConfig::target_outputs`](super::TrainConfig)).
#[allow(clippy::too_many_arguments)]
pub(crate) fn refit_after(
    windows: &Windows,
    codes: &[u8],
    (c_total, nb): (usize, usize),
    t0: &[f64],
    lambda: f64,
    w: &[f32],
    m: usize,
    bias: &[f32],
    act: Activation,
    relative_floor: Option<f64>,
    row_weights: Option<&[f64]>,
    given: Option<&[f32]>,
    steps: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<f64>, AfterFit)> {
    let n = windows.rows;
    let n_sys = nb * c_total;
    let y = match given {
        Some(y) => {
            debug_assert_eq!(y.len(), n * m);
            y.to_vec()
        }
        None => matmul_nt(&windows.data, n, windows.dim, w, m),
    };
    let weights = combine_weights(
        relative_floor.map(|floor| relative_weights(&y, m, bias, act, floor)),
        row_weights,
    );
    let weight = |r: usize| weights.as_ref().map_or(1.0, |w| w[r]);
    let mut targets = vec![0.0f32; n * m];
    // The loss of tables `t`, writing the next step's targets.
    let step_targets = |t: &[f64], targets: &mut [f32]| -> f64 {
        for_rows(codes, (c_total, nb), t, m, targets, &|pred, r, out| {
            let yr = &y[r * m..(r + 1) * m];
            let mut loss = 0.0f64;
            for (((o, &p), &yv), &b) in out.iter_mut().zip(pred).zip(yr).zip(bias) {
                let (z, zhat) = (yv as f64 + b as f64, p + b as f64);
                loss += act.loss(z, zhat);
                *o = (act.target(z, zhat) - b as f64) as f32;
            }
            loss * weight(r)
        })
    };
    progress(0, steps + 1);
    let chol = if factorise(c_total, nb) {
        let mut g = match &weights {
            None => gram(codes, n, c_total, nb),
            Some(wt) => gram_weighted(codes, wt, c_total, nb),
        };
        for i in 0..n_sys {
            g[i * n_sys + i] += lambda;
        }
        cholesky(&mut g, n_sys)?;
        Some(g)
    } else {
        None
    };
    let solve = |targets: &[f32]| -> Result<Vec<f64>> {
        match &chol {
            Some(l) => {
                let mut rhs = gt_y(codes, (c_total, nb), targets, m, weights.as_deref());
                rhs.iter_mut().zip(t0).for_each(|(r, &t)| *r += lambda * t);
                cholesky_solve(l, n_sys, &mut rhs, m);
                Ok(rhs)
            }
            None => solve_cg(
                codes,
                c_total,
                nb,
                t0,
                lambda,
                targets,
                m,
                weights.as_deref(),
                &mut |_, _| {},
            ),
        }
    };
    let mut fit = AfterFit {
        loss: vec![step_targets(t0, &mut targets)],
        kept: 0,
    };
    let mut best = t0.to_vec();
    let mut best_loss = fit.loss[0];
    for s in 1..=steps {
        let t = solve(&targets)?;
        let loss = step_targets(&t, &mut targets);
        fit.loss.push(loss);
        progress(s, steps + 1);
        if !loss.is_finite() {
            break;
        }
        let improved = loss < best_loss;
        let converged = loss > best_loss * (1.0 - 1e-4);
        if improved {
            best = t;
            best_loss = loss;
            fit.kept = s;
        }
        if converged {
            break;
        }
    }
    progress(steps + 1, steps + 1);
    Ok((best, fit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maddness::learn::refit::{refit_with, Solver};
    use crate::maddness::learn::testing::fixture_windows;
    use crate::rng::SplitMix64 as Rng;

    /// Random codes for `n` rows and `c` codebooks.
    fn codes(n: usize, c: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng::new(seed);
        (0..n * c).map(|_| (rng.next_u64() % 16) as u8).collect()
    }

    /// Refitting for ReLU lowers the loss after ReLU below the plain least-squares tables',
    /// never raises it along the kept steps, and equals the plain refit for the identity.
    #[test]
    fn the_loss_after_the_activation_falls() {
        let (windows, w, m) = fixture_windows();
        let (n, c) = (windows.rows, 4);
        let codes = codes(n, c, 5);
        let t0 = vec![0.0f64; c * 16 * m];
        let plain = refit_with(
            &windows,
            &codes,
            c,
            16,
            &t0,
            1.0,
            &w,
            m,
            Solver::Cholesky,
            &mut |_, _| {},
        )
        .unwrap();
        // Mostly negative outputs, so that ReLU matters.
        let bias = vec![-0.3f32; m];
        let fit_for = |act: Activation, steps: usize| {
            refit_after(
                &windows,
                &codes,
                (c, 16),
                &plain,
                1.0,
                &w,
                m,
                &bias,
                act,
                None,
                None,
                None,
                steps,
                &mut |_, _| {},
            )
            .unwrap()
        };
        for act in [
            Activation::Relu,
            Activation::Silu,
            Activation::Clip(-0.5, 0.5),
        ] {
            let (t, fit) = fit_for(act, 8);
            assert!(fit.kept > 0, "{act}: no step helped: {:?}", fit.loss);
            let kept = fit.loss[fit.kept];
            // SiLU is close to the identity over much of the outputs' range: less to gain.
            let gain = if act == Activation::Silu { 0.97 } else { 0.9 };
            assert!(
                kept < gain * fit.loss[0],
                "{act}: loss after the activation {kept} vs plain {}",
                fit.loss[0]
            );
            assert!(fit.loss[1..=fit.kept].windows(2).all(|p| p[1] <= p[0]));
            assert_eq!(t.len(), plain.len());
        }
        let (t, fit) = fit_for(Activation::Identity, 3);
        // For the identity the targets are the exact outputs: one step is the plain ridge fit
        // again, now shrunk towards itself, which changes it only slightly.
        let (l0, l1) = (fit.loss[0], fit.loss[1]);
        assert!(l1 <= l0 && l0 - l1 < 1e-4 * l0, "{fit:?}");
        let scale = plain.iter().map(|v| v.abs()).fold(0.0, f64::max);
        let dmax = t
            .iter()
            .zip(&plain)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(dmax < 1e-2 * scale, "{dmax} of {scale}");
    }

    /// The conjugate-gradient path gives the same tables as Cholesky, with and without row
    /// weights; weights of 1 are no weights; relative weights sum to the row count.
    #[test]
    fn both_solvers_agree() {
        let (windows, w, m) = fixture_windows();
        let (n, d, c) = (windows.rows, windows.dim, 3);
        let codes = codes(n, c, 9);
        let t0 = vec![0.0f64; c * 16 * m];
        let mut y = matmul_nt(&windows.data, n, d, &w, m);
        y.iter_mut().for_each(|v| *v = v.max(0.0));
        let rel = relative_weights(&y, m, &vec![0.0; m], Activation::Relu, 0.1);
        assert!((rel.iter().sum::<f64>() - n as f64).abs() < 1e-6 * n as f64);
        assert!(rel.iter().all(|&v| v > 0.0 && v.is_finite()));
        let ones = vec![1.0f64; n];
        let solve = |weights: Option<&[f64]>| {
            let cg = solve_cg(&codes, c, 16, &t0, 1.0, &y, m, weights, &mut |_, _| {}).unwrap();
            let mut g = match weights {
                None => gram(&codes, n, c, 16),
                Some(wt) => gram_weighted(&codes, wt, c, 16),
            };
            for i in 0..16 * c {
                g[i * 16 * c + i] += 1.0;
            }
            cholesky(&mut g, 16 * c).unwrap();
            let mut b = gt_y(&codes, (c, 16), &y, m, weights);
            cholesky_solve(&g, 16 * c, &mut b, m);
            let dmax = cg
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(dmax < 1e-3, "weights {}: {dmax}", weights.is_some());
            b
        };
        let plain = solve(None);
        let unit = solve(Some(&ones));
        let relative = solve(Some(&rel));
        let diff = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max)
        };
        assert!(diff(&plain, &unit) < 1e-9, "{}", diff(&plain, &unit));
        assert!(
            diff(&plain, &relative) > 1e-3,
            "relative weights changed nothing"
        );
    }
}
