#!/usr/bin/env bash
# The PyTorch reference and attn_jax on the same fixed Multi30k batches, interleaved, on this
# machine (machines are shared and noisy: compare only runs of one session, repeated).
#
#   TORCH_PYTHON=/path/to/torchvenv/bin/python bash experiments/benchmark/side_by_side.sh [ROUNDS] [FLAGS]
#
# FLAGS go to `python -m attn_jax.benchmark --mode=workload`. Each round runs the reference once
# per head in $HEADS, then attn_jax. HEADS (default "deep"): the reference's output layer.
# `deep` is the equal model (Bahdanau's deep output 512 on the real target rows only, as
# attn_jax's default flow): quote it first. HEADS="deep direct" also runs `direct` (one
# projection of [s; c; emb] to the vocabulary at every padded position, ≈ 3.5× the matmul work
# per real token), a different, heavier model. THREADS (default: the CPUs this process may use)
# sets the reference's --threads and OMP_NUM_THREADS; attn_jax uses what XLA sees.
#
# Needs BENCH (default ../shared/bench: prep_data.py, torch_ref.py, and the Multi30k data
# prep_data.py reads) and a python with torch as TORCH_PYTHON (BENCH/README.md). Run it with the
# project's venv active (or PYTHON=.venv/bin/python). Everything goes to $OUT (default
# /tmp/attn_jax_side_by_side):
#   workload/                the batches (prep_data.py --out), made once
#   torch_HEAD_R.out, .err   the reference's stdout (its RESULT line) and stderr (per-step times)
#   torch_HEAD_R.json        its RESULT JSON
#   jax_R.json, jax_R.log    attn_jax's figures (machine description included) and its output
#   summary.json             per round and head: both real-target-tokens/s figures and their
#                            ratio; attn_jax's FLOP/s and fraction of the f32 matmul peak by the
#                            real-token count; the machine, thread settings and versions
# and prints the summary as a markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-2}
bench=${BENCH:-../shared/bench}
out=${OUT:-/tmp/attn_jax_side_by_side}
heads=${HEADS:-deep}
threads=${THREADS:-$(nproc)}
py=${PYTHON:-python}
data=$out/workload
: "${TORCH_PYTHON:?set TORCH_PYTHON to a python with torch (../shared/bench/README.md)}"
for head in $heads; do
  case $head in deep|direct) ;; *) echo "HEADS: unknown head '$head' (deep, direct)" >&2; exit 2 ;; esac
done
mkdir -p "$out"
[ -f "$data/order.txt" ] || python3 "$bench/prep_data.py" --out "$data" >/dev/null
for r in $(seq 1 "$rounds"); do
  for head in $heads; do
    base=$out/torch_${head}_$r
    OMP_NUM_THREADS=$threads "$TORCH_PYTHON" "$bench/torch_ref.py" --data "$data" --attn bahdanau \
        --head "$head" --threads "$threads" > "$base.out" 2> "$base.err"
    sed -n 's/^RESULT //p' "$base.out" | tail -n 1 > "$base.json"
    [ -s "$base.json" ] || { echo "no RESULT line in $base.out (stderr: $base.err)" >&2; exit 1; }
  done
  "$py" -m attn_jax.benchmark --mode=workload --workload="$data" --json_out="$out/jax_$r.json" \
      "${@:2}" > "$out/jax_$r.log" 2>&1
  echo "round $r of $rounds done" >&2
done

"$py" - "$out" "$rounds" "$threads" $heads <<'EOF'
import json
import sys

out, rounds, threads, heads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
load = lambda path: json.load(open(f"{out}/{path}"))  # noqa: E731
rows = []
for r in range(1, rounds + 1):
    jax = load(f"jax_{r}.json")
    for head in heads:
        torch = load(f"torch_{head}_{r}.json")
        rows.append({
            "round": r, "torch_head": head,
            "torch_tgt_tokens_per_s": torch["tgt_tokens_per_s"],
            "attn_jax_tgt_tokens_per_s": jax["tokens_per_sec"],
            "ratio": jax["tokens_per_sec"] / torch["tgt_tokens_per_s"],
            "torch_median_step_s": torch["median_step_s"],
            "attn_jax_median_step_s": jax["step_ms_median"] / 1e3,
            "attn_jax_real_mflop_per_token": jax["real_flops_per_token"] / 1e6,
            "attn_jax_gflop_per_s": jax["achieved_flops_per_sec"] / 1e9,
            "attn_jax_fraction_of_peak": jax["fraction_of_peak"],  # real-token count only
            "matmul_peak_gflop_per_s": jax["matmul_peak_flops_per_sec"] / 1e9,
            "load_average_start": jax["machine"]["load_average_start"],
            "load_average_end": jax["machine"]["load_average_end"],
            "torch_file": f"torch_{head}_{r}.json", "attn_jax_file": f"jax_{r}.json"})
first, torch1 = load("jax_1.json"), load(f"torch_{heads[0]}_1.json")
summary = {
    "what": "real target tokens/s (words + </s>) on the same fixed batches, interleaved; "
            "fraction of peak: attn_jax's matmul FLOP/s at each pair's own lengths over a "
            "measured f32 matmul peak",
    "rounds": rounds, "heads": heads, "reference_threads": threads,
    "torch": torch1["torch"], "device": first["device"], "machine": first["machine"],
    "attn_jax_options": first["options"], "rows": rows}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
m = first["machine"]
flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m["cpu_flags"].items())
print(f"{m['cpu_model']} ({flags}), {m['sched_affinity_cpus']} CPUs; PyTorch {torch1['torch']} "
      f"(threads {threads}), jax {m['versions']['jax']}; {out}/summary.json\n")
print("| round | PyTorch head | PyTorch real tgt tokens/s | attn_jax real tgt tokens/s | ratio "
      "| attn_jax % of f32 matmul peak (real tokens) | load avg (1 min) start/end |")
print("|---|---|---|---|---|---|---|")
for x in rows:
    print(f"| {x['round']} | {x['torch_head']} | {x['torch_tgt_tokens_per_s']:,.0f} | "
          f"{x['attn_jax_tgt_tokens_per_s']:,.0f} | {x['ratio']:.2f}× | "
          f"{100 * x['attn_jax_fraction_of_peak']:.0f}% | "
          f"{x['load_average_start'][0]:.1f} / {x['load_average_end'][0]:.1f} |")
EOF
