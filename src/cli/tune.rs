//! `maddconv tune`: fills the adapter's tuning cache ahead of time. For each layer (the same set
//! `maddconv bench` uses) it times the exact direct kernel's variants and, for MADDNESS tables
//! trained at each C, the look-up variants, on inputs of the layer's shape, and keeps the
//! fastest per shape class ([`maddconv::gpu::tune`]).

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::{Args, FromArgMatches};
use maddconv::bench::Table;
use maddconv::gpu::{DirectConv, MaddnessConv};
use maddconv::maddness::{train, TrainConfig};

/// Arguments of `maddconv tune`.
#[derive(Args, Debug)]
pub struct TuneArgs {
    /// Tune for this layer folder (layer.json + weight/bias/test .npy); repeatable. Replaces
    /// the default set (every layer of DATA/layers and the batch-8 CNN shapes).
    #[arg(long = "layer", value_name = "DIR")]
    pub layers: Vec<PathBuf>,
    /// Small mode (for CI): the repository's fixture layers and one small CNN shape, C = 8, 16.
    #[arg(long)]
    pub small: bool,
    /// The data folder whose layers/ make the default set.
    #[arg(long, default_value = "../shared/data", env = "MADDCONV_DATA")]
    pub data: PathBuf,
    /// Skip the batch-8 CNN shapes.
    #[arg(long)]
    pub no_cnn: bool,
    /// Codebooks per group of the MADDNESS tables tuned for (comma-separated; values above the
    /// window length are skipped). Default 16,32,64 (8,16 with --small); "" for none.
    #[arg(long, value_name = "C,...")]
    pub codebooks: Option<String>,
    /// Most training windows for the tables (their values hardly matter for the timing).
    #[arg(long, default_value_t = 4096)]
    pub max_windows: usize,
}

/// Tunes every layer's shape classes and prints what was chosen.
pub fn run(args: TuneArgs) -> Result<()> {
    if matches!(super::tune_mode(), maddconv::gpu::TuneMode::Off) {
        bail!("`tune` with --no-tune (or MADDCONV_NO_TUNE=1) has nothing to do");
    }
    let ctx = super::gpu()?;
    let Some(tuner) = ctx.tuner() else {
        bail!("the context does not tune");
    };
    eprintln!(
        "adapter: {}; cache: {}",
        ctx.summary(),
        tuner
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "memory only (no cache directory)".into())
    );
    // The workloads `bench` would run, from the same flags.
    let mut argv: Vec<String> = vec!["bench".into(), "--data".into()];
    argv.push(args.data.display().to_string());
    if args.small {
        argv.push("--small".into());
    }
    if args.no_cnn {
        argv.push("--no-cnn".into());
    }
    for l in &args.layers {
        argv.push("--layer".into());
        argv.push(l.display().to_string());
    }
    let matches = <super::bench::BenchArgs as Args>::augment_args(clap::Command::new("bench"))
        .try_get_matches_from(&argv)?;
    let bench_args = super::bench::BenchArgs::from_arg_matches(&matches)?;
    let codebooks: Vec<usize> = match &args.codebooks {
        Some(list) if list.trim().is_empty() => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|v| {
                v.trim()
                    .parse()
                    .with_context(|| format!("--codebooks: {v:?} is not a number"))
            })
            .collect::<Result<_>>()?,
        None if args.small => vec![8, 16],
        None => vec![16, 32, 64],
    };
    let mut table = Table::new(&[
        "layer",
        "input",
        "family",
        "C",
        "chosen",
        "ms",
        "default ms",
        "default / chosen",
    ]);
    for w in super::bench::workloads(&bench_args)? {
        let shape = w.input.shape().to_vec();
        eprintln!("{}: {} on {shape:?}", w.name, w.layer.spec().describe());
        // Whether a class already had a choice (from the cache file or an earlier layer).
        let known =
            |class: &Option<String>| class.as_deref().is_some_and(|k| tuner.get(k).is_some());
        let direct = DirectConv::new(&ctx, &w.layer)?;
        let class = direct.tune_class(&ctx, &shape)?;
        let cached = known(&class);
        let v = pollster::block_on(direct.tune(&ctx, &shape))?;
        let mut rows = vec![("direct", String::new(), v.name(), class, cached)];
        let d = w.layer.spec().geometry(&shape)?.window_len();
        for &c in codebooks.iter().filter(|&&c| c <= d) {
            let config = TrainConfig {
                codebooks: Some(c),
                max_windows: Some(args.max_windows),
                keep_f32_tables: false,
                ..TrainConfig::default()
            };
            let tables = match train(&w.layer, std::slice::from_ref(&w.train), &config) {
                Ok(t) => t,
                Err(maddconv::Error::Training(why)) => {
                    eprintln!("  MADDNESS C={c} not trained: {why}");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let layer = MaddnessConv::new(&ctx, &tables)?;
            let class = layer.tune_class(&ctx, &shape)?;
            let cached = known(&class);
            let v = pollster::block_on(layer.tune(&ctx, &shape))?;
            rows.push(("lookup", c.to_string(), v.name(), class, cached));
        }
        for (family, c, chosen, class, cached) in rows {
            let entry = class.as_deref().and_then(|k| tuner.get(k));
            let (ms, default_ms) = entry
                .map(|e| (e.median_ms, e.default_ms))
                .unwrap_or((f64::NAN, f64::NAN));
            table.row(vec![
                w.name.clone(),
                format!("{shape:?}"),
                family.to_string(),
                c,
                format!(
                    "{chosen}{}",
                    if cached {
                        " (class known: not timed)"
                    } else {
                        ""
                    }
                ),
                format!("{ms:.3}"),
                format!("{default_ms:.3}"),
                format!("{:.2}", default_ms / ms),
            ]);
        }
    }
    ctx.check_errors()?;
    println!("{}", table.to_markdown());
    if let Some(p) = tuner.path() {
        println!(
            "{} shape classes cached in {}",
            tuner.snapshot().entries.len(),
            p.display()
        );
    }
    Ok(())
}
