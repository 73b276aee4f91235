//! Error measures of DESIGN.md §5.

use maddconv::{Error, Result};

/// `NMSE = Σ (y − ŷ)² / Σ (y − ȳ_m)²` over all outputs, `ȳ_m` the mean of output channel `m`
/// (axis 1 of `shape`, `N×O×…`) over all samples and positions; sums in f64.
/// NaN when the exact output is constant within every channel (the denominator is 0).
pub fn nmse_by_channel(exact: &[f32], approx: &[f32], shape: &[usize]) -> Result<f64> {
    let len: usize = shape.iter().product();
    if shape.len() < 2 || exact.len() != len || approx.len() != len {
        return Err(Error::Shape(format!(
            "nmse: shape {shape:?} (needs N×O×…, {len} values) with {} exact and {} \
             approximate values",
            exact.len(),
            approx.len()
        )));
    }
    let (n, o) = (shape[0], shape[1]);
    let plane = len.checked_div(n * o).unwrap_or(0);
    let mut mean = vec![0.0f64; o];
    for s in 0..n {
        for (m, mu) in mean.iter_mut().enumerate() {
            let start = (s * o + m) * plane;
            *mu += exact[start..start + plane]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>();
        }
    }
    let count = (n * plane) as f64;
    for mu in &mut mean {
        *mu /= count;
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (i, (&y, &a)) in exact.iter().zip(approx).enumerate() {
        let m = (i / plane) % o;
        let d = y as f64 - a as f64;
        num += d * d;
        let c = y as f64 - mean[m];
        den += c * c;
    }
    Ok(if den == 0.0 { f64::NAN } else { num / den })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn per_channel_means() {
        // Two channels with very different means: a global-variance NMSE would be far
        // smaller than the per-channel one.
        let exact = [1.0, 3.0, 101.0, 103.0];
        let approx = [2.0, 3.0, 101.0, 103.0];
        // Σ(y−ŷ)² = 1; Σ(y−ȳ_m)² = 1+1+1+1 = 4.
        let v = nmse_by_channel(&exact, &approx, &[1, 2, 2]).unwrap();
        assert!((v - 0.25).abs() < 1e-12, "{v}");
        assert!(nmse_by_channel(&exact, &approx, &[1, 2, 3]).is_err());
        assert!(nmse_by_channel(&[1.0, 1.0], &[1.0, 1.0], &[1, 1, 2])
            .unwrap()
            .is_nan());
    }
}
