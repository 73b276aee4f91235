//! The `maddconv` binary end to end: `conv` on a real fixture (GPU and --cpu) against the
//! expected output, and its errors (exit status 1, a message naming the problem, no output file).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use maddconv::Tensor;

/// The binary, its tuning cache in this test process's temporary folder (never the user's).
fn maddconv() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_maddconv"));
    c.env(maddconv::gpu::tune::CACHE_ENV, tmp("tune-cache"));
    c
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("maddconv-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn fixture(layer: &str, file: &str) -> PathBuf {
    common::fixtures().join("layers").join(layer).join(file)
}

fn conv_args(cmd: &mut Command, layer: &str, out: &Path) {
    conv_args_on(cmd, &fixture(layer, "test.npy"), layer, out);
}

/// `conv --input INPUT --weight/--bias (the layer's) -o OUT`.
fn conv_args_on(cmd: &mut Command, input: &Path, layer: &str, out: &Path) {
    cmd.arg("conv")
        .arg("--input")
        .arg(input)
        .arg("--weight")
        .arg(fixture(layer, "weight.npy"))
        .arg("--bias")
        .arg(fixture(layer, "bias.npy"))
        .arg("-o")
        .arg(out);
}

/// `maddconv train --weight WEIGHT --bias BIAS --input INPUT -o OUT`, run.
fn train_output(weight: &Path, bias: &Path, input: &Path, out: &Path) -> std::process::Output {
    maddconv()
        .arg("train")
        .arg("--weight")
        .arg(weight)
        .arg("--bias")
        .arg(bias)
        .arg("--input")
        .arg(input)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

/// `maddconv train` on a fixture layer's weight, bias and train.npy with extra `args`, to `out`.
fn train_fixture(layer: &str, args: &[&str], out: &Path) -> std::process::Output {
    maddconv()
        .arg("train")
        .arg("--weight")
        .arg(fixture(layer, "weight.npy"))
        .arg("--bias")
        .arg(fixture(layer, "bias.npy"))
        .arg("--input")
        .arg(fixture(layer, "train.npy"))
        .args(args)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

/// `maddconv SUBCOMMAND --tables TABLES --input INPUT`, to add to.
fn tables_cmd(subcommand: &str, tables: &Path, input: &Path) -> Command {
    let mut cmd = maddconv();
    cmd.arg(subcommand)
        .arg("--tables")
        .arg(tables)
        .arg("--input")
        .arg(input);
    cmd
}

/// Runs `cmd`, with `--cpu` added when `cpu`.
fn output_on(mut cmd: Command, cpu: bool) -> std::process::Output {
    if cpu {
        cmd.arg("--cpu");
    }
    cmd.output().unwrap()
}

#[test]
fn conv_reproduces_the_expected_output() {
    // silero_L02: conv1d, stride 2, padding 1 — the flags in both spellings.
    for (extra, cpu) in [
        (vec!["--stride", "2", "--padding", "1"], true),
        (vec!["--stride", "2", "--padding", "1,1"], false),
    ] {
        if !cpu && common::gpu().is_none() {
            continue;
        }
        let out = tmp(&format!("silero_{cpu}.npy"));
        let mut cmd = maddconv();
        conv_args(&mut cmd, "silero_L02_blocks", &out);
        cmd.args(&extra);
        let o = output_on(cmd, cpu);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let y = Tensor::read_npy(&out).unwrap();
        let e = Tensor::read_npy(fixture("silero_L02_blocks", "test_expected.npy")).unwrap();
        assert_eq!(y.shape(), e.shape());
        common::assert_close(&format!("cli conv cpu={cpu}"), y.data(), e.data(), 1e-5);
    }
}

/// `conv --method fft|auto` on a conv1d (stride 2, padding 1) gives the expected output and says
/// which kernel ran; `--method fft` on a conv2d fails with a clear message and no output.
#[test]
fn conv_method_fft_and_auto() {
    if common::gpu().is_none() {
        return;
    }
    let cache = tmp("cache");
    for method in ["fft", "auto", "direct"] {
        let out = tmp(&format!("silero_{method}.npy"));
        let mut cmd = maddconv();
        conv_args(&mut cmd, "silero_L02_blocks", &out);
        cmd.args(["--stride", "2", "--padding", "1", "--method", method])
            .env("MADDCONV_CACHE_DIR", &cache);
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{method}: {err}");
        if method != "auto" {
            assert!(err.contains(&format!("GPU {method}")), "{method}: {err}");
        }
        let y = Tensor::read_npy(&out).unwrap();
        let e = Tensor::read_npy(fixture("silero_L02_blocks", "test_expected.npy")).unwrap();
        common::assert_close(
            &format!("cli conv --method {method}"),
            y.data(),
            e.data(),
            1e-5,
        );
    }
    let out = tmp("never_fft.npy");
    let mut cmd = maddconv();
    conv_args(&mut cmd, "mtcnn_pnet_conv2_crop", &out);
    let o = cmd.args(["--method", "fft"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("conv1d only"), "{err}");
    assert!(!out.exists());
}

/// `bench --fft --small --json`: for each K and channel count a direct, an FFT and a CPU-FFT
/// row, every one exact (relative L2 against the f64 reference below 1e-5), and a MADDNESS row
/// (C = 16) better than a zero output.
#[test]
fn bench_fft_rows_are_exact() {
    if common::gpu().is_none() {
        return;
    }
    let o = maddconv()
        .args(["bench", "--fft", "--small", "--json", "--reps", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.len(), 2 * 2 * 4, "{rows:?}");
    for r in &rows {
        let err = r["rel_l2_vs_f64"].as_f64().unwrap_or(f64::NAN);
        if r["method"] == "maddness" {
            // Approximate, on held-out noise: better than a zero output, and C = 16.
            assert!(err < 1.0, "row {r}: rel L2 {err}");
            assert_eq!(r["codebooks"], 16, "row {r}");
        } else {
            assert!(err < 1e-5, "row {r}: rel L2 {err}");
        }
        assert!(r["ms"].as_f64().unwrap() > 0.0, "row {r}");
    }
    for m in ["direct", "fft", "cpu-fft", "maddness"] {
        assert_eq!(rows.iter().filter(|r| r["method"] == m).count(), 4, "{m}");
    }
}

#[test]
fn conv_errors_are_clear_and_leave_no_output() {
    let out = tmp("never.npy");
    let cases: [(&[&str], &str); 8] = [
        (
            &["--padding", "1,1,1"],
            "--padding takes 1 or 2 comma-separated values",
        ),
        (&["--stride", "x"], "\"x\" is not a non-negative integer"),
        (
            &["--stride", "-1"],
            "--stride: \"-1\" is not a non-negative integer",
        ),
        (
            &["--padding", "-1"],
            "--padding: \"-1\" is not a non-negative integer",
        ),
        (&["--stride", "0"], "stride[0] is 0"),
        (
            &["--stride", "2147483648"],
            "stride along the width is 2147483648, above the limit of 2147483647",
        ),
        (&["--groups", "3"], "not divisible by groups 3"),
        (&["--groups", "0"], "groups is 0; it must be at least 1"),
    ];
    for (extra, needle) in cases {
        let mut cmd = maddconv();
        conv_args(&mut cmd, "silero_L02_blocks", &out);
        cmd.args(extra).arg("--cpu");
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {err}");
        assert!(
            err.contains(needle),
            "{extra:?}: expected {needle:?} in {err}"
        );
        assert!(!out.exists(), "{extra:?} left an output file");
    }
    // a weight that is not an npy file
    let bogus = tmp("bogus.npy");
    std::fs::write(&bogus, b"hello").unwrap();
    let o = maddconv()
        .args(["conv", "--cpu", "--input"])
        .arg(fixture("silero_L02_blocks", "test.npy"))
        .arg("--weight")
        .arg(&bogus)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("bogus.npy") && err.contains("not a readable .npy"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn info_names_the_adapter() {
    if common::gpu().is_none() {
        return;
    }
    let o = maddconv().arg("info").output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let name = &common::gpu().unwrap().adapter_info().name;
    assert!(
        text.contains(name.as_str()) && text.contains("max_storage_buffer_binding_size"),
        "{text}"
    );
}

/// `train`, then `run` on the GPU and through the CPU mirror: the same output; `eval` on the
/// GPU and with --cpu: the same error.
/// `eval --json` of `tables` on the fixture layer's test input, on the GPU then on the CPU
/// (checking each reports its backend): the two NMSEs.
fn eval_nmse_gpu_and_cpu(tables: &Path, layer: &str) -> Vec<f64> {
    let mut nmse = Vec::new();
    for cpu in [false, true] {
        let mut cmd = tables_cmd("eval", tables, &fixture(layer, "test.npy"));
        cmd.arg("--expected")
            .arg(fixture(layer, "test_expected.npy"))
            .arg("--json");
        let o = output_on(cmd, cpu);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let backend = v["backend"].as_str().unwrap().to_string();
        assert_eq!(backend.starts_with("gpu"), !cpu, "{backend}");
        nmse.push(v["nmse"].as_f64().unwrap());
    }
    nmse
}

#[test]
fn run_and_eval_agree_between_gpu_and_mirror() {
    if common::gpu().is_none() {
        return;
    }
    let layer = "mtcnn_pnet_conv3_trainable";
    let tables = tmp("run.safetensors");
    let o = train_fixture(layer, &["--codebooks", "16"], &tables);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut outs = Vec::new();
    for cpu in [false, true] {
        let out = tmp(&format!("run_{cpu}.npy"));
        let mut cmd = tables_cmd("run", &tables, &fixture(layer, "test.npy"));
        cmd.arg("-o").arg(&out);
        let o = output_on(cmd, cpu);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        outs.push(Tensor::read_npy(&out).unwrap());
    }
    assert_eq!(outs[0].shape(), outs[1].shape());
    common::assert_close("run: GPU vs mirror", outs[0].data(), outs[1].data(), 1e-6);

    let nmse = eval_nmse_gpu_and_cpu(&tables, layer);
    assert!(
        (nmse[0] - nmse[1]).abs() <= 1e-6 * nmse[1].abs().max(1e-12),
        "{nmse:?}"
    );

    // A file that is not a table file: a clear error, no output.
    let bogus = tmp("bogus.safetensors");
    std::fs::write(&bogus, b"not tables").unwrap();
    let out = tmp("never_run.npy");
    let o = maddconv()
        .arg("run")
        .arg("--tables")
        .arg(&bogus)
        .arg("--input")
        .arg(fixture(layer, "test.npy"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("bogus.safetensors"), "{err}");
    assert!(!out.exists());
}

#[test]
fn bench_report_writes_json_and_plots() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("report");
    let _ = std::fs::remove_dir_all(&dir);
    let o = maddconv()
        .args(["bench", "--small", "--reps", "2", "--report"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The JSON: every fixture layer and the small CNN shape, each with its exact kernels and
    // MADDNESS at C = 8 and 16 (the --small default; all fixtures have D ≥ 16).
    let text = std::fs::read_to_string(dir.join("bench.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        json["command"].as_str().unwrap().contains("--report"),
        "command: {}",
        json["command"]
    );
    assert_eq!(
        json["date"].as_str().unwrap().len(),
        10,
        "date {}",
        json["date"]
    );
    assert!(!json["adapter"].as_str().unwrap().is_empty());
    let rows = json["rows"].as_array().unwrap();
    let mut layers: Vec<String> = std::fs::read_dir(common::fixtures().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    layers.push("cnn16x14x14_b8".into());
    for layer in &layers {
        let of = |method: &str| {
            rows.iter()
                .filter(|r| r["layer"] == layer.as_str() && r["method"] == method)
                .collect::<Vec<_>>()
        };
        let direct = of("direct");
        assert!(!direct.is_empty(), "{layer}: no direct row");
        // Every speedup is the fastest exact kernel's median time over the row's own, recomputed
        // here from the rows' times (the naive kernel, which only shows the floor, never counts
        // as the fastest).
        let fastest_ms = direct
            .iter()
            .filter(|r| r["kernels"] != "naive")
            .map(|r| r["kernel_ms"].as_f64().unwrap())
            .fold(f64::INFINITY, f64::min);
        assert!(
            fastest_ms.is_finite() && fastest_ms > 0.0,
            "{layer}: {fastest_ms} ms"
        );
        for r in rows.iter().filter(|r| r["layer"] == layer.as_str()) {
            let ms = r["kernel_ms"].as_f64().unwrap();
            let s = r["speedup_vs_direct"].as_f64().unwrap();
            assert!(
                (s - fastest_ms / ms).abs() <= 1e-9 * s.abs().max(1.0),
                "{layer} {} {}: speedup {s}, but {fastest_ms} ms / {ms} ms = {}",
                r["method"],
                r["kernels"],
                fastest_ms / ms
            );
        }
        let mut cs: Vec<u64> = of("maddness")
            .iter()
            .map(|r| r["codebooks"].as_u64().unwrap())
            .collect();
        cs.sort();
        if layer == "silero_L02_blocks" {
            // 6 blocks at stride 2 hold only 12 windows: training refuses them, and the bench
            // says so instead of timing tables that would be noise.
            assert!(cs.is_empty(), "{layer}: tables trained on 12 windows");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("not trained: the training inputs hold 12 windows"),
                "{err}"
            );
        } else {
            assert_eq!(cs, [8, 16], "{layer}: MADDNESS codebooks");
        }
        for r in of("maddness") {
            let e = r["one_minus_nmse"].as_f64().unwrap();
            let s = r["speedup_vs_direct"].as_f64().unwrap();
            assert!(e.is_finite() && e <= 1.0, "{layer}: 1 − NMSE {e}");
            assert!(s.is_finite() && s > 0.0, "{layer}: speedup {s}");
        }
    }
    assert_eq!(
        rows.len(),
        rows.iter()
            .filter(|r| layers.iter().any(|l| r["layer"] == l.as_str()))
            .count(),
        "rows of unknown layers"
    );

    // The SVG names every layer; the PNG decodes to the plot size and is not blank.
    let svg = std::fs::read_to_string(dir.join("speedup_vs_accuracy.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.len() > 5_000,
        "SVG of {} bytes",
        svg.len()
    );
    // The plot shows the layers that have MADDNESS points (silero_L02_blocks has none: too few
    // windows to train on).
    for layer in layers.iter().filter(|l| l.as_str() != "silero_L02_blocks") {
        assert!(
            svg.contains(layer.as_str()),
            "the SVG does not name {layer}"
        );
    }
    let png = std::fs::read(dir.join("speedup_vs_accuracy.png")).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    let mut buf = vec![0u8; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1280, 720));
    let white = buf.iter().filter(|&&b| b == 255).count();
    let coloured = buf
        .chunks_exact(3)
        .filter(|p| p[0].abs_diff(p[1]) > 60 || p[1].abs_diff(p[2]) > 60)
        .count();
    assert!(white < buf.len() * 99 / 100, "the PNG is nearly blank");
    assert!(
        coloured > 200,
        "only {coloured} coloured pixels: no markers drawn?"
    );
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "files in the report folder: {names:?}");
}

/// Output paths are checked before any work: an output that is one of the command's inputs
/// (also through a symbolic or a hard link) is refused and the input is left as it was; an
/// output in a missing directory fails at once, before training.
#[test]
fn outputs_never_replace_inputs_and_are_checked_first() {
    let layer = "mtcnn_pnet_conv3_trainable";
    let dir = tmp("outputs");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = |name: &str| {
        let p = dir.join(name);
        std::fs::copy(fixture(layer, name), &p).unwrap();
        p
    };
    let (input, weight, bias) = (copy("test.npy"), copy("weight.npy"), copy("bias.npy"));
    let link = dir.join("link.npy");
    let hard = dir.join("hard.npy");
    let _ = std::fs::remove_file(&link);
    let _ = std::fs::remove_file(&hard);
    std::os::unix::fs::symlink(&input, &link).unwrap();
    std::fs::hard_link(&weight, &hard).unwrap();
    let before: Vec<Vec<u8>> = [&input, &weight, &bias]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let conv = |out: &Path| {
        maddconv()
            .args(["conv", "--cpu", "--input"])
            .arg(&input)
            .arg("--weight")
            .arg(&weight)
            .arg("--bias")
            .arg(&bias)
            .arg("-o")
            .arg(out)
            .output()
            .unwrap()
    };
    for out in [&input, &weight, &bias, &link, &hard] {
        let o = conv(out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "-o {}: {err}", out.display());
        assert!(
            err.contains("(the same file)"),
            "-o {}: {err}",
            out.display()
        );
    }
    // train -o naming its weight, and run -o naming its table file.
    let o = train_output(&weight, &bias, &input, &weight);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("(the same file)"),
        "{err}"
    );
    let after: Vec<Vec<u8>> = [&input, &weight, &bias]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(before == after, "an input file was changed");

    // A missing output directory fails before the (slow) training starts.
    let o = train_output(
        &weight,
        &bias,
        &fixture(layer, "train.npy"),
        &dir.join("no-such-dir/t.safetensors"),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("does not exist") && err.contains("no-such-dir"),
        "{err}"
    );
    assert!(
        !err.contains("trained"),
        "it trained before checking the output: {err}"
    );

    // A directory as the output.
    let o = conv(&dir);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("is a directory"),
        "{err}"
    );
}

/// Finite inputs whose sums overflow f32 give an error naming the count and the first index
/// (GPU and CPU alike), and inputs with NaN are refused on both paths; no output is written.
#[test]
fn overflow_and_nan_are_never_silent() {
    let layer = "silero_L02_blocks";
    let x = Tensor::read_npy(fixture(layer, "test.npy")).unwrap();
    let big = Tensor::new(
        x.shape().to_vec(),
        x.data()
            .iter()
            .map(|v| if *v >= 0.0 { 3e38 } else { -3e38 })
            .collect(),
    )
    .unwrap();
    let mut nan = x.clone();
    nan.data_mut()[5] = f32::NAN;
    let (big_path, nan_path) = (tmp("big.npy"), tmp("nan.npy"));
    big.write_npy(&big_path).unwrap();
    nan.write_npy(&nan_path).unwrap();
    for cpu in [true, false] {
        if !cpu && common::gpu().is_none() {
            continue;
        }
        for (input, needle) in [
            (&big_path, "non-finite output value(s) from finite inputs"),
            (&nan_path, "non-finite value NaN at flat index 5"),
        ] {
            let out = tmp(&format!("overflow_{cpu}.npy"));
            let mut cmd = maddconv();
            conv_args_on(&mut cmd, input, layer, &out);
            cmd.args(["--stride", "2", "--padding", "1"]);
            let o = output_on(cmd, cpu);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(
                o.status.code(),
                Some(1),
                "cpu={cpu} {}: {err}",
                input.display()
            );
            assert!(
                err.contains(needle),
                "cpu={cpu}: expected {needle:?} in {err}"
            );
            assert!(!out.exists(), "cpu={cpu}: an output was written");
        }
    }
}

/// `tune` fills the cache named by MADDCONV_TUNE_CACHE (one file for the adapter, an entry per
/// shape class), `info` lists it, a second `tune` times nothing new, and `--no-tune` turns it
/// off: `tune` refuses, `info` says so.
#[test]
fn tune_fills_the_cache_and_info_lists_it() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("tune-cli-cache");
    let _ = std::fs::remove_dir_all(&dir);
    let tune = || {
        maddconv()
            .env(maddconv::gpu::tune::CACHE_ENV, &dir)
            .args(["tune", "--small", "--no-cnn", "--codebooks", ""])
            .output()
            .unwrap()
    };
    let out = tune();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tune failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("| direct |"), "{stdout}");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1, "one cache file per adapter");
    let path = files[0].as_ref().unwrap().path();
    let cache: maddconv::gpu::tune::CacheFile =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(cache.entries.keys().all(|k| k.starts_with("direct/any/")));
    assert!(!cache.entries.is_empty());
    let again = tune();
    assert!(again.status.success());
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout
            .lines()
            .filter(|l| l.contains("| direct |"))
            .all(|l| l.contains("not timed")),
        "a second tune timed again: {stdout}"
    );
    let info = maddconv()
        .env(maddconv::gpu::tune::CACHE_ENV, &dir)
        .arg("info")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains(&path.display().to_string()), "{text}");
    for class in cache.entries.keys() {
        assert!(text.contains(class.as_str()), "info lacks {class}: {text}");
    }
    let off = maddconv()
        .args(["--no-tune", "tune", "--small"])
        .output()
        .unwrap();
    assert!(!off.status.success());
    assert!(String::from_utf8_lossy(&off.stderr).contains("--no-tune"));
    let info = maddconv().args(["info", "--no-tune"]).output().unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("tuning:       off"));
}

/// `train --depth 6` writes tables of 64 buckets whose GPU and CPU evaluations agree; a depth
/// outside 4..=8 is refused naming it, before any output is written.
#[test]
fn deeper_trees_train_and_evaluate_alike_on_gpu_and_cpu() {
    if common::gpu().is_none() {
        return;
    }
    let layer = "mtcnn_pnet_conv3_trainable";
    let train = |depth: &str, out: &Path| {
        train_fixture(layer, &["--codebooks", "8", "--depth", depth], out)
    };
    let tables = tmp("deep.safetensors");
    let o = train("6", &tables);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = maddconv::maddness::Tables::load(&tables).unwrap();
    assert_eq!((t.depth, t.buckets()), (6, 64));
    let nmse = eval_nmse_gpu_and_cpu(&tables, layer);
    assert!(
        (nmse[0] - nmse[1]).abs() <= 1e-6 * nmse[1].abs().max(1e-12),
        "GPU vs CPU NMSE {nmse:?}"
    );
    assert!(
        nmse[0] < 0.9,
        "depth-6 tables fit nothing: NMSE {}",
        nmse[0]
    );
    let refused = tmp("too_deep.safetensors");
    let o = train("9", &refused);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("tree depth 9") && err.contains("4 to 8"),
        "{err}"
    );
    assert!(!refused.exists());
}
