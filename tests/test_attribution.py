"""Tests for attn_jax.eval.attribution: per-target gradients of the fused model against plain
autodiff of the step-by-step model and against finite differences, integrated gradients'
completeness, zeros at padding, the Transformer and the no-attention model, argmax word links on
hand-made attribution maps, and refused input."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn_jax.data.tokens import BOS, EOS, PAD
from attn_jax.eval import attribution, metrics
from attn_jax.model import rnn
from attn_jax.model import transformer as tf
from tests.test_evaluate import spm_data  # noqa: F401  (a fixture)
from tests.test_models import _batch, _model, _targets
from tests.test_transformer import _batch as _tf_batch
from tests.test_transformer import _config as _tf_config
from tests.test_transformer import _params as _tf_params


def _rnn_case(scorer="additive", flow="bahdanau"):
    model = _model(scorer, flow)
    src, tgt = _batch()
    tgt_in, tgt_out = _targets(tgt)
    params = rnn.init_params(model, jax.random.key(1), src.shape[1])
    return model, params, src, tgt_in, tgt_out


def _step_by_step_log_probs(model, params, src, tgt_in, tgt_out, e):
    """log p(tgt_out) [B, T] of the plain-autodiff reference model with source embeddings e."""
    with nn.intercept_methods(attribution._with_embeddings(e)):
        logits, _ = rnn.step_by_step(model, params, src, tgt_in)
    logp = jax.nn.log_softmax(logits)
    picked = jnp.take_along_axis(logp, tgt_out[..., None], -1)[..., 0]
    return jnp.where(tgt_out != PAD, picked, 0.0)


def test_gradients_equal_step_by_step_autodiff():
    """The fused recurrences' backward passes, pulled back once per target position, against
    plain autodiff of the step-by-step model (the whole Jacobian: rows of other sentences 0).
    The Luong flow's: by finite differences below."""
    model, params, src, tgt_in, tgt_out = _rnn_case("additive", "bahdanau")
    e = attribution.source_embeddings(params, src)

    @jax.jit
    def both(x):
        fused = lambda y: attribution.log_probs(model, params, src, tgt_in, tgt_out, y)  # noqa: E731
        ref = lambda y: _step_by_step_log_probs(model, params, src, tgt_in, tgt_out, y)  # noqa: E731
        return attribution.per_target_grads(fused, x), fused(None), jax.jacrev(ref)(x)

    (out, grads), plain, want = both(e)
    np.testing.assert_allclose(out, plain, rtol=1e-6)  # The interceptor gives the lookup back.
    want = np.array(want)  # [B, T, B, S, E]
    b = np.arange(src.shape[0])
    np.testing.assert_allclose(grads, want[b, :, b], rtol=2e-4, atol=1e-6)
    want[b, :, b] = 0
    assert np.abs(want).max() == 0  # Sentence b depends on its own source only.
    # Padded source positions get no gradient, padded target rows none at all.
    pad = np.asarray((src == PAD)[:, None, :] | (tgt_out == PAD)[:, :, None])  # [B, T, S]
    assert np.all(np.asarray(grads)[pad] == 0)


def test_grad_x_input_matches_finite_differences():
    model, params, src, tgt_in, tgt_out = _rnn_case("scaled_dot", "luong")
    maps = attribution.attribution_maps(model, params, src, tgt_in, tgt_out, ["grad_x_input"])
    e = np.asarray(attribution.source_embeddings(params, src), np.float64)
    fused = jax.jit(lambda x: attribution.log_probs(model, params, src, tgt_in, tgt_out, x))
    f = lambda x: np.asarray(fused(jnp.asarray(x, jnp.float32)), np.float64)  # noqa: E731
    # d/dh f(e + h e_j) at h = 0 is (∂f/∂e_j) · e_j: scale source token j of row 1 alone.
    b, j, h = 1, 2, 1e-2
    up, down = e.copy(), e.copy()
    up[b, j] *= 1 + h
    down[b, j] *= 1 - h
    numeric = (f(up) - f(down))[b] / (2 * h)  # [T]
    np.testing.assert_allclose(np.asarray(maps["grad_x_input"])[b, :, j], numeric, rtol=2e-2,
                               atol=2e-4)


def test_integrated_gradients_complete():
    """Σ_j IG_tj = f_t(e) − f_t(0) up to the midpoint rule's error, which shrinks with steps."""
    model, params, src, tgt_in, tgt_out = _rnn_case("additive", "bahdanau")
    e = attribution.source_embeddings(params, src)
    real_src = (src != PAD)[..., None]
    f = lambda x: attribution.log_probs(model, params, src, tgt_in, tgt_out, x)  # noqa: E731
    # The baseline zeroes the real positions; padding embeddings do not matter (masked).
    gap = np.asarray(f(e) - f(jnp.where(real_src, 0.0, e)))  # [B, T]

    def error(steps):
        ig = attribution.attribution_maps(model, params, src, tgt_in, tgt_out,
                                          ["integrated_gradients"], ig_steps=steps)
        return np.abs(np.asarray(ig["integrated_gradients"]).sum(-1) - gap).max()

    coarse, fine = error(2), error(16)
    assert fine < 2e-3 * max(1.0, np.abs(gap).max())
    assert fine < coarse


def test_maps_are_zero_at_padding_and_saliency_is_the_gradient_norm():
    """On the no-attention model too: it has no α, yet its outputs depend on every source word."""
    model, params, src, tgt_in, tgt_out = _rnn_case("none", "bahdanau")
    maps = attribution.attribution_maps(model, params, src, tgt_in, tgt_out,
                                        attribution.GRADIENT_METHODS, ig_steps=3)
    pad = np.asarray((src == PAD)[:, None, :] | (tgt_out == PAD)[:, :, None])
    for name, m in maps.items():
        assert m.shape == (*tgt_out.shape, src.shape[1]), name
        assert np.all(np.asarray(m)[pad] == 0), name
    e = attribution.source_embeddings(params, src)
    _, g = attribution.per_target_grads(
        lambda x: attribution.log_probs(model, params, src, tgt_in, tgt_out, x), e)
    np.testing.assert_allclose(maps["saliency"], np.linalg.norm(np.asarray(g), axis=-1)
                               * ~pad, rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(maps["saliency"])[~pad] > 0)


def test_transformer_attributions_equal_autodiff():
    model = tf.Transformer(_tf_config(scorer="additive", layers=1))
    params = _tf_params(model)
    src, tgt_in, tgt_out = _tf_batch()
    e = attribution.source_embeddings(params, src)
    f = lambda x: attribution.log_probs(model, params, src, tgt_in, tgt_out, x)  # noqa: E731
    (_, grads), want = jax.jit(lambda x: (attribution.per_target_grads(f, x), jax.jacrev(f)(x)))(e)
    b = np.arange(src.shape[0])
    np.testing.assert_allclose(grads, np.asarray(want)[b, :, b], rtol=1e-4, atol=1e-6)
    assert np.abs(np.asarray(grads)[np.asarray(src == PAD)[:, None, :]
                                    .repeat(tgt_out.shape[1], 1)]).max() == 0


def test_scorer_over_replicas_and_word_links():
    model, params, src, tgt_in, tgt_out = _rnn_case("dot", "bahdanau")
    stacked = jax.tree.map(lambda x: jnp.stack([x, 2 * x]), params)
    score = attribution.make_scorer(model, ["attention", "saliency"])
    out = score(stacked, {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out})
    assert set(out) == {"saliency"} and out["saliency"].shape == (2, *tgt_out.shape, src.shape[1])
    one = attribution.attribution_maps(model, params, src, tgt_in, tgt_out, ["saliency"])
    np.testing.assert_allclose(out["saliency"][0], one["saliency"], rtol=1e-5, atol=1e-7)
    # Signed maps link each target word to its most positive source word, summed over pieces.
    signed = np.array([[-3.0, 1.0, 0.5, 0.7],  # target word 0 -> source word 2 (0.5 + 0.7)
                       [0.2, -1.0, 0.1, 0.1]])  # target word 1 -> source word 2 (0.2 vs 0.2:
    signed[1, 0] = 0.3                          # made 0.3, so source word 0)
    assert metrics.word_alignment(signed, [0, 1, 2, 2], [0, 1]) == {(2, 0), (0, 1)}


@pytest.mark.parametrize("methods,steps,words", [
    ("saliency,gradient", 4, "Unknown attribution method 'gradient'"),
    ("integrated_gradients", 0, "ig_steps must be >= 1"),
])
def test_bad_methods_raise_one_line_errors(methods, steps, words):
    with pytest.raises(ValueError, match=words):
        attribution.check_methods(methods, steps)


def test_image_models_are_refused():
    config = rnn.ModelConfig(src_vocab_size=1, tgt_vocab_size=9, encoder="cnn", image_size=64)
    with pytest.raises(ValueError, match="image encoder"):
        attribution.check_model(config)


# --------------------------------------------------------- evaluation and `align --method`


def test_evaluation_scores_attribution_links_against_the_gold(spm_data, monkeypatch):  # noqa: F811
    """Stand-in steps (tests/test_evaluate.py): maps that follow the gold word by word (spread
    over a source word's pieces) give AER 0, maps that point at source token 0 do not, and
    attention's AER is unchanged; parts of one row each, filler parts skipped."""
    from attn_jax.eval import evaluate
    from tests.test_evaluate import FakeSteps

    fake = FakeSteps(spm_data)
    parts = []

    def maps(params, part):
        parts.append(part["index"].tolist())
        gold = fake.score(params, part)["forced_attention"]  # [1, R, T, S]
        first = np.zeros_like(gold)
        first[..., 0] = 1.0
        return {"gold": gold, "first": first}

    monkeypatch.setattr(evaluate, "ATTRIBUTION_ROWS", 1)
    kwargs = dict(batch_size=4, num_seeds=1, attends=True)
    plain = evaluate.run_split(spm_data, "test", fake, None, **kwargs).metrics[0]
    row = evaluate.run_split(spm_data, "test", fake, None, attribution=maps, **kwargs).metrics[0]
    assert row["aer_gold"] == 0.0 and row["aer"] == plain["aer"] == 0.0
    assert row["aer_first"] > 0.5
    assert parts == [[0], [1]]  # The two filler rows of the batch of 4 were never scored.


def test_align_with_a_gradient_method_links_the_attribution_argmax():
    """`Aligner.for_model(method=...)`: its links are the word links of the method's maps of the
    same pairs, also for the no-attention model (attention has none to give)."""
    from attn_jax import align
    from tests.test_align import PieceVocab

    vocab = PieceVocab()
    src_lines, tgt_lines = ["ka lala ghar", "xy zw uv"], ["the red house", "uv"]
    model = _model("none", "bahdanau", src_vocab_size=40, tgt_vocab_size=40)
    params = rnn.init_params(model, jax.random.key(3), 8)
    aligner = align.Aligner.for_model(model, jax.tree.map(lambda x: x[None], params), vocab,
                                      vocab, method="grad_x_input")
    links = aligner.align(src_lines, tgt_lines)
    batch = {"src": np.full((2, 8), PAD), "tgt_in": np.full((2, 8), PAD),
             "tgt_out": np.full((2, 8), PAD)}
    words = []
    for n, (s, t) in enumerate(zip(src_lines, tgt_lines)):
        src_ids, src_word = align.encode_words(vocab, s.split(), "src")
        tgt_ids, tgt_word = align.encode_words(vocab, t.split(), "tgt")
        batch["src"][n, :len(src_ids)] = src_ids
        batch["tgt_in"][n, :len(tgt_ids) + 1] = [BOS, *tgt_ids]
        batch["tgt_out"][n, :len(tgt_ids) + 1] = [*tgt_ids, EOS]
        words.append((src_word, tgt_word))
    maps = aligner.score(aligner.params, batch)["forced_attention"][0]  # The same program.
    for n, (src_word, tgt_word) in enumerate(words):
        assert links[n] == metrics.word_alignment(np.asarray(maps[n]), src_word, tgt_word)
    with pytest.raises(align.AlignError, match="scorer is 'none'"):
        align.Aligner.for_model(model, params, vocab, vocab)  # Attention: there is none.


def test_align_refuses_bad_methods_before_loading(tmp_path):
    """One line, exit status 1, before any run is read (the workdir does not exist)."""
    import subprocess
    import sys

    from tests.test_align import REPO
    for flags, words in ((["--method=gradient"], "Unknown attribution method 'gradient'"),
                         (["--method=saliency", "--all_heads"], "drop them")):
        proc = subprocess.run([sys.executable, "-m", "attn_jax.align", "--workdir=nowhere",
                               "--src=a", "--tgt=b", *flags], cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 1 and words in proc.stderr.strip().splitlines()[-1], proc.stderr


@pytest.mark.parametrize("overrides,words", [
    ({"eval.attribution_methods": "saliency,attention"}, "Unknown attribution method 'attention'"),
    ({"eval.attribution_methods": "integrated_gradients", "eval.ig_steps": 0},
     "ig_steps must be >= 1"),
    ({"eval.attribution_methods": "saliency", "data.name": "multi30k"}, "does not have"),
])
def test_evaluation_time_attributions_are_checked_before_compiling(overrides, words):
    from attn_jax.run import config as config_lib

    config = config_lib.load_config_file("configs/default.py:tiny")
    for key, value in overrides.items():
        config_lib.override(config, key, value)
    with pytest.raises(ValueError, match=words):
        config_lib.validate(config)


def test_a_run_scores_attributions_only_when_asked():
    """train's evaluation gets the maps program of eval.attribution_methods, or None (off)."""
    import types

    from attn_jax import train
    from attn_jax.run import config as config_lib

    config = config_lib.load_config_file("configs/default.py:tiny")
    model = _model("dot")
    run = types.SimpleNamespace(config=config, model=model)
    assert train._Run.attribution.func(run) is None
    config_lib.override(config, "eval.attribution_methods", "saliency")
    maps = train._Run.attribution.func(run)
    params = jax.eval_shape(lambda: jax.tree.map(  # Shapes only: traced, nothing compiled.
        lambda x: x[None], rnn.init_params(model, jax.random.key(0), 7)))
    src, tgt = _batch()
    out = jax.eval_shape(maps, params, {"src": src, "tgt_in": tgt, "tgt_out": tgt})
    assert {k: v.shape for k, v in out.items()} == {"saliency": (1, *tgt.shape, src.shape[1])}
