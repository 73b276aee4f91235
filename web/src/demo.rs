//! The demo's filter banks: small, well-known image filters written as one dense conv2d layer
//! (3 colour channels in, two filters per channel out) so that the demo exercises the same
//! code paths as a trained layer.

use maddconv::{ConvSpec, Error, Result, Tensor};

/// 3×3 Sobel kernels: horizontal gradient (x) and vertical gradient (y).
const SOBEL_X: [f32; 9] = [-1.0, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0];
const SOBEL_Y: [f32; 9] = [-1.0, -2.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 1.0];

/// A normalised `k×k` Gaussian kernel with standard deviation `sigma`.
fn gaussian(k: usize, sigma: f64) -> Vec<f32> {
    let r = (k / 2) as f64;
    let mut w: Vec<f64> = (0..k * k)
        .map(|i| {
            let (y, x) = ((i / k) as f64 - r, (i % k) as f64 - r);
            (-(x * x + y * y) / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let s: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= s);
    w.into_iter().map(|v| v as f32).collect()
}

/// The spec and weight (`6×3×K×K`) of filter bank `name` (`"sobel"` or `"gaussian"`): output
/// `2·c + j` applies filter `j` to colour channel `c`, with zero padding `K/2` on every side.
pub fn filter_bank(name: &str) -> Result<(ConvSpec, Tensor)> {
    let (k, filters): (usize, [Vec<f32>; 2]) = match name {
        "sobel" => (3, [SOBEL_X.to_vec(), SOBEL_Y.to_vec()]),
        "gaussian" => (5, [gaussian(5, 1.0), gaussian(5, 2.0)]),
        other => {
            return Err(Error::Argument(format!(
                "unknown demo filter {other:?}; expected \"sobel\" or \"gaussian\""
            )))
        }
    };
    let (cin, cout) = (3, 6);
    let mut spec = ConvSpec::conv2d(cin, cout, k, k);
    spec.padding = vec![k / 2; 4];
    let mut w = vec![0.0f32; cout * cin * k * k];
    for c in 0..cin {
        for (j, f) in filters.iter().enumerate() {
            let o = 2 * c + j;
            let start = (o * cin + c) * k * k;
            w[start..start + k * k].copy_from_slice(f);
        }
    }
    let weight = Tensor::new(vec![cout, cin, k, k], w)?;
    Ok((spec, weight))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn banks() {
        let (spec, w) = filter_bank("gaussian").unwrap();
        spec.check_weight(w.shape()).unwrap();
        // Each output reads one channel only, and a Gaussian sums to 1 there.
        for o in 0..6 {
            for c in 0..3 {
                let s: f32 = w.data()[(o * 3 + c) * 25..(o * 3 + c + 1) * 25]
                    .iter()
                    .sum();
                let want = if c == o / 2 { 1.0 } else { 0.0 };
                assert!((s - want).abs() < 1e-6, "output {o} channel {c}: sum {s}");
            }
        }
        let (_, w) = filter_bank("sobel").unwrap();
        assert_eq!(w.data()[(3 * 3 + 1) * 9..(3 * 3 + 2) * 9], SOBEL_Y);
        assert!(filter_bank("box").is_err());
    }
}
