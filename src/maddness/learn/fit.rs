//! How well the trained tables of one group fit their own training windows, and the refusal
//! of degenerate training (DESIGN.md §5's NMSE on training data): tables whose 8-bit output is
//! no better than predicting each output channel's mean, or training windows whose exact
//! output is constant, are an error instead of a file that silently gives wrong results.
//!
//! Layouts: windows `N×D` (row-major), codes `[N, C]`, weight of the group `M×D`, tables as in
//! [`Tables`] (`luts` `[G, C, K, M]` u8, `lut_offsets` `[G, C, M]`, `scales` `[O]`).

use super::windows::Windows;
use crate::error::{Error, Result};
use crate::maddness::activation::Activation;
use crate::maddness::Tables;

/// Fewest windows training accepts: a depth-4 tree has 16 leaves, and fewer than 8 windows
/// per leaf on average leave the buckets' tables to noise.
pub const MIN_TRAIN_WINDOWS: u64 = 16 * 8;

/// Most training windows the fit is measured on (evenly spaced over the sampled windows).
const FIT_ROWS: usize = 4096;

/// The NMSE of group `g`'s 8-bit tables on (up to [`FIT_ROWS`] of) its training windows,
/// against the exact output `windows · wᵀ` (the bias cancels: it is exact in both) or the
/// given targets `given` (`N×M`, bias excluded, [`TrainConfig::target_outputs`](super::TrainConfig)),
/// or, with an activation `act`, of both after it (bias included).
///
/// Fails with [`Error::Training`] when the exact output of the windows is constant in every
/// channel (constant or all-zero inputs: there is nothing to learn), and when the tables fit no
/// better than each channel's mean (NMSE ≥ 1), naming the numbers.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_group_fit(
    tables: &Tables,
    g: usize,
    windows: &Windows,
    codes: &[u8],
    w: &[f32],
    m: usize,
    act: Activation,
    given: Option<&[f32]>,
) -> Result<f64> {
    let (n, d, c_total) = (windows.rows, windows.dim, tables.codebooks);
    let step = n.div_ceil(FIT_ROWS).max(1);
    let rows: Vec<usize> = (0..n).step_by(step).collect();
    let k = tables.inference_constants();
    let nb = tables.buckets();
    let mut exact = vec![0.0f64; rows.len() * m];
    let mut approx = vec![0.0f64; rows.len() * m];
    for (i, &r) in rows.iter().enumerate() {
        let a = &windows.data[r * d..(r + 1) * d];
        for j in 0..m {
            let o = g * m + j;
            exact[i * m + j] = match given {
                Some(t) => t[r * m + j] as f64,
                None => a
                    .iter()
                    .zip(&w[j * d..(j + 1) * d])
                    .map(|(&x, &y)| x as f64 * y as f64)
                    .sum(),
            };
            let mut sum = 0u32;
            for c in 0..c_total {
                let code = codes[r * c_total + c] as usize;
                sum += tables.luts[((g * c_total + c) * nb + code) * m + j] as u32;
            }
            let bias = tables.bias.as_ref().map_or(0.0, |b| b[o]) as f64;
            let y = sum as f32 * k.inv_scale[o] + k.offset[o];
            approx[i * m + j] = y as f64 - bias;
            if !act.is_identity() {
                exact[i * m + j] = act.apply(exact[i * m + j] + bias);
                approx[i * m + j] = act.apply(approx[i * m + j] + bias);
            }
        }
    }
    let rows_n = rows.len() as f64;
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for j in 0..m {
        let mean = (0..rows.len()).map(|i| exact[i * m + j]).sum::<f64>() / rows_n;
        for i in 0..rows.len() {
            let e = exact[i * m + j];
            num += (e - approx[i * m + j]).powi(2);
            den += (e - mean).powi(2);
        }
    }
    // Relative to the output's size: sums of products in f64 of f32 values are exact to ~1e-16.
    let scale: f64 = exact.iter().map(|v| v * v).sum::<f64>() / exact.len() as f64;
    if den <= 1e-24 * scale * exact.len() as f64 || den == 0.0 {
        return Err(Error::Training(format!(
            "group {g}: the layer's exact output on the {} training windows checked is constant \
             in every output channel (per-channel variance {:.3e}): the training inputs are \
             constant or all zero, so there is nothing to learn; give real inputs",
            rows.len(),
            den / exact.len() as f64
        )));
    }
    let nmse = num / den;
    if nmse.is_nan() || nmse >= 1.0 {
        return Err(Error::Training(format!(
            "group {g}: the 8-bit tables fit their own training windows no better than \
             predicting each output channel's mean (training NMSE {nmse:.4} ≥ 1, 1 − NMSE \
             {:.4}, on {} windows): the inputs are degenerate (e.g. scaled far from the \
             weight's range) or too few; the tables would give wrong results",
            1.0 - nmse,
            rows.len()
        )));
    }
    if nmse > 0.5 {
        log::warn!(
            "group {g}: the tables explain only {:.1} % of the output variance of their own \
             training windows (training NMSE {nmse:.4})",
            100.0 * (1.0 - nmse)
        );
    }
    Ok(nmse)
}
