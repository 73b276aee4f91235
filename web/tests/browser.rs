//! In-browser tests (headless Chromium through chromedriver, WebGPU on SwiftShader in CI):
//! the library's GPU kernels, compiled to wasm, against its CPU oracles, inside the browser.
//!
//! Run with `web/test.sh` (or `cargo test --target wasm32-unknown-unknown` in `web/` with
//! `CHROMEDRIVER` set). Every GPU output buffer is filled with NaN before the kernel runs.

use std::cell::RefCell;
use std::rc::Rc;

use maddconv::gpu::direct::DirectConv;
use maddconv::gpu::{Context, ContextOptions};
use maddconv::gpu::{GpuConv, LookupKernel, MaddnessConv};
use maddconv::maddness::{self, mirror};
use maddconv::metrics::nmse;
use maddconv::metrics::relative_l2;
use maddconv::reference::conv_reference;
use maddconv::ConvKind;
use maddconv::{ConvSpec, Tensor};
use maddconv_web::{check_limits, Gpu, Layer, Tables};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

thread_local! {
    static CTX: RefCell<Option<Rc<Context>>> = const { RefCell::new(None) };
}

/// One GPU context for the whole test binary.
async fn ctx() -> Rc<Context> {
    if let Some(c) = CTX.with(|c| c.borrow().clone()) {
        return c;
    }
    let c = Rc::new(
        Context::new(ContextOptions {
            backends: Some(wgpu::Backends::BROWSER_WEBGPU),
            ..Default::default()
        })
        .await
        .expect("no WebGPU adapter in the test browser (is --enable-unsafe-webgpu set?)"),
    );
    CTX.with(|slot| *slot.borrow_mut() = Some(c.clone()));
    c
}

/// A small seeded generator (SplitMix64), values uniform in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn tensor(&mut self, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor::new(shape.to_vec(), (0..n).map(|_| self.next()).collect()).unwrap()
    }
}

/// The message of a JS error value.
fn message(e: wasm_bindgen::JsError) -> String {
    let v: JsValue = e.into();
    js_sys::Error::from(v).message().into()
}

/// Compares element by element (absolute tolerance scaled by the reference's magnitude) and
/// in relative L2 (DESIGN.md §5: < 1e-5); the message names the case, index and values.
fn assert_close(case: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{case}: output length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1.0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * scale,
            "{case}: output[{i}] = {g}, reference {w} (scale {scale})"
        );
    }
    let rel = relative_l2(got, want);
    assert!(rel < 1e-5, "{case}: relative L2 error {rel:e} ≥ 1e-5");
}

struct Case {
    name: &'static str,
    spec: ConvSpec,
    input: Vec<usize>,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut s = ConvSpec::conv2d(3, 6, 3, 3);
    s.padding = vec![1; 4];
    out.push(Case {
        name: "3x3 same padding, like the demo",
        spec: s,
        input: vec![1, 3, 37, 29],
    });
    let mut s = ConvSpec::conv2d(8, 20, 5, 3);
    s.stride = vec![2, 1];
    s.dilation = vec![1, 2];
    s.padding = vec![2, 0, 1, 3];
    s.bias = true;
    out.push(Case {
        name: "5x3 stride 2x1, dilation 1x2, asymmetric padding, bias, batch 2",
        spec: s,
        input: vec![2, 8, 19, 23],
    });
    let mut s = ConvSpec::conv2d(12, 12, 3, 3);
    s.groups = 12;
    s.padding = vec![1; 4];
    out.push(Case {
        name: "depthwise 3x3",
        spec: s,
        input: vec![1, 12, 16, 16],
    });
    let mut s = ConvSpec::conv2d(16, 64, 1, 1);
    s.groups = 2;
    s.bias = true;
    out.push(Case {
        name: "1x1, 2 groups, 32 outputs per group",
        spec: s,
        input: vec![3, 16, 9, 11],
    });
    let mut s = ConvSpec::conv1d(6, 10, 7);
    s.padding = vec![3, 2];
    s.stride = vec![3];
    out.push(Case {
        name: "conv1d k7 stride 3",
        spec: s,
        input: vec![2, 6, 100],
    });
    out
}

#[wasm_bindgen_test]
async fn adapter_has_what_the_kernels_need() {
    let gpu = Gpu::create().await.map_err(message).unwrap();
    let info = gpu.adapter_info().map_err(message).unwrap();
    let limits = js_sys::Reflect::get(&info, &"limits".into()).unwrap();
    let storage = js_sys::Reflect::get(&limits, &"maxComputeWorkgroupStorageSize".into())
        .unwrap()
        .as_f64();
    assert!(
        storage.is_some_and(|v| v >= 16384.0),
        "adapterInfo().limits.maxComputeWorkgroupStorageSize = {storage:?}"
    );
    assert_eq!(
        js_sys::Reflect::get(&info, &"name".into())
            .unwrap()
            .as_string(),
        Some(gpu.adapter_name())
    );
    let ctx = ctx().await;
    check_limits(ctx.limits(), &ctx.adapter_info().name).unwrap();
    // The check names the limit and both values.
    let mut small = ctx.limits().clone();
    small.max_compute_workgroup_storage_size = 8192;
    let e = check_limits(&small, "test adapter").unwrap_err();
    assert!(
        e.contains("maxComputeWorkgroupStorageSize = 8192") && e.contains("16384"),
        "{e}"
    );
}

#[wasm_bindgen_test]
async fn direct_kernel_matches_reference_in_the_browser() {
    let ctx = ctx().await;
    let mut rng = Rng(0x5eed);
    for case in cases() {
        let weight = rng.tensor(&case.spec.weight_shape());
        let bias = case
            .spec
            .bias
            .then(|| rng.tensor(&[case.spec.out_channels]));
        let input = rng.tensor(&case.input);
        let want = conv_reference(&case.spec, &input, &weight, bias.as_ref()).unwrap();
        let conv = DirectConv::new(
            &ctx,
            &maddconv::ConvLayer::new(case.spec.clone(), weight.clone(), bias.clone()).unwrap(),
        )
        .unwrap();
        let x = ctx.upload("input", &input).unwrap();
        let y = ctx.create_tensor("output", want.shape()).unwrap();
        ctx.fill(&y, f32::NAN);
        let mut enc = ctx.encoder("test");
        conv.encode(&ctx, &mut enc, &x, &y, None).unwrap();
        ctx.submit(enc);
        let got = ctx.download(&y).await.unwrap();
        assert_eq!(got.shape(), want.shape(), "{}", case.name);
        assert_close(case.name, got.data(), want.data());
    }
}

#[wasm_bindgen_test]
async fn js_api_direct_and_reference_agree_on_the_demo_filters() {
    let gpu = Gpu::create().await.map_err(message).unwrap();
    let mut rng = Rng(7);
    for name in ["sobel", "gaussian"] {
        let layer = Layer::demo_filter(name).map_err(message).unwrap();
        assert_eq!(layer.out_channels(), 6);
        let shape = [1u32, 3, 33, 40];
        let x: Vec<f32> = (0..3 * 33 * 40).map(|_| rng.next() * 0.5 + 0.5).collect();
        let direct = gpu.direct(&layer).map_err(message).unwrap();
        let got = direct
            .run(x.clone(), shape.to_vec(), 3)
            .await
            .map_err(message)
            .unwrap();
        let want = layer.reference(x, shape.to_vec()).map_err(message).unwrap();
        assert_eq!(got.shape(), vec![1, 6, 33, 40], "{name}");
        assert_close(name, &got.data(), &want.data());
        assert_eq!(got.repetitions(), 3);
        assert!(
            got.kernel_ms().is_finite() && got.kernel_ms() >= 0.0,
            "{name}: kernel time {} ({})",
            got.kernel_ms(),
            got.clock()
        );
        let e = nmse(
            ConvKind::Conv2d,
            &got.to_tensor().unwrap(),
            &want.to_tensor().unwrap(),
        )
        .unwrap();
        assert!(e < 1e-10, "{name}: NMSE of the exact kernel {e:e}");
    }
}

#[wasm_bindgen_test]
async fn user_errors_become_js_errors() {
    let gpu = Gpu::create().await.map_err(message).unwrap();
    let layer = Layer::demo_filter("sobel").map_err(message).unwrap();
    let direct = gpu.direct(&layer).map_err(message).unwrap();
    // Two input channels for a layer that takes three.
    let e = message(
        direct
            .run(vec![0.0; 2 * 8 * 8], vec![1, 2, 8, 8], 0)
            .await
            .err()
            .expect("wrong channel count accepted"),
    );
    assert!(e.contains("channel") || e.contains("shape"), "{e}");
    // Data that does not fill the shape.
    let e = message(
        direct
            .run(vec![0.0; 10], vec![1, 3, 8, 8], 0)
            .await
            .err()
            .expect("short data accepted"),
    );
    assert!(
        e.contains("shape [1, 3, 8, 8] holds 192 elements but 10 values were given"),
        "{e}"
    );
    // A NaN in the input.
    let mut x = vec![0.5; 3 * 8 * 8];
    x[17] = f32::NAN;
    let e = message(
        direct
            .run(x, vec![1, 3, 8, 8], 0)
            .await
            .err()
            .expect("NaN input accepted"),
    );
    assert!(e.contains("index 17"), "{e}");
    // Bad layer options and shapes.
    let opts = js_sys::JSON::parse(r#"{"stride": [1, 1], "padding": "same"}"#).unwrap();
    let e = message(
        Layer::new(vec![0.0; 9], vec![1, 1, 3, 3], None, opts)
            .err()
            .expect("padding \"same\" accepted"),
    );
    assert!(e.contains("layer options"), "{e}");
    let e = message(
        Layer::new(vec![0.0; 8], vec![1, 1, 3, 3], None, JsValue::UNDEFINED)
            .err()
            .expect("8 weights for a 3x3 kernel accepted"),
    );
    assert!(
        e.contains("shape [1, 1, 3, 3] holds 9 elements but 8 values were given"),
        "{e}"
    );
    assert!(Layer::demo_filter("box").is_err());
}

/// A smooth, image-like `1×3×H×W` input in [0, 1] (sums of a few waves plus noise), so that
/// the trained tables have structure to learn.
fn image_like(rng: &mut Rng, h: usize, w: usize) -> (Vec<f32>, Vec<u32>) {
    let mut x = vec![0.0f32; 3 * h * w];
    for c in 0..3 {
        let (fa, fb) = (0.05 + 0.03 * c as f32, 0.11 - 0.02 * c as f32);
        for y in 0..h {
            for xx in 0..w {
                let v = 0.5
                    + 0.25 * ((y as f32 * fa).sin() + (xx as f32 * fb + y as f32 * 0.03).cos())
                    + 0.05 * rng.next();
                x[(c * h + y) * w + xx] = v.clamp(0.0, 1.0);
            }
        }
    }
    (x, vec![1, 3, h as u32, w as u32])
}

#[wasm_bindgen_test]
fn tables_train_in_wasm_and_round_trip_through_the_file() {
    let mut rng = Rng(11);
    let layer = Layer::demo_filter("sobel").map_err(message).unwrap();
    let (train_x, train_shape) = image_like(&mut rng, 48, 40);
    let (test_x, test_shape) = image_like(&mut rng, 37, 45);
    let opts = js_sys::JSON::parse(r#"{"seed": 3, "source": "waves"}"#).unwrap();
    let tables = Tables::train(&layer, train_x, train_shape, 9, opts)
        .map_err(message)
        .unwrap();
    assert_eq!(tables.codebooks(), 9);
    let meta = tables.meta_json();
    assert!(meta.contains("\"waves\""), "{meta}");
    // The table file round trip keeps every field.
    let bytes = tables.to_bytes().map_err(message).unwrap();
    let back = Tables::from_bytes(&bytes).map_err(message).unwrap();
    assert_eq!(back.spec_json(), tables.spec_json());
    let a = tables
        .apply_cpu(test_x.clone(), test_shape.clone())
        .map_err(message)
        .unwrap();
    let b = back
        .apply_cpu(test_x.clone(), test_shape.clone())
        .map_err(message)
        .unwrap();
    assert_eq!(
        a.data(),
        b.data(),
        "the reloaded tables compute something else"
    );
    // The approximation is far better than predicting each channel's mean, on held-out data.
    let exact = layer
        .reference(test_x, test_shape)
        .map_err(message)
        .unwrap();
    let e = nmse(
        ConvKind::Conv2d,
        &a.to_tensor().unwrap(),
        &exact.to_tensor().unwrap(),
    )
    .unwrap();
    assert!(e.is_finite() && e < 0.5, "held-out NMSE {e}");
    // Corrupt files and impossible settings are errors, not panics.
    let e = message(
        Tables::from_bytes(&bytes[..bytes.len() / 2])
            .err()
            .expect("truncated file"),
    );
    assert!(e.contains("table file"), "{e}");
    assert!(Tables::from_bytes(b"not a table file").is_err());
    let (x, s) = image_like(&mut rng, 8, 8);
    let e = message(
        Tables::train(&layer, x, s, 28, JsValue::UNDEFINED)
            .err()
            .expect("28 codebooks for D = 27 accepted"),
    );
    assert!(e.contains("28") || e.contains("codebooks"), "{e}");
}

/// Trains tables with the library (on the CPU, in wasm) for `spec` on random weights and
/// `train` inputs.
fn trained(rng: &mut Rng, spec: &ConvSpec, train: &[usize], codebooks: usize) -> maddness::Tables {
    let weight = rng.tensor(&spec.weight_shape());
    let bias = spec.bias.then(|| rng.tensor(&[spec.out_channels]));
    let x = rng.tensor(train);
    let config = maddness::TrainConfig {
        codebooks: Some(codebooks),
        ..Default::default()
    };
    maddness::train(
        &maddconv::ConvLayer::new(spec.clone(), weight, bias).unwrap(),
        &[x],
        &config,
    )
    .unwrap()
}

#[wasm_bindgen_test]
async fn maddness_kernels_match_the_cpu_mirror_in_the_browser() {
    let ctx = ctx().await;
    let mut rng = Rng(0xadd);
    let mut cases: Vec<(&str, ConvSpec, Vec<usize>, usize)> = Vec::new();
    let mut s = ConvSpec::conv2d(3, 6, 3, 3);
    s.padding = vec![1; 4];
    cases.push((
        "3x3 same padding, 9 codebooks (the demo's shape)",
        s,
        vec![1, 3, 29, 31],
        9,
    ));
    let mut s = ConvSpec::conv2d(8, 40, 3, 5);
    s.stride = vec![2, 1];
    s.dilation = vec![1, 2];
    s.padding = vec![1, 4, 2, 0];
    s.groups = 2;
    s.bias = true;
    cases.push((
        "3x5, 2 groups of 20 outputs, stride, dilation, bias, 11 codebooks",
        s,
        vec![2, 8, 17, 21],
        11,
    ));
    let mut s = ConvSpec::conv1d(4, 24, 5);
    s.padding = vec![2, 2];
    cases.push((
        "conv1d k5, 20 codebooks (3 code words)",
        s,
        vec![3, 4, 60],
        20,
    ));
    for (name, spec, shape, codebooks) in cases {
        let tables = trained(&mut rng, &spec, &shape, codebooks);
        let conv = MaddnessConv::new(&ctx, &tables).unwrap();
        let mut test_shape = shape.clone();
        *test_shape.last_mut().unwrap() += 3; // a different input than the training one
        let input = rng.tensor(&test_shape);

        let want_codes = mirror::encode(&tables, &input).unwrap();
        let got_codes = conv.codes(&ctx, &input).await.unwrap();
        assert_eq!(got_codes.len(), want_codes.len(), "{name}: code words");
        if let Some(i) = (0..want_codes.len()).find(|&i| got_codes[i] != want_codes[i]) {
            panic!(
                "{name}: code word {i} is {:#010x} on the GPU, {:#010x} in the mirror",
                got_codes[i], want_codes[i]
            );
        }

        let g = spec.geometry(input.shape()).unwrap();
        let want_sums =
            mirror::accumulate_sums(&tables, &want_codes, g.batch, g.positions()).unwrap();
        let got_sums = conv.sums(&ctx, input.shape(), &want_codes).await.unwrap();
        if let Some(i) = (0..want_sums.len()).find(|&i| got_sums.get(i) != Some(&want_sums[i])) {
            panic!(
                "{name}: sum {i} is {:?} on the GPU, {} in the mirror",
                got_sums.get(i),
                want_sums[i]
            );
        }

        let want = mirror::apply(&tables, &input).unwrap();
        let x = ctx.upload("input", &input).unwrap();
        // The default kernels, then each look-up kernel the device runs (shuffle needs
        // subgroups, which wgpu 30 does not map on the web: refused, saying so).
        let mut variants = vec![conv];
        for &k in LookupKernel::ALL {
            match MaddnessConv::new(&ctx, &tables)
                .unwrap()
                .with_kernels(&ctx, k)
            {
                Ok(layer) => variants.push(layer),
                Err(maddconv::Error::Unsupported(why)) => {
                    assert!(why.contains("subgroup"), "{name}: {k:?} refused: {why}")
                }
                Err(e) => panic!("{name}: {k:?}: {e}"),
            }
        }
        let scale = want
            .data()
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()))
            .max(1e-30);
        for conv in &variants {
            let kernels = conv.kernels().name();
            let y = ctx.create_tensor("output", want.shape()).unwrap();
            ctx.fill(&y, f32::NAN);
            let mut enc = ctx.encoder("test");
            conv.encode(&ctx, &mut enc, &x, &y, None).unwrap();
            ctx.submit(enc);
            let got = ctx.download(&y).await.unwrap();
            for (i, (&a, &b)) in got.data().iter().zip(want.data()).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 * scale,
                    "{name} ({kernels}): output[{i}] = {a} on the GPU, {b} in the mirror \
                     (max |y| {scale})"
                );
            }
            let rel = relative_l2(got.data(), want.data());
            assert!(
                rel < 1e-6,
                "{name} ({kernels}): relative L2 {rel:e} between GPU and mirror"
            );
        }
    }
}

#[wasm_bindgen_test]
async fn js_api_maddness_on_the_demo_filter() {
    let gpu = Gpu::create().await.map_err(message).unwrap();
    let mut rng = Rng(5);
    let layer = Layer::demo_filter("gaussian").map_err(message).unwrap();
    let (train_x, train_shape) = image_like(&mut rng, 40, 44);
    let (x, shape) = image_like(&mut rng, 35, 30);
    let tables = Tables::train(&layer, train_x, train_shape, 12, JsValue::UNDEFINED)
        .map_err(message)
        .unwrap();
    // Through the table file, as a page loading tables would.
    let tables = Tables::from_bytes(&tables.to_bytes().map_err(message).unwrap())
        .map_err(message)
        .unwrap();
    let madd = gpu.maddness(&tables).map_err(message).unwrap();
    let got = madd
        .run(x.clone(), shape.clone(), 2)
        .await
        .map_err(message)
        .unwrap();
    let want = tables
        .apply_cpu(x.clone(), shape.clone())
        .map_err(message)
        .unwrap();
    assert_eq!(got.shape(), want.shape());
    assert!(
        got.kernel_ms().is_finite(),
        "kernel time {} ({})",
        got.kernel_ms(),
        got.clock()
    );
    let rel = relative_l2(&got.data(), &want.data());
    assert!(
        rel < 1e-6,
        "GPU vs mirror through the JS API: relative L2 {rel:e}"
    );
    let exact = layer.reference(x, shape).map_err(message).unwrap();
    let e = nmse(
        ConvKind::Conv2d,
        &got.to_tensor().unwrap(),
        &exact.to_tensor().unwrap(),
    )
    .unwrap();
    assert!(e.is_finite() && e < 0.5, "held-out NMSE {e}");
}

/// A real layer from the repository's fixtures, as the layers page loads it.
macro_rules! fixture {
    ($file:literal) => {
        include_bytes!(concat!(
            "../../tests/fixtures/layers/mtcnn_pnet_conv3_trainable/",
            $file
        ))
    };
}

#[wasm_bindgen_test]
async fn real_layer_from_its_folder_files_bound_and_timed_one_run_at_a_time() {
    let gpu = Gpu::create().await.map_err(message).unwrap();
    let json = std::str::from_utf8(fixture!("layer.json")).unwrap();
    let layer = fixture_layer();
    assert_eq!((layer.in_channels(), layer.out_channels()), (16, 32));
    let x = maddconv_web::NpyArray::new(fixture!("test.npy"), "test.npy")
        .map_err(message)
        .unwrap();
    let stored = maddconv_web::NpyArray::new(fixture!("test_expected.npy"), "test_expected.npy")
        .map_err(message)
        .unwrap();
    let direct = gpu.direct(&layer).map_err(message).unwrap();
    let bound = direct.bind(x.data(), x.shape()).map_err(message).unwrap();
    let e = message(bound.output().await.err().expect("output before any run"));
    assert!(e.contains("no run yet"), "{e}");
    for _ in 0..3 {
        let t = bound.time_once().await.map_err(message).unwrap();
        let (wall, kernel, clock) = (t.wall_ms(), t.kernel_ms(), t.clock());
        assert!(wall.is_finite() && wall >= 0.0, "wall {wall}");
        assert!(
            (clock == "timestamp" && kernel.is_finite() && kernel <= wall + 1.0)
                || (clock == "wall" && kernel.is_nan()),
            "clock {clock}, kernel {kernel}, wall {wall}"
        );
    }
    // The bound output (NaN-poisoned when bound) against the stored output of another engine
    // and the f64 CPU reference.
    let got = bound.output().await.map_err(message).unwrap();
    assert_eq!(got.shape(), stored.shape());
    assert_close("fixture vs stored", &got.data(), &stored.data());
    let want = layer
        .reference(x.data(), x.shape())
        .map_err(message)
        .unwrap();
    assert_close("fixture vs reference", &got.data(), &want.data());

    // The MADDNESS layer bound the same way gives what its plain run gives.
    let train = maddconv_web::NpyArray::new(fixture!("train.npy"), "train.npy").unwrap();
    let tables =
        maddconv_web::Tables::train(&layer, train.data(), train.shape(), 16, JsValue::UNDEFINED)
            .map_err(message)
            .unwrap();
    let madd = gpu.maddness(&tables).map_err(message).unwrap();
    let plain = madd
        .run(x.data(), x.shape(), 0)
        .await
        .map_err(message)
        .unwrap();
    let mb = madd.bind(x.data(), x.shape()).map_err(message).unwrap();
    mb.time_once().await.map_err(message).unwrap();
    assert_eq!(
        mb.output().await.map_err(message).unwrap().data(),
        plain.data()
    );

    // Errors: a missing bias file, a bias the layer does not have, a corrupt weight file,
    // and an input of the wrong shape.
    let e = message(
        Layer::from_folder(json, fixture!("weight.npy"), None)
            .err()
            .expect("missing bias accepted"),
    );
    assert!(e.contains("no bias.npy was given"), "{e}");
    let no_bias = json.replace("\"bias\": true", "\"bias\": false");
    let e = message(
        Layer::from_folder(&no_bias, fixture!("weight.npy"), Some(vec![0; 8]))
            .err()
            .expect("unexpected bias accepted"),
    );
    assert!(e.contains("has no bias"), "{e}");
    let e = message(
        Layer::from_folder(
            json,
            &fixture!("weight.npy")[..100],
            Some(fixture!("bias.npy").to_vec()),
        )
        .err()
        .expect("truncated weight accepted"),
    );
    assert!(e.contains("weight.npy"), "{e}");
    let e = message(
        direct
            .bind(vec![0.0; 8 * 24 * 24], vec![1, 8, 24, 24])
            .err()
            .expect("8 channels for a 16-channel layer accepted"),
    );
    assert!(e.contains("channel") || e.contains("shape"), "{e}");
}

/// The fixture layer (mtcnn_pnet_conv3_trainable) from its folder's files.
fn fixture_layer() -> Layer {
    Layer::from_folder(
        std::str::from_utf8(fixture!("layer.json")).unwrap(),
        fixture!("weight.npy"),
        Some(fixture!("bias.npy").to_vec()),
    )
    .map_err(message)
    .unwrap()
}

/// What the whole-model page needs to share the GPU with another engine: the `GPUDevice`, the
/// bound buffers (usage, size), new input values written into a bound run, and a run submitted
/// without waiting whose output is then read back.
#[wasm_bindgen_test]
async fn bound_run_shares_its_device_and_buffers_and_takes_new_inputs() {
    use js_sys::Reflect;
    let gpu = Gpu::create().await.map_err(message).unwrap();
    let device = gpu.device().map_err(message).unwrap();
    let queue = Reflect::get(&device, &"queue".into()).unwrap();
    assert!(queue.is_object(), "GPUDevice.queue: {queue:?}");
    let layer = fixture_layer();
    let x = maddconv_web::NpyArray::new(fixture!("test.npy"), "test.npy").unwrap();
    let n = x.data().len();
    let bound = gpu
        .direct(&layer)
        .map_err(message)
        .unwrap()
        .bind(vec![0.0; n], x.shape())
        .map_err(message)
        .unwrap();
    assert_eq!(bound.input_shape(), x.shape());
    let out_len: u32 = bound.output_shape().iter().product();
    for (buffer, len) in [
        (bound.input_buffer(), n as f64),
        (bound.output_buffer(), out_len as f64),
    ] {
        let b = buffer.map_err(message).unwrap();
        let size = Reflect::get(&b, &"size".into()).unwrap().as_f64().unwrap();
        let usage = Reflect::get(&b, &"usage".into()).unwrap().as_f64().unwrap() as u32;
        assert!(size >= 4.0 * len, "buffer of {size} bytes for {len} floats");
        // STORAGE | COPY_DST | COPY_SRC (GPUBufferUsage 0x80, 0x08, 0x04).
        assert_eq!(usage & 0x8c, 0x8c, "usage {usage:#x}");
    }
    // New input values, a run without waiting, then the output of those values.
    bound.write(&x.data()).map_err(message).unwrap();
    bound.submit().map_err(message).unwrap();
    let got = bound.output().await.map_err(message).unwrap();
    let want = layer
        .reference(x.data(), x.shape())
        .map_err(message)
        .unwrap();
    assert_close("written input, submitted run", &got.data(), &want.data());
    // Bad values are refused with the count or the value named.
    let e = message(
        bound
            .write(&x.data()[1..])
            .expect_err("short input accepted"),
    );
    assert!(e.contains(&format!("{} values given", n - 1)), "{e}");
    let mut bad = x.data();
    bad[7] = f32::NAN;
    let e = message(bound.write(&bad).expect_err("NaN accepted"));
    assert!(e.contains("value 7 is NaN"), "{e}");
}

/// The box decoding and matching the whole-model page uses for the text detector: a synthetic
/// YOLOX output of a 64×64 input with one box above the score threshold and a weaker overlapping
/// one (suppressed), matched against itself and against a moved box.
#[wasm_bindgen_test]
fn yolox_boxes_decode_and_match_in_the_browser() {
    // 8×8 + 4×4 + 2×2 = 84 anchor rows of 6 columns.
    let mut y = vec![0f32; 84 * 6];
    let r = 2 * 8 + 3; // stride 8, grid (3, 2): centre (28, 20), size 8·e
    y[r * 6..r * 6 + 6].copy_from_slice(&[0.5, 0.5, 1.0, 1.0, 0.9, 0.9]);
    let r2 = 2 * 8 + 4; // the same box one pixel to the left, lower score
    y[r2 * 6..r2 * 6 + 6].copy_from_slice(&[-0.375, 0.5, 1.0, 1.0, 0.8, 0.8]);
    let b = maddconv_web::decode_yolox(y.clone(), vec![1, 84, 6], 64, 64, 0.1, 0.45)
        .map_err(message)
        .unwrap();
    assert_eq!(b.len(), 5, "one box after NMS: {b:?}");
    let half = 4.0 * 1f32.exp();
    let want = [28.0 - half, 20.0 - half, 28.0 + half, 20.0 + half, 0.81];
    for (g, w) in b.iter().zip(want) {
        assert!((g - w).abs() < 1e-4, "{b:?} vs {want:?}");
    }
    let same = maddconv_web::match_boxes(&b, &b, 0.5)
        .map_err(message)
        .unwrap();
    assert_eq!(same, [1, 1, 1]);
    let mut moved = b.clone();
    moved[0] += 20.0;
    moved[2] += 20.0;
    assert_eq!(
        maddconv_web::match_boxes(&b, &moved, 0.5).unwrap(),
        [0, 1, 1]
    );
    let e = message(maddconv_web::match_boxes(&b[..4], &b, 0.5).unwrap_err());
    assert!(e.contains("4 values"), "{e}");
    let e = message(maddconv_web::decode_yolox(y, vec![1, 84, 6], 64, 96, 0.1, 0.45).unwrap_err());
    assert!(e.contains("84"), "{e}");
}
