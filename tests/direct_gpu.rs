//! Tier 2 and 3: the GPU direct kernels against the CPU f64 reference, on real layers and on
//! shapes that broke other engines (padding, stride, dilation, 1×1, odd sizes, groups, bias,
//! batch), with every output buffer poisoned (NaN) before the run; and the limit handling
//! (grid splitting, batch slicing, refusal) on a device created with deliberately small limits.

mod common;

use maddconv::gpu::{Context, DirectConv, DirectKernel, GpuConv};
use maddconv::reference::conv_reference;
use maddconv::{ConvKind, ConvSpec, Error, Tensor};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

/// The kernels this device runs (every one this build has on adapters with subgroups of ≥ 8;
/// `naive` only with the `extra-kernels` feature).
fn kernels(ctx: &Context) -> Vec<DirectKernel> {
    let all = DirectKernel::ALL;
    let v: Vec<DirectKernel> = all
        .iter()
        .copied()
        .filter(|k| k.check(ctx).is_ok())
        .collect();
    if v.len() < all.len() {
        eprintln!("!!!!! SKIPPED the direct_subgroup kernel: no subgroups of ≥ 8 on this adapter");
    }
    v
}

/// The direct kernel `k` for the layer (`spec`, `w`, `b`) run on `x` (output poisoned first).
fn run_kernel(
    ctx: &Context,
    k: DirectKernel,
    spec: &ConvSpec,
    w: &Tensor,
    b: &Option<Tensor>,
    x: &Tensor,
) -> Tensor {
    let conv = DirectConv::with_kernel(
        ctx,
        &maddconv::ConvLayer::new(spec.clone(), w.clone(), b.clone()).unwrap(),
        k,
    )
    .unwrap();
    common::run_direct_poisoned(ctx, &conv, x)
}

#[test]
fn direct_matches_reference_on_real_layers() {
    let Some(ctx) = common::gpu() else { return };
    for layer in common::layer_dirs() {
        let (x, w, b) = common::test_weight_bias(&layer);
        let exact = conv_reference(&layer.spec, &x, &w, b.as_ref()).unwrap();
        let other_engine = layer.test_expected().unwrap();
        for k in kernels(ctx) {
            let y = run_kernel(ctx, k, &layer.spec, &w, &b, &x);
            let what = format!("{} {:?} vs f64 reference", layer.name, k);
            common::assert_close(&what, y.data(), exact.data(), 1e-5);
            let what = format!("{} {:?} vs test_expected.npy", layer.name, k);
            common::assert_close(&what, y.data(), other_engine.data(), 1e-5);
        }
    }
}

/// One case of the shape sweep.
#[derive(Clone, Debug)]
struct Case {
    spec: ConvSpec,
    input: Vec<usize>,
}

fn check_case(ctx: &Context, case: &Case, seed: u64) -> Result<(), TestCaseError> {
    let x = common::random_tensor(&case.input, seed);
    let w = common::random_tensor(&case.spec.weight_shape(), seed + 1);
    let b = case
        .spec
        .bias
        .then(|| common::random_tensor(&[case.spec.out_channels], seed + 2));
    let exact = conv_reference(&case.spec, &x, &w, b.as_ref()).unwrap();
    for k in kernels(ctx) {
        let y = run_kernel(ctx, k, &case.spec, &w, &b, &x);
        let rel = maddconv::metrics::relative_l2(y.data(), exact.data());
        let bad = y.data().iter().position(|v| !v.is_finite());
        prop_assert!(
            bad.is_none() && rel < 1e-5,
            "{:?} on {} input {:?}: rel L2 {rel:.2e}, first non-finite {:?}",
            k,
            case.spec.describe(),
            case.input,
            bad.map(|i| (i, y.data()[i], exact.data()[i]))
        );
    }
    Ok(())
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(ConvKind::Conv1d), Just(ConvKind::Conv2d)],
        1usize..=3,                                           // batch
        prop_oneof![Just(1usize), Just(2), Just(3), Just(0)], // groups (0 = depthwise)
        1usize..=5,                                           // in channels per group
        prop_oneof![1usize..=9, 10usize..=70], // out channels per group (covers all tile shapes)
        (1usize..=5, 1usize..=5),              // kernel
        (1usize..=3, 1usize..=3),              // stride
        (1usize..=2, 1usize..=2),              // dilation
        (0usize..=3, 0usize..=3, 0usize..=3, 0usize..=3), // pads t, l, b, r
        (0usize..=9, 0usize..=9),              // extra input size beyond the minimum
        any::<bool>(),                         // bias
    )
        .prop_map(|(kind, n, groups, cg, og, k, s, d, p, extra, bias)| {
            let (groups, og) = if groups == 0 {
                (cg.max(2), 1)
            } else {
                (groups, og)
            };
            let cg = if og == 1 && groups > 1 { 1 } else { cg };
            let mut spec = match kind {
                ConvKind::Conv1d => ConvSpec::conv1d(cg * groups, og * groups, k.1 * 2 - 1),
                ConvKind::Conv2d => ConvSpec::conv2d(cg * groups, og * groups, k.0, k.1),
            };
            spec.groups = groups;
            spec.bias = bias;
            let dims = kind.spatial_dims();
            let input = common::place_window(&mut spec, n, s, d, p, extra);
            debug_assert_eq!(spec.kernel.len(), dims);
            Case { spec, input }
        })
}

#[test]
fn direct_matches_reference_on_random_shapes() {
    let Some(ctx) = common::gpu() else { return };
    let mut runner = TestRunner::new(common::proptest_config(64, 0x5eed_c0de));
    let seed = std::sync::atomic::AtomicU64::new(0);
    runner
        .run(&case_strategy(), |case| {
            let s = seed.fetch_add(10, std::sync::atomic::Ordering::Relaxed);
            check_case(ctx, &case, s)
        })
        .unwrap();
}

/// The cases named in the issue, each checked explicitly (the random sweep covers the rest).
#[test]
fn direct_matches_reference_on_named_cases() {
    let Some(ctx) = common::gpu() else { return };
    let c2 = |c, o, k: usize| ConvSpec::conv2d(c, o, k, k);
    let mut cases = Vec::new();
    let mut add = |spec: ConvSpec, input: Vec<usize>| cases.push(Case { spec, input });
    // symmetric padding 1, bias, batch 2
    let mut s = c2(8, 20, 3);
    s.padding = vec![1; 4];
    s.bias = true;
    add(s, vec![2, 8, 9, 11]);
    // asymmetric padding (ONNX order), no bias
    let mut s = c2(5, 7, 3);
    s.padding = vec![0, 2, 1, 0];
    add(s, vec![1, 5, 6, 7]);
    // stride 2 and stride 3
    let mut s = c2(6, 64, 3);
    s.stride = vec![2, 2];
    s.padding = vec![1; 4];
    add(s, vec![3, 6, 13, 13]);
    let mut s = c2(4, 33, 5);
    s.stride = vec![3, 3];
    add(s, vec![1, 4, 17, 14]);
    // dilation 2
    let mut s = c2(3, 12, 3);
    s.dilation = vec![2, 2];
    s.padding = vec![2; 4];
    add(s, vec![2, 3, 8, 8]);
    // 1×1
    add(c2(96, 96, 1), vec![1, 96, 7, 5]);
    // odd sizes, more channels than one tile
    let mut s = c2(7, 130, 3);
    s.bias = true;
    add(s, vec![1, 7, 5, 67]);
    // groups 3 and depthwise
    let mut s = c2(6, 9, 3);
    s.groups = 3;
    s.padding = vec![1; 4];
    add(s, vec![2, 6, 6, 6]);
    let mut s = c2(16, 16, 3);
    s.groups = 16;
    s.padding = vec![1; 4];
    s.bias = true;
    add(s, vec![1, 16, 10, 10]);
    // conv1d: long kernel with asymmetric padding (torchcrepe-like), stride 4
    let mut s = ConvSpec::conv1d(2, 24, 31);
    s.padding = vec![15, 16];
    s.stride = vec![4];
    s.bias = true;
    add(s, vec![3, 2, 100]);
    // conv1d with many samples of length 1 (silero-like)
    let mut s = ConvSpec::conv1d(64, 128, 3);
    s.padding = vec![1, 1];
    add(s, vec![40, 64, 1]);
    for (i, case) in cases.iter().enumerate() {
        check_case(ctx, case, 1000 + i as u64).unwrap();
    }
}

/// A device with tiny limits: a grid wider than max_compute_workgroups_per_dimension is folded,
/// a batch larger than max_storage_buffer_binding_size is processed in slices, and a single
/// sample above the limit is refused with a message naming its size and the limit.
#[test]
fn direct_splits_grids_and_slices_batches_under_small_limits() {
    let Some(ctx) = common::gpu_small_limits() else {
        return;
    };
    assert_eq!(ctx.limits().max_storage_buffer_binding_size, 16 * 1024);

    // 20 samples × 3×16×16 floats = 3 KiB each in, 4 × 16 × 16 floats = 4 KiB each out:
    // four samples per slice. The naive kernel needs 20·1024/256 = 80 workgroups > 8.
    let mut spec = ConvSpec::conv2d(3, 4, 3, 3);
    spec.padding = vec![1; 4];
    let x = common::random_tensor(&[20, 3, 16, 16], 7);
    let w = common::random_tensor(&spec.weight_shape(), 8);
    let exact = conv_reference(&spec, &x, &w, None).unwrap();
    for k in kernels(&ctx) {
        let conv = DirectConv::with_kernel(
            &ctx,
            &maddconv::ConvLayer::new(spec.clone(), w.clone(), None).unwrap(),
            k,
        )
        .unwrap();
        let y = pollster::block_on(conv.run(&ctx, &x)).unwrap();
        common::assert_close(&format!("{k:?} sliced"), y.data(), exact.data(), 1e-5);
    }

    // One sample of output, 4×64×64 floats = 64 KiB > 16 KiB (its input, 48 KiB, too):
    // refused, naming the larger size and the limit.
    let big = common::random_tensor(&[1, 3, 64, 64], 9);
    let conv = DirectConv::new(
        &ctx,
        &maddconv::ConvLayer::new(spec.clone(), w.clone(), None).unwrap(),
    )
    .unwrap();
    match pollster::block_on(conv.run(&ctx, &big)) {
        Err(Error::TooLarge { value, limit, .. }) => {
            assert_eq!((value, limit), (4 * 64 * 64 * 4, 16 * 1024));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}
