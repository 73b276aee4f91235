#!/usr/bin/env bash
# Packs a data folder for scripts/device-bench.sh within the 64 MiB a device run carries:
# every layer folder of SRC/layers with its layer.json, weight, bias and test input (no
# test_expected.npy, which the benchmark does not read), and the first samples of its
# train.npy, at most TRAIN_MIB MiB each (default 2; the benchmark trains on ≤ 20 000 windows).
#
#   scripts/pack-device-data.sh [SRC] DST [TRAIN_MIB]      (SRC default ../shared/data)
#
# Needs python3 (no numpy): the .npy header is rewritten with the smaller first dimension.
set -eu
if [ $# -eq 1 ]; then src=../shared/data; dst=$1; mib=2
else src=$1; dst=$2; mib=${3:-2}; fi
mkdir -p "$dst/layers"
for dir in "$src"/layers/*/; do
  name=$(basename "$dir")
  out="$dst/layers/$name"
  mkdir -p "$out"
  for f in layer.json weight.npy bias.npy test.npy; do
    [ -f "$dir/$f" ] && cp "$dir/$f" "$out/$f"
  done
  [ -f "$dir/train.npy" ] && python3 - "$dir/train.npy" "$out/train.npy" "$mib" <<'PY'
import ast, sys
src, dst, mib = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open(src, "rb") as f:
    magic = f.read(8)
    assert magic[:6] == b"\x93NUMPY", "not a .npy file"
    hlen = int.from_bytes(f.read(2 if magic[6] == 1 else 4), "little")
    header = ast.literal_eval(f.read(hlen).decode("latin1"))
    shape = header["shape"]
    row = 4
    for d in shape[1:]:
        row *= d
    keep = max(1, min(shape[0], int(mib * 1024 * 1024 // row)))
    header["shape"] = (keep,) + tuple(shape[1:])
    text = repr(header).encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    with open(dst, "wb") as o:
        o.write(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text)
        o.write(f.read(keep * row))
PY
done
du -sh "$dst"
