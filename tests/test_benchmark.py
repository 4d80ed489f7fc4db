"""The benchmark at tiny shapes: the real-batch workload reader and batches, the FLOP model, each
mode end to end (JSON figures, only real target tokens counted), and the matmul FLOP counter."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from absl import logging as absl_logging

from attn_jax import benchmark, models

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
    assert src[order[0]] == [vocab.index(w) + 4 if w in vocab else models.UNK for w in words]
    b = benchmark.workload_batch(src, tgt, order[:4], multiple=8)
    assert b["src"].shape[:2] == (1, 4) and b["src"].shape[-1] % 8 == 0
    for r, i in enumerate(order[:4]):
        n = len(tgt[i])
        assert list(b["tgt_in"][0, r, :n + 1]) == [models.BOS] + tgt[i]
        assert list(b["tgt_out"][0, r, :n + 1]) == tgt[i] + [models.EOS]
        assert list(b["src"][0, r, :len(src[i]) + 1]) == src[i] + [models.EOS]
        assert (b["tgt_out"][0, r, n + 1:] == models.PAD).all()


def test_workload_mode_end_to_end(tmp_path):
    _write_workload(tmp_path)
    out = tmp_path / "out.json"
    _run_main(["--mode=workload", f"--workload={tmp_path}", f"--json_out={out}",
               *[f"--{k}={v}" for k, v in TINY.items()]])
    r = json.loads(out.read_text())
    src, tgt, order, _, _ = benchmark.read_workload(str(tmp_path))
    timed = order[4:12]  # batches 1 and 2 of 4 pairs after one warmup batch
    assert r["timed_target_tokens"] == sum(len(tgt[i]) + 1 for i in timed)
    assert r["model_weight_sum"] == r["timed_target_tokens"]  # the step's own count agrees
    assert r["tokens_per_sec"] > 0 and r["compile_s"] and r["matmul_peak_flops_per_sec"] > 0
    assert 0 < r["real_flops_per_token"] < r["padded_flops_per_token"]


def test_workload_profile_attributes_time_to_model_parts(tmp_path):
    """--profile_dir traces the step; the breakdown finds the model's named parts (an attribution
    that lost the name stack would put everything under 'unattributed' or 'other'; at these tiny
    shapes unnamed bookkeeping ops still take much of the time, so only presence is checked)."""
    _write_workload(tmp_path)
    out = tmp_path / "out.json"
    _run_main(["--mode=workload", f"--workload={tmp_path}", f"--json_out={out}",
               f"--profile_dir={tmp_path / 'trace'}", *[f"--{k}={v}" for k, v in TINY.items()]])
    parts = json.loads(out.read_text())["profile"]["parts"]
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


def test_flop_model_is_exact_bilinear_in_lengths():
    cfg = models.ModelConfig(src_vocab_size=13, tgt_vocab_size=11, embed_size=4,
                             encoder_hidden=6, decoder_hidden=6, attention_size=5, output_size=7)
    a, b, c, d = benchmark.flop_coefficients(cfg)
    model = models.Seq2Seq(cfg)
    params = jax.eval_shape(lambda: models.init_params(model, jax.random.key(0), 4, 4))
    src, tgt = jnp.ones((1, 11), jnp.int32), jnp.ones((1, 6), jnp.int32)
    jaxpr = jax.make_jaxpr(jax.grad(lambda p: benchmark._reference_loss(  # noqa: SLF001
        model, p, src, tgt, tgt)))(params).jaxpr
    assert benchmark.matmul_flops(jaxpr) == pytest.approx(a + b * 11 + c * 6 + d * 66)
    assert d > 0  # attention grows with S·T
    batch = {"src": np.array([[5, 5, 0, 0]]), "tgt_out": np.array([[5, 2, 0, 0]])}
    real, padded = benchmark.batch_flops(cfg, batch)
    assert real == pytest.approx(a + 2 * b + 2 * c + 4 * d)
    assert padded == pytest.approx(a + 4 * b + 4 * c + 16 * d)


def test_synthetic_mode_rows(tmp_path):
    out = tmp_path / "bench.json"
    _run_main(["--mode=synthetic", "--scorers=additive,dot", "--num_seeds=1,2", "--src_len=8",
               "--tgt_len=8", f"--json_out={out}", *[f"--{k}={v}" for k, v in TINY.items()]])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["scorer"], r["num_seeds"]) for r in rows] == [
        ("additive", 1), ("additive", 2), ("dot", 1), ("dot", 2)]
    batch = benchmark.make_batch(0, 2, 4, 8, 8, 50, 50)
    assert rows[1]["target_tokens_per_step"] == int((batch["tgt_out"] != models.PAD).sum())
    assert all(r["tokens_per_sec"] > 0 and not r["dot_adjusted"] for r in rows)


def test_make_batch_follows_token_conventions():
    b = benchmark.make_batch(3, 2, 64, 40, 40, 7800, 5900)
    assert all(b[k].shape == (2, 64, 40) and b[k].dtype == np.int32 for k in b)
    src_n = (b["src"] != models.PAD).sum(-1)
    tgt_n = (b["tgt_out"] != models.PAD).sum(-1)  # words + EOS
    assert src_n.min() >= 1 and src_n.max() <= 40 and 10 < src_n.mean() < 16
    np.testing.assert_array_equal(b["tgt_in"][..., 0], models.BOS)
    np.testing.assert_array_equal(np.take_along_axis(b["tgt_out"], tgt_n[..., None] - 1, -1),
                                  models.EOS)
    np.testing.assert_array_equal(b["tgt_in"][..., 1:], np.where(
        b["tgt_out"][..., 1:] != models.PAD, b["tgt_out"][..., :-1], models.PAD))
    assert ((b["src"] == models.PAD) == (np.arange(40) >= src_n[..., None])).all()


def test_dot_family_gets_matching_encoder_size_at_default_shape():
    kw = dict(embed_size=256, encoder_hidden=512, decoder_hidden=512, hidden_size=0,
              src_vocab=7800, tgt_vocab=5900, src_len=40, flow="bahdanau", cell="gru")
    cfg, adjusted = benchmark.model_config("scaled_dot", **kw)
    assert adjusted and cfg.encoder_hidden == 256 and cfg.annotation_size == cfg.decoder_hidden
    cfg, adjusted = benchmark.model_config("additive", **kw)
    assert not adjusted and cfg.encoder_hidden == 512 and cfg.attention_size == 512


def test_matmul_flops_counts_scan_trips():
    def f(x, w):
        return jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=5)[0]

    jaxpr = jax.make_jaxpr(jax.grad(lambda x, w: f(x, w).sum(), argnums=1))(
        jnp.ones((3, 4)), jnp.ones((4, 4))).jaxpr
    # forward 5 x (2*3*4*4), backward 5 x 2 matmuls of the same size.
    assert benchmark.matmul_flops(jaxpr) == 15 * 2 * 3 * 4 * 4
