//! `maddconv model` end to end on the repository's fixtures: calibrate → eval → run (the GPU
//! and the CPU mirror), every output written, and the errors a user meets (exit status 1, a
//! message naming the node, input, shape or file; no output written).
#![cfg(feature = "onnx")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use maddconv::Tensor;

fn maddconv() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_maddconv"));
    c.arg("model");
    c
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("maddconv-model-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn silero() -> PathBuf {
    common::fixtures().join("models/silero_vad")
}

fn tiny() -> PathBuf {
    common::fixtures().join("models/tiny_cnn")
}

/// The model file and silero's three test inputs (or the calibration head for `input`).
fn silero_args(cmd: &mut Command, calib: bool) {
    let d = silero();
    let input = if calib {
        "calib_input_head.npy"
    } else {
        "test_input.npy"
    };
    cmd.arg(d.join("model.onnx"))
        .arg("--input")
        .arg(format!("input={}", d.join(input).display()))
        .arg("--input")
        .arg(format!("h={}", d.join("test_h.npy").display()))
        .arg("--input")
        .arg(format!("c={}", d.join("test_c.npy").display()));
}

fn small_learner(cmd: &mut Command) {
    cmd.args([
        "--codebooks",
        "16",
        "--learner",
        "maddness",
        "--min-windows",
        "16",
    ]);
}

fn ok(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed: {err}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &Output, needles: &[&str], what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} should fail with 1: {err}"
    );
    for n in needles {
        assert!(
            err.contains(n),
            "{what}: the error should name {n:?}: {err}"
        );
    }
}

fn calibrate_silero(bundle: &Path, layers: &str, cpu: bool) -> Output {
    let mut c = maddconv();
    c.arg("calibrate");
    silero_args(&mut c, true);
    c.args([
        "--layers",
        layers,
        "--holdout",
        "0.25",
        "--metric",
        "threshold:0.5",
    ]);
    small_learner(&mut c);
    if cpu {
        c.arg("--cpu");
    }
    c.arg("-o").arg(bundle).output().unwrap()
}

#[test]
fn calibrate_eval_run_round_trip() {
    let bundle = tmp("silero.safetensors");
    let out = calibrate_silero(&bundle, "/encoder.2/Conv,/encoder.3/Conv", true);
    ok(&out, "calibrate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("held-out output speech_probs"), "{err}");
    let b = maddconv::model::Bundle::load(&bundle).unwrap();
    assert_eq!(b.layers.len(), 2);
    let held = b
        .settings
        .held_out
        .as_ref()
        .expect("held-out measurement stored");
    assert_eq!(held["runs"], 1);
    assert!(held["outputs"][0]["agreement"][0].as_f64().unwrap() > 0.5);

    for cpu in [false, true] {
        let mut c = maddconv();
        c.arg("eval");
        silero_args(&mut c, false);
        c.arg("--tables")
            .arg(&bundle)
            .args(["--metric", "threshold:0.5", "--json"]);
        if cpu {
            c.arg("--cpu");
        }
        let json: serde_json::Value =
            serde_json::from_str(&ok(&c.output().unwrap(), "eval")).unwrap();
        let (agree, n) = (
            json["outputs"][0]["agreement"][0].as_f64().unwrap(),
            json["outputs"][0]["agreement"][1].as_u64().unwrap(),
        );
        assert_eq!(n, 339);
        assert!(agree > 0.8 && agree <= 1.0, "agreement {agree}");
        assert!(
            json["outputs"][1]["agreement"].is_null(),
            "metric on the first output only"
        );
        assert_eq!(json["layers"].as_array().unwrap().len(), 2);
        let t = &json["layers"][0]["timing"];
        assert_eq!(t["calls"], 1);
        if cpu {
            assert!(t["cpu_ms"].as_f64().unwrap() > 0.0, "{t}");
        } else {
            assert!(t["gpu"]["compute_ms"].as_f64().unwrap() > 0.0, "{t}");
        }
    }

    // Every output written; the exact run equals onnxruntime's.
    let exact_dir = tmp("exact_out");
    let mut c = maddconv();
    c.arg("run");
    silero_args(&mut c, false);
    ok(&c.arg("-o").arg(&exact_dir).output().unwrap(), "run");
    let p = Tensor::read_npy(exact_dir.join("speech_probs.npy")).unwrap();
    let want = Tensor::read_npy(silero().join("test_expected.npy")).unwrap();
    common::assert_close("run speech_probs", p.data(), want.data(), 1e-4);
    for o in ["hn.npy", "cn.npy"] {
        assert_eq!(
            Tensor::read_npy(exact_dir.join(o)).unwrap().shape(),
            [1, 1, 128]
        );
    }
    let approx_dir = tmp("approx_out");
    let mut c = maddconv();
    c.arg("run");
    silero_args(&mut c, false);
    c.arg("--tables").arg(&bundle).arg("-o").arg(&approx_dir);
    ok(&c.output().unwrap(), "run --tables");
    let q = Tensor::read_npy(approx_dir.join("speech_probs.npy")).unwrap();
    let rel = maddconv::metrics::relative_l2(q.data(), p.data());
    assert!(
        rel > 1e-4 && rel < 0.5,
        "replaced vs exact relative L2 {rel}"
    );
}

#[test]
fn errors_name_the_node_input_shape_or_file() {
    let d = silero();
    let bundle = tmp("err.safetensors");
    fails(
        &calibrate_silero(&bundle, "/nope/Conv", true),
        &["/nope/Conv", "/encoder.0/Conv"],
        "unknown layer",
    );
    assert!(!bundle.exists(), "no bundle after a failure");

    let mut c = maddconv();
    c.arg("inspect").arg(d.join("model.onnx"));
    c.arg("--input")
        .arg(format!("zz={}", d.join("test_h.npy").display()));
    fails(
        &c.output().unwrap(),
        &["\"zz\"", "input"],
        "unknown input name",
    );

    let mut c = maddconv();
    c.arg("inspect").arg(tiny().join("model.onnx"));
    c.arg("--input").arg(d.join("test_h.npy"));
    fails(
        &c.output().unwrap(),
        &["[1, 1, 128]", "images"],
        "wrong input shape",
    );

    let mut c = maddconv();
    c.arg("inspect").arg(d.join("test_h.npy"));
    c.arg("--input").arg(d.join("test_h.npy"));
    fails(&c.output().unwrap(), &["ONNX"], "not an ONNX file");

    let mut c = maddconv();
    c.arg("inspect")
        .arg(common::fixtures().join("models/unknown_op/model.onnx"));
    c.arg("--input").arg(d.join("test_h.npy"));
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1));

    let out_npy = tmp("three_outputs.npy");
    let mut c = maddconv();
    c.arg("run");
    silero_args(&mut c, false);
    fails(
        &c.arg("-o").arg(&out_npy).output().unwrap(),
        &["3 outputs", "directory"],
        "a .npy file for a 3-output model",
    );
    assert!(!out_npy.exists());

    let mut c = maddconv();
    c.arg("calibrate");
    silero_args(&mut c, true);
    fails(
        &c.args(["--layers", "auto"])
            .arg("-o")
            .arg(&bundle)
            .output()
            .unwrap(),
        &["--target"],
        "auto without a target",
    );
}

#[test]
fn a_bundle_is_refused_on_another_model() {
    let bundle = tmp("tiny.safetensors");
    let mut c = maddconv();
    c.arg("calibrate")
        .arg(tiny().join("model.onnx"))
        .arg("--input")
        .arg(tiny().join("input.npy"))
        .args([
            "--layers",
            "conv1",
            "--holdout",
            "0.34",
            "--metric",
            "argmax",
            "--cpu",
        ]);
    small_learner(&mut c);
    ok(
        &c.arg("-o").arg(&bundle).output().unwrap(),
        "calibrate tiny_cnn",
    );
    let mut c = maddconv();
    c.arg("eval");
    silero_args(&mut c, false);
    c.arg("--tables").arg(&bundle).arg("--cpu");
    fails(
        &c.output().unwrap(),
        &["another model"],
        "a tiny_cnn bundle on silero",
    );
}

/// `model export-conv` from a layer folder and from weight files: `model run` on the written
/// model reproduces the layer's stored output; a bad layer or spec writes nothing.
#[test]
fn export_conv_writes_a_model_that_runs_the_layer() {
    let dir = common::fixtures().join("layers/mtcnn_pnet_conv3_trainable");
    let onnx = tmp("conv3.onnx");
    let out = maddconv()
        .args(["export-conv", "--layer"])
        .arg(&dir)
        .arg("-o")
        .arg(&onnx)
        .output()
        .unwrap();
    ok(&out, "export-conv --layer");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("conv2d 16→32"), "{said}");
    let runs_the_layer = |onnx: &Path, what: &str| {
        let y = tmp(&format!("{what}_y.npy"));
        let out = maddconv()
            .arg("run")
            .arg(onnx)
            .arg("--input")
            .arg(dir.join("test.npy"))
            .arg("-o")
            .arg(&y)
            .output()
            .unwrap();
        ok(&out, &format!("model run of {what}"));
        let got = Tensor::read_npy(&y).unwrap();
        let want = Tensor::read_npy(dir.join("test_expected.npy")).unwrap();
        assert_eq!(got.shape(), want.shape(), "{what}");
        common::assert_close(what, got.data(), want.data(), 1e-5);
    };
    runs_the_layer(&onnx, "export_from_folder");

    // From weight files (the spec from the weight's shape and the flags: here the defaults).
    let from_files = tmp("conv3_files.onnx");
    let out = maddconv()
        .arg("export-conv")
        .arg("--weight")
        .arg(dir.join("weight.npy"))
        .arg("--bias")
        .arg(dir.join("bias.npy"))
        .arg("-o")
        .arg(&from_files)
        .output()
        .unwrap();
    ok(&out, "export-conv --weight");
    runs_the_layer(&from_files, "export_from_files");

    // Errors name the problem and write nothing.
    let bad = tmp("bad.onnx");
    let out = maddconv()
        .arg("export-conv")
        .arg("--weight")
        .arg(dir.join("weight.npy"))
        .args(["--stride", "0"])
        .arg("-o")
        .arg(&bad)
        .output()
        .unwrap();
    fails(&out, &["stride"], "export-conv --stride 0");
    let out = maddconv()
        .args(["export-conv", "--layer"])
        .arg(common::fixtures().join("layers"))
        .arg("-o")
        .arg(&bad)
        .output()
        .unwrap();
    fails(
        &out,
        &["layer.json"],
        "export-conv of a folder without layer.json",
    );
    assert!(!bad.exists(), "{} written after an error", bad.display());
}

#[test]
fn split_writes_segments_layer_folders_and_tables() {
    let bundle = tmp("split_bundle.safetensors");
    ok(
        &calibrate_silero(&bundle, "/encoder.1/Conv,/encoder.2/Conv", true),
        "calibrate",
    );
    let out_dir = tmp("split_out");
    let _ = std::fs::remove_dir_all(&out_dir);
    let mut c = maddconv();
    c.arg("split");
    silero_args(&mut c, false);
    let out = c
        .arg("--tables")
        .arg(&bundle)
        .arg("-o")
        .arg(&out_dir)
        .output()
        .unwrap();
    ok(&out, "split --tables");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("split.json")).unwrap())
            .unwrap();
    let steps = manifest["steps"].as_array().unwrap();
    let kinds: Vec<&str> = steps.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["segment", "conv", "segment", "conv", "segment"]);
    for s in steps {
        if s["kind"] == "segment" {
            assert!(out_dir.join(s["file"].as_str().unwrap()).is_file(), "{s}");
            continue;
        }
        // Each cut conv: a layer folder our loaders read, and the bundle's tables for it.
        let folder = out_dir.join(s["folder"].as_str().unwrap());
        let layer = maddconv::data::LayerDir::open(&folder)
            .unwrap()
            .layer()
            .unwrap();
        let tables =
            maddconv::maddness::Tables::load(out_dir.join(s["tables"].as_str().unwrap())).unwrap();
        assert_eq!(tables.spec, *layer.spec(), "{s}");
        assert_eq!(s["activation"], "relu");
    }
    assert!(
        !std::fs::read_dir(out_dir.parent().unwrap())
            .unwrap()
            .any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".partial-")),
        "no partial folder is left behind"
    );

    // A folder that is not empty is not overwritten; an unknown node is named.
    let mut c = maddconv();
    c.arg("split");
    silero_args(&mut c, false);
    let out = c
        .args(["--layers", "/encoder.1/Conv", "-o"])
        .arg(&out_dir)
        .output()
        .unwrap();
    fails(&out, &["not an empty folder"], "split into a full folder");
    let other = tmp("split_other");
    let _ = std::fs::remove_dir_all(&other);
    let mut c = maddconv();
    c.arg("split");
    silero_args(&mut c, false);
    let out = c
        .args(["--layers", "/encoder.7/Conv", "-o"])
        .arg(&other)
        .output()
        .unwrap();
    fails(
        &out,
        &["/encoder.7/Conv", "/encoder.0/Conv"],
        "split at an unknown node",
    );
    assert!(!other.exists(), "nothing written");
}

/// `model calibrate` of silero's `layers` on the CPU mirror with the small learner, `extra`
/// arguments and the bundle written to `bundle`.
fn calibrate_silero_cpu(layers: &str, extra: &[&str], bundle: &Path) -> Output {
    let mut c = maddconv();
    c.arg("calibrate");
    silero_args(&mut c, true);
    c.args(["--layers", layers, "--cpu"]);
    small_learner(&mut c);
    c.args(extra).arg("-o").arg(bundle).output().unwrap()
}

#[test]
fn sensitivity_weights_need_a_decision_metric_and_are_recorded() {
    let bundle = tmp("sens.safetensors");
    let calibrate = |extra: &[&str]| calibrate_silero_cpu("/encoder.3/Conv", extra, &bundle);
    fails(
        &calibrate(&["--sensitivity"]),
        &["--sensitivity", "--metric threshold"],
        "sensitivity without a metric",
    );
    assert!(!bundle.exists(), "no bundle after a failure");
    fails(
        &calibrate(&["--metric", "threshold:0.5", "--sensitivity=-1"]),
        &["-1", "≥ 0"],
        "a negative floor",
    );
    assert!(!bundle.exists(), "no bundle after a failure");

    ok(
        &calibrate(&["--metric", "threshold:0.5", "--sensitivity"]),
        "calibrate --sensitivity",
    );
    let learner = maddconv::model::Bundle::load(&bundle)
        .unwrap()
        .settings
        .learner;
    assert!(
        learner.contains("sensitivity=threshold:0.5:0.1"),
        "the learner should record the weighting: {learner}"
    );
}

/// Sequential calibration refits to the exact model's layer outputs by default (`--targets
/// exact`), which the bundle records; `--targets own` and `--independent` (exact inputs, where
/// the two are the same) record none; an unknown value is a usage error naming the choices.
#[test]
fn calibration_targets_are_recorded() {
    let bundle = tmp("targets.safetensors");
    let calibrate =
        |extra: &[&str]| calibrate_silero_cpu("/encoder.2/Conv,/encoder.3/Conv", extra, &bundle);
    let learner = |extra: &[&str], what: &str| {
        ok(&calibrate(extra), what);
        maddconv::model::Bundle::load(&bundle)
            .unwrap()
            .settings
            .learner
    };
    let l = learner(&[], "calibrate (default targets)");
    assert!(l.contains("targets=exact-model"), "{l}");
    let l = learner(&["--targets", "own"], "calibrate --targets own");
    assert!(!l.contains("targets="), "{l}");
    let l = learner(&["--independent"], "calibrate --independent");
    assert!(!l.contains("targets="), "{l}");
    std::fs::remove_file(&bundle).unwrap();
    let out = calibrate(&["--targets", "layer"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a usage error: {err}");
    assert!(err.contains("[possible values: exact, own]"), "{err}");
    assert!(!bundle.exists(), "no bundle after a failure");
}
