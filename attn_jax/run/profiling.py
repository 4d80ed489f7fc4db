"""Where a compiled step's time goes: a `jax.profiler` trace, summarised by model part.

`profile_steps` traces a few calls of a compiled step; `breakdown` reads the trace's XLA op
events, computes each op's exclusive time (time inside nested ops removed, per thread) and
attributes it to the model part named in the op's HLO metadata (the JAX name stack, which the
model's named scopes fill in: `encoder`, `bahdanau_fwd`, `head_loss`, ...). Ops that XLA
created without metadata (e.g. library matmul fusions) inherit it from their operands. Times
are summed over the host's threads, so the total can exceed the step's wall time where ops run
in parallel; compare parts, not the total with a stopwatch.

    python -m attn_jax.benchmark --mode=workload --workload=DIR --profile_dir=/tmp/prof
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
from collections.abc import Callable
from typing import Any

import jax

# Model parts, matched in order against an op's name stack (first match wins).
PARTS = (
    ("encoder recurrence", ("rnn_fwd", "rnn_bwd"), "encoder"),
    ("encoder other", ("encoder",), None),
    ("attention keys", ("prepare",), None),
    ("decoder recurrence", ("bahdanau_", "luong_", "rnn_fwd", "rnn_bwd"), None),
    ("output head + loss", ("head_loss", "token_nll"), None),
    ("row gathers / plans", ("rows_",), None),
    ("optimizer", ("optimizer", "optax", "adam", "clip"), None),
)


def _part(op_name: str | None) -> str:
    if not op_name:
        return "unattributed"
    for name, keys, also in PARTS:
        if any(k in op_name for k in keys) and (also is None or also in op_name):
            direction = "backward" if "transpose(" in op_name or "_bwd" in op_name else "forward"
            return f"{name} ({direction})"
    return "other"


def _op_names(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> op_name metadata, inherited from operands where missing."""
    own: dict[str, str] = {}
    operands: dict[str, list[str]] = {}
    calls: dict[str, str] = {}
    computations: dict[str, list[str]] = collections.defaultdict(list)
    current = None
    for line in hlo_text.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if header and not line.startswith(" "):
            current = header.group(1)
            continue
        m = re.match(r"^\s*(?:ROOT )?%?([\w.\-]+) = \S+ [\w\-]+\((.*?)\)", line)
        if not m:
            continue
        name = m.group(1)
        computations[current].append(name)
        operands[name] = re.findall(r"%([\w.\-]+)", m.group(2))
        meta = re.search(r'op_name="([^"]*)"', line)
        if meta:
            own[name] = meta.group(1)
        called = re.search(r"calls=%?([\w.\-]+)", line)
        if called:
            calls[name] = called.group(1)
    names = {}
    for name in operands:
        found = own.get(name)
        inner = [own[n] for n in computations.get(calls.get(name, ""), []) if n in own]
        found = found or (inner[0] if inner else None)
        queue, seen = list(operands[name]), set()
        while not found and queue:
            nxt = queue.pop(0)
            if nxt in seen:
                continue
            seen.add(nxt)
            found = own.get(nxt)
            queue.extend(operands.get(nxt, []))
        if found:
            names[name] = found
    return names


def _exclusive(events: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float]]:
    """(event, exclusive µs) for complete events, nested per thread."""
    out = []
    by_thread = collections.defaultdict(list)
    for e in events:
        by_thread[(e.get("pid"), e.get("tid"))].append(e)
    for evs in by_thread.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[list] = []
        for e in evs:
            while stack and e["ts"] >= stack[-1][0]["ts"] + stack[-1][0]["dur"]:
                out.append(tuple(stack.pop()))
            if stack:
                stack[-1][1] -= e["dur"]
            stack.append([e, float(e["dur"])])
        out.extend(tuple(x) for x in stack)
    return out


def profile_steps(run: Callable[[], Any], steps: int, trace_dir: str) -> str:
    """Traces `steps` calls of `run` (each blocked on); returns the trace file's path."""
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    try:
        for _ in range(steps):
            jax.block_until_ready(run())
    finally:
        jax.profiler.stop_trace()
    traces = sorted(glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "*.trace.json.gz")),
                    key=os.path.getmtime)
    return traces[-1]


def breakdown(trace_path: str, hlo_text: str, steps: int, top: int = 12) -> dict[str, Any]:
    """{"parts": {part: ms per step}, "ops": [(ms per step, op, part)]} from a trace."""
    with gzip.open(trace_path) as f:
        events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
    names = _op_names(hlo_text)
    parts: dict[str, float] = collections.defaultdict(float)
    ops: dict[tuple[str, str], float] = collections.defaultdict(float)
    for event, micros in _exclusive(events):
        op = event["name"]
        if op.startswith("$") or "Thunk" in op or "ThreadPool" in op:
            continue  # Python frames, executor bookkeeping, idle waits.
        part = _part(names.get(op))
        parts[part] += micros / 1e3 / steps
        ops[(op, part)] += micros / 1e3 / steps
    top_ops = sorted(((ms, op, part) for (op, part), ms in ops.items()), reverse=True)[:top]
    return {"parts": dict(sorted(parts.items(), key=lambda kv: -kv[1])), "ops": top_ops}


def format_breakdown(result: dict[str, Any]) -> str:
    total = sum(result["parts"].values())
    lines = [f"op time by model part (ms per step, summed over threads; total {total:.0f}):"]
    lines += [f"  {ms:8.1f}  {100 * ms / total:5.1f}%  {part}" for part, ms in
              result["parts"].items()]
    lines.append("largest ops (ms per step):")
    lines += [f"  {ms:8.1f}  {op:<40s} {part}" for ms, op, part in result["ops"]]
    return "\n".join(lines)
