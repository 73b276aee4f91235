//! The image-filtering experiment of the MADDNESS paper, in small: fixed filter pairs (3×3
//! Sobel x/y, 5×5 Gaussians σ = 1 and 2) over the RGB windows of photos, learned on some photos
//! and tested on others (`tests/maddness_images.rs`). The filters are the library's
//! (`maddconv::filters`), the PNG reader the examples' (`examples/common/imageio.rs`).
#![allow(dead_code)]

use std::path::Path;

use super::imageio::Rgb;
use maddconv::filters::{ColourMix, ImageFilter};
use maddconv::maddness::learn::{train, TrainConfig};
use maddconv::maddness::mirror;
use maddconv::metrics::nmse;
use maddconv::reference::conv_reference;
use maddconv::{ConvSpec, Tensor};

/// A photo as a `1×3×H×W` tensor in [0, 1] (gray photos replicated to 3 channels), centre
/// cropped to at most `max_side × max_side`.
pub fn photo(path: &Path, max_side: usize) -> anyhow::Result<Tensor> {
    Ok(Rgb::read_png(path)?.crop_centre(max_side).to_tensor())
}

/// The 3×3 Sobel pair over RGB windows (valid windows, no bias; the library's definition).
pub fn sobel_pair() -> (ConvSpec, Tensor) {
    ImageFilter::Sobel.layer(ColourMix::Mean, 0)
}

/// The 5×5 Gaussian pair (σ = 1, 2) over RGB windows (valid windows, no bias).
pub fn gaussian_pair() -> (ConvSpec, Tensor) {
    ImageFilter::Gaussian.layer(ColourMix::Mean, 0)
}

/// Held-out NMSE (8-bit, float tables) of a filter pair learned on `train_photos` and applied
/// to each of `test_photos` (NMSE over all test photos' outputs together), plus training
/// seconds.
pub fn experiment(
    filters: &(ConvSpec, Tensor),
    train_photos: &[Tensor],
    test_photos: &[Tensor],
    config: &TrainConfig,
) -> anyhow::Result<(f64, f64, f64)> {
    let (spec, weight) = filters;
    let t = std::time::Instant::now();
    let tables = train(
        &maddconv::ConvLayer::new(spec.clone(), weight.clone(), None)?,
        train_photos,
        config,
    )?;
    let secs = t.elapsed().as_secs_f64();
    // Concatenate the outputs of all test photos (flattened per channel) for one NMSE.
    let (mut e8, mut ef, mut ex) = (Vec::new(), Vec::new(), Vec::new());
    for p in test_photos {
        let exact = conv_reference(spec, p, weight, None)?;
        let y8 = mirror::apply(&tables, p)?;
        let yf = mirror::apply_f32(&tables, p)?;
        let positions = exact.len() / 2;
        for (dst, src) in [(&mut e8, &y8), (&mut ef, &yf), (&mut ex, &exact)] {
            dst.push(src.data()[..positions].to_vec());
            dst.push(src.data()[positions..].to_vec());
        }
    }
    // Layout [1, 2, P_total]: channel 0 then channel 1.
    let flat = |v: Vec<Vec<f32>>| -> anyhow::Result<Tensor> {
        let (c0, c1): (Vec<_>, Vec<_>) = v.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let mut data: Vec<f32> = c0.into_iter().flat_map(|(_, v)| v).collect();
        let n = data.len();
        data.extend(c1.into_iter().flat_map(|(_, v)| v));
        Ok(Tensor::new(vec![1, 2, n], data)?)
    };
    let (y8, yf, y) = (flat(e8)?, flat(ef)?, flat(ex)?);
    let kind = maddconv::ConvKind::Conv1d; // [N, O, P] layout
    Ok((nmse(kind, &y8, &y)?, nmse(kind, &yf, &y)?, secs))
}
