"""The encoder-decoder: the fused teacher-forced path equals step-by-step decoding (values and
gradients) for every scorer, both flows and both cells; gradients reach the attention; the encoder equals
flax's bidirectional RNN; one compile per shape; configuration errors before compiling."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from attn_jax.model import attention, rnn, rows
from attn_jax.run import steps

FLOWS = [("bahdanau", True), ("luong", True), ("luong", False)]


def _model(scorer, flow="bahdanau", input_feeding=True, cell="gru", **kw):
    fields = dict(src_vocab_size=23, tgt_vocab_size=19, scorer=scorer, flow=flow, cell=cell,
                  input_feeding=input_feeding, embed_size=8, encoder_hidden=6, decoder_hidden=12,
                  attention_size=8, output_size=10, num_heads=2, max_source_len=9,
                  bidirectional=True)
    fields.update(kw)
    return rnn.Seq2Seq(rnn.ModelConfig(**fields).validate())


def _batch(seed=0, b=3, s=7, t=5):
    rng = np.random.RandomState(seed)
    src = rng.randint(4, 23, (b, s))
    src[1, 4:] = rnn.PAD
    src[2, 1:] = rnn.PAD
    tgt = rng.randint(4, 19, (b, t))
    tgt[:, 0] = rnn.BOS
    return jnp.asarray(src), jnp.asarray(tgt)


def _targets(tgt_in):
    """tgt_out for tgt_in: shifted left, EOS at the end; row 0 shortened to 3 real tokens (its
    tgt_in padded to match)."""
    out = np.roll(np.asarray(tgt_in), -1, 1)
    out[:, -1] = rnn.EOS
    out[0, 2] = rnn.EOS
    out[0, 3:] = rnn.PAD
    tgt_in = np.asarray(tgt_in).copy()
    tgt_in[0, 3:] = rnn.PAD
    return jnp.asarray(tgt_in), jnp.asarray(out)


# Every scorer in one flow (alternating), the no-attention, position-based and multi-head ones in
# both, and the other flow/feeding/cell combinations: the model's wiring around the loops. The
# loops themselves, for both flows and cells, are checked directly in tests/test_recurrence.py.
FUSED = [(s, ("bahdanau", "luong")[i % 2], True, "gru") for i, s in enumerate(attention.SCORER_NAMES)]
FUSED += [(s, ("luong", "bahdanau")[attention.SCORER_NAMES.index(s) % 2], True, "gru")
          for s in ("none", "location", "multihead")]
FUSED += [("additive", "luong", False, "gru"), ("multihead", "luong", False, "lstm"),
          ("additive", "bahdanau", True, "lstm"), ("dot", "luong", True, "lstm")]


@pytest.mark.parametrize("scorer, flow, feed, cell", FUSED)
def test_fused_loss_and_gradients_equal_step_by_step_autodiff(scorer, flow, feed, cell,
                                                              monkeypatch):
    monkeypatch.setattr(rows, "CHUNK", 4)  # several chunks in every row loop
    model = _model(scorer, flow, feed, cell)
    src, tgt = _batch(1)
    tgt_in, tgt_out = _targets(tgt)
    params = rnn.init_params(model, jax.random.key(0), 7)

    def fused(p, extent=None):
        loss, _, weight, _ = model.apply({"params": p}, src, tgt_in, tgt_out, smoothing=0.1,
                                         extent=extent, method="loss")
        return loss

    want, g_want = jax.jit(jax.value_and_grad(
        lambda p: rnn.step_by_step_loss(model, p, src, tgt_in, tgt_out, smoothing=0.1)))(params)
    batch = {"src": src[None], "tgt_in": tgt_in[None], "tgt_out": tgt_out[None]}

    @jax.jit
    def both(p):  # Without and with the loop bounds of a training step, in one compile.
        return [jax.value_and_grad(fused)(p, extent) for extent in (None, steps.extent(batch))]

    for got, g_got in both(params):
        np.testing.assert_allclose(got, want, rtol=1e-5)
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_got),
                                jax.tree.leaves(g_want)):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6,
                                       err_msg=jax.tree_util.keystr(path))


def test_encoder_equals_flax_bidirectional_rnn_at_real_positions():
    cfg = rnn.ModelConfig(src_vocab_size=9, tgt_vocab_size=9, embed_size=5, encoder_hidden=4,
                             bidirectional=True, encoder_layers=2, decoder_hidden=8)
    x = np.random.RandomState(0).randn(3, 6, 5).astype(np.float32)
    mask = np.arange(6)[None, :] < np.array([6, 2, 4])[:, None]
    enc = rnn.Encoder(cfg)
    params = enc.init(jax.random.key(0), x, mask)["params"]
    got, final = enc.apply({"params": params}, x, mask)

    def flax_encoder(x):
        lengths = mask.sum(-1)
        finals = []
        for layer in range(2):
            mapped = {}
            for d in ("fwd", "bwd"):
                p = params[f"{d}_{layer}"]
                w_i, w_h = np.split(p["w_i"], 3, -1), np.split(p["w_h"], 3, -1)
                b_i = np.split(p["b_i"], 3)
                mapped[d] = {"cell": {
                    **{f"i{g}": {"kernel": w_i[k], "bias": b_i[k]} for k, g in enumerate("rzn")},
                    **{f"h{g}": {"kernel": w_h[k]} for k, g in enumerate("rz")},
                    "hn": {"kernel": w_h[2], "bias": p["b_hn"]}}}
            birnn = nn.Bidirectional(nn.RNN(nn.GRUCell(4), return_carry=True),
                                     nn.RNN(nn.GRUCell(4), return_carry=True), return_carry=True)
            (cf, cb), x = birnn.apply({"params": {"forward_rnn": mapped["fwd"],
                                                  "backward_rnn": mapped["bwd"]}},
                                      x, seq_lengths=lengths)
            finals = [cf, cb]
        return x, jnp.concatenate(finals, -1)

    want, want_final = flax_encoder(x)
    np.testing.assert_allclose(np.where(mask[..., None], got, 0),
                               np.where(mask[..., None], want, 0), atol=1e-5)
    np.testing.assert_allclose(final, want_final, atol=1e-5)


def test_bfloat16_matmuls_give_nearly_the_same_loss():
    src, tgt = _batch(2)
    tgt_in, tgt_out = _targets(tgt)
    losses = {}
    for dtype in ("float32", "bfloat16"):
        model = _model("additive", dtype=dtype)
        params = rnn.init_params(rnn.Seq2Seq(model.config.__class__(
            **{**model.config.__dict__, "dtype": "float32"})), jax.random.key(0), 7)
        losses[dtype] = model.apply({"params": params}, src, tgt_in, tgt_out, method="loss")[0]
        assert jax.tree.leaves(params)[0].dtype == jnp.float32
    np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=2e-2)
    assert losses["bfloat16"] != losses["float32"]


# Every scorer in both flows; Luong without input feeding (its parallel path) and LSTM for some.
CASES = [(s, f, True, "gru") for s in attention.SCORER_NAMES for f in ("bahdanau", "luong")]
CASES += [(s, "luong", False, "gru") for s in ("none", "additive", "location", "multihead")]
CASES += [("additive", "bahdanau", True, "lstm"), ("general", "luong", False, "lstm")]


@pytest.mark.parametrize("scorer, flow, feed, cell", CASES)
def test_teacher_forcing_equals_step_by_step_and_gradients_reach_attention(scorer, flow, feed, cell):
    model = _model(scorer, flow, feed, cell)
    src, tgt = _batch()
    params = rnn.init_params(model, jax.random.key(0), 7)

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

    # Gradients reach every attention parameter (dot, scaled_dot and uniform have none).
    if scorer in ("none", "dot", "scaled_dot", "uniform"):
        assert "attention" not in grads
    else:
        for path, g in jax.tree_util.tree_leaves_with_path(grads["attention"]):
            assert float(jnp.abs(g).max()) > 0, f"zero gradient at {jax.tree_util.keystr(path)}"


def test_padding_does_not_change_the_result():
    """A sentence padded to a longer bucket gets the same logits and attention."""
    model = _model("additive")
    src, tgt = _batch()
    params = rnn.init_params(model, jax.random.key(0), 7)
    logits, aux = model.apply({"params": params}, src, tgt)
    longer = jnp.pad(src, ((0, 0), (0, 5)))
    logits2, aux2 = model.apply({"params": params}, longer, tgt)
    np.testing.assert_allclose(logits2, logits, atol=1e-5)
    np.testing.assert_allclose(aux2["attention"][..., :7], aux["attention"], atol=1e-6)


def test_dropout_is_active_in_training_and_off_in_eval():
    model = _model("additive", dropout=0.5)
    src, tgt = _batch()
    params = rnn.init_params(model, jax.random.key(0), 7)
    train = lambda k: model.apply({"params": params}, src, tgt, deterministic=False,  # noqa: E731
                                  rngs={"dropout": k})[0]
    assert not np.allclose(train(jax.random.key(1)), train(jax.random.key(2)))
    np.testing.assert_allclose(model.apply({"params": params}, src, tgt)[0],
                               model.apply({"params": params}, src, tgt)[0])


def test_teacher_forced_step_compiles_once_per_shape():
    model = _model("general")
    params = rnn.init_params(model, jax.random.key(0), 7)
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
        cfg = rnn.ModelConfig.from_config(
            _model_config_dict(hidden_size=64, bidirectional=bidirectional), src_vocab_size=10,
            tgt_vocab_size=11, max_source_len=16)
        assert (cfg.decoder_hidden, cfg.annotation_size, cfg.output_size) == (64, 64, 64)
        assert cfg.encoder_hidden == encoder_hidden
        assert cfg.attention_size == 32 and cfg.embed_size == 32
    cfg = rnn.ModelConfig.from_config(_model_config_dict(hidden_size=64, decoder_hidden=80),
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
        rnn.ModelConfig.from_config(_model_config_dict(**overrides), src_vocab_size=10,
                                       tgt_vocab_size=11, max_source_len=16)


def test_model_config_is_frozen_and_typed():
    cfg = rnn.ModelConfig(src_vocab_size=5, tgt_vocab_size=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.scorer = "dot"
    assert isinstance(_model_config_dict(), ml_collections.ConfigDict)
