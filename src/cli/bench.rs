//! `maddconv bench`: kernel timings on the same adapter, methods interleaved in one process.

use std::path::PathBuf;

use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Args;
use maddconv::bench::{cnn_workload, time_interleaved, Method, Repetitions, Table, Workload};
use maddconv::data::LayerDir;
use maddconv::gpu::{
    Context, DirectConv, DirectKernel, DirectVariant, GpuConv, LookupKernel, LookupVariant,
    MaddnessConv,
};
use maddconv::maddness::{train, Learner, TrainConfig};
use maddconv::metrics::nmse;
use maddconv::metrics::relative_l2;

use maddconv::Tensor;
use serde::Serialize;

/// Arguments of `maddconv bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Only the exact direct kernels (every one this build has: tiled, subgroup where the
    /// adapter runs it, and with the `extra-kernels` feature the naive one, to show what the
    /// tiling gains). Without it: the direct baselines and MADDNESS.
    #[arg(long)]
    pub direct: bool,
    /// Long filters instead (see `cli::bench_fft`): direct vs FFT overlap-save on the GPU, an
    /// f32 overlap-save on rustfft on the CPU, and MADDNESS (--codebooks, default 16,64; 16
    /// with --small) trained on other noise than the timed signal, for windows of C·K ≤ 65 536;
    /// K = 16 … 65 536 on a 2^20-sample signal, 1 → 1 and 16 → 16 channels (with --small:
    /// K = 16, 256 on 2^14 samples, 1 → 1 and 4 → 4).
    #[arg(long)]
    pub fft: bool,
    /// Small mode (for CI): the repository's fixture layers and one small CNN shape, few
    /// repetitions.
    #[arg(long)]
    pub small: bool,
    /// Benchmark this layer folder (layer.json + weight/bias/test .npy); repeatable. Replaces
    /// the default set.
    #[arg(long = "layer", value_name = "DIR")]
    pub layers: Vec<PathBuf>,
    /// The data folder whose layers/ make the default set.
    #[arg(long, default_value = "../shared/data", env = "MADDCONV_DATA")]
    pub data: PathBuf,
    /// Skip the batch-8 CNN shapes (64ch 56×56, 128ch 28×28, 256ch 14×14, 3×3 pad 1).
    #[arg(long)]
    pub no_cnn: bool,
    /// Only the batch-8 CNN shapes (no layer folders).
    #[arg(long, conflicts_with_all = ["no_cnn", "layers"])]
    pub cnn_only: bool,
    /// Codebooks per group of the MADDNESS rows (comma-separated; values above the window
    /// length D are skipped). Default 16,32,64 (8,16 with --small).
    #[arg(long, value_name = "C,...")]
    pub codebooks: Option<String>,
    /// Tree depths of the MADDNESS rows (comma-separated, 4 to 8: 16 to 256 buckets per
    /// codebook); every codebook count is trained at every depth. Default 4.
    #[arg(long, value_name = "L,...", default_value = "4")]
    pub depths: String,
    /// Most training windows for the MADDNESS tables.
    #[arg(long, default_value_t = 50_000)]
    pub max_windows: usize,
    /// Time every MADDNESS look-up kernel this build has and the adapter runs (one-position,
    /// two-positions, shuffle; fused with the `extra-kernels` feature) instead of only the
    /// default one for this adapter.
    #[arg(long)]
    pub variants: bool,
    /// Timed repetitions per method (median reported).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Time each method both as tuned for this adapter (the variant `maddconv tune` chose for
    /// its shape class, tuning first where the class is new) and with the fixed untuned
    /// default, interleaved in the same run. Without it each method runs as tuned (or, with
    /// --no-tune, as the fixed default).
    #[arg(long)]
    pub tune_compare: bool,
    /// Also train tied per-pixel tables (`--learner tied`; C rounded to a multiple of the
    /// kernel area) at each codebook count and time them: with the tied encoding (each input
    /// pixel hashed once), with the untied encode on the same tables, and (unless --no-tune)
    /// with the encoding the tuner chose (variants "… tied", "… tied, untied encode" and
    /// "… tied, encoding tuned", where "+encode" in the variant means the untied encode won).
    #[arg(long)]
    pub tied: bool,
    /// Print one JSON array of rows instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the report into this folder: bench.json (the rows, with the command, date,
    /// adapter and clock) and speedup_vs_accuracy.svg / .png (speedup over the fastest exact
    /// kernel, log scale, against 1 − NMSE; one colour per layer, points labelled with C).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
}

/// One row of output.
#[derive(Serialize, Clone, Debug)]
pub struct Row {
    /// Workload name (layer folder or CNN shape).
    pub layer: String,
    /// Input shape.
    pub shape: String,
    /// "direct" (exact) or "maddness".
    pub method: RowMethod,
    /// Which kernels ([`GpuConv::name`]): direct "tiled", "subgroup" or "naive"; MADDNESS
    /// "one-position", "two-positions", "shuffle" or "fused".
    pub kernels: Option<String>,
    /// The kernel variant with its tiles (`subgroup-256`, `two-positions-mch2`, ...).
    pub variant: Option<String>,
    /// True for the tuned choice, false for the fixed default, `None` without tuning.
    pub tuned: Option<bool>,
    /// Codebooks per group (MADDNESS rows).
    pub codebooks: Option<usize>,
    /// Tree depth (MADDNESS rows).
    pub depth: Option<usize>,
    /// Median kernel time in ms (all passes of the method).
    pub kernel_ms: f64,
    /// Median time of the encode pass (MADDNESS rows, timestamp clock).
    pub encode_ms: Option<f64>,
    /// Median time of the accumulate pass (MADDNESS rows, timestamp clock).
    pub accumulate_ms: Option<f64>,
    /// Effective GFLOP/s of the exact layer's 2·MACs in this time.
    pub gflops: f64,
    /// Median time of the fastest exact kernel (tiled or subgroup; never the naive one) /
    /// this method's median time.
    pub speedup_vs_direct: f64,
    /// 1 − NMSE against the f64 reference on the timed input (DESIGN.md §5).
    pub one_minus_nmse: f64,
    /// Relative L2 error against the f64 reference.
    pub rel_l2_vs_f64: f64,
    /// True when the tables were trained on the timed input itself (no held-out data).
    pub trained_on_test: bool,
    /// Seconds to train the tables (MADDNESS rows).
    pub train_seconds: Option<f64>,
    /// "timestamp" or "wall".
    pub clock: String,
    /// Median wall time to upload this layer's input (write + wait), ms; the same for every
    /// method of a layer, reported apart from kernel time.
    pub upload_ms: f64,
    /// Median wall time to read this layer's output back (copy + map), ms.
    pub readback_ms: f64,
    /// The adapter.
    pub adapter: String,
}

/// Whether a row's layer is exact or approximate.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RowMethod {
    /// The exact direct convolution.
    Direct,
    /// The MADDNESS approximation.
    Maddness,
}

impl std::fmt::Display for RowMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RowMethod::Direct => "direct",
            RowMethod::Maddness => "maddness",
        })
    }
}

/// The default workloads: real layers (their test inputs) and the batch-8 CNN shapes.
pub fn workloads(args: &BenchArgs) -> Result<Vec<Workload>> {
    let mut out = Vec::new();
    let dirs = if args.cnn_only {
        Vec::new()
    } else if !args.layers.is_empty() {
        args.layers
            .iter()
            .map(LayerDir::open)
            .collect::<maddconv::Result<Vec<_>>>()?
    } else if !args.small && args.data.join("layers").is_dir() {
        LayerDir::list(args.data.join("layers"))?
    } else {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/layers");
        if !args.small {
            eprintln!(
                "note: {} not found; benchmarking the repository's small fixtures instead",
                args.data.join("layers").display()
            );
        }
        LayerDir::list(&fixtures).with_context(|| format!("fixtures in {}", fixtures.display()))?
    };
    for d in dirs {
        let input = d.test()?;
        let (train, trained_on_test) = match d.train() {
            Ok(t) => (t, false),
            Err(_) => (input.clone(), true),
        };
        out.push(Workload {
            name: d.name.clone(),
            layer: d.layer()?,
            input,
            train,
            trained_on_test,
        });
    }
    if args.layers.is_empty() && !args.no_cnn {
        let shapes: &[(usize, usize)] = if args.small {
            &[(16, 14)]
        } else {
            &[(64, 56), (128, 28), (256, 14)]
        };
        for &(c, hw) in shapes {
            out.push(cnn_workload(c, hw, 8));
        }
    }
    Ok(out)
}

/// Runs the benchmark and prints the table (or JSON).
pub fn run(args: BenchArgs) -> Result<()> {
    let ctx = super::gpu()?;
    let reps = Repetitions {
        warmup: 3,
        timed: args.reps.unwrap_or(if args.small { 5 } else { 30 }),
    };
    let codebooks: Vec<usize> = match &args.codebooks {
        Some(list) => number_list("--codebooks", list)?,
        None if args.small => vec![8, 16],
        None => vec![16, 32, 64],
    };
    let depths = number_list("--depths", &args.depths)?;
    for &d in &depths {
        maddconv::maddness::check_depth(d).with_context(|| format!("--depths {}", args.depths))?;
    }
    let adapter = ctx.summary().to_string();
    eprintln!(
        "adapter: {adapter}; clock: {}; {} timed repetitions per method, interleaved",
        if ctx.has_timestamps() {
            "timestamp queries"
        } else {
            "wall time (no timestamp queries)"
        },
        reps.timed
    );
    if args.fft {
        // Training on long windows is slow: fewer codebook counts unless asked for.
        let fft_codebooks = match (&args.codebooks, args.small) {
            (Some(_), _) => codebooks.clone(),
            (None, true) => vec![16],
            (None, false) => vec![16, 64],
        };
        let rows = super::bench_fft::run(&ctx, args.small, reps.timed, &fft_codebooks, &adapter)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            println!("{}", super::bench_fft::table(&rows));
            println!(
                "adapter: {adapter}; CPU peer: {} threads",
                rayon::current_num_threads()
            );
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for w in workloads(&args)? {
        eprintln!(
            "{}: {} on {:?}",
            w.name,
            w.layer.spec().describe(),
            w.input.shape()
        );
        let cs: &[usize] = if args.direct { &[] } else { &codebooks };
        rows.extend(bench_workload(
            &ctx,
            &w,
            args.direct,
            cs,
            &depths,
            args.variants,
            args.tune_compare,
            args.tied,
            args.max_windows,
            reps,
            &adapter,
        )?);
    }
    if let Some(dir) = &args.report {
        let report = super::report::Report {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            date: super::report::today(),
            adapter: adapter.clone(),
            clock: rows.first().map(|r| r.clock.clone()).unwrap_or_default(),
            repetitions: reps.timed,
            rows: &rows,
        };
        let files = super::report::write(dir, &report)
            .with_context(|| format!("writing the report into {}", dir.display()))?;
        for f in files {
            eprintln!("wrote {}", f.display());
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("{}", table(&rows));
    let mut transfers = Table::new(&["layer", "input", "upload ms", "readback ms"]);
    for r in rows.iter().filter(|r| {
        r.method == RowMethod::Direct
            && r.kernels.as_deref() == Some("tiled")
            && r.tuned != Some(false)
    }) {
        transfers.row(vec![
            r.layer.clone(),
            r.shape.clone(),
            format!("{:.3}", r.upload_ms),
            format!("{:.3}", r.readback_ms),
        ]);
    }
    println!(
        "Transfers (wall time, not included in kernel time):\n\n{}",
        transfers.to_markdown()
    );
    println!(
        "adapter: {adapter}; clock: {}",
        rows.first().map(|r| r.clock.as_str()).unwrap_or("-")
    );
    Ok(())
}

/// A comma-separated list of numbers, `flag` naming it in errors.
fn number_list(flag: &str, list: &str) -> Result<Vec<usize>> {
    list.split(',')
        .map(|v| {
            v.trim()
                .parse()
                .with_context(|| format!("{flag}: {v:?} is not a number"))
        })
        .collect()
}

/// The rows as a markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut t = Table::new(&[
        "layer",
        "input",
        "method",
        "C",
        "kernel ms",
        "encode / accumulate ms",
        "GFLOP/s",
        "× vs direct",
        "1 − NMSE",
    ]);
    for r in rows {
        t.row(vec![
            r.layer.clone(),
            r.shape.clone(),
            match (&r.variant, &r.kernels, r.tuned) {
                (Some(v), _, Some(true)) => format!("{} ({v}, tuned)", r.method),
                (Some(v), _, Some(false)) => format!("{} ({v}, untuned)", r.method),
                (Some(v), _, None) => format!("{} ({v})", r.method),
                (None, Some(k), _) => format!("{} ({k})", r.method),
                (None, None, _) => r.method.to_string(),
            },
            match (r.codebooks, r.depth) {
                (Some(c), Some(d)) if d != maddconv::maddness::DEFAULT_DEPTH => {
                    format!("{c} (depth {d})")
                }
                (Some(c), _) => c.to_string(),
                (None, _) => String::new(),
            },
            format!("{:.3}", r.kernel_ms),
            match (r.encode_ms, r.accumulate_ms) {
                (Some(e), Some(a)) => format!("{e:.3} / {a:.3}"),
                _ => String::new(),
            },
            format!("{:.1}", r.gflops),
            format!("{:.2}", r.speedup_vs_direct),
            format!(
                "{:.4}{}",
                r.one_minus_nmse,
                if r.trained_on_test {
                    " (train=test)"
                } else {
                    ""
                }
            ),
        ]);
    }
    t.to_markdown()
}

/// One layer under test and what its row says besides the timing.
struct Entry {
    conv: Box<dyn GpuConv>,
    /// The variant's name and whether it is the tuned choice (`None`: no tuning).
    variant: (String, Option<bool>),
    /// Codebooks per group, tree depth and seconds of training (MADDNESS rows).
    trained: Option<(usize, usize, f64)>,
}

/// Times every exact kernel the device runs (`all_direct`: also those kept for comparison
/// only) and MADDNESS at each of `codebooks` on one workload, interleaved, with each method's
/// error against the f64 reference.
#[allow(clippy::too_many_arguments)]
pub fn bench_workload(
    ctx: &Context,
    w: &Workload,
    all_direct: bool,
    codebooks: &[usize],
    depths: &[usize],
    variants: bool,
    tune_compare: bool,
    tied: bool,
    max_windows: usize,
    reps: Repetitions,
    adapter: &str,
) -> Result<Vec<Row>> {
    let g = w.layer.spec().geometry(w.input.shape())?;
    let exact = w.layer.exact(&w.input)?;
    let x = ctx.upload("bench input", &w.input)?;
    let out_shape = g.output_shape(w.layer.spec().kind);

    // Every exact kernel the device runs; the speedups are quoted against the fastest of the
    // baselines (tiled, subgroup).
    let mut entries = Vec::new();
    let shape = w.input.shape();
    let tunes = ctx.tuner().is_some();
    for &k in DirectKernel::ALL {
        let baseline = matches!(k, DirectKernel::Tiled | DirectKernel::Subgroup);
        if (baseline || all_direct) && k.check(ctx).is_ok() {
            let conv = DirectConv::with_kernel(ctx, &w.layer, k)?;
            let v = pollster::block_on(conv.tune(ctx, shape))?;
            if tune_compare && tunes {
                let d = DirectVariant::default_for(k, g.out_per_group());
                entries.push(Entry {
                    conv: Box::new(DirectConv::with_variant(ctx, &w.layer, d)?),
                    variant: (d.name(), Some(false)),
                    trained: None,
                });
            }
            entries.push(Entry {
                conv: Box::new(conv.pinned(ctx, shape)?),
                variant: (v.name(), tunes.then_some(true)),
                trained: None,
            });
        }
    }
    let d = g.window_len();
    let cases = codebooks
        .iter()
        .filter(|&&c| c <= d)
        .flat_map(|&c| depths.iter().map(move |&depth| (c, depth)));
    for (c, depth) in cases {
        let config = TrainConfig {
            codebooks: Some(c),
            max_windows: Some(max_windows),
            keep_f32_tables: false,
            depth,
            ..TrainConfig::default()
        };
        let t0 = Instant::now();
        let tables = match train(&w.layer, std::slice::from_ref(&w.train), &config) {
            Ok(t) => t,
            // Degenerate training data (too few windows, say): no tables, and the report says why.
            Err(maddconv::Error::Training(why)) => {
                eprintln!("  MADDNESS C={c} depth {depth} not trained: {why}");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let secs = t0.elapsed().as_secs_f64();
        eprintln!("  trained C={c} depth {depth} in {secs:.1} s");
        let default = LookupKernel::default_for_tables(ctx, &tables);
        // Without --variants: one layer whose look-ups (kernel and tile) are tuned, `None`.
        let kernels: Vec<Option<LookupKernel>> = if variants {
            // The default first, then the others this layer and device run.
            std::iter::once(default)
                .chain(LookupKernel::ALL.iter().copied().filter(|&k| k != default))
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        for k in kernels {
            let layer = match k {
                Some(k) => MaddnessConv::new(ctx, &tables)?.with_kernels(ctx, k),
                None => MaddnessConv::new(ctx, &tables),
            };
            let layer = match layer {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("  skipping {}: {e}", k.unwrap_or(default).name());
                    continue;
                }
            };
            let v = pollster::block_on(layer.tune(ctx, shape))?;
            if tune_compare && tunes {
                let d = LookupVariant::default_for(k.unwrap_or(default));
                entries.push(Entry {
                    conv: Box::new(MaddnessConv::new(ctx, &tables)?.with_variant(ctx, d)?),
                    variant: (d.name(), Some(false)),
                    trained: Some((c, depth, secs)),
                });
            }
            entries.push(Entry {
                conv: Box::new(layer.pinned(ctx, shape)?),
                variant: (v.name(), tunes.then_some(true)),
                trained: Some((c, depth, secs)),
            });
        }
        if tied {
            entries.extend(tied_entries(ctx, w, &config, shape, tunes)?);
        }
    }
    let outputs = entries
        .iter()
        .map(|_| ctx.create_tensor("bench output", &out_shape))
        .collect::<maddconv::Result<Vec<_>>>()?;

    let methods: Vec<Method> = entries
        .iter()
        .zip(&outputs)
        .map(|(e, y)| Method {
            conv: e.conv.as_ref(),
            input: &x,
            output: y,
        })
        .collect();

    // Error of each method on the timed input, outputs poisoned first.
    let mut errors = Vec::new();
    for m in &methods {
        let got = pollster::block_on(m.checked_output(ctx))?;
        let nmse = nmse(w.layer.spec().kind, &got, &exact)?;
        errors.push((1.0 - nmse, relative_l2(got.data(), exact.data())));
    }
    let timings = pollster::block_on(time_interleaved(ctx, &methods, reps))?;
    let (upload_ms, readback_ms) = time_transfers(ctx, &w.input, &outputs[0], reps)?;
    let flops = 2.0 * g.macs() as f64;
    let direct_ms = entries
        .iter()
        .zip(&timings)
        .filter(|(e, _)| e.conv.exact() && matches!(e.conv.name(), "tiled" | "subgroup"))
        .map(|(_, t)| t.median_ms)
        .fold(f64::INFINITY, f64::min);
    Ok(entries
        .iter()
        .zip(&timings)
        .zip(errors)
        .map(|((e, t), (one_minus_nmse, rel))| {
            // The codes' passes (encode, or encode_pixels + expand_codes), then the look-ups.
            let passes = t.pass_median_ms.len();
            let split = !e.conv.exact() && (passes == 2 || passes == 3);
            Row {
                layer: w.name.clone(),
                shape: format!("{:?}", w.input.shape()),
                method: if e.conv.exact() {
                    RowMethod::Direct
                } else {
                    RowMethod::Maddness
                },
                kernels: Some(e.conv.name().to_string()),
                variant: Some(e.variant.0.clone()),
                tuned: e.variant.1,
                codebooks: e.trained.map(|(c, _, _)| c),
                depth: e.trained.map(|(_, d, _)| d),
                kernel_ms: t.median_ms,
                encode_ms: split.then(|| t.pass_median_ms[..passes - 1].iter().sum()),
                accumulate_ms: split.then(|| t.pass_median_ms[passes - 1]),
                gflops: flops / (t.median_ms * 1e6),
                speedup_vs_direct: direct_ms / t.median_ms,
                one_minus_nmse,
                rel_l2_vs_f64: rel,
                trained_on_test: e.trained.is_some() && w.trained_on_test,
                train_seconds: e.trained.map(|(_, _, s)| s),
                clock: t.clock.to_string(),
                upload_ms,
                readback_ms,
                adapter: adapter.to_string(),
            }
        })
        .collect())
}

/// Tied per-pixel tables for `config` (`--learner tied`) on workload `w`, as two entries: the
/// tied encoding and the untied encode of the same tables, and a third when the context tunes:
/// the encoding chosen by the tuner with the tiles (one entry for a 1×1 kernel, where nothing is
/// shared). None when the training data are too few.
fn tied_entries(
    ctx: &Context,
    w: &Workload,
    config: &TrainConfig,
    shape: &[usize],
    tunes: bool,
) -> Result<Vec<Entry>> {
    let config = TrainConfig {
        learner: Learner::Tied,
        ..config.clone()
    };
    let t0 = Instant::now();
    let tables = match train(&w.layer, std::slice::from_ref(&w.train), &config) {
        Ok(t) => t,
        Err(maddconv::Error::Training(why)) => {
            eprintln!("  tied tables not trained: {why}");
            return Ok(Vec::new());
        }
        Err(e) => return Err(e.into()),
    };
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("  trained tied C={} in {secs:.1} s", tables.codebooks);
    // Pinned on, pinned off, and (when the context tunes) the encoding timed with the tiles.
    let modes: &[Option<bool>] = match (tables.tied_trees_per_tap().is_some(), tunes) {
        (true, true) => &[Some(true), Some(false), None],
        (true, false) => &[Some(true), Some(false)],
        (false, _) => &[Some(false)],
    };
    let mut out = Vec::new();
    for &on in modes {
        let layer = MaddnessConv::new(ctx, &tables)?;
        let layer = match on {
            Some(on) => layer.with_tied_encode(ctx, on)?,
            None => layer,
        };
        let v = pollster::block_on(layer.tune(ctx, shape))?;
        let label = match (modes.len(), on) {
            (1, _) => "tied (1 tap)",
            (_, Some(true)) => "tied",
            (_, Some(false)) => "tied, untied encode",
            (_, None) => "tied, encoding tuned",
        };
        out.push(Entry {
            conv: Box::new(layer.pinned(ctx, shape)?),
            variant: (format!("{} {label}", v.name()), tunes.then_some(true)),
            trained: Some((tables.codebooks, tables.depth, secs)),
        });
    }
    Ok(out)
}

/// Median wall times of uploading `input` (write + wait until done) and of reading `output`
/// back (copy + map), in ms.
fn time_transfers(
    ctx: &Context,
    input: &Tensor,
    output: &maddconv::gpu::GpuTensor,
    reps: Repetitions,
) -> Result<(f64, f64)> {
    let x = ctx.create_tensor("upload", input.shape())?;
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for i in 0..reps.warmup + reps.timed {
        let t = Instant::now();
        ctx.queue()
            .write_buffer(&x.buffer, 0, bytemuck::cast_slice(input.data()));
        pollster::block_on(ctx.wait_idle())?;
        let t_up = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        pollster::block_on(ctx.download(output))?;
        let t_down = t.elapsed().as_secs_f64() * 1e3;
        if i >= reps.warmup {
            up.push(t_up);
            down.push(t_down);
        }
    }
    Ok((
        maddconv::bench::median(&mut up),
        maddconv::bench::median(&mut down),
    ))
}
