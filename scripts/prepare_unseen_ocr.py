#!/usr/bin/env python3
"""Inputs for the "ONNX CNN not seen before" check of BENCHMARKS.md: RapidOCR 1.3.24's
PP-OCRv4 text detector (DBNet, `ch_PP-OCRv4_det_infer.onnx`, Apache-2.0, from the PyPI wheel
rapidocr-onnxruntime==1.3.24) and its text-direction classifier (`ch_ppocr_mobile_v2.0_cls_infer.onnx`).
Nothing of the model or its outputs is kept in the repository.

    pip download --no-deps rapidocr-onnxruntime==1.3.24; unzip the two models into DIR
    python3 scripts/prepare_unseen_ocr.py DIR ../shared/data/images   # numpy, Pillow, onnxruntime

det: 256x256 images (resized by Pillow BILINEAR), RGB, (x/255 - 0.485..)/0.229.. (RapidOCR's
det normalisation), NCHW [N, 3, 256, 256] (batch free); calib: chelsea and gravel with words
drawn on them (from ../models/ddddocr_det/test_text.npy) and the centre squares of astronaut,
camera, coffee, rocket, chelsea, gravel, grass, brick and their left-right flips; test: grass
and brick with words drawn on them, cell, clock_motion. cls: 48x192 strips of the same
photos, (x/255 - 0.5)/0.5, [N, 3, 48, 192] (batch free). onnxruntime (CPU, no graph
optimisation) outputs of the test sets are saved next to them for the exact-run check.
"""
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

d, images = sys.argv[1], sys.argv[2]
TRAIN = ["astronaut", "camera", "coffee", "rocket", "chelsea", "gravel", "grass", "brick"]
TEST = ["cell", "clock_motion"]
TEST_CLS = ["cell", "clock_motion", "text"]


def square(name):
    im = Image.open(os.path.join(images, name + ".png")).convert("RGB")
    w, h = im.size
    s = min(w, h)
    return im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))


def det_row(im):
    x = np.asarray(im.resize((256, 256), Image.BILINEAR), dtype=np.float32) / 255.0
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return x.transpose(2, 0, 1)[None]


def cls_rows(im):
    w, h = im.size
    rows = []
    for k in range(4):
        strip = im.crop((0, k * h // 4, w, k * h // 4 + h // 4)).resize((192, 48), Image.BILINEAR)
        x = (np.asarray(strip, dtype=np.float32) / 255.0 - 0.5) / 0.5
        rows.append(x.transpose(2, 0, 1))
    return rows


so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
so.intra_op_num_threads = so.inter_op_num_threads = 1
det = ort.InferenceSession(os.path.join(d, "ch_PP-OCRv4_det_infer.onnx"), so, providers=["CPUExecutionProvider"])
cls = ort.InferenceSession(os.path.join(d, "ch_ppocr_mobile_v2.0_cls_infer.onnx"), so, providers=["CPUExecutionProvider"])
# Photos with words drawn on them (the ddddocr pack's test_text.npy: 416x416 BGR letterboxed
# canvases) give the text detector something to find; their photo region is cropped back out.
dd = np.load(os.path.join(images, "..", "models", "ddddocr_det", "test_text.npy"))
sizes = [(300, 451), (512, 512), (512, 512), (512, 512)]  # photo h, w of chelsea, gravel, grass, brick


def texted(i):
    h, w = sizes[i]
    r = min(416 / h, 416 / w)
    rgb = dd[i][::-1].transpose(1, 2, 0)[: int(h * r), : int(w * r)].clip(0, 255).astype(np.uint8)
    return Image.fromarray(rgb)


plain = [det_row(square(n)) for n in TRAIN] + [det_row(square(n).transpose(Image.FLIP_LEFT_RIGHT)) for n in TRAIN]
# calib: chelsea+text early, gravel+text last (so both the training and the held-out part hold text)
calib = [det_row(texted(0))] + plain + [det_row(texted(1))]
test = [det_row(texted(2)), det_row(texted(3))] + [det_row(square(n)) for n in TEST]
np.save(os.path.join(d, "det_calib.npy"), np.concatenate(calib))
np.save(os.path.join(d, "det_test.npy"), np.concatenate(test))
np.save(os.path.join(d, "det_test_expected.npy"), np.concatenate([det.run(None, {det.get_inputs()[0].name: t})[0] for t in test]))
cc = np.stack(sum([cls_rows(square(n)) for n in TRAIN], []) + sum([cls_rows(square(n).transpose(Image.FLIP_LEFT_RIGHT)) for n in TRAIN], []))
ct = np.stack(sum([cls_rows(square(n)) for n in TEST_CLS], []))
np.save(os.path.join(d, "cls_calib.npy"), cc)
np.save(os.path.join(d, "cls_test.npy"), ct)
np.save(os.path.join(d, "cls_test_expected.npy"), cls.run(None, {cls.get_inputs()[0].name: ct})[0])
print("det input", det.get_inputs()[0].name, det.get_inputs()[0].shape, "cls input", cls.get_inputs()[0].name, cls.get_inputs()[0].shape)
