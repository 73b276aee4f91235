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

use super::learn::{codebook_ranges, Windows};
use crate::error::{Error, Result};

/// How the window dimensions are shared among the codebooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// `C` contiguous ranges (MADDNESS).
    Contiguous,
    /// Whole input channels (or contiguous pieces of one channel's window).
    Channels,
    /// Greedy clusters of correlated dimensions.
    Correlation,
    /// Any dimension for every codebook (output-aware learner only).
    Free,
}

impl Grouping {
    /// The name used on the command line and in the table metadata.
    pub fn name(self) -> &'static str {
        match self {
            Grouping::Contiguous => "contiguous",
            Grouping::Channels => "channels",
            Grouping::Correlation => "correlation",
            Grouping::Free => "free",
        }
    }
}

impl std::str::FromStr for Grouping {
    type Err = Error;
    fn from_str(s: &str) -> Result<Grouping> {
        Ok(match s {
            "contiguous" => Grouping::Contiguous,
            "channels" => Grouping::Channels,
            "correlation" => Grouping::Correlation,
            "free" => Grouping::Free,
            other => {
                return Err(Error::Argument(format!(
                    "grouping {other:?}; expected contiguous, channels, correlation or free"
                )))
            }
        })
    }
}

/// The dimension lists of `codebooks` codebooks over windows of `d = channels·area` values
/// (`area = KH·KW`), or `None` for [`Grouping::Free`]. `windows` is needed for
/// [`Grouping::Correlation`] only.
pub fn groups(
    grouping: Grouping,
    d: usize,
    area: usize,
    codebooks: usize,
    windows: &Windows,
) -> Result<Option<Vec<Vec<u32>>>> {
    let ranges = codebook_ranges(d, codebooks)?;
    let to_list = |r: std::ops::Range<usize>| r.map(|j| j as u32).collect::<Vec<u32>>();
    Ok(match grouping {
        Grouping::Free => None,
        Grouping::Contiguous => Some(ranges.into_iter().map(to_list).collect()),
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
                        .map(|r| to_list(r.start * area..r.end * area))
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
                        out.push(to_list(ch * area + r.start..ch * area + r.end));
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
            .map(|j| (super::boost::dot32(sc, &cols[j * r..(j + 1) * r]).abs(), j))
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
