"""The Transformer (attn_jax.model.transformer): attention against NumPy references (padding and
causal masks), teacher forcing equal to cached step-by-step decoding for every cross-attention
scorer, pre-LN vs post-LN, tied embeddings, the loss against full logits, a copy task learned,
greedy and beam search through `eval.decode` with the cache, configuration errors."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from attn_jax.data.tokens import BOS, EOS, PAD
from attn_jax.eval import decode
from attn_jax.model import loss as loss_lib
from attn_jax.model import transformer as tf

SRC_V, TGT_V = 13, 11
jit = jax.jit


def _config(**kw):
    fields = dict(src_vocab_size=SRC_V, tgt_vocab_size=TGT_V, layers=2, num_heads=2, d_model=16,
                  d_ff=32)
    fields.update(kw)
    return tf.TransformerConfig(**fields).validate()


def _shapes(model, src_len=7):
    """init_params' tree of shapes (traced, not compiled)."""
    return jax.eval_shape(lambda: tf.init_params(model, jax.random.key(0), src_len))


def _params(model, seed=0, src_len=7):
    """Random parameters in init_params' tree (LayerNorm scales near 1): cheaper than compiling
    the initialisers, and further from symmetric than a fresh init."""
    rng = np.random.RandomState(seed)

    def fill(path, leaf):
        x = rng.randn(*leaf.shape).astype(np.float32)
        return jnp.asarray(1.0 + 0.1 * x if path[-1].key == "scale" else 0.3 * x)

    return jax.tree_util.tree_map_with_path(fill, _shapes(model, src_len))


def _batch(seed=0, b=3, s=7, t=6):
    """src with padding (row 2 has one real token), tgt_in / tgt_out with row 0 shorter."""
    rng = np.random.RandomState(seed)
    src = rng.randint(4, SRC_V, (b, s))
    src[1, 4:] = PAD
    src[2, 1:] = PAD
    tgt_out = rng.randint(4, TGT_V, (b, t))
    tgt_out[:, -1] = EOS
    tgt_out[0, 2], tgt_out[0, 3:] = EOS, PAD
    tgt_in = np.roll(tgt_out, 1, 1)
    tgt_in[:, 0] = BOS
    tgt_in[0, 3:] = PAD
    return jnp.asarray(src), jnp.asarray(tgt_in), jnp.asarray(tgt_out)


def _np_attention(q, k, v, mask, scale):
    """NumPy reference: q [B, T, H, d], k, v [B, S, H, d], mask [B, T, S] -> (out, weights
    [B, H, T, S]); fully masked rows give zeros."""
    scores = np.einsum("bthd,bshd->bhts", q, k) * scale
    m = np.broadcast_to(mask[:, None], scores.shape)
    scores = np.where(m, scores, -np.inf)
    top = np.max(np.where(m, scores, -1e30), -1, keepdims=True)
    e = np.where(m, np.exp(scores - top), 0.0)
    w = e / np.maximum(e.sum(-1, keepdims=True), 1e-30)
    return np.einsum("bhts,bshd->bthd", w, v), w


def test_attention_matches_numpy_with_padding_and_causal_masks():
    rng = np.random.RandomState(1)
    b, t, h, d = 3, 5, 2, 4
    q, k, v = (rng.randn(b, t, h, d).astype(np.float32) for _ in range(3))
    real = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], bool)  # row 2: none
    causal = np.tril(np.ones((t, t), bool))
    attend = jit(functools.partial(tf.dot_attention, scale=0.5))
    weigh = jit(functools.partial(tf.dot_weights, scale=0.5))
    for mask in (np.broadcast_to(real[:, None, :], (b, t, t)), causal[None] & real[:, None, :]):
        out = np.asarray(attend(q, k, v, jnp.asarray(mask)))
        w = np.asarray(weigh(q, k, jnp.asarray(mask)))
        ref_out, ref_w = _np_attention(q, k, v, mask, 0.5)
        np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-7)
        full = np.broadcast_to(mask[:, None], w.shape)
        assert np.all(w[~full] == 0.0)  # Exactly zero where masked (padding, the future).
        rows = full.any(-1)
        np.testing.assert_allclose(w.sum(-1)[rows], 1.0, rtol=1e-6)
        assert np.all(w.sum(-1)[~rows] == 0.0) and np.all(out[2] == 0.0)  # No NaN, no mean.
    # [B, 1, S] masks broadcast over the queries (the encoder's and cross-attention's case).
    out = attend(q, k, v, jnp.asarray(real[:, None, :]))
    np.testing.assert_allclose(out, _np_attention(q, k, v, real[:, None, :], 0.5)[0],
                               rtol=1e-5, atol=1e-6)


def test_sinusoid_positions():
    pe = np.asarray(tf.sinusoid(jnp.arange(5), 6))
    pos, i = np.arange(5)[:, None], np.arange(3)[None, :]
    angle = pos / 10000 ** (2 * i / 6)
    np.testing.assert_allclose(pe[:, 0::2], np.sin(angle), atol=1e-6)
    np.testing.assert_allclose(pe[:, 1::2], np.cos(angle), atol=1e-6)
    assert tf.sinusoid(jnp.arange(3), 5).shape == (3, 5)


@functools.partial(jit, static_argnums=(0, 5))
def _paths(model, params, src, tgt_in, tgt_out, with_loss):
    logits, aux = model.apply({"params": params}, src, tgt_in, all_heads=True)
    step_logits, step_attn = tf.step_by_step(model, params, src, tgt_in)
    if not with_loss:
        return dict(logits=logits, aux=aux, step_logits=step_logits, step_attn=step_attn)
    loss = model.apply({"params": params}, src, tgt_in, tgt_out, smoothing=0.1, method="loss")
    nll, nll_aux = model.apply({"params": params}, src, tgt_in, tgt_out, method="token_nll")
    return dict(logits=logits, aux=aux, step_logits=step_logits, step_attn=step_attn, loss=loss,
                nll=nll, nll_aux=nll_aux)


@pytest.mark.parametrize("scorer", list(tf.CROSS_SCORERS))
def test_teacher_forced_equals_cached_steps(scorer):
    model = tf.Transformer(_config(scorer=scorer))
    src, tgt_in, tgt_out = _batch()
    with_loss = scorer == "scaled_dot"  # The output layer is the same for every scorer.
    out = jax.device_get(_paths(model, _params(model), src, tgt_in, tgt_out, with_loss))
    b, t = tgt_in.shape
    layers, heads, s = 2, 2, src.shape[1]
    # Every position, padding included: both paths mask the same keys.
    np.testing.assert_allclose(out["step_logits"], out["logits"], rtol=1e-5, atol=1e-5)
    heads_map = out["aux"]["heads"]  # [B, L, H, T, S]
    assert heads_map.shape == (b, layers, heads, t, s)
    assert out["step_attn"].shape == (b, t, layers, heads, s)  # decode_step: [B, L, H, S]
    np.testing.assert_allclose(np.moveaxis(out["step_attn"], 1, 3), heads_map, atol=1e-6)
    np.testing.assert_allclose(out["aux"]["attention"], heads_map.mean((1, 2)), atol=1e-7)
    # Exact zeros at source padding; rows sum to one.
    src_pad = np.asarray(src == PAD)[:, None, None, None, :]
    assert np.all(heads_map[np.broadcast_to(src_pad, heads_map.shape)] == 0.0)
    np.testing.assert_allclose(heads_map.sum(-1), 1.0, rtol=1e-5)
    if not with_loss:
        return
    # The loss and token nll equal the cross-entropy of the full logits over real tokens.
    weights = np.asarray(tgt_out != PAD, np.float32)
    ref_loss, ref_nll = loss_lib.cross_entropy(out["logits"], tgt_out, weights, 0.1)
    loss, nll_sum, weight, aux = out["loss"]
    np.testing.assert_allclose(loss, ref_loss.sum(), rtol=1e-5)
    np.testing.assert_allclose(nll_sum, ref_nll.sum(), rtol=1e-5)
    assert weight == weights.sum() and aux["attention"].shape == (b, t, s)
    _, ref_nll0 = loss_lib.cross_entropy(out["logits"], tgt_out, weights, 0.0)
    np.testing.assert_allclose(out["nll"], ref_nll0.sum(1), rtol=1e-5)
    np.testing.assert_allclose(out["nll_aux"]["attention"], out["aux"]["attention"], atol=1e-7)


def test_additive_chunked_equals_xla_values_and_gradients():
    src, tgt_in, _ = _batch(seed=2)
    xla = tf.Transformer(_config(scorer="additive", layers=1))
    chunked = tf.Transformer(_config(scorer="additive", layers=1, attention_impl="chunked"))
    params = _params(xla, seed=3)
    ct = jnp.asarray(np.random.RandomState(0).randn(*tgt_in.shape, TGT_V), jnp.float32)

    @jit
    def run(params):
        def forward(p, m):  # Values (logits, attention) and a gradient through both.
            logits, aux = m.apply({"params": p}, src, tgt_in)
            return jnp.sum(logits * ct), (logits, aux["attention"])
        return [jax.value_and_grad(forward, has_aux=True)(params, m) for m in (xla, chunked)]

    ((_, (lg_x, a_x)), g_x), ((_, (lg_c, a_c)), g_c) = run(params)
    np.testing.assert_allclose(lg_c, lg_x, atol=1e-5)
    np.testing.assert_allclose(a_c, a_x, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g_c, g_x)


def test_pre_and_post_norm_both_run_and_differ():
    src, tgt_in, _ = _batch()
    pre = tf.Transformer(_config(layers=1, norm="pre"))
    post = tf.Transformer(_config(layers=1, norm="post"))
    params = _params(pre)
    assert {"encoder_norm", "decoder_norm"} <= set(params)
    shared = {k: v for k, v in params.items() if k not in ("encoder_norm", "decoder_norm")}
    assert jax.tree.structure(shared) == jax.tree.structure(_shapes(post))

    @jit
    def run(params, shared):
        return (pre.apply({"params": params}, src, tgt_in)[0],
                post.apply({"params": shared}, src, tgt_in)[0])

    a, b = run(params, shared)
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-2


def test_tied_embeddings_share_the_parameter():
    src, tgt_in, tgt_out = _batch()
    model = tf.Transformer(_config(layers=1, tie_embeddings=True))
    params = _params(model)
    assert "output" not in params and params["output_bias"].shape == (TGT_V,)
    untied = _shapes(tf.Transformer(_config(layers=1)))
    assert "output" in untied and "output_bias" not in untied

    @jit
    def run(params):
        logits, _ = model.apply({"params": params}, src, tgt_in)
        x, _ = model.apply({"params": params}, src, tgt_in, method="features")
        grads = jax.grad(lambda p: model.apply({"params": p}, src, tgt_in, tgt_out,
                                               method="loss")[0])(params)
        return logits, x, grads

    logits, x, grads = run(params)
    emb = params["tgt_embed"]["embedding"]
    np.testing.assert_allclose(logits, x @ emb.T + params["output_bias"], rtol=1e-5, atol=1e-5)
    # A word never fed to the decoder still gets a gradient on its embedding row: the output
    # projection is that row.
    unused = sorted(set(range(TGT_V)) - set(np.asarray(tgt_in).ravel().tolist()))
    assert unused and np.abs(grads["tgt_embed"]["embedding"][unused[0]]).sum() > 0


def test_copy_task_loss_falls():
    rng = np.random.RandomState(0)
    b, n = 32, 5
    words = rng.randint(4, TGT_V, (b, n))
    src = np.concatenate([words, np.full((b, 1), EOS)], 1)
    tgt_out = src.copy()
    tgt_in = np.concatenate([np.full((b, 1), BOS), words], 1)
    model = tf.Transformer(_config(layers=1, src_vocab_size=TGT_V, dropout=0.1))
    tx = optax.adam(1e-2)

    @jit
    def train(key):
        params = tf.init_params(model, key, n + 1)  # The real initialisers.
        def step(carry, i):
            p, opt = carry
            def loss_fn(p):
                loss, _, weight, _ = model.apply(
                    {"params": p}, src, tgt_in, tgt_out, smoothing=0.1, deterministic=False,
                    rngs={"dropout": jax.random.fold_in(jax.random.key(1), i)}, method="loss")
                return loss / weight
            loss, g = jax.value_and_grad(loss_fn)(p)
            updates, opt = tx.update(g, opt, p)
            return (optax.apply_updates(p, updates), opt), loss
        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(60))
        nll, _ = model.apply({"params": params}, src, tgt_in, tgt_out, method="token_nll")
        return losses, nll.sum() / (b * (n + 1))

    losses, final_nll = train(jax.random.key(0))
    assert np.all(np.isfinite(losses))
    assert losses[-5:].mean() < 0.5 * losses[:5].mean(), losses
    assert final_nll < 0.5 * np.log(TGT_V)


def test_greedy_and_beam_search_with_the_cache():
    src, _, _ = _batch()
    b = src.shape[0]
    model = tf.Transformer(_config(layers=1, scorer="additive"))
    params = _params(model, seed=4)
    max_len = src.shape[1] + 3

    @jit
    def run(params):
        memory, carry = model.apply({"params": params}, src, method="encode")
        greedy = decode.greedy(tf.step_fn(model, params, memory, mean=True), carry,
                               batch_size=b, max_len=max_len)
        beam_memory, beam_carry = decode.tile_beams((memory, carry), 2)
        beam = decode.beam_search(tf.step_fn(model, params, beam_memory, mean=True), beam_carry,
                                  batch_size=b, beam_size=2, max_len=max_len, alpha=0.0)
        # Teacher forcing on greedy's own output: its argmax must be greedy's tokens.
        tgt_in = jnp.concatenate([jnp.full((b, 1), BOS), greedy["tokens"][:, :-1]], 1)
        logits, _ = model.apply({"params": params}, src, tgt_in)
        return greedy, beam, logits

    greedy, beam, logits = jax.device_get(run(params))
    for r in range(b):
        n = greedy["lengths"][r]
        np.testing.assert_array_equal(np.argmax(logits[r, :n], -1), greedy["tokens"][r, :n])
        np.testing.assert_allclose(greedy["attention"][r, :n].sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.isfinite(beam["scores"][:, 0]))
    real_src = np.asarray(src != PAD)
    for r in range(b):
        n = beam["lengths"][r, 0]
        attn = beam["attention"][r, 0, :n]
        assert np.all(attn[:, ~real_src[r]] == 0.0)
        np.testing.assert_allclose(attn.sum(-1), 1.0, rtol=1e-5)


def test_decoding_past_the_cache_is_nan_not_silent():
    src, tgt_in, _ = _batch()
    model = tf.Transformer(_config(layers=1))
    params = _params(model)
    encode = functools.partial(model.apply, method="encode")
    memory, carry = jit(functools.partial(encode, max_len=2))({"params": params}, src)
    assert carry["layers"][0]["k"].shape == (3, 2, 2, 8)
    step = jit(tf.step_fn(model, params, memory))
    for i in range(3):
        logits, attn, carry = step(tgt_in[:, i], carry)
        assert attn.shape == (3, 1, 2, src.shape[1])
        assert np.all(np.isnan(logits)) == (i == 2)
    _, default = jax.eval_shape(encode, {"params": params}, src)
    assert default["real"].shape == (3, src.shape[1] + 10)  # S + max_decode_extra


def test_from_config():
    model = ml_collections.ConfigDict(dict(
        scorer="additive", hidden_size=32, num_heads=4, dropout=0.1, dtype="float32",
        attention_impl="xla", layers=3, d_model=0, d_ff=0, norm="post", tie_embeddings=True,
        encoder="rnn", image_norm=False, global_pool=0, image_width=0))
    c = tf.TransformerConfig.from_config(model, src_vocab_size=20, tgt_vocab_size=21,
                                         max_source_len=40)
    assert (c.d_model, c.d_ff, c.layers, c.num_heads, c.d_head) == (32, 128, 3, 4, 8)
    assert (c.norm, c.tie_embeddings, c.scorer, c.dropout, c.max_source_len) == (
        "post", True, "additive", 0.1, 40)
    model.d_model, model.d_ff = 24, 50
    c = tf.TransformerConfig.from_config(model, src_vocab_size=20, tgt_vocab_size=21,
                                         max_source_len=40, max_decode_extra=4)
    assert (c.d_model, c.d_ff, c.max_decode_extra) == (24, 50, 4)
    model.encoder, model.image_norm = "cnn", True  # pictures: the source length is the grid's
    c = tf.TransformerConfig.from_config(model, src_vocab_size=1, tgt_vocab_size=21,
                                         max_source_len=40, image_size=32)
    assert (c.encoder, c.image_size, c.image_norm, c.max_source_len) == ("cnn", 32, True, 16)


@pytest.mark.parametrize("fields, words", [
    (dict(num_heads=3), ["num_heads=3", "d_model=16", "--config.model.num_heads"]),
    (dict(layers=0), ["model.layers", "--config.model.layers"]),
    (dict(scorer="location"), ["location", "scaled_dot", "--config.model.scorer"]),
    (dict(scorer="none"), ["none", "--config.model.scorer"]),
    (dict(scorer="multihead"), ["multihead", "num_heads", "--config.model.scorer"]),
    (dict(scorer="bilinear"), ["bilinear", "--config.model.scorer"]),
    (dict(norm="sandwich"), ["sandwich", "pre", "--config.model.norm"]),
    (dict(dtype="float16"), ["float16", "--config.model.dtype"]),
    (dict(attention_impl="cuda"), ["cuda", "--config.model.attention_impl"]),
    (dict(dropout=1.0), ["dropout"]),
    (dict(d_ff=0), ["d_ff"]),
])
def test_bad_configs_raise_one_line_errors(fields, words):
    with pytest.raises(ValueError) as err:
        _config(**fields)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
