r"""Training-step benchmark: real target tokens/s, compile time, memory and matmul FLOP/s.

Five modes. The first three time the real train step (`steps.make_train_step`, Adam and label
smoothing from configs/default.py's train section) of a model family (`--arch`: a key of
`attn_jax.model.arch.ARCHS`, 'rnn' or 'transformer') and count only real target tokens
(tgt_out != PAD: words + EOS):

* `--mode=workload --workload=DIR`: fixed batches from the folder --workload names, written by
  the PyTorch reference's prep script (prep_data.py: train.{de,en} tokenized, vocab.{de,en},
  order.txt): batch i is the --batch_size pairs order[B i : B (i + 1)]; src = tokens + </s>,
  tgt_in = <s> + tokens, tgt_out = tokens + </s>, padded to a multiple of --pad_multiple (one
  compile per padded shape, compiled before timing). Batches 0..warmup-1 run untimed, the next
  --steps are timed: the same batches the PyTorch reference times, so the two are side by side
  (experiments/benchmark/side_by_side.sh).
* `--mode=pipeline --config=configs/multi30k.py`: one epoch of the project's own input pipeline
  (that config's data, vocabulary, buckets and batching, `data.batch_tokens` included), with the
  model the flags below describe, or the config's own model (its `model.arch` included) and
  train section (optimizer, label smoothing): --config_model. One untimed step per bucket shape
  first.
* `--mode=synthetic`: random Multi30k-like batches per scorer and per K vmapped replicas
  (--num_seeds=1,2,4,8), for comparing scorers and seeds.
* `--mode=decode --workdir=RUN`: beam search (--beam_size) sentences/s over RUN's test split,
  with RUN's own model (any family: `attn_jax.translate.Translator`).
* `--mode=long`: long inputs, the RNN's. Per attention implementation (`model.attention_impl`:
  xla, chunked, pallas) and S = T in --long_lengths, the additive scorer's forward + backward over all
  target positions at once (`attention.attend_all`, B = --long_batch, A = --long_attention):
  XLA's compiled buffer bytes and the median step time (a case whose compiled bytes exceed
  --long_max_gib is compiled, not run). Then the training smoke check: the Bahdanau-flow model
  (hidden --long_train_hidden) trained for --long_train_steps steps on one batch of
  --long_train_batch documents of S = T = --long_train_len words, made by concatenating the
  embedded grammar's sentence pairs; its compiled step bytes and its losses.

Model sizes: the size flags are `config.model` fields over configs/default.py, derived by the
family's `from_config` like a training run's (`FAMILY_OPTIONS`). The RNN (`model_config`):
--hidden_size > 0: every size from it; otherwise hidden_size = attention_size =
--decoder_hidden, which the output size follows. The Transformer (`transformer_config`):
--layers, --num_heads, --d_model and --d_ff (0 = 4 · d_model); --hidden_size > 0: d_model =
hidden_size, d_ff = 4 · d_model. --scorers defaults to the family's scorer (additive; the
Transformer's cross-attention: scaled_dot). Flags only another family reads, and --arch where
the model is not the flags' (decode, long, --config_model), are refused.

FLOPs (`attn_jax.run.measure.flop_polynomial`) are the matmul FLOPs of forward and backward
applied to each pair's own lengths (the work a padding-free implementation must do): for the
RNN those of the step-by-step reference model (`rnn.step_by_step_loss`, full-vocabulary
logits), counted from its jaxpr; for the Transformer a closed formula (encoder self-attention +
FFN per source token; decoder self-attention, cross-attention, FFN and output projection per
target token; attention scores and contexts by the actual lengths:
`measure.transformer_flop_coefficients`). Achieved FLOP/s and the fraction of a measured f32
matmul peak (jitted N×N @ N×N, best of 5) use only that real-token count; the count at the
padded batch shape is reported as work (`padded_flops_per_token`: what a model computed over
every padded position does), never as a speed. Peak memory: the process's resident high-water
mark, and XLA's buffer bytes per compiled step. Every JSON output holds `machine`
(`measure.machine_info`: CPU model and flags, cores, thread settings, load average at start and
end, versions, XLA_FLAGS); the workload, pipeline and synthetic figures hold `arch` and `model`
(the derived model config), decode's `arch`.

    python -m attn_jax.benchmark --mode=workload --workload=/tmp/bench --steps=30 --warmup=5
    python -m attn_jax.benchmark --mode=workload --workload=/tmp/bench --arch=transformer \
        --layers=2 --d_model=512 --num_heads=8
    python -m attn_jax.benchmark --mode=pipeline --config=configs/multi30k.py
    python -m attn_jax.benchmark --mode=pipeline --config=configs/multi30k.py --config_model
    python -m attn_jax.benchmark --mode=pipeline --config=configs/transformer.py --config_model
    python -m attn_jax.benchmark --mode=synthetic --scorers=additive,dot --steps=3
    python -m attn_jax.benchmark --mode=synthetic --arch=transformer --scorers=scaled_dot,additive
    python -m attn_jax.benchmark --mode=synthetic --tgt_vocab=32000 --scorers=additive
    python -m attn_jax.benchmark --mode=decode --workdir=runs/transformer --beam_size=5
    python -m attn_jax.benchmark --mode=workload --workload=/tmp/bench --profile_dir=/tmp/prof
    python -m attn_jax.benchmark --mode=long --steps=2 --warmup=1

Results and the side-by-side commands: experiments/benchmark/README.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from attn_jax.model import arch as arch_lib
from attn_jax.model import attention, kernels, rnn
from attn_jax.run import config as config_lib
from attn_jax.run import measure, profiling, runtime, steps

DOT_FAMILY = ("dot", "scaled_dot")
MODES = ("workload", "pipeline", "synthetic", "decode", "long")

flags.DEFINE_enum("mode", "synthetic", MODES, "What to time (module docstring).")
flags.DEFINE_string("workload", "", "workload mode: the folder prep_data.py wrote.")
flags.DEFINE_integer("pad_multiple", 8, "workload mode: pad each batch to a multiple of this.")
flags.DEFINE_string("config", "configs/multi30k.py", "pipeline mode: the config whose data "
                    "pipeline is timed (a relative path: from here, else from the repository).")
flags.DEFINE_bool("config_model", False, "pipeline mode: train the config's own model instead "
                  "of the model the size flags describe (Model A by default).")
flags.DEFINE_string("workdir", "", "decode mode: a finished run directory.")
flags.DEFINE_integer("beam_size", 5, "decode mode: beam size.")
flags.DEFINE_enum("arch", "rnn", list(arch_lib.ARCHS), "Model family (`model.arch`) of the workload, "
                  "pipeline and synthetic modes (decode: the run's own; long: the RNN's).")
flags.DEFINE_list("scorers", [], "Scorers to benchmark (synthetic mode: each; the others: the "
                  "first). Default: the family's (additive for the RNN, scaled_dot for the "
                  "Transformer's cross-attention).")
flags.DEFINE_integer("embed_size", 256, "Embedding size (source and target).")
flags.DEFINE_integer("encoder_hidden", 512, "Encoder hidden size per direction.")
flags.DEFINE_integer("decoder_hidden", 512, "Decoder hidden size (also attention/output size).")
flags.DEFINE_integer("hidden_size", 0, "If > 0: model.hidden_size, every other size derived "
                     "from it as in training; overrides the RNN's three sizes above and the "
                     "Transformer's --d_model and --d_ff.")
flags.DEFINE_integer("layers", 2, "Transformer: encoder layers, and as many decoder layers.")
flags.DEFINE_integer("d_model", 512, "Transformer: embedding / residual size.")
flags.DEFINE_integer("d_ff", 0, "Transformer: feed-forward inner size; 0 = 4 * d_model.")
flags.DEFINE_integer("num_heads", 4, "Attention heads: the Transformer's (self and cross; "
                     "divides d_model), the RNN's multihead scorer's.")
flags.DEFINE_integer("batch_size", 128, "Sentences per replica per step (workload: per batch).")
flags.DEFINE_integer("src_len", 40, "synthetic: padded source length.")
flags.DEFINE_integer("tgt_len", 40, "synthetic: padded target length (incl. EOS).")
flags.DEFINE_float("mean_len", 13.0, "synthetic: mean sentence length before clipping.")
flags.DEFINE_integer("src_vocab", 7800, "synthetic: source vocabulary size.")
flags.DEFINE_integer("tgt_vocab", 5900, "synthetic: target vocabulary size.")
flags.DEFINE_enum("flow", "bahdanau", list(rnn.FLOWS), "Decoder flow.")
flags.DEFINE_enum("cell", "gru", ["gru", "lstm"], "RNN cell.")
flags.DEFINE_bool("bidirectional", True, "Bidirectional encoder (Model A).")
flags.DEFINE_enum("dtype", "float32", list(rnn.DTYPES), "Matmul dtype.")
flags.DEFINE_integer("steps", 30, "Timed steps (workload, synthetic).")
flags.DEFINE_integer("warmup", 5, "Untimed steps before timing.")
flags.DEFINE_list("num_seeds", ["1"], "synthetic: replica counts K, e.g. 1,2,4,8.")
flags.DEFINE_integer("matmul_size", 2048, "N of the N x N @ N x N f32 matmul peak measurement.")
flags.DEFINE_string("json_out", "", "Also write all figures to this JSON file.")
flags.DEFINE_string("profile_dir", "", "workload/pipeline: also trace 3 steps of the first timed "
                    "batch's shape there and print where the time goes (attn_jax.run.profiling).")
flags.DEFINE_list("long_lengths", ["128", "512", "2048"], "long mode: S = T values.")
flags.DEFINE_list("long_impls", list(attention.IMPLS), "long mode: attention implementations.")
flags.DEFINE_integer("long_batch", 8, "long mode: batch size of the additive scorer cases.")
flags.DEFINE_integer("long_attention", 512, "long mode: additive attention size A (also the "
                     "decoder state and annotation sizes).")
flags.DEFINE_float("long_max_gib", 8.0, "long mode: compile but do not run a scorer case whose "
                   "compiled buffers exceed this many GiB.")
flags.DEFINE_integer("long_train_len", 512, "long mode: S = T of the training smoke check.")
flags.DEFINE_integer("long_train_batch", 16, "long mode: documents per training batch.")
flags.DEFINE_integer("long_train_hidden", 256, "long mode: model.hidden_size of the smoke check.")
flags.DEFINE_integer("long_train_steps", 3, "long mode: training steps (0: no smoke check).")
FLAGS = flags.FLAGS
_FLAG_NAMES = ("mode", "workload", "pad_multiple", "config", "config_model", "workdir", "beam_size",
               "arch", "scorers", "layers", "d_model", "d_ff", "num_heads",
               "embed_size", "encoder_hidden", "decoder_hidden", "hidden_size", "batch_size",
               "src_len", "tgt_len", "mean_len", "src_vocab", "tgt_vocab", "flow", "cell",
               "bidirectional", "dtype", "steps", "warmup", "num_seeds", "matmul_size", "profile_dir",
               "long_lengths", "long_impls", "long_batch", "long_attention", "long_max_gib",
               "long_train_len", "long_train_batch", "long_train_hidden", "long_train_steps")


def default_options() -> dict[str, Any]:
    """The options `run` and each mode take (a dict of the flags above), at the flags' defaults."""
    return {name: FLAGS[name].default for name in _FLAG_NAMES}


# -------------------------------------------------------------------------------------- model


def model_config(scorer: str, *, embed_size: int, encoder_hidden: int, decoder_hidden: int,
                 hidden_size: int, src_vocab: int, tgt_vocab: int, src_len: int, flow: str,
                 cell: str, bidirectional: bool = True, dtype: str = "float32",
                 num_heads: int = 4) -> tuple[rnn.ModelConfig, bool]:
    """The ModelConfig for one row, and whether a dot-family encoder size was adjusted.

    The flags set `config.model` fields (0 = derived, as in configs/default.py) and
    `rnn.ModelConfig.from_config` derives the rest: hidden_size > 0 leaves every other size
    derived from it; otherwise hidden_size and attention_size are decoder_hidden. A dot-family
    scorer needs annotations of the decoder's size: where the derived sizes differ, the encoder
    gets decoder_hidden split over its directions.
    """
    model = config_lib.load_config_file(config_lib.DEFAULT_CONFIG).model
    model.update(flow=flow, cell=cell, bidirectional=bidirectional, dtype=dtype,
                 num_heads=num_heads)
    if hidden_size > 0:
        model.update(hidden_size=hidden_size, embed_size=0, encoder_hidden=0, decoder_hidden=0,
                     attention_size=0)
    else:
        model.update(hidden_size=decoder_hidden, embed_size=embed_size,
                     encoder_hidden=encoder_hidden, decoder_hidden=decoder_hidden,
                     attention_size=decoder_hidden)

    def derive(scorer: str) -> rnn.ModelConfig:
        model.scorer = scorer
        return rnn.ModelConfig.from_config(model, src_vocab_size=src_vocab,
                                           tgt_vocab_size=tgt_vocab, max_source_len=src_len)

    sizes = derive("additive")  # The sizes, before a dot-family scorer's check rejects them.
    adjusted = scorer in DOT_FAMILY and sizes.annotation_size != sizes.decoder_hidden
    if adjusted:
        model.encoder_hidden = sizes.decoder_hidden // (2 if sizes.bidirectional else 1)
    return derive(scorer), adjusted


def transformer_config(scorer: str, *, layers: int, d_model: int, d_ff: int, num_heads: int,
                       hidden_size: int, src_vocab: int, tgt_vocab: int, src_len: int,
                       dtype: str = "float32") -> Any:
    """The Transformer's config for one row, derived as a training run derives it
    (`arch.model_config` over configs/default.py's `config.model`, arch = 'transformer'):
    hidden_size > 0 leaves d_model = hidden_size and d_ff = 4 · d_model; otherwise d_model and
    d_ff (0 = 4 · d_model) are the flags'."""
    config = config_lib.load_config_file(config_lib.DEFAULT_CONFIG)
    model = config.model
    model.update(arch="transformer", scorer=scorer, layers=layers, num_heads=num_heads,
                 dtype=dtype)
    if hidden_size > 0:
        model.update(hidden_size=hidden_size, d_model=0, d_ff=0)
    else:
        model.update(d_model=d_model, d_ff=d_ff)
    return arch_lib.model_config(model, src_vocab_size=src_vocab, tgt_vocab_size=tgt_vocab,
                                 max_source_len=src_len,
                                 max_decode_extra=config.eval.max_decode_extra)


def _rnn_options(options: dict[str, Any], scorer: str, **sizes) -> tuple[Any, bool]:
    keys = ("embed_size", "encoder_hidden", "decoder_hidden", "hidden_size", "flow", "cell",
            "bidirectional", "dtype", "num_heads")
    return model_config(scorer, **sizes, **{k: options[k] for k in keys})


def _transformer_options(options: dict[str, Any], scorer: str, **sizes) -> tuple[Any, bool]:
    keys = ("layers", "d_model", "d_ff", "num_heads", "hidden_size", "dtype")
    return transformer_config(scorer, **sizes, **{k: options[k] for k in keys}), False


# Per model family (a key of `arch.ARCHS`): its config from the size flags, and whether the
# sizes were adjusted to fit the scorer.
FAMILY_OPTIONS = {"rnn": _rnn_options, "transformer": _transformer_options}


def family_default(name: str, field: str) -> Any:
    """A field's default in the config class of family `name` (e.g. its scorer)."""
    return {f.name: f.default for f in dataclasses.fields(arch_lib.get(name).config)}[field]


def scorers(options: dict[str, Any]) -> list[str]:
    """--scorers, or the family's default scorer when none is given."""
    return list(options["scorers"]) or [family_default(options["arch"], "scorer")]


def _options_model(options: dict[str, Any], scorer: str, src_vocab: int, tgt_vocab: int,
                   max_len: int) -> tuple[Any, bool]:
    """The model of `options["arch"]` for one row (`FAMILY_OPTIONS`), and whether adjusted."""
    return FAMILY_OPTIONS[options["arch"]](options, scorer, src_vocab=src_vocab,
                                           tgt_vocab=tgt_vocab, src_len=max_len)


# ---------------------------------------------------------------------------------- measuring


def _init_replicas(model, tx, k: int, src_len: int) -> steps.TrainState:
    """K copies of replica 0 (step time does not depend on the values)."""
    one = steps.init_state(model, tx, [0], src_len)
    if k == 1:
        return one
    return jax.jit(lambda t: jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), t))(one)


class Trainer:
    """The real train step of one model (any family), compiled once per batch shape (compile
    time recorded); Adam, schedule and label smoothing from `train` (configs/default.py's if
    None)."""

    def __init__(self, cfg: Any, num_seeds: int, total_steps: int, train: Any = None):
        self.cfg = cfg
        self.model = arch_lib.build(cfg)
        if train is None:
            train = config_lib.load_config_file(config_lib.DEFAULT_CONFIG).train
        tx, _ = steps.make_optimizer(train, total_steps)
        self.state = _init_replicas(self.model, tx, num_seeds, 8)
        self.step = steps.make_train_step(self.model, tx, train.label_smoothing)
        self.compiled: dict[tuple, Any] = {}
        self.compile_s: dict[str, float] = {}
        self.xla_bytes: dict[str, int | None] = {}

    def _key(self, batch) -> tuple:
        return tuple((k, v.shape) for k, v in sorted(batch.items()) if k != "index")

    def compile(self, batch: dict[str, np.ndarray]) -> None:
        key = self._key(batch)
        if key not in self.compiled:
            args = jax.device_put({k: v for k, v in batch.items() if k != "index"})
            t = time.perf_counter()
            self.compiled[key] = self.step.lower(self.state, args).compile()
            name = "x".join(str(d) for d in batch["src"].shape) + "/" + str(batch["tgt_out"].shape[-1])
            self.compile_s[name] = time.perf_counter() - t
            self.xla_bytes[name] = measure.xla_bytes(self.compiled[key])

    def profile(self, batch: dict[str, np.ndarray], trace_dir: str, steps: int = 3):
        """Where the time of `batch`'s step goes (`profiling.breakdown`), printed and returned."""
        self.compile(batch)
        compiled = self.compiled[self._key(batch)]
        args = jax.device_put({k: v for k, v in batch.items() if k != "index"})

        def step():
            self.state, metrics = compiled(self.state, args)
            return metrics

        path = profiling.profile_steps(step, steps, trace_dir)
        result = profiling.breakdown(path, compiled.as_text(), steps)
        print(profiling.format_breakdown(result), flush=True)
        return {**result, "trace": path}

    def run(self, batch: dict[str, np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
        """(seconds, metrics) of one blocked step (compiling first if the shape is new)."""
        self.compile(batch)
        args = jax.device_put({k: v for k, v in batch.items() if k != "index"})
        jax.block_until_ready(args)
        t = time.perf_counter()
        self.state, metrics = jax.block_until_ready(self.compiled[self._key(batch)](self.state,
                                                                                   args))
        return time.perf_counter() - t, jax.device_get(metrics)


def _summary(cfg, trainer: Trainer, timed: list[dict], seconds: list[float], peak: float,
             metrics_weight: float) -> dict[str, Any]:
    tokens = sum(int((b["tgt_out"] != rnn.PAD).sum()) for b in timed)
    pairs = sum(int((b["tgt_out"][..., 0] != rnn.PAD).sum()) for b in timed)
    real, padded = (sum(f) for f in zip(*(measure.batch_flops(cfg, b) for b in timed)))
    total = sum(seconds)
    return {
        "arch": arch_lib.name_of(cfg),
        "timed_steps": len(timed), "timed_target_tokens": tokens, "model_weight_sum": metrics_weight,
        "timed_pairs": pairs, "seconds": total, "tokens_per_sec": tokens / total,
        "pairs_per_sec": pairs / total, "step_ms_median": 1e3 * float(np.median(seconds)),
        "real_flops_per_token": real / tokens, "padded_flops_per_token": padded / tokens,
        "achieved_flops_per_sec": real / total, "fraction_of_peak": real / total / peak,
        "compile_s": trainer.compile_s, "xla_step_bytes": trainer.xla_bytes,
        "host_peak_rss_bytes": measure.host_peak_bytes(),
    }


def _print_summary(r: dict[str, Any]) -> None:
    print(f"model.arch={r['arch']}, scorer {r['model']['scorer']}")
    print(f"{r['timed_target_tokens']} real target tokens ({r['timed_pairs']} pairs) in "
          f"{r['timed_steps']} steps, {r['seconds']:.1f} s: {r['tokens_per_sec']:.0f} tok/s, "
          f"{r['pairs_per_sec']:.1f} pairs/s, median step {r['step_ms_median']:.0f} ms")
    print(f"matmul work per real target token: {r['real_flops_per_token'] / 1e6:.1f} MFLOP at each "
          f"pair's own lengths ({r['padded_flops_per_token'] / 1e6:.1f} if computed at the padded "
          f"batch shape); achieved {r['achieved_flops_per_sec'] / 1e9:.1f} GFLOP/s = "
          f"{100 * r['fraction_of_peak']:.1f}% of the f32 matmul peak (real-token count)")
    shapes = ", ".join(f"{k}: {v:.1f} s" for k, v in r["compile_s"].items())
    print(f"compile per shape: {shapes}")
    mb = [v / 2**20 for v in r["xla_step_bytes"].values() if v]
    print(f"peak host RSS {r['host_peak_rss_bytes'] / 2**20:.0f} MB; XLA step buffers "
          f"{min(mb, default=0):.0f}-{max(mb, default=0):.0f} MB")


# ---------------------------------------------------------------------------------- workloads


def read_workload(folder: str) -> tuple[list[list[int]], list[list[int]], list[int], int, int]:
    """(src ids, tgt ids, order, src vocab size, tgt vocab size) in this project's ids
    (PAD 0, BOS 1, EOS 2, UNK 3, word k of vocab.* = k + 4; prep_data.py's words are k + 4 too)."""
    def lines(name):
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            return f.read().split("\n")[:-1]

    vocab = {lang: {w: i + 4 for i, w in enumerate(lines(f"vocab.{lang}"))} for lang in ("de", "en")}
    ids = {lang: [[vocab[lang].get(w, rnn.UNK) for w in s.split()] for s in lines(f"train.{lang}")]
           for lang in ("de", "en")}
    order = [int(x) for x in lines("order.txt")[0].split()] if len(lines("order.txt")) == 1 else \
        [int(x) for x in " ".join(lines("order.txt")).split()]
    return ids["de"], ids["en"], order, len(vocab["de"]) + 4, len(vocab["en"]) + 4


def workload_batch(src, tgt, rows: Sequence[int], multiple: int) -> dict[str, np.ndarray]:
    """One [1, B, L] batch (K = 1) of the given pairs, padded to a multiple of `multiple`."""
    s = [src[i] + [rnn.EOS] for i in rows]
    t_in = [[rnn.BOS] + tgt[i] for i in rows]
    t_out = [tgt[i] + [rnn.EOS] for i in rows]
    pad_to = lambda n: -(-n // multiple) * multiple  # noqa: E731

    def array(seqs):
        out = np.full((1, len(seqs), pad_to(max(map(len, seqs)))), rnn.PAD, np.int32)
        for r, x in enumerate(seqs):
            out[0, r, :len(x)] = x
        return out

    return {"src": array(s), "tgt_in": array(t_in), "tgt_out": array(t_out)}


def run_workload(options: dict[str, Any], peak: float) -> dict[str, Any]:
    src, tgt, order, src_vocab, tgt_vocab = read_workload(options["workload"])
    b = options["batch_size"]
    batches = [workload_batch(src, tgt, order[b * i:b * (i + 1)], options["pad_multiple"])
               for i in range(options["warmup"] + options["steps"])]
    max_len = max(x["src"].shape[-1] for x in batches)
    cfg, _ = _options_model(options, scorers(options)[0], src_vocab, tgt_vocab, max_len)
    trainer = Trainer(cfg, 1, len(batches))
    for batch in batches:
        trainer.compile(batch)
    print(f"workload {options['workload']}: {len(batches)} batches of {b}; compiled "
          f"{len(trainer.compiled)} shapes", flush=True)
    for batch in batches[:options["warmup"]]:
        trainer.run(batch)
    timed, seconds, weight = batches[options["warmup"]:], [], 0.0
    for batch in timed:
        dt, metrics = trainer.run(batch)
        seconds.append(dt)
        weight += float(np.sum(metrics["weight"]))
    result = {"model": cfg.__dict__, **_summary(cfg, trainer, timed, seconds, peak, weight)}
    if options["profile_dir"]:
        result["profile"] = trainer.profile(timed[0], options["profile_dir"])
    return result


def run_pipeline(options: dict[str, Any], peak: float) -> dict[str, Any]:
    from attn_jax.data import batches as data_lib
    path = options["config"]
    if not os.path.isabs(path) and not os.path.exists(path.split(":")[0]):
        path = os.path.join(config_lib.REPO, path)
    config = config_lib.load_config_file(path)
    with tempfile.TemporaryDirectory() as workdir:
        data = data_lib.load(config.data, workdir)
    train = None
    if options["config_model"]:  # The model (any family) and train step of a training run.
        cfg = config_lib.derive(config, src_vocab_size=data.src_vocab.size,
                                tgt_vocab_size=data.tgt_vocab.size, steps_per_epoch=1).model
        train = config.train
    else:
        cfg, _ = _options_model(options, scorers(options)[0], data.src_vocab.size,
                                data.tgt_vocab.size, max(data.buckets))
    sizes = data_lib.batch_sizes(config.data, data.buckets)
    per_epoch = data_lib.steps_per_epoch(data, sizes)
    trainer = Trainer(cfg, 1, per_epoch, train)
    batches = data_lib.train_batches(data, sizes, [config.train.seed])
    epoch = [next(batches) for _ in range(per_epoch)]
    for batch in {trainer._key(b): b for b in epoch}.values():  # Compile and warm each shape.
        trainer.run(batch)
    print(f"pipeline {options['config']}: one epoch = {per_epoch} steps, batch sizes per bucket "
          f"{dict(zip(data.buckets, sizes))}; {len(trainer.compiled)} shapes compiled", flush=True)
    start, seconds, weight = time.perf_counter(), [], 0.0
    for batch in epoch:
        dt, metrics = trainer.run(batch)
        seconds.append(dt)
        weight += float(np.sum(metrics["weight"]))
    result = _summary(cfg, trainer, epoch, seconds, peak, weight)
    result["epoch_wall_s"] = time.perf_counter() - start
    if options["profile_dir"]:
        result["profile"] = trainer.profile(epoch[0], options["profile_dir"])
    return {"model": cfg.__dict__, **result}


def run_decode(options: dict[str, Any]) -> dict[str, Any]:
    """Beam search over the test split of a finished run, as `attn_jax.translate` runs it."""
    from attn_jax import translate
    from attn_jax.data import sources
    translator = translate.Translator(options["workdir"], beam_size=options["beam_size"])
    with open(os.path.join(options["workdir"], "config.json")) as f:
        config = config_lib.from_saved(json.load(f))
    lines = [p.src for p in sources.read_raw_splits(config.data)["test"]]
    translator.translate(lines)  # Compiles every bucket shape.
    t = time.perf_counter()
    translator.translate(lines)
    seconds = time.perf_counter() - t
    print(f"model.arch={config.model.arch}, beam {options['beam_size']}: {len(lines)} test "
          f"sentences in {seconds:.1f} s = {len(lines) / seconds:.1f} sentences/s")
    return {"arch": config.model.arch, "beam_size": options["beam_size"], "sentences": len(lines),
            "seconds": seconds, "sentences_per_sec": len(lines) / seconds}


# ---------------------------------------------------------------------------------- synthetic


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
    src[np.arange(src_len) >= src_n[..., None]] = rnn.PAD
    words = rng.integers(4, tgt_vocab, (*shape, tgt_len), dtype=np.int32)  # [K, B, T]
    pos = np.arange(tgt_len)
    tgt_out = np.where(pos < tgt_n[..., None], words, rnn.PAD)
    tgt_out[pos == tgt_n[..., None]] = rnn.EOS
    tgt_in = np.where(pos <= tgt_n[..., None], np.roll(tgt_out, 1, axis=-1), rnn.PAD)
    tgt_in[..., 0] = rnn.BOS
    return {"src": src, "tgt_in": tgt_in.astype(np.int32), "tgt_out": tgt_out.astype(np.int32)}


def run_synthetic(options: dict[str, Any], peak: float) -> list[dict[str, Any]]:
    print(f"model.arch={options['arch']}")
    print(_HEADER)
    rows = []
    for scorer in scorers(options):
        cfg, adjusted = _options_model(options, scorer, options["src_vocab"],
                                       options["tgt_vocab"], options["src_len"])
        base_ms = None
        for k in sorted(int(s) for s in options["num_seeds"]):
            batch = make_batch(0, k, options["batch_size"], options["src_len"], options["tgt_len"],
                               options["src_vocab"], options["tgt_vocab"], options["mean_len"])
            trainer = Trainer(cfg, k, options["warmup"] + options["steps"])
            for _ in range(options["warmup"]):
                trainer.run(batch)
            seconds, weight = [], 0.0
            for _ in range(options["steps"]):
                dt, metrics = trainer.run(batch)
                seconds.append(dt)
                weight = float(np.sum(metrics["weight"]))
            row = _summary(cfg, trainer, [batch] * len(seconds), seconds, peak, weight)
            base_ms = base_ms or row["step_ms_median"]
            row.update(scorer=scorer, num_seeds=k, dot_adjusted=adjusted,
                       target_tokens_per_step=row["timed_target_tokens"] // len(seconds),
                       step_ratio_to_smallest_k=row["step_ms_median"] / base_ms,
                       compile_s_total=sum(row["compile_s"].values()),
                       xla_mb=max(row["xla_step_bytes"].values() or [0]) / 2**20,
                       model=cfg.__dict__)
            rows.append(row)
            print(_format_row(row), flush=True)
    if any(r["dot_adjusted"] for r in rows):
        print("* dot-family rows use encoder = decoder // 2 per direction so that sizes match.")
    return rows


_HEADER = (f"{'scorer':<12}{'K':>3}{'tok/s':>9}{'step ms':>9}{'xK1':>6}{'compile s':>10}"
           f"{'MF/tok':>8}{'GF/s':>7}{'%pk':>6}{'RSS MB':>8}{'XLA MB':>8}")


def _format_row(r: dict[str, Any]) -> str:
    name = r["scorer"] + ("*" if r["dot_adjusted"] else "")
    return (f"{name:<12}{r['num_seeds']:>3}{r['tokens_per_sec']:>9.0f}{r['step_ms_median']:>9.1f}"
            f"{r['step_ratio_to_smallest_k']:>6.2f}{r['compile_s_total']:>10.1f}"
            f"{r['real_flops_per_token'] / 1e6:>8.1f}{r['achieved_flops_per_sec'] / 1e9:>7.1f}"
            f"{100 * r['fraction_of_peak']:>6.1f}{r['host_peak_rss_bytes'] / 2**20:>8.0f}"
            f"{r['xla_mb']:>8.0f}")


# ------------------------------------------------------------------------------------ long inputs


def _median_seconds(fn, args, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    seconds = []
    for _ in range(steps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        seconds.append(time.perf_counter() - t)
    return float(np.median(seconds))


def additive_case(impl: str, batch: int, length: int, size: int, warmup: int, steps: int,
                  max_bytes: float, seed: int = 0) -> dict[str, Any]:
    """The additive scorer over all T = length target positions against S = length keys
    (`attention.attend_all`, sizes A = decoder = annotation = `size`), forward + backward of
    Σ context · a fixed cotangent with respect to the parameters, queries and annotations.
    Ragged source lengths in [S/2, S]. Compiled bytes always; the time when they fit."""
    cfg = attention.AttentionConfig(scorer="additive", query_size=size, key_size=size,
                                    attention_size=size, impl=impl)
    module = attention.make_scorer(cfg)
    rng = np.random.default_rng(seed)
    states = jnp.asarray(rng.standard_normal((batch, length, size)), jnp.float32)
    annotations = jnp.asarray(rng.standard_normal((batch, length, size)), jnp.float32)
    lengths = rng.integers(length // 2, length + 1, batch)
    mask = jnp.asarray(np.arange(length)[None, :] < lengths[:, None])
    cotangent = jnp.asarray(rng.standard_normal((batch, length, size)), jnp.float32)

    def apply(mdl, s, h, m):
        return attention.attend_all(mdl, s, mdl.prepare(h, m))[0]

    params = module.init(jax.random.key(seed), states[:, :1], annotations, mask, method=apply)

    def loss(p, s, h, m, ct):
        return jnp.sum(module.apply(p, s, h, m, method=apply) * ct)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    args = (params, states, annotations, mask, cotangent)
    t = time.perf_counter()
    compiled = grad.lower(*args).compile()
    row = {"impl": impl, "length": length, "batch": batch, "attention_size": size,
           "compile_s": time.perf_counter() - t, "xla_bytes": measure.xla_bytes(compiled),
           "naive_tanh_bytes": batch * length * length * size * 4}
    if row["xla_bytes"] is not None and row["xla_bytes"] > max_bytes:
        row["step_s"] = None  # Too large to run here.
    else:
        row["step_s"] = _median_seconds(compiled, args, warmup, steps)
    return row


def long_documents(count: int, length: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """`count` (source, target) documents: the embedded grammar's sentence pairs concatenated
    while both sides stay within length - 1 words (room for BOS / EOS)."""
    from attn_jax.data import synthetic
    rng = random.Random(seed)
    docs = []
    for _ in range(count):
        src: list[str] = []
        tgt: list[str] = []
        while True:
            ex = synthetic.sample_example(rng)
            s, t = ex.src.split(), ex.tgt.split()
            if len(src) + len(s) > length - 1 or len(tgt) + len(t) > length - 1:
                break
            src, tgt = src + s, tgt + t
        docs.append((src, tgt))
    return docs


def document_batch(docs, length: int) -> tuple[dict[str, np.ndarray], int, int]:
    """([1, B, length] src / tgt_in / tgt_out ids, source vocab size, target vocab size), word
    ids from 4 (PAD, BOS, EOS, UNK below)."""
    vocab = [{w: i + 4 for i, w in enumerate(sorted({w for d in docs for w in d[side]}))}
             for side in (0, 1)]
    batch = {k: np.full((1, len(docs), length), rnn.PAD, np.int32)
             for k in ("src", "tgt_in", "tgt_out")}
    for r, (src, tgt) in enumerate(docs):
        s, t = [vocab[0][w] for w in src], [vocab[1][w] for w in tgt]
        batch["src"][0, r, :len(s) + 1] = s + [rnn.EOS]
        batch["tgt_in"][0, r, :len(t) + 1] = [rnn.BOS] + t
        batch["tgt_out"][0, r, :len(t) + 1] = t + [rnn.EOS]
    return batch, len(vocab[0]) + 4, len(vocab[1]) + 4


def long_training(options: dict[str, Any]) -> dict[str, Any]:
    """The training smoke check: the real train step of the Bahdanau-flow model on one batch of
    long documents, repeated; compiled bytes, step times and the per-token loss of each step."""
    length = options["long_train_len"]
    docs = long_documents(options["long_train_batch"], length)
    batch, src_vocab, tgt_vocab = document_batch(docs, length)
    cfg, _ = model_config("additive", embed_size=0, encoder_hidden=0, decoder_hidden=0,
                          hidden_size=options["long_train_hidden"], src_vocab=src_vocab,
                          tgt_vocab=tgt_vocab, src_len=length, flow="bahdanau",
                          cell=options["cell"], bidirectional=False, dtype=options["dtype"])
    trainer = Trainer(cfg, 1, options["long_train_steps"])
    trainer.compile(batch)
    losses, seconds = [], []
    for _ in range(options["long_train_steps"]):
        dt, metrics = trainer.run(batch)
        seconds.append(dt)
        losses.append(float(np.sum(metrics["nll_sum"]) / np.sum(metrics["weight"])))
    words = [(len(s), len(t)) for s, t in docs]
    return {"model": cfg.__dict__, "length": length, "batch": len(docs),
            "mean_src_words": float(np.mean([w[0] for w in words])),
            "mean_tgt_words": float(np.mean([w[1] for w in words])),
            "xla_step_bytes": next(iter(trainer.xla_bytes.values())),
            "compile_s": next(iter(trainer.compile_s.values())), "step_s": seconds,
            "losses": losses, "host_peak_rss_bytes": measure.host_peak_bytes()}


def run_long(options: dict[str, Any]) -> dict[str, Any]:
    gib = 2.0**30
    print(f"{'impl':<9}{'S=T':>6}{'B':>4}{'A':>5}{'XLA GiB':>9}{'one tanh GiB':>14}"
          f"{'step s':>9}{'compile s':>11}")
    rows = []
    for length in sorted(int(n) for n in options["long_lengths"]):
        for impl in options["long_impls"]:
            if impl == "pallas" and kernels.interpret_default():
                print(f"{impl:<9}{length:>6}  not measured: Pallas runs interpreted off GPU/TPU")
                rows.append({"impl": impl, "length": length, "measured": False})
                continue
            row = additive_case(impl, options["long_batch"], length, options["long_attention"],
                                options["warmup"], options["steps"], options["long_max_gib"] * gib)
            rows.append(row)
            step = "not run" if row["step_s"] is None else f"{row['step_s']:.3f}"
            print(f"{impl:<9}{length:>6}{row['batch']:>4}{row['attention_size']:>5}"
                  f"{row['xla_bytes'] / gib:>9.3f}{row['naive_tanh_bytes'] / gib:>14.2f}"
                  f"{step:>9}{row['compile_s']:>11.1f}", flush=True)
    result: dict[str, Any] = {"additive": rows}
    if options["long_train_steps"] > 0:
        train = long_training(options)
        result["training"] = train
        print(f"training smoke check: Bahdanau flow, hidden {options['long_train_hidden']}, "
              f"B = {train['batch']}, S = T = {train['length']} (documents of "
              f"{train['mean_src_words']:.0f} / {train['mean_tgt_words']:.0f} words): compiled "
              f"step {train['xla_step_bytes'] / gib:.2f} GiB, steps "
              f"{', '.join(f'{s:.1f}' for s in train['step_s'])} s, loss per token "
              f"{' -> '.join(f'{x:.3f}' for x in train['losses'])}; peak host RSS "
              f"{train['host_peak_rss_bytes'] / gib:.2f} GiB", flush=True)
    return result


# --------------------------------------------------------------------------------------- main


def run(options: dict[str, Any]) -> dict[str, Any]:
    """All figures of one mode (a dict of the flags above); prints as it goes."""
    options = {**options, "scorers": scorers(options)}  # The JSON names the scorers timed.
    device = jax.devices()[0]
    machine = measure.machine_info()
    head = {"device": f"{device.platform}: {device.device_kind}", "backend": jax.default_backend(),
            "machine": machine, "options": options}
    cpu_flags = ", ".join(f"{f} {'yes' if on else 'no'}" for f, on in machine["cpu_flags"].items())
    print(f"device {head['device']}; {machine['cpu_model']} ({cpu_flags}), "
          f"{machine['sched_affinity_cpus']} CPUs usable, load {machine['load_average_start']}",
          flush=True)
    if options["mode"] == "decode":
        result = run_decode(options)
    elif options["mode"] == "long":
        result = run_long(options)
    else:
        peak = measure.matmul_peak(options["matmul_size"])
        head.update(matmul_size=options["matmul_size"], matmul_peak_flops_per_sec=peak)
        print(f"f32 matmul peak {peak / 1e9:.1f} GFLOP/s ({options['matmul_size']}^3)", flush=True)
        if options["mode"] == "synthetic":
            result = {"rows": run_synthetic(options, peak)}
        else:
            result = (run_workload if options["mode"] == "workload" else run_pipeline)(options, peak)
            _print_summary(result)
    machine["load_average_end"] = measure.load_average()
    return {**head, **result}


def _check_model_flags(options: dict[str, Any], given: set[str]) -> None:
    """Refuses model flags the run would ignore (`given`: the flags set on the command line) and
    a model its family refuses, before anything is compiled: --arch where the model is not the
    flags' (decode: the run's; long: the RNN's; --config_model: the config's), and the size
    flags only another family reads (`arch.ARCHS[...].only`), as training refuses those fields."""
    own = options["mode"] in ("workload", "synthetic") or (
        options["mode"] == "pipeline" and not options["config_model"])
    if not own:
        if "arch" in given:
            raise app.UsageError(f"--arch does not apply to --mode={options['mode']}"
                                 f"{' --config_model' if options['config_model'] else ''}: "
                                 "decode times the run's own model, pipeline --config_model the "
                                 "config's, long the RNN's additive attention.")
        return
    family = arch_lib.get(options["arch"])
    others = {f for entry in arch_lib.ARCHS.values() for f in entry.only} - set(family.only)
    ignored = sorted(others & given)
    if ignored:
        raise app.UsageError(f"--arch={options['arch']} does not read "
                             f"{', '.join('--' + f for f in ignored)} (another family's sizes).")
    for scorer in scorers(options):
        try:
            _options_model(options, scorer, 8, 8, 8)
        except ValueError as e:
            raise app.UsageError(f"--arch={options['arch']} --scorers={scorer}: {e}") from None


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    unknown = sorted(set(FLAGS.scorers) - set(attention.SCORER_NAMES))
    if unknown:
        raise app.UsageError(f"Unknown scorers {unknown}; valid: {', '.join(attention.SCORER_NAMES)}.")
    unknown = sorted(set(FLAGS.long_impls) - set(attention.IMPLS))
    if unknown:
        raise app.UsageError(f"Unknown --long_impls {unknown}; valid: {', '.join(attention.IMPLS)}.")
    if FLAGS.mode == "workload" and not FLAGS.workload:
        raise app.UsageError("--mode=workload needs --workload=DIR (written by the PyTorch "
                             "reference's prep_data.py --out DIR).")
    if FLAGS.mode == "decode" and not FLAGS.workdir:
        raise app.UsageError("--mode=decode needs --workdir=RUN (a finished training run).")
    options = {name: FLAGS[name].value for name in _FLAG_NAMES}
    _check_model_flags(options, {name for name in _FLAG_NAMES if FLAGS[name].present})
    result = run(options)
    if FLAGS.json_out:
        Path(FLAGS.json_out).write_text(json.dumps(result, indent=1, default=str))
        print(f"wrote {FLAGS.json_out}")


if __name__ == "__main__":
    runtime.keep_freed_memory()
    app.run(main)
