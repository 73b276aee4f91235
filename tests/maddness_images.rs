//! The paper's image-filtering experiment in small: a 3×3 Sobel pair and a 5×5 Gaussian pair
//! over RGB windows, learned on three photos and tested on two others.

mod common;
mod maddness_common;

use maddconv::maddness::learn::TrainConfig;
use maddness_common::images::{experiment, gaussian_pair, photo, sobel_pair};

fn photos(names: &[&str], side: usize) -> Option<Vec<maddconv::Tensor>> {
    let data = common::shared_data()?;
    Some(
        names
            .iter()
            .map(|n| photo(&data.join("images").join(format!("{n}.png")), side).unwrap())
            .collect(),
    )
}

#[test]
fn image_filters_learned_on_some_photos_hold_on_others() {
    let Some(train) = photos(&["astronaut", "chelsea", "coffee"], 160) else {
        return;
    };
    let Some(test) = photos(&["rocket", "camera"], 160) else {
        return;
    };
    let config = TrainConfig {
        codebooks: Some(8),
        max_windows: Some(30_000),
        ..Default::default()
    };
    let (s8, sf, _) = experiment(&sobel_pair(), &train, &test, &config).unwrap();
    let (g8, gf, _) = experiment(&gaussian_pair(), &train, &test, &config).unwrap();
    // Measured 2026-11-21 (160×160 centre crops, C = 8, 30 000 of 74 892 / 73 008 windows):
    // Sobel 1 − NMSE 0.456 (8-bit) / 0.458 (float); Gaussians 0.9876 / 0.9875.
    for (name, e8, ef, bound) in [("Sobel", s8, sf, 0.38), ("Gaussian", g8, gf, 0.97)] {
        assert!(
            1.0 - e8 > bound,
            "{name}: 8-bit 1 − NMSE {:.4} ≤ {bound}",
            1.0 - e8
        );
        assert!(
            1.0 - ef > bound,
            "{name}: float 1 − NMSE {:.4} ≤ {bound}",
            1.0 - ef
        );
        assert!(
            (e8 - ef).abs() < 0.02,
            "{name}: 8-bit {e8:.4} vs float {ef:.4}"
        );
    }
}
