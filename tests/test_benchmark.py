"""The benchmark at tiny shapes: the real-batch workload reader and batches, the FLOP model, each
mode end to end (JSON figures, only real target tokens counted), the matmul FLOP counter and the
machine description written beside every figure.

The end-to-end runs compile the real train step, which dominates this file's time: the workload
run pads to one shape, and the synthetic run's first row uses the workload run's model and shape,
so the session's compilation cache (conftest.py) serves it."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from absl import logging as absl_logging

from attn_jax import benchmark
from attn_jax.model import rnn
from attn_jax.run import config as config_lib
from attn_jax.run import measure

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
    assert r["tokens_per_sec"] > 0 and len(r["compile_s"]) >= 1
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
    """The real step at K = 1 and K = 2 vmapped replicas. Vocabulary, lengths and batch are the
    workload test's model and padded shape, so K = 1 comes from the compilation cache."""
    out = tmp_path / "bench.json"
    _run_main(["--mode=synthetic", "--scorers=additive", "--num_seeds=2,1", "--src_len=16",
               "--tgt_len=16", "--src_vocab=24", "--tgt_vocab=24", f"--json_out={out}",
               *[f"--{k}={v}" for k, v in TINY.items() if k not in ("src_vocab", "tgt_vocab")]])
    r = json.loads(out.read_text())
    rows = r["rows"]
    assert [(r["scorer"], r["num_seeds"]) for r in rows] == [("additive", 1), ("additive", 2)]
    batch = benchmark.make_batch(0, 2, 4, 16, 16, 24, 24)
    assert rows[1]["target_tokens_per_step"] == int((batch["tgt_out"] != rnn.PAD).sum())
    assert rows[1]["model_weight_sum"] == rows[1]["target_tokens_per_step"]  # both replicas
    assert rows[0]["step_ratio_to_smallest_k"] == 1.0
    assert all(r["tokens_per_sec"] > 0 and not r["dot_adjusted"] for r in rows)
    _check_machine(r)


class _FakeTrainer:
    """Trainer's interface without compiling: 10 ms steps whose weight is the batch's tokens."""

    def __init__(self, cfg, num_seeds, total_steps):
        self.cfg, self.compile_s, self.xla_bytes = cfg, {"shape": 0.0}, {"shape": 2**20}

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
