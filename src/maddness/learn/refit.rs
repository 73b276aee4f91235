//! Fitting the look-up tables to fixed codes, and their 8-bit quantization (DESIGN.md §3,
//! "Prototypes", "Tables", "8-bit tables").
//!
//! Input: the training windows `A` (`N×D`, row-major), their codes (`[N, C]`, one byte per
//! codebook, `0..K` with `K = 2^depth` buckets), the group's weight `w` (`M×D`, row-major) and
//! a prior. Tables are `[C, K, M]` f64 (row `Kc + k` holds bucket `k` of codebook `c`); `G` is the `N × KC`
//! one-hot matrix of the codes.
//!
//! * [`ridge`] — `(GᵀG + λI)·W = Gᵀ(A − G·P0)` by a Cholesky factorisation of the `KC × KC`
//!   system, projected on `wᵀ` before the solve (`M` right-hand sides instead of `D`), from
//!   MADDNESS's bucket means `P0` or from given tables.
//! * [`refit_tables`] — `T = argmin ‖A·wᵀ − G·T‖² + λ‖T − T0‖²` by Cholesky or, above
//!   [`MAX_RIDGE_ROWS`](super::MAX_RIDGE_ROWS) rows `KC`, preconditioned conjugate gradients that never form
//!   `GᵀG`.
//! * [`store_group`] — the float tables of one group into [`Tables`]: per (codebook, output)
//!   offset = min over buckets, per output scale `255 / max range` (1 where every range is 0),
//!   `q = round((lut − offset)·scale)`, then optionally rounding-aware offsets.

use rayon::prelude::*;

use super::factorise;
use super::linalg::{cholesky, cholesky_solve, matmul_nt, project_rows};
use super::tree::Trees;
use super::windows::Windows;
use crate::error::{Error, Result};
use crate::maddness::Tables;

/// `GᵀG` of the one-hot code matrix (`KC × KC`, as f64): bucket counts on the diagonal
/// blocks, co-occurrence counts of codebook pairs off them.
pub(super) fn gram(codes: &[u8], n: usize, c_total: usize, nb: usize) -> Vec<f64> {
    let k = nb * c_total;
    // Rows 16c..16c+16 for the columns of codebooks c' ≥ c, one task per codebook.
    let blocks: Vec<Vec<u32>> = (0..c_total)
        .into_par_iter()
        .map(|c| {
            let mut m = vec![0u32; nb * k];
            for row in codes.chunks_exact(c_total).take(n) {
                let mrow = &mut m[row[c] as usize * k..][..k];
                for (c2, &code) in row.iter().enumerate().skip(c) {
                    mrow[nb * c2 + code as usize] += 1;
                }
            }
            m
        })
        .collect();
    symmetric_from_blocks(&blocks, c_total, nb)
}

/// The `KC × KC` symmetric matrix whose rows `Kc..Kc+K`, columns from `Kc` on, are
/// `blocks[c]` (`K × KC`).
fn symmetric_from_blocks<T: Copy + Into<f64>>(
    blocks: &[Vec<T>],
    c_total: usize,
    nb: usize,
) -> Vec<f64> {
    let k = nb * c_total;
    let mut g = vec![0.0f64; k * k];
    for (c, m) in blocks.iter().enumerate() {
        for i in 0..nb {
            let r = nb * c + i;
            for col in nb * c..k {
                let v: f64 = m[i * k + col].into();
                g[r * k + col] = v;
                g[col * k + r] = v;
            }
        }
    }
    g
}

/// `GᵀWG` for row weights `w` (`[N]`): like [`gram`], with each row counted `w[r]` times.
pub(super) fn gram_weighted(codes: &[u8], w: &[f64], c_total: usize, nb: usize) -> Vec<f64> {
    let k = nb * c_total;
    let blocks: Vec<Vec<f64>> = (0..c_total)
        .into_par_iter()
        .map(|c| {
            let mut m = vec![0.0f64; nb * k];
            for (row, &wr) in codes.chunks_exact(c_total).zip(w) {
                let mrow = &mut m[row[c] as usize * k..][..k];
                for (c2, &code) in row.iter().enumerate().skip(c) {
                    mrow[nb * c2 + code as usize] += wr;
                }
            }
            m
        })
        .collect();
    symmetric_from_blocks(&blocks, c_total, nb)
}

/// `GᵀA` (`KC × D`, f64): the sums of the windows falling in each bucket of each codebook.
/// Each task streams the rows once for its codebooks, summing blocks of rows in f32 and the
/// blocks in f64, in an order that does not depend on the number of threads.
fn gt_a(windows: &Windows, codes: &[u8], c_total: usize, nb: usize) -> Vec<f64> {
    const BLOCK: usize = 256;
    const FLUSH: usize = 4096;
    let d = windows.dim;
    let n = windows.rows;
    let per_task = c_total.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let mut out = vec![0.0f64; nb * c_total * d];
    out.par_chunks_mut(per_task * nb * d)
        .enumerate()
        .for_each(|(task, out)| {
            let c0 = task * per_task;
            let cs = out.len() / (nb * d);
            let mut acc = vec![0.0f32; cs * nb * d];
            let flush = |acc: &mut [f32], out: &mut [f64]| {
                for (o, a) in out.iter_mut().zip(acc.iter_mut()) {
                    *o += *a as f64;
                    *a = 0.0;
                }
            };
            for start in (0..n).step_by(BLOCK) {
                let end = (start + BLOCK).min(n);
                for ci in 0..cs {
                    let c = c0 + ci;
                    let acc_c = &mut acc[ci * nb * d..(ci + 1) * nb * d];
                    for r in start..end {
                        let k = codes[r * c_total + c] as usize;
                        let dst = &mut acc_c[k * d..(k + 1) * d];
                        for (a, &v) in dst.iter_mut().zip(windows.row(r)) {
                            *a += v;
                        }
                    }
                }
                if end.is_multiple_of(FLUSH) || end == n {
                    flush(&mut acc, out);
                }
            }
        });
    out
}

/// The bucket means `P0` (`KC × D`, zero outside each codebook's range); an empty bucket takes
/// the mean of its nearest ancestor (in its tree) that has rows.
fn bucket_means(gta: &[f64], counts: &[f64], groups: &[Vec<u32>], d: usize) -> Vec<f64> {
    let nb = counts.len() / groups.len().max(1);
    let mut p0 = vec![0.0f64; nb * groups.len() * d];
    for (c, r) in groups.iter().enumerate() {
        for k in 0..nb {
            // Subtrees from the leaf upwards: 1, 2, 4, ... leaves, the whole tree last.
            for level in 0..=nb.trailing_zeros() {
                let first = (k >> level) << level;
                let leaves = first..first + (1 << level);
                let n: f64 = leaves.clone().map(|l| counts[nb * c + l]).sum();
                if n > 0.0 {
                    let dst = &mut p0[(nb * c + k) * d..][..d];
                    for l in leaves {
                        let src = &gta[(nb * c + l) * d..][..d];
                        for &j in r {
                            dst[j as usize] += src[j as usize];
                        }
                    }
                    for &j in r {
                        dst[j as usize] /= n;
                    }
                    break;
                }
            }
        }
    }
    p0
}

/// How the ridge solution is projected before the solve.
pub(super) enum Projection<'a> {
    /// Dense prototypes: `K = D` columns (for the tests' `learn_prototypes`).
    #[cfg_attr(not(test), allow(dead_code))]
    Identity,
    /// Tables: `T = wᵀ` for a weight `w` of `K×D` (row-major).
    Weight(&'a [f32], usize),
}

/// Where the ridge refinement starts from (and shrinks towards).
pub(super) enum Prior<'a> {
    /// MADDNESS: the bucket means of the windows on each codebook's dimensions.
    BucketMeans(&'a [Vec<u32>]),
    /// Given tables `[C, K, M]` (only with [`Projection::Weight`]).
    Tables(&'a [f64]),
}

/// The ridge refinement of one group, projected: returns `(P0·T, W·T)`, both `KC × K`, where
/// `W` solves `(GᵀG + λI)·W = Gᵀ(A − G·P0)`; with a table prior `T0`, `(T0, W)` where
/// `(GᵀG + λI)·W = GᵀA·wᵀ − GᵀG·T0`, i.e. `T0 + W` minimises `‖A·wᵀ − G·T‖² + λ‖T − T0‖²`.
#[allow(clippy::too_many_arguments)]
pub(super) fn ridge(
    windows: &Windows,
    codes: &[u8],
    c_total: usize,
    nb: usize,
    prior: Prior<'_>,
    lambda: f64,
    proj: Projection<'_>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<f64>, Vec<f64>)> {
    const STEPS: usize = 4;
    let n_sys = nb * c_total;
    let d = windows.dim;
    progress(0, STEPS);
    let mut g = gram(codes, windows.rows, c_total, nb);
    let gta = gt_a(windows, codes, c_total, nb);
    progress(1, STEPS);
    let counts: Vec<f64> = (0..n_sys).map(|i| g[i * n_sys + i]).collect();
    // Project P0 and GᵀA: (KC × D)·T.
    let (k, p0t, gtat) = match (proj, prior) {
        (Projection::Identity, Prior::BucketMeans(groups)) => {
            (d, bucket_means(&gta, &counts, groups, d), gta)
        }
        (Projection::Identity, Prior::Tables(_)) => {
            return Err(Error::Argument(
                "a table prior needs the weight projection".into(),
            ))
        }
        (Projection::Weight(w, m), prior) => {
            let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
            let p0t = match prior {
                Prior::Tables(t0) => t0.to_vec(),
                Prior::BucketMeans(groups) => {
                    let p0 = bucket_means(&gta, &counts, groups, d);
                    let mut out = vec![0.0f64; n_sys * m];
                    out.par_chunks_mut(m).enumerate().for_each(|(i, o)| {
                        let s = &p0[i * d..(i + 1) * d];
                        let dims = &groups[i / nb];
                        for (mm, o) in o.iter_mut().enumerate() {
                            let wr = &w64[mm * d..(mm + 1) * d];
                            *o = dims.iter().map(|&j| s[j as usize] * wr[j as usize]).sum();
                        }
                    });
                    out
                }
            };
            (m, p0t, project_rows(&gta, d, &w64, m))
        }
    };
    // Right-hand side: Gᵀ(A − G·P0)·T = GᵀA·T − GᵀG·(P0·T).
    let mut rhs = gtat;
    rhs.par_chunks_mut(k).enumerate().for_each(|(i, r)| {
        let gi = &g[i * n_sys..(i + 1) * n_sys];
        for (p, &gip) in gi.iter().enumerate() {
            if gip != 0.0 {
                for (x, &y) in r.iter_mut().zip(&p0t[p * k..(p + 1) * k]) {
                    *x -= gip * y;
                }
            }
        }
    });
    progress(2, STEPS);
    for i in 0..n_sys {
        g[i * n_sys + i] += lambda;
    }
    cholesky(&mut g, n_sys)?;
    progress(3, STEPS);
    cholesky_solve(&g, n_sys, &mut rhs, k);
    progress(STEPS, STEPS);
    Ok((p0t, rhs))
}

/// Fails unless the ridge regularisation `λ` is finite and `> 0`.
pub(super) fn check_lambda(lambda: f32) -> Result<()> {
    if !(lambda.is_finite() && lambda > 0.0) {
        return Err(Error::Argument(format!(
            "lambda = {lambda}; the ridge regularisation must be finite and > 0 (the system \
             GᵀG alone is singular)"
        )));
    }
    Ok(())
}

/// The solver of [`refit_tables`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Solver {
    /// Cholesky up to [`MAX_RIDGE_ROWS`](super::MAX_RIDGE_ROWS) rows `KC`, conjugate gradients above.
    #[default]
    Auto,
    /// Forms `GᵀG` (`KC × KC` doubles) and factorises it (chosen explicitly by tests only).
    #[cfg_attr(not(test), allow(dead_code))]
    Cholesky,
    /// Preconditioned conjugate gradients on the codes, never forming `GᵀG`.
    ConjugateGradient,
}

/// The tables (`[C, K, M]`) minimising `‖A·wᵀ − G·T‖² + λ‖T − T0‖²` over the training windows
/// `A` (`N×D`) encoded by `trees`, for the weight `w` (`M×D`, row-major) and the prior `T0`
/// (`[C, K, M]`). For any `λ > 0` its training error `‖A·wᵀ − G·T‖²` is at most that of `T0`.
#[cfg(test)]
pub(crate) fn refit_tables(
    windows: &Windows,
    trees: &Trees,
    prior: &[f64],
    lambda: f32,
    weight: &[f32],
    m: usize,
    solver: Solver,
) -> Result<Vec<f64>> {
    check_lambda(lambda)?;
    let c_total = trees.trees.len();
    let nb = trees.buckets();
    if trees.codes.len() != windows.rows * c_total
        || prior.len() != c_total * nb * m
        || weight.len() != m * windows.dim
    {
        return Err(Error::Argument(format!(
            "refit: {} codes, {} prior values and {} weights do not fit {} windows of D = {}, \
             {c_total} codebooks and M = {m}",
            trees.codes.len(),
            prior.len(),
            weight.len(),
            windows.rows,
            windows.dim
        )));
    }
    refit_with(
        windows,
        &trees.codes,
        c_total,
        nb,
        prior,
        lambda as f64,
        weight,
        m,
        solver,
        &mut |_, _| {},
    )
}

/// [`refit_tables`] on raw codes (`[N, C]`), with progress reports `(done, total)`.
#[allow(clippy::too_many_arguments)]
pub(super) fn refit_with(
    windows: &Windows,
    codes: &[u8],
    c_total: usize,
    nb: usize,
    prior: &[f64],
    lambda: f64,
    weight: &[f32],
    m: usize,
    solver: Solver,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    let cg = match solver {
        Solver::Auto => !factorise(c_total, nb),
        Solver::Cholesky => false,
        Solver::ConjugateGradient => true,
    };
    if cg {
        refit_cg(
            windows, codes, c_total, nb, prior, lambda, weight, m, progress,
        )
    } else {
        let (t0, w) = ridge(
            windows,
            codes,
            c_total,
            nb,
            Prior::Tables(prior),
            lambda,
            Projection::Weight(weight, m),
            progress,
        )?;
        Ok(t0.iter().zip(&w).map(|(a, b)| a + b).collect())
    }
}

/// Stores group `g`'s trees and float tables `lut` (`[C, K, M]`) in `tables`: the trees'
/// split dimensions and thresholds appended to [`Tables::split_dims`] and
/// [`Tables::thresholds`], the tables as f32 into `luts_f32` (`[G, C, K, M]`), then quantized
/// to 8 bits with, if `refit_offsets`, rounding-aware offsets weighted by the codes of the `n`
/// training windows. Fails when a table entry is not finite in f32.
pub(super) fn store_group(
    tables: &mut Tables,
    luts_f32: &mut [f32],
    g: usize,
    trees: &Trees,
    lut: &[f64],
    n: usize,
    refit_offsets: bool,
) -> Result<()> {
    for tree in &trees.trees {
        if tree.split_dims.len() != tables.depth {
            return Err(Error::Training(format!(
                "a tree of depth {} for tables of depth {}",
                tree.split_dims.len(),
                tables.depth
            )));
        }
        tables.split_dims.extend_from_slice(&tree.split_dims);
        for level in &tree.thresholds {
            tables.thresholds.extend_from_slice(level);
        }
    }
    let base = g * tables.codebooks * tables.buckets() * tables.out_per_group();
    for (i, &v) in lut.iter().enumerate() {
        let v = v as f32;
        if !v.is_finite() {
            return Err(Error::Training(format!(
                "table entry {i} of group {g} is {v}; the inputs or weight are too large for f32"
            )));
        }
        luts_f32[base + i] = v;
    }
    quantize_group(tables, luts_f32, g);
    if refit_offsets {
        self::refit_offsets(tables, luts_f32, g, &trees.codes, n);
    }
    Ok(())
}

/// Rounding-aware offsets: after [`quantize_group`], each (codebook, output) offset of group `g`
/// moves by the mean rounding error of that codebook's entries, weighted by how often the
/// training windows (`codes`, `[n, C]`) fall in each bucket, so that the 8-bit tables are
/// unbiased on the training data. Lowers (or keeps) the training error of each codebook's
/// dequantized column (the weighted mean is its least-squares offset).
fn refit_offsets(tables: &mut Tables, luts_f32: &[f32], g: usize, codes: &[u8], n: usize) {
    let c_total = tables.codebooks;
    let mg = tables.out_per_group();
    let nb = tables.buckets();
    let mut counts = vec![0usize; c_total * nb];
    for row in codes.chunks_exact(c_total).take(n) {
        for (c, &k) in row.iter().enumerate() {
            counts[c * nb + k as usize] += 1;
        }
    }
    for c in 0..c_total {
        let gc = g * c_total + c;
        let total: usize = counts[c * nb..(c + 1) * nb].iter().sum();
        if total == 0 {
            continue;
        }
        for m in 0..mg {
            let scale = tables.scales[g * mg + m];
            let off = tables.lut_offsets[gc * mg + m];
            let mut err = 0.0f64;
            for k in 0..nb {
                let i = (gc * nb + k) * mg + m;
                let deq = off as f64 + tables.luts[i] as f64 / scale as f64;
                err += counts[c * nb + k] as f64 * (luts_f32[i] as f64 - deq);
            }
            tables.lut_offsets[gc * mg + m] = (off as f64 + err / total as f64) as f32;
        }
    }
}

/// Ridge refit of the tables by preconditioned conjugate gradients, for systems too large to
/// factorise (`KC` above [`MAX_RIDGE_ROWS`](super::MAX_RIDGE_ROWS)): solves `(GᵀG + λI)·T = Gᵀ·Y + λ·T0` with
/// `Y = A·wᵀ`, starting from `T0`, never forming `GᵀG` (each product `GᵀG·X` is one gather and
/// one scatter over the codes), Jacobi preconditioner `diag(GᵀG) + λ` (`GᵀG`'s diagonal blocks
/// are diagonal). Returns `T` (`[C, K, M]`).
#[allow(clippy::too_many_arguments)]
fn refit_cg(
    windows: &Windows,
    codes: &[u8],
    c_total: usize,
    nb: usize,
    t0: &[f64],
    lambda: f64,
    w: &[f32],
    m: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    progress(0, CG_MAX_ITERS + 1);
    let y = matmul_nt(&windows.data, windows.rows, windows.dim, w, m);
    solve_cg(codes, c_total, nb, t0, lambda, &y, m, None, progress)
}

/// Most conjugate-gradient iterations of [`solve_cg`].
const CG_MAX_ITERS: usize = 60;

/// `(GᵀWG + λI)·T = GᵀW·Y + λ·T0` by preconditioned conjugate gradients for the targets `y`
/// (`[N, M]`, f32) of the `N = codes.len() / C` rows, with row weights `W` (`None`: all 1),
/// starting from `T0` (see [`refit_cg`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn solve_cg(
    codes: &[u8],
    c_total: usize,
    nb: usize,
    t0: &[f64],
    lambda: f64,
    y: &[f32],
    m: usize,
    weights: Option<&[f64]>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    let weight = |r: usize| weights.map_or(1.0, |w| w[r]);
    const MAX_ITERS: usize = CG_MAX_ITERS;
    const TOL: f64 = 1e-5;
    const CHUNKS: usize = 8;
    let n = codes.len() / c_total.max(1);
    let n_sys = nb * c_total;
    let rows_per = n.div_ceil(CHUNKS).max(1);
    // GᵀY and the counts, by chunks of rows (fixed order).
    let parts: Vec<(Vec<f64>, Vec<f64>)> = (0..n.div_ceil(rows_per))
        .into_par_iter()
        .map(|ch| {
            let mut acc = vec![0.0f64; n_sys * m];
            let mut cnt = vec![0.0f64; n_sys];
            for r in ch * rows_per..((ch + 1) * rows_per).min(n) {
                let yr = &y[r * m..(r + 1) * m];
                let wr = weight(r);
                for (c, &k) in codes[r * c_total..(r + 1) * c_total].iter().enumerate() {
                    let i = nb * c + k as usize;
                    cnt[i] += wr;
                    for (a, &v) in acc[i * m..(i + 1) * m].iter_mut().zip(yr) {
                        *a += wr * v as f64;
                    }
                }
            }
            (acc, cnt)
        })
        .collect();
    let mut b = vec![0.0f64; n_sys * m];
    let mut counts = vec![0.0f64; n_sys];
    for (acc, cnt) in parts {
        b.iter_mut().zip(acc).for_each(|(x, v)| *x += v);
        counts.iter_mut().zip(cnt).for_each(|(x, v)| *x += v);
    }
    b.iter_mut().zip(t0).for_each(|(x, &t)| *x += lambda * t);
    // (GᵀG + λI)·X.
    let apply = |x: &[f64]| -> Vec<f64> {
        let parts: Vec<Vec<f64>> = (0..n.div_ceil(rows_per))
            .into_par_iter()
            .map(|ch| {
                let mut acc = vec![0.0f64; n_sys * m];
                let mut s = vec![0.0f64; m];
                for r in ch * rows_per..((ch + 1) * rows_per).min(n) {
                    let row = &codes[r * c_total..(r + 1) * c_total];
                    s.fill(0.0);
                    for (c, &k) in row.iter().enumerate() {
                        let i = nb * c + k as usize;
                        for (a, &v) in s.iter_mut().zip(&x[i * m..(i + 1) * m]) {
                            *a += v;
                        }
                    }
                    let wr = weight(r);
                    for (c, &k) in row.iter().enumerate() {
                        let i = nb * c + k as usize;
                        for (a, &v) in acc[i * m..(i + 1) * m].iter_mut().zip(&s) {
                            *a += wr * v;
                        }
                    }
                }
                acc
            })
            .collect();
        let mut out: Vec<f64> = x.iter().map(|&v| lambda * v).collect();
        for p in parts {
            out.iter_mut().zip(p).for_each(|(o, v)| *o += v);
        }
        out
    };
    let col_dots = |a: &[f64], b: &[f64]| -> Vec<f64> {
        let mut s = vec![0.0f64; m];
        for (ra, rb) in a.chunks_exact(m).zip(b.chunks_exact(m)) {
            for ((s, &x), &y) in s.iter_mut().zip(ra).zip(rb) {
                *s += x * y;
            }
        }
        s
    };
    let inv_diag: Vec<f64> = counts.iter().map(|&c| 1.0 / (c + lambda)).collect();
    let precond = |r: &[f64]| -> Vec<f64> {
        r.chunks_exact(m)
            .zip(&inv_diag)
            .flat_map(|(row, &p)| row.iter().map(move |&v| v * p))
            .collect()
    };
    let b_norm = b
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    let mut x = t0.to_vec();
    let ax = apply(&x);
    let mut r: Vec<f64> = b.iter().zip(&ax).map(|(b, a)| b - a).collect();
    let mut z = precond(&r);
    let mut p = z.clone();
    let mut rz = col_dots(&r, &z);
    for iter in 0..MAX_ITERS {
        let r_norm = r.iter().map(|v| v * v).sum::<f64>().sqrt();
        if r_norm <= TOL * b_norm {
            break;
        }
        let q = apply(&p);
        let pq = col_dots(&p, &q);
        let alpha: Vec<f64> = rz
            .iter()
            .zip(&pq)
            .map(|(&a, &b)| if b > 0.0 { a / b } else { 0.0 })
            .collect();
        for ((xr, rr), (pr, qr)) in x
            .chunks_exact_mut(m)
            .zip(r.chunks_exact_mut(m))
            .zip(p.chunks_exact(m).zip(q.chunks_exact(m)))
        {
            for j in 0..m {
                xr[j] += alpha[j] * pr[j];
                rr[j] -= alpha[j] * qr[j];
            }
        }
        z = precond(&r);
        let rz_new = col_dots(&r, &z);
        let beta: Vec<f64> = rz_new
            .iter()
            .zip(&rz)
            .map(|(&a, &b)| if b > 0.0 { a / b } else { 0.0 })
            .collect();
        for (pr, zr) in p.chunks_exact_mut(m).zip(z.chunks_exact(m)) {
            for j in 0..m {
                pr[j] = zr[j] + beta[j] * pr[j];
            }
        }
        rz = rz_new;
        progress(iter + 1, MAX_ITERS + 1);
    }
    progress(MAX_ITERS + 1, MAX_ITERS + 1);
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::Training(format!(
            "the conjugate-gradient refit diverged (entry {i}); use a larger lambda"
        )));
    }
    Ok(x)
}

/// 8-bit tables of group `g` from the float tables: per (c, m) offset = min over buckets, per
/// output scale `255 / max_c (max_k lut − offset)` (1 where that range is 0 or the quotient is
/// not finite), `q = round((lut − offset)·scale)` clamped to `0..=255`.
fn quantize_group(tables: &mut Tables, luts_f32: &[f32], g: usize) {
    let c_total = tables.codebooks;
    let mg = tables.out_per_group();
    let nb = tables.buckets();
    let mut range = vec![0.0f32; mg];
    for c in 0..c_total {
        let gc = g * c_total + c;
        for m in 0..mg {
            let col = (0..nb).map(|k| luts_f32[(gc * nb + k) * mg + m]);
            let (lo, hi) = col.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
            tables.lut_offsets[gc * mg + m] = lo;
            range[m] = range[m].max(hi - lo);
        }
    }
    for (m, &r) in range.iter().enumerate() {
        let s = 255.0 / r;
        tables.scales[g * mg + m] = if s.is_finite() && s > 0.0 { s } else { 1.0 };
    }
    for c in 0..c_total {
        let gc = g * c_total + c;
        for k in 0..nb {
            for m in 0..mg {
                let i = (gc * nb + k) * mg + m;
                let q = ((luts_f32[i] - tables.lut_offsets[gc * mg + m])
                    * tables.scales[g * mg + m])
                    .round();
                tables.luts[i] = q.clamp(0.0, 255.0) as u8;
            }
        }
    }
}
