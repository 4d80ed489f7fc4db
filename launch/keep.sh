#!/usr/bin/env bash
# Keeps the record of every finished trial of a sweep folder (config.json, results.json,
# metrics.jsonl, the running example's attention: its JSON, or a picture run's strip; no
# checkpoints) in a committed folder, and puts kept records back into a fresh sweep folder, so
# that a sweep longer than one session on its machine accumulates finished trials across
# sessions (the launcher skips a trial whose results.json exists; attn_jax.report reads the kept
# folder as a sweep).
#
#   bash launch/keep.sh save runs/arch_scorer experiments/arch_scorer/trials
#   bash launch/keep.sh restore runs/arch_scorer experiments/arch_scorer/trials
set -euo pipefail
shopt -s nullglob
mode=$1 sweep=$2 kept=$3
case $mode in
  save)
    for d in "$sweep"/*/; do
      name=$(basename "$d")
      [ -f "$d/results.json" ] || continue  # unfinished: nothing to keep
      mkdir -p "$kept/$name/attention"
      cp "$d"/{config.json,results.json,metrics.jsonl} "$kept/$name/"
      files=("$d"/attention/running_example*.json)
      # A picture run leaves its running example as a strip (PNG) only; `none` leaves nothing.
      [ ${#files[@]} -gt 0 ] || files=("$d"/attention/running_example.[p]ng)  # a glob: none if absent
      [ ${#files[@]} -eq 0 ] || cp "${files[@]}" "$kept/$name/attention/"
      echo "kept $name"
    done ;;
  restore)
    mkdir -p "$sweep"
    for d in "$kept"/*/; do
      name=$(basename "$d")
      if [ -e "$sweep/$name" ]; then echo "left $sweep/$name as it is"; continue; fi
      cp -r "$d" "$sweep/$name" && echo "restored $name"
    done ;;
  *) echo "usage: keep.sh save|restore SWEEP_DIR KEPT_DIR" >&2; exit 2 ;;
esac
