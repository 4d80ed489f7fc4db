"""What a speed figure is made of: matmul FLOP counts, memory readings, the machine it ran on.

`matmul_flops` counts a jaxpr's dot_general FLOPs. `flop_polynomial` gives, per model family
(`FLOP_MODELS`, one entry per `arch.ARCHS` config class), the forward + backward matmul FLOPs of
one sentence pair of S source and T target tokens as a + b·S + c·T + d·S·T + e·S² + f·T²:
* the RNN (`flop_coefficients`): the step-by-step reference model's (`rnn.step_by_step_loss`)
  count, fitted from its jaxpr (exactly bilinear: encoder and keys grow with S, decoder and
  output with T, attention with S·T; e = f = 0);
* the Transformer (`transformer_flop_coefficients`): a closed formula, written out in its
  docstring (self-attention adds the S² and T² terms).
`batch_flops` applies it to a batch: `real` at each pair's own lengths (the work a padding-free
implementation must do), `padded` at the batch's padded shape (the work a model computed over
every padded position does).
`matmul_peak` measures a jitted f32 matmul's FLOP/s, the yardstick for "fraction of peak".
`host_peak_bytes` is the process's resident high-water mark, `xla_bytes` a compiled program's
buffers. `machine_info` states the machine beside every figure: CPU model and the flags that
decide XLA's matmul speed, cores and thread settings, load, library versions, XLA_FLAGS.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import os
import platform
import resource
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.extend.core as jex_core
import jax.numpy as jnp
import numpy as np

from attn_jax.model import arch, rnn, transformer

# ------------------------------------------------------------------------------------ FLOPs


def _sub_jaxprs(value: Any) -> Iterator[jex_core.Jaxpr]:
    if isinstance(value, jex_core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jex_core.Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def matmul_flops(jaxpr: jex_core.Jaxpr) -> float:
    """2·M·N·K summed over every dot_general; a scan body counts `length` times, a cond its
    costliest branch, a while body once (unknown trip count)."""
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract)
            continue
        subs = [matmul_flops(j) for v in eqn.params.values() for j in _sub_jaxprs(v)]
        if eqn.primitive.name == "cond":
            total += max(subs, default=0.0)
        elif eqn.primitive.name == "scan":
            total += eqn.params["length"] * sum(subs)
        else:
            total += sum(subs)
    return total


def pair_flops(cfg: rnn.ModelConfig, src_len: int, tgt_len: int) -> float:
    """Forward + backward matmul FLOPs of the step-by-step model on one pair of these lengths."""
    model = rnn.Seq2Seq(cfg)
    params = jax.eval_shape(lambda: rnn.init_params(model, jax.random.key(0), 4))
    grad = jax.grad(functools.partial(rnn.step_by_step_loss, model))
    src, tgt = jnp.ones((1, src_len), jnp.int32), jnp.ones((1, tgt_len), jnp.int32)
    return matmul_flops(jax.make_jaxpr(grad)(params, src, tgt, tgt).jaxpr)


@functools.cache
def flop_coefficients(cfg: rnn.ModelConfig) -> tuple[float, float, float, float]:
    """(a, b, c, d): forward + backward matmul FLOPs of one pair = a + b·S + c·T + d·S·T, fitted
    from four traced shapes (the count is exactly bilinear, so four determine it)."""
    (s1, s2), (t1, t2) = (4, 8), (4, 8)
    f11, f12 = pair_flops(cfg, s1, t1), pair_flops(cfg, s1, t2)
    f21, f22 = pair_flops(cfg, s2, t1), pair_flops(cfg, s2, t2)
    d = (f22 - f21 - f12 + f11) / ((s2 - s1) * (t2 - t1))
    b = (f21 - f11) / (s2 - s1) - d * t1
    c = (f12 - f11) / (t2 - t1) - d * s1
    return f11 - b * s1 - c * t1 - d * s1 * t1, b, c, d


def transformer_flop_coefficients(cfg: transformer.TransformerConfig) -> tuple[float, ...]:
    """(a, b, c, d, e, f): forward + backward matmul FLOPs of one pair of S source and T target
    tokens through the Transformer = a + b·S + c·T + d·S·T + e·S² + f·T².

    Notation as in `attn_jax.model.transformer`: L layers per stack, d = d_model, d_ff, H heads
    of d_h = d / H, V = target vocabulary; a matmul [m, k] @ [k, n] is 2·m·k·n FLOPs. Forward:

        per source token, per encoder layer:   q, k, v, out projections 8·d²  +  FFN 4·d·d_ff
                          per decoder layer:   cross-attention keys, values 4·d²
                                               (+ G_h per head, 2·d·d_h, for general / scaled_general)
        per target token, per decoder layer:   self q, k, v, out 8·d²  +  cross q, out 4·d²
                                               +  FFN 4·d·d_ff
                          once:                output projection 2·d·V
        attention, per layer and head, by the actual lengths (scores q·k and context Σ α v,
        2·d_h each per query-key pair, so 4·d per pair over the H heads):
                          encoder self-attention 4·d·S²,  decoder self-attention 4·d·T²,
                          cross-attention 4·d·S·T

    so the forward count is
        F = L·(12·d² + 4·d·d_ff + g)·S + (L·(12·d² + 4·d·d_ff) + 2·d·V)·T + 4·L·d·(S² + T² + S·T)
    with g = 2·d·d_h for a bilinear cross-attention score, else 0. Every matmul's inputs both
    need gradients (the first ones' inputs come from the embeddings), so the backward pass is
    twice the forward and the train step costs 3·F: (a, b, c, d, e, f) = (0, 3·L·(12·d² +
    4·d·d_ff + g), 3·(L·(12·d² + 4·d·d_ff) + 2·d·V), 12·L·d, 12·L·d, 12·L·d).

    Conventions: the decoder's causal T×T scores count in full (what dense attention computes,
    and the usual MFU convention; a kernel that skips the masked half does about 2·L·d·T²
    fewer per pass); additive cross-attention counts its vᵀ tanh(q + k) reduction as the dot family's
    score (2·d_h per pair and head), not its adds and tanh; embeddings (gathers), LayerNorm,
    softmax and the loss are not matmuls. Tied embeddings change no count."""
    layers, dm = cfg.layers, cfg.d_model
    bilinear = 2.0 * dm * cfg.d_head if transformer.CROSS_SCORERS[cfg.scorer].bilinear else 0.0
    stack = 12.0 * dm * dm + 4.0 * dm * cfg.d_ff  # Per token and layer, either stack.
    attention = 3.0 * 4.0 * layers * dm  # Per query-key pair (all layers and heads).
    return (0.0, 3.0 * layers * (stack + bilinear),
            3.0 * (layers * stack + 2.0 * dm * cfg.tgt_vocab_size),
            attention, attention, attention)


def _rnn_polynomial(cfg: rnn.ModelConfig) -> tuple[float, ...]:
    return (*flop_coefficients(cfg), 0.0, 0.0)


# Per model family (the config classes of `arch.ARCHS`): its FLOP polynomial.
FLOP_MODELS = {rnn.ModelConfig: _rnn_polynomial,
               transformer.TransformerConfig: transformer_flop_coefficients}


def flop_polynomial(cfg: Any) -> tuple[float, ...]:
    """(a, b, c, d, e, f): forward + backward matmul FLOPs of one pair of S source and T target
    tokens = a + b·S + c·T + d·S·T + e·S² + f·T², for a derived config of any family."""
    return FLOP_MODELS[arch.of(cfg).config](cfg)


def pair_count(coefficients: tuple[float, ...], s, t):
    """The polynomial of `flop_polynomial` at S = s, T = t (numbers or arrays)."""
    a, b, c, d, e, f = coefficients
    return a + b * s + c * t + d * s * t + e * s * s + f * t * t


def batch_flops(cfg: Any, batch: dict[str, np.ndarray]) -> tuple[float, float]:
    """(real, padded) FLOPs of a batch [..., B, L]: each pair at its own lengths / at L."""
    coefficients = flop_polynomial(cfg)
    s = (batch["src"] != rnn.PAD).sum(-1).astype(np.float64)
    t = (batch["tgt_out"] != rnn.PAD).sum(-1).astype(np.float64)
    real = float(np.sum(pair_count(coefficients, s, t)))
    sp, tp = batch["src"].shape[-1], batch["tgt_out"].shape[-1]
    return real, float(s.size * pair_count(coefficients, float(sp), float(tp)))


def matmul_peak(n: int, reps: int = 5) -> float:
    """Best-of-`reps` f32 FLOP/s of a jitted n x n @ n x n matmul (after one warmup call)."""
    a, b = (jax.random.normal(jax.random.key(i), (n, n), jnp.float32) for i in (0, 1))
    mm = jax.jit(jnp.matmul)
    jax.block_until_ready(mm(a, b))
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(mm(a, b))
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


# ----------------------------------------------------------------------------------- memory


def host_peak_bytes() -> int:
    """The process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def xla_bytes(compiled) -> int | None:
    """A compiled program's buffers: arguments + outputs + temporaries, less aliased ones."""
    mem = compiled.memory_analysis()
    if mem is None:
        return None
    return (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes)


# ---------------------------------------------------------------------------------- machine

CPU_FLAGS = ("avx2", "avx512f", "fma")  # What XLA's CPU matmuls can use; avx512f ≈ 2× avx2.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy")


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """CPU model, the flags in CPU_FLAGS (present or not), logical CPUs and physical cores from
    /proc/cpuinfo's text (x86: "model name" / "flags"; ARM: "Features", maybe no model name)."""
    blocks = [dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
              for block in text.strip().split("\n\n") if block.strip()]
    blocks = [{k.strip(): v.strip() for k, v in b.items()} for b in blocks]
    processors = [b for b in blocks if "processor" in b]
    first = processors[0] if processors else (blocks[0] if blocks else {})
    flags = set((first.get("flags") or first.get("Features") or "").split())
    cores = {(b.get("physical id", "0"), b["core id"]) for b in processors if "core id" in b}
    return {"cpu_model": first.get("model name") or first.get("Hardware") or None,
            "cpu_flags": {f: f in flags for f in CPU_FLAGS},
            "logical_cpus": len(processors) or None,
            "physical_cores": len(cores) or None}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_info(cpuinfo: str | None = None, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The machine a figure was measured on, as one JSON-ready dict (the CPU from `cpuinfo`,
    /proc/cpuinfo's text, read when None; thread settings from `environ`, os.environ if None).
    Record `load_average()` again at the end as "load_average_end"."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    env = os.environ if environ is None else environ
    info = parse_cpuinfo(cpuinfo)
    info["cpu_model"] = info["cpu_model"] or platform.processor() or platform.machine()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # Not on Linux.
        affinity = None
    return {
        **info, "machine": platform.machine(), "os_cpu_count": os.cpu_count(),
        "sched_affinity_cpus": affinity,
        "thread_env": {k: env.get(k) for k in THREAD_VARS},
        "xla_flags": env.get("XLA_FLAGS", ""),
        "load_average_start": load_average(),
        "versions": {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}},
    }
