//! `maddconv bench --report DIR`: the measurements as JSON and the speed-vs-accuracy plot
//! (speedup over the fastest exact direct kernel, log scale, against 1 − NMSE; one colour and
//! marker per layer, each point labelled with its codebook count), as SVG and PNG. Every file
//! is written atomically.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use plotters::coord::Shift;
use plotters::element::{Drawable, PointCollection};
use plotters::prelude::*;
use plotters_backend::{BackendCoord, DrawingErrorKind};
use serde::Serialize;

use super::bench::{Row, RowMethod};

/// File names inside the report folder.
pub const JSON: &str = "bench.json";
pub const SVG: &str = "speedup_vs_accuracy.svg";
pub const PNG: &str = "speedup_vs_accuracy.png";

/// Plot size in pixels (SVG user units).
const SIZE: (u32, u32) = (1280, 720);
/// Width of the legend column right of the chart.
const LEGEND_WIDTH: u32 = 330;

/// What `bench.json` holds.
#[derive(Serialize)]
pub struct Report<'a> {
    /// The command line that produced it.
    pub command: String,
    /// UTC date of the run (YYYY-MM-DD).
    pub date: String,
    /// The adapter, as `maddconv info` names it.
    pub adapter: String,
    /// "timestamp" (GPU timestamp queries) or "wall".
    pub clock: String,
    /// Timed repetitions per method (medians reported), methods interleaved.
    pub repetitions: usize,
    /// Every measured row (exact direct kernels and MADDNESS at each C).
    pub rows: &'a [Row],
}

/// Writes `bench.json`, the SVG and the PNG plot into `dir` (created if needed); returns the
/// three paths.
pub fn write(dir: &Path, report: &Report) -> Result<[PathBuf; 3]> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json_path = dir.join(JSON);
    let json = serde_json::to_string_pretty(report)?;
    maddconv::tensor::write_atomic(&json_path, |w| {
        use std::io::Write;
        w.write_all(json.as_bytes())?;
        w.write_all(b"\n")
    })?;

    maddconv::plot::register_font()?;
    let title = format!("MADDNESS vs exact direct convolution — {}", report.adapter);
    let svg_path = dir.join(SVG);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(&root, report.rows, &title)?;
        root.present()
            .map_err(|e| anyhow::anyhow!("drawing the SVG plot: {e}"))?;
    }
    maddconv::tensor::write_atomic(&svg_path, |w| {
        use std::io::Write;
        w.write_all(svg.as_bytes())
    })?;

    let png_path = dir.join(PNG);
    let mut rgb = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        draw(&root, report.rows, &title)?;
        root.present()
            .map_err(|e| anyhow::anyhow!("drawing the PNG plot: {e}"))?;
    }
    maddconv::tensor::write_atomic(&png_path, |w| {
        let mut enc = png::Encoder::new(w, SIZE.0, SIZE.1);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(&rgb)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })?;
    Ok([json_path, svg_path, png_path])
}

/// Marker shapes, cycled every 10 layers so colour + shape stay unique for 40 layers.
#[derive(Clone, Copy)]
enum Marker {
    Circle,
    Triangle,
    Square,
    Diamond,
}

const MARKERS: [Marker; 4] = [
    Marker::Circle,
    Marker::Triangle,
    Marker::Square,
    Marker::Diamond,
];

/// A filled marker of one shape centred on a coordinate (data or pixel), drawn straight on the
/// backend so that it works for any backend lifetime (plotters' `DynElement` needs `'static`).
struct Mark<C> {
    at: C,
    shape: Marker,
    colour: RGBColor,
}

impl<'a, C: 'a> PointCollection<'a, C> for &'a Mark<C> {
    type Point = &'a C;
    type IntoIter = std::iter::Once<&'a C>;
    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.at)
    }
}

impl<C, DB: DrawingBackend> Drawable<DB> for Mark<C> {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut points: I,
        backend: &mut DB,
        _: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        let Some((x, y)) = points.next() else {
            return Ok(());
        };
        let r = 6;
        let c = &self.colour;
        match self.shape {
            Marker::Circle => backend.draw_circle((x, y), r as u32, c, true),
            Marker::Triangle => backend.fill_polygon(
                vec![(x, y - r - 1), (x - r, y + r - 1), (x + r, y + r - 1)],
                c,
            ),
            Marker::Square => {
                backend.draw_rect((x - r + 1, y - r + 1), (x + r - 1, y + r - 1), c, true)
            }
            Marker::Diamond => backend.fill_polygon(
                vec![(x, y - r - 1), (x + r, y), (x, y + r + 1), (x - r, y)],
                c,
            ),
        }
    }
}

/// One plotted point.
struct Point {
    x: f64,
    y: f64,
    label: String,
}

/// The MADDNESS rows grouped by layer (in first-seen order) as points; the rows with
/// 1 − NMSE below the plot's left edge are returned separately.
fn points(rows: &[Row], x_min: f64) -> (Vec<(String, Vec<Point>)>, Vec<String>) {
    let several_kernels = {
        let mut k: Vec<&str> = rows
            .iter()
            .filter(|r| r.method == RowMethod::Maddness)
            .filter_map(|r| r.kernels.as_deref())
            .collect();
        k.sort();
        k.dedup();
        k.len() > 1
    };
    let mut layers: Vec<(String, Vec<Point>)> = Vec::new();
    let mut off = Vec::new();
    for r in rows.iter().filter(|r| r.method == RowMethod::Maddness) {
        let mut label = format!("C={}", r.codebooks.unwrap_or(0));
        if let Some(d) = r.depth.filter(|&d| d != maddconv::maddness::DEFAULT_DEPTH) {
            label.push_str(&format!(" d{d}"));
        }
        if several_kernels {
            label.push_str(&format!(" {}", r.kernels.as_deref().unwrap_or("")));
        }
        if !(r.one_minus_nmse.is_finite() && r.one_minus_nmse >= x_min) {
            off.push(format!(
                "{} {label}: 1 − NMSE {:.3}",
                r.layer, r.one_minus_nmse
            ));
            continue;
        }
        let p = Point {
            x: r.one_minus_nmse,
            y: r.speedup_vs_direct,
            label,
        };
        let name = if r.trained_on_test {
            format!("{} *", r.layer)
        } else {
            r.layer.clone()
        };
        match layers.iter_mut().find(|(l, _)| *l == name) {
            Some((_, v)) => v.push(p),
            None => layers.push((name, vec![p])),
        }
    }
    (layers, off)
}

/// The left edge of the x axis: the lowest 1 − NMSE of the MADDNESS rows, rounded down to a
/// tenth, but not below 0 (rows below 0 are listed under the plot instead).
fn x_min(rows: &[Row]) -> f64 {
    let lowest = rows
        .iter()
        .filter(|r| r.method == RowMethod::Maddness && r.one_minus_nmse.is_finite())
        .map(|r| r.one_minus_nmse)
        .fold(0.9f64, f64::min);
    ((lowest * 10.0).floor() / 10.0).clamp(0.0, 0.9)
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, rows: &[Row], title: &str) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing the plot: {e}");
    root.fill(&WHITE).map_err(err)?;
    let x0 = x_min(rows);
    let (layers, off) = points(rows, x0);
    let ys = layers
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.y))
        .chain([1.0]);
    let (lo, hi) = ys.fold((f64::INFINITY, 0.0f64), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    let (y_lo, y_hi) = (lo / 1.5, hi * 1.5);
    // A little room right of 1 − NMSE = 1 for the markers and their labels.
    let x_max = 1.0 + (1.0 - x0) * 0.06;

    let body = root
        .margin(12, 0, 4, 4)
        .titled(title, ("sans-serif", 20).into_font())
        .map_err(err)?;
    let (main, footer) = body.split_vertically(body.dim_in_pixel().1 as i32 - 36);
    let (plot_area, legend_area) =
        main.split_horizontally(main.dim_in_pixel().0 as i32 - LEGEND_WIDTH as i32);
    let mut chart = ChartBuilder::on(&plot_area)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x_max, (y_lo..y_hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("1 − NMSE on the timed input (held out unless marked *; 1 = exact)")
        .y_desc("speedup over the fastest exact direct kernel (×, log scale)")
        .y_label_formatter(&|v| {
            let s = format!("{v:.2}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        })
        .x_label_formatter(&|v| format!("{v:.2}"))
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    // The exact direct kernel sits at speedup 1.
    chart
        .draw_series(LineSeries::new(
            [(x0, 1.0), (x_max, 1.0)],
            BLACK.mix(0.6).stroke_width(1),
        ))
        .map_err(err)?;
    // The legend, in its own column so that it never hides a point.
    let legend_font = ("sans-serif", 14).into_font();
    let line_h = 22;
    let mut y = 28;
    legend_area
        .draw(&PathElement::new(vec![(6, y), (24, y)], BLACK.mix(0.6)))
        .map_err(err)?;
    legend_area
        .draw(&Text::new(
            "exact direct kernel (speedup 1)",
            (34, y - 8),
            legend_font.clone(),
        ))
        .map_err(err)?;
    for (i, (layer, pts)) in layers.iter().enumerate() {
        let colour = maddconv::plot::COLOURS[i % maddconv::plot::COLOURS.len()];
        let shape = MARKERS[(i / maddconv::plot::COLOURS.len()) % MARKERS.len()];
        chart
            .draw_series(pts.iter().map(|p| Mark {
                at: (p.x, p.y),
                shape,
                colour,
            }))
            .map_err(err)?;
        y += line_h;
        legend_area
            .draw(&Mark {
                at: (15, y),
                shape,
                colour,
            })
            .map_err(err)?;
        legend_area
            .draw(&Text::new(layer.clone(), (34, y - 8), legend_font.clone()))
            .map_err(err)?;
        // Thin line through the layer's points in C order, then the C labels.
        if pts.len() > 1 {
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.x, p.y)),
                    colour.mix(0.35).stroke_width(1),
                ))
                .map_err(err)?;
        }
        chart
            .draw_series(pts.iter().map(|p| {
                EmptyElement::at((p.x, p.y))
                    + Text::new(
                        p.label.clone(),
                        (9, -7),
                        ("sans-serif", 12).into_font().color(&colour),
                    )
            }))
            .map_err(err)?;
    }
    let mut note = "Each point: one layer at one codebook count C (labelled); medians of \
                    interleaved runs."
        .to_string();
    if rows.iter().any(|r| r.trained_on_test) {
        note.push_str(" * tables trained on the timed input itself (no held-out data).");
    }
    if !off.is_empty() {
        note.push_str(&format!(
            " Not shown (left of the axis): {}.",
            off.join("; ")
        ));
    }
    footer
        .draw(&Text::new(
            note,
            (16, 8),
            ("sans-serif", 13).into_font().color(&BLACK.mix(0.8)),
        ))
        .map_err(err)?;
    Ok(())
}

/// Today's UTC date as YYYY-MM-DD (civil-from-days, proleptic Gregorian).
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
