"""Row plans: matmuls over real rows equal plain matmuls there (values and gradients), loop over
several chunks, accept a larger shared bound, and leave padding rows at zero."""

import jax
import jax.numpy as jnp
import numpy as np

from attn_jax.model import rows

N, A, B_ = 23, 5, 4


def _data(seed=0):
    rng = np.random.RandomState(seed)
    mask = rng.rand(N) < 0.5
    mask[3] = True
    x = rng.randn(N, A).astype(np.float32)
    w = rng.randn(A, B_).astype(np.float32)
    return mask, x, w


def test_plan_puts_real_rows_first_and_counts_chunks():
    mask, _, _ = _data()
    plan = rows.plan(jnp.asarray(mask), chunk=4)
    order = np.asarray(plan.order)
    real = int(mask.sum())
    assert order.shape == (24,)  # padded to a multiple of 4
    np.testing.assert_array_equal(order[:real], np.flatnonzero(mask))  # stable
    assert int(plan.chunks) == -(-real // 4)
    np.testing.assert_array_equal(np.asarray(plan.order)[np.asarray(plan.inverse)], np.arange(N))
    x = np.arange(N, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(rows.scatter(rows.gather(x, plan), plan), x)
    assert rows.gather(x, plan)[-1, 0] == 0  # the fill row


def test_linear_equals_matmul_at_real_rows_with_gradients():
    mask, x, w = _data(1)
    plan = rows.plan(jnp.asarray(mask), chunk=3)
    assert int(plan.chunks) > 1
    dy = np.random.RandomState(2).randn(N, B_).astype(np.float32) * mask[:, None]

    def plain(x, w):
        return jnp.where(mask[:, None], x @ w, 0.0)

    got, vjp = jax.vjp(lambda x, w: rows.linear(x, w, plan), x, w)
    want, vjp_want = jax.vjp(plain, x, w)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (np.asarray(got)[~mask] == 0).all()
    for a, b in zip(vjp(dy), vjp_want(dy)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_linear_keeps_leading_axes_and_a_larger_bound():
    mask, x, w = _data(3)
    plan = rows.plan(jnp.asarray(mask), chunk=4, bound=jnp.asarray(N))  # visits every chunk
    got = rows.linear(x.reshape(N, 1, A), w, plan)
    assert got.shape == (N, 1, B_)
    np.testing.assert_allclose(got[:, 0][mask], (x @ w)[mask], atol=1e-5)


def test_outer_rows_skips_padding_rows():
    """Gradients are zero at padding rows (the contract); x there may hold anything."""
    mask, x, _ = _data(4)
    dy = np.random.RandomState(5).randn(N, B_).astype(np.float32) * mask[:, None]
    plan = rows.plan(jnp.asarray(mask), chunk=2)
    got = rows.outer_rows(x, dy, plan)
    np.testing.assert_allclose(got, x[mask].T @ dy[mask], atol=1e-5)
    np.testing.assert_allclose(rows.outer_rows(x, dy, None), x.T @ dy, atol=1e-5)


def test_linear_under_vmap_with_shared_bound():
    mask, x, w = _data(6)
    masks = np.stack([mask, ~mask])
    xs = np.stack([x, 2 * x])
    bound = jnp.asarray(masks.sum(-1).max())

    def one(m, x):
        return rows.linear(x, w, rows.plan(m, chunk=4, bound=bound))

    got = jax.jit(jax.vmap(one))(jnp.asarray(masks), xs)
    for k in range(2):
        np.testing.assert_allclose(got[k][masks[k]], (xs[k] @ w)[masks[k]], atol=1e-5)
