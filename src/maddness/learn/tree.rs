//! Hash trees: the shape both learners share (depth 4 to 8, one split dimension per level, one
//! threshold per node; [`Tree::encode`]), MADDNESS's level-by-level tree learning on the input
//! sub-vectors (DESIGN.md §3, step 2), and the sorting it and the output-aware learner use.
//!
//! Input: the training windows ([`Windows`], `N×D`, row-major) and per codebook the list of
//! dimensions it may split on. Output ([`Trees`]): one tree per codebook and the codes of the
//! windows as a row-major `[N, C]` byte matrix.
//!
//! Per codebook, the candidate dimensions of a level are the 4 with the largest summed
//! within-bucket SSE; for each, every bucket's best split (minimum SSE(left) + SSE(right) over
//! all the codebook's dimensions, threshold = [`midpoint`] of the neighbouring values) comes
//! from one walk over the rows in that dimension's sorted order ([`sort_column`], a radix sort,
//! once per dimension) with running per-bucket sums; the rows are gathered in that order as
//! 64-byte lines with software prefetch. The candidate with the smallest summed loss becomes the
//! level's dimension. A bucket with fewer than 2 rows has loss 0 and a threshold that sends its
//! row (if any) left.

use rayon::prelude::*;

use super::windows::Windows;
use crate::error::{Error, Result};

/// Candidate dimensions tried per tree level (the original MADDNESS's 4).
const CANDIDATES: usize = 4;

/// One learned hash tree (one codebook).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Tree {
    /// The window dimension (in `0..D`) each level tests (`depth` entries).
    pub(crate) split_dims: Vec<u32>,
    /// Thresholds per level, `2^depth` slots each; level `t` uses slots `0..2^t`, the rest
    /// are 0.
    pub(crate) thresholds: Vec<Vec<f32>>,
    /// SSE of the training rows around their bucket means on the codebook's dimensions, before
    /// any split (index 0) and after each level.
    pub(crate) level_sse: Vec<f64>,
}

impl Tree {
    /// A tree of `depth` levels testing dimension 0 against thresholds 0 (all still to learn).
    pub(crate) fn new(depth: usize) -> Tree {
        Tree {
            split_dims: vec![0; depth],
            thresholds: vec![vec![0.0; 1 << depth]; depth],
            level_sse: vec![0.0; depth + 1],
        }
    }

    /// Its depth.
    pub(crate) fn depth(&self) -> usize {
        self.split_dims.len()
    }

    /// The code (`0..2^depth`) of a window `a` (`D` values): from `i = 0`, at each level `t`,
    /// `i = 2·i + (a[split_dims[t]] > thresholds[t][i])` (ties go left).
    pub(crate) fn encode(&self, a: &[f32]) -> u8 {
        let mut i = 0usize;
        for (&d, thr) in self.split_dims.iter().zip(&self.thresholds) {
            i = 2 * i + usize::from(a[d as usize] > thr[i]);
        }
        i as u8
    }
}

/// The trees of one group and the codes of the training windows.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Trees {
    /// One tree per codebook.
    pub(crate) trees: Vec<Tree>,
    /// `[N, C]`: the code of every training window in every codebook.
    pub(crate) codes: Vec<u8>,
    /// The trees' depth.
    pub(crate) depth: usize,
}

impl Trees {
    /// Buckets per codebook, `2^depth`.
    pub(crate) fn buckets(&self) -> usize {
        1 << self.depth
    }
}

/// Learns one tree per codebook range over `windows` (see the [module docs](self)).
#[cfg(test)]
pub(crate) fn learn_trees(windows: &Windows, ranges: &[std::ops::Range<usize>]) -> Result<Trees> {
    learn_trees_in_groups(
        windows,
        &super::grouping::ranges_to_groups(ranges),
        crate::maddness::DEFAULT_DEPTH,
        &mut |_, _| {},
    )
}

/// [`learn_trees`] over codebooks that cover any lists of dimensions (`groups[c]`, each
/// non-empty, in `0..D`), trees of `depth` levels, with progress reports `(done, total)` in
/// codebooks.
pub(crate) fn learn_trees_in_groups(
    windows: &Windows,
    groups: &[Vec<u32>],
    depth: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Trees> {
    if let Some(r) = groups
        .iter()
        .find(|r| r.is_empty() || r.iter().any(|&j| j as usize >= windows.dim))
    {
        return Err(Error::Argument(format!(
            "codebook dimensions {r:?} are empty or outside the window (D = {})",
            windows.dim
        )));
    }
    let c_total = groups.len();
    // Chunks of codebooks between progress reports; a multiple of the thread count.
    let chunk = (rayon::current_num_threads() * 4).max(8);
    let mut results: Vec<(Tree, Vec<u8>)> = Vec::with_capacity(c_total);
    progress(0, c_total);
    for start in (0..c_total).step_by(chunk) {
        let end = (start + chunk).min(c_total);
        let part: Vec<(Tree, Vec<u8>)> = groups[start..end]
            .par_iter()
            .map(|r| learn_tree(windows, r, depth))
            .collect();
        results.extend(part);
        progress(end, c_total);
    }
    let n = windows.rows;
    let mut codes = vec![0u8; n * c_total];
    for (c, (_, b)) in results.iter().enumerate() {
        for (r, &k) in b.iter().enumerate() {
            codes[r * c_total + c] = k;
        }
    }
    Ok(Trees {
        trees: results.into_iter().map(|(t, _)| t).collect(),
        codes,
        depth,
    })
}

/// Per-bucket statistics of the rows on a codebook's dimensions, from the centred rows
/// (`x − μ`, for numerical stability; the SSE does not change).
struct BucketStats {
    count: Vec<usize>,
    /// `[buckets, w]`: Σ (x − μ).
    sum: Vec<f64>,
    /// `[buckets, w]`: Σ (x − μ)².
    sumsq: Vec<f64>,
}

impl BucketStats {
    fn new(xc: &[f32], w: usize, bucket: &[u8], buckets: usize) -> BucketStats {
        let mut s = BucketStats {
            count: vec![0; buckets],
            sum: vec![0.0; buckets * w],
            sumsq: vec![0.0; buckets * w],
        };
        for (row, &b) in xc.chunks_exact(w).zip(bucket) {
            let b = b as usize;
            s.count[b] += 1;
            let sum = &mut s.sum[b * w..(b + 1) * w];
            let sq = &mut s.sumsq[b * w..(b + 1) * w];
            for ((s, q), &v) in sum.iter_mut().zip(sq.iter_mut()).zip(row) {
                let v = v as f64;
                *s += v;
                *q += v * v;
            }
        }
        s
    }

    /// Within-bucket SSE of bucket `b`, dimension `j`.
    fn sse(&self, b: usize, j: usize, w: usize) -> f64 {
        let n = self.count[b];
        if n == 0 {
            return 0.0;
        }
        let s = self.sum[b * w + j];
        (self.sumsq[b * w + j] - s * s / n as f64).max(0.0)
    }
}

/// A key whose unsigned order is the numeric order of finite f32 values.
#[inline]
fn order_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The inverse of [`order_key`].
#[inline]
fn key_value(k: u32) -> f32 {
    f32::from_bits(if k & 0x8000_0000 != 0 {
        k & 0x7FFF_FFFF
    } else {
        !k
    })
}

/// One column of a codebook's rows in increasing order.
pub(crate) struct SortedColumn {
    /// Row indices, ties in increasing row order.
    pub(crate) order: Vec<u32>,
    /// The column's values in that order.
    pub(crate) values: Vec<f32>,
}

/// Sorts column `j` of the `n×w` matrix `x`: a stable LSD radix sort on [`order_key`]
/// (3 passes of 11 bits, passes where every key shares the digit skipped).
pub(crate) fn sort_column(x: &[f32], w: usize, j: usize) -> SortedColumn {
    const BITS: u32 = 11;
    const RADIX: usize = 1 << BITS;
    let n = x.len() / w;
    let mut keys: Vec<u32> = x.chunks_exact(w).map(|row| order_key(row[j])).collect();
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut keys2 = vec![0u32; n];
    let mut order2 = vec![0u32; n];
    for pass in 0..3 {
        let shift = pass * BITS;
        let mut hist = vec![0usize; RADIX];
        for &k in &keys {
            hist[((k >> shift) as usize) & (RADIX - 1)] += 1;
        }
        if hist.contains(&n) {
            continue;
        }
        let mut pos = 0;
        for h in hist.iter_mut() {
            let c = *h;
            *h = pos;
            pos += c;
        }
        for (&k, &o) in keys.iter().zip(&order) {
            let digit = ((k >> shift) as usize) & (RADIX - 1);
            keys2[hist[digit]] = k;
            order2[hist[digit]] = o;
            hist[digit] += 1;
        }
        std::mem::swap(&mut keys, &mut keys2);
        std::mem::swap(&mut order, &mut order2);
    }
    SortedColumn {
        order,
        values: keys.into_iter().map(key_value).collect(),
    }
}

/// A threshold `t` with `lo ≤ t < hi` (so `lo` goes left and `hi` right): the midpoint where
/// f32 rounding allows, else `lo`.
#[inline]
pub(crate) fn midpoint(lo: f32, hi: f32) -> f32 {
    let m = ((lo as f64 + hi as f64) * 0.5) as f32;
    if m >= lo && m < hi {
        m
    } else {
        lo
    }
}

/// Values per [`Line`].
const LINE: usize = 16;

/// A cache line of row values: a codebook's row is stored as `ceil(w/16)` lines, zero-padded, so
/// that gathering a row in sorted order touches as few cache lines as possible.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; LINE]);

fn lines_as_f32(lines: &[Line]) -> &[f32] {
    // SAFETY: `Line` is `repr(C)` holding exactly `LINE` f32 values and no padding (64 bytes).
    unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<f32>(), lines.len() * LINE) }
}

/// Asks the CPU to bring `lines` into the cache (a hint; no effect off x86-64).
#[inline(always)]
fn prefetch(lines: &[Line]) {
    #[cfg(target_arch = "x86_64")]
    for line in lines {
        // SAFETY: a prefetch is only a hint and never faults; the pointer comes from a reference.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                (line as *const Line).cast::<i8>(),
                std::arch::x86_64::_MM_HINT_T0,
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = lines;
}

/// The best split of every bucket of one level on one column.
///
/// `rows` holds the centred rows (`n×w`) and `bucket` their buckets, both in the column's
/// sorted order, whose values are `values`. Returns the summed loss and the thresholds.
fn best_splits(
    rows: &[Line],
    bucket: &[u8],
    values: &[f32],
    w: usize,
    stats: &BucketStats,
    buckets: usize,
) -> (f64, Vec<f32>) {
    let lines = w.div_ceil(LINE);
    let rows: &[f32] = lines_as_f32(rows);
    let ws = lines * LINE;
    // Running left sums and the buckets' totals, zero-padded to whole lines so that the loops
    // below have fixed-size blocks (the padding contributes 0).
    let mut left = vec![0.0f64; buckets * ws];
    let mut total = vec![0.0f64; buckets * ws];
    for b in 0..buckets {
        total[b * ws..b * ws + w].copy_from_slice(&stats.sum[b * w..(b + 1) * w]);
    }
    let mut n_left = vec![0usize; buckets];
    let mut last = vec![0.0f32; buckets];
    let mut best_gain = vec![f64::NEG_INFINITY; buckets];
    let mut thr = vec![0.0f32; buckets];
    for ((row, &b), &v) in rows.chunks_exact(ws).zip(bucket).zip(values) {
        let b = b as usize;
        let nl = n_left[b];
        let lb = &mut left[b * ws..(b + 1) * ws];
        if nl > 0 && v > last[b] {
            // Split between the rows so far (left) and this one onwards (right):
            // SSE(L) + SSE(R) = Σ x² − (Σ_d L_d²/n_l + R_d²/n_r); maximise the bracket.
            let nr = stats.count[b] - nl;
            let (il, ir) = (1.0 / nl as f64, 1.0 / nr as f64);
            let sb = &total[b * ws..(b + 1) * ws];
            // Eight partial sums in a fixed order: vectorises, and stays deterministic.
            let mut acc = [0.0f64; 8];
            for (lc, sc) in lb.chunks_exact(8).zip(sb.chunks_exact(8)) {
                for k in 0..8 {
                    let (l, r) = (lc[k], sc[k] - lc[k]);
                    acc[k] += l * l * il + r * r * ir;
                }
            }
            let gain =
                ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            if gain > best_gain[b] {
                best_gain[b] = gain;
                thr[b] = midpoint(last[b], v);
            }
        }
        for (l, &xv) in lb.iter_mut().zip(row) {
            *l += xv as f64;
        }
        n_left[b] = nl + 1;
        last[b] = v;
    }
    // After the walk `last[b]` is the largest value of bucket b.
    let mut loss = 0.0f64;
    for b in 0..buckets {
        let n = stats.count[b];
        if n < 2 {
            // Any threshold; the row (if any) goes left. Loss 0.
            thr[b] = if n == 1 { last[b] } else { 0.0 };
            continue;
        }
        if best_gain[b] == f64::NEG_INFINITY {
            // Every row has the same value here: no threshold separates them; all go left.
            thr[b] = last[b];
            loss += (0..w).map(|d| stats.sse(b, d, w)).sum::<f64>();
            continue;
        }
        let total_sq: f64 = stats.sumsq[b * w..(b + 1) * w].iter().sum();
        loss += (total_sq - best_gain[b]).max(0.0);
    }
    (loss, thr)
}

/// Learns the tree (`depth` levels) of one codebook; returns it with the codes of the rows.
fn learn_tree(windows: &Windows, group: &[u32], depth: usize) -> (Tree, Vec<u8>) {
    let n = windows.rows;
    let w = group.len();
    let mut x = vec![0.0f32; n * w];
    for (dst, src) in x
        .chunks_exact_mut(w)
        .zip(windows.data.chunks_exact(windows.dim))
    {
        for (v, &j) in dst.iter_mut().zip(group) {
            *v = src[j as usize];
        }
    }
    let mut mu = vec![0.0f64; w];
    for row in x.chunks_exact(w) {
        for (m, &v) in mu.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    let mu: Vec<f32> = mu.iter().map(|&m| (m / n as f64) as f32).collect();
    // Centred rows, for the sums.
    let xc: Vec<f32> = x
        .chunks_exact(w)
        .flat_map(|row| row.iter().zip(&mu).map(|(&v, &m)| v - m))
        .collect();
    // The same as cache lines, zero-padded.
    let lines = w.div_ceil(LINE);
    let mut xl = vec![Line([0.0; LINE]); n * lines];
    for (dst, src) in xl.chunks_exact_mut(lines).zip(xc.chunks_exact(w)) {
        for (line, part) in dst.iter_mut().zip(src.chunks(LINE)) {
            line.0[..part.len()].copy_from_slice(part);
        }
    }
    let mut bucket = vec![0u8; n];
    let mut sorted: Vec<Option<SortedColumn>> = (0..w).map(|_| None).collect();
    // Rows gathered in a column's sorted order (reused). Keeping one copy per column across
    // levels was measured slower than gathering again from the cache-resident `xl`.
    let mut rows_sorted = vec![Line([0.0; LINE]); n * lines];
    let mut bucket_sorted = vec![0u8; n];
    let mut tree = Tree::new(depth);
    for t in 0..depth {
        let buckets = 1usize << t;
        let stats = BucketStats::new(&xc, w, &bucket, buckets);
        let col_sse: Vec<f64> = (0..w)
            .map(|j| (0..buckets).map(|b| stats.sse(b, j, w)).sum())
            .collect();
        if t == 0 {
            tree.level_sse[0] = col_sse.iter().sum();
        }
        let mut dims: Vec<usize> = (0..w).collect();
        dims.sort_by(|&a, &b| col_sse[b].total_cmp(&col_sse[a]).then(a.cmp(&b)));
        dims.truncate(CANDIDATES.min(w));
        let mut best: Option<(f64, usize, Vec<f32>)> = None;
        for &j in &dims {
            let col = sorted[j].get_or_insert_with(|| sort_column(&x, w, j));
            for (bs, &r) in bucket_sorted.iter_mut().zip(&col.order) {
                *bs = bucket[r as usize];
            }
            // Gather the rows in sorted order (random reads): prefetching a few rows ahead
            // was measured to save 10–20 % of the tree time.
            const AHEAD: usize = 16;
            for (i, (dst, &r)) in rows_sorted
                .chunks_exact_mut(lines)
                .zip(&col.order)
                .enumerate()
            {
                if let Some(&next) = col.order.get(i + AHEAD) {
                    prefetch(&xl[next as usize * lines..][..lines]);
                }
                // (An element loop: `copy_from_slice` calls memmove, slow for one line.)
                for (d, s) in dst.iter_mut().zip(&xl[r as usize * lines..][..lines]) {
                    *d = *s;
                }
            }
            let (loss, thr) = best_splits(
                &rows_sorted,
                &bucket_sorted,
                &col.values,
                w,
                &stats,
                buckets,
            );
            if best.as_ref().is_none_or(|b| loss < b.0) {
                best = Some((loss, j, thr));
            }
        }
        // `dims` is never empty (w ≥ 1), so `best` is set.
        let (loss, j, thr) = best.unwrap_or((tree.level_sse[t], 0, vec![0.0; buckets]));
        for (b, row) in bucket.iter_mut().zip(x.chunks_exact(w)) {
            *b = 2 * *b + u8::from(row[j] > thr[*b as usize]);
        }
        tree.split_dims[t] = group[j];
        tree.thresholds[t][..buckets].copy_from_slice(&thr[..buckets]);
        tree.level_sse[t + 1] = loss;
    }
    (tree, bucket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maddness::learn::grouping::codebook_ranges;
    use crate::maddness::learn::testing::{all_windows, fixture, grouped_sse};

    #[test]
    fn midpoint_separates_neighbours() {
        let lo = 1.0f32;
        let hi = f32::from_bits(lo.to_bits() + 1);
        let t = midpoint(lo, hi);
        assert!(lo <= t && t < hi, "{lo} {t} {hi}");
        assert_eq!(midpoint(1.0, 3.0), 2.0);
        let t = midpoint(-f32::MAX, f32::MAX);
        assert!(t.is_finite());
    }

    #[test]
    fn order_key_sorts_like_floats() {
        let v = [-3.5f32, -0.0, 0.0, 1e-40, 2.0, f32::MAX, -f32::MAX];
        for &a in &v {
            for &b in &v {
                if a < b {
                    assert!(order_key(a) < order_key(b), "{a} {b}");
                }
            }
        }
    }

    #[test]
    fn radix_sort_matches_std_sort() {
        let vals = [3.0f32, -1.0, 0.0, -0.0, 3.0, 1e-30, -1e30, 7.5, 2.0, 3.0];
        let x: Vec<f32> = vals.iter().flat_map(|&v| [v, 1.0]).collect();
        let s = sort_column(&x, 2, 0);
        let mut want: Vec<u32> = (0..vals.len() as u32).collect();
        want.sort_by(|&a, &b| {
            order_key(vals[a as usize])
                .cmp(&order_key(vals[b as usize]))
                .then(a.cmp(&b))
        });
        assert_eq!(s.order, want);
        for (i, &r) in s.order.iter().enumerate() {
            assert_eq!(
                s.values[i].to_bits(),
                vals[r as usize].to_bits(),
                "position {i}"
            );
        }
    }

    /// Every level's reported SSE equals the SSE of the windows around the means of their level-t
    /// buckets (the top t bits of the code), recomputed independently, and never increases.
    #[test]
    fn every_split_lowers_the_sse() {
        let layer = fixture();
        let windows = all_windows(&layer.spec, &layer.train().unwrap());
        let rows: Vec<Vec<f32>> = (0..windows.rows).map(|i| windows.row(i).to_vec()).collect();
        for c_total in [1, 8, 13] {
            let ranges = codebook_ranges(windows.dim, c_total).unwrap();
            let trees = learn_trees(&windows, &ranges).unwrap();
            for (c, (tree, range)) in trees.trees.iter().zip(&ranges).enumerate() {
                for t in 0..=4 {
                    let groups: Vec<usize> = (0..windows.rows)
                        .map(|r| (trees.codes[r * c_total + c] >> (4 - t)) as usize)
                        .collect();
                    let sse = grouped_sse(&rows, &groups, range.clone());
                    let got = tree.level_sse[t];
                    assert!(
                        (got - sse).abs() <= 1e-6 * sse.max(1.0),
                        "C {c_total} codebook {c} level {t}: reported SSE {got}, recomputed {sse}"
                    );
                    if t > 0 {
                        let prev = tree.level_sse[t - 1];
                        assert!(
                            got <= prev * (1.0 + 1e-12),
                            "C {c_total} codebook {c}: SSE rose from {prev} to {got} at level {t}"
                        );
                    }
                }
                // The split dimensions stay inside the codebook's range.
                for &d in &tree.split_dims {
                    assert!(
                        range.contains(&(d as usize)),
                        "codebook {c}: dim {d} outside {range:?}"
                    );
                }
                // The codes are what the tree encodes.
                for r in (0..windows.rows).step_by(97) {
                    assert_eq!(
                        tree.encode(windows.row(r)),
                        trees.codes[r * c_total + c],
                        "row {r}"
                    );
                }
            }
            // On real data the first split of each codebook must lower the SSE.
            let first: f64 = trees
                .trees
                .iter()
                .map(|t| t.level_sse[0] - t.level_sse[1])
                .sum();
            assert!(
                first > 0.0,
                "C {c_total}: the first level lowered the SSE by {first}"
            );
        }
    }
}
