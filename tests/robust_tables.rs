//! Issue 15, files: a table file edited after training is refused (checksum); an older file
//! without a checksum loads with a warning; files that are not table files (a `.npy`, a header
//! length that lies, `/dev/zero`, a huge file) are refused by name without being read whole; a
//! missing tensor is named with what it is for; a truncated `.npy` names the sizes; an OS error
//! is printed once.

mod maddness_common;

use std::path::PathBuf;
use std::sync::Mutex;

use maddconv::maddness::file::{content_checksum, CHECKSUM_KEY, MAX_HEADER_BYTES};
use maddconv::maddness::Tables;
use maddconv::{ConvSpec, Error, Tensor};

/// Tables with a bias and float tables, stride and padding 1 (so that edits of both show).
fn tables() -> Tables {
    let mut spec = ConvSpec::conv2d(3, 4, 3, 3);
    spec.bias = true;
    spec.padding = vec![1, 1, 1, 1];
    maddness_common::train_random(&spec, 5, &[4, 3, 6, 6], 4, 3)
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("maddconv-robust-tables-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The header JSON and the data of a table file.
fn split(bytes: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

fn join(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// Where tensor `name`'s data start, in the whole file.
fn tensor_start(bytes: &[u8], name: &str) -> usize {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let (header, _) = split(bytes);
    8 + n + header[name]["data_offsets"][0].as_u64().unwrap() as usize
}

/// Replaces `from` by `to` (same length: the header keeps its size) in the file's bytes.
fn edit_in_place(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("{from} not in the header"));
    let mut b = bytes.to_vec();
    b[at..at + to.len()].copy_from_slice(to.as_bytes());
    b
}

fn expect_modified(what: &str, bytes: &[u8]) -> String {
    match Tables::from_bytes(bytes, "edited.safetensors") {
        Err(e @ Error::TableModified { .. }) => {
            let msg = e.to_string();
            let Error::TableModified {
                expected, found, ..
            } = &e
            else {
                unreachable!()
            };
            assert!(
                msg.starts_with("the table file was modified after training: edited.safetensors")
                    && msg.contains(expected.as_str())
                    && msg.contains(found.as_str())
                    && expected != found
                    && expected.starts_with("sha256:")
                    && found.len() == "sha256:".len() + 64,
                "{what}: {msg}"
            );
            msg
        }
        Ok(_) => panic!("{what}: the edited file loaded"),
        Err(e) => panic!("{what}: wrong error {e}"),
    }
}

fn expect_table_error(what: &str, r: maddconv::Result<Tables>, needles: &[&str]) -> String {
    match r {
        Err(e @ Error::TableFile { .. }) => {
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "{what}: {msg:?} lacks {n:?}");
            }
            msg
        }
        Ok(_) => panic!("{what}: loaded"),
        Err(e) => panic!("{what}: wrong error {e:?}"),
    }
}

#[test]
fn files_carry_a_checksum_that_does_not_depend_on_the_layout() {
    let t = tables();
    let bytes = t.to_bytes().unwrap();
    let (header, data) = split(&bytes);
    let stored = header["__metadata__"][CHECKSUM_KEY].as_str().unwrap();
    assert_eq!(stored, content_checksum(&bytes).unwrap());
    // The same contents laid out differently (pretty-printed header) have the same checksum
    // and load.
    let h = serde_json::to_vec_pretty(&header).unwrap();
    let mut pretty = (h.len() as u64).to_le_bytes().to_vec();
    pretty.extend_from_slice(&h);
    pretty.extend_from_slice(&data);
    assert_ne!(pretty, bytes);
    assert_eq!(content_checksum(&pretty).unwrap(), stored);
    assert_eq!(Tables::from_bytes(&pretty, "pretty").unwrap(), t);
}

#[test]
fn edited_tables_are_refused() {
    let t = tables();
    let bytes = t.to_bytes().unwrap();

    // One LUT byte.
    let mut b = bytes.clone();
    b[tensor_start(&bytes, "luts") + 7] ^= 0x01;
    let msg = expect_modified("flipped LUT byte", &b);
    eprintln!("flipped LUT byte: {msg}");

    // A scale set to 3e38 (finite and positive: every other check passes).
    let mut b = bytes.clone();
    let at = tensor_start(&bytes, "scales") + 4;
    b[at..at + 4].copy_from_slice(&3e38f32.to_le_bytes());
    expect_modified("scale 3e38", &b);

    // A split dimension changed to another one in range.
    let mut b = bytes.clone();
    let at = tensor_start(&bytes, "split_dims");
    let d = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    b[at..at + 4].copy_from_slice(&((d + 1) % 27).to_le_bytes());
    expect_modified("split dimension", &b);

    // The spec in the JSON header, edited in place (stride, dilation, padding, kernel).
    for (from, to) in [
        ("\\\"stride\\\":[1,1]", "\\\"stride\\\":[2,1]"),
        ("\\\"dilation\\\":[1,1]", "\\\"dilation\\\":[1,2]"),
        ("\\\"padding\\\":[1,1,1,1]", "\\\"padding\\\":[0,1,1,1]"),
        ("\\\"kernel\\\":[3,3]", "\\\"kernel\\\":[3,2]"),
    ] {
        expect_modified(to, &edit_in_place(&bytes, from, to));
    }
    // Through a file too, naming its path.
    let path = dir().join("edited.safetensors");
    std::fs::write(&path, &b).unwrap();
    let e = Tables::load(&path).unwrap_err();
    assert!(
        matches!(e, Error::TableModified { .. })
            && e.to_string().contains(&*path.to_string_lossy()),
        "{e}"
    );
    // The checksum itself edited.
    let sum = content_checksum(&bytes).unwrap();
    let mut other = sum.clone();
    other.replace_range(10..11, if &sum[10..11] == "0" { "1" } else { "0" });
    expect_modified("checksum", &edit_in_place(&bytes, &sum, &other));
}

/// Collects the log records of this test binary.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        if r.level() <= log::Level::Warn {
            self.0.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

static LOG: Capture = Capture(Mutex::new(Vec::new()));

#[test]
fn files_without_a_checksum_load_with_a_warning() {
    let _ = log::set_logger(&LOG);
    log::set_max_level(log::LevelFilter::Warn);
    let t = tables();
    let (mut header, data) = split(&t.to_bytes().unwrap());
    header["__metadata__"]
        .as_object_mut()
        .unwrap()
        .remove(CHECKSUM_KEY);
    let old = join(&header, &data);
    assert_eq!(Tables::from_bytes(&old, "old.safetensors").unwrap(), t);
    let warnings = LOG.0.lock().unwrap().clone();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("old.safetensors") && w.contains("no checksum")),
        "{warnings:?}"
    );
    // Unsigned files get every other check: a missing tensor is named with what it is for.
    // The bias removed from the header by hand (its data left in place, as an editor would).
    let mut h = header.clone();
    h.as_object_mut().unwrap().remove("bias");
    expect_table_error(
        "bias removed by hand",
        Tables::from_bytes(&join(&h, &data), "nobias.safetensors"),
        &[
            "nobias.safetensors",
            "the table file has no `bias` tensor, but its spec says the layer has a bias",
        ],
    );
    let mut h = header.clone();
    h.as_object_mut().unwrap().remove("luts");
    expect_table_error(
        "luts removed",
        Tables::from_bytes(&join(&h, &data), "noluts"),
        &["tensor luts (the 8-bit look-up tables) is missing"],
    );
    // A signed file with the bias removed is, first of all, modified.
    let (mut h, data) = split(&t.to_bytes().unwrap());
    h.as_object_mut().unwrap().remove("bias");
    expect_modified("signed, bias removed", &join(&h, &data));
}

#[test]
fn files_that_are_not_tables_are_refused_by_name() {
    let d = dir();
    // A .npy given as a table file.
    let npy = d.join("x.npy");
    Tensor::zeros(vec![2, 3]).unwrap().write_npy(&npy).unwrap();
    let msg = expect_table_error(
        ".npy as table",
        Tables::load(&npy),
        &["x.npy", "is a .npy file, not a table file"],
    );
    eprintln!(".npy as table: {msg}");
    let bytes = std::fs::read(&npy).unwrap();
    expect_table_error(
        ".npy bytes as table",
        Tables::from_bytes(&bytes, "x.npy"),
        &["is a .npy file, not a table file"],
    );

    // A header length larger than the file.
    let mut b = 380_000_000_000_000u64.to_le_bytes().to_vec();
    b.extend_from_slice(b"{}");
    let msg = expect_table_error(
        "lying header length",
        Tables::from_bytes(&b, "lies.safetensors"),
        &["380000000000000", "only 2 follow"],
    );
    eprintln!("lying header length: {msg}");

    // A header length larger than any table file's header, in a (sparse) file that is larger
    // still.
    let big = d.join("big-header.safetensors");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    let mut start = (32u64 << 20).to_le_bytes().to_vec();
    start.push(b'{');
    write_at_start(&big, &start);
    let msg = expect_table_error(
        "huge header",
        Tables::load(&big),
        &["33554432", &MAX_HEADER_BYTES.to_string()],
    );
    eprintln!("huge header: {msg}");

    // A valid table file followed by a terabyte of holes: refused without reading it (the
    // test would run for minutes and run out of memory otherwise).
    let t = tables().to_bytes().unwrap();
    let huge = d.join("huge.safetensors");
    std::fs::write(&huge, &t).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&huge).unwrap();
    if f.set_len(1 << 40).is_ok() {
        drop(f);
        let clock = std::time::Instant::now();
        let msg = expect_table_error(
            "huge file",
            Tables::load(&huge),
            &["data bytes after its header, more than"],
        );
        assert!(clock.elapsed().as_secs() < 5, "took {:?}", clock.elapsed());
        eprintln!("huge file: {msg}");
    }
    let _ = std::fs::remove_file(&huge);
    let _ = std::fs::remove_file(&big);

    // /dev/zero, a directory.
    if std::path::Path::new("/dev/zero").exists() {
        let msg = expect_table_error(
            "/dev/zero",
            Tables::load("/dev/zero"),
            &["/dev/zero", "not a regular file"],
        );
        eprintln!("/dev/zero: {msg}");
    }
    expect_table_error("directory", Tables::load(&d), &["not a regular file"]);
}

fn write_at_start(path: &std::path::Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn truncated_npy_names_the_sizes() {
    let x = Tensor::zeros(vec![4, 5]).unwrap();
    let bytes = x.to_npy_bytes();
    let header = bytes.len() - 80;
    let cut = &bytes[..bytes.len() - 13];
    let e = Tensor::from_npy_bytes(cut, "cut.npy").unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, Error::Npy { .. })
            && msg.contains("cut.npy")
            && msg.contains("[4, 5]")
            && msg.contains("needs 80 data bytes")
            && msg.contains(&format!("{header}-byte header"))
            && msg.contains("holds only 67"),
        "{msg}"
    );
    eprintln!("truncated npy: {msg}");
    // From a file, and from a pipe (size unknown: found at the end of the data).
    let path = dir().join("cut.npy");
    std::fs::write(&path, cut).unwrap();
    let msg = Tensor::read_npy(&path).unwrap_err().to_string();
    assert!(
        msg.contains("needs 80 data bytes") && msg.contains("holds only 67"),
        "{msg}"
    );
    #[cfg(unix)]
    {
        let fifo = dir().join("cut.fifo");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        let (f2, data) = (fifo.clone(), cut.to_vec());
        let writer = std::thread::spawn(move || std::fs::write(f2, data).unwrap());
        let msg = Tensor::read_npy(&fifo).unwrap_err().to_string();
        writer.join().unwrap();
        assert!(
            msg.contains("needs 80 data bytes") && msg.contains("holds only 67"),
            "{msg}"
        );
    }
    // Cut inside the header.
    let msg = Tensor::from_npy_bytes(&bytes[..20], "h.npy")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("ends inside the .npy header"), "{msg}");
}

#[test]
fn os_errors_are_printed_once() {
    let e = Tensor::read_npy(dir().join("missing.npy")).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("missing.npy") && msg.contains("os error 2"),
        "{msg}"
    );
    // The OS error is in the message, not repeated by the chain of causes.
    assert!(std::error::Error::source(&e).is_none(), "{e:?}");
    let chain = format!("{:#}", anyhow::Error::from(e));
    assert_eq!(chain.matches("os error 2").count(), 1, "{chain}");
}

/// The `npy_file` fuzz target's stall and out-of-memory (kept in its seeds): a header of 40
/// unclosed `[`, which npyz's parser took ~2^40 steps over (built from the grammar; libFuzzer
/// with -timeout=10 reports it as a timeout on the old reader), and a 21-byte version 3.0 file
/// the fuzzer found whose header length says 3.6 GB (npyz allocated it). Both are refused at
/// once, by what is wrong.
#[test]
fn npy_headers_found_by_fuzzing_are_refused_quickly() {
    let cases: [(&str, &[u8], &str); 2] = [
        (
            "slow_nested_list_header.npy",
            include_bytes!("../fuzz/seeds/npy_file/slow_nested_list_header.npy"),
            "nests brackets more than",
        ),
        (
            "oom_v3_header_len.npy",
            include_bytes!("../fuzz/seeds/npy_file/oom_v3_header_len.npy"),
            "the header states a length of 3632594828 bytes",
        ),
    ];
    for (name, bytes, want) in cases {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(Tensor::from_npy_bytes(bytes, name).map_err(|e| e.to_string()));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{name}: reading took more than 10 s"));
        let msg = got.expect_err(name);
        assert!(msg.contains(name) && msg.contains(want), "{name}: {msg}");
        eprintln!("{name}: {msg}");
    }
}
