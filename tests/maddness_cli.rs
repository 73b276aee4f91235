//! `maddconv train` and `maddconv eval` end to end on the repository's trainable fixture.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn maddconv(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_maddconv"))
        .args(args)
        .env("RUST_LOG", "warn")
        // The tuning cache in the temporary folder, never the user's.
        .env(
            maddconv::gpu::tune::CACHE_ENV,
            std::env::temp_dir().join(format!("maddconv-tune-{}", std::process::id())),
        )
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

/// The trainable fixture layer's files, and `maddconv train`/`eval` on them.
struct Fixture(PathBuf);

impl Fixture {
    fn new() -> Fixture {
        Fixture(common::fixtures().join("layers/mtcnn_pnet_conv3_trainable"))
    }

    fn f(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }

    /// `maddconv train --weight weight.npy [--bias bias.npy] --input train.npy EXTRA -o OUT`.
    fn train(&self, bias: bool, extra: &[&str], out: &str) -> (bool, String, String) {
        let (weight, bias_file, input) = (
            self.f("weight.npy"),
            self.f("bias.npy"),
            self.f("train.npy"),
        );
        let mut args = vec!["train", "--weight", &weight];
        if bias {
            args.extend(["--bias", &bias_file]);
        }
        args.extend(["--input", &input]);
        args.extend_from_slice(extra);
        args.extend(["-o", out]);
        maddconv(&args)
    }

    /// `maddconv eval --tables TABLES --input test.npy EXTRA`.
    fn eval(&self, tables: &str, extra: &[&str]) -> (bool, String, String) {
        let input = self.f("test.npy");
        let mut args = vec!["eval", "--tables", tables, "--input", &input];
        args.extend_from_slice(extra);
        maddconv(&args)
    }
}

#[test]
fn train_then_eval() {
    let fx = Fixture::new();
    let f = |n: &str| fx.f(n);
    let tmp = tmp_dir("train_then_eval");
    let out = tmp.join("t.safetensors").display().to_string();
    let (ok, stdout, stderr) = fx.train(
        true,
        &[
            "--test",
            &f("test.npy"),
            "--codebooks",
            "12",
            "--seed",
            "5",
            "--max-windows",
            "1500",
        ],
        &out,
    );
    assert!(ok, "train failed: {stderr}");
    assert!(stdout.contains("held-out NMSE"), "{stdout}");

    let (ok, stdout, stderr) = fx.eval(&out, &["--expected", &f("test_expected.npy"), "--json"]);
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
    let (ok, stdout, _) = fx.eval(&out, &["--weight", &f("weight.npy"), "--json"]);
    assert!(ok);
    let w: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!((w["nmse"].as_f64().unwrap() - nmse).abs() < 1e-4);

    // Text output.
    let (ok, stdout, _) = fx.eval(&out, &["--expected", &f("test_expected.npy")]);
    assert!(ok && stdout.contains("1 − NMSE"), "{stdout}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn errors_are_clear_and_leave_no_output() {
    let fx = Fixture::new();
    let f = |n: &str| fx.f(n);
    let tmp = tmp_dir("errors");
    let out = tmp.join("never.safetensors");
    let o = out.display().to_string();
    // C above D = 144.
    let (ok, _, stderr) = fx.train(true, &["--codebooks", "145"], &o);
    assert!(
        !ok && stderr.contains("145") && stderr.contains("144"),
        "{stderr}"
    );
    // A test input of the wrong channel count.
    let (ok, _, stderr) = fx.train(true, &["--test", &f("test_expected.npy")], &o);
    assert!(!ok && stderr.contains("channels"), "{stderr}");
    let (ok, _, stderr) = fx.train(false, &["--max-windows", "zero"], &o);
    assert!(!ok && stderr.contains("--max-windows"), "{stderr}");
    assert!(!out.exists(), "a failed train left {}", out.display());
    // eval on a file that is not a table file.
    let (ok, _, stderr) = fx.eval(&f("weight.npy"), &[]);
    assert!(!ok && stderr.contains("table file"), "{stderr}");
    // eval without a way to get the exact output.
    let good = tmp.join("small.safetensors").display().to_string();
    let (ok, _, stderr) = fx.train(true, &["--codebooks", "4", "--max-windows", "300"], &good);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = fx.eval(&good, &[]);
    assert!(
        !ok && stderr.contains("--expected") && stderr.contains("--weight"),
        "{stderr}"
    );
    // An expected output of the wrong shape.
    let (ok, _, stderr) = fx.eval(&good, &["--expected", &f("test.npy")]);
    assert!(!ok && stderr.contains("shape"), "{stderr}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// `train --learner tied`: the codebooks rounded to the 9 taps (printed), tied tables that the
/// GPU evaluates, and too few codebooks for one tree per tap refused with the numbers.
#[test]
fn train_tied_rounds_codebooks_and_refuses_too_few() {
    let fx = Fixture::new();
    let f = |n: &str| fx.f(n);
    let tmp = tmp_dir("tied");
    let out = tmp.join("tied.safetensors").display().to_string();
    let (ok, stdout, stderr) = fx.train(
        true,
        &[
            "--learner",
            "tied",
            "--codebooks",
            "20",
            "--test",
            &f("test.npy"),
        ],
        &out,
    );
    assert!(ok, "train --learner tied failed: {stderr}");
    assert!(stdout.contains("held-out NMSE"), "{stdout}");
    let tables = maddconv::maddness::Tables::load(&out).unwrap();
    assert_eq!(
        tables.codebooks, 18,
        "20 codebooks round to 2 trees × 9 taps"
    );
    assert_eq!(tables.tied_trees_per_tap(), Some(2));
    assert!(tables.meta.learner.starts_with("tied grouping=correlation"));
    let (ok, stdout, stderr) = fx.eval(&out, &["--expected", &f("test_expected.npy"), "--json"]);
    assert!(ok, "eval failed: {stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["codebooks"], 18);
    let nmse = v["nmse"].as_f64().unwrap();
    assert!(nmse < 0.75, "tied held-out NMSE {nmse}");

    let never = tmp.join("never.safetensors");
    let n = never.display().to_string();
    let (ok, _, stderr) = fx.train(true, &["--learner", "tied", "--codebooks", "4"], &n);
    assert!(
        !ok && stderr.contains("4 codebooks") && stderr.contains("9 taps"),
        "{stderr}"
    );
    assert!(!never.exists());
    std::fs::remove_dir_all(&tmp).unwrap();
}
