//! MADDNESS for convolution layers: learned hash trees and look-up tables that replace the
//! layer's multiply-adds (Blalock & Guttag, ICML 2021), adapted to windows of a convolution.
//!
//! # The model (one per convolution group)
//!
//! The window of output position `p` in group `g` is the vector `a ∈ R^D`,
//! `D = (C/groups)·KH·KW`, flattened channel-first: `d = (ci·KH + ky)·KW + kx`, zeros where the
//! window reaches into padding (see [`Geometry::input_offset`](crate::spec::Geometry::input_offset)).
//!
//! * **Encode**: codebook `c` is a balanced binary tree of depth 4. All nodes of level `t` test
//!   window dimension `split_dims[g][c][t]`, each node its own threshold:
//!   `i = 0; for t in 0..4 { i = 2·i + (a[split_dims[g][c][t]] > thresholds[g][c][t][i]) as u32 }`
//!   gives the code `i ∈ 0..16` (ties go left).
//! * **Accumulate** (8-bit tables): `y[p, o] = (Σ_c luts[g][c][code_c(p)][m]) · inv_scale[o] + offset[o]`
//!   with `o = g·(O/groups) + m`, the u8 entries summed exactly in u32,
//!   `inv_scale[o] = 1 / scale[o]` and `offset[o] = Σ_c lut_offsets[g][c][m] + bias[o]`, both
//!   computed once in f32 by [`Tables::inference_constants`] and shared by the CPU mirror and the
//!   GPU kernels so that they agree.
//!
//! # Layouts of [`Tables`] (C order, `G = groups`, `C = codebooks`, `Mg = O/groups`)
//!
//! | field          | type | shape              |
//! |----------------|------|--------------------|
//! | `split_dims`   | u32  | `[G, C, 4]`        |
//! | `thresholds`   | f32  | `[G, C, 4, 16]` (level `t` uses slots `0..2^t`, the rest are 0) |
//! | `luts`         | u8   | `[G, C, 16, Mg]`   |
//! | `lut_offsets`  | f32  | `[G, C, Mg]`       |
//! | `scales`       | f32  | `[O]`              |
//! | `bias`         | f32  | `[O]` or absent    |
//! | `luts_f32`     | f32  | `[G, C, 16, Mg]` or absent (float tables, to measure quantization) |

use crate::spec::ConvSpec;

/// Depth of every hash tree.
pub const TREE_DEPTH: usize = 4;
/// Buckets (leaves, codes) per codebook: `2^TREE_DEPTH`.
pub const BUCKETS: usize = 16;
/// Threshold slots stored per tree level.
pub const LEVEL_SLOTS: usize = 16;

/// Learned hash trees and look-up tables for one convolution layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Tables {
    /// The layer's convolution parameters.
    pub spec: ConvSpec,
    /// Codebooks per group (`C`).
    pub codebooks: usize,
    /// `[G, C, 4]`: the window dimension (in `0..D`) each tree level tests.
    pub split_dims: Vec<u32>,
    /// `[G, C, 4, 16]`: node thresholds per level.
    pub thresholds: Vec<f32>,
    /// `[G, C, 16, Mg]`: 8-bit tables.
    pub luts: Vec<u8>,
    /// `[G, C, Mg]`: per (codebook, output) offset `o[c][m] = min_k lut[c][k][m]`.
    pub lut_offsets: Vec<f32>,
    /// `[O]`: per output scale `s[m]`; `q = round((lut − o)·s)`.
    pub scales: Vec<f32>,
    /// `[O]`: the layer's bias, if it has one.
    pub bias: Option<Vec<f32>>,
    /// `[G, C, 16, Mg]`: the float tables before quantization, if kept.
    pub luts_f32: Option<Vec<f32>>,
}

/// Per-output constants of 8-bit inference, shared by the CPU mirror and the GPU kernels.
#[derive(Clone, Debug, PartialEq)]
pub struct InferenceConstants {
    /// `[O]`: `1 / scale`.
    pub inv_scale: Vec<f32>,
    /// `[O]`: `Σ_c lut_offsets[g][c][m] + bias[o]`.
    pub offset: Vec<f32>,
}

impl Tables {
    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.spec.groups
    }
    /// Output channels per group (`Mg`).
    pub fn out_per_group(&self) -> usize {
        self.spec.out_channels / self.spec.groups
    }

    /// The per-output constants of 8-bit inference, computed in f32 (sums over codebooks in
    /// increasing `c`, then the bias).
    pub fn inference_constants(&self) -> InferenceConstants {
        let o_total = self.spec.out_channels;
        let mg = self.out_per_group();
        let c = self.codebooks;
        let mut offset = vec![0.0f32; o_total];
        for (o, off) in offset.iter_mut().enumerate() {
            let (g, m) = (o / mg, o % mg);
            let mut s = 0.0f32;
            for cb in 0..c {
                s += self.lut_offsets[(g * c + cb) * mg + m];
            }
            if let Some(b) = &self.bias {
                s += b[o];
            }
            *off = s;
        }
        InferenceConstants {
            inv_scale: self.scales.iter().map(|s| 1.0 / s).collect(),
            offset,
        }
    }
}
