"""The encoder-decoder: teacher forcing equals step-by-step decoding for every scorer and flow,
gradients reach the attention, one compile per shape, configuration errors before compiling."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from attn_jax import attention, models

FLOWS = [("bahdanau", True), ("luong", True), ("luong", False)]


def _model(scorer, flow="bahdanau", input_feeding=True, cell="gru", **kw):
    fields = dict(src_vocab_size=23, tgt_vocab_size=19, scorer=scorer, flow=flow, cell=cell,
                  input_feeding=input_feeding, embed_size=8, encoder_hidden=6, decoder_hidden=12,
                  attention_size=8, output_size=10, num_heads=2, max_source_len=9)
    fields.update(kw)
    return models.Seq2Seq(models.ModelConfig(**fields).validate())


def _batch(seed=0, b=3, s=7, t=5):
    rng = np.random.RandomState(seed)
    src = rng.randint(4, 23, (b, s))
    src[1, 4:] = models.PAD
    src[2, 1:] = models.PAD
    tgt = rng.randint(4, 19, (b, t))
    tgt[:, 0] = models.BOS
    return jnp.asarray(src), jnp.asarray(tgt)


# Every scorer in both flows; Luong without input feeding (its parallel path) and LSTM for some.
CASES = [(s, f, True, "gru") for s in attention.SCORER_NAMES for f in ("bahdanau", "luong")]
CASES += [(s, "luong", False, "gru") for s in ("none", "additive", "location", "multihead")]
CASES += [("additive", "bahdanau", True, "lstm"), ("general", "luong", False, "lstm")]


@pytest.mark.parametrize("scorer, flow, feed, cell", CASES)
def test_teacher_forcing_equals_step_by_step_and_gradients_reach_attention(scorer, flow, feed, cell):
    model = _model(scorer, flow, feed, cell)
    src, tgt = _batch()
    params = models.init_params(model, jax.random.key(0), 7, 5)

    def loss(p):
        logits, aux = model.apply({"params": p}, src, tgt)
        return jnp.mean(jax.nn.log_softmax(logits)[..., 5]), (logits, aux)

    (_, (logits, aux)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    assert logits.shape == (3, 5, 19) and aux["attention"].shape == (3, 5, 7)

    # The same cell, one decode_step at a time (eager), fed the same tokens.
    memory, carry = model.apply({"params": params}, src, method="encode")
    step_logits, step_attn = [], []
    for t in range(tgt.shape[1]):
        carry, lg, w = model.apply({"params": params}, carry, tgt[:, t], memory,
                                   method="decode_step")
        step_logits.append(lg)
        step_attn.append(w)
    np.testing.assert_allclose(jnp.stack(step_logits, 1), logits, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(jnp.stack(step_attn, 1), aux["attention"], atol=1e-5)
    weights = np.asarray(aux["attention"])
    assert (weights[1, :, 4:] == 0).all() and (weights[2, :, 1:] == 0).all()
    if scorer != "none":
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)

    # Gradients reach every attention parameter (dot and scaled_dot have none).
    if scorer in ("none", "dot", "scaled_dot"):
        assert "attention" not in grads
    else:
        for path, g in jax.tree_util.tree_leaves_with_path(grads["attention"]):
            assert float(jnp.abs(g).max()) > 0, f"zero gradient at {jax.tree_util.keystr(path)}"


def test_padding_does_not_change_the_result():
    """A sentence padded to a longer bucket gets the same logits and attention."""
    model = _model("additive")
    src, tgt = _batch()
    params = models.init_params(model, jax.random.key(0), 7, 5)
    logits, aux = model.apply({"params": params}, src, tgt)
    longer = jnp.pad(src, ((0, 0), (0, 5)))
    logits2, aux2 = model.apply({"params": params}, longer, tgt)
    np.testing.assert_allclose(logits2, logits, atol=1e-5)
    np.testing.assert_allclose(aux2["attention"][..., :7], aux["attention"], atol=1e-6)


def test_dropout_is_active_in_training_and_off_in_eval():
    model = _model("additive", dropout=0.5)
    src, tgt = _batch()
    params = models.init_params(model, jax.random.key(0), 7, 5)
    train = lambda k: model.apply({"params": params}, src, tgt, deterministic=False,  # noqa: E731
                                  rngs={"dropout": k})[0]
    assert not np.allclose(train(jax.random.key(1)), train(jax.random.key(2)))
    np.testing.assert_allclose(model.apply({"params": params}, src, tgt)[0],
                               model.apply({"params": params}, src, tgt)[0])


def test_teacher_forced_step_compiles_once_per_shape():
    model = _model("general")
    params = models.init_params(model, jax.random.key(0), 7, 5)
    traces = []

    @jax.jit
    def forward(p, src, tgt):
        traces.append(1)
        return model.apply({"params": p}, src, tgt)[0].sum()

    forward(params, *_batch(0))
    forward(params, *_batch(1))  # Same shapes, new values: no retrace.
    assert len(traces) == 1
    forward(params, *_batch(0, s=9))  # A new bucket: one more.
    assert len(traces) == 2


def _model_config_dict(**overrides):
    from configs import default
    cfg = default.get_config().model
    cfg.update(overrides)
    return cfg


def test_hidden_size_scales_the_whole_model():
    for bidirectional, encoder_hidden in ((True, 32), (False, 64)):
        cfg = models.ModelConfig.from_config(
            _model_config_dict(hidden_size=64, bidirectional=bidirectional), src_vocab_size=10,
            tgt_vocab_size=11, max_source_len=16)
        assert (cfg.decoder_hidden, cfg.annotation_size, cfg.output_size) == (64, 64, 64)
        assert cfg.encoder_hidden == encoder_hidden
        assert cfg.attention_size == 32 and cfg.embed_size == 32
    cfg = models.ModelConfig.from_config(_model_config_dict(hidden_size=64, decoder_hidden=80),
                                         src_vocab_size=10, tgt_vocab_size=11, max_source_len=16)
    assert cfg.decoder_hidden == 80 and cfg.attention_size == 32


@pytest.mark.parametrize("overrides, match", [
    (dict(scorer="bilinear"), "valid scorers: none, additive, dot"),
    (dict(cell="rnn"), "valid cells: gru, lstm"),
    (dict(flow="vaswani"), "valid flows: bahdanau, luong"),
    (dict(hidden_size=0), "hidden_size must be > 0"),
    (dict(encoder_layers=0), "encoder_layers must be > 0"),
    (dict(scorer="dot", encoder_hidden=48), "decoder size .* annotation size"),
    (dict(bidirectional=True, hidden_size=33), "must be even"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_model_config_raises_before_compiling(overrides, match, monkeypatch):
    def no_compile(*a, **k):
        raise AssertionError("compiled before validating")

    monkeypatch.setattr(jax, "jit", no_compile)
    with pytest.raises(ValueError, match=match):
        models.ModelConfig.from_config(_model_config_dict(**overrides), src_vocab_size=10,
                                       tgt_vocab_size=11, max_source_len=16)


def test_model_config_is_frozen_and_typed():
    cfg = models.ModelConfig(src_vocab_size=5, tgt_vocab_size=5)
    with pytest.raises(Exception):
        cfg.scorer = "dot"
    assert isinstance(_model_config_dict(), ml_collections.ConfigDict)
