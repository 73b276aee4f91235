//! Shared helpers of the learner's unit tests (the repository's trainable fixture layer, all
//! of its training windows, independent and deliberately plain error measures), and the tests
//! that combine several of the learner's modules.

use super::output::BoostParams;
use super::windows::{extract_windows, sample_positions, Windows};
use super::TrainConfig;
use crate::data::LayerDir;
use crate::maddness::Tables;
use crate::spec::ConvSpec;
use crate::tensor::Tensor;

/// The small real layer that ships with the repository (`tests/fixtures`), with train inputs.
pub(super) fn fixture() -> LayerDir {
    LayerDir::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/layers/mtcnn_pnet_conv3_trainable"
    ))
    .unwrap()
}

/// Tables of the fixture-style layer folder `layer` trained with `cfg` on `x`.
pub(super) fn train_on(layer: &LayerDir, x: &Tensor, cfg: &TrainConfig) -> Tables {
    let (w, b) = (layer.weight().unwrap(), layer.bias().unwrap());
    let inputs = std::slice::from_ref(x);
    super::train(
        &crate::ConvLayer::new(layer.spec.clone(), w.clone(), b.clone()).unwrap(),
        inputs,
        cfg,
    )
    .unwrap()
}

/// Every window of group 0 of `x`.
pub(super) fn all_windows(spec: &ConvSpec, x: &Tensor) -> Windows {
    let geom = spec.geometry(x.shape()).unwrap();
    let pos = sample_positions((geom.batch * geom.positions()) as u64, None, 0);
    extract_windows(spec, std::slice::from_ref(x), &pos, 0).unwrap()
}

/// All training windows of the fixture layer (1944 × 144), its weight (32 × 144) and `M`.
pub(super) fn fixture_windows() -> (Windows, Vec<f32>, usize) {
    let layer = fixture();
    let windows = all_windows(&layer.spec, &layer.train().unwrap());
    let w = layer.weight().unwrap();
    (windows, w.data().to_vec(), layer.spec.out_channels)
}

/// `‖A·wᵀ − Σ_c T[c][code_c]‖²` over the windows, in f64.
pub(super) fn output_sse(
    windows: &Windows,
    w: &[f32],
    m: usize,
    codes: &[u8],
    c_total: usize,
    t: &[f64],
) -> f64 {
    let d = windows.dim;
    let mut e = 0.0;
    for r in 0..windows.rows {
        let a = windows.row(r);
        for mm in 0..m {
            let y: f64 = (0..d).map(|j| a[j] as f64 * w[mm * d + j] as f64).sum();
            let yh: f64 = (0..c_total)
                .map(|c| t[(c * 16 + codes[r * c_total + c] as usize) * m + mm])
                .sum();
            e += (y - yh).powi(2);
        }
    }
    e
}

/// SSE of rows (each `D` values) around the means of their groups, on dimensions `dims`.
pub(super) fn grouped_sse(
    rows: &[Vec<f32>],
    groups: &[usize],
    dims: std::ops::Range<usize>,
) -> f64 {
    let k = groups.iter().max().map_or(0, |m| m + 1);
    let w = dims.len();
    let mut sum = vec![0.0f64; k * w];
    let mut count = vec![0usize; k];
    for (r, &g) in rows.iter().zip(groups) {
        count[g] += 1;
        for (j, d) in dims.clone().enumerate() {
            sum[g * w + j] += r[d] as f64;
        }
    }
    let mut sse = 0.0;
    for (r, &g) in rows.iter().zip(groups) {
        for (j, d) in dims.clone().enumerate() {
            let e = r[d] as f64 - sum[g * w + j] / count[g] as f64;
            sse += e * e;
        }
    }
    sse
}

/// Boosting settings of the tests: `c` codebooks, `passes` backfitting passes, every window a
/// tree row, whole leaves.
pub(super) fn boost_params(c: usize, passes: usize) -> BoostParams {
    BoostParams {
        codebooks: c,
        depth: crate::maddness::DEFAULT_DEPTH,
        groups: None,
        shortlist: 12,
        rank: 8,
        tree_rows: 1 << 20,
        score_rows: 4096,
        min_leaf: 4,
        shrinkage: 1.0,
        passes,
        seed: 1,
        after: None,
    }
}

/// Fails, naming the step, where `v` rises (beyond rounding).
pub(super) fn assert_non_increasing(what: &str, v: &[f64]) {
    for i in 1..v.len() {
        assert!(
            v[i] <= v[i - 1] * (1.0 + 1e-6) + 1e-9,
            "{what}: step {i} raised the SSE from {} to {}; all: {v:?}",
            v[i - 1],
            v[i]
        );
    }
}

mod tests {
    use super::super::grouping::{self, codebook_ranges};
    use super::super::output::{boost, Init};
    use super::super::refit::{refit_tables, Solver};
    use super::super::tree::learn_trees;
    use super::super::{Grouping, Learner};
    use super::*;

    /// The trained learner honours its grouping: every split dimension of codebook `c` is in
    /// group `c`.
    #[test]
    fn trees_stay_inside_their_groups() {
        let layer = fixture();
        let x = layer.train().unwrap();
        let (c, area) = (6, 9);
        for (learner, grouping) in [
            (Learner::Output, Grouping::Channels),
            (Learner::Maddness, Grouping::Correlation),
            (Learner::Output, Grouping::Correlation),
        ] {
            let cfg = TrainConfig {
                codebooks: Some(c),
                learner,
                grouping: Some(grouping),
                ..Default::default()
            };
            let t = train_on(&layer, &x, &cfg);
            let windows = all_windows(&layer.spec, &x);
            let g = grouping::groups(grouping, 144, area, c, &windows)
                .unwrap()
                .unwrap();
            for (cb, group) in g.iter().enumerate() {
                for l in 0..4 {
                    let dim = t.split_dims[cb * 4 + l];
                    assert!(
                        group.contains(&dim),
                        "{learner:?}/{grouping:?}: codebook {cb} level {l} splits on {dim}, \
                         outside its group {group:?}"
                    );
                }
            }
        }
    }

    /// The refit minimises `‖Y − G·T‖² + λ‖T − T0‖²`: never above the prior's error; Cholesky and
    /// conjugate gradients agree.
    #[test]
    fn refit_never_raises_training_error_and_solvers_agree() {
        let (windows, w, m) = fixture_windows();
        let c = 8;
        let b = boost(&windows, &w, m, &boost_params(c, 0), None, &mut |_, _| {}).unwrap();
        let e_prior = output_sse(&windows, &w, m, &b.trees.codes, c, &b.prior);
        let chol =
            refit_tables(&windows, &b.trees, &b.prior, 1.0, &w, m, Solver::Cholesky).unwrap();
        let cg = refit_tables(
            &windows,
            &b.trees,
            &b.prior,
            1.0,
            &w,
            m,
            Solver::ConjugateGradient,
        )
        .unwrap();
        let e_chol = output_sse(&windows, &w, m, &b.trees.codes, c, &chol);
        let e_cg = output_sse(&windows, &w, m, &b.trees.codes, c, &cg);
        assert!(
            e_chol <= e_prior * (1.0 + 1e-9),
            "refit {e_chol} > prior {e_prior}"
        );
        // Measured: the joint refit removes a fifth of the boosted leaves' error here.
        assert!(
            e_chol < 0.95 * e_prior,
            "refit {e_chol} vs prior {e_prior}: no gain"
        );
        assert!(
            (e_cg - e_chol).abs() <= 1e-3 * e_chol,
            "conjugate gradients {e_cg} vs Cholesky {e_chol}"
        );
    }

    /// Backfitting from MADDNESS's trees and tables: never worse than where it started.
    #[test]
    fn backfitting_from_maddness_never_raises_the_training_sse() {
        let (windows, w, m) = fixture_windows();
        let c = 8;
        let ranges = codebook_ranges(windows.dim, c).unwrap();
        let trees = learn_trees(&windows, &ranges).unwrap();
        // MADDNESS's tables: the refit of its bucket means (λ = 1) from zero tables is the same
        // least-squares problem up to the prior; any tables will do as a start here.
        let t0 = refit_tables(
            &windows,
            &trees,
            &vec![0.0; c * 16 * m],
            1.0,
            &w,
            m,
            Solver::Cholesky,
        )
        .unwrap();
        let start = output_sse(&windows, &w, m, &trees.codes, c, &t0);
        let init = Init {
            trees: &trees.trees,
            tables: &t0,
        };
        let b = boost(
            &windows,
            &w,
            m,
            &boost_params(c, 1),
            Some(init),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(b.sse.len(), 1 + c);
        assert!(
            (b.sse[0] - start).abs() <= 1e-3 * start,
            "start SSE {} vs the initial tables' {start}",
            b.sse[0]
        );
        assert_non_increasing("backfitting from MADDNESS", &b.sse);
    }
}
