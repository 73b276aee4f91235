//! Detected boxes of a YOLOX-style detector output, and the agreement of two sets of boxes.
//!
//! A YOLOX head (e.g. the ddddocr text detector) outputs `[1, N, 5 + K]`: one row per anchor
//! point of the stride-8, -16 and -32 grids over the input image (`N = Σ (H/s)·(W/s)`, each
//! grid row-major), columns `cx, cy` (offsets in grid cells), `log w, log h` (grid cells),
//! objectness and `K` class scores (after their sigmoids). [`decode_yolox`] turns it into
//! boxes in the pixels of the input image the way YOLOX's `demo_postprocess` and ddddocr's
//! `get_bbox` do: centre `(offset + grid index) · stride`, size `exp(log size) · stride`,
//! score = objectness × best class score, scores above a threshold kept, then class-agnostic
//! greedy non-maximum suppression (areas with the +1 pixel convention).
//!
//! [`match_boxes`] pairs the boxes of an exact and an approximate run greedily one to one
//! (each exact box, highest score first, takes the unmatched approximate box of highest IoU
//! ≥ the threshold): recall = matched / exact boxes, precision = matched / approximate boxes.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// One detected box, in input-image pixels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Detection {
    /// Left, top, right, bottom.
    pub bbox: [f32; 4],
    /// Objectness × class score.
    pub score: f32,
    /// Index of the best class.
    pub class: usize,
}

/// How [`decode_yolox`] reads a YOLOX output.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct YoloxDecode {
    /// Boxes with a score above this are kept (ddddocr: 0.1).
    pub score: f32,
    /// IoU above which NMS drops the lower-scored box (ddddocr: 0.45).
    pub nms_iou: f32,
    /// IoU at which [`match_boxes`] pairs an exact and an approximate box (0.5).
    pub match_iou: f32,
}

impl Default for YoloxDecode {
    fn default() -> Self {
        YoloxDecode {
            score: 0.1,
            nms_iou: 0.45,
            match_iou: 0.5,
        }
    }
}

/// The strides of YOLOX's three heads.
pub const YOLOX_STRIDES: [usize; 3] = [8, 16, 32];

/// IoU of two boxes with the +1 pixel area convention of YOLOX's NMS.
fn iou_plus1(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0]) + 1.0).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1]) + 1.0).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0] + 1.0) * (r[3] - r[1] + 1.0);
    inter / (area(a) + area(b) - inter)
}

/// IoU of two boxes (continuous areas), used for matching.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Decodes one image's YOLOX output `[1, N, 5 + K]` (or `[N, 5 + K]`) for an input image of
/// `height × width` pixels; returns the boxes after NMS, highest score first.
pub fn decode_yolox(
    output: &Tensor,
    height: usize,
    width: usize,
    d: &YoloxDecode,
) -> Result<Vec<Detection>> {
    let shape = output.shape();
    let (n, cols) = match shape {
        [1, n, c] | [n, c] => (*n, *c),
        _ => {
            return Err(Error::Shape(format!(
                "a YOLOX output is [1, N, 5 + classes]; this one has shape {shape:?}"
            )))
        }
    };
    if cols < 6 {
        return Err(Error::Shape(format!(
            "a YOLOX output row has 5 + classes ≥ 6 columns; this one has {cols} (shape {shape:?})"
        )));
    }
    let grids: Vec<(usize, usize, usize)> = YOLOX_STRIDES
        .iter()
        .map(|&s| (s, height / s, width / s))
        .collect();
    let points: usize = grids.iter().map(|(_, h, w)| h * w).sum();
    if points != n {
        return Err(Error::Shape(format!(
            "a YOLOX output for a {height}×{width} input has {points} rows (strides {YOLOX_STRIDES:?}); \
             this one has {n}: not a YOLOX head, or the input size is not the one it ran on"
        )));
    }
    let data = output.data();
    let mut dets = Vec::new();
    let mut row = 0;
    for &(stride, gh, gw) in &grids {
        let s = stride as f32;
        for gy in 0..gh {
            for gx in 0..gw {
                let r = &data[row * cols..(row + 1) * cols];
                row += 1;
                let (class, cls) =
                    r[5..]
                        .iter()
                        .enumerate()
                        .fold(
                            (0, f32::NEG_INFINITY),
                            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                        );
                let score = r[4] * cls;
                if score.is_nan() || score <= d.score {
                    continue;
                }
                let cx = (r[0] + gx as f32) * s;
                let cy = (r[1] + gy as f32) * s;
                let w = r[2].exp() * s;
                let h = r[3].exp() * s;
                dets.push(Detection {
                    bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
                    score,
                    class,
                });
            }
        }
    }
    // Greedy NMS, class-agnostic, highest score first (stable for equal scores).
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Detection> = Vec::new();
    for det in dets {
        if keep
            .iter()
            .all(|k| iou_plus1(&k.bbox, &det.bbox) <= d.nms_iou)
        {
            keep.push(det);
        }
    }
    Ok(keep)
}

/// The agreement of an approximate model's boxes with the exact model's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct BoxAgreement {
    /// Boxes of the exact model.
    pub exact: usize,
    /// Boxes of the approximate model.
    pub approx: usize,
    /// Pairs matched one to one at IoU ≥ the match threshold.
    pub matched: usize,
}

impl BoxAgreement {
    /// matched / exact (1 when the exact model found no box).
    pub fn recall(&self) -> f64 {
        if self.exact == 0 {
            1.0
        } else {
            self.matched as f64 / self.exact as f64
        }
    }
    /// matched / approximate (1 when the approximate model found no box).
    pub fn precision(&self) -> f64 {
        if self.approx == 0 {
            1.0
        } else {
            self.matched as f64 / self.approx as f64
        }
    }
    /// Adds another image's counts.
    pub fn add(&mut self, o: &BoxAgreement) {
        self.exact += o.exact;
        self.approx += o.approx;
        self.matched += o.matched;
    }
}

/// Matches `approx` to `exact` greedily one to one at IoU ≥ `min_iou` (see the module docs).
pub fn match_boxes(exact: &[Detection], approx: &[Detection], min_iou: f32) -> BoxAgreement {
    let mut order: Vec<usize> = (0..exact.len()).collect();
    order.sort_by(|&a, &b| exact[b].score.total_cmp(&exact[a].score));
    let mut used = vec![false; approx.len()];
    let mut matched = 0;
    for i in order {
        let best = approx
            .iter()
            .enumerate()
            .filter(|(j, _)| !used[*j])
            .map(|(j, a)| (j, iou(&exact[i].bbox, &a.bbox)))
            .filter(|&(_, v)| v >= min_iou)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((j, _)) = best {
            used[j] = true;
            matched += 1;
        }
    }
    BoxAgreement {
        exact: exact.len(),
        approx: approx.len(),
        matched,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(b: [f32; 4], score: f32) -> Detection {
        Detection {
            bbox: b,
            score,
            class: 0,
        }
    }

    #[test]
    fn matching_is_one_to_one() {
        let e = [det([0., 0., 10., 10.], 0.9), det([20., 0., 30., 10.], 0.8)];
        // Two approximate boxes on the first exact box, none on the second.
        let a = [det([0., 0., 10., 10.], 0.9), det([1., 0., 11., 10.], 0.7)];
        let m = match_boxes(&e, &a, 0.5);
        assert_eq!((m.exact, m.approx, m.matched), (2, 2, 1));
        assert_eq!(m.recall(), 0.5);
        assert_eq!(m.precision(), 0.5);
        let far = [det([50., 50., 60., 60.], 0.9)];
        assert_eq!(match_boxes(&e, &far, 0.5).matched, 0);
    }

    #[test]
    fn decode_places_boxes_on_the_grid_and_suppresses_overlaps() {
        // A 64×64 input: 8×8 + 4×4 + 2×2 = 84 rows, one class.
        let mut data = vec![0f32; 84 * 6];
        // Stride-8 point (gx 3, gy 2): centre (3.5·8, 2.5·8), size 8·e^1.
        let r = 2 * 8 + 3;
        data[r * 6..r * 6 + 6].copy_from_slice(&[0.5, 0.5, 1.0, 1.0, 0.9, 0.9]);
        // Its neighbour, same box shifted by one pixel, lower score: suppressed.
        let r2 = 2 * 8 + 4;
        data[r2 * 6..r2 * 6 + 6].copy_from_slice(&[-0.375, 0.5, 1.0, 1.0, 0.8, 0.8]);
        // A stride-32 point below the score threshold.
        let r3 = 64 + 16;
        data[r3 * 6..r3 * 6 + 6].copy_from_slice(&[0.0, 0.0, 0.0, 0.0, 0.3, 0.3]);
        let t = Tensor::new(vec![1, 84, 6], data).unwrap();
        let d = decode_yolox(&t, 64, 64, &YoloxDecode::default()).unwrap();
        assert_eq!(d.len(), 1, "{d:?}");
        let w = 8.0 * 1f32.exp();
        let want = [
            28.0 - w / 2.0,
            20.0 - w / 2.0,
            28.0 + w / 2.0,
            20.0 + w / 2.0,
        ];
        for (g, w) in d[0].bbox.iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{:?} vs {want:?}", d[0].bbox);
        }
        assert!((d[0].score - 0.81).abs() < 1e-6);
        let e = decode_yolox(&t, 64, 96, &YoloxDecode::default()).unwrap_err();
        assert!(e.to_string().contains("84"), "{e}");
    }
}
