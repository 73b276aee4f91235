//! Shared test helpers: one GPU context per test binary, the data folders, comparisons that
//! name the index and both values on failure.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use maddconv::gpu::{Context, ContextOptions, GpuConv};

/// The GPU context shared by the tests of this binary (fixed kernel defaults, no tuning), or `None` (with a loud line on stderr)
/// when there is no adapter. With `MADDCONV_REQUIRE_GPU=1` a missing adapter fails the test.
pub fn gpu() -> Option<&'static Context> {
    static CTX: OnceLock<Result<Context, String>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| {
        Context::new_blocking(ContextOptions {
            tune: maddconv::gpu::TuneMode::Off,
            ..ContextOptions::default()
        })
        .map_err(|e| e.to_string())
    });
    match ctx {
        Ok(c) => Some(c),
        Err(e) => {
            if std::env::var("MADDCONV_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("MADDCONV_REQUIRE_GPU=1 but no GPU context could be created: {e}");
            }
            eprintln!(
                "!!!!! SKIPPED: no GPU adapter ({e}); set MADDCONV_REQUIRE_GPU=1 to fail instead"
            );
            None
        }
    }
}

/// A fresh GPU context on the same adapter with the given limits (tests of limit handling).
pub fn gpu_with(limits: wgpu::Limits) -> Context {
    Context::new_blocking(ContextOptions {
        limits: Some(limits),
        tune: maddconv::gpu::TuneMode::Off,
        ..ContextOptions::default()
    })
    .expect("a device with the requested limits")
}

/// The real-data folder (`../shared/data` beside the repository, or `MADDCONV_DATA`), or
/// `None` with a loud line when absent. With `MADDCONV_REQUIRE_DATA=1` its absence fails.
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("MADDCONV_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    if dir.join("layers").is_dir() {
        return Some(dir);
    }
    if std::env::var("MADDCONV_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!(
            "MADDCONV_REQUIRE_DATA=1 but the data folder {} is missing",
            dir.display()
        );
    }
    eprintln!(
        "!!!!! SKIPPED the full-data part: {} not found (set MADDCONV_DATA); \
         set MADDCONV_REQUIRE_DATA=1 to fail instead",
        dir.display()
    );
    None
}

/// The small real fixtures kept in the repository.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Layer folders to test: the repository's fixtures plus every layer of the shared data.
pub fn layer_dirs() -> Vec<maddconv::data::LayerDir> {
    let mut v = maddconv::data::LayerDir::list(fixtures().join("layers")).expect("fixtures");
    if let Some(d) = shared_data() {
        v.extend(maddconv::data::LayerDir::list(d.join("layers")).expect("shared layers"));
    }
    v
}

/// Relative L2 error with the worst element named, failing above `tol`.
pub fn assert_close(what: &str, computed: &[f32], expected: &[f32], tol: f64) {
    assert_eq!(computed.len(), expected.len(), "{what}: length differs");
    if let Some(i) = computed.iter().position(|v| !v.is_finite()) {
        panic!(
            "{what}: non-finite value {} at index {i} (expected {})",
            computed[i], expected[i]
        );
    }
    let rel = maddconv::metrics::relative_l2(computed, expected);
    if rel >= tol || rel.is_nan() {
        let (i, d) = computed
            .iter()
            .zip(expected)
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .enumerate()
            .fold((0, 0.0), |acc, (i, d)| if d > acc.1 { (i, d) } else { acc });
        panic!(
            "{what}: relative L2 {rel:.3e} ≥ {tol:.1e}; worst at index {i}: computed {} expected {} (|diff| {d:.3e})",
            computed[i], expected[i]
        );
    }
}

/// A tensor of deterministic pseudo-random values in [-1, 1) (xorshift64*, seeded).
pub fn random_tensor(shape: &[usize], seed: u64) -> maddconv::Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data = (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let v = s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            (v as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    maddconv::Tensor::new(shape.to_vec(), data).unwrap()
}

/// Runs a direct kernel through `encode` into an output poisoned with NaN, and reads it back.
pub fn run_direct_poisoned(
    ctx: &maddconv::gpu::Context,
    layer: &maddconv::gpu::direct::DirectConv,
    x: &maddconv::Tensor,
) -> maddconv::Tensor {
    let shape = layer.spec().output_shape(x.shape()).unwrap();
    let xin = ctx.upload("test input", x).unwrap();
    let y = ctx.create_tensor("test output", &shape).unwrap();
    ctx.fill(&y, f32::NAN);
    let mut enc = ctx.encoder("test");
    layer.encode(ctx, &mut enc, &xin, &y, None).unwrap();
    ctx.submit(enc);
    pollster::block_on(ctx.download(&y)).unwrap()
}

/// The library's seeded generator (SplitMix64), under the tests' name.
#[allow(unused_imports)]
pub use maddconv::rng::SplitMix64 as Rng;

/// Sets `spec`'s stride, dilation and padding from (vertical, horizontal) values and pads
/// (top, left, bottom, right) — a conv1d takes the horizontal ones and pads (left, right) —
/// and returns an `n`-sample input shape: the smallest input the window fits plus `extra`
/// (three times `extra.1` along a conv1d's length).
pub fn place_window(
    spec: &mut maddconv::ConvSpec,
    n: usize,
    s: (usize, usize),
    d: (usize, usize),
    p: (usize, usize, usize, usize),
    extra: (usize, usize),
) -> Vec<usize> {
    let min_in =
        |k: usize, d: usize, pb: usize, pe: usize| (d * (k - 1) + 1).saturating_sub(pb + pe).max(1);
    match spec.kind {
        maddconv::ConvKind::Conv1d => {
            spec.stride = vec![s.1];
            spec.dilation = vec![d.1];
            spec.padding = vec![p.1, p.3];
            let len = min_in(spec.kernel[0], d.1, p.1, p.3) + 3 * extra.1;
            vec![n, spec.in_channels, len]
        }
        maddconv::ConvKind::Conv2d => {
            spec.stride = vec![s.0, s.1];
            spec.dilation = vec![d.0, d.1];
            spec.padding = vec![p.0, p.1, p.2, p.3];
            let h = min_in(spec.kernel[0], d.0, p.0, p.2) + extra.0;
            let w = min_in(spec.kernel[1], d.1, p.1, p.3) + extra.1;
            vec![n, spec.in_channels, h, w]
        }
    }
}

/// A fresh GPU context with the limits `limits` makes from the shared context's, or `None`
/// (as [`gpu`]) when there is no adapter.
pub fn gpu_limited(limits: impl FnOnce(&wgpu::Limits) -> wgpu::Limits) -> Option<Context> {
    gpu().map(|ctx| gpu_with(limits(ctx.limits())))
}

/// The property tests' runner configuration: `cases` cases from the fixed seed `seed`, no
/// failure files.
pub fn proptest_config(cases: u32, seed: u64) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// A layer folder's test input, weight and bias.
pub fn test_weight_bias(
    layer: &maddconv::data::LayerDir,
) -> (maddconv::Tensor, maddconv::Tensor, Option<maddconv::Tensor>) {
    (
        layer.test().unwrap(),
        layer.weight().unwrap(),
        layer.bias().unwrap(),
    )
}

/// A fresh GPU context (as [`gpu_limited`]) whose limits fold grids and slice batches early:
/// 16 KiB storage bindings, 8 workgroups per dimension.
pub fn gpu_small_limits() -> Option<Context> {
    gpu_limited(|base| wgpu::Limits {
        max_storage_buffer_binding_size: 16 * 1024,
        max_compute_workgroups_per_dimension: 8,
        ..base.clone()
    })
}
