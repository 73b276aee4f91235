//! `maddconv`: the command-line tool. See `maddconv --help`.

mod cli;

use clap::{Parser, Subcommand};

/// Table-lookup (MADDNESS) convolution layers on any GPU, next to an exact direct kernel.
#[derive(Parser)]
#[command(name = "maddconv", version, about, long_about = None)]
struct Args {
    /// Run the fixed kernel defaults: no timing of kernel variants, no tuning cache (also
    /// MADDCONV_NO_TUNE=1). Without it, a layer's first input of a new shape class times the
    /// variants and the fastest is kept in the adapter's cache file (MADDCONV_TUNE_CACHE or the
    /// platform's cache directory).
    #[arg(long, global = true)]
    no_tune: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the GPU adapter: name, backend, device type, key limits and features.
    Info(cli::info::InfoArgs),
    /// Exact convolution of an input with a weight (GPU direct or FFT kernel, or --cpu reference).
    Conv(cli::conv::ConvArgs),
    /// Learn MADDNESS tables for a layer from its weight and real inputs.
    Train(Box<cli::train::TrainArgs>),
    /// Error (NMSE) of a table file on an input against the exact convolution.
    Eval(cli::eval::EvalArgs),
    /// Apply a trained layer (table file) to an input, on the GPU or with --cpu the CPU mirror.
    Run(cli::run::RunArgs),
    /// Time the kernels on this adapter, methods interleaved, with their error next to the speed.
    Bench(cli::bench::BenchArgs),
    /// Fill the tuning cache ahead of time: time the kernel variants of each layer's shape
    /// classes on this adapter and keep the fastest.
    Tune(cli::tune::TuneArgs),
    /// Whole ONNX models: inspect Conv nodes, calibrate tables, eval and run with them.
    #[cfg(feature = "onnx")]
    Model(cli::model::ModelArgs),
}

fn main() {
    let args = Args::parse();
    cli::set_no_tune(args.no_tune);
    // The benchmark trains many tables: keep its log to warnings unless RUST_LOG asks for more.
    let default_filter = match args.command {
        Command::Bench(_) | Command::Tune(_) => "warn,wgpu_hal::gles=off",
        _ => "warn,wgpu_hal::gles=off,maddconv=info",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter))
        .format_timestamp(None)
        .init();
    // SIGINT/TERM/HUP mid-write remove the unfinished output's temporary (exit 130/143/129).
    if let Err(e) = maddconv::io::install_signal_cleanup() {
        log::warn!("{e}");
    }
    let result = match args.command {
        Command::Info(a) => cli::info::run(a),
        Command::Conv(a) => cli::conv::run(a),
        Command::Train(a) => cli::train::run(*a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Run(a) => cli::run::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Tune(a) => cli::tune::run(a),
        #[cfg(feature = "onnx")]
        Command::Model(a) => cli::model::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
