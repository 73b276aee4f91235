#!/usr/bin/env bash
# CI for the browser build, on a fresh Debian 12 machine (no GPU needed: Chromium's WebGPU runs
# on SwiftShader). Installs what it needs, then:
#   1. lints: rustfmt and clippy (-D warnings) of web/, clippy of the library for wasm32;
#   2. builds the demo (web/build.sh → web/dist);
#   3. runs the wasm-bindgen-test tests in headless Chromium through chromedriver;
#   4. runs the end-to-end test of the pages (web/tests/e2e.mjs, playwright-core): the photo
#      demo and the real-layer page next to ONNX Runtime Web; saves the screenshots
#      web/artifacts/demo.png and web/artifacts/layers.png;
#   5. packs web/dist/pkg as an npm package, installs it into a fresh app, type-checks it (tsc),
#      bundles it (esbuild) and runs it in headless Chromium (web/tests/pkg.mjs).
# Fails when anything fails. Run from anywhere: `bash web/ci.sh`.
#
# Needs: Node.js ≥ 20 with npm (playwright-core 1.65), rustup, network access to Debian,
# crates.io and npm. wasm-bindgen-cli is built (about 5 min) only when the installed one does
# not match Cargo.lock at the repository root; keep ~/.cargo/bin between runs to skip that.
set -euo pipefail
cd "$(dirname "$0")"
WEB=$(pwd)

log() { printf '\n==> web: %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
apt_retry() {
  local i
  for i in 1 2 3 4 5; do
    if $SUDO env DEBIAN_FRONTEND=noninteractive "$@"; then return 0; fi
    echo "apt failed (try $i), retrying" >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -f install -y || true
    sleep $((i * 5))
  done
  return 1
}
start=$(date +%s)

log "system packages (chromium, chromium-driver)"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt_retry apt-get update
  apt_retry apt-get install -y --no-install-recommends chromium chromium-driver
fi
chromium --version 2>/dev/null | head -n 1
chromedriver --version | head -n 1
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_retry apt-get install -y --no-install-recommends nodejs npm
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "Node.js $(node --version) is too old: playwright-core needs ≥ 20" >&2
  exit 1
fi
echo "node $(node --version), npm $(npm --version 2>/dev/null)"

log "Rust: wasm32 target, wasm-bindgen-cli"
rustup target list --installed | grep -qx wasm32-unknown-unknown ||
  rustup target add wasm32-unknown-unknown
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' ../Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ] || ! command -v wasm-bindgen-test-runner >/dev/null; then
  echo "installing wasm-bindgen-cli $want (found '${have:-none}')"
  # Without --locked: with it, 0.2.130 fails to resolve a dependency.
  cargo install wasm-bindgen-cli --version "$want"
fi
wasm-bindgen --version

log "npm ci (playwright-core, whose browser download is skipped: the system Chromium is used; onnxruntime-web)"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund

export CARGO_TERM_COLOR=never
TARGET_DIR=${CARGO_TARGET_DIR:-$WEB/../target}

log "format and lints"
cargo fmt -- --check
cargo clippy --target wasm32-unknown-unknown --all-targets --target-dir "$TARGET_DIR" -- -D warnings
(cd .. && cargo clippy --lib --no-default-features --target wasm32-unknown-unknown \
  --target-dir "$TARGET_DIR" -- -D warnings)

log "build the demo (web/dist)"
t=$(date +%s)
CARGO_TARGET_DIR=$TARGET_DIR bash build.sh
echo "build: $(($(date +%s) - t)) s"

log "in-browser tests (wasm-bindgen-test, headless Chromium)"
# Release, like the demo, so both share one build of the dependencies.
t=$(date +%s)
CHROMEDRIVER=$(command -v chromedriver) WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-300} \
  timeout 1800 cargo test --release --target wasm32-unknown-unknown --target-dir "$TARGET_DIR"
echo "in-browser tests: $(($(date +%s) - t)) s"

log "end-to-end test of the page (playwright-core, headless Chromium)"
t=$(date +%s)
mkdir -p artifacts
ARTIFACTS=$WEB/artifacts timeout 900 node tests/e2e.mjs
echo "end-to-end: $(($(date +%s) - t)) s; screenshots: $WEB/artifacts/demo.png, $WEB/artifacts/layers.png"

log "the npm package: packed, installed, type-checked, bundled, run in headless Chromium"
t=$(date +%s)
timeout 600 node tests/pkg.mjs
echo "package: $(($(date +%s) - t)) s"

echo "web CI passed in $(($(date +%s) - start)) s"
