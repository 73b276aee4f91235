//! Tier 1: the CPU f64 reference against outputs computed by other engines (onnxruntime and
//! float64 numpy) on real layers, and against a convolution small enough to check by hand.

mod common;

use maddconv::metrics::relative_l2;
use maddconv::reference::conv_reference;
use maddconv::{ConvSpec, Tensor};

#[test]
fn reference_matches_other_engines_on_real_layers() {
    let layers = common::layer_dirs();
    assert!(
        layers.len() >= 3,
        "expected the repository's fixtures at least"
    );
    for layer in &layers {
        let (x, w, b) = common::test_weight_bias(layer);
        let expected = layer.test_expected().unwrap();
        let y = conv_reference(&layer.spec, &x, &w, b.as_ref()).unwrap();
        assert_eq!(y.shape(), expected.shape(), "{}: output shape", layer.name);
        common::assert_close(&layer.name, y.data(), expected.data(), 1e-5);
        eprintln!(
            "{:<24} rel L2 {:.2e}",
            layer.name,
            relative_l2(y.data(), expected.data())
        );
    }
}

/// 1 input channel 3×3, kernel 2×2, padding 1 on the left only, stride 2, bias 10:
/// worked out by hand.
#[test]
fn reference_matches_a_hand_computed_case() {
    let mut spec = ConvSpec::conv2d(1, 1, 2, 2);
    spec.padding = vec![0, 1, 0, 0];
    spec.stride = vec![2, 2];
    spec.bias = true;
    // x = [[1 2 3] [4 5 6] [7 8 9]]; padded with a zero column on the left:
    // [[0 1 2 3] [0 4 5 6] [0 7 8 9]]; out = floor((3-2)/2)+1 = 1 row, floor((4-2)/2)+1 = 2 cols.
    let x = Tensor::new(vec![1, 1, 3, 3], (1..=9).map(|v| v as f32).collect()).unwrap();
    // w = [[1 10] [100 1000]]
    let w = Tensor::new(vec![1, 1, 2, 2], vec![1.0, 10.0, 100.0, 1000.0]).unwrap();
    let b = Tensor::new(vec![1], vec![10.0]).unwrap();
    let y = conv_reference(&spec, &x, &w, Some(&b)).unwrap();
    // (0,0): 0·1 + 1·10 + 0·100 + 4·1000 + 10 = 4020
    // (0,1): 2·1 + 3·10 + 5·100 + 6·1000 + 10 = 6542
    assert_eq!(y.shape(), &[1, 1, 1, 2]);
    assert_eq!(y.data(), &[4020.0, 6542.0]);

    // The same as a conv1d on the middle row with dilation 2: x = [4 5 6], w = [1 10],
    // padding [1, 0] → padded [0 4 5 6], span 3 → outputs 0·1+5·10 = 50, 4·1+6·10 = 64.
    let mut s1 = ConvSpec::conv1d(1, 1, 2);
    s1.dilation = vec![2];
    s1.padding = vec![1, 0];
    let x1 = Tensor::new(vec![1, 1, 3], vec![4.0, 5.0, 6.0]).unwrap();
    let w1 = Tensor::new(vec![1, 1, 2], vec![1.0, 10.0]).unwrap();
    let y1 = conv_reference(&s1, &x1, &w1, None).unwrap();
    assert_eq!(y1.data(), &[50.0, 64.0]);
}

/// Groups: each group sees only its own channels.
#[test]
fn reference_keeps_groups_apart() {
    let mut spec = ConvSpec::conv1d(4, 2, 1);
    spec.groups = 2;
    // channels 0,1 → output 0; channels 2,3 → output 1.
    let x = Tensor::new(vec![1, 4, 1], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let w = Tensor::new(vec![2, 2, 1], vec![1.0, 10.0, 100.0, 1000.0]).unwrap();
    let y = conv_reference(&spec, &x, &w, None).unwrap();
    assert_eq!(y.data(), &[21.0, 4300.0]);
}
