#!/usr/bin/env python3
"""Builds the small real-data fixtures in tests/fixtures/layers/ from ../shared/data.

Each fixture is a real layer (its real weight and bias) with a small piece of its real test
input. Where whole samples are kept (conv1d layers, one sample per block), test_expected.npy is
the original onnxruntime output of those samples; where a 2-D input is cropped,
test_expected.npy is recomputed here by a float64 numpy convolution (an engine independent of
the Rust code), exactly as the data README's "Check" section does.

Usage: python3 scripts/make_fixtures.py [path/to/shared/data]   (needs numpy)
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np

DATA = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "../shared/data")
OUT = Path(__file__).resolve().parents[1] / "tests/fixtures/layers"


def conv_f64(x, w, b, spec):
    """Plain float64 convolution (unfold + matmul), groups = 1."""
    assert spec["groups"] == 1
    if spec["kind"] == "conv1d":
        x = x[:, :, None, :]
        w = w[:, :, None, :]
        stride = [1] + spec["stride"]
        dil = [1] + spec["dilation"]
        pads = [0, spec["padding"][0], 0, spec["padding"][1]]
    else:
        stride, dil, pads = spec["stride"], spec["dilation"], spec["padding"]
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]))
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x
    oh = (xp.shape[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (xp.shape[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, o, oh, ow))
    for ky in range(kh):
        for kx in range(kw):
            ys, xs = ky * dil[0], kx * dil[1]
            patch = xp[:, :, ys:ys + stride[0] * (oh - 1) + 1:stride[0], xs:xs + stride[1] * (ow - 1) + 1:stride[1]]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx])
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    if spec["kind"] == "conv1d":
        y = y[:, :, 0, :]
    return y.astype(np.float32)


def make(name, src, crop, how):
    sdir = DATA / "layers" / src
    spec = json.loads((sdir / "layer.json").read_text())
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    w = np.load(sdir / "weight.npy")
    b = np.load(sdir / "bias.npy") if spec["bias"] else None
    x = np.ascontiguousarray(np.load(sdir / "test.npy")[crop])
    if how == "samples":
        y = np.ascontiguousarray(np.load(sdir / "test_expected.npy")[crop[0]])
        made = f"samples {crop[0].start}..{crop[0].stop} of test.npy and of test_expected.npy (onnxruntime's output, unchanged)"
    else:
        y = conv_f64(x, w, b, spec)
        made = "a crop of test.npy; test_expected.npy recomputed by float64 numpy (scripts/make_fixtures.py)"
    np.save(d / "weight.npy", w.astype(np.float32))
    if b is not None:
        np.save(d / "bias.npy", b.astype(np.float32))
    np.save(d / "test.npy", x.astype(np.float32))
    np.save(d / "test_expected.npy", y)
    keep = {k: spec[k] for k in ["kind", "in_channels", "out_channels", "kernel", "stride", "padding", "dilation", "groups", "bias", "source", "license"]}
    keep["fixture"] = f"from ../shared/data/layers/{src}: real weight and bias; {made}; crop {crop!r}"
    keep["test_shape"] = list(x.shape)
    keep["test_expected_shape"] = list(y.shape)
    (d / "layer.json").write_text(json.dumps(keep, indent=1) + "\n")
    # sanity: the recomputed conv agrees with the original expected output where it applies
    if how == "samples":
        assert np.abs(conv_f64(x, w, b, spec) - y).max() <= 1e-4 * np.abs(y).max()
    print(name, x.shape, "->", y.shape)


make("ddddocr_det_L05_crop", "ddddocr_det_L05", (slice(0, 1), slice(None), slice(40, 60), slice(30, 54)), "crop")
make("mtcnn_pnet_conv2_crop", "mtcnn_pnet_conv2", (slice(0, 1), slice(None), slice(20, 37), slice(10, 25)), "crop")
make("silero_L02_blocks", "silero_L02", (slice(40, 46),), "samples")
