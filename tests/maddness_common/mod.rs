//! Helpers of the MADDNESS tests: seeded random data and independent (deliberately plain)
//! re-implementations of the window and tree definitions.
#![allow(dead_code)]

#[path = "../../examples/common/imageio.rs"]
pub mod imageio;
pub mod images;

use maddconv::data::LayerDir;
use maddconv::maddness::{train, Tables, TrainConfig};
use maddconv::{ConvKind, ConvSpec, Tensor};

/// The library's seeded generator (SplitMix64), under the tests' name.
pub use maddconv::rng::SplitMix64 as Rng;

/// Random tensors of standard normal values.
pub trait TensorRng {
    fn tensor(&mut self, shape: &[usize]) -> Tensor;
}

impl TensorRng for Rng {
    fn tensor(&mut self, shape: &[usize]) -> Tensor {
        let len = shape.iter().product();
        Tensor::new(shape.to_vec(), (0..len).map(|_| self.normal()).collect()).unwrap()
    }
}

/// The window of group `g` at output position `(n, oy, ox)`, straight from the definition
/// (PyTorch conv semantics), without the library's index helpers. conv1d: `oy = 0`.
pub fn window_by_hand(
    spec: &ConvSpec,
    input: &Tensor,
    n: usize,
    g: usize,
    oy: usize,
    ox: usize,
) -> Vec<f32> {
    let s = input.shape();
    let (c_all, h, w) = match spec.kind {
        ConvKind::Conv1d => (s[1], 1, s[2]),
        ConvKind::Conv2d => (s[1], s[2], s[3]),
    };
    let (kh, kw, sh, sw, dh, dw, pt, pl) = match spec.kind {
        ConvKind::Conv1d => (
            1,
            spec.kernel[0],
            1,
            spec.stride[0],
            1,
            spec.dilation[0],
            0,
            spec.padding[0],
        ),
        ConvKind::Conv2d => (
            spec.kernel[0],
            spec.kernel[1],
            spec.stride[0],
            spec.stride[1],
            spec.dilation[0],
            spec.dilation[1],
            spec.padding[0],
            spec.padding[1],
        ),
    };
    let cg = spec.in_channels / spec.groups;
    let mut out = Vec::with_capacity(cg * kh * kw);
    for ci in 0..cg {
        for ky in 0..kh {
            for kx in 0..kw {
                let y = (oy * sh + ky * dh) as i64 - pt as i64;
                let x = (ox * sw + kx * dw) as i64 - pl as i64;
                let v = if y < 0 || x < 0 || y >= h as i64 || x >= w as i64 {
                    0.0
                } else {
                    let c = g * cg + ci;
                    input.data()[((n * c_all + c) * h + y as usize) * w + x as usize]
                };
                out.push(v);
            }
        }
    }
    out
}

/// The code of codebook `c` of group `g` for a window, walking the tree from the tables.
pub fn code_by_hand(t: &Tables, g: usize, c: usize, window: &[f32]) -> usize {
    let gc = g * t.codebooks + c;
    let mut node = 0usize;
    for level in 0..4 {
        let dim = t.split_dims[gc * 4 + level] as usize;
        let thr = t.thresholds[(gc * 4 + level) * 16 + node];
        node = 2 * node + if window[dim] > thr { 1 } else { 0 };
    }
    node
}

/// Output spatial size `(OH, OW)` (conv1d: `(1, OL)`).
pub fn out_hw(spec: &ConvSpec, input: &Tensor) -> (usize, usize) {
    let shape = spec.output_shape(input.shape()).unwrap();
    match spec.kind {
        ConvKind::Conv1d => (1, shape[2]),
        ConvKind::Conv2d => (shape[2], shape[3]),
    }
}

/// `train` on a layer folder's weight and bias, with the inputs `x` and settings `cfg`.
pub fn train_layer(layer: &LayerDir, x: &Tensor, cfg: &TrainConfig) -> Tables {
    let weight = layer.weight().unwrap();
    let bias = layer.bias().unwrap();
    train(
        &maddconv::ConvLayer::new(layer.spec.clone(), weight.clone(), bias.clone()).unwrap(),
        std::slice::from_ref(x),
        cfg,
    )
    .unwrap()
}

/// Tables trained with `codebooks` codebooks (training seed `train_seed`) for `spec` (which
/// has a bias) on one random input of shape `input`, the input, weight and bias drawn in that
/// order from `Rng(rng_seed)`.
pub fn train_random(
    spec: &ConvSpec,
    rng_seed: u64,
    input: &[usize],
    codebooks: usize,
    train_seed: u64,
) -> Tables {
    let mut rng = Rng(rng_seed);
    let x = rng.tensor(input);
    let w = rng.tensor(&spec.weight_shape());
    let b = rng.tensor(&[spec.out_channels]);
    let cfg = TrainConfig {
        codebooks: Some(codebooks),
        seed: train_seed,
        ..Default::default()
    };
    train(
        &maddconv::ConvLayer::new(spec.clone(), w, Some(b)).unwrap(),
        &[x],
        &cfg,
    )
    .unwrap()
}
