//! Tied per-pixel encoding (issue 13, item 4; [`Learner::Tied`](super::Learner::Tied)): every
//! input pixel's channel vector is hashed by the same `T` trees whichever tap of a window it
//! sits at, and each tap has tables of its own.
//!
//! A window of `D = channels·area` values holds `area = KH·KW` pixels (taps); window dimension
//! `d = ci·area + t` is channel `ci` of tap `t`. Tied tree `c` covers a set of channels
//! `S_c` (the grouping, over channels); as a tree of the window at tap `t` it covers
//! `{ci·area + t : ci ∈ S_c}` and tests, at level `l`, dimension `split_ch[l]·area + t` with the
//! tied tree's thresholds. So the tied model **is** an untied one of `C = area·T` codebooks
//! (codebook `t·T + c` is tree `c` at tap `t`) whose trees are shifted copies: the table file,
//! the CPU mirror and every GPU kernel run it unchanged, and a tap in the padding reads a zero
//! pixel in both views. What it saves is the encoding: each pixel's `T` codes could be computed
//! once and shared by the `area` windows that read it (a kernel that does so is not built; the
//! look-ups, `C` per output, are the same as untied codebooks).
//!
//! The trees are MADDNESS's (module `tree`) on the pixels' channel vectors, each channel scaled
//! by how much the layer's output depends on it, `s_ci = ‖w[:, ci, :]‖` (so a split that separates
//! values of a channel the weight ignores is worth nothing), on up to [`PIXEL_ROWS`] pixels drawn
//! from the training windows' taps. The tables are then MADDNESS's ridge refit over all
//! windows (module `maddness`), towards the bucket means, as for untied MADDNESS trees.

use super::options::Grouping;
use super::tree::{learn_trees_in_groups, Tree, Trees};
use super::windows::{sample_positions, Windows};
use crate::error::{Error, Result};

/// Most pixels (window taps) the tied trees are learned on.
pub(crate) const PIXEL_ROWS: usize = 262_144;

/// Most outputs (`M · area`) of the problem the output-aware tied trees are grown on: its
/// principal directions need an `outputs²` Gram matrix of doubles (128 MiB at this limit).
pub(crate) const MAX_TIED_OUTPUTS: usize = 4096;

/// Fails with [`Error::TooLarge`] when the output-aware tied trees' problem for `m` outputs per
/// group and `area` taps has more than [`MAX_TIED_OUTPUTS`] outputs.
pub(crate) fn check_output_trees(m: usize, area: usize) -> Result<()> {
    if area * m > MAX_TIED_OUTPUTS {
        return Err(Error::TooLarge {
            what: "outputs × taps of the output-aware tied trees (grouping free)".into(),
            value: (area * m) as u64,
            limit: MAX_TIED_OUTPUTS as u64,
            why: format!(
                "their split criterion needs a Gram matrix of that size squared ({m} outputs × \
                 {area} taps); use --grouping correlation (or contiguous, channels) for this layer"
            ),
        });
    }
    Ok(())
}

/// Tied trees for `codebooks` look-ups per output over windows of `d = channels·area` values:
/// `round(codebooks / area)`, at most the channels. Fails when `d` is not a multiple of
/// `area`, or when `codebooks` is under half the area (not even one tree: the tables would
/// need `area` look-ups, more than asked).
pub(crate) fn trees_per_tap(d: usize, area: usize, codebooks: usize) -> Result<usize> {
    if area == 0 || !d.is_multiple_of(area) {
        return Err(Error::Argument(format!(
            "tied encoding: the window length D = {d} is not a multiple of the kernel area {area}"
        )));
    }
    let channels = d / area;
    let per = (codebooks + area / 2) / area;
    if per == 0 {
        return Err(Error::Argument(format!(
            "tied encoding: {codebooks} codebooks are fewer than half the kernel's {area} taps; \
             tied tables need one look-up per tap and tree, so at least C = {area} (or use an \
             untied learner)"
        )));
    }
    Ok(per.min(channels))
}

/// The tied trees of one group, expanded into `area·T` untied trees (codebook `t·T + c`), with
/// the window codes (`[N, area·T]`) and each codebook's window dimensions (a partition of
/// `0..D`).
///
/// `w` is the group's weight (`M×D`), `per_tap` the tied trees `T`, `grouping` how the channels
/// are shared among them (contiguous, channels or correlation; not free), `seed` the pixel
/// sample's.
pub(crate) fn grow(
    windows: &Windows,
    w: &[f32],
    area: usize,
    per_tap: usize,
    grouping: Grouping,
    (depth, seed): (usize, u64),
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Trees, Vec<Vec<u32>>)> {
    let d = windows.dim;
    let channels = d / area;
    if grouping == Grouping::Free {
        return Err(Error::Argument(
            "grouping free: tied MADDNESS trees each cover their own channels (the output-aware \
             tied trees split on any channel)"
                .into(),
        ));
    }
    let scale = channel_scales(w, d, area);
    let pixels = pixel_rows(windows, area, &scale, seed)?;
    // Over the channel vectors the kernel area is 1: channel grouping is contiguous runs.
    let groups = super::grouping::groups(grouping, channels, 1, per_tap, &pixels)?
        .ok_or_else(|| Error::Argument("tied trees need a grouping of the channels".into()))?;
    let tied = learn_trees_in_groups(&pixels, &groups, depth, progress)?;
    drop(pixels);

    let trees = shift_to_taps(&tied.trees, area, &scale);
    let dims = (0..area)
        .flat_map(|t| {
            groups.iter().map(move |chans| {
                chans
                    .iter()
                    .map(|&ch| ch * area as u32 + t as u32)
                    .collect()
            })
        })
        .collect();
    let codes = encode_all(windows, &trees);
    Ok((
        Trees {
            trees,
            codes,
            depth,
        },
        dims,
    ))
}

/// The untied trees of tied trees over channels (`tied[c]` tests channels, its thresholds in
/// units of `scale ⊙ x`): codebook `t·T + c` is tree `c` at tap `t`, testing window dimension
/// `ch·area + t` against the threshold divided by `scale[ch]`.
fn shift_to_taps(tied: &[Tree], area: usize, scale: &[f32]) -> Vec<Tree> {
    let mut trees = Vec::with_capacity(area * tied.len());
    for t in 0..area {
        for tree in tied {
            let mut shifted = tree.clone();
            for (l, sd) in shifted.split_dims.iter_mut().enumerate() {
                let ch = tree.split_dims[l] as usize;
                *sd = (ch * area + t) as u32;
                let s = scale[ch] as f64;
                for th in shifted.thresholds[l].iter_mut() {
                    *th = (*th as f64 / s) as f32;
                }
            }
            trees.push(shifted);
        }
    }
    trees
}

/// Output-aware tied trees: the output-aware learner (module `output`) on the 1×1 problem of
/// predicting, from one pixel's channel vector `x`, its contribution `w_t·x` to the output at
/// every tap `t` (`M·area` outputs; `w_t` the weight's `M × channels` slice at tap `t`), on up to
/// [`PIXEL_ROWS`] pixels. If the pixels' errors are independent, the error of a window's sum of
/// taps is the sum of these. Returns the expanded trees (free splits: any channel) with every
/// window's codes, and their leaf values as the prior of the tables' refit (`[area·T, K, M]`,
/// tap `t`'s block for codebook `t·T + c`).
pub(crate) fn grow_output(
    windows: &Windows,
    w: &[f32],
    m: usize,
    area: usize,
    per_tap: usize,
    config: &super::TrainConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<super::output::Boosted> {
    let d = windows.dim;
    let channels = d / area;
    check_output_trees(m, area)?;
    let ones = vec![1.0f32; channels];
    let pixels = pixel_rows(windows, area, &ones, config.seed)?;
    // [area·M, channels]: row t·M + o is w[o, :, t].
    let mut stacked = vec![0.0f32; area * m * channels];
    for t in 0..area {
        for o in 0..m {
            let row = &mut stacked[(t * m + o) * channels..(t * m + o + 1) * channels];
            for (ch, v) in row.iter_mut().enumerate() {
                *v = w[o * d + ch * area + t];
            }
        }
    }
    let params = super::output::BoostParams {
        codebooks: per_tap,
        depth: config.depth,
        groups: None,
        shortlist: config.shortlist,
        rank: config.rank,
        tree_rows: config.tree_rows,
        score_rows: super::SCORE_ROWS,
        min_leaf: config.min_leaf,
        shrinkage: config.shrinkage as f64,
        passes: config.passes,
        seed: config.seed ^ 0x7472_6565,
        after: None,
    };
    let b = super::output::learn(
        &pixels,
        &stacked,
        area * m,
        &params,
        config.start,
        config.lambda,
        progress,
    )?;
    drop(pixels);
    let c_total = area * per_tap;
    // Thresholds in the pixels' own units (scale 1: dividing by 1 changes no f32).
    let trees = shift_to_taps(&b.trees.trees, area, &ones);
    let nb = b.trees.buckets();
    let mut prior = vec![0.0f64; c_total * nb * m];
    for t in 0..area {
        for c in 0..per_tap {
            let cb = t * per_tap + c;
            for k in 0..nb {
                let src = (c * nb + k) * area * m + t * m;
                let dst = (cb * nb + k) * m;
                prior[dst..dst + m].copy_from_slice(&b.prior[src..src + m]);
            }
        }
    }
    let codes = encode_all(windows, &trees);
    Ok(super::output::Boosted {
        trees: Trees {
            trees,
            codes,
            depth: config.depth,
        },
        prior,
        sse: b.sse,
        tree_rows: b.tree_rows,
    })
}

/// `s_ci = ‖w[:, ci, :]‖` relative to the largest, floored at `1e-6` so that every channel keeps
/// a finite scale (a channel the weight ignores then barely counts).
fn channel_scales(w: &[f32], d: usize, area: usize) -> Vec<f32> {
    let channels = d / area;
    let mut s = vec![0.0f64; channels];
    for row in w.chunks_exact(d) {
        for (ch, acc) in s.iter_mut().enumerate() {
            *acc += row[ch * area..(ch + 1) * area]
                .iter()
                .map(|&v| v as f64 * v as f64)
                .sum::<f64>();
        }
    }
    let max = s.iter().cloned().fold(0.0f64, f64::max).sqrt();
    s.iter()
        .map(|&v| {
            if max > 0.0 {
                (v.sqrt() / max).max(1e-6) as f32
            } else {
                1.0
            }
        })
        .collect()
}

/// Up to [`PIXEL_ROWS`] scaled channel vectors `s ⊙ x` of the windows' taps (all `N·area` when
/// fewer, else a seeded uniform sample), as a `rows × channels` matrix.
fn pixel_rows(windows: &Windows, area: usize, scale: &[f32], seed: u64) -> Result<Windows> {
    let channels = scale.len();
    let total = (windows.rows * area) as u64;
    let picks = sample_positions(total, Some(PIXEL_ROWS), seed ^ 0x7469_6564);
    let mut data = Vec::with_capacity(picks.len() * channels);
    for &p in &picks {
        let (r, t) = (p as usize / area, p as usize % area);
        let row = windows.row(r);
        data.extend((0..channels).map(|ch| row[ch * area + t] * scale[ch]));
    }
    Windows::new(picks.len(), channels, data)
}

/// `[N, C]`: every window's code in every tree, as inference computes it.
fn encode_all(windows: &Windows, trees: &[Tree]) -> Vec<u8> {
    use rayon::prelude::*;
    let c_total = trees.len();
    let mut codes = vec![0u8; windows.rows * c_total];
    codes
        .par_chunks_mut(c_total)
        .enumerate()
        .for_each(|(r, out)| {
            let row = windows.row(r);
            for (k, tree) in out.iter_mut().zip(trees) {
                *k = tree.encode(row);
            }
        });
    codes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Windows of a 3-tap, 6-channel layer with random values.
    fn windows(rows: usize, channels: usize, area: usize, seed: u64) -> Windows {
        let mut rng = SplitMix64(seed);
        let data = (0..rows * channels * area)
            .map(|_| rng.uniform() * 2.0 - 1.0)
            .collect();
        Windows::new(rows, channels * area, data).unwrap()
    }

    #[test]
    fn trees_per_tap_rounds_to_the_nearest_multiple_of_the_area() {
        assert_eq!(trees_per_tap(6 * 9, 9, 32).unwrap(), 4); // 32/9 = 3.6
        assert_eq!(trees_per_tap(6 * 9, 9, 31).unwrap(), 3); // 3.4
        assert_eq!(trees_per_tap(6 * 9, 9, 5).unwrap(), 1); // 0.56 → 1
        assert_eq!(trees_per_tap(6 * 9, 9, 200).unwrap(), 6); // at most the channels
        assert_eq!(trees_per_tap(6 * 3, 3, 6).unwrap(), 2);
        let e = trees_per_tap(10, 3, 3).unwrap_err().to_string();
        assert!(e.contains("D = 10") && e.contains("area 3"), "{e}");
        // Not even one tree: refused, naming C and the taps.
        let e = trees_per_tap(512, 512, 36).unwrap_err().to_string();
        assert!(e.contains("36 codebooks") && e.contains("512 taps"), "{e}");
    }

    /// Every tap's copy of a tied tree gives a window the code the tied tree gives that tap's
    /// pixel, and the codebooks' dimensions partition the window.
    #[test]
    fn shifted_trees_encode_each_tap_as_the_tied_tree_encodes_its_pixel() {
        let (channels, area, per) = (6, 3, 2);
        let win = windows(600, channels, area, 7);
        // A weight that ignores channel 5: it must still get a finite threshold.
        let m = 4;
        let mut rng = SplitMix64(3);
        let mut w: Vec<f32> = (0..m * channels * area)
            .map(|_| rng.uniform() - 0.5)
            .collect();
        for row in w.chunks_exact_mut(channels * area) {
            row[5 * area..6 * area].fill(0.0);
        }
        let (trees, dims) = grow(
            &win,
            &w,
            area,
            per,
            Grouping::Contiguous,
            (4, 0),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(trees.trees.len(), area * per);
        let mut all: Vec<u32> = dims.concat();
        all.sort_unstable();
        assert_eq!(all, (0..(channels * area) as u32).collect::<Vec<_>>());
        for t in 0..area {
            for c in 0..per {
                let (a, b) = (&trees.trees[c], &trees.trees[t * per + c]);
                for l in 0..a.depth() {
                    assert_eq!(
                        b.split_dims[l],
                        a.split_dims[l] + t as u32,
                        "tap {t} tree {c}"
                    );
                    assert_eq!(b.thresholds[l], a.thresholds[l]);
                    assert!(b.thresholds[l].iter().all(|v| v.is_finite()));
                }
                for r in 0..win.rows {
                    // The window shifted by one tap puts tap t's pixel at tap 0.
                    let row = win.row(r);
                    let pixel: Vec<f32> = (0..channels * area)
                        .map(|j| {
                            let (ch, tap) = (j / area, j % area);
                            if tap == 0 {
                                row[ch * area + t]
                            } else {
                                f32::NAN
                            }
                        })
                        .collect();
                    assert_eq!(
                        trees.codes[r * area * per + t * per + c],
                        a.encode(&pixel),
                        "row {r} tap {t} tree {c}"
                    );
                }
            }
        }
    }

    #[test]
    fn free_grouping_is_refused() {
        let win = windows(200, 4, 3, 1);
        let w = vec![1.0f32; 2 * 12];
        let e = grow(&win, &w, 3, 2, Grouping::Free, (4, 0), &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("grouping free"), "{e}");
    }
}
