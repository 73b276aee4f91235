#!/usr/bin/env bash
# Builds the web demo into web/dist/, a static folder to serve over http(s):
#   dist/index.html, main.js, style.css, assets/ (photos, from ../assets), pkg/ (wasm-bindgen --target web output).
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
cp index.html main.js style.css dist/
cp -r ../assets dist/   # the photos, shared with the root crate's examples
echo "built $(pwd)/dist ($(du -sh dist/pkg/maddconv_web_bg.wasm | cut -f1) of wasm);" \
  "serve it, e.g.: python3 -m http.server -d $(pwd)/dist -b 127.0.0.1 8000"
