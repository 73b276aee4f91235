"""Cuts the small trainable real-layer fixture tests/fixtures/layers/mtcnn_pnet_conv3_trainable
from ../shared/data/layers/mtcnn_pnet_conv3 (weights, bias, train and test crops).

The layer is a valid (unpadded) stride-1 3x3 conv, so the output of a crop of the input at
rows/cols r0.. is exactly the crop of the full output at the same offsets: test_expected.npy is
cut from the data set's own test_expected.npy (float64 numpy of the full map), not recomputed.

    python3 scripts/make_train_fixture.py [../shared/data]
"""
import json
import pathlib
import sys

import numpy as np

root = pathlib.Path(__file__).resolve().parent.parent
data = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else root / "../shared/data")
src = data / "layers/mtcnn_pnet_conv3"
dst = root / "tests/fixtures/layers/mtcnn_pnet_conv3_trainable"
dst.mkdir(parents=True, exist_ok=True)

TRAIN = (slice(None), slice(None), slice(20, 40), slice(20, 40))  # 6 x 16 x 20 x 20
TEST_IN = (slice(0, 1), slice(None), slice(16, 40), slice(16, 40))  # 1 x 16 x 24 x 24
TEST_OUT = (slice(0, 1), slice(None), slice(16, 38), slice(16, 38))  # 1 x 32 x 22 x 22

def save(name, a):
    np.save(dst / name, np.ascontiguousarray(a, dtype="<f4"))

save("weight.npy", np.load(src / "weight.npy"))
save("bias.npy", np.load(src / "bias.npy"))
train = np.load(src / "train.npy")[TRAIN]
test = np.load(src / "test.npy")[TEST_IN]
expected = np.load(src / "test_expected.npy")[TEST_OUT]
save("train.npy", train)
save("test.npy", test)
save("test_expected.npy", expected)

meta = json.loads((src / "layer.json").read_text())
meta["fixture"] = (
    "from ../shared/data/layers/mtcnn_pnet_conv3 by scripts/make_train_fixture.py: real weight "
    "and bias; train.npy = train.npy[:, :, 20:40, 20:40] (all 6 train passes); test.npy = "
    "test.npy[0:1, :, 16:40, 16:40]; test_expected.npy = the data set's test_expected.npy"
    "[0:1, :, 16:38, 16:38] (valid conv: the crop of the output is the output of the crop)"
)
meta["train_shape"] = list(train.shape)
meta["test_shape"] = list(test.shape)
meta["test_expected_shape"] = list(expected.shape)
(dst / "layer.json").write_text(json.dumps(meta, indent=1) + "\n")
print("wrote", dst, sum(f.stat().st_size for f in dst.iterdir()), "bytes")
