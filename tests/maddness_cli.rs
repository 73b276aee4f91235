//! `maddconv train` and `maddconv eval` end to end on the repository's trainable fixture.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn maddconv(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_maddconv"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run maddconv");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh temporary folder for one test (removed by the test when it passes).
fn tmp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("maddconv-cli-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn train_then_eval() {
    let dir = common::fixtures().join("layers/mtcnn_pnet_conv3_trainable");
    let f = |n: &str| dir.join(n).display().to_string();
    let tmp = tmp_dir("train_then_eval");
    let out = tmp.join("t.safetensors").display().to_string();
    let (ok, stdout, stderr) = maddconv(&[
        "train",
        "--weight",
        &f("weight.npy"),
        "--bias",
        &f("bias.npy"),
        "--input",
        &f("train.npy"),
        "--test",
        &f("test.npy"),
        "--codebooks",
        "12",
        "--seed",
        "5",
        "--max-windows",
        "1500",
        "-o",
        &out,
    ]);
    assert!(ok, "train failed: {stderr}");
    assert!(stdout.contains("held-out NMSE"), "{stdout}");

    let (ok, stdout, stderr) = maddconv(&[
        "eval",
        "--tables",
        &out,
        "--input",
        &f("test.npy"),
        "--expected",
        &f("test_expected.npy"),
        "--json",
    ]);
    assert!(ok, "eval failed: {stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for key in [
        "nmse",
        "one_minus_nmse",
        "nmse_f32_tables",
        "codebooks",
        "windows_trained",
        "train_seconds",
        "layer",
    ] {
        assert!(v.get(key).is_some(), "eval --json lacks {key}: {stdout}");
    }
    assert_eq!(v["codebooks"], 12);
    assert_eq!(v["windows_trained"], 1500);
    assert_eq!(v["layer"]["out_channels"], 32);
    let nmse = v["nmse"].as_f64().unwrap();
    assert!((v["one_minus_nmse"].as_f64().unwrap() - (1.0 - nmse)).abs() < 1e-12);
    // The held-out error stored at training time (against the f64 reference) matches eval's
    // (against the data set's expected output) closely.
    let at_train = v["heldout_at_training"]["nmse"].as_f64().unwrap();
    assert!(
        (at_train - nmse).abs() < 1e-4,
        "train {at_train} vs eval {nmse}"
    );
    assert!(nmse < 0.7, "held-out NMSE {nmse}");

    // The exact output from the weight instead of --expected: the same error.
    let (ok, stdout, _) = maddconv(&[
        "eval",
        "--tables",
        &out,
        "--input",
        &f("test.npy"),
        "--weight",
        &f("weight.npy"),
        "--json",
    ]);
    assert!(ok);
    let w: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!((w["nmse"].as_f64().unwrap() - nmse).abs() < 1e-4);

    // Text output.
    let (ok, stdout, _) = maddconv(&[
        "eval",
        "--tables",
        &out,
        "--input",
        &f("test.npy"),
        "--expected",
        &f("test_expected.npy"),
    ]);
    assert!(ok && stdout.contains("1 − NMSE"), "{stdout}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn errors_are_clear_and_leave_no_output() {
    let dir = common::fixtures().join("layers/mtcnn_pnet_conv3_trainable");
    let f = |n: &str| dir.join(n).display().to_string();
    let tmp = tmp_dir("errors");
    let out = tmp.join("never.safetensors");
    let o = out.display().to_string();
    // C above D = 144.
    let (ok, _, stderr) = maddconv(&[
        "train",
        "--weight",
        &f("weight.npy"),
        "--bias",
        &f("bias.npy"),
        "--input",
        &f("train.npy"),
        "--codebooks",
        "145",
        "-o",
        &o,
    ]);
    assert!(
        !ok && stderr.contains("145") && stderr.contains("144"),
        "{stderr}"
    );
    // A test input of the wrong channel count.
    let (ok, _, stderr) = maddconv(&[
        "train",
        "--weight",
        &f("weight.npy"),
        "--bias",
        &f("bias.npy"),
        "--input",
        &f("train.npy"),
        "--test",
        &f("test_expected.npy"),
        "-o",
        &o,
    ]);
    assert!(!ok && stderr.contains("channels"), "{stderr}");
    let (ok, _, stderr) = maddconv(&[
        "train",
        "--weight",
        &f("weight.npy"),
        "--input",
        &f("train.npy"),
        "--max-windows",
        "zero",
        "-o",
        &o,
    ]);
    assert!(!ok && stderr.contains("--max-windows"), "{stderr}");
    assert!(!out.exists(), "a failed train left {}", out.display());
    // eval on a file that is not a table file.
    let (ok, _, stderr) = maddconv(&[
        "eval",
        "--tables",
        &f("weight.npy"),
        "--input",
        &f("test.npy"),
    ]);
    assert!(!ok && stderr.contains("table file"), "{stderr}");
    // eval without a way to get the exact output.
    let good = tmp.join("small.safetensors").display().to_string();
    let (ok, _, stderr) = maddconv(&[
        "train",
        "--weight",
        &f("weight.npy"),
        "--bias",
        &f("bias.npy"),
        "--input",
        &f("train.npy"),
        "--codebooks",
        "4",
        "--max-windows",
        "300",
        "-o",
        &good,
    ]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = maddconv(&["eval", "--tables", &good, "--input", &f("test.npy")]);
    assert!(
        !ok && stderr.contains("--expected") && stderr.contains("--weight"),
        "{stderr}"
    );
    // An expected output of the wrong shape.
    let (ok, _, stderr) = maddconv(&[
        "eval",
        "--tables",
        &good,
        "--input",
        &f("test.npy"),
        "--expected",
        &f("test.npy"),
    ]);
    assert!(!ok && stderr.contains("shape"), "{stderr}");
    std::fs::remove_dir_all(&tmp).unwrap();
}
