"""The fused output head: the same loss and gradients as cross-entropy on full logits, over
several chunks, with and without a hidden layer, label smoothing, dropout and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn_jax.model import loss, rows

N, F, O, V = 29, 6, 5, 11  # noqa: E741  (rows, features, output size, vocabulary)


def _problem(seed=0, hidden=True):
    rng = np.random.RandomState(seed)
    head = {"w1": rng.randn(F, O).astype(np.float32) if hidden else None,
            "b1": rng.randn(O).astype(np.float32) if hidden else None,
            "w2": rng.randn(O if hidden else F, V).astype(np.float32),
            "b2": rng.randn(V).astype(np.float32)}
    x = rng.randn(N, F).astype(np.float32)
    targets = rng.randint(0, V, N).astype(np.int32)
    weights = (rng.rand(N) < 0.6).astype(np.float32)
    return head, x, targets, weights


def _full(head, x, targets, weights, smoothing, mask=None):
    h = x if head["w1"] is None else jnp.tanh(x @ head["w1"] + head["b1"])
    if mask is not None:
        h = h * mask
    logits = h @ head["w2"] + head["b2"]
    nll, n = loss.cross_entropy(logits, targets, weights, smoothing)
    return nll.sum(), n.sum()


@pytest.mark.parametrize("hidden, smoothing", [(True, 0.0), (True, 0.1), (False, 0.2)])
def test_head_loss_equals_full_logits_value_and_gradient(hidden, smoothing):
    head, x, targets, weights = _problem(1, hidden)
    plan = rows.plan(jnp.asarray(weights != 0), chunk=4)
    assert int(plan.chunks) > 2

    def fused(head, x):
        return loss.head_loss(head, x, targets, weights, plan, smoothing=smoothing)[0]

    def full(head, x):
        return _full(head, x, targets, weights, smoothing)[0]

    (got, g_got), (want, g_want) = (jax.value_and_grad(f, argnums=(0, 1))(head, x)
                                    for f in (fused, full))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_got), jax.tree.leaves(g_want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    nll = loss.head_loss(head, x, targets, weights, plan, smoothing=smoothing)[1]
    np.testing.assert_allclose(nll, _full(head, x, targets, weights, smoothing)[1], rtol=1e-5)


def test_nll_output_carries_no_gradient_and_token_nll_matches():
    head, x, targets, weights = _problem(2)
    plan = rows.plan(jnp.asarray(weights != 0), chunk=8)
    g = jax.grad(lambda x: loss.head_loss(head, x, targets, weights, plan)[1])(x)
    assert not np.asarray(g).any()
    per_row = loss.token_nll(head, x, targets, weights, plan)
    h = jnp.tanh(x @ head["w1"] + head["b1"])
    want = loss.cross_entropy(h @ head["w2"] + head["b2"], targets, weights)[1]
    np.testing.assert_allclose(per_row, want, rtol=1e-5, atol=1e-6)


def test_dropout_applies_one_mask_to_forward_and_backward():
    head, x, targets, weights = _problem(3)
    plan = rows.plan(jnp.asarray(weights != 0), chunk=N + 3)  # one chunk: one mask
    key = jax.random.key(7)
    mask = loss._dropout_mask(key, 0, (plan.order.shape[0], O), 0.5)  # noqa: SLF001
    mask = rows.scatter(mask, plan)  # the mask row of each original row

    def fused(head):
        return loss.head_loss(head, x, targets, weights, plan, dropout_rate=0.5,
                              dropout_key=key)[0]

    got, g_got = jax.value_and_grad(fused)(head)
    want, g_want = jax.value_and_grad(lambda h: _full(h, x, targets, weights, 0.0, mask)[0])(head)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_got), jax.tree.leaves(g_want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.isclose(got, _full(head, x, targets, weights, 0.0)[0])


def test_head_loss_under_vmap_equals_each_replica():
    heads, xs, ts, ws = zip(*[_problem(s) for s in (4, 5)])
    stack = lambda *a: jax.tree.map(lambda *v: jnp.stack(v), *a)  # noqa: E731
    bound = jnp.asarray(max(int((w != 0).sum()) for w in ws))

    def one(head, x, t, w):
        plan = rows.plan(w != 0, chunk=4, bound=bound)
        return jax.grad(lambda h: loss.head_loss(h, x, t, w, plan)[0])(head)

    got = jax.jit(jax.vmap(one))(stack(*heads), stack(*xs), stack(*ts), stack(*ws))
    for k in range(2):
        want = jax.grad(lambda h, k=k: _full(h, xs[k], ts[k], ws[k], 0.0)[0])(heads[k])
        for a, b in zip(jax.tree.leaves(jax.tree.map(lambda v, k=k: v[k], got)),
                        jax.tree.leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
