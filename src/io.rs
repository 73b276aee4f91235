//! Atomic, kill-safe file output.
//!
//! [`write_atomic`] writes a file into a temporary `.NAME.tmp-PID` next to it and renames that
//! over `NAME` once it is complete and synced, so a reader never sees a half-written output and
//! a failed write leaves the old file as it was. What is left when the process dies mid-write:
//!
//! * an error or a panic in the writer: nothing (the temporary is removed);
//! * SIGINT, SIGTERM or SIGHUP, in a program that called [`install_signal_cleanup`] (the
//!   `maddconv` binary does): nothing — the temporaries being written are removed and the
//!   process exits with status 128 + the signal's number (130, 143, 129);
//! * anything else (SIGKILL, a power cut, a program that did not install the cleanup): at most
//!   the temporary, which the next [`write_atomic`] to the same path removes, since no process
//!   with its PID runs any more.
//!
//! On targets without processes and files (wasm32) nothing here is called.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

/// The temporaries being written by this process. Creating, renaming and removing one happens
/// under this lock, so the signal thread never races a write: once it holds the lock, no
/// temporary is created or renamed any more until the process exits.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> MutexGuard<'static, Vec<PathBuf>> {
    // A writer that panicked cannot leave the list in an inconsistent state.
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes a file through `write`, atomically: into a temporary file in the same directory
/// (`.NAME.tmp-PID`), then renamed over `path`. On any failure, and on a panic in `write`, the
/// temporary is removed and `path` is untouched; temporaries of the same path left by processes
/// that no longer run (killed mid-write) are removed first. See the [module docs](self) for
/// signals.
// On wasm32 `File` has no destructor; the explicit drop still says when the file is closed.
#[cfg_attr(target_arch = "wasm32", allow(clippy::drop_non_drop))]
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::Argument(format!("output path {} names no file", path.display())))?
        .to_string_lossy()
        .into_owned();
    remove_stale_temps(&dir, &name);
    let tmp = dir.join(temp_name(&name, std::process::id()));
    let file = {
        let mut list = pending();
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(path, e))?;
        list.push(tmp.clone());
        file
    };
    let mut guard = TempGuard {
        path: tmp,
        renamed: false,
    };
    let result = (|| -> std::io::Result<()> {
        {
            let mut w = std::io::BufWriter::new(&file);
            write(&mut w)?;
            w.flush()?;
        }
        file.sync_all()?;
        drop(file);
        let mut list = pending();
        std::fs::rename(&guard.path, path)?;
        guard.renamed = true;
        list.retain(|t| t != &guard.path);
        Ok(())
    })();
    drop(guard);
    result.map_err(|e| Error::io(path, e))
}

/// Removes its temporary file unless it was renamed into place (on errors and panics).
struct TempGuard {
    path: PathBuf,
    renamed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if !self.renamed {
            let mut list = pending();
            let _ = std::fs::remove_file(&self.path);
            list.retain(|t| t != &self.path);
        }
    }
}

fn temp_name(name: &str, pid: u32) -> String {
    format!(".{name}.tmp-{pid}")
}

/// Removes `.NAME.tmp-PID` files in `dir` whose process no longer runs. Best effort: errors
/// (an unreadable directory, a file removed meanwhile) are ignored, and where liveness cannot be
/// checked nothing is removed.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix.as_str()))
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != own && process_is_gone(pid) && std::fs::remove_file(entry.path()).is_ok() {
            log::info!(
                "removed {}, left by process {pid} (no longer running) in an interrupted write",
                entry.path().display()
            );
        }
    }
}

/// True only when no process with this PID exists.
#[cfg(unix)]
fn process_is_gone(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // Signal 0 checks for existence without sending anything; EPERM means it exists.
    // SAFETY: kill with signal 0 has no effect on any process.
    let r = unsafe { libc::kill(pid, 0) };
    r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Without a cheap, dependency-free liveness check, stale temporaries are kept.
#[cfg(not(unix))]
fn process_is_gone(_pid: u32) -> bool {
    false
}

/// Makes SIGINT, SIGTERM and SIGHUP remove the temporaries [`write_atomic`] is writing, then
/// exit the process with status 128 + the signal's number (130, 143, 129), with a line on stderr.
/// Call it once at the start of a program (later calls do nothing); the `maddconv` binary does.
///
/// A library does not do this by itself: it would take these signals away from a program that
/// handles them. Without it a signal leaves at most the temporary, which the next write to the
/// same path removes. On non-Unix targets this does nothing.
pub fn install_signal_cleanup() -> Result<()> {
    #[cfg(unix)]
    {
        static INSTALLED: std::sync::OnceLock<std::result::Result<(), String>> =
            std::sync::OnceLock::new();
        INSTALLED
            .get_or_init(install_unix)
            .clone()
            .map_err(Error::Argument)
    }
    #[cfg(not(unix))]
    {
        Ok(())
    }
}

#[cfg(unix)]
fn install_unix() -> std::result::Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("installing the signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("maddconv-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                // Held until the exit: no write creates or renames a temporary after this.
                let list = pending();
                let removed: Vec<String> = list
                    .iter()
                    .filter(|t| std::fs::remove_file(t).is_ok())
                    .map(|t| t.display().to_string())
                    .collect();
                let name = match signal {
                    SIGINT => "SIGINT",
                    SIGTERM => "SIGTERM",
                    _ => "SIGHUP",
                };
                let what = if removed.is_empty() {
                    String::new()
                } else {
                    format!("; removed the unfinished {}", removed.join(", "))
                };
                // stderr may be gone (SIGHUP from a closed terminal): ignore write errors.
                let _ = writeln!(std::io::stderr(), "maddconv: stopped by {name}{what}");
                // _exit: no atexit handlers or destructors running beside other threads.
                signal_hook::low_level::exit(128 + signal);
            }
        })
        .map_err(|e| format!("starting the signal thread: {e}"))?;
    Ok(())
}
