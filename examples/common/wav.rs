//! WAV input for the audio examples.
#![allow(dead_code)]

use std::path::Path;

use anyhow::{ensure, Context as _, Result};

/// A clip: name, sample rate, mono samples in [-1, 1].
pub struct Clip {
    pub name: String,
    pub rate: u32,
    pub samples: Vec<f32>,
}

/// Reads a WAV (int or float samples, channels averaged to mono).
pub fn read_wav(path: &Path) -> Result<Clip> {
    let mut r =
        hound::WavReader::open(path).with_context(|| format!("reading {}", path.display()))?;
    let spec = r.spec();
    let ch = spec.channels.max(1) as usize;
    let raw: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().collect::<Result<_, _>>()?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()?
        }
    };
    let samples: Vec<f32> = raw
        .chunks(ch)
        .map(|f| f.iter().sum::<f32>() / ch as f32)
        .collect();
    ensure!(
        !samples.is_empty(),
        "{}: the WAV holds no samples",
        path.display()
    );
    Ok(Clip {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        rate: spec.sample_rate,
        samples,
    })
}
