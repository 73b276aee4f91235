//! Whole ONNX models on tract: the exact run against onnxruntime's stored outputs, the Conv
//! list, the capture/replace hook, calibration and the bundle. The silero VAD fixture is in the
//! repository; the shared data (`../shared/data/models`) adds ddddocr_det.
#![cfg(feature = "onnx")]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use maddconv::maddness::TrainConfig;
use maddconv::model::{self, Bundle, CalibrateConfig, Metric, Model, Replace};
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
    let run = m.run_with(&runs[0], &replace, &[]).unwrap();
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
    };
    let mut seen = Vec::new();
    let trained = model::calibrate(&m_calib, &[calib], &layers, &config, &mut |n| {
        seen.push(n.to_string())
    })
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
    let cmp = model::compare(&m, &runs, &back.layers, Some(Metric::Threshold(0.5))).unwrap();
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
    let x = Tensor::zeros(vec![4, 576]).unwrap();
    let h = Tensor::zeros(vec![1, 1, 128]).unwrap();
    let e = m.run(&[x, h.clone(), h]).unwrap_err();
    assert!(e.to_string().contains("[4, 576]"), "{e}");
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
