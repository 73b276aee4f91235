//! Peer comparison: Burn's conv2d / conv1d on its wgpu backend against maddconv's exact direct
//! kernels and MADDNESS, for the same layers and inputs, on the same adapter, in one process,
//! interleaved (every repetition runs each method once, in turn).
//!
//! ```text
//! cd benches/peers && cargo run --release -- [--data DIR] [--layers NAME,NAME] [--no-cnn]
//!     [--codebooks C] [--reps N] [--json FILE]
//! ```
//!
//! Workloads: every real layer of `DIR/layers` (default `../../../shared/data`, or
//! `MADDCONV_DATA`; its `test.npy` is the timed input) and the batch-8 CNN shapes of
//! `maddconv bench` (64ch 56×56, 128ch 28×28, 256ch 14×14, 3×3 pad 1).
//!
//! Times: maddconv's kernels from GPU timestamp queries around their compute passes; Burn's from
//! `Device::profile_with(ProfileOptions::flush)` (device time of everything Burn queued for the
//! call, from timestamp queries when the adapter has them). Both are medians. Burn's wall time
//! (call + `sync`) is printed too. Burn's output is checked against maddconv's direct output
//! (relative L2); both against the f64 reference.
//!
//! Burn and maddconv each open their own logical device on the same adapter (wgpu's default
//! adapter for the backend in `WGPU_BACKEND`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, ensure, Context as _, Result};
use burn::tensor::module::{conv1d, conv2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, DeviceKind, ProfileOptions, Tensor as BTensor, TensorData};
use maddconv::bench::{cnn_workload, median, Workload};
use maddconv::data::LayerDir;
use maddconv::gpu::direct::{DirectConv, DirectKernel};
use maddconv::gpu::maddness::MaddnessConv;
use maddconv::gpu::{Context, ContextOptions, GpuConv, GpuTensor, GpuTimer};
use maddconv::maddness::{train, TrainConfig};
use maddconv::metrics::nmse;
use maddconv::metrics::relative_l2;
use maddconv::reference::conv_reference;
use maddconv::{ConvKind, ConvSpec, Tensor};

const USAGE: &str = "usage: maddconv-peers [--data DIR] [--layers NAME,NAME] [--no-cnn] \
[--codebooks C] [--reps N] [--json FILE]";

struct Options {
    data: PathBuf,
    layers: Option<Vec<String>>,
    cnn: bool,
    codebooks: usize,
    reps: usize,
    json: Option<PathBuf>,
}

fn options() -> Result<Options> {
    let mut o = Options {
        data: std::env::var_os("MADDCONV_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
            }),
        layers: None,
        cnn: true,
        codebooks: 32,
        reps: 30,
        json: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--no-cnn" => {
                o.cnn = false;
                continue;
            }
            _ => {}
        }
        let v = args
            .next()
            .with_context(|| format!("{a} needs a value\n{USAGE}"))?;
        let num = |v: &str| -> Result<usize> {
            v.parse()
                .map_err(|e| anyhow::anyhow!("{a}: {v:?} is not a positive integer ({e})"))
        };
        match a.as_str() {
            "--data" => o.data = PathBuf::from(v),
            "--layers" => o.layers = Some(v.split(',').map(str::to_string).collect()),
            "--codebooks" => o.codebooks = num(&v)?,
            "--reps" => o.reps = num(&v)?,
            "--json" => o.json = Some(PathBuf::from(v)),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    ensure!(o.reps >= 1 && o.codebooks >= 1, "--reps and --codebooks must be ≥ 1");
    Ok(o)
}

fn workloads(o: &Options) -> Result<Vec<Workload>> {
    let mut out = Vec::new();
    let root = o.data.join("layers");
    if root.is_dir() {
        for d in LayerDir::list(&root)? {
            if let Some(names) = &o.layers {
                if !names.contains(&d.name) {
                    continue;
                }
            }
            let input = d.test()?;
            out.push(Workload {
                name: d.name.clone(),
                layer: d.layer()?,
                train: d.train()?,
                input,
                trained_on_test: false,
            });
        }
        if let Some(names) = &o.layers {
            for n in names {
                ensure!(
                    out.iter().any(|w| &w.name == n),
                    "--layers {n:?}: no such layer in {}",
                    root.display()
                );
            }
        }
    } else {
        eprintln!(
            "note: {} not found; only the CNN shapes are measured",
            root.display()
        );
    }
    if o.cnn {
        for (c, hw) in [(64, 56), (128, 28), (256, 14)] {
            out.push(cnn_workload(c, hw, 8));
        }
    }
    ensure!(!out.is_empty(), "no workloads");
    Ok(out)
}

/// A Burn tensor from ours.
fn burn_tensor<const D: usize>(t: &Tensor, device: &Device) -> BTensor<D> {
    BTensor::<D>::from_data(TensorData::new(t.data().to_vec(), t.shape().to_vec()), device)
}

/// Burn's convolution of `x` (the layer as Burn's module op), not yet read back.
#[derive(Clone)]
enum BurnIn {
    D2(BTensor<4>, BTensor<4>, Option<BTensor<1>>, ConvOptions<2>),
    D1(BTensor<3>, BTensor<3>, Option<BTensor<1>>, ConvOptions<1>),
}

enum BurnOut {
    D2(BTensor<4>),
    D1(BTensor<3>),
}

impl BurnIn {
    fn new(spec: &ConvSpec, w: &Workload, device: &Device) -> BurnIn {
        let bias = w.layer.bias().map(|b| burn_tensor::<1>(b, device));
        match spec.kind {
            ConvKind::Conv2d => BurnIn::D2(
                burn_tensor::<4>(&w.input, device),
                burn_tensor::<4>(w.layer.weight(), device),
                bias,
                ConvOptions {
                    stride: [spec.stride[0], spec.stride[1]],
                    // ONNX pads [top, left, bottom, right] → per axis (begin, end).
                    padding: [
                        (spec.padding[0], spec.padding[2]),
                        (spec.padding[1], spec.padding[3]),
                    ],
                    dilation: [spec.dilation[0], spec.dilation[1]],
                    groups: spec.groups,
                },
            ),
            ConvKind::Conv1d => BurnIn::D1(
                burn_tensor::<3>(&w.input, device),
                burn_tensor::<3>(w.layer.weight(), device),
                bias,
                ConvOptions {
                    stride: [spec.stride[0]],
                    padding: [(spec.padding[0], spec.padding[1])],
                    dilation: [spec.dilation[0]],
                    groups: spec.groups,
                },
            ),
        }
    }

    fn run(&self) -> BurnOut {
        match self.clone() {
            BurnIn::D2(x, w, b, o) => BurnOut::D2(conv2d(x, w, b, o)),
            BurnIn::D1(x, w, b, o) => BurnOut::D1(conv1d(x, w, b, o)),
        }
    }
}

impl BurnOut {
    fn read(self, shape: &[usize]) -> Result<Tensor> {
        let data = match self {
            BurnOut::D2(t) => t.into_data(),
            BurnOut::D1(t) => t.into_data(),
        };
        ensure!(
            data.shape().as_slice() == shape,
            "Burn's output has shape {:?}, expected {shape:?}",
            data.shape()
        );
        let v = data
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("Burn's output: {e:?}"))?;
        Ok(Tensor::new(shape.to_vec(), v)?)
    }
}

/// One measured method.
struct Method {
    name: String,
    samples: Vec<f64>,
    output: Option<Tensor>,
}

/// One timed run of our method: kernel time in ms from timestamps (wall time of submit + wait
/// when the adapter has none).
fn time_ours(
    ctx: &Context,
    m: &dyn GpuConv,
    x: &GpuTensor,
    y: &GpuTensor,
    timer: &mut Option<GpuTimer>,
) -> Result<f64> {
    let mut enc = ctx.encoder("peers");
    let start = Instant::now();
    m.encode(ctx, &mut enc, x, y, timer.as_mut())?;
    if let Some(t) = timer.as_ref() {
        t.resolve(&mut enc);
    }
    ctx.submit(enc);
    Ok(match timer.as_mut() {
        Some(t) => pollster::block_on(t.read(ctx))?.iter().sum(),
        None => {
            pollster::block_on(ctx.wait_idle())?;
            start.elapsed().as_secs_f64() * 1e3
        }
    })
}

fn main() -> Result<()> {
    let o = options()?;
    let ctx = Context::new_blocking(ContextOptions::default())
        .context("no GPU adapter for maddconv (set WGPU_BACKEND=vulkan and VK_DRIVER_FILES)")?;
    let device = Device::wgpu(DeviceKind::DefaultDevice);
    println!(
        "adapter (maddconv): {}; clock: {}",
        ctx.summary(),
        if ctx.has_timestamps() {
            "timestamp queries"
        } else {
            "wall"
        }
    );
    let mut json_rows = Vec::new();
    println!(
        "\n| layer | input | GFLOP | direct ms (kernel) | Burn ms (device) | Burn ms (wall) | Burn / direct | MADDNESS C ms | MADDNESS × vs direct | 1 − NMSE MADDNESS | Burn vs direct rel. L2 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for w in workloads(&o)? {
        let spec = w.layer.spec();
        let g = spec.geometry(w.input.shape())?;
        let out_shape = g.output_shape(spec.kind);
        let flop = 2.0 * g.macs() as f64;
        let exact = conv_reference(spec, &w.input, w.layer.weight(), w.layer.bias())?;
        let mut ours: Vec<(String, Box<dyn GpuConv>)> = Vec::new();
        for k in [DirectKernel::Tiled, DirectKernel::Subgroup] {
            if k.check(&ctx).is_ok() {
                let d = DirectConv::with_kernel(&ctx, &w.layer, k)?;
                // The tuned tiles for this input's shape class (the fixed default with
                // MADDCONV_NO_TUNE=1).
                let name = if ctx.tuner().is_some() {
                    let v = pollster::block_on(d.tune(&ctx, w.input.shape()))?;
                    format!("direct ({}, tuned {})", k.name(), v.name())
                } else {
                    format!("direct ({})", k.name())
                };
                ours.push((name, Box::new(d)));
            }
        }
        let c = o.codebooks.min(g.window_len());
        let tables = train(
            &w.layer,
            std::slice::from_ref(&w.train),
            &TrainConfig {
                codebooks: Some(c),
                max_windows: Some(50_000),
                keep_f32_tables: false,
                ..TrainConfig::default()
            },
        )?;
        let madd = MaddnessConv::new(&ctx, &tables)?;
        let madd_name = if ctx.tuner().is_some() {
            let v = pollster::block_on(madd.tune(&ctx, w.input.shape()))?;
            format!("maddness (tuned {}, C={c})", v.name())
        } else {
            format!("maddness ({}, C={c})", madd.kernels().name())
        };
        ours.push((madd_name, Box::new(madd)));

        let x = ctx.upload("peers input", &w.input)?;
        let ys = ours
            .iter()
            .map(|_| ctx.create_tensor("peers output", &out_shape))
            .collect::<maddconv::Result<Vec<_>>>()?;
        let max_passes = ours.iter().map(|(_, m)| m.passes()).max().unwrap_or(1) as u32;
        let mut timer = GpuTimer::new(&ctx, max_passes);
        let mut methods: Vec<Method> = ours
            .iter()
            .map(|(n, _)| Method {
                name: n.clone(),
                samples: Vec::new(),
                output: None,
            })
            .collect();
        let burn_in = BurnIn::new(spec, &w, &device);
        let (mut burn_dev, mut burn_wall) = (Vec::new(), Vec::new());
        // Warm-up (Burn autotunes each new shape on its first calls) then interleaved reps.
        let warmup = 5;
        let mut burn_out = None;
        for rep in 0..warmup + o.reps {
            for ((_, m), (method, y)) in ours.iter().zip(methods.iter_mut().zip(&ys)) {
                let t = time_ours(&ctx, m.as_ref(), &x, y, &mut timer)?;
                if rep >= warmup {
                    method.samples.push(t);
                }
            }
            let start = Instant::now();
            let (out, dur) = device
                .profile_with(ProfileOptions::default().flush(), || burn_in.run())
                .map_err(|e| anyhow::anyhow!("Burn profile: {e:?}"))?;
            device
                .sync()
                .map_err(|e| anyhow::anyhow!("Burn sync: {e:?}"))?;
            let wall = start.elapsed().as_secs_f64() * 1e3;
            if rep >= warmup {
                burn_dev.push(dur);
                burn_wall.push(wall);
            }
            if rep + 1 == warmup + o.reps {
                burn_out = Some(out);
            }
        }
        let mut burn_dev_ms: Vec<f64> = burn_dev
            .into_iter()
            .map(|d| {
                pollster::block_on(d.resolve())
                    .map(|t| t.duration().as_secs_f64() * 1e3)
                    .unwrap_or(f64::NAN)
            })
            .collect();
        for ((_, m), (method, y)) in ours.iter().zip(methods.iter_mut().zip(&ys)) {
            let _ = m;
            method.output = Some(pollster::block_on(ctx.download(y))?);
        }
        let burn_y = burn_out
            .context("no Burn output")?
            .read(&out_shape)?;

        let direct_idx = (0..methods.len())
            .filter(|&i| methods[i].name.starts_with("direct"))
            .min_by(|&a, &b| {
                median(&mut methods[a].samples.clone())
                    .total_cmp(&median(&mut methods[b].samples.clone()))
            })
            .context("no direct kernel")?;
        let direct_ms = median(&mut methods[direct_idx].samples.clone());
        let direct_y = methods[direct_idx].output.clone().context("direct output")?;
        let madd_m = methods.last().context("maddness")?;
        let madd_ms = median(&mut madd_m.samples.clone());
        let madd_y = madd_m.output.clone().context("maddness output")?;
        let burn_ms = median(&mut burn_dev_ms);
        let burn_wall_ms = median(&mut burn_wall);
        let burn_vs_ours = relative_l2(burn_y.data(), direct_y.data());
        let burn_vs_f64 = relative_l2(burn_y.data(), exact.data());
        let direct_vs_f64 = relative_l2(direct_y.data(), exact.data());
        let one_minus = 1.0 - nmse(spec.kind, &madd_y, &exact)?;
        println!(
            "| {} | {:?} | {:.3} | {:.3} ({}) | {:.3} | {:.3} | {:.2} | {:.3} | {:.2} | {:.4} | {:.1e} |",
            w.name,
            w.input.shape(),
            flop / 1e9,
            direct_ms,
            methods[direct_idx].name.trim_start_matches("direct (").trim_end_matches(')'),
            burn_ms,
            burn_wall_ms,
            burn_ms / direct_ms,
            madd_ms,
            direct_ms / madd_ms,
            one_minus,
            burn_vs_ours,
        );
        ensure!(
            direct_vs_f64 < 1e-5,
            "{}: our direct kernel vs the f64 reference: relative L2 {direct_vs_f64:.2e}",
            w.name
        );
        let mut row = serde_json::json!({
            "layer": w.name,
            "shape": w.input.shape(),
            "gflop": flop / 1e9,
            "burn_device_ms": burn_ms,
            "burn_wall_ms": burn_wall_ms,
            "burn_gflops": flop / (burn_ms * 1e6),
            "burn_rel_l2_vs_direct": burn_vs_ours,
            "burn_rel_l2_vs_f64": burn_vs_f64,
            "direct_rel_l2_vs_f64": direct_vs_f64,
            "maddness_codebooks": c,
            "maddness_one_minus_nmse": one_minus,
            "repetitions": o.reps,
        });
        for m in &methods {
            let ms = median(&mut m.samples.clone());
            row[format!("{}_ms", m.name)] = serde_json::json!(ms);
            row[format!("{}_gflops", m.name)] = serde_json::json!(flop / (ms * 1e6));
        }
        json_rows.push(row);
    }
    println!(
        "\nmaddconv times: GPU timestamp queries around its passes; Burn: device time of \
         Device::profile_with(flush) and wall time of the call + sync; medians of {} interleaved \
         repetitions after 5 warm-up rounds (Burn autotunes then).",
        o.reps
    );
    if let Some(path) = &o.json {
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "adapter": ctx.summary().to_string(),
            "rows": json_rows,
        }))?;
        maddconv::tensor::write_atomic(path, |f| {
            use std::io::Write;
            f.write_all(text.as_bytes())
        })?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
