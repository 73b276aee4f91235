//! Which window dimensions each codebook covers (its candidates for splits).
//!
//! Windows are flattened channel-first, `d = (ci·KH + ky)·KW + kx`, so the `KH·KW` dimensions
//! of one input channel are contiguous.
//!
//! * [`Grouping::Contiguous`] — MADDNESS: `C` contiguous ranges, the first `D mod C` one longer.
//! * [`Grouping::Channels`] — whole input channels per codebook (`C ≤ C_in`: contiguous runs of
//!   channels, the first `C_in mod C` one channel longer) or, with more codebooks than channels,
//!   each channel's `KH·KW` window cut into contiguous pieces (the first `C mod C_in` channels
//!   one piece more). Never straddles a channel boundary.
//! * [`Grouping::Correlation`] — greedy correlation clustering: repeatedly take the unassigned
//!   dimension of largest variance and the unassigned dimensions most correlated with it (|r|),
//!   as many as the contiguous range of that codebook would hold; measured on a strided subset
//!   of the training windows.
//! * [`Grouping::Free`] — no grouping: every codebook may split on any dimension (the
//!   output-aware learner only).

//!
//! Dimension lists are `C` lists of window dimensions (`u32` in `0..D`), one per codebook;
//! every grouping but [`Grouping::Free`] partitions `0..D`.

use std::ops::Range;

use super::options::Grouping;
use super::windows::Windows;
use crate::error::{Error, Result};

/// The `C` contiguous dimension ranges of the codebooks over `0..d`: the first `d mod C` ranges
/// hold `d/C + 1` dimensions, the others `d/C`.
pub(crate) fn codebook_ranges(d: usize, codebooks: usize) -> Result<Vec<Range<usize>>> {
    if codebooks == 0 || codebooks > d {
        return Err(Error::Argument(format!(
            "codebooks = {codebooks}; it must be between 1 and the window length D = {d}"
        )));
    }
    let (base, extra) = (d / codebooks, d % codebooks);
    let mut start = 0;
    Ok((0..codebooks)
        .map(|c| {
            let len = base + usize::from(c < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect())
}

/// The dimensions of a range, as a list.
fn range_dims(r: Range<usize>) -> Vec<u32> {
    r.map(|j| j as u32).collect()
}

/// The dimensions of each range, as lists.
pub(crate) fn ranges_to_groups(ranges: &[Range<usize>]) -> Vec<Vec<u32>> {
    ranges.iter().cloned().map(range_dims).collect()
}

/// The dimension lists of `codebooks` codebooks over windows of `d = channels·area` values
/// (`area = KH·KW`), or `None` for [`Grouping::Free`]. `windows` is needed for
/// [`Grouping::Correlation`] only.
pub(crate) fn groups(
    grouping: Grouping,
    d: usize,
    area: usize,
    codebooks: usize,
    windows: &Windows,
) -> Result<Option<Vec<Vec<u32>>>> {
    let ranges = codebook_ranges(d, codebooks)?;
    Ok(match grouping {
        Grouping::Free => None,
        Grouping::Contiguous => Some(ranges_to_groups(&ranges)),
        Grouping::Channels => {
            if area == 0 || !d.is_multiple_of(area) {
                return Err(Error::Argument(format!(
                    "channel grouping: D = {d} is not a multiple of the kernel area {area}"
                )));
            }
            let channels = d / area;
            if codebooks <= channels {
                let per = codebook_ranges(channels, codebooks)?;
                Some(
                    per.into_iter()
                        .map(|r| range_dims(r.start * area..r.end * area))
                        .collect(),
                )
            } else {
                // Pieces per channel: the first `codebooks mod channels` get one more.
                let (base, extra) = (codebooks / channels, codebooks % channels);
                let mut out = Vec::with_capacity(codebooks);
                for ch in 0..channels {
                    let pieces = base + usize::from(ch < extra);
                    if pieces > area {
                        return Err(Error::Argument(format!(
                            "channel grouping: {codebooks} codebooks need {pieces} pieces of a \
                             {area}-value channel window"
                        )));
                    }
                    for r in codebook_ranges(area, pieces)? {
                        out.push(range_dims(ch * area + r.start..ch * area + r.end));
                    }
                }
                Some(out)
            }
        }
        Grouping::Correlation => Some(correlation_groups(
            windows,
            &ranges.iter().map(|r| r.len()).collect::<Vec<_>>(),
        )),
    })
}

/// Greedy correlation clusters with the given sizes (see the [module docs](self)).
fn correlation_groups(windows: &Windows, sizes: &[usize]) -> Vec<Vec<u32>> {
    let d = windows.dim;
    // A strided subset of rows, bounded so that the clustering stays cheap (≤ ~1e9 products).
    let budget = 1_000_000_000 / (sizes.len().max(1) * d).max(1);
    let rows = windows.rows.min(budget.clamp(256, 4096));
    let stride = windows.rows.div_ceil(rows).max(1);
    let picked: Vec<usize> = (0..windows.rows).step_by(stride).collect();
    let r = picked.len();
    // Column-major centred, unit-norm columns (constant columns stay 0).
    let mut cols = vec![0.0f32; d * r];
    let mut var = vec![0.0f64; d];
    for j in 0..d {
        let mean: f64 = picked
            .iter()
            .map(|&i| windows.row(i)[j] as f64)
            .sum::<f64>()
            / r as f64;
        let col = &mut cols[j * r..(j + 1) * r];
        for (c, &i) in col.iter_mut().zip(&picked) {
            *c = (windows.row(i)[j] as f64 - mean) as f32;
        }
        let ss: f64 = col.iter().map(|&v| (v as f64).powi(2)).sum();
        var[j] = ss;
        if ss > 0.0 {
            let inv = (1.0 / ss.sqrt()) as f32;
            col.iter_mut().for_each(|v| *v *= inv);
        }
    }
    let mut free: Vec<bool> = vec![true; d];
    let mut out = Vec::with_capacity(sizes.len());
    for &size in sizes {
        let seed = (0..d)
            .filter(|&j| free[j])
            .max_by(|&a, &b| var[a].total_cmp(&var[b]).then(b.cmp(&a)))
            .unwrap_or(0);
        free[seed] = false;
        let sc = &cols[seed * r..(seed + 1) * r];
        let mut scored: Vec<(f32, usize)> = (0..d)
            .filter(|&j| free[j])
            .map(|j| (super::linalg::dot32(sc, &cols[j * r..(j + 1) * r]).abs(), j))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut group = vec![seed as u32];
        for &(_, j) in scored.iter().take(size.saturating_sub(1)) {
            free[j] = false;
            group.push(j as u32);
        }
        group.sort_unstable();
        out.push(group);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64 as Rng;

    #[test]
    fn ranges_cover_and_first_ones_are_longer() {
        let r = codebook_ranges(10, 4).unwrap();
        assert_eq!(r, vec![0..3, 3..6, 6..8, 8..10]);
        assert!(codebook_ranges(3, 4).is_err());
        assert!(codebook_ranges(3, 0).is_err());
        assert_eq!(codebook_ranges(5, 5).unwrap().len(), 5);
    }

    /// Every grouping partitions `0..D` into `C` non-empty groups; channel groups never straddle a
    /// channel; contiguous groups are MADDNESS's ranges.
    #[test]
    fn groupings_partition_the_window() {
        let mut rng = Rng(3);
        let (d, area) = (6 * 9, 9);
        let data: Vec<f32> = (0..300 * d).map(|_| rng.normal()).collect();
        let windows = Windows::new(300, d, data).unwrap();
        for c in [1, 4, 6, 7, 13, 54] {
            for g in [
                Grouping::Contiguous,
                Grouping::Channels,
                Grouping::Correlation,
            ] {
                let groups = groups(g, d, area, c, &windows).unwrap().unwrap();
                assert_eq!(groups.len(), c, "{g:?} C={c}");
                let mut all: Vec<u32> = groups.iter().flatten().copied().collect();
                all.sort_unstable();
                assert_eq!(all, (0..d as u32).collect::<Vec<_>>(), "{g:?} C={c}");
                assert!(groups.iter().all(|g| !g.is_empty()), "{g:?} C={c}");
                if g == Grouping::Channels {
                    for grp in &groups {
                        let (lo, hi) =
                            (grp[0] as usize / area, *grp.last().unwrap() as usize / area);
                        assert!(
                            lo == hi || grp.len() % area == 0,
                            "C={c}: group {grp:?} straddles channels"
                        );
                    }
                }
                if g == Grouping::Contiguous {
                    let ranges = codebook_ranges(d, c).unwrap();
                    assert_eq!(groups, ranges_to_groups(&ranges));
                }
            }
            assert!(groups(Grouping::Free, d, area, c, &windows)
                .unwrap()
                .is_none());
        }
    }
}
