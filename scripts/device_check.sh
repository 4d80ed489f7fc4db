#!/usr/bin/env bash
# Device check: what attn_jax does on this machine (GPU, TPU or CPU), all in one log file.
#
#   bash scripts/device_check.sh [LOG]          # from anywhere; runs in the repository root
#   QUICK=1 bash scripts/device_check.sh        # CPU: small shapes, few steps (a few minutes)
#
# Sections: 1. the devices JAX sees (and nvidia-smi); 2. the Model A training-step benchmark
# (bi-GRU 512, GRU decoder 512, additive attention, batch 128; attn_jax.benchmark synthetic
# mode) in float32 and bfloat16; 3. step times of K = 1, 2, 4, 8 vmapped seeds; 4. a training
# smoke run of configs/default.py stopped by `timeout` after TRAIN_SECONDS (SIGTERM: training
# checkpoints and exits 143), then its last metrics rows.
# Environment: QUICK=1 (configs/default.py:tiny, hidden 64, batch 16, K = 1, 2; 60 s of training),
# PYTHON (default: python), STEPS and WARMUP (benchmark), TRAIN_SECONDS (default 120),
# WORKDIR (the smoke run's; default: a new temporary directory).
# A failing section is logged with its exit code and the next one runs; the script exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
QUICK=${QUICK:-0}
LOG=${1:-device_check_$(hostname)_$(date -u +%Y%m%d_%H%M%S).log}
WORKDIR=${WORKDIR:-$(mktemp -d)/smoke}
if [[ "${QUICK}" == 1 ]]; then
  STEPS=${STEPS:-3}; WARMUP=${WARMUP:-1}; SEEDS=1,2; TRAIN_SECONDS=${TRAIN_SECONDS:-60}
  CONFIG=configs/default.py:tiny
  MODEL=(--hidden_size=64 --batch_size=16 --src_len=16 --tgt_len=16)
else
  STEPS=${STEPS:-20}; WARMUP=${WARMUP:-3}; SEEDS=1,2,4,8; TRAIN_SECONDS=${TRAIN_SECONDS:-120}
  CONFIG=configs/default.py
  MODEL=()  # attn_jax.benchmark's defaults are Model A.
fi

section() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%FT%TZ)"; }
run() {  # Prints the command, runs it, prints its exit code; never stops the script.
  printf '$'; printf ' %q' "$@"; printf '\n'
  "$@"
  printf '[exit %s]\n' "$?"
}

{
  section "1. devices"
  echo "host $(hostname); QUICK=${QUICK}; XLA_FLAGS=${XLA_FLAGS:-}; \
XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-}; \
XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-}"
  run "${PY}" -c 'import jax, jaxlib; print("jax", jax.__version__, "jaxlib", jaxlib.__version__, "backend", jax.default_backend()); print(jax.devices()); d = jax.devices()[0]; print("memory_stats", getattr(d, "memory_stats", lambda: None)())'
  if command -v nvidia-smi >/dev/null; then run nvidia-smi; fi

  section "2. Model A training step (synthetic batches, additive), float32 and bfloat16"
  for dtype in float32 bfloat16; do
    run "${PY}" -m attn_jax.benchmark --mode=synthetic --scorers=additive --dtype="${dtype}" \
      --steps="${STEPS}" --warmup="${WARMUP}" "${MODEL[@]}"
  done

  section "3. K vmapped seeds (K = ${SEEDS}): step time per K"
  run "${PY}" -m attn_jax.benchmark --mode=synthetic --scorers=additive --num_seeds="${SEEDS}" \
    --steps="${STEPS}" --warmup="${WARMUP}" "${MODEL[@]}"

  section "4. training smoke run: ${CONFIG}, stopped after ${TRAIN_SECONDS} s (${WORKDIR})"
  run timeout "${TRAIN_SECONDS}" "${PY}" -m attn_jax.train --config="${CONFIG}" \
    --workdir="${WORKDIR}" --config.logging.wandb=disabled --config.logging.progress_bar=false
  echo "(exit 124 or 143: stopped by the timeout, as intended; 0: finished within it)"
  if [[ -f "${WORKDIR}/metrics.jsonl" ]]; then
    echo "last rows of ${WORKDIR}/metrics.jsonl:"
    tail -n 3 "${WORKDIR}/metrics.jsonl"
  fi
  section "done"
} 2>&1 | tee "${LOG}"
echo "log: ${LOG}"
