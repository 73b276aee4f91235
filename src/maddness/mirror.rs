//! The CPU mirror of MADDNESS inference: the same index math and the same integer arithmetic as
//! the GPU kernels, used as their test oracle and as a CPU fallback.
//!
//! * [`encode`] — input `N×C×H×W` (or `N×C×L`) → packed codes `[G, Q, W]` (`u32`, `P = 8`
//!   four-bit codes per word for trees of depth 4, `P = 4` eight-bit codes for deeper trees,
//!   `W = ceil(C/P)`, `Q = N·OH·OW`, `q = (n·OH + oy)·OW + ox`; codebook `c` in word `c / P`,
//!   bits `B·(c % P)..+B`, unused bits 0; [`Tables::code_at`]). Every window value is read through
//!   [`Geometry::input_offset`] (0 in padding), exactly the definition the shaders use.
//! * [`accumulate_sums`] — codes → exact `u32` sums of the 8-bit table entries, `[N, O, OH·OW]`.
//! * [`apply`] — both, then `y = sum as f32 · inv_scale[o] + offset[o]` with the constants of
//!   [`Tables::inference_constants`]: output `N×O×OH×OW` or `N×O×OL`.
//! * [`apply_f32`] — the same with the float tables (no quantization), to measure the
//!   quantization's share of the error.
//! * [`window_into`] — one full window (the learner's im2col row), same index math.
//!
//! Inputs are not checked for NaN/inf here, as on the GPU: a NaN compares false and goes left in
//! every tree. Parallel over samples/positions with rayon (which runs on the calling thread where
//! threads are unavailable, e.g. wasm).

use rayon::prelude::*;

use super::Tables;
use crate::error::{Error, Result};
use crate::spec::Geometry;
use crate::tensor::Tensor;

/// Positions encoded per parallel task.
const POSITIONS_PER_TASK: usize = 256;

/// Writes the window of group `g` at output position `(n, oy, ox)` into `out[..D]`, channel-first
/// (`d = (ci·KH + ky)·KW + kx`), with zeros where the window reads padding.
///
/// `input` is the C-order data of the input tensor described by `geom`. Same index math as
/// [`Geometry::input_offset`] with the divisions hoisted out of the loops. Fails with
/// [`Error::Shape`] when `input` or `out` is too short or the position is outside `geom`.
pub fn window_into(
    geom: &Geometry,
    input: &[f32],
    n: usize,
    g: usize,
    oy: usize,
    ox: usize,
    out: &mut [f32],
) -> Result<()> {
    if input.len() < geom.input_len()
        || out.len() < geom.window_len()
        || n >= geom.batch
        || g >= geom.groups
        || oy >= geom.out_h
        || ox >= geom.out_w
    {
        return Err(Error::Shape(format!(
            "window (n {n}, group {g}, y {oy}, x {ox}) into {} values from an input of {} \
             values; the geometry has batch {}, groups {}, output {}×{}, D = {}, input {} values",
            out.len(),
            input.len(),
            geom.batch,
            geom.groups,
            geom.out_h,
            geom.out_w,
            geom.window_len(),
            geom.input_len()
        )));
    }
    let (kh, kw) = (geom.kernel_h, geom.kernel_w);
    let cg = geom.in_per_group();
    for ci in 0..cg {
        let plane = (n * geom.in_channels + g * cg + ci) * geom.in_h;
        for ky in 0..kh {
            let row = &mut out[(ci * kh + ky) * kw..][..kw];
            let iy = (oy * geom.stride_h + ky * geom.dilation_h) as isize - geom.pad_top as isize;
            if iy < 0 || iy >= geom.in_h as isize {
                row.fill(0.0);
                continue;
            }
            let base = (plane + iy as usize) * geom.in_w;
            let x0 = (ox * geom.stride_w) as isize - geom.pad_left as isize;
            for (kx, v) in row.iter_mut().enumerate() {
                let ix = x0 + (kx * geom.dilation_w) as isize;
                *v = if ix < 0 || ix >= geom.in_w as isize {
                    0.0
                } else {
                    input[base + ix as usize]
                };
            }
        }
    }
    Ok(())
}

/// The code (`0..2^depth`) of codebook `c` of group `g` for a window given by a value reader.
#[inline]
pub(crate) fn walk_tree(tables: &Tables, g: usize, c: usize, value: impl Fn(usize) -> f32) -> u32 {
    let gc = g * tables.codebooks + c;
    let (depth, slots) = (tables.depth, tables.level_slots());
    let mut i = 0u32;
    for t in 0..depth {
        let d = tables.split_dims[gc * depth + t] as usize;
        let thr = tables.thresholds[(gc * depth + t) * slots + i as usize];
        i = 2 * i + u32::from(value(d) > thr);
    }
    i
}

/// Encodes every window of `input` (`N×C×H×W` or `N×C×L`): packed codes `[G, Q, W]`
/// as described in the [module docs](self).
pub fn encode(tables: &Tables, input: &Tensor) -> Result<Vec<u32>> {
    tables.validate()?;
    let geom = tables.spec.geometry(input.shape())?;
    let x = input.data();
    let words = tables.code_words();
    let q_total = geom.batch * geom.positions();
    let groups = tables.groups();
    let len = groups
        .checked_mul(q_total)
        .and_then(|v| v.checked_mul(words))
        .ok_or_else(|| Error::Shape("code buffer size overflows".into()))?;
    let mut codes = vec![0u32; len];
    codes
        .par_chunks_mut(words * POSITIONS_PER_TASK)
        .enumerate()
        .for_each(|(task, chunk)| {
            let first = task * POSITIONS_PER_TASK;
            for (j, out) in chunk.chunks_mut(words).enumerate() {
                let gq = first + j;
                let (g, q) = (gq / q_total, gq % q_total);
                let (n, p) = (q / geom.positions(), q % geom.positions());
                let (oy, ox) = (p / geom.out_w, p % geom.out_w);
                for c in 0..tables.codebooks {
                    let code = walk_tree(tables, g, c, |d| {
                        geom.input_offset(n, g, oy, ox, d).map_or(0.0, |i| x[i])
                    });
                    tables.put_code(out, c, code);
                }
            }
        });
    Ok(codes)
}

/// Exact `u32` sums of the 8-bit table entries for packed `codes` (`[G, batch·positions,
/// W]`, `W` = [`Tables::code_words`]), laid out like the output: `[batch, O, positions]`.
///
/// `sum[n][o][p] = Σ_c luts[g][c][code_c(n, p)][m]` with `o = g·Mg + m`.
pub fn accumulate_sums(
    tables: &Tables,
    codes: &[u32],
    batch: usize,
    positions: usize,
) -> Result<Vec<u32>> {
    tables.validate()?;
    let words = tables.code_words();
    let k = tables.buckets();
    let (groups, mg, c_total) = (tables.groups(), tables.out_per_group(), tables.codebooks);
    let q_total = batch
        .checked_mul(positions)
        .ok_or_else(|| Error::Shape("batch × positions overflows".into()))?;
    let want = q_total
        .checked_mul(groups)
        .and_then(|v| v.checked_mul(words))
        .ok_or_else(|| Error::Shape("code buffer size overflows".into()))?;
    if codes.len() != want {
        return Err(Error::Shape(format!(
            "codes hold {} words; [G = {groups}, N·P = {batch}·{positions}, W = {words}] \
             needs {want}",
            codes.len()
        )));
    }
    let o_total = tables.spec.out_channels;
    let per_sample = o_total
        .checked_mul(positions)
        .ok_or_else(|| Error::Shape("output size overflows".into()))?;
    let total = per_sample
        .checked_mul(batch)
        .ok_or_else(|| Error::Shape("output size overflows".into()))?;
    let mut sums = vec![0u32; total];
    if per_sample == 0 {
        return Ok(sums);
    }
    sums.par_chunks_mut(per_sample)
        .enumerate()
        .for_each(|(n, out)| {
            let mut acc = vec![0u32; mg];
            for g in 0..groups {
                for p in 0..positions {
                    let q = n * positions + p;
                    let row = &codes[(g * q_total + q) * words..][..words];
                    acc.fill(0);
                    for c in 0..c_total {
                        let code = tables.code_at(row, c);
                        let lut = &tables.luts[((g * c_total + c) * k + code) * mg..][..mg];
                        for (a, &v) in acc.iter_mut().zip(lut) {
                            *a += u32::from(v);
                        }
                    }
                    for (m, &a) in acc.iter().enumerate() {
                        out[(g * mg + m) * positions + p] = a;
                    }
                }
            }
        });
    Ok(sums)
}

/// 8-bit inference of the approximate layer on `input` (`N×C×H×W` or `N×C×L`):
/// `y[n, o, p] = sum[n][o][p] as f32 · inv_scale[o] + offset[o]`. Returns `N×O×OH×OW` or
/// `N×O×OL`.
pub fn apply(tables: &Tables, input: &Tensor) -> Result<Tensor> {
    tables.validate()?;
    let geom = tables.spec.geometry(input.shape())?;
    let codes = encode(tables, input)?;
    let sums = accumulate_sums(tables, &codes, geom.batch, geom.positions())?;
    let k = tables.inference_constants();
    let positions = geom.positions();
    let o_total = tables.spec.out_channels;
    let y: Vec<f32> = sums
        .par_iter()
        .enumerate()
        .map(|(i, &s)| {
            let o = (i / positions) % o_total;
            s as f32 * k.inv_scale[o] + k.offset[o]
        })
        .collect();
    Tensor::new(geom.output_shape(tables.spec.kind), y)
}

/// Inference with the float tables (`luts_f32`): `y[n, o, p] = Σ_c lut_f32[g][c][code][m] +
/// bias[o]`, summed in f32 in increasing `c`. Returns `N×O×OH×OW` or `N×O×OL`.
///
/// Fails with [`Error::Argument`] when the tables were saved without float tables.
pub fn apply_f32(tables: &Tables, input: &Tensor) -> Result<Tensor> {
    let luts = tables.luts_f32.as_ref().ok_or_else(|| {
        Error::Argument(
            "these tables hold no float tables (train with keep_f32_tables = true)".into(),
        )
    })?;
    tables.validate()?;
    let geom = tables.spec.geometry(input.shape())?;
    let codes = encode(tables, input)?;
    let words = tables.code_words();
    let k = tables.buckets();
    let (groups, mg, c_total) = (tables.groups(), tables.out_per_group(), tables.codebooks);
    let positions = geom.positions();
    let q_total = geom.batch * positions;
    let o_total = tables.spec.out_channels;
    let mut y = vec![0.0f32; geom.output_len()];
    if o_total * positions == 0 {
        return Tensor::new(geom.output_shape(tables.spec.kind), y);
    }
    y.par_chunks_mut(o_total * positions)
        .enumerate()
        .for_each(|(n, out)| {
            let mut acc = vec![0.0f32; mg];
            for g in 0..groups {
                for p in 0..positions {
                    let row = &codes[(g * q_total + n * positions + p) * words..][..words];
                    acc.fill(0.0);
                    for c in 0..c_total {
                        let code = tables.code_at(row, c);
                        let lut = &luts[((g * c_total + c) * k + code) * mg..][..mg];
                        for (a, &v) in acc.iter_mut().zip(lut) {
                            *a += v;
                        }
                    }
                    for (m, &a) in acc.iter().enumerate() {
                        let o = g * mg + m;
                        let b = tables.bias.as_ref().map_or(0.0, |b| b[o]);
                        out[o * positions + p] = a + b;
                    }
                }
            }
        });
    Tensor::new(geom.output_shape(tables.spec.kind), y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ConvSpec;

    /// `window_into` and `Geometry::input_offset` agree on every element of every window, over
    /// padding, stride, dilation, groups and conv1d.
    #[test]
    fn window_matches_input_offset() {
        let mut specs = Vec::new();
        let mut s = ConvSpec::conv2d(6, 4, 3, 2);
        s.padding = vec![1, 0, 2, 1];
        s.stride = vec![2, 1];
        s.dilation = vec![1, 2];
        s.groups = 2;
        specs.push((s, vec![2, 6, 7, 8]));
        let mut s = ConvSpec::conv1d(3, 5, 4);
        s.padding = vec![3, 1];
        s.stride = vec![3];
        specs.push((s, vec![2, 3, 9]));
        for (spec, shape) in specs {
            let geom = spec.geometry(&shape).unwrap();
            let len: usize = shape.iter().product();
            let x: Vec<f32> = (0..len).map(|i| i as f32 + 1.0).collect();
            let d = geom.window_len();
            let mut w = vec![f32::NAN; d];
            for n in 0..geom.batch {
                for g in 0..geom.groups {
                    for oy in 0..geom.out_h {
                        for ox in 0..geom.out_w {
                            window_into(&geom, &x, n, g, oy, ox, &mut w).unwrap();
                            for (dd, &v) in w.iter().enumerate() {
                                let e = geom.input_offset(n, g, oy, ox, dd).map_or(0.0, |i| x[i]);
                                assert_eq!(v, e, "{spec:?} n{n} g{g} ({oy},{ox}) d{dd}");
                            }
                        }
                    }
                }
            }
        }
    }
}
