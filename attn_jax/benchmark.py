r"""Training-step benchmark: tokens/s, compile time, memory and FLOPs per scorer (the real step).

Measures `steps.make_train_step` (K vmapped replicas, Adam from the default config's `train`
section) on random Multi30k-like batches: per-row lengths drawn from a gamma distribution
(mean 13 tokens) clipped to the padded length (40), vocabularies 7,800 (source) / 5,900 (target).
Only real target tokens (tgt_out != PAD: words + EOS) are counted.

Per scorer and K it reports:
  tok/s     non-PAD target tokens per second, K replicas together, over --steps timed steps
            after --warmup untimed ones, every step blocked on (jax.block_until_ready).
  step ms   median step time;  xK1 = step time / step time at K=1 (same scorer).
  compile   seconds for lower + compile of the train step.
  XLA MF/tok  XLA-counted fwd+bwd FLOPs per target token (`compiled.cost_analysis()['flops']`).
            XLA counts a while-loop body ONCE, so this misses ~T-1 of T decoder steps (and S-1
            encoder steps): a lower bound, kept as the issue asks.
  MM MF/tok   matmul FLOPs (2·M·N·K over every dot_general of the fwd+bwd jaxpr, each scan body
            times its length): the count used for achieved FLOP/s and %peak.
  GF/s, %pk   achieved matmul FLOP/s and its fraction of a measured f32 matmul peak (a jitted
            N×N @ N×N matmul, best of 5, printed at the top with the device).
  RSS       host peak resident memory (resource.getrusage; a process-lifetime high-water mark,
            so it includes earlier rows); dev peak = device memory_stats()['peak_bytes_in_use']
            where the backend has it (GPU; also lifetime), else '-'; XLA MB = the compiled
            step's argument + output + temp bytes minus aliased (donated) ones.
The K replicas start from copies of replica 0's parameters (see `_init_replicas`).
dot and scaled_dot need decoder size == annotation size; when the shape does not satisfy that,
their rows use encoder_hidden = decoder_hidden // 2 per direction and are marked '*'.

Commands (repo root):

    python -m attn_jax.benchmark --scorers=additive,dot --steps=3 --warmup=1
    python -m attn_jax.benchmark --scorers=additive --hidden_size=64 --batch_size=32 \
        --num_seeds=1,2,4,8 --steps=5
    python -m attn_jax.benchmark --scorers=additive --hidden_size=128 --batch_size=32 \
        --num_seeds=1,2,4,8 --steps=5

Measured 2026-11-25 on a shared 2-core AMD EPYC CPU VM (jax 0.10.2, XLA CPU; another user's
training job ran throughout, load average 1-2 for the first table and 2-6 for the second, so
times are noisy). The f32 2048^3 matmul reference itself varied 86-178 GFLOP/s between runs
(contention), so %peak is only indicative; 88 GFLOP/s for the first table.

Default shape (emb 256, bi-GRU 512/dir, dec 512, batch 128, len 40, vocab 7.8k/5.9k), K=1,
--steps=3 --warmup=1, 1804 real target tokens per batch (of 5120 positions):

    scorer     tok/s  step ms  compile s  XLA MF/tok  MM MF/tok  GF/s  RSS MB  XLA MB
    additive     627     2877        4.4       13.4      168.8   106    2404    1809
    dot*        1085     1662        3.4        3.1      110.3   120    2404     798
    * dot-family rows use encoder 256/direction so that sizes match (annotations 512 = decoder).

K vmapped replicas, additive, --hidden_size=H --batch_size=32 --steps=5 (step ms, ratio to K=1):

    H     K=1    K=2           K=4           K=8
    64    195    381 (1.95)    737 (3.78)    1718 (8.80)
    128   365    629 (1.72)   1205 (3.30)    2736 (7.50)

On this CPU replicas barely amortise (the 2 cores are already busy at K=1): K replicas cost
~K times one. At the default shape the output layer (512 -> 5,900 at all 40 padded positions)
is ~30% of the additive MM count, and 65% of target positions are padding.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import jax
import jax.extend.core as jex_core
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from attn_jax import attention, config as config_lib, models, steps

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.py"
DOT_FAMILY = ("dot", "scaled_dot")

flags.DEFINE_list("scorers", list(attention.SCORER_NAMES), "Scorers to benchmark.")
flags.DEFINE_integer("embed_size", 256, "Embedding size (source and target).")
flags.DEFINE_integer("encoder_hidden", 512, "Encoder hidden size per direction.")
flags.DEFINE_integer("decoder_hidden", 512, "Decoder hidden size (also attention/output size).")
flags.DEFINE_integer("hidden_size", 0, "If > 0: decoder = hidden, encoder = embed = hidden // 2 "
                     "(the model's derivation); overrides the three sizes above.")
flags.DEFINE_integer("batch_size", 128, "Sentences per replica per step.")
flags.DEFINE_integer("src_len", 40, "Padded source length (max source tokens).")
flags.DEFINE_integer("tgt_len", 40, "Padded target length (max target tokens incl. EOS).")
flags.DEFINE_float("mean_len", 13.0, "Mean sentence length before clipping.")
flags.DEFINE_integer("src_vocab", 7800, "Source vocabulary size.")
flags.DEFINE_integer("tgt_vocab", 5900, "Target vocabulary size.")
flags.DEFINE_enum("flow", "bahdanau", list(models.FLOWS), "Decoder flow.")
flags.DEFINE_enum("cell", "gru", list(models.CELLS), "RNN cell.")
flags.DEFINE_bool("bidirectional", True, "Bidirectional encoder (the issue's default shape).")
flags.DEFINE_integer("steps", 10, "Timed steps.")
flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
flags.DEFINE_list("num_seeds", ["1"], "Replica counts K to measure, e.g. 1,2,4,8.")
flags.DEFINE_integer("matmul_size", 2048, "N of the N x N @ N x N f32 matmul peak measurement.")
flags.DEFINE_string("json_out", "", "Also write all figures to this JSON file.")
FLAGS = flags.FLAGS


def model_config(scorer: str, *, embed_size: int, encoder_hidden: int, decoder_hidden: int,
                 hidden_size: int, src_vocab: int, tgt_vocab: int, src_len: int, flow: str,
                 cell: str, bidirectional: bool = True) -> tuple[models.ModelConfig, bool]:
    """The ModelConfig for one row, and whether a dot-family encoder size was adjusted."""
    model = config_lib.load_config_file(str(DEFAULT_CONFIG)).model
    model.scorer, model.flow, model.cell = scorer, flow, cell
    model.bidirectional = bidirectional
    if hidden_size > 0:  # Everything derived from one knob, as in training.
        model.hidden_size, model.embed_size, model.encoder_hidden, model.decoder_hidden = (
            hidden_size, 0, 0, 0)
    else:  # Attention and output sizes follow the decoder.
        model.hidden_size, model.embed_size = decoder_hidden, embed_size
        model.encoder_hidden, model.decoder_hidden = encoder_hidden, decoder_hidden
        model.attention_size = decoder_hidden
    adjusted = False
    if scorer in DOT_FAMILY:
        dec = model.decoder_hidden or model.hidden_size
        enc = model.encoder_hidden or (model.hidden_size // 2 if model.bidirectional
                                       else model.hidden_size)
        if enc * (2 if model.bidirectional else 1) != dec:
            model.encoder_hidden = dec // 2 if model.bidirectional else dec
            adjusted = True
    cfg = models.ModelConfig.from_config(model, src_vocab_size=src_vocab, tgt_vocab_size=tgt_vocab,
                                         max_source_len=src_len)
    return cfg, adjusted


def _lengths(rng: np.random.Generator, shape, mean: float, max_len: int) -> np.ndarray:
    """Gamma(k=6) lengths with the given mean, rounded and clipped to [1, max_len]."""
    return np.clip(np.rint(rng.gamma(6.0, mean / 6.0, shape)), 1, max_len).astype(np.int32)


def make_batch(seed: int, num_seeds: int, batch_size: int, src_len: int, tgt_len: int,
               src_vocab: int, tgt_vocab: int, mean_len: float = 13.0) -> dict[str, np.ndarray]:
    """Random tokens with Multi30k-like lengths: src/tgt_in/tgt_out [K, B, L], padded with PAD.

    Source rows hold n real tokens; target rows y1..ym with m <= tgt_len - 1, so tgt_out =
    [y1..ym, EOS, PAD...] has m + 1 real tokens and tgt_in = [BOS, y1..ym, PAD...].
    """
    rng = np.random.default_rng(seed)
    shape = (num_seeds, batch_size)
    src_n = _lengths(rng, shape, mean_len, src_len)  # [K, B]
    tgt_n = _lengths(rng, shape, mean_len, tgt_len - 1)  # [K, B]
    src = rng.integers(4, src_vocab, (*shape, src_len), dtype=np.int32)  # [K, B, S]
    src[np.arange(src_len) >= src_n[..., None]] = models.PAD
    words = rng.integers(4, tgt_vocab, (*shape, tgt_len), dtype=np.int32)  # [K, B, T]
    pos = np.arange(tgt_len)
    tgt_out = np.where(pos < tgt_n[..., None], words, models.PAD)
    tgt_out[pos == tgt_n[..., None]] = models.EOS
    tgt_in = np.where(pos <= tgt_n[..., None], np.roll(tgt_out, 1, axis=-1), models.PAD)
    tgt_in[..., 0] = models.BOS
    return {"src": src, "tgt_in": tgt_in.astype(np.int32), "tgt_out": tgt_out.astype(np.int32)}


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
    costliest branch, a while body once (unknown trip count; the model has none)."""
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
        else:
            total += eqn.params.get("length", 1) * sum(subs) if eqn.primitive.name == "scan" \
                else sum(subs)
    return total


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


def _device_peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return stats.get("peak_bytes_in_use") if stats else None


def _xla_flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0)) if cost else 0.0


def _init_replicas(model, tx, k: int, src_len: int, tgt_len: int) -> steps.TrainState:
    """K copies of replica 0 (steps.init_state with seed 0), stacked on the leading axis.

    Not init_state(seeds=range(K)): its vmapped orthogonal init (batched QR) deadlocks in the
    XLA CPU runtime on a 2-core machine for K >= 2. Step time does not depend on the values.
    """
    one = steps.init_state(model, tx, [0], src_len, tgt_len)
    return jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), one)


def bench_one(cfg: models.ModelConfig, batch: dict[str, np.ndarray], num_steps: int,
              warmup: int) -> dict[str, Any]:
    """Compiles and times the real train step on `batch` ([K, B, L]); figures for one row."""
    k, _, length = batch["src"].shape
    model = models.Seq2Seq(cfg)
    train = config_lib.load_config_file(str(DEFAULT_CONFIG)).train
    tx, _ = steps.make_optimizer(train, warmup + num_steps)
    state = _init_replicas(model, tx, k, length, batch["tgt_in"].shape[-1])
    train_step = steps.make_train_step(model, tx, train.label_smoothing)
    dev_batch = jax.device_put(batch)

    t = time.perf_counter()
    compiled = train_step.lower(state, dev_batch).compile()
    compile_s = time.perf_counter() - t
    mm_flops = matmul_flops(jax.make_jaxpr(train_step)(state, dev_batch).jaxpr)
    mem = compiled.memory_analysis()
    xla_bytes = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
                 - mem.alias_size_in_bytes) if mem is not None else None

    for _ in range(warmup):
        state, metrics = jax.block_until_ready(compiled(state, dev_batch))
    times = []
    for _ in range(num_steps):
        t = time.perf_counter()
        state, metrics = jax.block_until_ready(compiled(state, dev_batch))
        times.append(time.perf_counter() - t)

    tokens = int((batch["tgt_out"] != models.PAD).sum())  # K replicas together
    xla_flops = _xla_flops(compiled)
    step_s = float(np.mean(times))
    return {
        "num_seeds": k, "target_tokens_per_step": tokens,
        "model_weight_sum": float(np.asarray(metrics["weight"]).sum()),  # the step's own count
        "tokens_per_sec": tokens / step_s, "step_ms_mean": 1e3 * step_s,
        "step_ms_median": 1e3 * float(np.median(times)), "compile_s": compile_s,
        "xla_flops_per_step": xla_flops, "xla_flops_per_target_token": xla_flops / tokens,
        "matmul_flops_per_step": mm_flops, "matmul_flops_per_target_token": mm_flops / tokens,
        "achieved_flops_per_sec": mm_flops / step_s,
        "host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "device_peak_bytes": _device_peak_bytes(), "xla_step_bytes": xla_bytes,
    }


def run(options: dict[str, Any]) -> dict[str, Any]:
    """All rows for the given flag values (a dict of the flags above); prints as it goes."""
    device = jax.devices()[0]
    peak = matmul_peak(options["matmul_size"])
    head = {"device": f"{device.platform}: {device.device_kind}", "backend": jax.default_backend(),
            "host": f"{platform.machine()}, {os.cpu_count()} CPUs", "jax": jax.__version__,
            "load_average": os.getloadavg(), "matmul_size": options["matmul_size"],
            "matmul_peak_flops_per_sec": peak, "options": options}
    print(f"device {head['device']} ({head['host']}, load {head['load_average'][0]:.2f}); "
          f"f32 matmul peak {peak / 1e9:.1f} GFLOP/s ({options['matmul_size']}^3)")
    print(_HEADER)
    rows = []
    for scorer in options["scorers"]:
        cfg, adjusted = model_config(
            scorer, **{k: options[k] for k in ("embed_size", "encoder_hidden", "decoder_hidden",
                                              "hidden_size", "src_vocab", "tgt_vocab", "src_len",
                                              "flow", "cell", "bidirectional")})
        base_ms = None
        for k in sorted(int(s) for s in options["num_seeds"]):
            batch = make_batch(0, k, options["batch_size"], options["src_len"], options["tgt_len"],
                               options["src_vocab"], options["tgt_vocab"], options["mean_len"])
            row = bench_one(cfg, batch, options["steps"], options["warmup"])
            base_ms = base_ms or row["step_ms_median"]
            row.update(scorer=scorer, dot_adjusted=adjusted, fraction_of_peak=(
                row["achieved_flops_per_sec"] / peak), step_ratio_to_smallest_k=(
                row["step_ms_median"] / base_ms), model={
                "embed_size": cfg.embed_size, "encoder_hidden": cfg.encoder_hidden,
                "decoder_hidden": cfg.decoder_hidden, "attention_size": cfg.attention_size,
                "output_size": cfg.output_size})
            rows.append(row)
            print(_format_row(row), flush=True)
    adjusted = [r for r in rows if r["dot_adjusted"]]
    if adjusted:
        enc = adjusted[0]["model"]["encoder_hidden"]
        print(f"* dot-family rows use encoder {enc}/direction so that sizes match.")
    print("XLA MF/tok: XLA cost analysis (while bodies counted once: a lower bound). MM MF/tok: "
          "jaxpr matmuls x scan length (MFLOP = 1e6); GF/s and %pk use MM. RSS/dev peak: process lifetime.")
    return {**head, "rows": rows}


_HEADER = (f"{'scorer':<12}{'K':>3}{'tok/s':>9}{'step ms':>9}{'xK1':>6}{'compile s':>10}"
           f"{'XLA MF/tok':>11}{'MM MF/tok':>10}{'GF/s':>7}{'%pk':>6}{'RSS MB':>8}"
           f"{'dev MB':>8}{'XLA MB':>8}")


def _format_row(r: dict[str, Any]) -> str:
    mb = lambda b: "-" if b is None else f"{b / 2**20:.0f}"  # noqa: E731
    name = r["scorer"] + ("*" if r["dot_adjusted"] else "")
    return (f"{name:<12}{r['num_seeds']:>3}{r['tokens_per_sec']:>9.0f}{r['step_ms_median']:>9.1f}"
            f"{r['step_ratio_to_smallest_k']:>6.2f}{r['compile_s']:>10.1f}"
            f"{r['xla_flops_per_target_token'] / 1e6:>11.2f}"
            f"{r['matmul_flops_per_target_token'] / 1e6:>10.2f}"
            f"{r['achieved_flops_per_sec'] / 1e9:>7.1f}{100 * r['fraction_of_peak']:>6.1f}"
            f"{mb(r['host_peak_rss_bytes']):>8}{mb(r['device_peak_bytes']):>8}"
            f"{mb(r['xla_step_bytes']):>8}")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    unknown = sorted(set(FLAGS.scorers) - set(attention.SCORER_NAMES))
    if unknown:
        raise app.UsageError(f"Unknown scorers {unknown}; valid: {', '.join(attention.SCORER_NAMES)}.")
    options = {name: FLAGS[name].value for name in _FLAG_NAMES}
    result = run(options)
    if FLAGS.json_out:
        Path(FLAGS.json_out).write_text(json.dumps(result, indent=1))
        print(f"wrote {FLAGS.json_out}")


_FLAG_NAMES = ("scorers", "embed_size", "encoder_hidden", "decoder_hidden", "hidden_size",
               "batch_size", "src_len", "tgt_len", "mean_len", "src_vocab", "tgt_vocab", "flow",
               "cell", "bidirectional", "steps", "warmup", "num_seeds", "matmul_size")

if __name__ == "__main__":
    app.run(main)
