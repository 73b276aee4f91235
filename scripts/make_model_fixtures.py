#!/usr/bin/env python3
"""Writes the small ONNX fixtures of tests/fixtures/models/ that are the project's own (no
third-party weights): a tiny seeded CNN with onnxruntime's output on a seeded input, and a model
with an op no engine knows.

    python3 scripts/make_model_fixtures.py      # needs numpy, onnx, onnxruntime

tiny_cnn/model.onnx   images [1, 3, 16, 16] -> Conv 3->8 3x3 pad 1 -> Relu -> Conv 8->8 3x3
                      stride 2 pad 1 -> Relu -> Conv 8->4 1x1 -> GlobalAveragePool -> Flatten
                      -> logits [1, 4]
tiny_cnn/input.npy    [6, 3, 16, 16] seeded normal values (6 runs: the batch is fixed to 1)
tiny_cnn/expected.npy [6, 4] onnxruntime (CPU, no graph optimisation) on each row
unknown_op/model.onnx x [1, 4] -> Relu -> NoSuchOp (node "mystery") -> y
"""
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models")


def tiny_cnn():
    rng = np.random.default_rng(20261201)

    def w(*shape):
        fan_in = np.prod(shape[1:])
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

    inits = [
        numpy_helper.from_array(w(8, 3, 3, 3), "w0"),
        numpy_helper.from_array((0.1 * rng.standard_normal(8)).astype(np.float32), "b0"),
        numpy_helper.from_array(w(8, 8, 3, 3), "w1"),
        numpy_helper.from_array((0.1 * rng.standard_normal(8)).astype(np.float32), "b1"),
        numpy_helper.from_array(w(4, 8, 1, 1), "w2"),
        numpy_helper.from_array((0.1 * rng.standard_normal(4)).astype(np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w0", "b0"], ["c0"], name="conv0", pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1],
                         strides=[2, 2], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["logits"], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="maddconv scripts/make_model_fixtures.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    d = os.path.join(ROOT, "tiny_cnn")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    onnx.save(model, path)
    x = rng.standard_normal((6, 3, 16, 16)).astype(np.float32)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    y = np.concatenate([s.run(None, {"images": x[i:i + 1]})[0] for i in range(len(x))])
    np.save(os.path.join(d, "input.npy"), x)
    np.save(os.path.join(d, "expected.npy"), y)


def unknown_op():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("NoSuchOp", ["r"], ["y"], name="mystery"),
    ]
    graph = helper.make_graph(
        nodes, "unknown_op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="maddconv scripts/make_model_fixtures.py")
    model.ir_version = 8
    d = os.path.join(ROOT, "unknown_op")
    os.makedirs(d, exist_ok=True)
    onnx.save(model, os.path.join(d, "model.onnx"))


if __name__ == "__main__":
    tiny_cnn()
    unknown_op()
