//! PNG in and out for the examples and the image tests (the library itself reads no images).
//! Shared by `examples/image_filter.rs` and `tests/maddness_common` (through `#[path]`).
#![allow(dead_code)]

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use maddconv::Tensor;

/// An 8-bit RGB image, rows top to bottom, pixels interleaved `R, G, B`.
#[derive(Clone, Debug)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Rgb {
    /// A `width×height` image filled with one colour.
    pub fn filled(width: usize, height: usize, colour: [u8; 3]) -> Rgb {
        Rgb {
            width,
            height,
            data: colour.repeat(width * height),
        }
    }

    /// Decodes a PNG (gray, gray+alpha, RGB or RGBA, 8 or 16 bits; alpha dropped, gray
    /// replicated to the three channels). `name` is for error messages.
    pub fn decode_png(bytes: &[u8], name: &str) -> Result<Rgb> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder
            .read_info()
            .with_context(|| format!("{name}: not a readable PNG"))?;
        let mut buf = vec![0u8; reader.output_buffer_size().unwrap_or(0)];
        let info = reader
            .next_frame(&mut buf)
            .with_context(|| format!("{name}: corrupt PNG data"))?;
        let (w, h) = (info.width as usize, info.height as usize);
        let channels = match info.color_type {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => bail!("{name}: unsupported PNG colour type {other:?}"),
        };
        let mut data = Vec::with_capacity(w * h * 3);
        for px in buf[..w * h * channels].chunks_exact(channels) {
            if channels >= 3 {
                data.extend_from_slice(&px[..3]);
            } else {
                data.extend_from_slice(&[px[0]; 3]);
            }
        }
        Ok(Rgb {
            width: w,
            height: h,
            data,
        })
    }

    /// Reads a PNG file.
    pub fn read_png(path: &Path) -> Result<Rgb> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Rgb::decode_png(&bytes, &path.display().to_string())
    }

    /// The centre `min(H, side) × min(W, side)` crop.
    pub fn crop_centre(&self, side: usize) -> Rgb {
        let (ch, cw) = (self.height.min(side), self.width.min(side));
        self.crop((self.height - ch) / 2, (self.width - cw) / 2, ch, cw)
    }

    /// The `h×w` crop whose top-left pixel is `(y0, x0)` (must lie inside).
    pub fn crop(&self, y0: usize, x0: usize, h: usize, w: usize) -> Rgb {
        let mut data = Vec::with_capacity(h * w * 3);
        for y in y0..y0 + h {
            let row = (y * self.width + x0) * 3;
            data.extend_from_slice(&self.data[row..row + w * 3]);
        }
        Rgb {
            width: w,
            height: h,
            data,
        }
    }

    /// Shrinks by the smallest integer factor that brings both sides to at most `side`
    /// (box average over factor×factor blocks; the remainder rows/columns are dropped).
    pub fn shrink_to(&self, side: usize) -> Rgb {
        let f = self.width.max(self.height).div_ceil(side.max(1)).max(1);
        if f == 1 {
            return self.clone();
        }
        let (w, h) = (self.width / f, self.height / f);
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut s = 0u32;
                    for dy in 0..f {
                        for dx in 0..f {
                            s += self.data[((y * f + dy) * self.width + x * f + dx) * 3 + c] as u32;
                        }
                    }
                    data.push(((s + (f * f / 2) as u32) / (f * f) as u32) as u8);
                }
            }
        }
        Rgb {
            width: w,
            height: h,
            data,
        }
    }

    /// The image as a `1×3×H×W` tensor with values in [0, 1].
    pub fn to_tensor(&self) -> Tensor {
        let (h, w) = (self.height, self.width);
        let mut t = vec![0.0f32; 3 * h * w];
        for (i, px) in self.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                t[c * h * w + i] = px[c] as f32 / 255.0;
            }
        }
        Tensor::new(vec![1, 3, h, w], t).expect("the length is 3·H·W")
    }

    /// Copies `src` into this image with its top-left pixel at `(y0, x0)` (clipped).
    pub fn paste(&mut self, src: &Rgb, y0: usize, x0: usize) {
        for y in 0..src.height.min(self.height.saturating_sub(y0)) {
            let w = src.width.min(self.width.saturating_sub(x0));
            let d = ((y0 + y) * self.width + x0) * 3;
            let s = y * src.width * 3;
            self.data[d..d + w * 3].copy_from_slice(&src.data[s..s + w * 3]);
        }
    }

    /// Writes the image as an 8-bit RGB PNG, atomically (temporary file, then rename).
    pub fn write_png(&self, path: &Path) -> Result<()> {
        maddconv::tensor::write_atomic(path, |w| {
            let mut enc = png::Encoder::new(w, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_compression(png::Compression::High);
            let mut writer = enc.write_header().map_err(std::io::Error::other)?;
            writer
                .write_image_data(&self.data)
                .map_err(std::io::Error::other)?;
            writer.finish().map_err(std::io::Error::other)
        })
        .with_context(|| format!("writing {}", path.display()))
    }
}

/// Lays images out in a grid (rows of panels) on a white background with `gap` pixels between
/// panels; each row's panels are placed left to right.
pub fn grid(rows: &[Vec<Rgb>], gap: usize) -> Rgb {
    let width = rows
        .iter()
        .map(|r| r.iter().map(|p| p.width).sum::<usize>() + gap * r.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    let heights: Vec<usize> = rows
        .iter()
        .map(|r| r.iter().map(|p| p.height).max().unwrap_or(0))
        .collect();
    let height = heights.iter().sum::<usize>() + gap * rows.len().saturating_sub(1);
    let mut out = Rgb::filled(width, height, [255; 3]);
    let mut y = 0;
    for (r, h) in rows.iter().zip(&heights) {
        let mut x = 0;
        for p in r {
            out.paste(p, y, x);
            x += p.width + gap;
        }
        y += h + gap;
    }
    out
}

/// A black → red → yellow → white heat colour for `v` in [0, 1] (clamped).
pub fn heat(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0) * 3.0;
    let c = |t: f32| (t.clamp(0.0, 1.0) * 255.0).round() as u8;
    [c(v), c(v - 1.0), c(v - 2.0)]
}

/// A gray image from values already scaled to [0, 1] (clamped), `height×width` row-major.
pub fn gray(values: &[f32], height: usize, width: usize) -> Rgb {
    let data = values
        .iter()
        .flat_map(|&v| [(v.clamp(0.0, 1.0) * 255.0).round() as u8; 3])
        .collect();
    Rgb {
        width,
        height,
        data,
    }
}
