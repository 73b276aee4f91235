//! The image-filtering experiment of the MADDNESS paper, in small: fixed filter pairs (3×3
//! Sobel x/y, 5×5 Gaussians σ = 1 and 2) over the RGB windows of photos, learned on some photos
//! and tested on others. Shared by `tests/maddness_images.rs` and
//! `examples/image_filters.rs`.
#![allow(dead_code)]

use std::path::Path;

use maddconv::maddness::learn::{train, TrainConfig};
use maddconv::maddness::mirror;
use maddconv::metrics::nmse;
use maddconv::reference::conv_reference;
use maddconv::{ConvSpec, Tensor};

/// A photo as a `1×3×H×W` tensor in [0, 1] (gray photos replicated to 3 channels), centre
/// cropped to at most `max_side × max_side`.
pub fn photo(path: &Path, max_side: usize) -> anyhow::Result<Tensor> {
    let mut decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path)?));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0u8; reader.output_buffer_size().unwrap_or(0)];
    let info = reader.next_frame(&mut buf)?;
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => anyhow::bail!("{}: unsupported colour type {other:?}", path.display()),
    };
    let (ch, cw) = (h.min(max_side), w.min(max_side));
    let (y0, x0) = ((h - ch) / 2, (w - cw) / 2);
    let mut data = vec![0.0f32; 3 * ch * cw];
    for c in 0..3 {
        for y in 0..ch {
            for x in 0..cw {
                let px = ((y0 + y) * w + x0 + x) * channels;
                let src = if channels >= 3 { px + c } else { px };
                data[(c * ch + y) * cw + x] = buf[src] as f32 / 255.0;
            }
        }
    }
    Ok(Tensor::new(vec![1, 3, ch, cw], data)?)
}

/// A filter pair as a conv2d over RGB (valid windows, no bias): output `o` applies kernel `o` to
/// the mean of the three channels.
pub fn filter_pair(kernels: [Vec<f32>; 2], k: usize) -> (ConvSpec, Tensor) {
    let spec = ConvSpec::conv2d(3, 2, k, k);
    let mut w = Vec::with_capacity(2 * 3 * k * k);
    for kern in &kernels {
        for _ in 0..3 {
            w.extend(kern.iter().map(|v| v / 3.0));
        }
    }
    (spec, Tensor::new(vec![2, 3, k, k], w).unwrap())
}

/// 3×3 Sobel, horizontal and vertical.
pub fn sobel_pair() -> (ConvSpec, Tensor) {
    let gx = vec![-1.0, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0];
    let gy = vec![-1.0, -2.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 1.0];
    filter_pair([gx, gy], 3)
}

/// 5×5 Gaussians with σ = 1 and σ = 2, each normalised to sum 1.
pub fn gaussian_pair() -> (ConvSpec, Tensor) {
    let g = |sigma: f32| -> Vec<f32> {
        let mut v: Vec<f32> = (0..25)
            .map(|i| {
                let (y, x) = ((i / 5) as f32 - 2.0, (i % 5) as f32 - 2.0);
                (-(x * x + y * y) / (2.0 * sigma * sigma)).exp()
            })
            .collect();
        let s: f32 = v.iter().sum();
        v.iter_mut().for_each(|x| *x /= s);
        v
    };
    filter_pair([g(1.0), g(2.0)], 5)
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
    let tables = train(spec, weight, None, train_photos, config, &mut |_| {})?;
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
