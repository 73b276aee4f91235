//! Output-aware trees ("beyond MADDNESS", issue 7): hash trees grown on the residual of the
//! layer's **output** instead of the raw input sub-vector, codebook after codebook (boosting).
//!
//! Per group, on `N×D` training windows `A` and the group's weight `w` (`M×D`):
//!
//! 1. **Tree rows**: a seeded subset of at most [`BoostParams::tree_rows`] windows on which the
//!    trees are grown (all windows when there are fewer); the final least-squares refit of the
//!    tables ([`refit`](super::refit)) uses every window.
//! 2. **Residual**: `R = Y − ȳ` with `Y = A·wᵀ` on the tree rows (`ȳ` the per-output mean). When
//!    `M` exceeds [`BoostParams::rank`] the split criterion sees `Z = R·V`, the projection on the
//!    top `rank` principal directions of `R` (kept up to date from `RᵀR`, which every codebook
//!    lowers by `Σ_k n_k (2ν − ν²) μ_k μ_kᵀ`); otherwise `Z = R`.
//! 3. **Candidates** of codebook `c`: the dimensions of its group (a grouping of `0..D`, or all
//!    of them for free trees), ranked by the share of `R` a linear function of that dimension
//!    explains, `‖(Ãᵀ R)_j‖² / ‖Ã_j‖²` (`Ã` the centred windows of a fixed subset of at most
//!    [`BoostParams::score_rows`] tree rows; `ÃᵀR` is updated after every codebook, not
//!    recomputed); the best [`BoostParams::shortlist`] are kept. Constant dimensions never are.
//! 4. **Tree**: the MADDNESS tree shape (4 levels, one dimension per level, one threshold per
//!    node), level by level: for each candidate `j`, one walk over the tree rows in `a[j]` order
//!    finds every bucket's split minimising `SSE_Z(left) + SSE_Z(right)` with at least
//!    [`BoostParams::min_leaf`] rows on each side; the candidate with the largest summed gain is
//!    the level's dimension. A bucket without a valid split sends all its rows left.
//! 5. **Leaves**: `ν ·` the bucket means of `R` (all `M` outputs, `ν` = [`BoostParams::shrinkage`]),
//!    subtracted from `R`. The training SSE `‖R‖²` never increases (reported per codebook).
//!
//! The result is the codes of every window and the leaf values (plus `ȳ` in codebook 0) as a
//! prior for the refit. Deterministic for a seed whatever the number of threads.
//!
//! [`learn`] runs the whole tree stage of the output-aware learner: it grows these trees from
//! nothing ([`Start::Empty`]), from MADDNESS's trees and tables learned on the tree rows
//! ([`Start::Maddness`]), or both, keeping the better fit ([`Start::Best`]). The tables are then
//! refit on every window ([`refit`](super::refit)).

use rayon::prelude::*;

use super::grouping::{codebook_ranges, ranges_to_groups};
use super::linalg::{dot32, gram_rows, matmul_nt, subspace_iteration, sum_sq};
use super::maddness;
use super::options::Start;
use super::tree::{learn_trees_in_groups, midpoint, sort_column, SortedColumn, Tree, Trees};
use super::windows::{sample_positions, Windows};
use crate::error::{Error, Result};
use crate::maddness::activation::Activation;

/// Settings of [`boost`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BoostParams {
    /// Codebooks `C`.
    pub(crate) codebooks: usize,
    /// Depth of every tree (`2^depth` buckets, [`BoostParams::buckets`]).
    pub(crate) depth: usize,
    /// Candidate dimensions of each codebook (`C` lists of dimensions in `0..D`), or `None`: any
    /// window dimension.
    pub(crate) groups: Option<Vec<Vec<u32>>>,
    /// Candidate dimensions evaluated exactly per tree (the best by the linear score).
    pub(crate) shortlist: usize,
    /// Principal directions of the residual the split criterion sees (`0` or `≥ M`: all `M`
    /// outputs).
    pub(crate) rank: usize,
    /// Most windows the trees are grown on.
    pub(crate) tree_rows: usize,
    /// Most tree rows used for the linear candidate score.
    pub(crate) score_rows: usize,
    /// Fewest tree rows on each side of a split.
    pub(crate) min_leaf: usize,
    /// Shrinkage `ν ∈ (0, 1]` of the leaf values during boosting.
    pub(crate) shrinkage: f64,
    /// Backfitting passes after the forward pass (or after the initial trees).
    pub(crate) passes: usize,
    /// Seed of the tree-row sample.
    pub(crate) seed: u64,
    /// Grow the trees on `f(A·wᵀ + bias)` instead of `A·wᵀ`: the activation that follows the
    /// conv and the group's bias (`[M]`).
    pub(crate) after: Option<(Activation, Vec<f32>)>,
}

impl BoostParams {
    /// Buckets per tree, `2^depth`.
    pub(crate) fn buckets(&self) -> usize {
        1 << self.depth
    }
}

/// Trees grown by [`boost`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Boosted {
    /// The trees, and the codes of **every** training window (`[N, C]`).
    pub(crate) trees: Trees,
    /// `[C, K, M]`: leaf values (`ȳ` added to codebook 0): the prior of the refit.
    pub(crate) prior: Vec<f64>,
    /// `‖R‖²` on the tree rows before any codebook (index 0) and after each one.
    pub(crate) sse: Vec<f64>,
    /// Windows the trees were grown on.
    pub(crate) tree_rows: usize,
}

/// The sorted order of every dimension that has been a candidate, on the tree rows; kept while
/// the cache stays under a memory budget, re-sorted on demand beyond it.
struct SortCache {
    columns: Vec<Option<SortedColumn>>,
    bytes: usize,
}

/// Memory the sort cache may hold.
const SORT_CACHE_BYTES: usize = 512 << 20;

/// Trees to start from instead of an empty model: [`boost`] then only refines them by
/// backfitting passes.
pub(crate) struct Init<'a> {
    /// One tree per codebook.
    pub(crate) trees: &'a [Tree],
    /// `[C, K, M]`: their tables (the model is `Σ_c tables[c][code_c]`).
    pub(crate) tables: &'a [f64],
}

/// Everything the tree steps share.
struct State<'a> {
    p: &'a BoostParams,
    d: usize,
    m: usize,
    ns: usize,
    /// `[ns, d]` tree rows.
    xs: Vec<f32>,
    /// `[ns, m]` residual.
    r: Vec<f32>,
    /// Projection rank (`k == m`: none).
    k: usize,
    /// `[m, k]` principal directions.
    v: Vec<f64>,
    /// `[ns, k]` projected residual.
    z: Vec<f32>,
    score_idx: Vec<usize>,
    xbar: Vec<f64>,
    var: Vec<f64>,
    /// `[d, m]`: `ÃᵀR` on the score rows.
    s_mat: Vec<f64>,
    cache: SortCache,
    all_dims: Vec<u32>,
}

impl State<'_> {
    /// Recomputes the principal directions of `R` from the score rows.
    fn refresh_directions(&mut self, iters: usize) {
        let (m, k) = (self.m, self.k);
        let mut sub = Vec::with_capacity(self.score_idx.len() * m);
        for &i in &self.score_idx {
            sub.extend_from_slice(&self.r[i * m..(i + 1) * m]);
        }
        let rtr = gram_rows(&sub, m);
        if self.v.is_empty() {
            let mut order: Vec<usize> = (0..m).collect();
            order.sort_by(|&a, &b| rtr[b * m + b].total_cmp(&rtr[a * m + a]).then(a.cmp(&b)));
            self.v = vec![0.0f64; m * k];
            for (j, &e) in order.iter().take(k).enumerate() {
                self.v[e * k + j] = 1.0;
            }
        }
        subspace_iteration(&rtr, m, &mut self.v, k, iters);
    }

    /// `Z = R·V` (or `R`).
    fn project(&mut self) {
        let (m, k) = (self.m, self.k);
        if k == m {
            self.z.copy_from_slice(&self.r);
            return;
        }
        let mut vt = vec![0.0f32; k * m];
        for i in 0..m {
            for j in 0..k {
                vt[j * m + i] = self.v[i * k + j] as f32;
            }
        }
        self.z
            .par_chunks_mut(k)
            .zip(self.r.par_chunks(m))
            .for_each(|(zr, rr)| {
                for (j, zv) in zr.iter_mut().enumerate() {
                    *zv = dot32(rr, &vt[j * m..(j + 1) * m]);
                }
            });
    }

    /// Adds `sign · G_c·leaf` to the residual (codes `codes`, `[ns]`) and keeps `ÃᵀR` in step.
    fn add_leaves(&mut self, codes: &[u8], leaf: &[f64], sign: f64) {
        let (m, d) = (self.m, self.d);
        let leaf32: Vec<f32> = leaf.iter().map(|&v| (sign * v) as f32).collect();
        self.r
            .par_chunks_mut(m)
            .zip(codes.par_iter())
            .for_each(|(rr, &b)| {
                for (x, &l) in rr.iter_mut().zip(&leaf32[b as usize * m..][..m]) {
                    *x += l;
                }
            });
        let nbk = self.p.buckets();
        let mut sx = vec![0.0f64; nbk * d];
        for &i in &self.score_idx {
            let b = codes[i] as usize;
            for ((s, &x), &mu) in sx[b * d..(b + 1) * d]
                .iter_mut()
                .zip(&self.xs[i * d..(i + 1) * d])
                .zip(&self.xbar)
            {
                *s += x as f64 - mu;
            }
        }
        self.s_mat
            .par_chunks_mut(m)
            .enumerate()
            .for_each(|(dd, srow)| {
                for b in 0..nbk {
                    let a = sign * sx[b * d + dd];
                    if a != 0.0 {
                        for (s, &l) in srow.iter_mut().zip(&leaf[b * m..(b + 1) * m]) {
                            *s += a * l;
                        }
                    }
                }
            });
    }

    /// Bucket means of `R` under `codes` (`[K, m]`) and the SSE they remove,
    /// `Σ_k n_k ‖μ_k‖²`.
    fn means(&self, codes: &[u8]) -> (Vec<f64>, f64) {
        let m = self.m;
        let nbk = self.p.buckets();
        let mut counts = vec![0usize; nbk];
        let mut sums = vec![0.0f64; nbk * m];
        for (rr, &b) in self.r.chunks_exact(m).zip(codes) {
            let b = b as usize;
            counts[b] += 1;
            for (s, &v) in sums[b * m..(b + 1) * m].iter_mut().zip(rr) {
                *s += v as f64;
            }
        }
        let mut gain = 0.0;
        for b in 0..nbk {
            if counts[b] > 0 {
                let n = counts[b] as f64;
                let row = &mut sums[b * m..(b + 1) * m];
                gain += row.iter().map(|v| v * v).sum::<f64>() / n;
                row.iter_mut().for_each(|v| *v /= n);
            }
        }
        (sums, gain)
    }

    /// Grows one tree on the current residual over the candidate pool; returns it and the
    /// codes of the tree rows.
    fn grow(&mut self, pool: Option<&[u32]>) -> (Tree, Vec<u8>) {
        let (d, m, k, ns) = (self.d, self.m, self.k, self.ns);
        let p = self.p;
        let pool: &[u32] = pool.unwrap_or(&self.all_dims);
        let mut scored: Vec<(f64, u32)> = pool
            .iter()
            .filter(|&&j| self.var[j as usize] > 0.0)
            .map(|&j| {
                let j = j as usize;
                let s2: f64 = self.s_mat[j * m..(j + 1) * m].iter().map(|v| v * v).sum();
                (s2 / self.var[j], j as u32)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut cand: Vec<usize> = scored
            .iter()
            .take(p.shortlist.max(1))
            .map(|e| e.1 as usize)
            .collect();
        if cand.is_empty() {
            // Every candidate dimension is constant on the tree rows: any one will do.
            cand.push(pool.first().copied().unwrap_or(0) as usize);
        }
        // Sorted orders of the candidates.
        let missing: Vec<usize> = cand
            .iter()
            .copied()
            .filter(|&j| self.cache.columns[j].is_none())
            .collect();
        let xs = &self.xs;
        let fresh: Vec<(usize, SortedColumn)> = missing
            .par_iter()
            .map(|&j| (j, sort_column(xs, d, j)))
            .collect();
        let mut transient: Vec<(usize, SortedColumn)> = Vec::new();
        for (j, col) in fresh {
            let bytes = col.order.len() * 8;
            if self.cache.bytes + bytes <= SORT_CACHE_BYTES {
                self.cache.bytes += bytes;
                self.cache.columns[j] = Some(col);
            } else {
                transient.push((j, col));
            }
        }
        let cache = &self.cache;
        let column = |j: usize| -> &SortedColumn {
            match &cache.columns[j] {
                Some(c) => c,
                None => {
                    &transient
                        .iter()
                        .find(|(t, _)| *t == j)
                        .expect("every candidate is sorted")
                        .1
                }
            }
        };
        let z = &self.z;
        let mut bucket = vec![0u8; ns];
        let mut tree = Tree::new(p.depth);
        let mut zsum = vec![0.0f64; k];
        for zr in z.chunks_exact(k) {
            for (a, &v) in zsum.iter_mut().zip(zr) {
                *a += v as f64;
            }
        }
        tree.level_sse[0] =
            (sum_sq(z) - zsum.iter().map(|v| v * v).sum::<f64>() / ns as f64).max(0.0);
        for t in 0..p.depth {
            let nb = 1usize << t;
            let mut count = vec![0usize; nb];
            let mut total = vec![0.0f64; nb * k];
            for (zr, &b) in z.chunks_exact(k).zip(&bucket) {
                let b = b as usize;
                count[b] += 1;
                for (s, &v) in total[b * k..(b + 1) * k].iter_mut().zip(zr) {
                    *s += v as f64;
                }
            }
            let total32: Vec<f32> = total.iter().map(|&v| v as f32).collect();
            let tt: Vec<f64> = (0..nb)
                .map(|b| total[b * k..(b + 1) * k].iter().map(|v| v * v).sum())
                .collect();
            let base: Vec<f64> = (0..nb)
                .map(|b| {
                    if count[b] == 0 {
                        0.0
                    } else {
                        tt[b] / count[b] as f64
                    }
                })
                .collect();
            let level = Level {
                z,
                k,
                bucket: &bucket,
                nb,
                count: &count,
                total: &total32,
                tt: &tt,
                base: &base,
                min_leaf: p.min_leaf.max(1),
            };
            let results: Vec<(f64, Vec<f32>)> =
                cand.par_iter().map(|&j| level.walk(column(j))).collect();
            let mut best = 0usize;
            for (i, res) in results.iter().enumerate() {
                if res.0 > results[best].0 {
                    best = i;
                }
            }
            let j = cand[best];
            let thr = &results[best].1;
            for (b, x) in bucket.iter_mut().zip(xs.chunks_exact(d)) {
                *b = 2 * *b + u8::from(x[j] > thr[*b as usize]);
            }
            tree.split_dims[t] = j as u32;
            tree.thresholds[t][..nb].copy_from_slice(&thr[..nb]);
            tree.level_sse[t + 1] = (tree.level_sse[t] - results[best].0).max(0.0);
        }
        (tree, bucket)
    }
}

/// Grows the output-aware trees of one group (see the [module docs](self)), or, with `init`,
/// refines given trees by backfitting only. `weight` is the group's `M×D` weight (row-major).
/// `progress(done, total)` counts tree steps.
pub(crate) fn boost(
    windows: &Windows,
    weight: &[f32],
    m: usize,
    p: &BoostParams,
    init: Option<Init<'_>>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Boosted> {
    let (n, d) = (windows.rows, windows.dim);
    let c_total = p.codebooks;
    if weight.len() != m * d || m == 0 {
        return Err(Error::Shape(format!(
            "boost: weight of {} values for M = {m} outputs and D = {d}",
            weight.len()
        )));
    }
    if c_total == 0 {
        return Err(Error::Argument("boost: codebooks = 0".into()));
    }
    if let Some(g) = &p.groups {
        if g.len() != c_total || g.iter().flatten().any(|&j| j as usize >= d) {
            return Err(Error::Argument(format!(
                "boost: {} dimension groups for {c_total} codebooks, or a dimension ≥ D = {d}",
                g.len()
            )));
        }
    }
    if let Some(i) = &init {
        if i.trees.len() != c_total
            || i.tables.len() != c_total * p.buckets() * m
            || i.trees.iter().any(|t| t.depth() != p.depth)
        {
            return Err(Error::Argument(format!(
                "boost: {} initial trees and {} table values for {c_total} codebooks of depth {} \
                 and M = {m}",
                i.trees.len(),
                i.tables.len(),
                p.depth
            )));
        }
    }
    if !(p.shrinkage > 0.0 && p.shrinkage <= 1.0) {
        return Err(Error::Argument(format!(
            "shrinkage = {}; it must be in (0, 1]",
            p.shrinkage
        )));
    }
    let nu = p.shrinkage;
    // 1. Tree rows.
    let rows = sample_positions(n as u64, Some(p.tree_rows.max(1)), p.seed);
    let ns = rows.len();
    let xs = windows.select(&rows).data;
    // 2. Residual of the mean.
    let mut ys = matmul_nt(&xs, ns, d, weight, m);
    if let Some((act, bias)) = &p.after {
        if bias.len() != m {
            return Err(Error::Argument(format!(
                "boost: {} bias values for M = {m} outputs",
                bias.len()
            )));
        }
        ys.par_chunks_mut(m).for_each(|row| {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v = act.apply(*v as f64 + b as f64) as f32;
            }
        });
    }
    let mut ybar = vec![0.0f64; m];
    for row in ys.chunks_exact(m) {
        for (s, &v) in ybar.iter_mut().zip(row) {
            *s += v as f64;
        }
    }
    ybar.iter_mut().for_each(|s| *s /= ns as f64);
    let r: Vec<f32> = ys
        .chunks_exact(m)
        .flat_map(|row| {
            row.iter()
                .zip(&ybar)
                .map(|(&v, &mu)| (v as f64 - mu) as f32)
        })
        .collect();
    drop(ys);
    let k = if p.rank == 0 || p.rank >= m {
        m
    } else {
        p.rank
    };
    // 3. The linear candidate score on a fixed subset of the tree rows.
    let stride = ns.div_ceil(p.score_rows.max(1)).max(1);
    let score_idx: Vec<usize> = (0..ns).step_by(stride).collect();
    let mut xbar = vec![0.0f64; d];
    for &i in &score_idx {
        for (s, &x) in xbar.iter_mut().zip(&xs[i * d..(i + 1) * d]) {
            *s += x as f64;
        }
    }
    xbar.iter_mut().for_each(|s| *s /= score_idx.len() as f64);
    let mut var = vec![0.0f64; d];
    for &i in &score_idx {
        for ((s, &x), &mu) in var.iter_mut().zip(&xs[i * d..(i + 1) * d]).zip(&xbar) {
            *s += (x as f64 - mu).powi(2);
        }
    }
    let mut st = State {
        p,
        d,
        m,
        ns,
        xs,
        r,
        k,
        v: Vec::new(),
        z: vec![0.0f32; ns * k],
        score_idx,
        xbar,
        var,
        s_mat: vec![0.0f64; d * m],
        cache: SortCache {
            columns: (0..d).map(|_| None).collect(),
            bytes: 0,
        },
        all_dims: (0..d as u32).collect(),
    };
    // The model: trees, their leaves (without ȳ) and the codes of the tree rows ([C][ns]).
    let mut trees: Vec<Tree> = Vec::with_capacity(c_total);
    let nbk = p.buckets();
    let km = nbk * m;
    let mut leaves = vec![0.0f64; c_total * km];
    let mut codes_s: Vec<Vec<u8>> = Vec::with_capacity(c_total);
    if let Some(init) = &init {
        leaves.copy_from_slice(init.tables);
        for b in 0..nbk {
            for (l, &mu) in leaves[b * m..(b + 1) * m].iter_mut().zip(&ybar) {
                *l -= mu;
            }
        }
        for (c, t) in init.trees.iter().enumerate() {
            let codes: Vec<u8> = st.xs.par_chunks(d).map(|a| t.encode(a)).collect();
            let leaf = &leaves[c * km..(c + 1) * km];
            let leaf32: Vec<f32> = leaf.iter().map(|&v| v as f32).collect();
            st.r.par_chunks_mut(m)
                .zip(codes.par_iter())
                .for_each(|(rr, &b)| {
                    for (x, &l) in rr.iter_mut().zip(&leaf32[b as usize * m..][..m]) {
                        *x -= l;
                    }
                });
            trees.push(t.clone());
            codes_s.push(codes);
        }
    }
    // S = ÃᵀR (D×M), by blocks of dimensions.
    {
        const DBLK: usize = 32;
        let (xs, r, xbar, score_idx) = (&st.xs, &st.r, &st.xbar, &st.score_idx);
        st.s_mat
            .par_chunks_mut(DBLK * m)
            .enumerate()
            .for_each(|(blk, s)| {
                let d0 = blk * DBLK;
                let dn = s.len() / m;
                for &i in score_idx {
                    let x = &xs[i * d + d0..][..dn];
                    let ri = &r[i * m..(i + 1) * m];
                    for (dd, (srow, &xv)) in s.chunks_exact_mut(m).zip(x).enumerate() {
                        let xc = xv as f64 - xbar[d0 + dd];
                        if xc != 0.0 {
                            for (a, &rv) in srow.iter_mut().zip(ri) {
                                *a += xc * rv as f64;
                            }
                        }
                    }
                }
            });
    }
    // Principal directions are refreshed every `every` tree steps (each refresh costs
    // score_rows·M² products).
    let every = 8;
    let steps = if init.is_some() { 0 } else { c_total } + p.passes * c_total;
    let mut done = 0usize;
    let mut sse = vec![sum_sq(&st.r)];
    progress(0, steps);
    let step = |st: &mut State, done: &mut usize| {
        if st.k < st.m && (*done).is_multiple_of(every) {
            st.refresh_directions(if *done == 0 { 8 } else { 3 });
        }
        *done += 1;
    };
    if init.is_none() {
        for c in 0..c_total {
            step(&mut st, &mut done);
            st.project();
            let (tree, codes) = st.grow(p.groups.as_ref().map(|g| g[c].as_slice()));
            let (mut leaf, _) = st.means(&codes);
            leaf.iter_mut().for_each(|v| *v *= nu);
            st.add_leaves(&codes, &leaf, -1.0);
            leaves[c * km..(c + 1) * km].copy_from_slice(&leaf);
            trees.push(tree);
            codes_s.push(codes);
            sse.push(sum_sq(&st.r));
            progress(done, steps);
        }
    }
    // Backfitting: each codebook in turn, regrown on the residual of all the others; the new
    // tree replaces the old one only if it removes more of that residual than the old tree
    // with refitted leaves (so the SSE never increases).
    for _pass in 0..p.passes {
        for c in 0..c_total {
            step(&mut st, &mut done);
            let old = leaves[c * km..(c + 1) * km].to_vec();
            st.add_leaves(&codes_s[c], &old, 1.0);
            st.project();
            let (tree, codes) = st.grow(p.groups.as_ref().map(|g| g[c].as_slice()));
            let (leaf_new, gain_new) = st.means(&codes);
            let (leaf_old, gain_old) = st.means(&codes_s[c]);
            if gain_new > gain_old {
                trees[c] = tree;
                codes_s[c] = codes;
                st.add_leaves(&codes_s[c], &leaf_new, -1.0);
                leaves[c * km..(c + 1) * km].copy_from_slice(&leaf_new);
            } else {
                st.add_leaves(&codes_s[c], &leaf_old, -1.0);
                leaves[c * km..(c + 1) * km].copy_from_slice(&leaf_old);
            }
            sse.push(sum_sq(&st.r));
            progress(done, steps);
        }
    }
    let mut prior = leaves;
    for b in 0..nbk {
        for (l, &mu) in prior[b * m..(b + 1) * m].iter_mut().zip(&ybar) {
            *l += mu;
        }
    }
    // Codes of every window.
    let mut codes = vec![0u8; n * c_total];
    codes
        .par_chunks_mut(c_total)
        .enumerate()
        .for_each(|(row, out)| {
            let a = windows.row(row);
            for (o, t) in out.iter_mut().zip(&trees) {
                *o = t.encode(a);
            }
        });
    Ok(Boosted {
        trees: Trees {
            trees,
            codes,
            depth: p.depth,
        },
        prior,
        sse,
        tree_rows: ns,
    })
}

/// The output-aware learner's trees of one group (see the [module docs](self)), for the
/// group's weight `w` (`M×D`, row-major): grown by [`boost`] from `start`, the MADDNESS start
/// learned (with ridge regularisation `lambda`) on the same seeded subset of
/// [`BoostParams::tree_rows`] windows that [`boost`] grows its trees on. With [`Start::Best`]
/// both starts run and the one whose trees leave the smaller training SSE on the tree rows
/// wins. `progress(done, total)` counts tree steps.
pub(super) fn learn(
    windows: &Windows,
    w: &[f32],
    m: usize,
    p: &BoostParams,
    start: Start,
    lambda: f32,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Boosted> {
    let sub;
    let tree_windows = if windows.rows > p.tree_rows {
        sub = windows.select(&sample_positions(
            windows.rows as u64,
            Some(p.tree_rows),
            p.seed,
        ));
        &sub
    } else {
        windows
    };
    // MADDNESS's trees and tables, learned on the tree rows.
    let maddness_start = || -> Result<(Vec<Tree>, Vec<f64>)> {
        let groups = match &p.groups {
            Some(g) => g.clone(),
            None => ranges_to_groups(&codebook_ranges(windows.dim, p.codebooks)?),
        };
        let t = learn_trees_in_groups(tree_windows, &groups, p.depth, &mut |_, _| {})?;
        let tables = maddness::tables(
            tree_windows,
            &t.codes,
            &groups,
            t.buckets(),
            lambda,
            w,
            m,
            &mut |_, _| {},
        )?;
        Ok((t.trees, tables))
    };
    let mut run = |start: Start| -> Result<Boosted> {
        match start {
            Start::Empty => boost(windows, w, m, p, None, progress),
            Start::Maddness | Start::Best => {
                let (trees, tables) = maddness_start()?;
                let init = Init {
                    trees: &trees,
                    tables: &tables,
                };
                boost(windows, w, m, p, Some(init), progress)
            }
        }
    };
    match start {
        Start::Best => {
            let a = run(Start::Maddness)?;
            let e = run(Start::Empty)?;
            let last = |b: &Boosted| b.sse.last().copied().unwrap_or(f64::INFINITY);
            Ok(if last(&e) < last(&a) { e } else { a })
        }
        start => run(start),
    }
}

/// One tree level: the per-bucket state shared by every candidate's walk.
struct Level<'a> {
    /// `[ns, k]` projected residual.
    z: &'a [f32],
    k: usize,
    /// Bucket of every tree row.
    bucket: &'a [u8],
    nb: usize,
    count: &'a [usize],
    /// `[nb, k]` bucket totals of `z`.
    total: &'a [f32],
    /// `‖total_b‖²`.
    tt: &'a [f64],
    /// `‖total_b‖² / n_b`: the bucket's score unsplit.
    base: &'a [f64],
    min_leaf: usize,
}

impl Level<'_> {
    /// The best split of every bucket on one column: the summed gain over the unsplit buckets
    /// (`Σ_b max (‖L‖²/n_l + ‖T−L‖²/n_r) − ‖T‖²/n`, 0 where no split is valid) and the
    /// thresholds (a bucket without a valid split sends every row left).
    fn walk(&self, col: &SortedColumn) -> (f64, Vec<f32>) {
        let (k, nb) = (self.k, self.nb);
        let mut left = vec![0.0f32; nb * k];
        let mut n_left = vec![0usize; nb];
        let mut last = vec![f32::NEG_INFINITY; nb];
        let mut best = vec![f64::NEG_INFINITY; nb];
        let mut thr = vec![0.0f32; nb];
        for (&row, &v) in col.order.iter().zip(&col.values) {
            let row = row as usize;
            let b = self.bucket[row] as usize;
            let nl = n_left[b];
            let lb = &mut left[b * k..(b + 1) * k];
            if v > last[b] && nl >= self.min_leaf && self.count[b] - nl >= self.min_leaf {
                let nr = self.count[b] - nl;
                let ll = dot32(lb, lb) as f64;
                let tl = dot32(lb, &self.total[b * k..(b + 1) * k]) as f64;
                let rr = (self.tt[b] - 2.0 * tl + ll).max(0.0);
                let gain = ll / nl as f64 + rr / nr as f64;
                if gain > best[b] {
                    best[b] = gain;
                    thr[b] = midpoint(last[b], v);
                }
            }
            for (l, &zv) in lb.iter_mut().zip(&self.z[row * k..(row + 1) * k]) {
                *l += zv;
            }
            n_left[b] = nl + 1;
            last[b] = v;
        }
        let mut score = 0.0;
        for b in 0..nb {
            if best[b] == f64::NEG_INFINITY {
                // No valid split: every row goes left (`last` is the bucket's largest value).
                thr[b] = if self.count[b] > 0 { last[b] } else { 0.0 };
            } else {
                score += (best[b] - self.base[b]).max(0.0);
            }
        }
        (score, thr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maddness::learn::testing::{
        assert_non_increasing, boost_params, fixture_windows, output_sse,
    };

    #[test]
    fn boosting_and_backfitting_never_raise_the_training_sse() {
        let (windows, w, m) = fixture_windows();
        let b = boost(&windows, &w, m, &boost_params(8, 2), None, &mut |_, _| {}).unwrap();
        assert_eq!(b.sse.len(), 1 + 8 + 2 * 8);
        assert_non_increasing("boosting + 2 backfitting passes", &b.sse);
        // Real gains: boosting explains most of the output; backfitting lowers it further.
        assert!(b.sse[8] < 0.5 * b.sse[0], "boosting: {:?}", b.sse);
        assert!(
            b.sse[24] < b.sse[8],
            "backfitting gained nothing: {:?}",
            b.sse
        );
        for (c, t) in b.trees.trees.iter().enumerate() {
            assert_non_increasing(&format!("tree {c} levels"), &t.level_sse);
        }
        // The reported SSE is the SSE of the prior tables on the tree rows (all windows here).
        let e = output_sse(&windows, &w, m, &b.trees.codes, 8, &b.prior);
        let last = *b.sse.last().unwrap();
        assert!(
            (e - last).abs() <= 1e-3 * last,
            "prior tables' SSE {e} vs reported {last}"
        );
    }
}
