//! Issue 15, kill-safety of output files: SIGINT, SIGTERM or SIGHUP in the middle of a write
//! remove the temporary and exit with 128 + the signal (the old output intact); SIGKILL leaves
//! the temporary, which the next write to that path removes; a live process's temporary is
//! kept. The writer is this test binary itself, started again in "child" mode, and the
//! `maddconv` binary writing a large `conv` output.
#![cfg(unix)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use maddconv::io::{install_signal_cleanup, write_atomic};
use maddconv::Tensor;

const CHILD_OUT: &str = "MADDCONV_ROBUST_CHILD_OUT";

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "maddconv-robust-signals-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Not a test of its own: in the child (the variable set), writes its output slowly, forever.
#[test]
fn child_slow_writer() {
    let Some(out) = std::env::var_os(CHILD_OUT) else {
        return;
    };
    install_signal_cleanup().unwrap();
    let r = write_atomic(Path::new(&out), |w| {
        let clock = Instant::now();
        while clock.elapsed() < Duration::from_secs(60) {
            w.write_all(&[7u8; 4096])?;
            w.flush()?;
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    });
    panic!("the child was not stopped: {r:?}");
}

fn start_child(out: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_slow_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_OUT, out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn temp_of(out: &Path, pid: u32) -> PathBuf {
    let name = out.file_name().unwrap().to_string_lossy();
    out.with_file_name(format!(".{name}.tmp-{pid}"))
}

/// Waits until `path` exists and holds at least `bytes` bytes.
fn wait_for(path: &Path, bytes: u64, child: &mut Child) {
    let clock = Instant::now();
    loop {
        if std::fs::metadata(path).is_ok_and(|m| m.len() >= bytes) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the writer ended ({status}) before {} appeared",
                path.display()
            );
        }
        assert!(
            clock.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sends a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn int_term_and_hup_remove_the_temporary_and_exit_128_plus_the_signal() {
    for (sig, name) in [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        let d = dir(name);
        let out = d.join("out.bin");
        std::fs::write(&out, b"the old output").unwrap();
        let mut child = start_child(&out);
        let tmp = temp_of(&out, child.id());
        wait_for(&tmp, 64 << 10, &mut child);
        signal(&child, sig);
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(128 + sig),
            "{name}: {:?} {err}",
            o.status
        );
        assert!(
            err.contains(&format!("stopped by {name}; removed the unfinished"))
                && err.contains(&*tmp.to_string_lossy()),
            "{name}: {err}"
        );
        assert_eq!(std::fs::read(&out).unwrap(), b"the old output", "{name}");
        assert_eq!(names(&d), ["out.bin"], "{name}: files left");
        std::fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn sigkill_leaves_a_temporary_that_the_next_write_removes() {
    let d = dir("kill");
    let out = d.join("out.npy");
    std::fs::write(&out, b"the old output").unwrap();
    let mut child = start_child(&out);
    let tmp = temp_of(&out, child.id());
    wait_for(&tmp, 64 << 10, &mut child);
    signal(&child, libc::SIGKILL);
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(
        tmp.exists(),
        "SIGKILL cannot be handled: the temporary stays"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"the old output");
    // The next write to that path (another process: this one) removes it.
    let x = Tensor::zeros(vec![3]).unwrap();
    x.write_npy(&out).unwrap();
    assert_eq!(names(&d), ["out.npy"]);
    assert_eq!(Tensor::read_npy(&out).unwrap(), x);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn temporaries_of_running_processes_and_other_files_are_kept() {
    let d = dir("live");
    let out = d.join("out.npy");
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let live = temp_of(&out, sleeper.id());
    let other_path = d.join(".other.npy.tmp-1234567");
    let not_a_pid = d.join(".out.npy.tmp-x1");
    for p in [&live, &other_path, &not_a_pid] {
        std::fs::write(p, b"partial").unwrap();
    }
    // A dead process's temporary of the same path goes.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let dead = temp_of(&out, gone.id());
    std::fs::write(&dead, b"partial").unwrap();

    Tensor::zeros(vec![2]).unwrap().write_npy(&out).unwrap();
    assert!(!dead.exists(), "the dead process's temporary was kept");
    assert!(live.exists() && other_path.exists() && not_a_pid.exists());
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}

/// `maddconv conv` writing a 256 MB output, stopped by SIGTERM once the temporary has some of
/// it: exit status 143, the old output intact, no temporary left.
#[test]
fn cli_conv_stopped_mid_write_keeps_the_old_output() {
    let d = dir("cli");
    let (input, weight, out) = (d.join("x.npy"), d.join("w.npy"), d.join("y.npy"));
    Tensor::new(vec![1, 1, 2048, 2048], vec![0.5; 2048 * 2048])
        .unwrap()
        .write_npy(&input)
        .unwrap();
    Tensor::new(vec![16, 1, 1, 1], vec![2.0; 16])
        .unwrap()
        .write_npy(&weight)
        .unwrap();
    std::fs::write(&out, b"the old output").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_maddconv"))
        .args(["conv", "--cpu", "--input"])
        .arg(&input)
        .arg("--weight")
        .arg(&weight)
        .arg("-o")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tmp = temp_of(&out, child.id());
    wait_for(&tmp, 1 << 20, &mut child);
    signal(&child, libc::SIGTERM);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(143), "{:?}: {err}", o.status);
    assert!(
        err.contains("stopped by SIGTERM; removed the unfinished"),
        "{err}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"the old output");
    assert_eq!(names(&d), ["w.npy", "x.npy", "y.npy"]);
    std::fs::remove_dir_all(&d).unwrap();
}
