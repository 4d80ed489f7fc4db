"""Attention perturbation (attn_jax.eval.perturb, attn_jax.perturb): the α transforms on hand-made
weights with padding; TV and JS against NumPy; the hook changes α and nothing else (identity ==
the models' own step-by-step reference, RNN in both flows and the Transformer); 'uniform' is the
uniform scorer; the perturbed maps are distributions over the real positions; 'seed' from the
model itself changes nothing; parameters untouched; the command end to end and its errors."""

import functools
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn_jax import perturb
from attn_jax.data.tokens import BOS, EOS, PAD
from attn_jax.data.vocab import WordVocab
from attn_jax.eval import perturb as lib
from attn_jax.model import rnn
from attn_jax.model import transformer as tf
from tests.run_helpers import assert_one_line_error
from tests.test_align import _random_run
from tests.test_transformer import _batch as _tf_batch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ------------------------------------------------------------------------ the transforms

# Two rows of two heads over 5 positions; row 1's real positions are not a prefix.
WEIGHTS = np.array([[[0.5, 0.2, 0.3, 0.0, 0.0], [0.1, 0.1, 0.8, 0.0, 0.0]],
                    [[0.4, 0.0, 0.4, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]], np.float32)
MASK = np.array([[[True, True, True, False, False]],
                 [[True, False, True, True, False]]])  # [B, 1, S], as the hook passes it


def test_uniform_and_argmax_give_exact_distributions_over_real_positions():
    np.testing.assert_array_equal(lib.uniform(WEIGHTS, MASK), np.array(
        [[[1 / 3, 1 / 3, 1 / 3, 0, 0]] * 2, [[1 / 3, 0, 1 / 3, 1 / 3, 0]] * 2], np.float32))
    np.testing.assert_array_equal(lib.argmax(WEIGHTS, MASK), np.array(
        [[[1, 0, 0, 0, 0], [0, 0, 1, 0, 0]],
         [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0]]], np.float32))  # Ties: the first real position.
    nothing = np.zeros((1, 1, 5), bool)  # A filler row: no real position, all 0.
    assert not lib.uniform(WEIGHTS[:1], nothing).any()
    assert not lib.argmax(WEIGHTS[:1], nothing).any()


def test_permute_permutes_the_real_entries_of_each_row_and_head():
    draws = jax.vmap(lambda key: lib.permute(WEIGHTS, MASK, key))(
        jax.random.split(jax.random.key(0), 200))  # [200, B, H, S]
    draws = np.asarray(draws)
    mask = np.broadcast_to(MASK, WEIGHTS.shape)
    assert not draws[:, ~mask].any()  # Padding stays exactly 0.
    for b, h in np.ndindex(2, 2):
        real = WEIGHTS[b, h][mask[b, h]]
        for draw in draws[:, b, h]:
            np.testing.assert_array_equal(np.sort(draw[mask[b, h]]), np.sort(real))
    # Every permutation of row 0 head 0's three distinct weights is drawn.
    assert len({tuple(d[:3]) for d in draws[:, 0, 0]}) == 6
    # Row 1's weight 0.2 lands on each of its real positions (0, 2, 3), never on padding.
    assert {int(np.flatnonzero(d == np.float32(0.2))[0]) for d in draws[:, 1, 0]} == {0, 2, 3}
    np.testing.assert_allclose(draws[:, :, 0].sum(-1), 1.0, rtol=1e-6)


# ------------------------------------------------------------------------------- metrics


def test_total_variation_and_js_divergence_against_numpy():
    p = np.array([[0.5, 0.5, 0.0, 0.0], [0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
    q = np.array([[0.0, 0.0, 0.5, 0.5], [0.1, 0.1, 0.1, 0.7], [0.25, 0.25, 0.25, 0.25]])
    with np.errstate(divide="ignore"):
        logp, logq = np.log(p), np.log(q)

    def kl(a, m):
        return np.array([sum(x * np.log(x / y) for x, y in zip(ra, rm) if x > 0)
                         for ra, rm in zip(a, m)])

    m = (p + q) / 2
    tv = lib.total_variation(jnp.asarray(logp), jnp.asarray(logq))
    js = lib.js_divergence(jnp.asarray(logp), jnp.asarray(logq))
    np.testing.assert_allclose(tv, 0.5 * np.abs(p - q).sum(-1), atol=1e-6)
    np.testing.assert_allclose(js, 0.5 * kl(p, m) + 0.5 * kl(q, m), atol=1e-6)
    np.testing.assert_allclose([tv[0], js[0], tv[2], js[2]], [1.0, np.log(2), 0.0, 0.0], atol=1e-6)


# ----------------------------------------------------------------- the hook in the models


def _rnn(scorer="additive", flow="bahdanau", **kw):
    return rnn.Seq2Seq(rnn.ModelConfig(
        src_vocab_size=23, tgt_vocab_size=19, scorer=scorer, flow=flow, embed_size=8,
        encoder_hidden=6, decoder_hidden=12, attention_size=8, output_size=10, num_heads=2,
        bidirectional=True, **kw).validate())


def _transformer():
    return tf.Transformer(tf.TransformerConfig(src_vocab_size=23, tgt_vocab_size=19, layers=2,
                                               num_heads=2, d_model=16, d_ff=32).validate())


def _params(model, seed=0):
    """Random parameters in init_params' tree (traced, not compiled; LayerNorm scales near 1),
    large enough for peaked attention."""
    init = tf.init_params if isinstance(model, tf.Transformer) else rnn.init_params
    rng = np.random.RandomState(seed)

    def fill(path, leaf):
        x = rng.randn(*leaf.shape).astype(np.float32)
        return jnp.asarray(1.0 + 0.1 * x if path[-1].key == "scale" else 0.5 * x)

    shapes = jax.eval_shape(lambda: init(model, jax.random.key(0), 7))
    return jax.tree_util.tree_map_with_path(fill, shapes)


def _batch(seed=0):
    """src [3, 7] (row 1: 4 real tokens, row 2: 1), tgt_in / tgt_out [3, 5] (row 0: 3 tokens):
    the Transformer tests' batch (its token ids fit every model here)."""
    return _tf_batch(seed, t=5)


@pytest.mark.parametrize("family", ["bahdanau", "luong", "transformer"])
def test_the_hook_changes_only_alpha(family):
    """With the identity as the transform, the hooked step-by-step run gives the model's own
    reference logits and attention; the hook fires once per map and step (one for the RNN, one
    per layer for the Transformer)."""
    model = _transformer() if family == "transformer" else _rnn(flow=family)
    params = _params(model)
    src, tgt_in, _ = _batch()
    calls = []

    def identity(weights, mask, key):
        calls.append(weights.shape)
        return weights

    logits, attn = jax.jit(lambda p: lib.forced_logits(model, p, src, tgt_in, identity))(params)
    if family == "transformer":
        want, want_attn = jax.jit(lambda p: tf.step_by_step(model, p, src, tgt_in))(params)
        want_attn = want_attn.mean(axis=(2, 3))
    else:
        want, want_attn = jax.jit(lambda p: rnn.step_by_step(model, p, src, tgt_in))(params)
    np.testing.assert_allclose(logits, want, atol=1e-5)
    np.testing.assert_allclose(attn, want_attn, atol=1e-6)
    heads = 2 if family == "transformer" else 1
    assert calls == [(3, heads, 7)] * lib.attention_layout(model)[0]


def test_uniform_perturbation_is_the_uniform_scorer():
    """'uniform' on an additive model's α gives the logits of the uniform-attention model with
    the same parameters (its fused teacher-forced path, no hook); α = 1/n on the real source."""
    model, plain = _rnn("additive"), _rnn("uniform")
    params = _params(model)
    src, tgt_in, _ = _batch()
    logits, attn = jax.jit(lambda p: lib.forced_logits(model, p, src, tgt_in, "uniform"))(params)
    without = {k: v for k, v in params.items() if k != "attention"}
    want, _ = jax.jit(lambda p: plain.apply({"params": p}, src, tgt_in))(without)
    np.testing.assert_allclose(logits, want, atol=1e-5)
    n = np.asarray((src != PAD).sum(-1))
    want_attn = np.asarray(src != PAD)[:, None, :] / n[:, None, None]
    np.testing.assert_allclose(attn, np.broadcast_to(want_attn, attn.shape), atol=1e-7)


def test_perturbed_maps_are_distributions_over_real_positions():
    """(a)-(c) through a multi-head RNN scorer (per head) and a Transformer (per layer and head):
    the mean map of every step sums to 1 over the real source positions and is exactly 0 at
    padding; 'argmax' puts all of a head's mass on one position."""
    src, tgt_in, _ = _batch()
    real = np.asarray(src != PAD)[:, None, :]  # [B, 1, S]
    names = ("permute", "uniform", "argmax")
    for model in (_rnn("multihead", flow="luong"), _transformer()):
        maps = jax.jit(lambda p, m=model: [lib.forced_logits(
            m, p, src, tgt_in, name, key=jax.random.key(1))[1] for name in names])(_params(model))
        for name, attn in zip(names, maps):
            attn = np.asarray(attn)  # [B, T, S]
            assert not attn[np.broadcast_to(~real, attn.shape)].any(), name
            np.testing.assert_allclose(attn.sum(-1), 1.0, rtol=1e-5, err_msg=name)
        # The mean of one-hots: multiples of 1 / (maps x heads).
        count = np.prod(lib.attention_layout(model))
        np.testing.assert_allclose(maps[2] * count, np.round(maps[2] * count), atol=1e-5)


# -------------------------------------------------------------------------------- driver

PAIRS = [("a b c", "x y"), ("b c", "y z x"), ("c a b a", "z"), ("a", "x x y z")]


def test_seed_from_the_model_itself_changes_nothing_and_parameters_stay():
    """perturb_split on K = 2 replicas: 'seed' with the model itself as the other gives exactly
    the original distributions, nll and BLEU, and the original nll per token is the fused
    teacher-forced one; 'uniform' changes the distributions; the parameters are unchanged.
    Without another run 'seed' takes replica (k + 1) % K: a change."""
    src_vocab, tgt_vocab = (WordVocab.build([pair[side] for pair in PAIRS]) for side in (0, 1))
    model = rnn.Seq2Seq(rnn.ModelConfig(src_vocab_size=src_vocab.size,
                                        tgt_vocab_size=tgt_vocab.size, embed_size=8,
                                        encoder_hidden=8, decoder_hidden=8, attention_size=8,
                                        output_size=8).validate())
    params = jax.tree.map(lambda *x: jnp.stack(x), _params(model, 0), _params(model, 1))
    before = jax.tree.map(np.array, params)
    split = functools.partial(lib.perturb_split, model, src_vocab=src_vocab, tgt_vocab=tgt_vocab,
                              pairs=PAIRS, buckets=(8,), extra_len=3)
    report = split(params=params, perturbations=("seed", "uniform"), other=(model, params))
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, params), before)
    assert report["replicas"] == 2 and report["sentences"] == 4 and report["tokens"] == 14
    src = np.zeros((4, 8), np.int32)
    tgt_in, tgt_out = src.copy(), src.copy()
    for r, (s, t) in enumerate(PAIRS):
        s, t = src_vocab.encode(s), tgt_vocab.encode(t)
        src[r, :len(s)], tgt_in[r, :len(t) + 1], tgt_out[r, :len(t) + 1] = s, [BOS, *t], [*t, EOS]
    fused = jax.jit(jax.vmap(lambda p: model.apply({"params": p}, src, tgt_in, tgt_out,
                                                   method="token_nll")[0].sum()))(params) / 14
    for k, seed in enumerate(report["results"]["seed"]["replicas"]):
        assert seed["tv"] == seed["js"] == seed["changed_argmax"] == seed["delta_nll"] == 0.0
        assert seed["bleu_perturbed"] == seed["bleu_original"]
        assert seed["nll_original"] == report["original"]["replicas"][k]["nll"]
        np.testing.assert_allclose(seed["nll_original"], fused[k], rtol=1e-5)
    assert report["results"]["uniform"]["mean"]["tv"] > 1e-3
    assert report["results"]["uniform"]["std"] is not None
    rolled = split(params=params, perturbations=("seed", "uniform"))
    assert rolled["results"]["seed"]["other"] == "replica (k + 1) % K of this run"
    assert min(r["tv"] for r in rolled["results"]["seed"]["replicas"]) > 1e-3
    with pytest.raises(lib.PerturbError, match="distinct names"):
        split(params=params, perturbations=("uniform", "shuffle"))
    with pytest.raises(lib.PerturbError, match="more than the run's largest bucket 4"):
        lib.perturb_split(model, params, src_vocab, tgt_vocab, PAIRS, buckets=(4,))
    with pytest.raises(lib.PerturbError, match="scorer is 'none'"):
        lib.perturb_split(_rnn("none"), params, src_vocab, tgt_vocab, PAIRS, buckets=(8,))


# ------------------------------------------------------------------------------- command


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """configs/default.py:tiny (one seed) with random parameters, checkpointed at step 3."""
    workdir, config, _, _, _ = _random_run(tmp_path_factory, "configs/default.py:tiny")
    return workdir, config


def test_command_reports_json_and_a_table_and_skips_seed_with_one_replica(run, tmp_path):
    """The command on the run's test split: the JSON report (stdout and --out) and the table;
    with one replica and no --other_workdir 'seed' is skipped (n/a) with a note."""
    workdir, _ = run
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "attn_jax.perturb", f"--workdir={workdir}", "--max_sentences=1",
         "--perturbations=uniform,seed", f"--out={out}"],
        cwd=REPO, capture_output=True, timeout=600, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report == json.loads(out.read_text())
    assert {"workdir", "checkpoint", "step", "arch", "scorer", "data", "sentences", "tokens",
            "replicas", "perturbations", "original", "results", "bleu_signature"} <= set(report)
    assert (report["checkpoint"], report["step"], report["data"]) == ("newest", 3, "test")
    assert report["sentences"] == 1 and report["replicas"] == 1
    assert report["perturbations"] == ["uniform", "seed"]
    assert "one replica" in report["results"]["seed"]["skipped"]
    uniform = report["results"]["uniform"]
    assert len(uniform["replicas"]) == 1 and uniform["std"] is None
    assert set(uniform["mean"]) == {
        "tv", "js", "changed_argmax", "nll_original", "nll_perturbed", "delta_nll",
        "bleu_original", "bleu_perturbed", "delta_bleu"}
    assert 0 < uniform["mean"]["tv"] <= 1 and 0 < uniform["mean"]["js"] <= np.log(2)
    assert "| uniform | " in proc.stderr and "| seed | n/a |" in proc.stderr
    assert "note: seed: skipped" in proc.stderr


def test_bad_input_is_refused_in_one_line_before_compiling(run, tmp_path, monkeypatch):
    workdir, config = run
    cases = [({"perturbations": "uniform,shuffle"}, "distinct names from permute,uniform"),
             ({"max_sentences": -1}, "give a count >= 0"),
             ({"src": "a.txt"}, "--src and --tgt go together"),
             ({"split": "train"}, "use one of test, valid")]
    for kwargs, message in cases:
        with pytest.raises(lib.PerturbError, match=message):
            perturb.perturb_workdir(workdir, **kwargs)
    with pytest.raises(lib.PerturbError, match="holds no training run"):
        perturb.perturb_workdir(str(tmp_path))
    for field, value, message in (("scorer", "none", "scorer is 'none'"),
                                  ("encoder", "cnn", "image run")):
        other = tmp_path / field
        shutil.copytree(os.path.join(workdir, "vocab"), other / "vocab")
        saved = json.loads(config.to_json())
        saved["model"][field] = value
        if field == "encoder":  # An image run reads image data.
            saved["data"]["name"] = "scenes"
        (other / "config.json").write_text(json.dumps(saved))
        with pytest.raises(lib.PerturbError, match=message):
            perturb.perturb_workdir(str(other))
        with pytest.raises(lib.PerturbError, match=message):
            perturb.perturb_workdir(workdir, other_workdir=str(other))
    with pytest.raises(lib.PerturbError, match="holds no training run") as error:
        perturb.perturb_workdir(str(tmp_path))
    assert_one_line_error(monkeypatch, perturb, "_perturb_all", error.value)
