"""The memory-lean attention implementations against the plain scorer: values and gradients (1e-5,
f32) on ragged masks, fully padded rows and lengths that are not multiples of the blocks; the
Pallas kernels in interpret mode; compiled memory that does not hold [B, T, S, A]."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn_jax.model import attention, kernels, rnn
from attn_jax.run import config as config_lib
from configs import default

B, T, S, A, D = 3, 7, 11, 8, 6
LENGTHS = np.array([11, 4, 0])  # Full, ragged, fully padded.


def _operands(seed=0):
    rng = np.random.RandomState(seed)
    f = lambda *shape: jnp.asarray(rng.randn(*shape), jnp.float32)  # noqa: E731
    mask = jnp.asarray(np.arange(S)[None, :] < LENGTHS[:, None])
    return f(B, T, A), f(B, S, A), f(A), f(B, S, D), mask, f(B, T, D)


def _np_context(q, k, v, val, mask):
    """NumPy: c_t = Σ_j softmax_j(vᵀ tanh(q_t + k_j)) val_j over real j; 0 for no real j."""
    q, k, v, val, mask = map(np.asarray, (q, k, v, val, mask))
    e = np.tanh(q[:, :, None, :] + k[:, None, :, :]) @ v  # [B, T, S]
    e = np.where(mask[:, None, :], e, -np.inf)
    top = np.max(e, -1, keepdims=True)
    w = np.exp(e - np.where(np.isfinite(top), top, 0.0)) * mask[:, None, :]
    w = w / np.maximum(w.sum(-1, keepdims=True), 1e-30)
    return np.einsum("bts,bsd->btd", w, val)


def _reference(q, k, v, val, mask):
    """The plain jnp formula (what attend_all's 'xla' computes), differentiable."""
    e = jnp.einsum("btsa,a->bts", jnp.tanh(q[:, :, None, :] + k[:, None, :, :]), v)
    return jnp.einsum("bts,bsd->btd", attention.masked_softmax(e, mask[:, None, :]), val)


IMPLS = {
    "chunked": lambda q, k, v, val, m: kernels.additive_context(q, k, v, val, m, 3, 4),
    "pallas": lambda q, k, v, val, m: kernels.pallas_additive_context(q, k, v, val, m, 2, 4,
                                                                      True),
}


@pytest.mark.parametrize("impl", IMPLS)
def test_additive_context_values_and_grads_match_reference(impl):
    """T = 7 and S = 11 are not multiples of the blocks; row 1 is ragged, row 2 has no real key."""
    q, k, v, val, mask, ct = _operands()
    fn = IMPLS[impl]
    out = jax.jit(fn)(q, k, v, val, mask)
    np.testing.assert_allclose(out, _np_context(q, k, v, val, mask), atol=1e-5)
    assert np.all(np.asarray(out[2]) == 0.0)  # Fully padded row: zero context.
    loss = lambda f: lambda *a: jnp.sum(f(*a, mask) * ct)  # noqa: E731
    got = jax.jit(jax.grad(loss(fn), argnums=(0, 1, 2, 3)))(q, k, v, val)
    want = jax.grad(loss(_reference), argnums=(0, 1, 2, 3))(q, k, v, val)
    for name, g, w in zip(("dq", "dk", "dv", "dvalues"), got, want):
        np.testing.assert_allclose(g, w, atol=1e-5, err_msg=name)
        assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(got[0][2], 0.0)  # No gradient reaches a fully padded row.


def test_additive_scores_values_and_grads_match_reference():
    q, k, v, *_ = _operands(1)
    ref = lambda q, k, v: jnp.einsum("btsa,a->bts", jnp.tanh(q[:, :, None] + k[:, None]), v)  # noqa: E731
    np.testing.assert_allclose(kernels.additive_scores(q, k, v, 3, 4), ref(q, k, v), atol=1e-5)
    weights = jnp.asarray(np.random.RandomState(2).randn(B, T, S), jnp.float32)
    loss = lambda f: lambda *a: jnp.sum(jnp.sin(f(*a)) * weights)  # noqa: E731
    got = jax.grad(loss(lambda *a: kernels.additive_scores(*a, 3, 4)), argnums=(0, 1, 2))(q, k, v)
    want = jax.grad(loss(ref), argnums=(0, 1, 2))(q, k, v)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)


def _scorer_config(scorer, impl, query_size=6, key_size=6):
    return attention.AttentionConfig(scorer=scorer, query_size=query_size, key_size=key_size,
                                     attention_size=A, num_heads=2, max_source_len=S, impl=impl)


@pytest.mark.parametrize("scorer,impl,sizes", [
    ("additive", "chunked", (6, 5)), ("additive", "pallas", (6, 5)),
    ("scaled_dot", "chunked", (6, 6)), ("general", "chunked", (6, 10)),
    ("scaled_general", "pallas", (6, 10)), ("multihead", "chunked", (6, 5))])
def test_attend_all_impls_equal_xla(scorer, impl, sizes):
    """Context, weights and every parameter/input gradient equal the plain implementation's."""
    dq, dk = sizes
    rng = np.random.RandomState(3)
    states = jnp.asarray(rng.randn(B, T, dq), jnp.float32)
    annotations = jnp.asarray(rng.randn(B, S, dk), jnp.float32)
    mask = jnp.asarray(np.arange(S)[None, :] < LENGTHS[:, None])
    ct_c = jnp.asarray(rng.randn(B, T, dk), jnp.float32)
    ct_w = jnp.asarray(rng.randn(B, T, S), jnp.float32)

    def run(impl):
        module = attention.make_scorer(_scorer_config(scorer, impl, dq, dk))

        def apply(mdl, s, h):
            return attention.attend_all(mdl, s, mdl.prepare(h, mask))

        params = module.init(jax.random.key(0), states, annotations, method=apply)
        out = jax.jit(lambda p: module.apply(p, states, annotations, method=apply))(params)

        def loss(p, s, h):
            c, w = module.apply(p, s, h, method=apply)
            return jnp.sum(c * ct_c) + jnp.sum(w * ct_w)

        return out, jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(params, states, annotations)

    (c, w), grads = run(impl)
    (c_ref, w_ref), grads_ref = run("xla")
    np.testing.assert_allclose(c, c_ref, atol=1e-5)
    np.testing.assert_allclose(w, w_ref, atol=1e-5)
    np.testing.assert_array_equal(c[2], 0.0)
    for g, g_ref in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref)):
        np.testing.assert_allclose(g, g_ref, atol=1e-5)


def _bytes(compiled):
    mem = compiled.memory_analysis()
    return mem.temp_size_in_bytes


def test_chunked_additive_backward_never_holds_the_full_tanh():
    """Compiled fwd+bwd temp memory: the plain scorer holds [B, T, S, A] (several times); the
    chunked one a few [B, 64, 128, A] blocks, under an eighth of one such tensor."""
    b, t, s, a = 2, 512, 512, 64
    full = b * t * s * a * 4
    args = (jax.ShapeDtypeStruct((b, t, a), jnp.float32), jax.ShapeDtypeStruct((b, s, a), jnp.float32),
            jax.ShapeDtypeStruct((a,), jnp.float32), jax.ShapeDtypeStruct((b, s, 16), jnp.float32),
            jax.ShapeDtypeStruct((b, s), jnp.bool_))

    def grad_of(fn):
        loss = lambda q, k, v, val, m: jnp.sum(fn(q, k, v, val, m))  # noqa: E731
        return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3))).lower(*args).compile()

    assert _bytes(grad_of(_reference)) >= full
    assert _bytes(grad_of(kernels.additive_context)) < full // 8


def _model(flow, impl, input_feeding=True, hidden=32, attention_size=64):
    return rnn.ModelConfig(src_vocab_size=20, tgt_vocab_size=20, scorer="additive", flow=flow,
                              embed_size=8, encoder_hidden=hidden, decoder_hidden=hidden,
                              attention_size=attention_size, output_size=hidden,
                              input_feeding=input_feeding, max_source_len=64,
                              attention_impl=impl).validate()


def _batch(b, s, t, seed=0):
    rng = np.random.RandomState(seed)
    src = rng.randint(4, 20, (b, s)).astype(np.int32)
    src[1, s // 2:] = rnn.PAD
    tgt = rng.randint(4, 20, (b, t + 1)).astype(np.int32)
    tgt[1, t // 3:] = rnn.PAD
    return jnp.asarray(src), jnp.asarray(tgt[:, :-1]), jnp.asarray(tgt[:, 1:])


def test_luong_without_input_feeding_trains_the_same_chunked():
    """model.attention_impl reaches attend_all: loss and gradients equal the 'xla' model's."""
    src, tgt_in, tgt_out = _batch(3, 9, 6)

    def loss_and_grads(impl):
        model = rnn.Seq2Seq(_model("luong", impl, input_feeding=False))
        params = rnn.init_params(model, jax.random.key(0), 9)

        def loss(p):
            return model.apply({"params": p}, src, tgt_in, tgt_out, method=rnn.Seq2Seq.loss)[0]

        return jax.jit(jax.value_and_grad(loss))(params)

    (value, grads), (value_ref, grads_ref) = loss_and_grads("chunked"), loss_and_grads("xla")
    np.testing.assert_allclose(value, value_ref, rtol=1e-5)
    for g, g_ref in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref)):
        np.testing.assert_allclose(g, g_ref, atol=1e-5)


def test_bahdanau_recurrence_backward_keeps_no_per_step_tanh():
    """The decoder recurrence recomputes the additive tanh in its backward: the compiled training
    gradient's temp memory stays below what keeping [B, S, A] for each of the T steps needs."""
    b, s, t, a = 4, 64, 64, 256
    src, tgt_in, tgt_out = _batch(b, s, t)
    model = rnn.Seq2Seq(_model("bahdanau", "xla", hidden=16, attention_size=a))
    params = jax.eval_shape(lambda: rnn.init_params(model, jax.random.key(0), s))

    def loss(p):
        return model.apply({"params": p}, src, tgt_in, tgt_out, method=rnn.Seq2Seq.loss)[0]

    compiled = jax.jit(jax.grad(loss)).lower(params).compile()
    assert _bytes(compiled) < b * s * t * a * 4 // 4


def test_config_checks_attention_impl():
    config = default.get_config("tiny")
    config.model.attention_impl = "flash"
    with pytest.raises(ValueError, match="implementation 'flash'; valid: xla, chunked, pallas"):
        config_lib.validate(config)
    config.model.attention_impl = "pallas"
    if jax.default_backend() not in ("gpu", "tpu"):
        with pytest.raises(ValueError, match="needs a GPU or TPU.*chunked"):
            config_lib.validate(config)
    config.model.attention_impl = "chunked"
    config_lib.validate(config)
    with pytest.raises(ValueError, match="Unknown attention implementation"):
        dataclasses.replace(_model("luong", "xla"), attention_impl="cuda").validate()


def test_long_documents_fill_the_length_and_follow_token_conventions():
    """The long-input smoke check's batch: concatenated grammar sentences, src = words + EOS,
    tgt_in = BOS + words, tgt_out = words + EOS, PAD after."""
    from attn_jax import benchmark
    docs = benchmark.long_documents(3, 120, seed=1)
    batch, src_vocab, tgt_vocab = benchmark.document_batch(docs, 120)
    for r, (src, tgt) in enumerate(docs):
        n, m = len(src), len(tgt)
        assert n <= 119 and m <= 119 and max(n, m) >= 50  # Full up to about one sentence.
        assert batch["src"][0, r, n] == rnn.EOS and np.all(batch["src"][0, r, n + 1:] == 0)
        assert batch["tgt_in"][0, r, 0] == rnn.BOS
        np.testing.assert_array_equal(batch["tgt_in"][0, r, 1:m + 1], batch["tgt_out"][0, r, :m])
        assert batch["tgt_out"][0, r, m] == rnn.EOS
        assert np.all(batch["src"][0, r, :n] >= 4) and batch["src"].max() < src_vocab
    assert batch["tgt_out"].max() < tgt_vocab
