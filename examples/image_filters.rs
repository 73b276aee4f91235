//! The MADDNESS paper's image-filtering experiment on the project's photos: a 3×3 Sobel pair and
//! a 5×5 Gaussian pair (σ = 1, 2) over RGB windows (valid positions), learned on three photos
//! and tested on two others, at several codebook counts. Prints a markdown table.
//!
//! ```text
//! cargo run --release --example image_filters -- [--data ../shared/data] [--side 512]
//! ```

#[path = "common/imageio.rs"]
mod imageio;
#[path = "../tests/maddness_common/images.rs"]
mod images;

use std::path::PathBuf;

use anyhow::{Context, Result};
use maddconv::maddness::learn::{Grouping, Learner, TrainConfig};

const TRAIN: [&str; 3] = ["astronaut", "chelsea", "coffee"];
const TEST: [&str; 2] = ["rocket", "camera"];

fn main() -> Result<()> {
    let mut data = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data"));
    let mut side = 512usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--data" => data = PathBuf::from(value()?),
            "--side" => side = value()?.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let load = |names: &[&str]| -> Result<Vec<maddconv::Tensor>> {
        names
            .iter()
            .map(|n| images::photo(&data.join("images").join(format!("{n}.png")), side))
            .collect()
    };
    let (train, test) = (load(&TRAIN)?, load(&TEST)?);
    println!(
        "train photos {TRAIN:?}, test photos {TEST:?}, centre crops of at most {side}×{side}, \
         200 000 training windows at most"
    );
    println!("| filters | D | C | 1−NMSE 8-bit | 1−NMSE f32 tables | train s |");
    println!("|---|---|---|---|---|---|");
    for (name, filters, d) in [
        ("Sobel 3×3 (x, y)", images::sobel_pair(), 27),
        ("Gaussian 5×5 (σ 1, 2)", images::gaussian_pair(), 75),
    ] {
        for c in [4, 8, 16, 27] {
            if c > d {
                continue;
            }
            // Faithful MADDNESS with plain 8-bit rounding, as in BENCHMARKS.md's CPU section
            // (the default output-aware learner is measured by examples/ablation.rs).
            let config = TrainConfig {
                codebooks: Some(c),
                learner: Learner::Maddness,
                grouping: Some(Grouping::Contiguous),
                refit_offsets: false,
                ..Default::default()
            };
            let (e8, ef, secs) = images::experiment(&filters, &train, &test, &config)?;
            println!(
                "| {name} | {d} | {c} | {:.4} | {:.4} | {secs:.2} |",
                1.0 - e8,
                1.0 - ef
            );
        }
    }
    Ok(())
}
