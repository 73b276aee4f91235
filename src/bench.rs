//! Benchmark harness: methods interleaved in one process, median of many repetitions, kernel
//! time from timestamp queries when the adapter has them (wall time of submit + wait
//! otherwise), and a markdown table printer.
//!
//! Tests never assert on time; benchmarks print tables. Also the workloads the benchmarks share
//! (a layer, a timed input, training inputs) and the synthetic batch-8 CNN shapes.

use crate::clock::Instant;
use crate::error::Result;
use crate::gpu::{Context, GpuConv, GpuTensor, GpuTimer};
use crate::layer::ConvLayer;
use crate::rng::SplitMix64;
use crate::spec::ConvSpec;
use crate::tensor::Tensor;

/// Repetition counts.
#[derive(Clone, Copy, Debug)]
pub struct Repetitions {
    /// Untimed runs of every method before timing starts.
    pub warmup: usize,
    /// Timed runs of every method; the median is reported.
    pub timed: usize,
}

impl Default for Repetitions {
    fn default() -> Self {
        Repetitions {
            warmup: 3,
            timed: 30,
        }
    }
}

impl Repetitions {
    /// The few repetitions with which the tuner times each variant (2 warm-up, median of 9).
    pub fn tuning() -> Self {
        Repetitions {
            warmup: 2,
            timed: 9,
        }
    }
}

/// An input of `shape` with values uniform in [−1, 1) from a fixed seed (the tuner's timing
/// input).
pub fn random_input(shape: &[usize], seed: u64) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut rng = SplitMix64(seed);
    Tensor::new(
        shape.to_vec(),
        (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect(),
    )
}

/// A method under test: a layer and the GPU tensors it reads and writes.
#[derive(Clone, Copy)]
pub struct Method<'a> {
    /// The layer; its [`GpuConv::passes`] compute passes are timed.
    pub conv: &'a dyn GpuConv,
    /// Its input on the GPU.
    pub input: &'a GpuTensor,
    /// Where it writes, of [`GpuConv::output_shape`].
    pub output: &'a GpuTensor,
}

impl Method<'_> {
    /// Runs the method once with its output poisoned with NaN first, and reads the output back:
    /// what it computes, for checking against a reference before it is timed (a kernel that
    /// skips an element leaves a NaN there).
    pub async fn checked_output(&self, ctx: &Context) -> Result<Tensor> {
        ctx.fill(self.output, f32::NAN);
        let mut enc = ctx.encoder("bench check");
        self.conv
            .encode(ctx, &mut enc, self.input, self.output, None)?;
        ctx.submit(enc);
        ctx.download(self.output).await
    }
}

/// What was measured for one method.
#[derive(Clone, Debug, Default)]
pub struct Timing {
    /// Median kernel time in milliseconds (sum of the method's passes).
    pub median_ms: f64,
    /// Fastest repetition, in milliseconds.
    pub min_ms: f64,
    /// Median time of each pass, in order (only with timestamp queries).
    pub pass_median_ms: Vec<f64>,
    /// Number of timed repetitions.
    pub repetitions: usize,
    /// "timestamp" (GPU timestamp queries) or "wall" (submit + wait on the host).
    pub clock: &'static str,
}

/// Times `methods` interleaved: every repetition runs each method once, in turn, so slow drifts
/// of a shared machine affect all of them alike.
pub async fn time_interleaved(
    ctx: &Context,
    methods: &[Method<'_>],
    reps: Repetitions,
) -> Result<Vec<Timing>> {
    let passes: Vec<usize> = methods.iter().map(|m| m.conv.passes()).collect();
    let max_passes = passes.iter().copied().max().unwrap_or(1).max(1) as u32;
    let mut timer = GpuTimer::new(ctx, max_passes);
    let n = methods.len();
    let mut totals: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut per_pass: Vec<Vec<Vec<f64>>> = passes.iter().map(|&p| vec![Vec::new(); p]).collect();
    for rep in 0..reps.warmup + reps.timed {
        for (i, m) in methods.iter().enumerate() {
            let mut encoder = ctx.encoder("bench");
            let start = Instant::now();
            m.conv
                .encode(ctx, &mut encoder, m.input, m.output, timer.as_mut())?;
            if let Some(t) = &timer {
                t.resolve(&mut encoder);
            }
            ctx.submit(encoder);
            let times = match timer.as_mut() {
                Some(t) => t.read(ctx).await?,
                None => {
                    ctx.wait_idle().await?;
                    vec![start.elapsed().as_secs_f64() * 1e3]
                }
            };
            if rep >= reps.warmup {
                totals[i].push(times.iter().sum());
                if timer.is_some() {
                    for (p, t) in times.iter().enumerate() {
                        if let Some(v) = per_pass[i].get_mut(p) {
                            v.push(*t);
                        }
                    }
                }
            }
        }
    }
    let clock = if timer.is_some() { "timestamp" } else { "wall" };
    Ok(totals
        .into_iter()
        .zip(per_pass)
        .map(|(mut t, pp)| Timing {
            median_ms: median(&mut t),
            min_ms: t.iter().copied().fold(f64::INFINITY, f64::min),
            // Passes a method never ran (a tied layer whose tuned variant encodes untied runs
            // two of its three) are left out.
            pass_median_ms: pp
                .into_iter()
                .filter(|v| !v.is_empty())
                .map(|mut v| median(&mut v))
                .collect(),
            repetitions: t.len(),
            clock,
        })
        .collect())
}

/// Median (NaN for an empty slice).
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let m = values.len() / 2;
    if values.len() % 2 == 1 {
        values[m]
    } else {
        (values[m - 1] + values[m]) / 2.0
    }
}

/// A markdown table built row by row.
#[derive(Clone, Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }
    /// Appends a row (cells beyond the header are dropped, missing ones left empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
    /// The table as GitHub markdown, columns padded for reading in a terminal.
    pub fn to_markdown(&self) -> String {
        let cols = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, w) in width.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                s.push_str(&format!(" {c:<w$} |"));
            }
            s.push('\n');
            s
        };
        let mut out = line(&self.header);
        out.push('|');
        for w in &width {
            out.push_str(&format!("{}|", "-".repeat(w + 2)));
        }
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// One benchmark workload: a layer, an input to time it on, and inputs to train tables on.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Name in reports (layer folder or CNN shape).
    pub name: String,
    /// The layer.
    pub layer: ConvLayer,
    /// The timed input, `N×C×H×W` or `N×C×L`.
    pub input: Tensor,
    /// Training inputs for the MADDNESS tables (never the timed input, except for the
    /// repository's fixtures, which have no training file: then the row says so).
    pub train: Tensor,
    /// True when `train` is the timed input itself (no held-out data).
    pub trained_on_test: bool,
}

/// A dense 3×3, padding 1 layer with `c` channels in and out on an `n×c×hw×hw` input, weights
/// and inputs drawn from a fixed seed: He-scaled random weights; inputs are "random but
/// structured" — each channel a rectified mix of two of 8 latent plane waves plus noise, so that
/// channels are correlated as real feature maps are. The training inputs are 2n further samples
/// from the same distribution.
pub fn cnn_workload(c: usize, hw: usize, n: usize) -> Workload {
    let mut spec = ConvSpec::conv2d(c, c, 3, 3);
    spec.padding = vec![1; 4];
    spec.bias = true;
    let mut rng = SplitMix64(c as u64 * 1000 + hw as u64);
    let scale = (2.0 / (c * 9) as f64).sqrt() as f32;
    let weight: Vec<f32> = (0..c * c * 9).map(|_| rng.normal() * scale).collect();
    let bias: Vec<f32> = (0..c).map(|_| rng.normal() * 0.1).collect();
    let mix: Vec<(usize, usize, f32)> = (0..c)
        .map(|_| {
            (
                (rng.next_u64() % 8) as usize,
                (rng.next_u64() % 8) as usize,
                rng.uniform(),
            )
        })
        .collect();
    let sample = |rng: &mut SplitMix64| -> Vec<f32> {
        let latent: Vec<(f32, f32, f32)> = (0..8)
            .map(|_| {
                (
                    rng.uniform() * 0.6,
                    rng.uniform() * 0.6,
                    rng.uniform() * 6.0,
                )
            })
            .collect();
        let mut x = Vec::with_capacity(c * hw * hw);
        for &(a, b, t) in &mix {
            for y in 0..hw {
                for xx in 0..hw {
                    let wave =
                        |(fx, fy, ph): (f32, f32, f32)| (xx as f32 * fx + y as f32 * fy + ph).sin();
                    let v = t * wave(latent[a]) + (1.0 - t) * wave(latent[b]);
                    x.push(v.max(0.0) + 0.1 * rng.normal());
                }
            }
        }
        x
    };
    let input: Vec<f32> = (0..n).flat_map(|_| sample(&mut rng)).collect();
    let train: Vec<f32> = (0..2 * n).flat_map(|_| sample(&mut rng)).collect();
    let layer = ConvLayer::new(
        spec,
        Tensor::new(vec![c, c, 3, 3], weight).expect("the length is the product of the shape"),
        Some(Tensor::new(vec![c], bias).expect("the length is the product of the shape")),
    )
    .expect("finite He-scaled weights of the spec's shape");
    Workload {
        name: format!("cnn{c}x{hw}x{hw}_b{n}"),
        layer,
        input: Tensor::new(vec![n, c, hw, hw], input)
            .expect("the length is the product of the shape"),
        train: Tensor::new(vec![2 * n, c, hw, hw], train)
            .expect("the length is the product of the shape"),
        trained_on_test: false,
    }
}
