//! Whole ONNX models on tract: the exact run against onnxruntime's stored outputs, the Conv
//! list, the capture/replace hook, calibration and the bundle. The silero VAD fixture is in the
//! repository; the shared data (`../shared/data/models`) adds ddddocr_det.
#![cfg(feature = "onnx")]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use maddconv::maddness::{Activation, TrainConfig};
use maddconv::model::{
    self, Backend, Bundle, CalibrateConfig, Metric, Model, Replace, Replacements, Target, Task,
};
use maddconv::{ConvKind, Error, Tensor};

fn silero_dir() -> PathBuf {
    common::fixtures().join("models/silero_vad")
}

fn shared_models() -> Option<PathBuf> {
    common::shared_data().map(|d| d.join("models"))
}

fn npy(dir: &Path, name: &str) -> Tensor {
    Tensor::read_npy(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn silero(dir: &Path, set: &str) -> (Model, Vec<Vec<Tensor>>) {
    let inputs = vec![
        ("input".to_string(), npy(dir, &format!("{set}_input.npy"))),
        ("h".to_string(), npy(dir, &format!("{set}_h.npy"))),
        ("c".to_string(), npy(dir, &format!("{set}_c.npy"))),
    ];
    model::load_for(dir.join("model.onnx"), &inputs).expect("load silero")
}

#[test]
fn silero_exact_run_matches_onnxruntime() {
    let mut dirs = vec![silero_dir()];
    if let Some(d) = shared_models() {
        dirs.push(d.join("silero_vad"));
    }
    for dir in dirs {
        let (m, runs) = silero(&dir, "test");
        assert_eq!(runs.len(), 1);
        assert_eq!(m.input_names(), ["input", "h", "c"]);
        assert_eq!(m.output_names()[0], "speech_probs");
        assert_eq!(
            m.sha256(),
            "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85"
        );
        let out = m.run(&runs[0]).unwrap();
        let expected = npy(&dir, "test_expected.npy");
        assert_eq!(out[0].shape(), expected.shape());
        common::assert_close("silero speech_probs", out[0].data(), expected.data(), 1e-4);
        let rel = maddconv::metrics::relative_l2(out[0].data(), expected.data());
        eprintln!(
            "silero exact run vs onnxruntime ({}): relative L2 {rel:.3e}",
            dir.display()
        );
    }
}

#[test]
fn silero_conv_list_matches_convs_json() {
    let (m, _) = silero(&silero_dir(), "test");
    let names: Vec<&str> = m.convs().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "/stft/Conv",
            "/encoder.0/Conv",
            "/encoder.1/Conv",
            "/encoder.2/Conv",
            "/encoder.3/Conv",
            "/output/Conv"
        ]
    );
    for c in m.convs() {
        assert!(c.unsupported.is_none(), "{}: {:?}", c.name, c.unsupported);
    }
    let stft = m.conv("/stft/Conv").unwrap();
    let s = stft.layer.as_ref().unwrap().spec();
    assert_eq!(s.kind, ConvKind::Conv1d);
    assert_eq!((s.in_channels, s.out_channels), (1, 258));
    assert_eq!((s.kernel.clone(), s.stride.clone()), (vec![256], vec![128]));
    assert!(!s.bias);
    assert_eq!(stft.input_shape, [339, 1, 832]);
    assert_eq!(stft.output_shape, [339, 258, 5]);
    let e1 = m.conv("/encoder.1/Conv").unwrap();
    let s = e1.layer.as_ref().unwrap().spec();
    assert_eq!((s.in_channels, s.out_channels, s.stride[0]), (128, 64, 2));
    assert_eq!(s.padding, [1, 1]);
    assert!(s.bias);
    assert_eq!(e1.next_op, "Relu");
    assert_eq!(m.conv("/output/Conv").unwrap().next_op, "Sigmoid");
    // What the learner fits for with graph activations: the STFT conv is read by two Slices.
    let acts: Vec<String> = m.convs().iter().map(|c| c.activation.to_string()).collect();
    assert_eq!(acts, ["none", "relu", "relu", "relu", "relu", "sigmoid"]);
    assert_eq!(m.conv("/output/Conv").unwrap().input_shape, [1, 128, 339]);
}

#[test]
fn replacing_every_conv_by_the_reference_reproduces_the_exact_run() {
    let (m, runs) = silero(&silero_dir(), "test");
    let exact = m.run(&runs[0]).unwrap();
    let replace: BTreeMap<String, Replace<'_>> = m
        .convs()
        .iter()
        .map(|c| (c.name.clone(), Replace::Reference))
        .collect();
    let run = m.run_with(&runs[0], &replace, &[], true).unwrap();
    common::assert_close(
        "all convs by the reference",
        run.outputs[0].data(),
        exact[0].data(),
        1e-5,
    );
    // Each captured input fed to the extracted layer gives tract's conv output.
    for (name, (tract_out, ours)) in &run.replaced {
        common::assert_close(name, ours.data(), tract_out.data(), 1e-5);
        assert_eq!(
            run.conv_inputs[name].shape(),
            m.conv(name).unwrap().input_shape.as_slice()
        );
    }
    assert_eq!(run.replaced.len(), 6);
}

#[test]
fn calibrate_bundle_eval_round_trip() {
    let dir = silero_dir();
    let (calib_model, _) = silero(&dir, "test");
    let calib = vec![
        npy(&dir, "calib_input_head.npy"),
        npy(&dir, "test_h.npy"),
        npy(&dir, "test_c.npy"),
    ];
    let m_calib = Model::load(
        dir.join("model.onnx"),
        &[
            ("input".into(), calib[0].shape().to_vec()),
            ("h".into(), vec![1, 1, 128]),
            ("c".into(), vec![1, 1, 128]),
        ],
    )
    .unwrap();
    let layers = vec!["/encoder.2/Conv".to_string(), "/encoder.1/Conv".to_string()];
    let config = CalibrateConfig {
        train: TrainConfig {
            codebooks: Some(16),
            learner: maddconv::maddness::Learner::Maddness,
            // The fixture keeps 96 calibration frames; a stride-2 layer sees 96 windows.
            min_windows: 64,
            ..TrainConfig::default()
        },
        independent: false,
        graph_activations: false,
        sensitivity: None,
        exact_targets: false,
    };
    let mut seen = Vec::new();
    let trained = model::calibrate(
        &m_calib,
        &[calib],
        &layers,
        &config,
        Backend::Cpu,
        &mut |n| seen.push(n.to_string()),
    )
    .unwrap();
    assert_eq!(seen, ["/encoder.1/Conv", "/encoder.2/Conv"], "graph order");
    let bundle = Bundle {
        model_sha256: m_calib.sha256().into(),
        model_file: "model.onnx".into(),
        layers: trained,
        settings: Default::default(),
    };
    let bytes = bundle.to_bytes().unwrap();
    let back = Bundle::from_bytes(&bytes, "mem").unwrap();
    assert_eq!(back, bundle);
    back.check_model(calib_model.sha256()).unwrap();
    let e = back.check_model("00ff").unwrap_err();
    assert!(e.to_string().contains("another model"), "{e}");

    let (m, runs) = silero(&dir, "test");
    let reps = Replacements::with(Backend::Cpu, &back.layers).unwrap();
    let cmp = model::compare(&m, &runs, &reps, Some(Task::first(Metric::Threshold(0.5)))).unwrap();
    let (agree, n) = cmp.outputs[0].agreement.unwrap();
    eprintln!("silero, encoder.1+2 at C = 16: {cmp:?}");
    assert_eq!(n, 339);
    assert!(agree > 0.8, "frame agreement {agree}");
    assert_eq!(cmp.layers.len(), 2);
    for l in &cmp.layers {
        assert!(
            l.one_minus_nmse > 0.5,
            "{}: 1 - NMSE {}",
            l.name,
            l.one_minus_nmse
        );
    }
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = silero_dir();
    let path = dir.join("model.onnx");
    let ok = |n: &str, s: Vec<usize>| (n.to_string(), s);
    let e = Model::load(
        &path,
        &[ok("input", vec![5, 576]), ok("h", vec![1, 1, 128])],
    )
    .unwrap_err();
    assert!(e.to_string().contains("\"c\""), "{e}");
    let e = Model::load(
        &path,
        &[
            ok("input", vec![5, 576]),
            ok("h", vec![1, 1, 128]),
            ok("c", vec![1, 1, 128]),
            ok("x", vec![1]),
        ],
    )
    .unwrap_err();
    assert!(e.to_string().contains("no input \"x\""), "{e}");
    let e = Model::load(
        &path,
        &[
            ok("input", vec![5, 577]),
            ok("h", vec![1, 1, 128]),
            ok("c", vec![1, 1, 128]),
        ],
    )
    .unwrap_err();
    assert!(e.to_string().contains("[5, 577]"), "{e}");
    let e = Model::load(dir.join("test_h.npy"), &[]).unwrap_err();
    assert!(matches!(e, Error::Model(_)), "{e}");
    assert!(e.to_string().contains("ONNX"), "{e}");
    let m = Model::load(
        &path,
        &[
            ok("input", vec![5, 576]),
            ok("h", vec![1, 1, 128]),
            ok("c", vec![1, 1, 128]),
        ],
    )
    .unwrap();
    let e = m.conv("/nope/Conv").unwrap_err();
    assert!(e.to_string().contains("/encoder.0/Conv"), "{e}");
    let h = Tensor::zeros(vec![1, 1, 128]).unwrap();
    // Another frame count is another plan; another frame length is refused.
    let x = Tensor::zeros(vec![4, 576]).unwrap();
    assert_eq!(m.run(&[x, h.clone(), h.clone()]).unwrap()[0].shape(), [4]);
    let x = Tensor::zeros(vec![4, 577]).unwrap();
    let e = m.run(&[x, h.clone(), h.clone()]).unwrap_err();
    assert!(e.to_string().contains("[4, 577]"), "{e}");
    let mut x = Tensor::zeros(vec![4, 576]).unwrap();
    x.data_mut()[5] = f32::NAN;
    let e = m.run(&[x, h.clone(), h]).unwrap_err();
    assert!(e.to_string().contains("\"input\""), "{e}");
}

#[test]
fn ddddocr_exact_run_matches_onnxruntime() {
    let Some(d) = shared_models() else { return };
    let dir = d.join("ddddocr_det");
    let x = npy(&dir, "test.npy");
    let expected = npy(&dir, "test_expected.npy");
    let (m, runs) = model::load_for(dir.join("model.onnx"), &[("images".into(), x)]).unwrap();
    assert_eq!(runs.len(), 2, "batch fixed to 1: one run per row");
    assert_eq!(m.convs().len(), 83);
    let c0 = m.conv("Conv_41").unwrap();
    assert_eq!(c0.input_shape, [1, 12, 208, 208]);
    assert_eq!(c0.layer.as_ref().unwrap().spec().padding, [1, 1, 1, 1]);
    assert_eq!(c0.next_op, "SiLU (Sigmoid, Mul)");
    for (i, r) in runs.iter().enumerate() {
        let out = m.run(r).unwrap();
        let want = expected.slice_batch(i, i + 1).unwrap();
        assert_eq!(out[0].shape(), want.shape());
        common::assert_close(
            &format!("ddddocr row {i}"),
            out[0].data(),
            want.data(),
            1e-4,
        );
        let rel = maddconv::metrics::relative_l2(out[0].data(), want.data());
        eprintln!("ddddocr row {i} exact run vs onnxruntime: relative L2 {rel:.3e}");
    }
}

fn silero_calib_head(dir: &Path) -> Vec<Tensor> {
    vec![
        npy(dir, "calib_input_head.npy"),
        npy(dir, "test_h.npy"),
        npy(dir, "test_c.npy"),
    ]
}

fn small_config() -> CalibrateConfig {
    CalibrateConfig {
        train: TrainConfig {
            codebooks: Some(16),
            learner: maddconv::maddness::Learner::Maddness,
            min_windows: 64,
            ..TrainConfig::default()
        },
        independent: false,
        graph_activations: false,
        sensitivity: None,
        exact_targets: false,
    }
}

/// silero's encoder.1 and encoder.2 calibrated on the head of the calibration frames.
fn encoder_1_and_2(
    dir: &Path,
    config: &CalibrateConfig,
) -> Vec<(String, maddconv::maddness::Tables)> {
    let (m, _) = silero(dir, "test");
    let layers = ["/encoder.1/Conv".to_string(), "/encoder.2/Conv".to_string()];
    model::calibrate(
        &m,
        &[silero_calib_head(dir)],
        &layers,
        config,
        Backend::Cpu,
        &mut |_| {},
    )
    .unwrap()
}

#[test]
fn sequential_and_independent_calibration_differ_after_the_first_layer() {
    let dir = silero_dir();
    let seq = encoder_1_and_2(&dir, &small_config());
    let ind = encoder_1_and_2(
        &dir,
        &CalibrateConfig {
            independent: true,
            ..small_config()
        },
    );
    // The first layer sees the exact inputs either way; the second sees encoder.1's error
    // only when sequential.
    assert_eq!(
        seq[0].1.luts, ind[0].1.luts,
        "first layer: same inputs, same tables"
    );
    assert_ne!(
        seq[1].1.luts, ind[1].1.luts,
        "second layer: sequential tables must come from other inputs"
    );
}

/// With `exact_targets`, a sequentially calibrated layer fits the exact model's output of that
/// layer, not its own output on the approximate inputs: behind encoder.1's tables, encoder.2's
/// tables come closer to what the exact model computes there (on the calibration frames, the
/// objective itself), while the first layer, which sees exact inputs, is trained as before.
#[test]
fn exact_targets_fit_the_exact_models_layer_output() {
    let dir = silero_dir();
    let plain = encoder_1_and_2(&dir, &small_config());
    let fitted = encoder_1_and_2(
        &dir,
        &CalibrateConfig {
            exact_targets: true,
            ..small_config()
        },
    );
    let (m, _) = silero(&dir, "test");
    let calib = [silero_calib_head(&dir)];
    let second = "/encoder.2/Conv".to_string();
    assert_eq!(
        plain[0].1.luts, fitted[0].1.luts,
        "first layer: exact inputs, same tables"
    );
    assert!(
        fitted[1].1.meta.learner.contains("targets=given"),
        "{}",
        fitted[1].1.meta.learner
    );
    assert!(
        !plain[1].1.meta.learner.contains("targets="),
        "{}",
        plain[1].1.meta.learner
    );
    // encoder.2's inputs behind encoder.1's tables, and the exact model's output there.
    let behind = Replacements::with(Backend::Cpu, &plain[..1]).unwrap();
    let capture = |map: &BTreeMap<String, Replace<'_>>| {
        m.run_with(&calib[0], map, std::slice::from_ref(&second), false)
            .unwrap()
            .conv_inputs
            .remove(&second)
            .unwrap()
    };
    let x = capture(&behind.map());
    let x_exact = capture(&BTreeMap::new());
    let node = m.conv(&second).unwrap().layer.as_ref().unwrap();
    let y_exact =
        maddconv::reference::conv_reference(node.spec(), &x_exact, node.weight(), node.bias())
            .unwrap();
    let err = |t: &maddconv::maddness::Tables| {
        let y = maddconv::maddness::mirror::apply(t, &x).unwrap();
        maddconv::metrics::nmse(ConvKind::Conv1d, &y, &y_exact).unwrap()
    };
    let (e_plain, e_fitted) = (err(&plain[1].1), err(&fitted[1].1));
    assert!(
        e_fitted < 0.9 * e_plain,
        "NMSE against the exact model's encoder.2 output: {e_fitted:.4} with exact targets, \
         {e_plain:.4} without"
    );
}

#[test]
fn gpu_replacement_matches_the_mirror_in_the_whole_model() {
    let Some(ctx) = common::gpu() else { return };
    let dir = silero_dir();
    let (m, runs) = silero(&dir, "test");
    let calib = vec![silero_calib_head(&dir)];
    let layers = vec!["/encoder.1/Conv".to_string(), "/encoder.3/Conv".to_string()];
    let trained = model::calibrate(
        &m,
        &calib,
        &layers,
        &small_config(),
        Backend::Gpu(ctx),
        &mut |_| {},
    )
    .unwrap();
    let cpu = Replacements::with(Backend::Cpu, &trained).unwrap();
    let gpu = Replacements::with(Backend::Gpu(ctx), &trained).unwrap();
    let a = m.run_with(&runs[0], &cpu.map(), &[], true).unwrap();
    let b = m.run_with(&runs[0], &gpu.map(), &[], true).unwrap();
    for name in &layers {
        let (exact_a, ya) = &a.replaced[name];
        let (_, yb) = &b.replaced[name];
        common::assert_close(&format!("{name} GPU vs mirror"), yb.data(), ya.data(), 1e-5);
        assert!(
            maddconv::metrics::relative_l2(ya.data(), exact_a.data()) > 1e-3,
            "{name}: the tables should not be exact"
        );
        let t = &b.timing[name];
        assert_eq!(t.calls, 1);
        assert!(t.gpu.compute_ms > 0.0 && t.cpu_ms == 0.0, "{t:?}");
        assert!(a.timing[name].cpu_ms > 0.0 && a.timing[name].gpu.compute_ms == 0.0);
    }
    common::assert_close(
        "speech_probs, GPU vs mirror layers",
        b.outputs[0].data(),
        a.outputs[0].data(),
        1e-4,
    );
    // Without the in-place measurement tract's conv is skipped and nothing is paired.
    let c = m.run_with(&runs[0], &gpu.map(), &[], false).unwrap();
    assert!(c.replaced.is_empty());
    assert_eq!(c.timing[&layers[0]].exact_ms, 0.0);
    common::assert_close(
        "in place or not",
        c.outputs[0].data(),
        b.outputs[0].data(),
        1e-6,
    );
}

#[test]
fn holdout_cuts_runs_or_the_free_first_dimension() {
    let dir = silero_dir();
    let (m, _) = silero(&dir, "test");
    let calib = silero_calib_head(&dir);
    let model::Split { train, held } =
        model::holdout(&m, std::slice::from_ref(&calib), 0.25).unwrap();
    assert_eq!(train[0][0].shape(), [72, 576]);
    assert_eq!(held[0][0].shape(), [24, 576]);
    assert_eq!(
        held[0][1].shape(),
        [1, 1, 128],
        "the LSTM state goes to both parts"
    );
    assert_eq!(held[0][0].data(), &calib[0].data()[72 * 576..]);
    // A run of other shapes than the loaded ones gets its own plan.
    let out = m.run(&held[0]).unwrap();
    assert_eq!(out[0].shape(), [24]);
    let runs = vec![calib.clone(), calib.clone(), calib.clone(), calib];
    let model::Split { train, held } = model::holdout(&m, &runs, 0.2).unwrap();
    assert_eq!((train.len(), held.len()), (3, 1));
    for bad in [0.0, 1.0, -0.5, f64::NAN] {
        let e = model::holdout(&m, &runs, bad).unwrap_err();
        assert!(e.to_string().contains("between 0 and 1"), "{e}");
    }
}

#[test]
fn targets_and_metrics_parse_or_say_what_is_expected() {
    let t: Target = "threshold:0.5:0.995".parse().unwrap();
    assert_eq!(
        t,
        Target::Agreement(Task::first(Metric::Threshold(0.5)), 0.995)
    );
    assert_eq!(
        "argmax:0.99".parse::<Target>().unwrap(),
        Target::Agreement(Task::first(Metric::Argmax(-1)), 0.99)
    );
    assert_eq!(
        "argmax:1:0.9".parse::<Target>().unwrap(),
        Target::Agreement(Task::first(Metric::Argmax(1)), 0.9)
    );
    assert_eq!("nmse:0.01".parse::<Target>().unwrap(), Target::Nmse(0.01));
    let Target::Agreement(task, v) = "yolox:0.2:0.5:0.98".parse::<Target>().unwrap() else {
        panic!("yolox target")
    };
    assert_eq!(v, 0.98);
    let Metric::Yolox(d) = task.metric else {
        panic!("yolox metric")
    };
    assert_eq!((d.score, d.nms_iou), (0.2, 0.5));
    for bad in [
        "threshold:0.5",
        "nmse:x",
        "yolox:1.5",
        "argmax",
        "f1:0.9",
        "nmse:-1",
    ] {
        let e = bad.parse::<Target>().unwrap_err();
        assert!(e.to_string().contains("expected"), "{bad}: {e}");
    }
    // A threshold target also needs the positives: predicting none on a sparse map fails.
    let sparse = model::Comparison {
        outputs: vec![model::calibrate::OutputError {
            agreement: Some((0.99, 1000)),
            positives_iou: Some(0.0),
            ..Default::default()
        }],
        ..Default::default()
    };
    let t: Target = "threshold:0.3:0.9".parse().unwrap();
    assert_eq!(t.measured(&sparse), 0.0);
    assert!(!t.met(&sparse));
    assert!("threshold".parse::<Metric>().is_err());
    assert_eq!("argmax".parse::<Metric>().unwrap(), Metric::Argmax(-1));
}

#[test]
fn auto_keeps_a_layer_only_while_the_target_holds() {
    let dir = silero_dir();
    let (m, _) = silero(&dir, "test");
    let split = model::holdout(&m, &[silero_calib_head(&dir)], 0.25).unwrap();
    let candidates = vec!["/encoder.2/Conv".to_string(), "/encoder.3/Conv".to_string()];
    let run = |target: Target| {
        model::calibrate_auto(
            &m,
            &split,
            &candidates,
            &model::AutoConfig {
                calibrate: small_config(),
                target,
                min_speedup: None,
            },
            Backend::Cpu,
            &mut |_| {},
        )
        .unwrap()
    };
    let unpack = |r: model::calibrate::AutoResult| (r.tables, r.steps, r.comparison);
    // A target the held-out part cannot measure (no frame above 2) is refused.
    let Err(e) = model::calibrate_auto(
        &m,
        &split,
        &candidates,
        &model::AutoConfig {
            calibrate: small_config(),
            target: "threshold:2:0.9".parse().unwrap(),
            min_speedup: None,
        },
        Backend::Cpu,
        &mut |_| {},
    ) else {
        panic!("a target without positives should be refused")
    };
    assert!(e.to_string().contains("no value above 2"), "{e}");
    // Nothing approximate has zero error: no layer is kept.
    let (kept, steps, _) = unpack(run(Target::Nmse(0.0)));
    assert!(kept.is_empty(), "{steps:?}");
    assert_eq!(steps.len(), 2);
    assert!(
        steps.iter().all(|s| !s.kept && s.measured > 0.0),
        "{steps:?}"
    );
    // Larger layers first.
    let macs = |n: &str| m.conv(n).unwrap().macs();
    assert!(macs(&steps[0].name) >= macs(&steps[1].name));
    // Any error allowed: both are kept, in graph order.
    let (kept, steps, cmp) = unpack(run(Target::Nmse(1e9)));
    let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["/encoder.2/Conv", "/encoder.3/Conv"], "{steps:?}");
    assert_eq!(cmp.layers.len(), 2);
    // A target between the two layers' measured values keeps exactly the one that meets it.
    let (_, steps, _) = unpack(run(Target::Nmse(0.0)));
    let (lo, hi) = (
        steps[0].measured.min(steps[1].measured),
        steps[0].measured.max(steps[1].measured),
    );
    if hi > lo {
        let (kept, steps, _) = unpack(run(Target::Nmse((lo + hi) / 2.0)));
        assert!(!kept.is_empty(), "{steps:?}");
        for s in &steps {
            assert_eq!(s.kept, s.measured <= (lo + hi) / 2.0, "{steps:?}");
        }
    }
}

#[test]
fn auto_on_the_gpu_drops_layers_slower_than_the_minimum_speedup() {
    let Some(ctx) = common::gpu() else { return };
    let dir = silero_dir();
    let (m, _) = silero(&dir, "test");
    let split = model::holdout(&m, &[silero_calib_head(&dir)], 0.25).unwrap();
    let candidates = vec!["/encoder.2/Conv".to_string()];
    let auto = |min: f64| model::AutoConfig {
        calibrate: small_config(),
        target: Target::Nmse(1e9),
        min_speedup: Some(min),
    };
    let r = model::calibrate_auto(
        &m,
        &split,
        &candidates,
        &auto(1e9),
        Backend::Gpu(ctx),
        &mut |_| {},
    )
    .unwrap();
    assert!(r.tables.is_empty(), "{:?}", r.steps);
    let s = &r.steps[0];
    let (d, l) = s.kernel_ms.expect("timed on the GPU");
    assert!(d > 0.0 && l > 0.0);
    assert!(
        s.skipped.as_deref().unwrap().contains("minimum speedup"),
        "{s:?}"
    );
    let r = model::calibrate_auto(
        &m,
        &split,
        &candidates,
        &auto(1e-9),
        Backend::Gpu(ctx),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(r.tables.len(), 1, "{:?}", r.steps);
}

#[test]
fn a_model_with_an_unknown_op_is_refused_naming_the_node() {
    let path = common::fixtures().join("models/unknown_op/model.onnx");
    let e = Model::load(&path, &[("x".into(), vec![1, 4])]).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Model(_)), "{msg}");
    assert!(
        msg.contains("NoSuchOp") && msg.contains("mystery"),
        "the error should name the op and the node: {msg}"
    );
}

#[test]
fn tiny_cnn_exact_run_matches_onnxruntime_and_calibrates() {
    let dir = common::fixtures().join("models/tiny_cnn");
    let x = npy(&dir, "input.npy");
    let expected = npy(&dir, "expected.npy");
    let (m, runs) = model::load_for(dir.join("model.onnx"), &[("images".into(), x)]).unwrap();
    assert_eq!(runs.len(), 6);
    let names: Vec<&str> = m.convs().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["conv0", "conv1", "conv2"]);
    let acts: Vec<Activation> = m.convs().iter().map(|c| c.activation).collect();
    assert_eq!(
        acts,
        [Activation::Relu, Activation::Relu, Activation::Identity],
        "conv2 is read by a GlobalAveragePool"
    );
    for (i, r) in runs.iter().enumerate() {
        let out = m.run(r).unwrap();
        common::assert_close(
            &format!("tiny_cnn row {i}"),
            out[0].data(),
            &expected.data()[i * 4..(i + 1) * 4],
            1e-5,
        );
    }
    let config = CalibrateConfig {
        train: TrainConfig {
            codebooks: Some(8),
            min_windows: 64,
            ..TrainConfig::default()
        },
        independent: false,
        graph_activations: false,
        sensitivity: None,
        exact_targets: false,
    };
    let trained = model::calibrate(
        &m,
        &runs[..4],
        &["conv1".to_string()],
        &config,
        Backend::Cpu,
        &mut |_| {},
    )
    .unwrap();
    let reps = Replacements::with(Backend::Cpu, &trained).unwrap();
    let cmp = model::compare(&m, &runs[4..], &reps, Some(Task::first(Metric::Argmax(-1)))).unwrap();
    let (_, n) = cmp.outputs[0].agreement.unwrap();
    assert_eq!(n, 2, "one top-1 decision per run");
    assert!(cmp.outputs[0].nmse > 0.0);
}

#[test]
fn yolox_decoding_reproduces_ddddocrs_boxes() {
    let Some(d) = shared_models() else { return };
    let dir = d.join("ddddocr_det");
    let y = npy(&dir, "test_text_expected.npy");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("test_boxes.json")).unwrap())
            .unwrap();
    let rows = json["files"]["test_text.npy"].as_array().unwrap();
    let mut total = 0;
    for (i, row) in rows.iter().enumerate() {
        let ratio = row["ratio"].as_f64().unwrap() as f32;
        let want = row["dets"].as_array().unwrap();
        let out = y.slice_batch(i, i + 1).unwrap();
        let got = model::boxes::decode_yolox(&out, 416, 416, &Default::default()).unwrap();
        assert_eq!(got.len(), want.len(), "row {i}: {got:?}");
        for (g, w) in got.iter().zip(want) {
            let w: Vec<f32> = w
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            for (k, (&b, &theirs)) in g.bbox.iter().zip(&w).enumerate() {
                let ours = b / ratio;
                assert!(
                    (ours - theirs).abs() < 1e-2,
                    "row {i} box coordinate {k}: ours {ours}, ddddocr {theirs}"
                );
            }
            assert!(
                (g.score - w[4]).abs() < 1e-5,
                "row {i}: score {} vs {}",
                g.score,
                w[4]
            );
        }
        total += got.len();
    }
    assert_eq!(total, 40);
}

#[test]
fn several_files_for_one_input_are_stacked_or_run_one_after_another() {
    // silero's frame axis is free: two files are two runs (the LSTM state given once).
    let dir = silero_dir();
    let x = npy(&dir, "test_input.npy");
    let (a, b) = (
        x.slice_batch(0, 177).unwrap(),
        x.slice_batch(177, 339).unwrap(),
    );
    let h = npy(&dir, "test_h.npy");
    let inputs = vec![
        ("input".to_string(), a.clone()),
        ("h".to_string(), h.clone()),
        ("input".to_string(), b.clone()),
        ("c".to_string(), h.clone()),
    ];
    let (m, runs) = model::load_for(dir.join("model.onnx"), &inputs).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0][0].shape(), [177, 576]);
    assert_eq!(runs[1][0].shape(), [162, 576]);
    let p = m.run(&runs[1]).unwrap();
    assert_eq!(p[0].shape(), [162]);
    // tiny_cnn's batch is fixed to 1: two files of 3 rows are six runs, in order.
    let t = common::fixtures().join("models/tiny_cnn");
    let x = npy(&t, "input.npy");
    let inputs = vec![
        ("images".to_string(), x.slice_batch(0, 3).unwrap()),
        ("images".to_string(), x.slice_batch(3, 6).unwrap()),
    ];
    let (_, runs) = model::load_for(t.join("model.onnx"), &inputs).unwrap();
    assert_eq!(runs.len(), 6);
    assert_eq!(runs[4][0].data(), x.slice_batch(4, 5).unwrap().data());
    // Files that cannot be stacked are refused, naming the input.
    let small = Tensor::zeros(vec![2, 3, 8, 8]).unwrap();
    let inputs = vec![
        ("images".to_string(), x.slice_batch(0, 3).unwrap()),
        ("images".to_string(), small),
    ];
    let Err(e) = model::load_for(t.join("model.onnx"), &inputs) else {
        panic!("files of different shapes should not stack")
    };
    assert!(e.to_string().contains("\"images\""), "{e}");
}

/// With graph activations each layer is fit for the activation its graph applies (ReLU for
/// silero's encoder), the bundle records it, and the tables' error after ReLU in place on
/// frames not trained on is reported; without, the tables are fit for the plain output.
#[test]
fn calibration_follows_the_graphs_activations() {
    let dir = silero_dir();
    let (m, test) = silero(&dir, "test");
    let calib = vec![silero_calib_head(&dir)];
    let layers = vec!["/encoder.1/Conv".to_string()];
    let graph = CalibrateConfig {
        graph_activations: true,
        sensitivity: None,
        ..small_config()
    };
    let t = model::calibrate(&m, &calib, &layers, &graph, Backend::Cpu, &mut |_| {}).unwrap();
    assert_eq!(t[0].1.meta.activation, Activation::Relu);
    assert!(
        t[0].1.meta.learner.contains("activation=relu"),
        "{}",
        t[0].1.meta.learner
    );
    let plain = model::calibrate(
        &m,
        &calib,
        &layers,
        &small_config(),
        Backend::Cpu,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(plain[0].1.meta.activation, Activation::Identity);
    assert_ne!(
        t[0].1.luts, plain[0].1.luts,
        "the refit after ReLU changed nothing"
    );
    // Both run in the model; the layer's error in place is measured after its activation.
    for tables in [&t, &plain] {
        let reps = Replacements::with(Backend::Cpu, tables).unwrap();
        let cmp = model::compare(&m, &test, &reps, None).unwrap();
        let l = &cmp.layers[0];
        assert!(l.nmse.is_finite() && l.nmse > 0.0 && l.nmse < 1.0, "{l:?}");
    }
}

/// Every layer folder exported as a single-Conv ONNX model: tract reads back the same spec, and
/// running it on the held-out input reproduces the other engine's stored output.
#[test]
fn exported_conv_models_reproduce_the_stored_outputs() {
    for dir in common::layer_dirs() {
        let layer = dir.layer().unwrap();
        let bytes = model::export::conv_onnx(&layer, &dir.name);
        let x = dir.test().unwrap();
        let m = Model::from_bytes(
            &bytes,
            &[(model::export::INPUT_NAME.into(), x.shape().to_vec())],
        )
        .unwrap_or_else(|e| panic!("{}: {e}", dir.name));
        assert_eq!(m.convs().len(), 1, "{}", dir.name);
        assert_eq!(
            m.convs()[0].layer.as_ref().map(|l| l.spec()),
            Some(layer.spec()),
            "{}: the spec read back",
            dir.name
        );
        assert_eq!(
            m.output_names(),
            [model::export::OUTPUT_NAME],
            "{}",
            dir.name
        );
        let y = m.run(&[x]).unwrap().remove(0);
        let want = dir.test_expected().unwrap();
        assert_eq!(y.shape(), want.shape(), "{}", dir.name);
        common::assert_close(&dir.name, y.data(), want.data(), 1e-5);
    }
}

/// Runs a split model: every segment on tract (loaded for the shapes its inputs have), every
/// cut conv by the f64 CPU reference ([`maddconv::ConvLayer::exact`]). Returns the model's
/// outputs by name.
fn run_split(
    m: &Model,
    cut: &model::split::ModelSplit,
    inputs: &[Tensor],
) -> BTreeMap<String, Tensor> {
    use model::split::Step;
    let mut values: BTreeMap<String, Tensor> = cut
        .inputs
        .iter()
        .cloned()
        .zip(inputs.iter().cloned())
        .collect();
    for step in &cut.steps {
        match step {
            Step::Segment(s) => {
                let named: Vec<(String, Vec<usize>)> = s
                    .inputs
                    .iter()
                    .map(|n| (n.clone(), values[n].shape().to_vec()))
                    .collect();
                let seg = Model::from_bytes(&s.onnx, &named)
                    .unwrap_or_else(|e| panic!("segment {}: {e}", s.index));
                assert_eq!(
                    seg.output_names(),
                    s.outputs.as_slice(),
                    "segment {}",
                    s.index
                );
                let xs: Vec<Tensor> = seg
                    .input_names()
                    .iter()
                    .map(|n| values[n].clone())
                    .collect();
                let ys = seg
                    .run(&xs)
                    .unwrap_or_else(|e| panic!("segment {}: {e}", s.index));
                for (n, y) in s.outputs.iter().zip(ys) {
                    values.insert(n.clone(), y);
                }
            }
            Step::Conv(c) => {
                let layer = m.conv(&c.name).unwrap().layer.clone().unwrap();
                let y = layer.exact(&values[&c.input]).unwrap();
                values.insert(c.output.clone(), y);
            }
        }
    }
    cut.outputs
        .iter()
        .map(|n| (n.clone(), values[n].clone()))
        .collect()
}

#[test]
fn split_silero_segments_with_exact_convs_reproduce_onnxruntime() {
    let dir = silero_dir();
    let (m, runs) = silero(&dir, "test");
    let names: Vec<String> = (0..4).map(|i| format!("/encoder.{i}/Conv")).collect();
    let cut = m.split(&names).unwrap();
    assert_eq!(cut.inputs, ["input", "h", "c"]);
    let kinds: Vec<String> = cut
        .steps
        .iter()
        .map(|s| match s {
            model::split::Step::Segment(s) => format!("segment {}", s.index),
            model::split::Step::Conv(c) => c.name.clone(),
        })
        .collect();
    // The STFT, then each encoder conv with its ReLU segment after it, the LSTM and head last.
    assert_eq!(
        kinds,
        [
            "segment 0",
            "/encoder.0/Conv",
            "segment 1",
            "/encoder.1/Conv",
            "segment 2",
            "/encoder.2/Conv",
            "segment 3",
            "/encoder.3/Conv",
            "segment 4"
        ]
    );
    let nodes: usize = cut.segments().map(|s| s.nodes).sum();
    let graph_nodes = 63;
    assert_eq!(
        nodes + names.len(),
        graph_nodes,
        "every node in exactly one step"
    );
    let out = run_split(&m, &cut, &runs[0]);
    let expected = npy(&dir, "test_expected.npy");
    let p = &out["speech_probs"];
    common::assert_close("split silero speech_probs", p.data(), expected.data(), 1e-4);
    let whole = m.run(&runs[0]).unwrap();
    for (i, name) in m.output_names().iter().enumerate() {
        let rel = maddconv::metrics::relative_l2(out[name].data(), whole[i].data());
        assert!(
            rel < 1e-5,
            "{name}: split vs whole model relative L2 {rel:.3e}"
        );
    }
}

#[test]
fn split_refuses_what_it_cannot_cut() {
    let (m, _) = silero(&silero_dir(), "test");
    let e = m.split(&["/encoder.9/Conv".into()]).unwrap_err();
    assert!(
        e.to_string().contains("/encoder.0/Conv"),
        "lists the Conv nodes: {e}"
    );
    let twice = vec!["/encoder.1/Conv".to_string(), "/encoder.1/Conv".to_string()];
    let e = m.split(&twice).unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    let e = m.split(&[]).unwrap_err();
    assert!(e.to_string().contains("no Conv node"), "{e}");
}

#[test]
fn split_ddddocr_at_two_head_convs_reproduces_onnxruntime() {
    let Some(d) = shared_models() else { return };
    let dir = d.join("ddddocr_det");
    let x = npy(&dir, "test.npy");
    let expected = npy(&dir, "test_expected.npy");
    let (m, runs) = model::load_for(dir.join("model.onnx"), &[("images".into(), x)]).unwrap();
    let cut = m.split(&["Conv_248".into(), "Conv_251".into()]).unwrap();
    let out = run_split(&m, &cut, &runs[0]);
    let want = expected.slice_batch(0, 1).unwrap();
    let got = &out[&m.output_names()[0]];
    common::assert_close("split ddddocr row 0", got.data(), want.data(), 1e-4);
}
