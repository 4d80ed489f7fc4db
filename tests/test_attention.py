"""Every scorer against an independent NumPy implementation of its formula, plus masking,
jit/vmap invariance and configuration errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn_jax.model import attention

B, S, DQ, DK, A, H = 4, 7, 6, 6, 8, 2
LENGTHS = np.array([7, 3, 1, 5])


def _config(scorer, **kw):
    return attention.AttentionConfig(scorer=scorer, query_size=DQ, key_size=DK, attention_size=A,
                                     num_heads=H, max_source_len=9, **kw)


def _inputs(seed=0):
    rng = np.random.RandomState(seed)
    query = rng.randn(B, DQ).astype(np.float32)
    keys = rng.randn(B, S, DK).astype(np.float32)
    mask = np.arange(S)[None, :] < LENGTHS[:, None]
    return query, keys, mask


def _run(scorer, query, keys, mask):
    """((context, weights), params)."""
    (context, weights, _), params = _run_with_scores(scorer, query, keys, mask)
    return (context, weights), params


def _run_with_scores(scorer, query, keys, mask):
    module = attention.make_scorer(_config(scorer))

    def fn(mdl, q, k, m):
        memory = mdl.prepare(k, m)
        scores = mdl.scores(q, memory)  # [B, heads, S]
        return (*mdl(q, memory), scores if scorer == "multihead" else scores[:, 0])

    variables = module.init(jax.random.key(1), query, keys, mask, method=fn)
    return module.apply(variables, query, keys, mask, method=fn), variables.get("params", {})


def _np_softmax(e, mask):
    e = np.where(mask, e, -np.inf)
    e = e - e.max(-1, keepdims=True)
    w = np.exp(e) * mask
    return w / w.sum(-1, keepdims=True)


def _np_reference(scorer, p, q, k, mask):
    """(scores, weights, context) computed directly from the papers' formulas, in NumPy."""
    p = jax.tree.map(np.asarray, p)
    if scorer == "additive":  # v^T tanh(W q + U h)
        w_q = q @ p["w_query"]["kernel"] + p["w_query"]["bias"]
        e = np.stack([[p["v"][:, 0] @ np.tanh(w_q[b] + p["u_key"]["kernel"].T @ k[b, j])
                       for j in range(S)] for b in range(B)])
    elif scorer == "dot":
        e = np.einsum("bd,bsd->bs", q, k)
    elif scorer == "scaled_dot":
        e = np.einsum("bd,bsd->bs", q, k) / np.sqrt(DK)
    elif scorer in ("general", "scaled_general"):  # q^T W h (/ sqrt(d))
        e = np.stack([[q[b] @ p["w"]["kernel"].T @ k[b, j] for j in range(S)] for b in range(B)])
        e = e / np.sqrt(DQ) if scorer == "scaled_general" else e
    elif scorer == "location":  # softmax(W q) over positions
        e = (q @ p["w"]["kernel"] + p["w"]["bias"])[:, :S]
    elif scorer == "uniform":  # equal weights over the real positions: c = the mean annotation
        e = np.zeros((B, S))
    elif scorer == "multihead":
        dh = A // H
        qh = (q @ p["query"]["kernel"]).reshape(B, H, dh)
        kh = (k @ p["key"]["kernel"]).reshape(B, S, H, dh)
        vh = (k @ p["value"]["kernel"]).reshape(B, S, H, dh)
        e = np.einsum("bhd,bshd->bhs", qh, kh) / np.sqrt(dh)
        w = _np_softmax(e, mask[:, None, :])
        heads = np.einsum("bhs,bshd->bhd", w, vh).reshape(B, A)
        return e, w.mean(1), heads @ p["out"]["kernel"]
    else:
        raise AssertionError(scorer)
    w = _np_softmax(e, mask)
    return e, w, np.einsum("bs,bsd->bd", w, k)


PARAMETRIC = ["additive", "dot", "scaled_dot", "general", "scaled_general", "location", "multihead",
              "uniform"]


@pytest.mark.parametrize("scorer", PARAMETRIC)
def test_scores_weights_context_match_numpy(scorer):
    q, k, mask = _inputs()
    (context, weights, scores), params = _run_with_scores(scorer, q, k, mask)
    ref_e, ref_w, ref_c = _np_reference(scorer, params, q, k, mask)
    m = mask[:, None, :] if scorer == "multihead" else mask
    np.testing.assert_allclose(np.where(m, scores, 0), np.where(m, ref_e, 0), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(weights, ref_w, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(context, ref_c, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scorer", PARAMETRIC)
def test_masking_exact_zero_and_rows_sum_to_one(scorer):
    q, k, mask = _inputs(1)
    k_garbage = np.where(mask[..., None], k, 1e3)  # Padding content must not matter.
    (context, weights), _ = _run(scorer, q, k, mask)
    (context2, weights2), _ = _run(scorer, q, k_garbage, mask)
    weights = np.asarray(weights)
    assert (weights[~mask] == 0.0).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(weights2, weights, atol=1e-6)
    if scorer != "location":  # Location never looks at keys; others must ignore padded ones.
        np.testing.assert_allclose(context2, context, atol=1e-5)


@pytest.mark.parametrize("scorer", attention.SCORER_NAMES)
def test_fully_padded_row_is_finite_zero(scorer):
    q, k, mask = _inputs(2)
    mask[0] = False
    (context, weights), _ = _run(scorer, q, k, mask)
    assert np.isfinite(np.asarray(context)).all() and np.isfinite(np.asarray(weights)).all()
    assert (np.asarray(weights[0]) == 0).all()
    if scorer != "multihead":  # Multihead's output projection of a zero context is zero too.
        assert (np.asarray(context[0]) == 0).all()


def test_none_scorer_gives_no_context():
    q, k, mask = _inputs()
    (context, weights), params = _run("none", q, k, mask)
    assert not params
    assert (np.asarray(context) == 0).all() and (np.asarray(weights) == 0).all()


@pytest.mark.parametrize("scorer", PARAMETRIC)
def test_jit_equals_eager_and_vmap_equals_loop(scorer):
    module = attention.make_scorer(_config(scorer))

    def fn(mdl, q, k, m):
        return mdl(q, mdl.prepare(k, m))

    q, k, mask = _inputs(3)
    variables = module.init(jax.random.key(0), q, k, mask, method=fn)
    apply = lambda q, k, m: module.apply(variables, q, k, m, method=fn)  # noqa: E731
    eager = apply(q, k, mask)
    jitted = jax.jit(apply)(q, k, mask)
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # An extra leading axis of 3 independent problems: vmap equals a Python loop.
    qs, ks, masks = zip(*[_inputs(s) for s in range(3)])
    qs, ks, masks = np.stack(qs), np.stack(ks), np.stack(masks)
    batched = jax.vmap(apply)(qs, ks, masks)
    for i in range(3):
        looped = apply(qs[i], ks[i], masks[i])
        for a, b in zip(batched, looped):
            np.testing.assert_allclose(a[i], b, atol=1e-6)


@pytest.mark.parametrize("scorer", attention.SCORER_NAMES)
def test_attend_all_equals_per_row_loop(scorer):
    """[B, T, Dq] queries: the vmapped scorer equals calling it once per target position."""
    module = attention.make_scorer(_config(scorer))
    q, k, mask = _inputs(4)
    queries = np.random.RandomState(5).randn(B, 3, DQ).astype(np.float32)

    def all_at_once(mdl, qs, k, m):
        return attention.attend_all(mdl, qs, mdl.prepare(k, m))

    def one_row(mdl, q, k, m):
        return mdl(q, mdl.prepare(k, m))

    variables = module.init(jax.random.key(0), q, k, mask, method=one_row)
    context, weights = module.apply(variables, queries, k, mask, method=all_at_once)
    assert weights.shape == (B, 3, S)
    for t in range(3):
        c_t, w_t = module.apply(variables, queries[:, t], k, mask, method=one_row)
        np.testing.assert_allclose(context[:, t], c_t, atol=1e-6)
        np.testing.assert_allclose(weights[:, t], w_t, atol=1e-6)


def test_additive_keys_projected_once_per_sentence():
    """U h_j lives in the memory: scoring a query projects only the query, never the keys."""
    module = attention.make_scorer(attention.AttentionConfig(
        scorer="additive", query_size=5, key_size=DK, attention_size=A))
    _, k, mask = _inputs()
    q = np.ones((B, 5), np.float32)
    variables = module.init(jax.random.key(0), q, k, mask,
                            method=lambda m, q, k, mk: m(q, m.prepare(k, mk)))
    memory = module.apply(variables, k, mask, method="prepare")
    expected = k @ np.asarray(variables["params"]["u_key"]["kernel"])
    np.testing.assert_allclose(memory.keys, expected, atol=1e-5)
    jaxpr = jax.make_jaxpr(lambda q, mem: module.apply(variables, q, mem))(q, memory)
    shapes = [tuple(v.aval.shape) for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"
              for v in e.invars]
    assert (5, A) in shapes  # W q
    assert (DK, A) not in shapes  # no U h_j inside the per-step call


@pytest.mark.parametrize("bad, match", [
    (dict(scorer="bilinear"), "valid scorers: none, additive, dot, general"),
    (dict(scorer="dot", query_size=5), "general, additive, multihead"),
    (dict(scorer="scaled_dot", key_size=8), "decoder size"),
    (dict(scorer="multihead", num_heads=3), "not divisible"),
    (dict(scorer="additive", attention_size=0), "attention_size must be > 0"),
])
def test_bad_config_raises_value_error(bad, match):
    fields = dict(scorer="additive", query_size=DQ, key_size=DK, attention_size=A, num_heads=H,
                  max_source_len=9)
    fields.update(bad)
    with pytest.raises(ValueError, match=match):
        attention.make_scorer(attention.AttentionConfig(**fields))


def test_location_rejects_sources_longer_than_its_positions():
    module = attention.make_scorer(attention.AttentionConfig(
        scorer="location", query_size=DQ, key_size=DK, max_source_len=4))
    q, k, mask = _inputs()
    with pytest.raises(ValueError, match="max_source_len"):
        module.init(jax.random.key(0), q, k, mask,
                    method=lambda m, q, k, mk: m(q, m.prepare(k, mk)))


def test_scorer_class_names_the_registered_class_and_its_properties():
    assert all(attention.scorer_class(n) is attention.SCORERS[n] for n in attention.SCORER_NAMES)
    assert [n for n in attention.SCORER_NAMES if not attention.scorer_class(n).attends] == ["none"]
    assert [n for n in attention.SCORER_NAMES
            if attention.scorer_class(n).position_based] == ["location"]
    with pytest.raises(ValueError, match="'bilinear'; valid scorers: none, additive, dot"):
        attention.scorer_class("bilinear")


class _NegativeDistance(attention.Scorer):
    """e_j = -|s - h_j|²: a scorer no attend_all implementation knows by name."""

    @staticmethod
    def score_fn(config, q, keys, params):
        return -jnp.sum((q[:, None, :] - keys) ** 2, -1)[:, None, :]


def test_a_new_scorer_is_one_class_and_one_registry_line(monkeypatch):
    """Registered, it runs under every attend_all implementation (the mixed softmax weights)
    and equals its own per-row call."""
    monkeypatch.setitem(attention.SCORERS, "negative_distance", _NegativeDistance)
    q, k, mask = _inputs(6)
    queries = np.random.RandomState(7).randn(B, 2, DQ).astype(np.float32)
    for impl in attention.IMPLS:
        module = attention.make_scorer(_config("negative_distance", impl=impl))
        context, weights = module.apply(
            {}, queries, k, mask, method=lambda m, qs, k, mk: attention.attend_all(
                m, qs, m.prepare(k, mk)))
        for t in range(2):
            c_t, w_t = module.apply({}, queries[:, t], k, mask,
                                    method=lambda m, q, k, mk: m(q, m.prepare(k, mk)))
            np.testing.assert_allclose(context[:, t], c_t, atol=1e-6, err_msg=impl)
            np.testing.assert_allclose(weights[:, t], w_t, atol=1e-6, err_msg=impl)
        e = -((queries[:, :, None, :] - k[:, None]) ** 2).sum(-1)  # [B, 2, S]
        np.testing.assert_allclose(weights, _np_softmax(e, mask[:, None, :]), atol=1e-5)
