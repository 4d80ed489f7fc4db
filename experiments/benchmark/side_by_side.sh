#!/usr/bin/env bash
# The PyTorch reference and attn_jax on the same fixed Multi30k batches, interleaved, on this
# machine (machines are shared and noisy: compare only runs of one session, repeated).
#
#   TORCH_PYTHON=/path/to/torchvenv/bin/python bash experiments/benchmark/side_by_side.sh [ROUNDS]
#
# Needs ../shared/bench (prep_data.py, torch_ref.py) and ../shared/data/multi30k beside the
# repository, and a venv with torch (see ../shared/bench/README.md). Prints one line per run and
# the ratio per round; JSON results go to $OUT (default /tmp/attn_jax_side_by_side). Run it with
# the project's venv active (or PYTHON=.venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-2}
bench=../shared/bench
out=${OUT:-/tmp/attn_jax_side_by_side}
data=$out/workload
mkdir -p "$out"
[ -f "$data/order.txt" ] || python3 "$bench/prep_data.py" --out "$data" >/dev/null
: "${TORCH_PYTHON:?set TORCH_PYTHON to a python with torch (../shared/bench/README.md)}"
for r in $(seq 1 "$rounds"); do
  torch=$(OMP_NUM_THREADS=2 "$TORCH_PYTHON" "$bench/torch_ref.py" --data "$data" --attn bahdanau \
          2>/dev/null | sed -n 's/^RESULT //p' | python3 -c 'import json,sys; print(json.load(sys.stdin)["tgt_tokens_per_s"])')
  "${PYTHON:-python}" -m attn_jax.benchmark --mode=workload --workload="$data" --json_out="$out/jax_$r.json" \
      "${@:2}" > "$out/jax_$r.log" 2>&1
  jax=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens_per_sec"])' "$out/jax_$r.json")
  python3 -c 'import sys; t, j = map(float, sys.argv[1:3]); print(f"round {sys.argv[3]}: torch {t:.0f} tok/s, attn_jax {j:.0f} tok/s, ratio {j / t:.2f}")' "$torch" "$jax" "$r"
done
