//! One conv layer as a single-node ONNX model, so that other engines (onnxruntime, ONNX Runtime
//! Web, tract) run exactly the layer our kernels run. The model has one input `x` of shape
//! `[N, C, *spatial]` with symbolic `N` and spatial sizes, one `Conv` node (opset 13) with the
//! layer's weight, bias, strides, pads, dilations and group as initializers and attributes, and
//! one output `y`.

use prost::Message;
use tract_onnx::pb;

use crate::layer::ConvLayer;
use crate::tensor::Tensor;

/// The ONNX opset the exported model declares.
pub const OPSET: i64 = 13;

/// The exported model's input and output names.
pub const INPUT_NAME: &str = "x";
/// See [`INPUT_NAME`].
pub const OUTPUT_NAME: &str = "y";

/// The bytes of an ONNX model computing `layer` (see the [module docs](self)).
pub fn conv_onnx(layer: &ConvLayer, name: &str) -> Vec<u8> {
    let spec = layer.spec();
    let dims = spec.kind.spatial_dims();
    let mut inputs = vec![INPUT_NAME.to_string(), "weight".to_string()];
    let mut initializer = vec![initializer_of("weight", layer.weight())];
    if let Some(b) = layer.bias() {
        inputs.push("bias".into());
        initializer.push(initializer_of("bias", b));
    }
    let node = pb::NodeProto {
        input: inputs,
        output: vec![OUTPUT_NAME.into()],
        name: "conv".into(),
        op_type: "Conv".into(),
        attribute: vec![
            ints_attr("kernel_shape", &spec.kernel),
            ints_attr("strides", &spec.stride),
            ints_attr("pads", &spec.padding),
            ints_attr("dilations", &spec.dilation),
            int_attr("group", spec.groups),
        ],
        ..Default::default()
    };
    let mut in_shape = vec![sym("N"), fixed(spec.in_channels)];
    let mut out_shape = vec![sym("N"), fixed(spec.out_channels)];
    let axes = ["H", "W"];
    for a in &axes[axes.len() - dims..] {
        in_shape.push(sym(a));
        out_shape.push(sym(&format!("{a}_out")));
    }
    let graph = pb::GraphProto {
        node: vec![node],
        name: name.to_string(),
        initializer,
        input: vec![value_info(INPUT_NAME, in_shape)],
        output: vec![value_info(OUTPUT_NAME, out_shape)],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "maddconv".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

fn initializer_of(name: &str, t: &Tensor) -> pb::TensorProto {
    pb::TensorProto {
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        name: name.into(),
        raw_data: t.data().iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn ints_attr(name: &str, v: &[usize]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}

fn int_attr(name: &str, v: usize) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: v as i64,
        ..Default::default()
    }
}

fn sym(name: &str) -> pb::tensor_shape_proto::Dimension {
    pb::tensor_shape_proto::Dimension {
        value: Some(pb::tensor_shape_proto::dimension::Value::DimParam(
            name.into(),
        )),
        ..Default::default()
    }
}

fn fixed(n: usize) -> pb::tensor_shape_proto::Dimension {
    pb::tensor_shape_proto::Dimension {
        value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(n as i64)),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: Vec<pb::tensor_shape_proto::Dimension>) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim: dims }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::rng::SplitMix64 as Rng;
    use crate::spec::ConvSpec;

    fn random(shape: Vec<usize>, rng: &mut Rng) -> Tensor {
        let n = shape.iter().product();
        Tensor::new(shape, (0..n).map(|_| rng.normal()).collect()).unwrap()
    }

    /// tract reads the exported model back as the same conv (our Conv node parser gives the
    /// same spec) and computes what the f64 CPU reference computes.
    #[test]
    fn round_trip_through_tract() {
        let mut rng = Rng::new(7);
        let mut specs = Vec::new();
        let mut s = ConvSpec::conv2d(6, 4, 3, 2);
        s.stride = vec![2, 1];
        s.padding = vec![1, 0, 2, 1];
        s.dilation = vec![1, 2];
        s.groups = 2;
        s.bias = true;
        specs.push((s, vec![2, 6, 9, 8]));
        let mut s = ConvSpec::conv1d(3, 5, 4);
        s.padding = vec![3, 0];
        specs.push((s, vec![1, 3, 20]));
        for (spec, in_shape) in specs {
            let mut w_shape = vec![spec.out_channels, spec.in_channels / spec.groups];
            w_shape.extend(&spec.kernel);
            let bias = spec.bias.then(|| random(vec![spec.out_channels], &mut rng));
            let layer = ConvLayer::new(spec.clone(), random(w_shape, &mut rng), bias).unwrap();
            let bytes = conv_onnx(&layer, "test");
            let model =
                Model::from_bytes(&bytes, &[(INPUT_NAME.into(), in_shape.clone())]).unwrap();
            assert_eq!(model.convs().len(), 1);
            assert_eq!(model.convs()[0].layer.as_ref().unwrap().spec(), &spec);
            let x = random(in_shape, &mut rng);
            let got = model.run(std::slice::from_ref(&x)).unwrap().remove(0);
            let want = layer.exact(&x).unwrap();
            assert_eq!(got.shape(), want.shape());
            for (i, (a, b)) in got.data().iter().zip(want.data()).enumerate() {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "[{i}]: {a} vs {b}");
            }
        }
    }
}
