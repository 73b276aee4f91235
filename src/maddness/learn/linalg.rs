//! Dense linear algebra of the learners, on row-major slices: dot products (f32 and f64), the
//! product `A·Wᵀ`, Gram matrices, a Cholesky factorisation and solve, and the orthonormal
//! subspace iteration of the output-aware learner's principal directions.
//!
//! Matrices are flat slices in C order (`a[i * cols + j]`); sizes are passed alongside. Every
//! sum runs in a fixed order (fixed partial sums, fixed row blocks), so that results do not
//! depend on the number of threads.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// `a·wᵀ` for `a` (`n×d`) and `w` (`m×d`), row-major: `n×m` (f32, fixed summation order).
pub(super) fn matmul_nt(a: &[f32], n: usize, d: usize, w: &[f32], m: usize) -> Vec<f32> {
    const R: usize = 4;
    let mut out = vec![0.0f32; n * m];
    out.par_chunks_mut(m * 16)
        .enumerate()
        .for_each(|(blk, out)| {
            let rows = out.len() / m;
            let mut i = 0;
            // Blocks of 4 rows × 4 outputs: each weight and input value loaded once per block.
            while i + R <= rows {
                let base = (blk * 16 + i) * d;
                let a4: [&[f32]; R] = std::array::from_fn(|r| &a[base + r * d..][..d]);
                let mut mm = 0;
                while mm + R <= m {
                    let w4: [&[f32]; R] = std::array::from_fn(|q| &w[(mm + q) * d..][..d]);
                    let mut acc = [[[0.0f32; 4]; R]; R];
                    let chunks = d / 4;
                    for ch in 0..chunks {
                        let o = ch * 4;
                        for r in 0..R {
                            let av = &a4[r][o..o + 4];
                            for q in 0..R {
                                let wv = &w4[q][o..o + 4];
                                for l in 0..4 {
                                    acc[r][q][l] += av[l] * wv[l];
                                }
                            }
                        }
                    }
                    for r in 0..R {
                        for q in 0..R {
                            let mut t =
                                (acc[r][q][0] + acc[r][q][1]) + (acc[r][q][2] + acc[r][q][3]);
                            for o in chunks * 4..d {
                                t += a4[r][o] * w4[q][o];
                            }
                            out[(i + r) * m + mm + q] = t;
                        }
                    }
                    mm += R;
                }
                for r in 0..R {
                    for q in mm..m {
                        out[(i + r) * m + q] = dot32(a4[r], &w[q * d..(q + 1) * d]);
                    }
                }
                i += R;
            }
            for ii in i..rows {
                let row = &a[(blk * 16 + ii) * d..][..d];
                for (mm, o) in out[ii * m..(ii + 1) * m].iter_mut().enumerate() {
                    *o = dot32(row, &w[mm * d..(mm + 1) * d]);
                }
            }
        });
    out
}

/// Dot product in f32 with 8 partial sums (vectorises; fixed order).
#[inline]
pub(super) fn dot32(a: &[f32], b: &[f32]) -> f32 {
    let mut s = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            s[i] += x[i] * y[i];
        }
    }
    let mut t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (x, y) in ra.iter().zip(rb) {
        t += x * y;
    }
    t
}

/// Orthonormalises the `k` columns of `v` (`m×k`, row-major) in place (modified Gram–Schmidt);
/// a column that vanishes is replaced by a unit vector not yet spanned.
pub(super) fn orthonormalise(v: &mut [f64], m: usize, k: usize) {
    for j in 0..k {
        for _attempt in 0..=m {
            for p in 0..j {
                let d: f64 = (0..m).map(|i| v[i * k + j] * v[i * k + p]).sum();
                for i in 0..m {
                    v[i * k + j] -= d * v[i * k + p];
                }
            }
            let norm = (0..m).map(|i| v[i * k + j].powi(2)).sum::<f64>().sqrt();
            if norm > 1e-12 {
                for i in 0..m {
                    v[i * k + j] /= norm;
                }
                break;
            }
            // Degenerate: try the unit vectors in turn.
            let e = (0..m)
                .find(|&e| (0..j).all(|p| v[e * k + p].abs() < 0.5))
                .unwrap_or(j % m);
            for i in 0..m {
                v[i * k + j] = f64::from(u8::from(i == e));
            }
        }
    }
}

/// `iters` steps of subspace iteration `V ← orth(S·V)` for the symmetric `m×m` matrix `s`.
pub(super) fn subspace_iteration(s: &[f64], m: usize, v: &mut [f64], k: usize, iters: usize) {
    let mut t = vec![0.0f64; m * k];
    for _ in 0..iters {
        t.par_chunks_mut(k).enumerate().for_each(|(i, row)| {
            row.fill(0.0);
            for (p, &sip) in s[i * m..(i + 1) * m].iter().enumerate() {
                if sip != 0.0 {
                    for (r, &vv) in row.iter_mut().zip(&v[p * k..(p + 1) * k]) {
                        *r += sip * vv;
                    }
                }
            }
        });
        v.copy_from_slice(&t);
        orthonormalise(v, m, k);
    }
}

/// `Σ x²` in f64 (blocks of 4096 values summed in order).
pub(super) fn sum_sq(x: &[f32]) -> f64 {
    x.par_chunks(4096)
        .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
        .collect::<Vec<f64>>()
        .iter()
        .sum()
}

/// `XᵀX` (`m×m`, f64) of the rows of `x` (`n×m`, row-major), in a fixed order.
pub(super) fn gram_rows(x: &[f32], m: usize) -> Vec<f64> {
    const ROWS: usize = 1024;
    let parts: Vec<Vec<f64>> = x
        .par_chunks(ROWS * m)
        .map(|blk| {
            let mut g = vec![0.0f64; m * m];
            for row in blk.chunks_exact(m) {
                for (i, &a) in row.iter().enumerate() {
                    if a == 0.0 {
                        continue;
                    }
                    let a = a as f64;
                    for (gv, &b) in g[i * m..(i + 1) * m].iter_mut().zip(row) {
                        *gv += a * b as f64;
                    }
                }
            }
            g
        })
        .collect();
    let mut g = vec![0.0f64; m * m];
    for part in parts {
        for (a, b) in g.iter_mut().zip(part) {
            *a += b;
        }
    }
    g
}

/// In-place Cholesky factorisation of the symmetric positive definite `n×n` matrix `a`
/// (row-major); the lower triangle becomes `L` with `a = L·Lᵀ`.
pub(super) fn cholesky(a: &mut [f64], n: usize) -> Result<()> {
    for j in 0..n {
        let (row_j, below) = a[j * n..].split_at_mut(n);
        let s = row_j[j] - dot(&row_j[..j], &row_j[..j]);
        if !(s > 0.0 && s.is_finite()) {
            return Err(Error::Training(format!(
                "the ridge system is not positive definite (pivot {j} is {s}); \
                 use a larger lambda"
            )));
        }
        let ljj = s.sqrt();
        row_j[j] = ljj;
        let lj = &row_j[..j];
        below.par_chunks_mut(n).for_each(|row_i| {
            row_i[j] = (row_i[j] - dot(&row_i[..j], lj)) / ljj;
        });
    }
    Ok(())
}

/// Dot product in f64 with 4 partial sums (vectorises; fixed order).
#[inline]
pub(super) fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Four partial sums: vectorises, and the order is fixed.
    let mut s = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..4 {
            s[i] += x[i] * y[i];
        }
    }
    let mut t = (s[0] + s[1]) + (s[2] + s[3]);
    for (x, y) in ra.iter().zip(rb) {
        t += x * y;
    }
    t
}

/// Solves `L·Lᵀ·X = B` in place for `B` (`n × k`, row-major), `L` from [`cholesky`].
pub(super) fn cholesky_solve(l: &[f64], n: usize, b: &mut [f64], k: usize) {
    // Forward: L·Y = B.
    for i in 0..n {
        let (done, rest) = b.split_at_mut(i * k);
        let bi = &mut rest[..k];
        for (p, prev) in done.chunks_exact(k).enumerate() {
            let lip = l[i * n + p];
            if lip != 0.0 {
                for (x, &y) in bi.iter_mut().zip(prev) {
                    *x -= lip * y;
                }
            }
        }
        let inv = 1.0 / l[i * n + i];
        bi.iter_mut().for_each(|x| *x *= inv);
    }
    // Backward: Lᵀ·X = Y.
    for i in (0..n).rev() {
        let (head, tail) = b.split_at_mut((i + 1) * k);
        let bi = &mut head[i * k..];
        for (p, next) in tail.chunks_exact(k).enumerate() {
            let lpi = l[(i + 1 + p) * n + i];
            if lpi != 0.0 {
                for (x, &y) in bi.iter_mut().zip(next) {
                    *x -= lpi * y;
                }
            }
        }
        let inv = 1.0 / l[i * n + i];
        bi.iter_mut().for_each(|x| *x *= inv);
    }
}

/// `src·wᵀ` for `src` (`rows×d`, f64) and `w` (`m×d`): `rows×m`.
pub(super) fn project_rows(src: &[f64], d: usize, w64: &[f64], m: usize) -> Vec<f64> {
    let rows = src.len() / d;
    let mut out = vec![0.0f64; rows * m];
    out.par_chunks_mut(m).enumerate().for_each(|(i, o)| {
        let s = &src[i * d..(i + 1) * d];
        for (mm, o) in o.iter_mut().enumerate() {
            *o = dot(s, &w64[mm * d..(mm + 1) * d]);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_small_system() {
        // A = [[4, 2], [2, 3]], b = [[2], [1]] → x = [0.5, 0].
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        cholesky(&mut a, 2).unwrap();
        let mut b = vec![2.0, 1.0];
        cholesky_solve(&a, 2, &mut b, 1);
        assert!((b[0] - 0.5).abs() < 1e-12 && b[1].abs() < 1e-12, "{b:?}");
        let mut s = vec![1.0, 2.0, 2.0, 1.0];
        assert!(matches!(cholesky(&mut s, 2), Err(Error::Training(_))));
    }
}
