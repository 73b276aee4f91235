//! The table file: round trip, and a corrupted file per field (dtype, shape, out-of-range
//! dimension, NaN, bad version, missing and unexpected tensors, truncation, garbage, bad JSON,
//! crafted offsets): every one is an error naming the problem, never a panic.

mod maddness_common;

use std::collections::HashMap;

use maddconv::maddness::file::{content_checksum, CHECKSUM_KEY, FORMAT_NAME, FORMAT_VERSION};
use maddconv::maddness::{HeldOut, Tables};
use maddconv::{ConvSpec, Error};
use maddness_common::{Rng, TensorRng};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// Small tables with bias and float tables (groups 2, C = 5, so nothing lines up by accident).
fn tables() -> Tables {
    let mut spec = ConvSpec::conv2d(4, 6, 3, 3);
    spec.groups = 2;
    spec.bias = true;
    spec.padding = vec![1, 1, 1, 1];
    let mut t = maddness_common::train_random(&spec, 9, &[3, 4, 7, 7], 5, 17);
    t.meta.sources = vec!["x.npy".into()];
    t.meta.heldout = Some(HeldOut {
        source: "t.npy".into(),
        nmse: 0.25,
        nmse_f32_tables: Some(0.2),
        nmse_after_activation: Some(0.1),
    });
    t
}

struct Parts {
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    meta: HashMap<String, String>,
}

fn parts(bytes: &[u8]) -> Parts {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let (_, m) = SafeTensors::read_metadata(bytes).unwrap();
    let meta = m.metadata().clone().unwrap().into_iter().collect();
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    Parts { tensors, meta }
}

/// The file of these parts, as is.
fn build_raw(p: &Parts) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = p
        .tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, Some(p.meta.clone().into_iter().collect())).unwrap()
}

/// The file of these parts with its checksum recomputed (if it has one), so that the loader's
/// other checks are reached.
fn build(p: &Parts) -> Vec<u8> {
    let bytes = build_raw(p);
    if !p.meta.contains_key(CHECKSUM_KEY) {
        return bytes;
    }
    let mut p2 = Parts {
        tensors: p.tensors.clone(),
        meta: p.meta.clone(),
    };
    p2.meta
        .insert(CHECKSUM_KEY.into(), content_checksum(&bytes).unwrap());
    build_raw(&p2)
}

fn tensor<'a>(p: &'a mut Parts, name: &str) -> &'a mut (String, Dtype, Vec<usize>, Vec<u8>) {
    p.tensors.iter_mut().find(|t| t.0 == name).unwrap()
}

/// Loads the bytes, expecting a table-file error whose message holds every `needle`.
fn expect_error(what: &str, bytes: &[u8], needles: &[&str]) {
    match Tables::from_bytes(bytes, "corrupt.safetensors") {
        Ok(_) => panic!("{what}: the corrupt file loaded"),
        Err(e @ Error::TableFile { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("corrupt.safetensors"), "{what}: {msg}");
            for n in needles {
                assert!(msg.contains(n), "{what}: message {msg:?} lacks {n:?}");
            }
        }
        Err(e) => panic!("{what}: wrong error kind {e:?}"),
    }
}

#[test]
fn round_trip_through_bytes_and_file() {
    let t = tables();
    let bytes = t.to_bytes().unwrap();
    assert_eq!(Tables::from_bytes(&bytes, "mem").unwrap(), t);
    let p = parts(&bytes);
    assert_eq!(p.meta["format"], FORMAT_NAME);
    // Depth-4 tables are written as version 1, which every maddconv reads.
    assert_eq!(p.meta["format_version"], "1");
    let header: serde_json::Value = serde_json::from_str(&p.meta["maddconv"]).unwrap();
    for key in [
        "spec",
        "codebooks",
        "lambda",
        "windows_trained",
        "seed",
        "max_windows",
        "sources",
        "train_seconds",
        "heldout",
    ] {
        assert!(header.get(key).is_some(), "metadata lacks {key}: {header}");
    }
    assert_eq!(header["spec"]["groups"], 2);
    let dir = std::env::temp_dir().join(format!("maddconv-file-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.safetensors");
    t.save(&path).unwrap();
    assert_eq!(Tables::load(&path).unwrap(), t);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "t.safetensors")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    // Without bias and float tables.
    let mut t2 = t.clone();
    t2.spec.bias = false;
    t2.bias = None;
    t2.luts_f32 = None;
    t2.meta.heldout = None;
    assert_eq!(
        Tables::from_bytes(&t2.to_bytes().unwrap(), "mem").unwrap(),
        t2
    );
    // A missing file and an unwritable path are I/O errors.
    assert!(matches!(
        Tables::load(dir.join("none.safetensors")),
        Err(Error::Io { .. })
    ));
    assert!(matches!(
        t.save(dir.join("no/such/dir/t.safetensors")),
        Err(Error::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_fields_are_named() {
    let t = tables();
    let good = parts(&t.to_bytes().unwrap());
    let d = 2 * 9;

    let mut p = parts(&build(&good));
    tensor(&mut p, "thresholds").1 = Dtype::U32;
    expect_error("wrong dtype", &build(&p), &["thresholds", "dtype"]);

    let mut p = parts(&build(&good));
    tensor(&mut p, "luts").2 = vec![2, 5, 8, 6];
    expect_error("wrong shape", &build(&p), &["luts", "shape"]);

    let mut p = parts(&build(&good));
    tensor(&mut p, "split_dims").3[8..12].copy_from_slice(&(d as u32).to_le_bytes());
    expect_error("dim out of range", &build(&p), &["split_dims[2]", "18"]);

    let mut p = parts(&build(&good));
    tensor(&mut p, "thresholds").3[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    expect_error("NaN threshold", &build(&p), &["thresholds", "index 1"]);

    let mut p = parts(&build(&good));
    tensor(&mut p, "lut_offsets").3[0..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    expect_error("infinite offset", &build(&p), &["lut_offsets"]);

    let mut p = parts(&build(&good));
    tensor(&mut p, "scales").3[4..8].copy_from_slice(&(-1.0f32).to_le_bytes());
    expect_error("negative scale", &build(&p), &["scales[1]"]);

    let mut p = parts(&build(&good));
    tensor(&mut p, "luts_f32").3[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
    expect_error("NaN float table", &build(&p), &["luts_f32"]);

    let mut p = parts(&build(&good));
    tensor(&mut p, "bias").3[0..4].copy_from_slice(&f32::NEG_INFINITY.to_le_bytes());
    expect_error("infinite bias", &build(&p), &["bias"]);

    for (v, needle) in [
        ("2", "version 2 needs a tree depth"),
        ("3", "version 3"),
        ("0", "version 0"),
        ("one", "not a number"),
    ] {
        let mut p = parts(&build(&good));
        p.meta.insert("format_version".into(), v.into());
        expect_error("bad version", &build(&p), &[needle]);
    }
    let mut p = parts(&build(&good));
    p.meta.remove("format_version");
    expect_error("no version", &build(&p), &["format_version", "missing"]);
    let mut p = parts(&build(&good));
    p.meta.insert("format".into(), "pytorch".into());
    expect_error("other format", &build(&p), &["pytorch"]);

    for name in [
        "luts",
        "split_dims",
        "thresholds",
        "lut_offsets",
        "scales",
        "bias",
    ] {
        let mut p = parts(&build(&good));
        p.tensors.retain(|t| t.0 != name);
        let bytes = build(&p);
        if name == "bias" {
            expect_error("missing bias", &bytes, &["bias"]);
        } else {
            expect_error("missing tensor", &bytes, &[name, "missing"]);
        }
    }
    let mut p = parts(&build(&good));
    p.tensors
        .push(("extra".into(), Dtype::U8, vec![1], vec![0]));
    expect_error("unexpected tensor", &build(&p), &["extra"]);
    // A bias in a file whose spec has none.
    let mut p = parts(&build(&good));
    let fixed = p.meta["maddconv"].replace("\"bias\":true", "\"bias\":false");
    p.meta.insert("maddconv".into(), fixed);
    expect_error("bias not in spec", &build(&p), &["bias"]);

    // Metadata JSON.
    let mut p = parts(&build(&good));
    p.meta.insert("maddconv".into(), "{not json".into());
    expect_error("bad metadata JSON", &build(&p), &["maddconv"]);
    let mut p = parts(&build(&good));
    p.meta.remove("maddconv");
    expect_error("no metadata", &build(&p), &["maddconv", "missing"]);
    let mut p = parts(&build(&good));
    let bad = p.meta["maddconv"].replace("\"groups\":2", "\"groups\":0");
    p.meta.insert("maddconv".into(), bad);
    expect_error("invalid spec", &build(&p), &["groups"]);
    let mut p = parts(&build(&good));
    let bad = p.meta["maddconv"].replace("\"codebooks\":5", "\"codebooks\":19");
    p.meta.insert("maddconv".into(), bad);
    expect_error("C > D", &build(&p), &["codebooks = 19", "D = 18"]);
    let mut p = parts(&build(&good));
    let bad = p.meta["maddconv"].replace("\"codebooks\":5", "\"codebooks\":18446744073709551615");
    p.meta.insert("maddconv".into(), bad);
    expect_error("huge C", &build(&p), &["codebooks"]);
}

#[test]
fn truncated_garbage_and_bad_headers_are_errors() {
    let bytes = tables().to_bytes().unwrap();
    for len in 0..bytes.len() {
        assert!(
            Tables::from_bytes(&bytes[..len], "t").is_err(),
            "a file truncated to {len} of {} bytes loaded",
            bytes.len()
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    expect_error("trailing byte", &longer, &[]);
    let mut rng = Rng(99);
    for len in [0, 1, 7, 8, 9, 64, 1000, 5000] {
        for _ in 0..20 {
            let g: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            assert!(Tables::from_bytes(&g, "g").is_err());
        }
    }
    // Header lengths that lie.
    let mut b = bytes.clone();
    b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    expect_error("huge header length", &b, &["header"]);
    // A header that is not JSON.
    let mut b = 10u64.to_le_bytes().to_vec();
    b.extend_from_slice(b"{not json}");
    expect_error("header not JSON", &b, &["JSON"]);
    // Offsets whose sum overflows in the safetensors crate's own size check (safetensors 0.8.0
    // panics on this with debug assertions): 8 tensors of 2^61 − 1 bytes each.
    let size: u64 = (1u64 << 61) - 1;
    let fields: Vec<String> = (0..8u64)
        .map(|i| {
            format!(
                "\"t{i}\":{{\"dtype\":\"U8\",\"shape\":[{size}],\"data_offsets\":[{},{}]}}",
                i * size,
                (i + 1) * size
            )
        })
        .collect();
    let h = format!("{{{}}}", fields.join(","));
    let mut b = (h.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(h.as_bytes());
    expect_error("offset overflow", &b, &["offset"]);
}

/// Flipping any byte never panics; when such a file still loads, it is valid tables.
#[test]
fn bit_flips_never_panic() {
    let bytes = tables().to_bytes().unwrap();
    let mut loaded = 0;
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut b = bytes.clone();
            b[i] ^= mask;
            if let Ok(t) = Tables::from_bytes(&b, "flip") {
                t.validate().unwrap();
                loaded += 1;
            }
        }
    }
    // Flips inside table entries and the free-text metadata still load; header flips do not.
    assert!(
        loaded > 0 && loaded < 3 * bytes.len(),
        "{loaded} of {} flipped files loaded",
        3 * bytes.len()
    );
}

/// Metadata floats survive a save/load exactly (found by the fuzzer: serde_json's default float
/// parsing is not always correctly rounded; the crate enables `float_roundtrip`).
#[test]
fn metadata_floats_round_trip_exactly() {
    let mut t = tables();
    let mut rng = Rng(123);
    for _ in 0..300 {
        let v = f64::from_bits(0x3FF0_0000_0000_0000 | (rng.next_u64() >> 12));
        t.meta.train_seconds = v;
        t.meta.heldout.as_mut().unwrap().nmse = v * 1e-7;
        let back = Tables::from_bytes(&t.to_bytes().unwrap(), "mem").unwrap();
        assert_eq!(back.meta.train_seconds.to_bits(), v.to_bits(), "{v:e}");
        assert_eq!(back.meta, t.meta);
    }
}

/// Sizes in the stored spec whose products overflow are errors, not panics.
#[test]
fn overflowing_spec_sizes_are_errors() {
    let good = parts(&tables().to_bytes().unwrap());
    for (from, to) in [
        ("\"kernel\":[3,3]", "\"kernel\":[4294967296,4294967296]"),
        ("\"kernel\":[3,3]", "\"kernel\":[18446744073709551615,2]"),
        ("\"in_channels\":4", "\"in_channels\":18446744073709551614"),
        (
            "\"out_channels\":6",
            "\"out_channels\":18446744073709551614",
        ),
    ] {
        let mut p = parts(&build(&good));
        let bad = p.meta["maddconv"].replace(from, to);
        assert_ne!(bad, p.meta["maddconv"], "{from} not found");
        p.meta.insert("maddconv".into(), bad);
        expect_error(to, &build(&p), &[]);
    }
}

/// Tables of deeper trees are written as format version 2 with their depth in the header, load
/// back equal, and a header whose version and depth disagree, or whose depth is out of range,
/// is refused naming both.
#[test]
fn deeper_trees_are_format_version_2() {
    let mut spec = ConvSpec::conv2d(4, 6, 3, 3);
    spec.padding = vec![1, 1, 1, 1];
    spec.bias = true;
    let mut rng = Rng(23);
    let x = rng.tensor(&[3, 4, 9, 9]);
    let w = rng.tensor(&spec.weight_shape());
    let b = rng.tensor(&[spec.out_channels]);
    let layer = maddconv::ConvLayer::new(spec.clone(), w, Some(b)).unwrap();
    let cfg = maddconv::maddness::TrainConfig {
        codebooks: Some(5),
        depth: 6,
        ..Default::default()
    };
    let t = maddconv::maddness::train(&layer, &[x], &cfg).unwrap();
    assert_eq!((t.depth, t.buckets(), t.code_bits()), (6, 64, 8));
    let bytes = t.to_bytes().unwrap();
    assert_eq!(Tables::from_bytes(&bytes, "mem").unwrap(), t);
    let p = parts(&bytes);
    assert_eq!(p.meta["format_version"], FORMAT_VERSION.to_string());
    assert_eq!(FORMAT_VERSION, 2);
    let header: serde_json::Value = serde_json::from_str(&p.meta["maddconv"]).unwrap();
    assert_eq!(header["depth"], 6);
    let shape = |name: &str| p.tensors.iter().find(|t| t.0 == name).unwrap().2.clone();
    assert_eq!(shape("split_dims"), vec![1, 5, 6]);
    assert_eq!(shape("thresholds"), vec![1, 5, 6, 64]);
    assert_eq!(shape("luts"), vec![1, 5, 64, 6]);

    // Version 1 claims depth 4.
    let mut q = parts(&bytes);
    q.meta.insert("format_version".into(), "1".into());
    expect_error("v1 with a depth", &build(&q), &["version 1", "depth 6"]);
    // A depth outside 4..=8, and one that does not match the tensors.
    for (depth, needles) in [
        (9, vec!["tree depth 9", "4 to 8"]),
        (3, vec!["tree depth 3"]),
        (5, vec!["split_dims", "[1, 5, 5]"]),
    ] {
        let mut q = parts(&bytes);
        let mut h = header.clone();
        h["depth"] = depth.into();
        q.meta.insert("maddconv".into(), h.to_string());
        expect_error(&format!("depth {depth}"), &build(&q), &needles);
    }
    // The library refuses such depths before training, too.
    for depth in [3, 9] {
        let cfg = maddconv::maddness::TrainConfig {
            depth,
            ..cfg.clone()
        };
        let x = Rng(1).tensor(&[3, 4, 9, 9]);
        let e = maddconv::maddness::train(&layer, &[x], &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("tree depth {depth}")), "{e}");
    }
}
