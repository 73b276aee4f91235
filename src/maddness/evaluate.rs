//! The held-out error of a trained layer: [`evaluate`] runs the 8-bit tables (and the float
//! tables, when kept) through the CPU mirror on an input not used for training and measures the
//! NMSE (DESIGN.md §5) against the exact output; [`HeldOut::measure`] does the same for outputs
//! computed elsewhere (the GPU kernels).
//!
//! Inputs are `N×C×H×W` or `N×C×L`; outputs and the exact output `N×O×OH×OW` or `N×O×OL`.

use super::{mirror, Activation, HeldOut, Tables};
use crate::error::{Error, Result};
use crate::metrics::nmse;
use crate::spec::ConvKind;
use crate::tensor::Tensor;

/// The error of `tables` on `input` against `exact`, the layer's exact output on `input`
/// (from [`ConvLayer::exact`](crate::ConvLayer::exact) or another engine). `source` names the
/// input in the result (usually its file name).
///
/// Fails when `exact` does not have the layer's output shape for `input`, or on non-finite
/// values.
pub fn evaluate(tables: &Tables, input: &Tensor, exact: &Tensor, source: &str) -> Result<HeldOut> {
    let expected = tables.spec.output_shape(input.shape())?;
    if exact.shape() != expected.as_slice() {
        return Err(Error::Shape(format!(
            "the exact output has shape {:?}, but the layer gives {expected:?} for an input of \
             shape {:?}",
            exact.shape(),
            input.shape()
        )));
    }
    let y8 = mirror::apply(tables, input)?;
    let yf = match tables.luts_f32 {
        Some(_) => Some(mirror::apply_f32(tables, input)?),
        None => None,
    };
    let mut h = HeldOut::measure(tables.spec.kind, &y8, yf.as_ref(), exact, source)?;
    let act = tables.meta.activation;
    if !act.is_identity() {
        h.nmse_after_activation = Some(nmse_after(tables.spec.kind, act, &y8, exact)?);
    }
    Ok(h)
}

/// The NMSE of `y` against `exact` (both the conv's output, bias included) after the
/// activation `act` is applied to both.
pub fn nmse_after(kind: ConvKind, act: Activation, y: &Tensor, exact: &Tensor) -> Result<f64> {
    let f = |t: &Tensor| -> Result<Tensor> {
        Tensor::new(
            t.shape().to_vec(),
            t.data()
                .iter()
                .map(|&v| act.apply(v as f64) as f32)
                .collect(),
        )
    };
    nmse(kind, &f(y)?, &f(exact)?)
}

impl HeldOut {
    /// The error of the outputs of 8-bit tables (`y8`) and, if given, float tables (`yf`)
    /// against `exact`; all three of the same shape.
    pub fn measure(
        kind: ConvKind,
        y8: &Tensor,
        yf: Option<&Tensor>,
        exact: &Tensor,
        source: &str,
    ) -> Result<HeldOut> {
        Ok(HeldOut {
            source: source.to_string(),
            nmse: nmse(kind, y8, exact)?,
            nmse_f32_tables: yf.map(|y| nmse(kind, y, exact)).transpose()?,
            nmse_after_activation: None,
        })
    }

    /// `1 − NMSE` of the 8-bit tables: the fraction of the output's per-channel variance they
    /// explain (1 = exact).
    pub fn one_minus_nmse(&self) -> f64 {
        1.0 - self.nmse
    }

    /// `1 − NMSE` of the float tables, when they were measured.
    pub fn one_minus_nmse_f32_tables(&self) -> Option<f64> {
        self.nmse_f32_tables.map(|v| 1.0 - v)
    }
}
