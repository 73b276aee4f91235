//! Every input the library rejects, rejected before any GPU work with an error that names the
//! offending value (and the limit, where there is one).

mod common;

use maddconv::gpu::{DirectConv, DirectKernel, GpuConv};
use maddconv::reference::conv_reference;
use maddconv::{ConvSpec, Error, Tensor};

fn spec3() -> ConvSpec {
    let mut s = ConvSpec::conv2d(4, 6, 3, 3);
    s.padding = vec![1; 4];
    s
}

fn err_text<T: std::fmt::Debug>(r: maddconv::Result<T>) -> (Error, String) {
    let e = r.expect_err("expected an error");
    let text = e.to_string();
    (e, text)
}

#[test]
fn zero_sizes_are_rejected_by_name() {
    for (field, f) in [
        (
            "in_channels",
            Box::new(|s: &mut ConvSpec| s.in_channels = 0) as Box<dyn Fn(&mut ConvSpec)>,
        ),
        (
            "out_channels",
            Box::new(|s: &mut ConvSpec| s.out_channels = 0),
        ),
        ("groups", Box::new(|s: &mut ConvSpec| s.groups = 0)),
        ("kernel[1]", Box::new(|s: &mut ConvSpec| s.kernel[1] = 0)),
        ("stride[0]", Box::new(|s: &mut ConvSpec| s.stride[0] = 0)),
        (
            "dilation[1]",
            Box::new(|s: &mut ConvSpec| s.dilation[1] = 0),
        ),
    ] {
        let mut s = spec3();
        f(&mut s);
        let (e, text) = err_text(s.validate());
        assert!(matches!(e, Error::Spec(_)), "{field}: {e:?}");
        assert!(
            text.contains(field) && text.contains("is 0"),
            "{field}: {text}"
        );
    }
    let (e, text) = err_text(spec3().output_shape(&[0, 4, 5, 5]));
    assert!(
        matches!(e, Error::Shape(_)) && text.contains("batch size is 0"),
        "{text}"
    );
    let (_, text) = err_text(spec3().output_shape(&[1, 4, 0, 5]));
    assert!(text.contains("input size is 0"), "{text}");
}

#[test]
fn window_larger_than_padded_input_is_rejected() {
    let mut s = ConvSpec::conv2d(1, 1, 5, 3);
    s.padding = vec![1, 0, 0, 0];
    s.dilation = vec![2, 1];
    // height: span 2·4+1 = 9 > 6 + 1
    let (e, text) = err_text(s.output_shape(&[1, 1, 6, 10]));
    assert!(matches!(e, Error::Spec(_)), "{e:?}");
    assert!(
        text.contains("spans 9") && text.contains("only 7") && text.contains("height"),
        "{text}"
    );
    let s1 = ConvSpec::conv1d(1, 1, 4);
    let (_, text) = err_text(s1.output_shape(&[1, 1, 3]));
    assert!(
        text.contains("length") && text.contains("spans 4"),
        "{text}"
    );
}

#[test]
fn channels_not_divisible_by_groups_are_rejected() {
    for (cin, cout, needle) in [
        (6, 4, "in_channels 6 is not divisible by groups 4"),
        (8, 6, "out_channels 6 is not divisible by groups 4"),
    ] {
        let mut s = ConvSpec::conv2d(cin, cout, 1, 1);
        s.groups = 4;
        let (_, text) = err_text(s.validate());
        assert!(text.contains(needle), "{text}");
    }
}

#[test]
fn shape_mismatches_are_rejected() {
    let s = spec3();
    let zeros = |shape: &[usize]| Tensor::zeros(shape.to_vec()).unwrap();
    let x = Tensor::zeros(vec![1, 4, 5, 5]).unwrap();
    let w = Tensor::zeros(s.weight_shape()).unwrap();
    // weight
    let bad_w = Tensor::zeros(vec![6, 4, 3, 2]).unwrap();
    let (e, text) = err_text(conv_reference(&s, &x, &bad_w, None));
    assert!(matches!(e, Error::Shape(_)), "{e:?}");
    assert!(
        text.contains("[6, 4, 3, 2]") && text.contains("[6, 4, 3, 3]"),
        "{text}"
    );
    // input channels and rank
    let (_, text) = err_text(conv_reference(&s, &zeros(&[1, 3, 5, 5]), &w, None));
    assert!(
        text.contains("3 channels") && text.contains("expects 4"),
        "{text}"
    );
    let (_, text) = err_text(conv_reference(&s, &zeros(&[4, 5, 5]), &w, None));
    assert!(text.contains("N×C×H×W"), "{text}");
    // bias: wrong shape, unexpected, missing
    let mut sb = s.clone();
    sb.bias = true;
    let (_, text) = err_text(conv_reference(&sb, &x, &w, Some(&zeros(&[5]))));
    assert!(text.contains("bias has shape [5], expected [6]"), "{text}");
    let (_, text) = err_text(conv_reference(&s, &x, &w, Some(&zeros(&[6]))));
    assert!(text.contains("says the layer has none"), "{text}");
    let (_, text) = err_text(conv_reference(&sb, &x, &w, None));
    assert!(text.contains("none was given"), "{text}");
    // data length vs shape
    let (_, text) = err_text(Tensor::new(vec![2, 3], vec![0.0; 5]));
    assert!(text.contains("holds 6 elements but 5"), "{text}");
    // spec lists of the wrong length
    let mut s2 = spec3();
    s2.padding = vec![1, 1];
    let (_, text) = err_text(s2.validate());
    assert!(text.contains("padding needs 4"), "{text}");
}

#[test]
fn index_arithmetic_past_32_bits_is_rejected() {
    let s = ConvSpec::conv2d(1, 1, 1, 1);
    let (e, text) = err_text(s.output_shape(&[1, 1, 70_000, 70_000]));
    match e {
        Error::TooLarge { value, limit, .. } => {
            assert_eq!((value, limit), (4_900_000_000, i32::MAX as u64), "{text}")
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let huge_window = ConvSpec::conv2d(100_000, 1, 200, 200);
    let (e, _) = err_text(huge_window.validate());
    assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
}

#[test]
fn non_finite_inputs_are_rejected_with_their_index() {
    let Some(ctx) = common::gpu() else { return };
    let s = spec3();
    let w = common::random_tensor(&s.weight_shape(), 1);
    let mut x = common::random_tensor(&[1, 4, 5, 5], 2);
    x.data_mut()[37] = f32::NAN;
    let conv = DirectConv::new(
        ctx,
        &maddconv::ConvLayer::new(s.clone(), w.clone(), None).unwrap(),
    )
    .unwrap();
    match pollster::block_on(conv.run(ctx, &x)) {
        Err(Error::NonFinite { what, index, .. }) => {
            assert_eq!((what.as_str(), index), ("input", 37))
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    let mut w2 = w.clone();
    w2.data_mut()[3] = f32::INFINITY;
    // A non-finite weight is refused when the layer is made, naming the index.
    match maddconv::ConvLayer::new(s.clone(), w2.clone(), None) {
        Err(Error::NonFinite { what, index, .. }) => {
            assert_eq!((what.as_str(), index), ("weight", 3))
        }
        other => panic!("expected NonFinite, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn bad_npy_files_are_rejected() {
    let dir = std::env::temp_dir().join(format!("maddconv-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = Tensor::new(vec![2, 3], (0..6).map(|v| v as f32).collect()).unwrap();
    let bytes = good.to_npy_bytes();
    assert_eq!(Tensor::from_npy_bytes(&bytes, "good").unwrap(), good);
    // garbage
    let (e, text) = err_text(Tensor::from_npy_bytes(
        b"not an npy file at all",
        "garbage.npy",
    ));
    assert!(
        matches!(e, Error::Npy { .. }) && text.contains("garbage.npy"),
        "{text}"
    );
    // truncated data
    let (_, text) = err_text(Tensor::from_npy_bytes(
        &bytes[..bytes.len() - 5],
        "short.npy",
    ));
    assert!(text.contains("short.npy"), "{text}");
    // int32 data: the same bytes with the header's dtype changed
    let int_file = replace_bytes(&bytes, b"<f4", b"<i4");
    let (_, text) = err_text(Tensor::from_npy_bytes(&int_file, "int.npy"));
    assert!(text.contains("<i4") && text.contains("float32"), "{text}");
    // Fortran order
    let f_file = replace_bytes(&bytes, b"'fortran_order': False", b"'fortran_order': True ");
    let (_, text) = err_text(Tensor::from_npy_bytes(&f_file, "fortran.npy"));
    assert!(text.contains("Fortran"), "{text}");
    // missing file names the path
    let (e, text) = err_text(Tensor::read_npy(dir.join("missing.npy")));
    assert!(
        matches!(e, Error::Io { .. }) && text.contains("missing.npy"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failed_writes_leave_nothing_behind() {
    let dir = std::env::temp_dir().join(format!("maddconv-atomic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = Tensor::zeros(vec![3]).unwrap();
    // writing over a directory fails at the rename; the temporary file must be gone.
    let target = dir.join("out.npy");
    std::fs::create_dir_all(&target).unwrap();
    assert!(t.write_npy(&target).is_err());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("out.npy")],
        "leftovers: {left:?}"
    );
    // a good write replaces the old file whole
    let ok = dir.join("ok.npy");
    std::fs::write(&ok, b"old").unwrap();
    t.write_npy(&ok).unwrap();
    assert_eq!(Tensor::read_npy(&ok).unwrap(), t);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn weights_above_the_binding_limit_are_refused() {
    let Some(ctx) = common::gpu_limited(|base| wgpu::Limits {
        max_storage_buffer_binding_size: 16 * 1024,
        ..base.clone()
    }) else {
        return;
    };
    let kernel = DirectKernel::Tiled;
    let s = ConvSpec::conv2d(64, 64, 1, 1); // weight exactly 64·64·4 bytes = 16 KiB: allowed
    let w = common::random_tensor(&s.weight_shape(), 3);
    assert!(DirectConv::with_kernel(
        &ctx,
        &maddconv::ConvLayer::new(s.clone(), w.clone(), None).unwrap(),
        kernel
    )
    .is_ok());
    let s = ConvSpec::conv2d(64, 65, 1, 1);
    let w = common::random_tensor(&s.weight_shape(), 3);
    match DirectConv::with_kernel(
        &ctx,
        &maddconv::ConvLayer::new(s.clone(), w.clone(), None).unwrap(),
        kernel,
    ) {
        // the tiled kernel keeps the weight transposed, channels zero-padded to 68
        Err(Error::TooLarge { value, limit, .. }) => {
            assert_eq!((value, limit), (68 * 64 * 4, 16384))
        }
        other => panic!("expected TooLarge, got {:?}", other.map(|_| ())),
    }
}

fn replace_bytes(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = haystack
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    let mut out = haystack.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

/// Sizes whose products overflow 64 bits give an error, never an arithmetic panic.
#[test]
fn absurd_sizes_are_errors_not_overflows() {
    let mut s = ConvSpec::conv2d(usize::MAX / 2, 1, usize::MAX / 3, usize::MAX / 5);
    assert!(matches!(s.validate(), Err(Error::TooLarge { .. })));
    s = ConvSpec::conv2d(1, 1, 1, 1);
    let e = s
        .output_shape(&[usize::MAX / 7, 1, usize::MAX / 11, 3])
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    let json = r#"{"kind":"conv2d","in_channels":18446744073709551615,"out_channels":1,
        "kernel":[4294967296,4294967296],"stride":[1,1],"padding":[0,0,0,0],
        "dilation":[1,1],"groups":1,"bias":false}"#;
    let spec: ConvSpec = serde_json::from_str(json).unwrap();
    assert!(spec.validate().is_err());
}
