//! The CPU mirror of inference against independent straightforward computations: window
//! extraction and tree walks written from the definitions, table sums, packed code layout,
//! exact integer sums; 8-bit vs float tables.

mod common;
mod maddness_common;

use maddconv::maddness::learn::{train, TrainConfig};
use maddconv::maddness::{mirror, Tables};
use maddconv::metrics::nmse;
use maddconv::{ConvSpec, Tensor};
use maddness_common::{code_by_hand, out_hw, window_by_hand, Rng, TensorRng};

/// Specs that exercise padding (asymmetric), stride, dilation, groups, conv1d, C not a
/// multiple of 8.
fn cases() -> Vec<(ConvSpec, Vec<usize>, usize)> {
    let mut v = Vec::new();
    let mut s = ConvSpec::conv2d(6, 4, 3, 2);
    s.padding = vec![2, 0, 1, 1];
    s.stride = vec![2, 1];
    s.dilation = vec![1, 2];
    s.groups = 2;
    s.bias = true;
    v.push((s, vec![2, 6, 9, 8], 11));
    let mut s = ConvSpec::conv1d(3, 5, 4);
    s.padding = vec![3, 1];
    s.stride = vec![3];
    s.dilation = vec![2];
    v.push((s, vec![3, 3, 17], 8));
    let mut s = ConvSpec::conv2d(4, 4, 1, 1);
    s.groups = 4;
    s.bias = true;
    v.push((s, vec![1, 4, 3, 5], 1));
    v
}

fn trained(spec: &ConvSpec, shape: &[usize], c: usize, seed: u64) -> (Tables, Tensor) {
    let mut rng = Rng(seed);
    // A larger batch of the same shape to train on: training needs at least
    // `MIN_TRAIN_WINDOWS` windows, and these shapes are small to cover odd index arithmetic.
    let mut train_shape = shape.to_vec();
    train_shape[0] *= 64;
    let x = rng.tensor(&train_shape);
    let mut wshape = vec![spec.out_channels, spec.in_channels / spec.groups];
    wshape.extend_from_slice(&spec.kernel);
    let w = rng.tensor(&wshape);
    let b = spec.bias.then(|| rng.tensor(&[spec.out_channels]));
    let cfg = TrainConfig {
        codebooks: Some(c),
        ..Default::default()
    };
    let tables = train(
        &maddconv::ConvLayer::new(spec.clone(), w.clone(), b.clone()).unwrap(),
        std::slice::from_ref(&x),
        &cfg,
    )
    .unwrap();
    // Evaluate on other data than the training input.
    (tables, rng.tensor(shape))
}

/// Packed codes equal hand-walked trees on hand-extracted windows, nibble by nibble, with the
/// unused nibbles 0. Half of the inputs hold values equal to thresholds, which must go left.
#[test]
fn encode_matches_hand_walked_trees() {
    for (i, (spec, shape, c)) in cases().into_iter().enumerate() {
        let (tables, mut x) = trained(&spec, &shape, c, 10 + i as u64);
        let mut rng = Rng(50 + i as u64);
        let used: Vec<f32> = tables
            .thresholds
            .iter()
            .copied()
            .filter(|&t| t != 0.0)
            .collect();
        for v in x.data_mut().iter_mut() {
            if rng.below(2) == 0 {
                *v = used[rng.below(used.len())];
            }
        }
        let codes = mirror::encode(&tables, &x).unwrap();
        let (oh, ow) = out_hw(&spec, &x);
        let n = shape[0];
        let q_total = n * oh * ow;
        let words = c.div_ceil(8);
        assert_eq!(
            codes.len(),
            spec.groups * q_total * words,
            "case {i}: code length"
        );
        for g in 0..spec.groups {
            for nn in 0..n {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let q = (nn * oh + oy) * ow + ox;
                        let win = window_by_hand(&spec, &x, nn, g, oy, ox);
                        let row = &codes[(g * q_total + q) * words..][..words];
                        for cb in 0..words * 8 {
                            let got = (row[cb / 8] >> (4 * (cb % 8))) & 0xF;
                            let want = if cb < c {
                                code_by_hand(&tables, g, cb, &win) as u32
                            } else {
                                0
                            };
                            assert_eq!(
                                got, want,
                                "case {i}: group {g} sample {nn} position ({oy},{ox}) codebook {cb}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// `apply_f32` equals the table sum written out from the definitions (bit for bit: same
/// summation order), and `accumulate_sums` equals the exact integer sum of the u8 entries.
#[test]
fn apply_and_sums_match_straightforward_computation() {
    for (i, (spec, shape, c)) in cases().into_iter().enumerate() {
        let (tables, x) = trained(&spec, &shape, c, 20 + i as u64);
        let yf = mirror::apply_f32(&tables, &x).unwrap();
        let y8 = mirror::apply(&tables, &x).unwrap();
        let codes = mirror::encode(&tables, &x).unwrap();
        let (oh, ow) = out_hw(&spec, &x);
        let n = shape[0];
        let sums = mirror::accumulate_sums(&tables, &codes, n, oh * ow).unwrap();
        let k = tables.inference_constants();
        let mg = spec.out_channels / spec.groups;
        let luts = tables.luts_f32.as_ref().unwrap();
        for nn in 0..n {
            for o in 0..spec.out_channels {
                let (g, m) = (o / mg, o % mg);
                for oy in 0..oh {
                    for ox in 0..ow {
                        let win = window_by_hand(&spec, &x, nn, g, oy, ox);
                        let mut f = 0.0f32;
                        let mut s = 0u32;
                        for cb in 0..c {
                            let code = code_by_hand(&tables, g, cb, &win);
                            let idx = (((g * c + cb) * 16) + code) * mg + m;
                            f += luts[idx];
                            s += tables.luts[idx] as u32;
                        }
                        f += tables.bias.as_ref().map_or(0.0, |b| b[o]);
                        let p = oy * ow + ox;
                        let at = (nn * spec.out_channels + o) * oh * ow + p;
                        assert_eq!(
                            yf.data()[at].to_bits(),
                            f.to_bits(),
                            "case {i}: float output {at}"
                        );
                        assert_eq!(sums[at], s, "case {i}: sum at {at}");
                        let y = s as f32 * k.inv_scale[o] + k.offset[o];
                        assert_eq!(
                            y8.data()[at].to_bits(),
                            y.to_bits(),
                            "case {i}: 8-bit output {at}"
                        );
                    }
                }
            }
        }
    }
}

/// 8-bit inference stays close to the float tables: the quantization error is small next to
/// the output's spread (per-channel NMSE between the two).
#[test]
fn eight_bit_close_to_float_tables() {
    let layer = maddconv::data::LayerDir::open(
        common::fixtures().join("layers/mtcnn_pnet_conv3_trainable"),
    )
    .unwrap();
    let cfg = TrainConfig {
        codebooks: Some(16),
        ..Default::default()
    };
    let tables = train(&layer.layer().unwrap(), &[layer.train().unwrap()], &cfg).unwrap();
    let x = layer.test().unwrap();
    let y8 = mirror::apply(&tables, &x).unwrap();
    let yf = mirror::apply_f32(&tables, &x).unwrap();
    let e = nmse(layer.spec.kind, &y8, &yf).unwrap();
    // Measured 1.6e-4 (and 1.5e-4, 7.7e-5, 1.2e-5 for the synthetic cases below). Rounding to 1/255 of the widest column range per output, summed over 16
    // codebooks: a few 1e-4 at most.
    assert!(e < 1e-3, "NMSE of 8-bit against float tables {e:.3e}");
    for (cases_i, (spec, shape, c)) in cases().into_iter().enumerate() {
        let (tables, x) = trained(&spec, &shape, c, 30 + cases_i as u64);
        let y8 = mirror::apply(&tables, &x).unwrap();
        let yf = mirror::apply_f32(&tables, &x).unwrap();
        let e = nmse(spec.kind, &y8, &yf).unwrap();
        assert!(
            e < 1e-3,
            "case {cases_i}: NMSE of 8-bit against float tables {e:.3e}"
        );
    }
}

/// Inconsistent tables and inputs give errors, never panics.
#[test]
fn inconsistent_tables_and_inputs_are_errors() {
    let (spec, shape, c) = cases().remove(0);
    let (tables, x) = trained(&spec, &shape, c, 40);
    let mut t = tables.clone();
    t.split_dims[5] = 10_000;
    assert!(mirror::encode(&t, &x)
        .unwrap_err()
        .to_string()
        .contains("split_dims[5]"));
    let mut t = tables.clone();
    t.luts.pop();
    assert!(mirror::apply(&t, &x).is_err());
    let mut t = tables.clone();
    t.scales[0] = 0.0;
    assert!(mirror::apply(&t, &x).is_err());
    let mut t = tables.clone();
    t.thresholds[3] = f32::NAN;
    assert!(mirror::encode(&t, &x).is_err());
    let mut t = tables.clone();
    t.luts_f32 = None;
    assert!(mirror::apply_f32(&t, &x)
        .unwrap_err()
        .to_string()
        .contains("float tables"));
    let mut t = tables.clone();
    t.spec.kernel = vec![1 << 40, 1 << 40];
    assert!(mirror::apply(&t, &x).is_err() && mirror::apply_f32(&t, &x).is_err());
    let wrong = Tensor::zeros(vec![1, 5, 9, 8]).unwrap();
    assert!(mirror::apply(&tables, &wrong).is_err());
    let codes = mirror::encode(&tables, &x).unwrap();
    assert!(mirror::accumulate_sums(&tables, &codes[1..], 2, 25).is_err());
    assert!(mirror::accumulate_sums(&tables, &codes, usize::MAX, 2).is_err());
}
