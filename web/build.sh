#!/usr/bin/env bash
# Builds the web demo into web/dist/, a static folder to serve over http(s):
#   dist/index.html, main.js, style.css, assets/ (photos, from ../assets), pkg/ (wasm-bindgen --target web output);
#   dist/layers.html, layers.js, layers/ (real layer folders, each with model.onnx from
#   `maddconv model export-conv`, and layers/index.json) and ort/ (ONNX Runtime Web's WebGPU
#   build, from node_modules: run `npm ci` in web/ first).
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
cp index.html main.js layers.html layers.js page.js style.css dist/
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
echo "built $(pwd)/dist ($(du -sh dist/pkg/maddconv_web_bg.wasm | cut -f1) of wasm," \
  "$(grep -c '"name"' "$index") layers);" \
  "serve it, e.g.: python3 -m http.server -d $(pwd)/dist -b 127.0.0.1 8000"
