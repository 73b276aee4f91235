#!/usr/bin/env bash
# One-shot device benchmark: run it on a machine with a GPU that you have only for minutes.
# It builds nothing: it takes a maddconv binary built elsewhere and a data folder, and writes
# everything into one output folder.
#
#   scripts/device-bench.sh [--small] [--budget SECONDS] BINARY DATA_DIR [OUT_DIR]
#
#   BINARY    the maddconv release binary (cargo build --release --no-default-features
#             --features cli is enough; the model subcommands are not used)
#   DATA_DIR  a data folder with layers/ (scripts/pack-device-data.sh makes one ≤ 64 MiB from
#             ../shared/data; with --small, tests/fixtures)
#   OUT_DIR   where the results go (default: $OUT)
#   --small   CI/lavapipe mode: C = 8, 16, one small CNN shape instead of the three batch-8
#             ones, 5 repetitions instead of 30
#   --budget  total seconds for everything (default 480 = 8 minutes); each step gets a share of
#             what is left and is stopped (SIGINT, then SIGKILL) when it runs over
#
# Writes into OUT_DIR: device-bench.log (everything printed), adapters.txt (every adapter wgpu
# finds on Vulkan, GL, Metal, DX12: name, type, driver, limits, features), info.txt (the adapter
# used, its key limits and the tuning cache after the run), tune.md (the variants chosen per
# shape class), tune-cache/ (the cache file itself), bench-cnn/ and bench-layers/ (bench.json,
# speedup_vs_accuracy.svg/.png, bench.md: tuned vs untuned kernels interleaved, MADDNESS vs
# direct). Reads only BINARY and DATA_DIR. Exit status: 0 when every step finished in time,
# 1 otherwise (what finished is still written).
set -u

small=0
budget=480
while [ $# -gt 0 ]; do
  case "$1" in
    --small) small=1; shift ;;
    --budget) budget=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    --) shift; break ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 2 ]; then
  echo "usage: $0 [--small] [--budget SECONDS] BINARY DATA_DIR [OUT_DIR]" >&2
  exit 2
fi
bin=$1
data=$2
outdir=${3:-${OUT:-}}
if [ -z "$outdir" ]; then
  echo "no OUT_DIR given and \$OUT is unset" >&2
  exit 2
fi
if [ ! -x "$bin" ]; then
  echo "$bin is not an executable maddconv binary" >&2
  exit 2
fi
mkdir -p "$outdir"
log="$outdir/device-bench.log"
: > "$log"
exec > >(tee -a "$log") 2>&1

start=$(date +%s)
left() { echo $((budget - ($(date +%s) - start))); }
failed=0

# run NAME SECONDS CMD...: runs CMD with a time limit, noting how long it took and whether it
# finished.
run() {
  local name=$1 secs=$2
  shift 2
  if [ "$secs" -lt 5 ]; then
    echo "### $name: skipped, only ${secs}s of the budget left" >&2
    failed=1
    return 1
  fi
  echo "### $name (limit ${secs}s): $*" >&2
  local t0 rc
  t0=$(date +%s)
  timeout --signal=INT --kill-after=10 "$secs" "$@"
  rc=$?
  echo "### $name: exit $rc after $(($(date +%s) - t0))s" >&2
  if [ $rc -ne 0 ]; then
    failed=1
  fi
  return $rc
}

echo "device-bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${budget}s, small=$small"
echo "binary: $bin ($("$bin" --version 2>&1))"
echo "data:   $data ($(du -sh "$data" 2>/dev/null | cut -f1))"
echo "host:   $(uname -a)"
size=$(du -sbL "$bin" "$data" 2>/dev/null | awk '{s += $1} END {print s + 0}')
if [ "$size" -gt $((64 * 1024 * 1024)) ]; then
  echo "warning: binary + data are $((size / 1024 / 1024)) MiB, more than the 64 MiB a device run carries"
fi

export MADDCONV_TUNE_CACHE="$outdir/tune-cache"
export MADDCONV_DATA="$data"
export RUST_LOG=${RUST_LOG:-warn,maddconv=info,wgpu_hal=off}
mkdir -p "$MADDCONV_TUNE_CACHE"

run "adapters" 60 "$bin" info --all-backends > "$outdir/adapters.txt"
cat "$outdir/adapters.txt"
run "info" 60 "$bin" info --all-limits > "$outdir/info.txt"
cat "$outdir/info.txt"

if [ $small -eq 1 ]; then
  reps=5
  cs=8,16
  cnn_flags=(--small --cnn-only --codebooks $cs)
else
  reps=30
  cs=16,32
  cnn_flags=(--cnn-only --codebooks 16,32,64 --max-windows 20000)
fi
tune_flags=(--data "$data" --codebooks $cs)
[ $small -eq 1 ] && tune_flags+=(--no-cnn)
layer_flags=(--data "$data" --no-cnn --codebooks $cs --max-windows 20000)

# Tuning: a third of what is left (bench tunes any class it meets that tune did not reach).
run "tune" $(($(left) / 3)) "$bin" tune "${tune_flags[@]}" > "$outdir/tune.md"
cat "$outdir/tune.md"

# The CNN shapes first (the dense 3×3 layers the goals are about), then the real layers.
mkdir -p "$outdir/bench-cnn" "$outdir/bench-layers"
run "bench cnn" $(($(left) * 2 / 5)) "$bin" bench --tune-compare --reps $reps \
  --report "$outdir/bench-cnn" "${cnn_flags[@]}" > "$outdir/bench-cnn/bench.md"
cat "$outdir/bench-cnn/bench.md"
if [ -d "$data/layers" ]; then
  run "bench layers" $(($(left) - 25)) "$bin" bench --tune-compare --reps $reps \
    --report "$outdir/bench-layers" "${layer_flags[@]}" > "$outdir/bench-layers/bench.md"
  cat "$outdir/bench-layers/bench.md"
else
  echo "### bench layers: skipped, $data/layers does not exist"
fi

run "info after" 20 "$bin" info > "$outdir/info-after.txt"
grep -A1000 '^tuning' "$outdir/info-after.txt"
echo "device-bench: done in $(($(date +%s) - start))s of ${budget}s; $( [ $failed -eq 0 ] && echo 'every step finished' || echo 'SOME STEPS DID NOT FINISH')"
exit $failed
