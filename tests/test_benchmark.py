"""The benchmark at tiny shapes: the real-batch workload reader and batches, the FLOP models (the
RNN's from its jaxpr, the Transformer's closed formula against a hand count and its jaxpr), each
mode end to end (JSON figures, only real target tokens counted): the RNN in the workload,
pipeline and synthetic modes, the Transformer in the synthetic mode (K = 2 replicas) and the
decode mode; both families' figures through the modes' loops with the step faked, the model
flags' checks, the matmul FLOP counter and the machine description written beside every figure.

The end-to-end runs compile the real train step, which dominates this file's time: the workload
run pads to one shape, and the RNN's synthetic run uses the workload run's model and shape, so
the session's compilation cache (conftest.py) serves it; the Transformer's runs are one layer,
one compiled shape each."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import app, flags
from absl import logging as absl_logging

from attn_jax import benchmark
from attn_jax.data import sources
from attn_jax.data import vocab as vocab_lib
from attn_jax.model import arch, rnn, transformer
from attn_jax.run import checkpoint, measure
from attn_jax.run import config as config_lib
from tests.run_helpers import random_run_state

TINY = dict(hidden_size=16, batch_size=4, src_vocab=50, tgt_vocab=50, steps=2, warmup=1,
            matmul_size=128)


def _write_workload(folder, n=12):
    """A folder in ../shared/bench/prep_data.py's format."""
    rng = np.random.RandomState(0)
    words = [f"w{i}" for i in range(30)]
    for lang in ("de", "en"):
        sents = [" ".join(rng.choice(words, rng.randint(1, 9))) for _ in range(n)]
        (folder / f"train.{lang}").write_text("\n".join(sents) + "\n")
        (folder / f"vocab.{lang}").write_text("\n".join(words[:20]) + "\n")
    (folder / "order.txt").write_text(" ".join(map(str, rng.permutation(n))) + "\n")


def _run_main(argv):
    # Not flagsaver: it would also drop flags that modules imported during the run define (TFDS
    # loads grain lazily), breaking later tests; resetting the values is enough here.
    level = absl_logging.get_absl_logger().level  # Parsing --verbosity changes it.
    try:
        flags.FLAGS(["benchmark"] + argv)
        benchmark.main(["benchmark"])
    finally:
        flags.FLAGS.unparse_flags()
        absl_logging.get_absl_logger().setLevel(level)


def test_workload_batches_follow_the_reference_layout(tmp_path):
    _write_workload(tmp_path)
    src, tgt, order, sv, tv = benchmark.read_workload(str(tmp_path))
    assert (sv, tv) == (24, 24) and sorted(order) == list(range(12))
    words = (tmp_path / "train.de").read_text().split("\n")[order[0]].split()
    vocab = (tmp_path / "vocab.de").read_text().split()
    assert src[order[0]] == [vocab.index(w) + 4 if w in vocab else rnn.UNK for w in words]
    b = benchmark.workload_batch(src, tgt, order[:4], multiple=8)
    assert b["src"].shape[:2] == (1, 4) and b["src"].shape[-1] % 8 == 0
    for r, i in enumerate(order[:4]):
        n = len(tgt[i])
        assert list(b["tgt_in"][0, r, :n + 1]) == [rnn.BOS] + tgt[i]
        assert list(b["tgt_out"][0, r, :n + 1]) == tgt[i] + [rnn.EOS]
        assert list(b["src"][0, r, :len(src[i]) + 1]) == src[i] + [rnn.EOS]
        assert (b["tgt_out"][0, r, n + 1:] == rnn.PAD).all()


def _check_machine(r):
    m = r["machine"]
    assert set(m["cpu_flags"]) == {"avx2", "avx512f", "fma"} and m["os_cpu_count"] >= 1
    assert len(m["load_average_start"]) == len(m["load_average_end"]) == 3
    assert m["versions"]["jax"] == jax.__version__ and m["versions"]["python"]


def test_workload_mode_end_to_end_with_profile(tmp_path):
    """Real target tokens only; --profile_dir traces the step and the breakdown finds the model's
    named parts (an attribution that lost the name stack would put everything under
    'unattributed' or 'other'; at these tiny shapes unnamed bookkeeping ops still take much of
    the time, so only presence is checked)."""
    _write_workload(tmp_path)
    out = tmp_path / "out.json"
    _run_main(["--mode=workload", f"--workload={tmp_path}", f"--json_out={out}",
               "--pad_multiple=16", f"--profile_dir={tmp_path / 'trace'}",
               *[f"--{k}={v}" for k, v in TINY.items()]])
    r = json.loads(out.read_text())
    assert r["arch"] == "rnn" and r["options"]["scorers"] == ["additive"]  # the family's default
    src, tgt, order, _, _ = benchmark.read_workload(str(tmp_path))
    timed = order[4:12]  # batches 1 and 2 of 4 pairs after one warmup batch
    assert r["timed_target_tokens"] == sum(len(tgt[i]) + 1 for i in timed)
    assert r["model_weight_sum"] == r["timed_target_tokens"]  # the step's own count agrees
    assert r["tokens_per_sec"] > 0 and r["compile_s"] and r["matmul_peak_flops_per_sec"] > 0
    assert 0 < r["real_flops_per_token"] < r["padded_flops_per_token"]
    assert r["fraction_of_peak"] == pytest.approx(
        r["achieved_flops_per_sec"] / r["matmul_peak_flops_per_sec"])
    assert "padded_fraction_of_peak" not in r  # speed only by the real-token count
    _check_machine(r)
    parts = r["profile"]["parts"]
    for part in ("encoder recurrence (forward)", "decoder recurrence (forward)",
                 "decoder recurrence (backward)", "output head + loss (forward)"):
        assert parts.get(part, 0) > 0, (part, parts)


def test_pipeline_mode_times_one_epoch_of_the_configs_batches(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    out = tmp_path / "out.json"
    _run_main(["--mode=pipeline", "--config=configs/default.py:tiny", f"--json_out={out}",
               *[f"--{k}={v}" for k, v in TINY.items() if k not in ("steps", "warmup")]])
    r = json.loads(out.read_text())
    # tiny: 400 training pairs in batches of 16 in 2 buckets; each bucket's last batch is topped
    # up with pairs from the same bucket, so an epoch is every pair once plus < 16 per bucket.
    assert 400 <= r["timed_pairs"] < 400 + 2 * 16 and r["timed_pairs"] <= 16 * r["timed_steps"]
    assert r["model_weight_sum"] == r["timed_target_tokens"] > 400
    assert r["tokens_per_sec"] > 0 and len(r["compile_s"]) >= 1 and r["arch"] == "rnn"
    _check_machine(r)


TINY_MODEL = rnn.ModelConfig(src_vocab_size=13, tgt_vocab_size=11, embed_size=4,
                             encoder_hidden=6, decoder_hidden=6, attention_size=5, output_size=7)


def test_flop_model_is_exact_bilinear_in_lengths():
    cfg = TINY_MODEL
    a, b, c, d = measure.flop_coefficients(cfg)
    model = rnn.Seq2Seq(cfg)
    params = jax.eval_shape(lambda: rnn.init_params(model, jax.random.key(0), 4))
    src, tgt = jnp.ones((1, 11), jnp.int32), jnp.ones((1, 6), jnp.int32)
    jaxpr = jax.make_jaxpr(jax.grad(lambda p: rnn.step_by_step_loss(
        model, p, src, tgt, tgt)))(params).jaxpr
    assert measure.matmul_flops(jaxpr) == pytest.approx(a + b * 11 + c * 6 + d * 66)
    assert d > 0  # attention grows with S·T
    batch = {"src": np.array([[5, 5, 0, 0]]), "tgt_out": np.array([[5, 2, 0, 0]])}
    real, padded = measure.batch_flops(cfg, batch)
    assert real == pytest.approx(a + 2 * b + 2 * c + 4 * d)
    assert padded == pytest.approx(a + 4 * b + 4 * c + 16 * d)


def test_flop_counts_match_the_counts_before_the_split():
    """The coefficients the benchmark's own reference loss (nn.scan over decode_step) gave before
    the FLOP count moved to `measure` and onto `rnn.step_by_step_loss`: the tiny model above and
    Model A (≈ 59 MFLOP per real target token at Multi30k's lengths)."""
    assert measure.flop_coefficients(TINY_MODEL) == (216.0, 1260.0, 3042.0, 66.0)
    model_a, _ = benchmark.model_config(
        "additive", embed_size=256, encoder_hidden=512, decoder_hidden=512, hidden_size=0,
        src_vocab=7800, tgt_vocab=5900, src_len=40, flow="bahdanau", cell="gru")
    assert measure.flop_coefficients(model_a) == (3145728.0, 17301504.0, 41717760.0, 9216.0)


def test_synthetic_mode_rows(tmp_path):
    """The real step of the RNN; vocabulary, lengths and batch are the workload test's model and
    padded shape, so it comes from the compilation cache (K > 1 replicas: the Transformer's test
    below)."""
    out = tmp_path / "bench.json"
    _run_main(["--mode=synthetic", "--scorers=additive", "--num_seeds=1", "--src_len=16",
               "--tgt_len=16", "--src_vocab=24", "--tgt_vocab=24", f"--json_out={out}",
               *[f"--{k}={v}" for k, v in TINY.items() if k not in ("src_vocab", "tgt_vocab")]])
    r = json.loads(out.read_text())
    (row,) = r["rows"]
    assert (row["arch"], row["scorer"], row["num_seeds"]) == ("rnn", "additive", 1)
    batch = benchmark.make_batch(0, 1, 4, 16, 16, 24, 24)
    assert row["model_weight_sum"] == row["target_tokens_per_step"] == int(
        (batch["tgt_out"] != rnn.PAD).sum())
    assert row["step_ratio_to_smallest_k"] == 1.0
    assert row["tokens_per_sec"] > 0 and not row["dot_adjusted"]
    _check_machine(r)


def test_synthetic_mode_times_the_transformer_at_two_replicas(tmp_path):
    """The Transformer's real train step (1 layer, 2 heads) vmapped over K = 2 replicas: the
    same figures as the RNN's rows, `arch` among them, the step's own token count of both
    replicas, FLOPs by the Transformer's formula at each pair's lengths."""
    out = tmp_path / "bench.json"
    _run_main(["--mode=synthetic", "--arch=transformer", "--layers=1", "--num_heads=2",
               "--num_seeds=2", "--src_len=16", "--tgt_len=16", "--src_vocab=24",
               "--tgt_vocab=24", f"--json_out={out}",
               *[f"--{k}={v}" for k, v in TINY.items() if k not in ("src_vocab", "tgt_vocab")]])
    r = json.loads(out.read_text())
    (row,) = r["rows"]
    assert (row["arch"], row["scorer"], row["num_seeds"]) == ("transformer", "scaled_dot", 2)
    assert r["options"]["scorers"] == ["scaled_dot"]  # the family's default
    assert {k: row["model"][k] for k in ("layers", "num_heads", "d_model", "d_ff")} == {
        "layers": 1, "num_heads": 2, "d_model": 16, "d_ff": 64}
    batch = benchmark.make_batch(0, 2, 4, 16, 16, 24, 24)
    tokens = int((batch["tgt_out"] != rnn.PAD).sum())
    assert row["model_weight_sum"] == row["target_tokens_per_step"] == tokens  # both replicas
    cfg = transformer.TransformerConfig(src_vocab_size=24, tgt_vocab_size=24, layers=1,
                                        num_heads=2, d_model=16, d_ff=64)
    assert row["real_flops_per_token"] == pytest.approx(measure.batch_flops(cfg, batch)[0] / tokens)
    assert 0 < row["real_flops_per_token"] < row["padded_flops_per_token"]
    assert row["fraction_of_peak"] == pytest.approx(
        row["achieved_flops_per_sec"] / r["matmul_peak_flops_per_sec"])
    assert row["tokens_per_sec"] > 0 and row["compile_s_total"] > 0 and row["xla_mb"] > 0
    _check_machine(r)


class _FakeTrainer:
    """Trainer's interface without compiling: 10 ms steps whose weight is the batch's tokens."""

    def __init__(self, cfg, num_seeds, total_steps, train=None):
        self.cfg, self.compile_s, self.xla_bytes = cfg, {"shape": 0.0}, {"shape": 2**20}
        self.train, self.compiled = train, {}

    def _key(self, batch):
        return batch["src"].shape

    def compile(self, batch):
        self.compiled[self._key(batch)] = None

    def run(self, batch):
        return 0.01, {"weight": (batch["tgt_out"] != rnn.PAD).sum(-1)}


def test_synthetic_rows_per_scorer_and_replica_count(monkeypatch):
    """One row per scorer and K, in that order (each scorer's training step is tested in
    test_models.py; here only the mode's loop and rows): a dot-family scorer keeps the sizes
    derived from --hidden_size, and gets encoder = decoder // 2 per direction otherwise."""
    monkeypatch.setattr(benchmark, "Trainer", _FakeTrainer)
    monkeypatch.setattr(measure, "batch_flops", lambda cfg, batch: (1.0, 2.0))
    options = {**benchmark.default_options(), "scorers": ["additive", "dot"], "num_seeds": ["2", "1"],
               "src_len": 8, "tgt_len": 8, **TINY}
    rows = benchmark.run_synthetic(options, peak=1e9)
    assert [(r["scorer"], r["num_seeds"]) for r in rows] == [
        ("additive", 1), ("additive", 2), ("dot", 1), ("dot", 2)]
    assert rows[3]["target_tokens_per_step"] == int(
        (benchmark.make_batch(0, 2, 4, 8, 8, 50, 50)["tgt_out"] != rnn.PAD).sum())
    assert not any(r["dot_adjusted"] for r in rows)
    rows = benchmark.run_synthetic({**options, "hidden_size": 0, "embed_size": 8,
                                    "encoder_hidden": 16, "decoder_hidden": 16,
                                    "num_seeds": ["1"]}, peak=1e9)
    assert [r["dot_adjusted"] for r in rows] == [False, True]
    assert rows[1]["model"]["encoder_hidden"] == 8


# ------------------------------------------------------------------------------ the Transformer


def _mm(m, k, n):
    """FLOPs of one [m, k] @ [k, n] matmul."""
    return 2 * m * k * n


def test_transformer_flops_match_a_hand_count():
    """Every matmul of a 1-layer Transformer (d = 4, H = 2 heads of 2, d_ff = 6, V = 5) on one
    pair of S = 3 source and T = 2 target tokens, written out; the train step is 3 x forward."""
    cfg = transformer.TransformerConfig(src_vocab_size=7, tgt_vocab_size=5, layers=1,
                                        num_heads=2, d_model=4, d_ff=6)
    s, t = 3, 2
    encoder = (_mm(s, 4, 12)  # q, k, v in one matmul
               + 2 * _mm(s, 2, s) + 2 * _mm(s, s, 2)  # scores, context: 2 heads of d_h = 2
               + _mm(s, 4, 4)  # output projection
               + _mm(s, 4, 6) + _mm(s, 6, 4))  # feed-forward
    decoder = (_mm(t, 4, 12) + 2 * _mm(t, 2, t) + 2 * _mm(t, t, 2) + _mm(t, 4, 4)  # self (T x T)
               + _mm(t, 4, 4) + 2 * _mm(s, 4, 4)  # cross: queries; keys, values of the source
               + 2 * _mm(t, 2, s) + 2 * _mm(t, s, 2) + _mm(t, 4, 4)  # cross scores, context, out
               + _mm(t, 4, 6) + _mm(t, 6, 4)  # feed-forward
               + _mm(t, 4, 5))  # output projection
    assert encoder + decoder == 1824
    coefficients = measure.flop_polynomial(cfg)
    assert measure.pair_count(coefficients, s, t) == 3 * 1824
    # General: a learned G_h per head on every source token's key, [S, 2] @ [2, 2] per head.
    general = measure.flop_polynomial(dataclasses.replace(cfg, scorer="general"))
    assert measure.pair_count(general, s, t) == 3 * (1824 + 2 * _mm(s, 2, 2))
    # Real: each pair at its own lengths; padded: at the batch's shape [4, 4].
    batch = {"src": np.array([[5, 5, 5, 0], [5, 0, 0, 0]]),
             "tgt_out": np.array([[5, 2, 0, 0], [5, 5, 5, 2]])}
    real, padded = measure.batch_flops(cfg, batch)
    assert real == measure.pair_count(coefficients, 3, 2) + measure.pair_count(coefficients, 1, 4)
    assert padded == 2 * measure.pair_count(coefficients, 4, 4)


def test_transformer_flop_formula_matches_its_jaxpr():
    """The formula against the traced forward + backward of the teacher-forced model (2 layers)
    on one unpadded pair. Additive cross-attention: its context is mixed from the weights it
    returns (the dot family's goes through dot_product_attention, and its jaxpr also holds the
    returned weights' scores, which a train step ignoring them never computes)."""
    cfg = transformer.TransformerConfig(src_vocab_size=13, tgt_vocab_size=11, layers=2,
                                        num_heads=2, d_model=8, d_ff=12, scorer="additive")
    model = transformer.Transformer(cfg)
    params = jax.eval_shape(lambda: transformer.init_params(model, jax.random.key(0), 4))
    s, t = 5, 3
    src, tgt = jnp.ones((1, s), jnp.int32), jnp.ones((1, t), jnp.int32)
    grad = jax.grad(lambda p: model.apply({"params": p}, src, tgt)[0].sum())
    traced = measure.matmul_flops(jax.make_jaxpr(grad)(params).jaxpr)
    assert traced == measure.pair_count(measure.flop_polynomial(cfg), s, t)


def test_every_family_has_a_flop_model_and_size_flags():
    assert set(measure.FLOP_MODELS) == {entry.config for entry in arch.ARCHS.values()}
    assert set(benchmark.FAMILY_OPTIONS) == set(arch.ARCHS)
    assert set(benchmark.FLAGS["arch"].parser.enum_values) == set(arch.ARCHS)
    assert benchmark.family_default("transformer", "scorer") == "scaled_dot"
    assert benchmark.family_default("rnn", "scorer") == "additive"


def test_transformer_size_flags_derive_the_model_as_training_does():
    """--d_model / --d_ff / --layers / --num_heads are those `config.model` fields; --hidden_size
    > 0 leaves d_model = hidden_size and d_ff = 4 · d_model, as --config.model.hidden_size does."""
    config = config_lib.load_config_file(os.path.join(config_lib.REPO, "configs/transformer.py"))
    config.model.update(hidden_size=24, num_heads=2, layers=3, dropout=0.0)
    want = arch.model_config(config.model, src_vocab_size=30, tgt_vocab_size=20,
                             max_source_len=10, max_decode_extra=config.eval.max_decode_extra)
    options = {**benchmark.default_options(), "arch": "transformer", "hidden_size": 24,
               "num_heads": 2, "layers": 3}
    got, adjusted = benchmark._options_model(options, "scaled_dot", 30, 20, 10)
    assert got == want and not adjusted and (got.d_model, got.d_ff) == (24, 96)
    got, _ = benchmark._options_model({**options, "hidden_size": 0, "d_model": 32, "d_ff": 40},
                                      "additive", 30, 20, 10)
    assert (got.d_model, got.d_ff, got.scorer) == (32, 40, "additive")
    got, _ = benchmark._options_model({**benchmark.default_options(), "arch": "transformer"},
                                      "scaled_dot", 30, 20, 10)
    assert (got.layers, got.d_model, got.d_ff, got.num_heads) == (2, 512, 2048, 4)


def test_workload_figures_have_the_same_keys_for_every_family(tmp_path, monkeypatch):
    """The workload mode's loop (the train step faked) gives the same figures for the RNN and the
    Transformer, `arch` among them; the Transformer's FLOPs are its formula at each timed pair's
    own lengths (the RNN's FLOP model is faked here: test_flop_model_is_exact_bilinear_in_lengths)."""
    _write_workload(tmp_path)
    monkeypatch.setattr(benchmark, "Trainer", _FakeTrainer)
    monkeypatch.setattr(measure, "flop_coefficients", lambda cfg: (1.0, 2.0, 3.0, 4.0))
    options = {**benchmark.default_options(), "workload": str(tmp_path), "pad_multiple": 16,
               **TINY}
    rnn_figures = benchmark.run_workload(options, peak=1e9)
    figures = benchmark.run_workload({**options, "arch": "transformer", "num_heads": 2},
                                     peak=1e9)
    assert set(figures) == set(rnn_figures) and "arch" in figures
    assert (rnn_figures["arch"], figures["arch"]) == ("rnn", "transformer")
    assert figures["model"]["d_model"] == 16 and figures["model"]["scorer"] == "scaled_dot"
    src, tgt, order, _, tgt_vocab = benchmark.read_workload(str(tmp_path))
    coefficients = measure.flop_polynomial(transformer.TransformerConfig(
        src_vocab_size=24, tgt_vocab_size=tgt_vocab, layers=2, num_heads=2, d_model=16, d_ff=64))
    timed = order[4:12]  # batches 1 and 2 of 4 pairs after one warmup batch
    tokens = sum(len(tgt[i]) + 1 for i in timed)
    assert figures["timed_target_tokens"] == tokens
    assert figures["real_flops_per_token"] == pytest.approx(sum(
        measure.pair_count(coefficients, len(src[i]) + 1, len(tgt[i]) + 1) for i in timed) / tokens)
    assert figures["fraction_of_peak"] == pytest.approx(figures["achieved_flops_per_sec"] / 1e9)


def test_pipeline_config_model_trains_the_configs_own_model(tmp_path, monkeypatch):
    """--config_model: the config's model, of its own family (configs/transformer.py:tiny: a
    Transformer), and its train section (label smoothing 0.1) for the step (faked here; the
    pipeline's epoch with a real step: test_pipeline_mode_times_one_epoch_of_the_configs_batches)."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    trainers = []
    monkeypatch.setattr(benchmark, "Trainer",
                        lambda *args: trainers.append(_FakeTrainer(*args)) or trainers[-1])
    options = {**benchmark.default_options(), "mode": "pipeline", "config_model": True,
               "config": "configs/transformer.py:tiny", "matmul_size": 128}
    figures = benchmark.run_pipeline(options, peak=1e9)
    config = config_lib.load_config_file(
        os.path.join(config_lib.REPO, "configs/transformer.py:tiny"))
    assert figures["arch"] == "transformer" and isinstance(trainers[0].cfg,
                                                           transformer.TransformerConfig)
    assert {k: figures["model"][k] for k in ("layers", "d_model", "num_heads", "scorer",
                                             "dropout")} == {
        "layers": 2, "d_model": 16, "num_heads": 4, "scorer": "scaled_dot", "dropout": 0.1}
    assert trainers[0].train.label_smoothing == config.train.label_smoothing == 0.1
    assert 400 <= figures["timed_pairs"] < 400 + 2 * 16


def test_synthetic_transformer_rows(monkeypatch):
    """Rows of the Transformer per scorer and K (the step faked): the family's scorer by default,
    `arch` and the model in every row."""
    monkeypatch.setattr(benchmark, "Trainer", _FakeTrainer)
    options = {**benchmark.default_options(), "arch": "transformer", "num_seeds": ["1", "2"],
               "src_len": 8, "tgt_len": 8, **TINY}
    rows = benchmark.run_synthetic(options, peak=1e9)
    assert [(r["arch"], r["scorer"], r["num_seeds"]) for r in rows] == [
        ("transformer", "scaled_dot", 1), ("transformer", "scaled_dot", 2)]
    rows = benchmark.run_synthetic({**options, "scorers": ["additive", "general"],
                                    "num_seeds": ["1"]}, peak=1e9)
    assert [(r["model"]["scorer"], r["dot_adjusted"]) for r in rows] == [
        ("additive", False), ("general", False)]
    assert rows[1]["real_flops_per_token"] > rows[0]["real_flops_per_token"]  # G_h per head


@pytest.mark.parametrize("argv,message", [
    (["--arch=transformer", "--cell=lstm"], r"--arch=transformer does not read --cell"),
    (["--layers=3", "--d_model=64"], r"--arch=rnn does not read --d_model, --layers"),
    (["--arch=transformer", "--scorers=location"], r"--scorers=location: .*location"),
    (["--arch=transformer", "--d_model=16", "--num_heads=3"], r"num_heads=3 does not divide"),
    (["--mode=decode", "--workdir=RUN", "--arch=transformer"], r"--arch does not apply"),
    (["--mode=pipeline", "--config_model", "--arch=transformer"], r"--arch does not apply"),
])
def test_model_flags_another_family_or_mode_ignores_are_refused(argv, message):
    with pytest.raises(app.UsageError, match=message):
        _run_main(argv)


def test_decode_mode_times_beam_search_of_a_transformer_run(tmp_path, capsys):
    """Beam 5 over the test split of a tiny Transformer run (random parameters, checkpointed at
    step 3; one bucket of 24 tokens, longer sentences truncated, so one compiled shape): every
    test sentence decoded."""
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    config = config_lib.load_config_file(
        os.path.join(config_lib.REPO, "configs/transformer.py:tiny"))
    config.data.tfds_dir = str(tmp_path / "tfds")
    config.data.buckets = (24,)
    config.model.update(layers=1, num_heads=2)
    splits = sources.read_raw_splits(config.data)
    src_vocab, tgt_vocab = vocab_lib.load_or_build_vocabs(config.data, workdir, splits["train"],
                                                          {})
    _, state = random_run_state(workdir, config, src_vocab.size, tgt_vocab.size, scale=0.3)
    ckpts = checkpoint.Checkpoints(workdir, 2)
    ckpts.save(3, state)
    ckpts.close()
    out = tmp_path / "decode.json"
    _run_main(["--mode=decode", f"--workdir={workdir}", "--beam_size=5", f"--json_out={out}"])
    r = json.loads(out.read_text())
    assert r["arch"] == "transformer" and r["beam_size"] == 5
    assert r["sentences"] == len(splits["test"]) == 50 and r["sentences_per_sec"] > 0
    assert "model.arch=transformer, beam 5: 50 test sentences" in capsys.readouterr().out
    _check_machine(r)


def test_make_batch_follows_token_conventions():
    b = benchmark.make_batch(3, 2, 64, 40, 40, 7800, 5900)
    assert all(b[k].shape == (2, 64, 40) and b[k].dtype == np.int32 for k in b)
    src_n = (b["src"] != rnn.PAD).sum(-1)
    tgt_n = (b["tgt_out"] != rnn.PAD).sum(-1)  # words + EOS
    assert src_n.min() >= 1 and src_n.max() <= 40 and 10 < src_n.mean() < 16
    np.testing.assert_array_equal(b["tgt_in"][..., 0], rnn.BOS)
    np.testing.assert_array_equal(np.take_along_axis(b["tgt_out"], tgt_n[..., None] - 1, -1),
                                  rnn.EOS)
    np.testing.assert_array_equal(b["tgt_in"][..., 1:], np.where(
        b["tgt_out"][..., 1:] != rnn.PAD, b["tgt_out"][..., :-1], rnn.PAD))
    assert ((b["src"] == rnn.PAD) == (np.arange(40) >= src_n[..., None])).all()


def test_dot_family_gets_matching_encoder_size_at_default_shape():
    kw = dict(embed_size=256, encoder_hidden=512, decoder_hidden=512, hidden_size=0,
              src_vocab=7800, tgt_vocab=5900, src_len=40, flow="bahdanau", cell="gru")
    cfg, adjusted = benchmark.model_config("scaled_dot", **kw)
    assert adjusted and cfg.encoder_hidden == 256 and cfg.annotation_size == cfg.decoder_hidden
    cfg, adjusted = benchmark.model_config("additive", **kw)
    assert not adjusted and cfg.encoder_hidden == 512 and cfg.attention_size == 512
    assert cfg.embed_size == 256 and cfg.decoder_hidden == cfg.output_size == 512


def test_hidden_size_flag_derives_the_model_as_training_does():
    """--hidden_size > 0 leaves every size to `rnn.ModelConfig.from_config`, as a training run
    with --config.model.hidden_size=H would."""
    model = config_lib.load_config_file(config_lib.DEFAULT_CONFIG).model
    model.update(hidden_size=48, bidirectional=True, scorer="dot")
    want = rnn.ModelConfig.from_config(model, src_vocab_size=30, tgt_vocab_size=20,
                                       max_source_len=10)
    got, adjusted = benchmark.model_config(
        "dot", embed_size=256, encoder_hidden=512, decoder_hidden=512, hidden_size=48,
        src_vocab=30, tgt_vocab=20, src_len=10, flow="bahdanau", cell="gru")
    assert got == want and not adjusted


def test_matmul_flops_counts_scan_trips():
    def f(x, w):
        return jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=5)[0]

    jaxpr = jax.make_jaxpr(jax.grad(lambda x, w: f(x, w).sum(), argnums=1))(
        jnp.ones((3, 4)), jnp.ones((4, 4))).jaxpr
    # forward 5 x (2*3*4*4), backward 5 x 2 matmuls of the same size.
    assert measure.matmul_flops(jaxpr) == 15 * 2 * 3 * 4 * 4


X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
physical id\t: 0
core id\t: 0
flags\t\t: fpu sse2 fma avx avx2 avx512f avx512dq

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
physical id\t: 0
core id\t: 0
flags\t\t: fpu sse2 fma avx avx2 avx512f avx512dq

processor\t: 2
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
physical id\t: 0
core id\t: 1
flags\t\t: fpu sse2 fma avx avx2 avx512f avx512dq
"""

AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t: fpu avx avx2 fma avx512_bf16\n"

ARM_CPUINFO = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve\n\nprocessor\t: 1\n"


def test_parse_cpuinfo_reads_model_flags_and_cores():
    assert measure.parse_cpuinfo(X86_CPUINFO) == {
        "cpu_model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
        "cpu_flags": {"avx2": True, "avx512f": True, "fma": True},
        "logical_cpus": 3, "physical_cores": 2}  # two hyperthreads of core 0, and core 1
    # Whole flag names only: avx512_bf16 is not avx512f.
    assert measure.parse_cpuinfo(AVX2_ONLY)["cpu_flags"] == {
        "avx2": True, "avx512f": False, "fma": True}
    arm = measure.parse_cpuinfo(ARM_CPUINFO)
    assert arm["cpu_model"] is None and arm["logical_cpus"] == 2
    assert arm["cpu_flags"] == {"avx2": False, "avx512f": False, "fma": False}
    assert measure.parse_cpuinfo("")["logical_cpus"] is None


def test_machine_info_states_threads_load_and_versions():
    env = {"OMP_NUM_THREADS": "2", "XLA_FLAGS": "--xla_cpu_use_thunk_runtime=false"}
    m = measure.machine_info(cpuinfo=X86_CPUINFO, environ=env)
    assert m["cpu_model"].startswith("Intel(R) Xeon(R)") and m["cpu_flags"]["avx512f"]
    assert m["thread_env"]["OMP_NUM_THREADS"] == "2" and m["thread_env"]["MKL_NUM_THREADS"] is None
    assert m["xla_flags"] == "--xla_cpu_use_thunk_runtime=false"
    assert m["sched_affinity_cpus"] == len(os.sched_getaffinity(0))
    assert len(m["load_average_start"]) == 3 and all(x >= 0 for x in m["load_average_start"])
    assert set(m["versions"]) == {"python", "jax", "jaxlib", "flax", "optax", "numpy"}
    assert m["versions"]["numpy"] == np.__version__
    json.dumps(m)  # JSON-ready as it is
    assert measure.machine_info(cpuinfo="", environ={})["cpu_model"]  # falls back to platform
