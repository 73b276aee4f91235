#!/usr/bin/env bash
# Builds the web demo into web/dist/, a static folder to serve over http(s):
#   dist/index.html, main.js, style.css, assets/ (photos, from ../assets), pkg/ (wasm-bindgen --target web output);
#   dist/layers.html, layers.js, layers/ (real layer folders, each with model.onnx from
#   `maddconv model export-conv`, and layers/index.json) and ort/ (ONNX Runtime Web's WebGPU
#   build, from node_modules: run `npm ci` in web/ first);
#   dist/model.html, model.js, models/ (silero VAD and, with the shared data, the ddddocr text
#   detector: each model, its test inputs and stored outputs, tables calibrated by `maddconv
#   model calibrate` and the model cut at the replaced convs by `maddconv model split`;
#   models/index.json lists them).
# Layer folders: the repository's fixtures (tests/fixtures/layers) and, when present, those of
# ../shared/data/layers (or $MADDCONV_DATA/layers) of at most $LAYER_MAX_MB (default 16) MB.
# Needs: the wasm32-unknown-unknown target (rustup target add wasm32-unknown-unknown) and
# wasm-bindgen-cli of the same version as the wasm-bindgen crate in Cargo.lock at the repository root
# (ci.sh installs both). wasm-opt is not run (Debian 12's binaryen 108 output breaks in
# Chromium 156); set WASM_OPT=/path/to/wasm-opt to use a recent one.
set -euo pipefail
cd "$(dirname "$0")"

# Share compiled dependencies with the root crate unless told otherwise.
TARGET_DIR=${CARGO_TARGET_DIR:-../target}
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' ../Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
  echo "build.sh: wasm-bindgen-cli $want is needed (found '${have:-none}'):" >&2
  echo "  cargo install wasm-bindgen-cli --version $want" >&2
  exit 1
fi

cargo build --lib --release --target wasm32-unknown-unknown --target-dir "$TARGET_DIR"
rm -rf dist
mkdir -p dist
wasm-bindgen --target web --out-dir dist/pkg \
  "$TARGET_DIR/wasm32-unknown-unknown/release/maddconv_web.wasm"
if [ -n "${WASM_OPT:-}" ]; then
  "$WASM_OPT" -O3 --enable-bulk-memory --enable-nontrapping-float-to-int \
    -o dist/pkg/maddconv_web_bg.wasm dist/pkg/maddconv_web_bg.wasm
fi
# dist/pkg as an npm package (ES module + TypeScript types + the wasm), usable from a bundler
# or a plain <script type="module">: `npm pack dist/pkg` gives the tarball.
version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)
cat >dist/pkg/package.json <<JSON
{
  "name": "maddconv-web",
  "version": "$version",
  "description": "Table-lookup (MADDNESS) and exact convolution layers on WebGPU, from the maddconv Rust library compiled to wasm",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "main": "maddconv_web.js",
  "module": "maddconv_web.js",
  "types": "maddconv_web.d.ts",
  "exports": {
    ".": { "types": "./maddconv_web.d.ts", "default": "./maddconv_web.js" },
    "./maddconv_web_bg.wasm": "./maddconv_web_bg.wasm"
  },
  "files": ["maddconv_web.js", "maddconv_web.d.ts", "maddconv_web_bg.wasm", "maddconv_web_bg.wasm.d.ts", "README.md"],
  "sideEffects": false,
  "keywords": ["webgpu", "wasm", "convolution", "maddness", "approximate-matrix-multiplication"]
}
JSON
cp pkg-README.md dist/pkg/README.md
cp index.html main.js layers.html layers.js model.html model.js page.js style.css dist/
cp -r ../assets dist/   # the photos, shared with the root crate's examples

# ONNX Runtime Web (the peer of layers.html): its WebGPU build loads the asyncify wasm.
ORT=node_modules/onnxruntime-web
if [ ! -f "$ORT/dist/ort.webgpu.bundle.min.mjs" ]; then
  echo "build.sh: $ORT is missing: run 'npm ci' in $(pwd) first" >&2
  exit 1
fi
mkdir -p dist/ort
cp "$ORT/dist/ort.webgpu.bundle.min.mjs" "$ORT"/dist/ort-wasm-simd-threaded.asyncify.{mjs,wasm} \
  "$ORT/README.md" dist/ort/
# The package ships no license file; its package.json says MIT (Microsoft's ONNX Runtime).
node -e "const p = require('./$ORT/package.json');
console.log('onnxruntime-web ' + p.version + ' from npm, license ' + p.license +
  ' (ONNX Runtime, Copyright (c) Microsoft Corporation, https://onnxruntime.ai).')" >dist/ort/NOTICE

# Real layers, each exported as a one-node ONNX model by the command-line tool.
MADDCONV=${MADDCONV:-}
if [ -z "$MADDCONV" ]; then
  cargo build --bin maddconv --manifest-path ../Cargo.toml --target-dir "$TARGET_DIR"
  MADDCONV=$TARGET_DIR/debug/maddconv
fi
DATA=${MADDCONV_DATA:-../../shared/data}
max_kb=$(( ${LAYER_MAX_MB:-16} * 1024 ))
mkdir -p dist/layers
index=dist/layers/index.json
printf "[" >"$index"
sep=""
add_layer() { # DIR SOURCE
  local dir=$1 source=$2 name out train bias
  name=$(basename "$dir")
  if [ -e "dist/layers/$name" ]; then return; fi
  if [ "$(du -sk "$dir" | cut -f1)" -gt "$max_kb" ]; then
    echo "build.sh: layer $name left out: $(du -sh "$dir" | cut -f1) > LAYER_MAX_MB=${LAYER_MAX_MB:-16}" >&2
    return
  fi
  out=dist/layers/$name
  mkdir -p "$out"
  cp "$dir"/*.json "$dir"/*.npy "$out"/
  if [ -f "$dir/LICENSE-NOTICE.md" ]; then cp "$dir/LICENSE-NOTICE.md" "$out"/; fi
  "$MADDCONV" model export-conv --layer "$dir" -o "$out/model.onnx"
  train=false; [ -f "$dir/train.npy" ] && train=true
  bias=false; [ -f "$dir/bias.npy" ] && bias=true
  printf '%s\n  {"name": "%s", "source": "%s", "hasTrain": %s, "hasBias": %s}' \
    "$sep" "$name" "$source" "$train" "$bias" >>"$index"
  sep=","
}
for d in ../tests/fixtures/layers/*/; do add_layer "${d%/}" fixture; done
if [ -d "$DATA/layers" ]; then
  for d in "$DATA"/layers/*/; do add_layer "${d%/}" data; done
  if [ -f "$DATA/README.md" ]; then cp "$DATA/README.md" dist/layers/DATA-README.md; fi
else
  echo "build.sh: $DATA/layers not found: only the repository's fixture layers are shipped" >&2
fi
printf '\n]\n' >>"$index"
cp ../tests/fixtures/LICENSE-NOTICE.md dist/layers/

# Whole models (model.html): silero VAD, from $DATA/models when present, else the repository's
# fixture (the same model and test clips; 96 calibration frames instead of 708). Tables for its
# four encoder convs are calibrated here (`maddconv model calibrate`, CPU mirror, C = 32, the
# default learner) on the calibration frames only, and the model is cut at those convs
# (`maddconv model split`) into segments for ONNX Runtime Web.
SILERO_LAYERS=/encoder.0/Conv,/encoder.1/Conv,/encoder.2/Conv,/encoder.3/Conv
add_silero() { # SOURCE_DIR CALIB_INPUT SOURCE_NAME [CALIBRATE_FLAGS...]
  local src=$1 calib=$2 source=$3 out=dist/models/silero_vad
  shift 3
  mkdir -p "$out"
  cp "$src"/model.onnx "$src"/test_{input,h,c,expected}.npy "$src"/clips.json "$src"/LICENSE "$out"/
  cp "$src"/README.md "$out"/SOURCE-README.md
  local set=(--input "h=$src/test_h.npy" --input "c=$src/test_c.npy")
  "$MADDCONV" model calibrate "$src/model.onnx" --input "input=$calib" "${set[@]}" \
    --layers "$SILERO_LAYERS" --codebooks 32 --metric threshold:0.5 --cpu "$@" \
    -o "$out/tables.safetensors" 2>&1 | grep -v '^\[INFO' >&2
  "$MADDCONV" model split "$src/model.onnx" --input "input=$src/test_input.npy" "${set[@]}" \
    --tables "$out/tables.safetensors" -o "$out/split"
  models_json+=$(printf '  {"name": "silero_vad", "task": "vad", "source": "%s", "calibration": "%s", "codebooks": 32, "inputs": {"input": "test_input.npy", "h": "test_h.npy", "c": "test_c.npy"}, "expected": "test_expected.npy", "rowsPerRun": 0}' \
    "$source" "$(basename "$calib")")
}
models_json=""
if [ -f "$DATA/models/silero_vad/calib_input.npy" ]; then
  add_silero "$DATA/models/silero_vad" "$DATA/models/silero_vad/calib_input.npy" data
else
  echo "build.sh: $DATA/models/silero_vad not found: silero VAD is calibrated on the fixture's 96 frames" >&2
  # 96 frames leave /encoder.2/Conv 96 windows: train on all of them, and allow that few.
  add_silero ../tests/fixtures/models/silero_vad ../tests/fixtures/models/silero_vad/calib_input_head.npy fixture \
    --holdout 0 --min-windows 64
fi
# The ddddocr text detector (shared data only: 20 MB): tables for its two stride-8 head convs
# Conv_248 and Conv_251 (14.1 % of the conv MACs; they keep every box at C = 32, BENCHMARKS.md),
# calibrated on the 10 calibration photos (other photos than the test ones, 40 % held out).
DDDDOCR_LAYERS=Conv_248,Conv_251
if [ -f "$DATA/models/ddddocr_det/model.onnx" ]; then
  src=$DATA/models/ddddocr_det out=dist/models/ddddocr_det
  mkdir -p "$out"
  cp "$src"/model.onnx "$src"/test_text.npy "$src"/test_text_expected.npy "$src"/LICENSE "$out"/
  cp "$src"/README.md "$out"/SOURCE-README.md
  "$MADDCONV" model calibrate "$src/model.onnx" --input "images=$src/calib.npy" \
    --layers "$DDDDOCR_LAYERS" --codebooks 32 --metric yolox --holdout 0.4 --cpu \
    -o "$out/tables.safetensors" 2>&1 | grep -v '^\[INFO' >&2
  "$MADDCONV" model split "$src/model.onnx" --input "images=$src/test_text.npy" \
    --tables "$out/tables.safetensors" -o "$out/split"
  models_json+=$(printf ',\n  {"name": "ddddocr_det", "task": "boxes", "source": "data", "calibration": "calib.npy", "codebooks": 32, "inputs": {"images": "test_text.npy"}, "expected": "test_text_expected.npy", "rowsPerRun": 1}')
else
  echo "build.sh: $DATA/models/ddddocr_det not found: the text detector is left out of model.html" >&2
fi
printf '[\n%s\n]\n' "$models_json" >dist/models/index.json
echo "built $(pwd)/dist ($(du -sh dist/pkg/maddconv_web_bg.wasm | cut -f1) of wasm," \
  "$(grep -c '"name"' "$index") layers);" \
  "serve it, e.g.: python3 -m http.server -d $(pwd)/dist -b 127.0.0.1 8000"
