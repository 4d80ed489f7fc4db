"""Matmuls over the real rows of a padded layout, so that padding costs no FLOPs.

A batch holds B sentences padded to L positions, and only the (position, sentence) rows inside a
sentence are real. Everything that runs over rows (input projections before a recurrence,
deferred weight gradients after it, the output head) can skip the rest. `plan` orders the rows
of a layout with the real ones first and counts the chunks of `chunk` rows that hold any; the
functions here gather the rows into that order, loop over those chunks only (a traced trip
count), and scatter back. Rows outside the plan come out as zeros, and padding rows carry zero
gradient in this model (nothing reads them), so results at real rows are exact.

Under `jax.vmap` (K replicas) pass `bound`, a bound on the real rows shared by all replicas
(`steps.extent`): the loops then have one trip count instead of K.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp

from attn_jax.model.layers import matmul as _matmul
from attn_jax.model.layers import scoped

CHUNK = 256  # Rows per matmul in the loops below (and in the output head).


@flax.struct.dataclass
class Rows:
    """The plan for one padded layout of N rows."""

    order: jax.Array  # [N'] real rows first (stable), padded with N (a zero row) to chunk·k.
    inverse: jax.Array  # [N] where row i sits in `order`.
    chunks: jax.Array  # [] chunks of `order` that hold a real row: the loops' trip count.
    chunk: int = flax.struct.field(pytree_node=False)


@scoped("rows_plan")
def plan(mask: jax.Array, chunk: int, bound: jax.Array | None = None) -> Rows:
    """mask [N] True at real rows; bound (optional) >= the number of real rows."""
    n = mask.shape[0]
    order = jnp.argsort(~mask, stable=True).astype(jnp.int32)
    pad = -n % chunk
    if pad:
        order = jnp.concatenate([order, jnp.full((pad,), n, jnp.int32)])
    inverse = jnp.zeros((n + 1,), jnp.int32).at[order].set(
        jnp.arange(order.shape[0], dtype=jnp.int32))[:n]
    real = jnp.sum(mask) if bound is None else bound
    return Rows(order=order, inverse=inverse, chunks=(real + chunk - 1) // chunk, chunk=chunk)


def gather(x: jax.Array, rows: Rows) -> jax.Array:
    """x [N, ...] -> [N', ...] in plan order (zeros past N)."""
    return jnp.take(x, rows.order, axis=0, mode="fill", fill_value=0)


def scatter(xs: jax.Array, rows: Rows) -> jax.Array:
    """The inverse of `gather`: [N', ...] -> [N, ...]."""
    return jnp.take(xs, rows.inverse, axis=0)


def _chunk(x, i, rows):
    return jax.lax.dynamic_slice_in_dim(x, i * rows.chunk, rows.chunk)


@scoped("rows_outer")
def outer(xs: jax.Array, dys: jax.Array, rows: Rows, dtype=None) -> jax.Array:
    """Σ over the planned rows of xsᵀ dys: xs [N', a], dys [N', b] (plan order) -> [a, b]."""
    def body(i, acc):
        return acc + _matmul(_chunk(xs, i, rows).T, _chunk(dys, i, rows), dtype)

    init = jnp.zeros((xs.shape[-1], dys.shape[-1]), jnp.result_type(xs, dys))
    return jax.lax.fori_loop(0, rows.chunks, body, init)


def outer_rows(x: jax.Array, dy: jax.Array, rows: Rows | None, dtype=None) -> jax.Array:
    """Σ over rows of xᵀ dy for x [..., a], dy [..., b] whose leading axes flatten to the N rows
    of `rows` (all rows when rows is None: one matmul). dy must be zero at padding rows."""
    x, dy = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
    if rows is None:
        return _matmul(x.T, dy, dtype)
    return outer(gather(x, rows), gather(dy, rows), rows, dtype)


def _products(xs, w, rows, dtype):
    """xs [N', a] @ w for the planned chunks (other rows zero)."""
    def body(i, ys):
        y = _matmul(_chunk(xs, i, rows), w, dtype).astype(ys.dtype)
        return jax.lax.dynamic_update_slice_in_dim(ys, y, i * rows.chunk, 0)

    init = jnp.zeros((xs.shape[0], w.shape[-1]), jnp.result_type(xs, w))
    return jax.lax.fori_loop(0, rows.chunks, body, init)


def linear(x: jax.Array, w: jax.Array, rows: Rows | None, dtype=None) -> jax.Array:
    """x @ w at the real rows of x [..., a] (leading axes flatten to the plan's N rows), zeros at
    the others; a plain matmul when rows is None. The incoming gradient must be zero at padding
    rows (nothing reads them)."""
    if rows is None:
        return _matmul(x, w, dtype)
    lead = x.shape[:-1]
    y = _linear(dtype, x.reshape(-1, x.shape[-1]), w, rows)
    return y.reshape(*lead, w.shape[-1])


def dense(layer, x: jax.Array, rows: Rows | None) -> jax.Array:
    """A `layers.Linear` applied at the real rows only (its bias everywhere)."""
    y = linear(x, layer.kernel, rows, layer.dtype)
    return y if layer.bias is None else y + layer.bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _linear(dtype, x, w, rows):
    return scatter(_products(gather(x, rows), w, rows, dtype), rows)


@scoped("rows_linear")
def _linear_fwd(dtype, x, w, rows):
    xs = gather(x, rows)
    return scatter(_products(xs, w, rows, dtype), rows), (xs, w, rows)


@scoped("rows_linear_bwd")
def _linear_bwd(dtype, saved, dy):
    xs, w, rows = saved
    dys = gather(dy, rows)
    w_t = w.T

    def body(i, acc):
        dw, dxs = acc
        x_c, dy_c = _chunk(xs, i, rows), _chunk(dys, i, rows)
        dx_c = _matmul(dy_c, w_t, dtype).astype(dxs.dtype)
        return (dw + _matmul(x_c.T, dy_c, dtype),
                jax.lax.dynamic_update_slice_in_dim(dxs, dx_c, i * rows.chunk, 0))

    init = (jnp.zeros(w.shape, jnp.result_type(xs, dys)), jnp.zeros(xs.shape, xs.dtype))
    dw, dxs = jax.lax.fori_loop(0, rows.chunks, body, init)
    return scatter(dxs, rows), dw.astype(w.dtype), None


_linear.defvjp(_linear_fwd, _linear_bwd)
