//! Error measures of an approximate layer against the exact one (DESIGN.md §5).
//!
//! Outputs are `N×O×OH×OW` (conv2d) or `N×O×OL` (conv1d): the output channel is axis 1.

use crate::error::{Error, Result};
use crate::spec::ConvKind;
use crate::tensor::Tensor;

/// Normalised mean squared error `NMSE = Σ (y − ŷ)² / Σ (y − ȳ_m)²` over all outputs, where `y`
/// is `exact`, `ŷ` is `computed` and `ȳ_m` the mean of output channel `m` of `exact` over all
/// samples and positions. Computed in f64. `1 − NMSE` is the fraction of the output's
/// per-channel variance the approximation explains.
///
/// Both tensors must have the same shape, of rank 4 for conv2d and 3 for conv1d, and be finite.
/// Fails with [`Error::Argument`] when every channel of `exact` is constant (the NMSE is then
/// undefined) unless `computed` equals it (NMSE 0).
pub fn nmse(kind: ConvKind, computed: &Tensor, exact: &Tensor) -> Result<f64> {
    let rank = kind.spatial_dims() + 2;
    if exact.shape().len() != rank {
        return Err(Error::Shape(format!(
            "a {kind} output has rank {rank}; the exact output has shape {:?}",
            exact.shape()
        )));
    }
    if computed.shape() != exact.shape() {
        return Err(Error::Shape(format!(
            "the computed output has shape {:?} but the exact output {:?}",
            computed.shape(),
            exact.shape()
        )));
    }
    computed.check_finite("computed output")?;
    exact.check_finite("exact output")?;
    let (n, o) = (exact.shape()[0], exact.shape()[1]);
    let p: usize = exact.shape()[2..].iter().product();
    if n * o * p == 0 {
        return Err(Error::Shape(format!(
            "the output {:?} is empty",
            exact.shape()
        )));
    }
    let (y, yh) = (exact.data(), computed.data());
    let mut mean = vec![0.0f64; o];
    for s in 0..n {
        for (m, mu) in mean.iter_mut().enumerate() {
            *mu += y[(s * o + m) * p..][..p]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>();
        }
    }
    for mu in &mut mean {
        *mu /= (n * p) as f64;
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for s in 0..n {
        for (m, &mu) in mean.iter().enumerate() {
            let i = (s * o + m) * p;
            for (&a, &b) in y[i..i + p].iter().zip(&yh[i..i + p]) {
                let e = a as f64 - b as f64;
                num += e * e;
                let v = a as f64 - mu;
                den += v * v;
            }
        }
    }
    if den == 0.0 {
        if num == 0.0 {
            return Ok(0.0);
        }
        return Err(Error::Argument(
            "every channel of the exact output is constant; the NMSE is undefined".into(),
        ));
    }
    Ok(num / den)
}

/// Relative L2 error `‖y − e‖ / ‖e‖`, computed in f64 (`‖y‖` when `e` is all zeros).
pub fn relative_l2(computed: &[f32], expected: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&y, &e) in computed.iter().zip(expected) {
        let d = y as f64 - e as f64;
        num += d * d;
        den += e as f64 * e as f64;
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nmse_uses_per_channel_means() {
        // Two channels with different means; the error is 1 everywhere.
        let exact = Tensor::new(vec![1, 2, 2], vec![0.0, 2.0, 10.0, 14.0]).unwrap();
        let approx = Tensor::new(vec![1, 2, 2], vec![1.0, 3.0, 11.0, 15.0]).unwrap();
        // Σ err² = 4; channel 0 mean 1 → 1 + 1; channel 1 mean 12 → 4 + 4; den = 10.
        let v = nmse(ConvKind::Conv1d, &approx, &exact).unwrap();
        assert!((v - 0.4).abs() < 1e-12, "{v}");
        assert_eq!(nmse(ConvKind::Conv1d, &exact, &exact).unwrap(), 0.0);
        assert!(nmse(ConvKind::Conv2d, &approx, &exact).is_err());
        let other = Tensor::new(vec![2, 2, 1], vec![0.0; 4]).unwrap();
        assert!(nmse(ConvKind::Conv1d, &other, &exact).is_err());
        let flat = Tensor::new(vec![1, 1, 2], vec![3.0, 3.0]).unwrap();
        let off = Tensor::new(vec![1, 1, 2], vec![3.0, 4.0]).unwrap();
        assert!(nmse(ConvKind::Conv1d, &off, &flat).is_err());
        assert_eq!(nmse(ConvKind::Conv1d, &flat, &flat).unwrap(), 0.0);
    }
}
