//! Tuning: every direct-kernel variant (kernel × tile sizes) against the f64 reference, also
//! under downlevel and tiny limits; the tuning cache (round trip, a corrupt, stale or foreign
//! file ignored and rebuilt, the choice rule); and the tuned path end to end (a layer times its
//! variants on the first input of a shape class, keeps the choice in the cache file, a second
//! context reuses it, and `TuneMode::Off` runs the fixed defaults). Caches live in temporary
//! folders, never the user's.

mod common;

use std::path::PathBuf;

use maddconv::gpu::tune::{bucket, pick, AdapterIdentity, CacheFile, TuneEntry, Tuner};
use maddconv::gpu::{
    Context, ContextOptions, DirectConv, DirectKernel, DirectVariant, GpuConv, TuneMode,
};
use maddconv::reference::conv_reference;
use maddconv::{ConvLayer, ConvSpec, Error, Tensor};

/// A fresh, empty temporary folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("maddconv-tune-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn identity() -> AdapterIdentity {
    AdapterIdentity {
        name: "test adapter".into(),
        backend: "vulkan".into(),
        device_type: "Cpu".into(),
        driver: "test driver".into(),
        driver_info: "1.2.3".into(),
    }
}

fn entry(ms: f64) -> TuneEntry {
    TuneEntry {
        variant: serde_json::json!({"kernel": "subgroup", "span": 64}),
        median_ms: ms,
        default_ms: 2.0 * ms,
        candidates: 9,
        shape: vec![339, 64, 1],
    }
}

/// Every direct variant the device runs, and the variants it refuses with the reason.
fn variants(ctx: &Context) -> Vec<DirectVariant> {
    let mut v = Vec::new();
    for &k in DirectKernel::ALL {
        for var in DirectVariant::all(k) {
            match var.check(ctx) {
                Ok(()) => v.push(var),
                Err(Error::Unsupported(why)) => eprintln!("!!!!! SKIPPED {}: {why}", var.name()),
                Err(e) => panic!("{}: {e}", var.name()),
            }
        }
    }
    assert!(
        v.len() >= DirectVariant::TILED.len(),
        "the tiled variants run everywhere"
    );
    v
}

/// The layer (`spec`, seeded weights and bias) and an input of `shape`.
fn layer_and_input(spec: &ConvSpec, shape: &[usize], seed: u64) -> (ConvLayer, Tensor) {
    let w = common::random_tensor(&spec.weight_shape(), seed);
    let b = spec
        .bias
        .then(|| common::random_tensor(&[spec.out_channels], seed + 1));
    let x = common::random_tensor(shape, seed + 2);
    (ConvLayer::new(spec.clone(), w, b).unwrap(), x)
}

/// Each variant on `spec` × `shape` (output poisoned with NaN) against the f64 reference.
fn check_all_variants(ctx: &Context, spec: &ConvSpec, shape: &[usize], seed: u64) {
    let (layer, x) = layer_and_input(spec, shape, seed);
    let exact = conv_reference(spec, &x, layer.weight(), layer.bias()).unwrap();
    for v in variants(ctx) {
        let conv = DirectConv::with_variant(ctx, &layer, v).unwrap();
        let y = common::run_direct_poisoned(ctx, &conv, &x);
        common::assert_close(
            &format!("{} on {} input {shape:?}", v.name(), spec.describe()),
            y.data(),
            exact.data(),
            1e-5,
        );
        ctx.check_errors().unwrap();
    }
}

/// The shapes that stress the tiles: few positions (silero_L04: 339 samples of length 1, and
/// fewer positions than one tile of the smallest span), channel counts that fill no tile evenly,
/// groups and depthwise, strides, padding, conv1d and conv2d.
fn cases() -> Vec<(ConvSpec, Vec<usize>)> {
    let mut v = Vec::new();
    let mut s = ConvSpec::conv1d(64, 128, 3);
    s.padding = vec![1, 1];
    v.push((s.clone(), vec![339, 64, 1]));
    v.push((s, vec![5, 64, 1]));
    let mut s = ConvSpec::conv2d(7, 130, 3, 3);
    s.bias = true;
    v.push((s, vec![1, 7, 5, 67]));
    let mut s = ConvSpec::conv2d(6, 9, 3, 3);
    s.groups = 3;
    s.padding = vec![1; 4];
    v.push((s, vec![2, 6, 6, 6]));
    let mut s = ConvSpec::conv2d(16, 16, 3, 3);
    s.groups = 16;
    s.padding = vec![1; 4];
    s.bias = true;
    v.push((s, vec![1, 16, 10, 10]));
    let mut s = ConvSpec::conv2d(12, 40, 3, 3);
    s.stride = vec![2, 2];
    s.padding = vec![0, 1, 2, 1];
    s.dilation = vec![1, 2];
    v.push((s, vec![3, 12, 21, 17]));
    let mut s = ConvSpec::conv1d(3, 24, 31);
    s.padding = vec![15, 16];
    s.stride = vec![4];
    s.bias = true;
    v.push((s, vec![3, 3, 300]));
    v
}

#[test]
fn every_direct_variant_matches_reference() {
    let Some(ctx) = common::gpu() else { return };
    for (i, (spec, shape)) in cases().iter().enumerate() {
        check_all_variants(ctx, spec, shape, 100 + 10 * i as u64);
    }
}

/// Under wgpu's downlevel limits (16 352 bytes of workgroup memory) and under tiny binding and
/// grid limits (batches sliced, grids folded), every variant still matches the reference.
#[test]
fn every_direct_variant_matches_reference_under_small_limits() {
    let Some(down) = common::gpu_limited(|_| wgpu::Limits {
        max_storage_buffers_per_shader_stage: 8,
        ..wgpu::Limits::downlevel_defaults()
    }) else {
        return;
    };
    let (spec, shape) = &cases()[2];
    check_all_variants(&down, spec, shape, 7);
    let tiny = common::gpu_small_limits().unwrap();
    let mut spec = ConvSpec::conv2d(3, 12, 3, 3);
    spec.padding = vec![1; 4];
    let (layer, x) = layer_and_input(&spec, &[20, 3, 16, 16], 9);
    let exact = conv_reference(&spec, &x, layer.weight(), None).unwrap();
    for v in variants(&tiny) {
        let conv = DirectConv::with_variant(&tiny, &layer, v).unwrap();
        let y = pollster::block_on(conv.run(&tiny, &x)).unwrap();
        common::assert_close(
            &format!("{} sliced", v.name()),
            y.data(),
            exact.data(),
            1e-5,
        );
    }
}

/// Tile sizes outside the supported sets are refused with the value and the allowed ones.
#[test]
fn unsupported_tiles_are_refused() {
    let Some(ctx) = common::gpu() else { return };
    let spec = ConvSpec::conv2d(3, 4, 3, 3);
    let (layer, _) = layer_and_input(&spec, &[1, 3, 5, 5], 1);
    let bad = DirectVariant::Tiled { wg_m: 32, bk: 16 };
    match DirectConv::with_variant(ctx, &layer, bad) {
        Err(Error::Argument(m)) => assert!(m.contains("WG_M = 32"), "{m}"),
        other => panic!("expected Argument, got {:?}", other.err()),
    }
    let bad = DirectVariant::Subgroup { span: 100 };
    assert!(matches!(
        bad.check(ctx),
        Err(Error::Argument(_) | Error::Unsupported(_))
    ));
}

#[test]
fn cache_round_trips_through_its_file() {
    let dir = temp_dir("roundtrip");
    let t = Tuner::new(&TuneMode::Disk(Some(dir.clone())), identity()).unwrap();
    assert_eq!(t.path(), Some(dir.join(identity().file_name()).as_path()));
    assert!(t.get("direct/any/q512/o128/k256").is_none());
    t.insert("direct/any/q512/o128/k256", entry(1.5)).unwrap();
    t.insert("lookup/any/q512/o128/c32", entry(0.5)).unwrap();
    let again = Tuner::new(&TuneMode::Disk(Some(dir.clone())), identity()).unwrap();
    assert_eq!(again.get("direct/any/q512/o128/k256"), Some(entry(1.5)));
    assert_eq!(again.snapshot().entries.len(), 2);
    // Another adapter identity has its own file.
    let mut other = identity();
    other.driver_info = "1.2.4".into();
    assert_ne!(other.file_name(), identity().file_name());
    let t2 = Tuner::new(&TuneMode::Disk(Some(dir.clone())), other).unwrap();
    assert!(t2.snapshot().entries.is_empty());
    // Memory only: nothing written.
    let m = Tuner::new(&TuneMode::Memory, identity()).unwrap();
    assert!(m.path().is_none());
    m.insert("x", entry(1.0)).unwrap();
    assert_eq!(m.get("x"), Some(entry(1.0)));
    assert!(Tuner::new(&TuneMode::Off, identity()).is_none());
}

#[test]
fn corrupt_stale_or_foreign_cache_is_ignored_and_rebuilt() {
    let dir = temp_dir("corrupt");
    let path = dir.join(identity().file_name());
    let write = |text: &str| std::fs::write(&path, text).unwrap();
    let mode = TuneMode::Disk(Some(dir.clone()));
    // Not JSON.
    write("{ this is not json");
    assert!(CacheFile::read(&path, &identity())
        .unwrap_err()
        .to_string()
        .contains("corrupt"));
    let t = Tuner::new(&mode, identity()).unwrap();
    assert!(t.snapshot().entries.is_empty());
    t.insert("k", entry(1.0)).unwrap();
    assert_eq!(
        CacheFile::read(&path, &identity())
            .unwrap()
            .unwrap()
            .entries["k"],
        entry(1.0)
    );
    // Stale: another maddconv version.
    let mut stale = CacheFile::new(identity());
    stale.maddconv = "0.0.0-old".into();
    stale.entries.insert("k".into(), entry(9.0));
    write(&serde_json::to_string(&stale).unwrap());
    let e = CacheFile::read(&path, &identity()).unwrap_err().to_string();
    assert!(e.contains("stale") && e.contains("0.0.0-old"), "{e}");
    let t = Tuner::new(&mode, identity()).unwrap();
    assert!(t.get("k").is_none(), "a stale entry was used");
    t.insert("k2", entry(2.0)).unwrap();
    let rebuilt = CacheFile::read(&path, &identity()).unwrap().unwrap();
    assert_eq!(rebuilt.maddconv, env!("CARGO_PKG_VERSION"));
    assert_eq!(rebuilt.entries.keys().collect::<Vec<_>>(), vec!["k2"]);
    // Another adapter's file under this name (a hash collision or a copied file).
    let mut foreign = CacheFile::new(AdapterIdentity {
        name: "another".into(),
        ..identity()
    });
    foreign.entries.insert("k".into(), entry(3.0));
    write(&serde_json::to_string(&foreign).unwrap());
    assert!(Tuner::new(&mode, identity()).unwrap().get("k").is_none());
    // Valid JSON of the wrong layout.
    write("[1, 2, 3]");
    assert!(Tuner::new(&mode, identity())
        .unwrap()
        .snapshot()
        .entries
        .is_empty());
}

#[test]
fn choice_keeps_the_default_unless_clearly_faster() {
    assert_eq!(pick(&[1.0, 0.5, 0.7], 0, 0.03), 1);
    assert_eq!(pick(&[1.0, 0.99, 1.2], 0, 0.03), 0, "within the margin");
    assert_eq!(pick(&[f64::NAN, 2.0, 1.0], 0, 0.03), 2);
    assert_eq!(pick(&[1.0], 0, 0.03), 0);
    assert_eq!(
        (bucket(0), bucket(1), bucket(339), bucket(512), bucket(513)),
        (1, 1, 512, 512, 1024)
    );
}

/// A context that tunes into `dir`.
fn tuning_context(dir: &std::path::Path) -> Option<Context> {
    common::gpu()?;
    Some(
        Context::new_blocking(ContextOptions {
            tune: TuneMode::Disk(Some(dir.to_path_buf())),
            ..ContextOptions::default()
        })
        .unwrap(),
    )
}

#[test]
fn tuned_layer_times_once_caches_and_stays_exact() {
    let dir = temp_dir("e2e");
    let Some(ctx) = tuning_context(&dir) else {
        return;
    };
    let mut spec = ConvSpec::conv1d(64, 128, 3);
    spec.padding = vec![1, 1];
    spec.bias = true;
    let (layer, x) = layer_and_input(&spec, &[339, 64, 1], 21);
    let exact = conv_reference(&spec, &x, layer.weight(), layer.bias()).unwrap();
    let conv = DirectConv::new(&ctx, &layer).unwrap();
    let class = conv.tune_class(&ctx, x.shape()).unwrap().unwrap();
    assert_eq!(class, "direct/any/q512/o128/k256");
    assert!(ctx.tuner().unwrap().get(&class).is_none());
    let y = pollster::block_on(conv.run(&ctx, &x)).unwrap();
    common::assert_close("tuned direct", y.data(), exact.data(), 1e-5);
    let e = ctx
        .tuner()
        .unwrap()
        .get(&class)
        .expect("run tuned the class");
    let chosen: DirectVariant = serde_json::from_value(e.variant.clone()).unwrap();
    assert!(chosen.check(&ctx).is_ok());
    assert!(e.candidates >= DirectVariant::TILED.len() && e.median_ms > 0.0);
    assert!(
        e.median_ms <= e.default_ms,
        "the choice is never slower than the default: {e:?}"
    );
    // The file holds it; a new context loads it and runs the same variant without timing.
    let file = CacheFile::read(
        ctx.tuner().unwrap().path().unwrap(),
        &AdapterIdentity::of(ctx.adapter_info()),
    )
    .unwrap()
    .unwrap();
    assert_eq!(file.entries[&class], e);
    let ctx2 = tuning_context(&dir).unwrap();
    let conv2 = DirectConv::new(&ctx2, &layer).unwrap();
    let g = spec.geometry(x.shape()).unwrap();
    assert_eq!(conv2.variant_for(&ctx2, &g), chosen);
    let y2 = pollster::block_on(conv2.run(&ctx2, &x)).unwrap();
    common::assert_close("cached choice", y2.data(), exact.data(), 1e-5);
    assert_eq!(ctx2.tuner().unwrap().snapshot().entries.len(), 1);
    // A kernel asked for is kept: its class is its own and only its tiles are tried.
    let tiled = DirectConv::with_kernel(&ctx2, &layer, DirectKernel::Tiled).unwrap();
    let v = pollster::block_on(tiled.tune(&ctx2, x.shape())).unwrap();
    assert_eq!(v.kernel(), DirectKernel::Tiled);
    let y3 = pollster::block_on(tiled.run(&ctx2, &x)).unwrap();
    common::assert_close("tuned tiled", y3.data(), exact.data(), 1e-5);
    // Off: no tuner, the fixed default.
    let off = common::gpu().unwrap();
    assert!(off.tuner().is_none());
    let fixed = DirectConv::new(off, &layer).unwrap();
    assert_eq!(
        fixed.variant_for(off, &g),
        DirectVariant::default_for(DirectKernel::default_for(off), 128)
    );
}
