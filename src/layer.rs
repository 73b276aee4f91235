//! [`ConvLayer`]: a convolution layer — its [`ConvSpec`], weight and optional bias — checked
//! once when it is made, and then taken by every path that runs or learns the layer (the CPU
//! reference, the exact GPU kernels, the MADDNESS learner, benchmarks, the web API).
//!
//! * conv2d: weight `O×(C/groups)×KH×KW`, bias `O`; inputs `N×C×H×W`, outputs `N×O×OH×OW`.
//! * conv1d: weight `O×(C/groups)×K`, bias `O`; inputs `N×C×L`, outputs `N×O×OL`.

use crate::error::{Error, Result};
use crate::spec::ConvSpec;
use crate::tensor::Tensor;

/// A convolution layer whose spec, weight shape, bias shape and values have been checked.
///
/// The fields are private so that a `ConvLayer` can only exist in a valid state: the spec
/// passes [`ConvSpec::validate`], the weight has [`ConvSpec::weight_shape`], the bias is
/// present iff `spec.bias` and has shape `[O]`, and every weight and bias value is finite.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvLayer {
    spec: ConvSpec,
    weight: Tensor,
    bias: Option<Tensor>,
}

impl ConvLayer {
    /// Checks and wraps a layer. `weight`: `O×(C/g)×KH×KW` (conv2d) or `O×(C/g)×K` (conv1d);
    /// `bias`: `O`, present iff `spec.bias`.
    ///
    /// Fails with [`Error::Spec`] or [`Error::Shape`] on an invalid spec or mismatched shapes,
    /// and with [`Error::NonFinite`] (naming the index) on a NaN or infinite weight or bias.
    pub fn new(spec: ConvSpec, weight: Tensor, bias: Option<Tensor>) -> Result<ConvLayer> {
        spec.check_weight(weight.shape())?;
        spec.check_bias(bias.as_ref().map(|b| b.shape()))?;
        weight.check_finite("weight")?;
        if let Some(b) = &bias {
            b.check_finite("bias")?;
        }
        Ok(ConvLayer { spec, weight, bias })
    }

    /// A layer with default stride, padding and dilation whose spec follows from the weight's
    /// shape ([`ConvSpec::for_weight`]): rank 3 is a conv1d, rank 4 a conv2d, with
    /// `in_channels = groups · weight.shape[1]`.
    pub fn from_weight(weight: Tensor, bias: Option<Tensor>, groups: usize) -> Result<ConvLayer> {
        let spec = ConvSpec::for_weight(weight.shape(), groups, bias.is_some())?;
        ConvLayer::new(spec, weight, bias)
    }

    /// The layer's spec.
    pub fn spec(&self) -> &ConvSpec {
        &self.spec
    }

    /// The weight, `O×(C/g)×KH×KW` or `O×(C/g)×K`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `O`, present iff `spec().bias`.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The spec, weight and bias.
    pub fn into_parts(self) -> (ConvSpec, Tensor, Option<Tensor>) {
        (self.spec, self.weight, self.bias)
    }

    /// The output shape for an input shape, after checking the input shape against the spec.
    pub fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        self.spec.output_shape(input_shape)
    }

    /// Checks an input tensor for this layer: its shape fits the spec and its values are
    /// finite. `what` names the input in the error ("training input x.npy").
    pub fn check_input(&self, input: &Tensor, what: &str) -> Result<()> {
        self.spec.geometry(input.shape()).map_err(|e| match e {
            Error::Shape(m) => Error::Shape(format!("{what}: {m}")),
            Error::Spec(m) => Error::Spec(format!("{what}: {m}")),
            other => other,
        })?;
        input.check_finite(what)
    }

    /// The exact output of the layer on `input` (`N×C×H×W` or `N×C×L`), computed by the f64 CPU
    /// reference ([`conv_reference`](crate::reference::conv_reference)).
    pub fn exact(&self, input: &Tensor) -> Result<Tensor> {
        crate::reference::conv_reference(&self.spec, input, &self.weight, self.bias.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product();
        Tensor::new(shape, (0..n).map(|i| i as f32 * 0.5).collect()).unwrap()
    }

    #[test]
    fn a_layer_is_checked_once_when_made() {
        let spec = ConvSpec::conv2d(4, 6, 3, 3);
        let layer = ConvLayer::new(spec.clone(), weight(vec![6, 4, 3, 3]), None).unwrap();
        assert_eq!(layer.spec(), &spec);
        assert_eq!(layer.output_shape(&[2, 4, 5, 5]).unwrap(), vec![2, 6, 3, 3]);

        let e = ConvLayer::new(spec.clone(), weight(vec![6, 4, 3, 2]), None).unwrap_err();
        assert!(e.to_string().contains("[6, 4, 3, 2]"), "{e}");
        let e = ConvLayer::new(
            spec.clone(),
            weight(vec![6, 4, 3, 3]),
            Some(weight(vec![6])),
        )
        .unwrap_err();
        assert!(e.to_string().contains("has none"), "{e}");

        let mut bad = weight(vec![6, 4, 3, 3]);
        bad.data_mut()[17] = f32::NAN;
        match ConvLayer::new(spec, bad, None).unwrap_err() {
            Error::NonFinite { what, index, .. } => {
                assert_eq!((what.as_str(), index), ("weight", 17))
            }
            other => panic!("expected NonFinite, got {other}"),
        }
    }

    #[test]
    fn from_weight_infers_the_kind_and_groups() {
        let layer =
            ConvLayer::from_weight(weight(vec![8, 2, 5]), Some(weight(vec![8])), 4).unwrap();
        assert_eq!(layer.spec().kind, crate::spec::ConvKind::Conv1d);
        assert_eq!(layer.spec().in_channels, 8);
        assert!(layer.spec().bias);
        let input = Tensor::new(vec![1, 8, 4], vec![f32::INFINITY; 32]).unwrap();
        let e = layer.check_input(&input, "test input").unwrap_err();
        assert!(e.to_string().contains("test input"), "{e}");
        let short = Tensor::new(vec![1, 8, 4], vec![0.0; 32]).unwrap();
        let e = layer.check_input(&short, "test input").unwrap_err();
        assert!(e.to_string().contains("test input: length axis"), "{e}");
    }
}
