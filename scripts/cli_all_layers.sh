#!/bin/sh
# Runs `maddconv train` and `maddconv eval --json` on every layer of the shared data at one
# codebook count, printing one markdown row per layer. Usage:
#   cargo build --release && scripts/cli_all_layers.sh [DATA_DIR] [C]
set -eu
DATA=${1:-../shared/data}
C=${2:-16}
BIN=${BIN:-target/release/maddconv}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "| layer | C | held-out 1−NMSE at train | eval 1−NMSE 8-bit | eval 1−NMSE f32 tables | train s |"
echo "|---|---|---|---|---|---|"
for dir in "$DATA"/layers/*/; do
  name=$(basename "$dir")
  flags=$(python3 -c "import json,sys; j=json.load(open(sys.argv[1]))
print('--stride', ','.join(map(str, j['stride'])), '--padding', ','.join(map(str, j['padding'])),
      '--dilation', ','.join(map(str, j['dilation'])), '--groups', j['groups'])" "$dir/layer.json")
  bias=""
  [ -f "$dir/bias.npy" ] && bias="--bias $dir/bias.npy"
  # shellcheck disable=SC2086
  "$BIN" train --weight "$dir/weight.npy" $bias --input "$dir/train.npy" --test "$dir/test.npy" \
    $flags --codebooks "$C" -o "$OUT/$name.safetensors" >/dev/null 2>&1
  "$BIN" eval --tables "$OUT/$name.safetensors" --input "$dir/test.npy" \
    --expected "$dir/test_expected.npy" --json > "$OUT/$name.json"
  python3 -c "import json,sys; j=json.load(open(sys.argv[1]))
h=j['heldout_at_training']
print('| %s | %d | %.3f | %.3f | %.3f | %.2f |' % (sys.argv[2], j['codebooks'], 1-h['nmse'],
      j['one_minus_nmse'], j['one_minus_nmse_f32_tables'], j['train_seconds']))" "$OUT/$name.json" "$name"
done
