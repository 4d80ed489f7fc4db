"""The benchmark CLI end to end at a tiny shape: JSON keys, positive figures, only real target
tokens counted, dot-family size adjustment; plus the batch maker and the matmul FLOP counter."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from attn_jax import benchmark, models

TINY = dict(hidden_size=16, batch_size=4, src_len=8, tgt_len=8, src_vocab=50, tgt_vocab=50,
            steps=2, warmup=1, matmul_size=128)
ROW_KEYS = {"scorer", "num_seeds", "dot_adjusted", "model", "target_tokens_per_step",
            "model_weight_sum", "tokens_per_sec", "step_ms_mean", "step_ms_median",
            "step_ratio_to_smallest_k", "compile_s", "xla_flops_per_step",
            "xla_flops_per_target_token", "matmul_flops_per_step", "matmul_flops_per_target_token",
            "achieved_flops_per_sec", "fraction_of_peak", "host_peak_rss_bytes",
            "device_peak_bytes", "xla_step_bytes"}
POSITIVE = ("target_tokens_per_step", "tokens_per_sec", "step_ms_mean", "step_ms_median",
            "compile_s", "xla_flops_per_step", "xla_flops_per_target_token",
            "matmul_flops_per_step", "matmul_flops_per_target_token", "achieved_flops_per_sec",
            "fraction_of_peak", "host_peak_rss_bytes", "xla_step_bytes")


def test_main_writes_json_with_real_token_counts(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["benchmark", "--scorers=additive,dot", "--num_seeds=1", f"--json_out={out}"]
    argv += [f"--{k}={v}" for k, v in TINY.items()]
    with flagsaver.flagsaver():
        flags.FLAGS(argv)
        benchmark.main(["benchmark"])
    result = json.loads(out.read_text())

    assert {"device", "backend", "matmul_peak_flops_per_sec", "load_average", "rows"} <= set(result)
    assert result["matmul_peak_flops_per_sec"] > 0
    assert [r["scorer"] for r in result["rows"]] == ["additive", "dot"]
    batch = benchmark.make_batch(0, 1, 4, 8, 8, 50, 50)
    real = int((batch["tgt_out"] != models.PAD).sum())
    assert 0 < real < batch["tgt_out"].size  # the batch has padding, and it is not counted
    for row in result["rows"]:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        for key in POSITIVE:
            assert row[key] > 0, key
        assert row["target_tokens_per_step"] == real == row["model_weight_sum"]
        assert row["xla_flops_per_target_token"] * real == pytest.approx(row["xla_flops_per_step"])
        # XLA counts each scan body once; the jaxpr count multiplies by the scan length.
        assert row["matmul_flops_per_step"] > row["xla_flops_per_step"]
        assert not row["dot_adjusted"]  # hidden_size derivation already matches sizes


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
