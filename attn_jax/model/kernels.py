"""Memory-lean additive attention over all target positions at once: blockwise XLA and Pallas.

For queries q [B, T, A] (q_t = W s_t + b), keys k [B, S, A] (k_j = U h_j), the score vector
v [A], values [B, S, D] (the annotations) and a mask [B, S] (True at real source tokens):

    e_tj = vᵀ tanh(q_t + k_j)      α_tj = softmax_j e_tj (over real j)      c_t = Σ_j α_tj val_j

The plain scorer (`attention.attend_all` with `attention_impl='xla'`) materialises tanh(q + k) as
one [B, T, S, A] tensor and autodiff keeps it for the backward pass. Here it exists only one
block [B, bq, bk, A] at a time:

* `additive_context` (impl `chunked`, any backend): c_t by an online softmax (running max m,
  running sum l, rescaled accumulator) over key blocks, one query block at a time; the forward
  keeps only the log-sum-exp per query row. The backward (`jax.custom_vjp`) recomputes each
  block's tanh, flash-attention style: per key block it loops over the query blocks and
  accumulates dk, d values and dv there, and dq across key blocks. Nothing of size [B, T, S]
  exists in either direction.
* `additive_scores` (both impls): the raw scores e [B, T, S], blockwise, with a blockwise
  recomputing backward. `attention.attend_all` uses it for the weights α (heatmaps, AER) when
  they are used; inside a jitted training step whose loss ignores them they are dead code.
* `pallas_additive_context` (impl `pallas`): the same forward and backward as three Pallas
  kernels (score, mask, online softmax and context fused in one; dq; dk, d values, dv), for GPU
  (Triton) and TPU (Mosaic). Off GPU/TPU it runs in Pallas interpret mode (slow; the tests).
  Each kernel instance holds a [bq, bk, A] tanh block (PALLAS_BLOCKS per backend).

A fully padded row (no real key) gets a zero context and zero gradients, as the reference does.
Padding added to reach a multiple of the block sizes is masked and sliced off.

The backward, with h_tj = tanh(q_t + k_j), lse_t = log Σ_j exp e_tj and do_t = d c_t:

    dα_tj = do_t · val_j     de_tj = α_tj (dα_tj − δ_t),  δ_t = Σ_j α_tj dα_tj = do_t · c_t
    d(q_t + k_j) = de_tj v ⊙ (1 − h_tj²):  dq_t = Σ_j of it, dk_j = Σ_t of it
    dv = Σ_tj de_tj h_tj     d val_j = Σ_t α_tj do_t

δ_t is computed once from the saved context, so no [T, S] sum is needed.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

BLOCK_Q = 64  # Default query rows per block (XLA).
BLOCK_K = 128  # Default keys per block (XLA).
# Default Pallas blocks (query rows, keys): [bq, bk, A] lives in one kernel's registers or VMEM.
# TPU (Mosaic) tiles are (8, 128): a key block is a multiple of 128 there.
PALLAS_BLOCKS = {"tpu": (8, 128), "gpu": (16, 16), "interpret": (16, 16)}


def _pad(x: jax.Array, axis: int, multiple: int, value=0) -> jax.Array:
    """x padded with `value` along `axis` up to a multiple of `multiple`."""
    extra = -x.shape[axis] % multiple
    if not extra:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, extra)
    return jnp.pad(x, widths, constant_values=value)


def _blocks(x: jax.Array, size: int) -> jax.Array:
    """[B, L, ...] (L a multiple of size) -> [L / size, B, size, ...]."""
    b, n = x.shape[:2]
    return jnp.swapaxes(x.reshape(b, n // size, size, *x.shape[2:]), 0, 1)


def _unblock(x: jax.Array) -> jax.Array:
    """[N, B, size, ...] -> [B, N·size, ...]."""
    x = jnp.swapaxes(x, 0, 1)
    return x.reshape(x.shape[0], -1, *x.shape[3:])


def _tanh_block(q: jax.Array, k: jax.Array) -> jax.Array:
    """tanh(q_i + k_j): q [..., bq, A], k [..., bk, A] -> [..., bq, bk, A]."""
    return jnp.tanh(q[..., :, None, :] + k[..., None, :, :])


def _online_step(carry, e, real, val):
    """One key block of the online softmax: e [..., bq, bk] scores, real [..., 1, bk] mask,
    val [..., bk, D]. carry = (running max m [..., bq], running sum, acc [..., bq, D])."""
    m, total, acc = carry
    e = jnp.where(real, e, -jnp.inf)
    m_new = jnp.maximum(m, e.max(-1))  # m' = max(m, max_j e_j)
    m_safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)  # -inf until a real key is seen.
    p = jnp.exp(e - m_safe[..., None])  # p_j = exp(e_j − m'); masked keys: exp(-inf) = 0.
    corr = jnp.exp(m - m_safe)  # exp(m − m') rescales what was summed against m
    acc = corr[..., None] * acc + jnp.einsum("...qk,...kd->...qd", p, val)  # Σ_j p_j val_j
    return m_new, corr * total + p.sum(-1), acc  # l' = l exp(m − m') + Σ_j p_j


def _finish(m, total, acc):
    """(context, log-sum-exp) from the online softmax's carry; rows with no real key: (0, 0)."""
    has = total > 0
    safe = jnp.where(has, total, 1.0)
    return acc / safe[..., None], jnp.where(has, m + jnp.log(safe), 0.0)  # c = acc / l, m + log l


def _block_grads(q, k, v, val, real, do, lse, delta):
    """The backward of one (query block, key block) pair, tanh recomputed.

    q [..., bq, A], k [..., bk, A], v [A], val [..., bk, D], real [..., 1, bk], do [..., bq, D]
    (d context), lse and delta = Σ_d do·c [..., bq]. Returns (p [..., bq, bk] the weights,
    de the score gradient, h the tanh block, dh = d(q_i + k_j) [..., bq, bk, A])."""
    h = _tanh_block(q, k)
    e = jnp.sum(h * v, -1)  # e_ij = vᵀ h_ij
    p = jnp.where(real, jnp.exp(e - lse[..., None]), 0.0)  # α_ij = exp(e_ij − lse_i)
    dp = jnp.einsum("...qd,...kd->...qk", do, val)  # dα_ij = do_i · val_j
    de = p * (dp - delta[..., None])  # softmax: de_ij = α_ij (dα_ij − δ_i)
    return p, de, h, de[..., None] * v * (1.0 - h * h)  # tanh' = 1 − h²


# ------------------------------------------------------------------------------ blockwise XLA


def _context_fwd_blocks(q, keys, v, values, mask, block_q, block_k):
    """(context [B, T', D], lse [B, T']) with T', S padded to the block multiples."""
    dt = jnp.float32
    qb = _blocks(_pad(q, 1, block_q), block_q)  # [nq, B, bq, A]
    kb = _blocks(_pad(keys, 1, block_k), block_k)  # [nk, B, bk, A]
    vb = _blocks(_pad(values, 1, block_k), block_k)  # [nk, B, bk, D]
    mb = _blocks(_pad(mask, 1, block_k, False), block_k)  # [nk, B, bk]

    def query_block(q_i):  # [B, bq, A]
        def key_step(carry, xs):
            k_j, val_j, m_j = xs
            e = jnp.einsum("bqka,a->bqk", _tanh_block(q_i, k_j), v)
            return _online_step(carry, e, m_j[:, None, :], val_j), None

        b, n = q_i.shape[:2]
        init = (jnp.full((b, n), -jnp.inf, dt), jnp.zeros((b, n), dt),
                jnp.zeros((b, n, values.shape[-1]), dt))
        carry, _ = jax.lax.scan(key_step, init, (kb, vb, mb))
        return _finish(*carry)

    context, lse = jax.lax.map(query_block, qb)  # [nq, B, bq, D], [nq, B, bq]
    return _unblock(context), _unblock(lse)


def additive_context(q, keys, v, values, mask, block_q: int = BLOCK_Q, block_k: int = BLOCK_K):
    """Σ_j α_tj values_j for every query: q [B, T, A], keys [B, S, A], v [A], values [B, S, D],
    mask [B, S] -> context [B, T, D] (float32), holding one [B, bq, bk, A] block at a time
    (blocks no larger than T and S)."""
    return _additive_context(q, keys, v, values, mask, min(block_q, q.shape[1]),
                             min(block_k, keys.shape[1]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _additive_context(q, keys, v, values, mask, block_q, block_k):
    return _context_fwd_blocks(q, keys, v, values, mask, block_q, block_k)[0][:, :q.shape[1]]


def _context_fwd(q, keys, v, values, mask, block_q, block_k):
    context, lse = _context_fwd_blocks(q, keys, v, values, mask, block_q, block_k)
    t = q.shape[1]
    return context[:, :t], (q, keys, v, values, mask, context[:, :t], lse[:, :t])


def _context_bwd(block_q, block_k, saved, d_context):
    q, keys, v, values, mask, context, lse = saved
    t, s = q.shape[1], keys.shape[1]
    delta = jnp.sum(d_context * context, -1)  # δ_t = do_t · c_t [B, T]
    qb, dob, lb, db = (_blocks(_pad(x, 1, block_q), block_q) for x in (q, d_context, lse, delta))
    kb = _blocks(_pad(keys, 1, block_k), block_k)
    vb = _blocks(_pad(values, 1, block_k), block_k)
    mb = _blocks(_pad(mask, 1, block_k, False), block_k)

    def key_block(carry, xs):
        dq, dv = carry  # dq [nq, B, bq, A]
        k_j, val_j, m_j = xs

        def query_step(acc, ys):
            dk, dval, dv = acc
            q_i, do_i, lse_i, delta_i = ys
            p, de, h, dh = _block_grads(q_i, k_j, v, val_j, m_j[:, None, :], do_i, lse_i,
                                        delta_i)
            dval = dval + jnp.einsum("bqk,bqd->bkd", p, do_i)  # d val_j += Σ_i α_ij do_i
            dv = dv + jnp.einsum("bqk,bqka->a", de, h)  # dv += Σ_ij de_ij h_ij
            # dk_j += Σ_i dh_ij; this key block's share of dq_i = Σ_j dh_ij.
            return (dk + dh.sum(1), dval, dv), dh.sum(2)

        init = (jnp.zeros(k_j.shape, jnp.float32), jnp.zeros(val_j.shape, jnp.float32), dv)
        (dk, dval, dv), dq_j = jax.lax.scan(query_step, init, (qb, dob, lb, db))
        return (dq + dq_j, dv), (dk, dval)

    init = (jnp.zeros(qb.shape, jnp.float32), jnp.zeros(v.shape, jnp.float32))
    (dq, dv), (dk, dval) = jax.lax.scan(key_block, init, (kb, vb, mb))
    # Cotangents of (q, keys, v, values, mask).
    return (_unblock(dq)[:, :t].astype(q.dtype), _unblock(dk)[:, :s].astype(keys.dtype),
            dv.astype(v.dtype), _unblock(dval)[:, :s].astype(values.dtype), None)


_additive_context.defvjp(_context_fwd, _context_bwd)


def _scores_blocks(q, keys, v, block_q, block_k):
    qb = _blocks(_pad(q, 1, block_q), block_q)
    kb = _blocks(_pad(keys, 1, block_k), block_k)

    def query_block(q_i):
        e = jax.lax.map(lambda k_j: jnp.einsum("bqka,a->bqk", _tanh_block(q_i, k_j), v), kb)
        return jnp.moveaxis(e, 0, 2).reshape(*e.shape[1:3], -1)  # [B, bq, S']

    return _unblock(jax.lax.map(query_block, qb))[:, :q.shape[1], :keys.shape[1]]


def additive_scores(q, keys, v, block_q: int = BLOCK_Q, block_k: int = BLOCK_K):
    """e_tj = vᵀ tanh(q_t + k_j): q [B, T, A], keys [B, S, A], v [A] -> [B, T, S], one
    [B, bq, bk, A] block at a time (forward and backward)."""
    return _additive_scores(q, keys, v, min(block_q, q.shape[1]), min(block_k, keys.shape[1]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _additive_scores(q, keys, v, block_q, block_k):
    return _scores_blocks(q, keys, v, block_q, block_k)


def _scores_fwd(q, keys, v, block_q, block_k):
    return _scores_blocks(q, keys, v, block_q, block_k), (q, keys, v)


def _scores_bwd(block_q, block_k, saved, de):
    q, keys, v = saved
    t, s = q.shape[1], keys.shape[1]
    qb = _blocks(_pad(q, 1, block_q), block_q)
    kb = _blocks(_pad(keys, 1, block_k), block_k)
    deb = _blocks(_pad(_pad(de, 2, block_k), 1, block_q), block_q)  # [nq, B, bq, S']
    deb = deb.reshape(*deb.shape[:3], -1, block_k)  # [nq, B, bq, nk, bk]

    def key_block(carry, xs):
        dq, dv = carry
        k_j, j = xs

        def query_step(acc, ys):
            dk, dv = acc
            q_i, de_i = ys
            de_ij = jax.lax.dynamic_index_in_dim(de_i, j, 2, keepdims=False)  # [B, bq, bk]
            h = _tanh_block(q_i, k_j)
            # e_ij = vᵀ tanh(q_i + k_j): d(q_i + k_j) = de_ij v (1 − h²), dv = Σ de_ij h_ij.
            dh = de_ij[..., None] * v * (1.0 - h * h)
            return (dk + dh.sum(1), dv + jnp.einsum("bqk,bqka->a", de_ij, h)), dh.sum(2)

        (dk, dv), dq_j = jax.lax.scan(query_step, (jnp.zeros(k_j.shape, jnp.float32), dv),
                                      (qb, deb))
        return (dq + dq_j, dv), dk

    init = (jnp.zeros(qb.shape, jnp.float32), jnp.zeros(v.shape, jnp.float32))
    (dq, dv), dk = jax.lax.scan(key_block, init, (kb, jnp.arange(kb.shape[0])))
    # Cotangents of (q, keys, v): dq_i = Σ_j dh_ij, dk_j = Σ_i dh_ij.
    return (_unblock(dq)[:, :t].astype(q.dtype), _unblock(dk)[:, :s].astype(keys.dtype),
            dv.astype(v.dtype))


_additive_scores.defvjp(_scores_fwd, _scores_bwd)


# ------------------------------------------------------------------------------------- Pallas


def interpret_default() -> bool:
    """Pallas runs compiled on GPU (Triton) and TPU (Mosaic), interpreted everywhere else."""
    return jax.default_backend() not in ("gpu", "tpu")


def _fwd_kernel(q_ref, k_ref, v_ref, val_ref, m_ref, o_ref, lse_ref, *, block_k: int):
    """One (batch row, query block): fused score, mask, online softmax and context."""
    q = q_ref[...].astype(jnp.float32)  # [bq, A]
    v = v_ref[...].astype(jnp.float32)  # [1, A]

    def body(j, carry):
        keys = pl.ds(j * block_k, block_k)
        k = k_ref[keys, :].astype(jnp.float32)  # [bk, A]
        e = jnp.sum(_tanh_block(q, k) * v, -1)  # [bq, bk]
        return _online_step(carry, e, m_ref[:, keys] > 0, val_ref[keys, :].astype(jnp.float32))

    n = q.shape[0]
    init = (jnp.full((n,), -jnp.inf, jnp.float32), jnp.zeros((n,), jnp.float32),
            jnp.zeros((n, o_ref.shape[-1]), jnp.float32))
    context, lse = _finish(*jax.lax.fori_loop(0, k_ref.shape[0] // block_k, body, init))
    o_ref[...] = context.astype(o_ref.dtype)
    lse_ref[...] = lse[:, None]


def _dq_kernel(q_ref, k_ref, v_ref, val_ref, m_ref, do_ref, lse_ref, delta_ref, dq_ref, *,
               block_k: int):
    """One (batch row, query block): dq_i = Σ_j de_ij v (1 − h_ij²) over key blocks, tanh
    recomputed."""
    q, do = q_ref[...].astype(jnp.float32), do_ref[...].astype(jnp.float32)
    v = v_ref[...].astype(jnp.float32)[0]
    lse, delta = lse_ref[...][:, 0], delta_ref[...][:, 0]

    def body(j, dq):
        keys = pl.ds(j * block_k, block_k)
        _, _, _, dh = _block_grads(q, k_ref[keys, :].astype(jnp.float32), v,
                                   val_ref[keys, :].astype(jnp.float32), m_ref[:, keys] > 0, do,
                                   lse, delta)
        return dq + dh.sum(1)

    dq = jax.lax.fori_loop(0, k_ref.shape[0] // block_k, body, jnp.zeros(q.shape, jnp.float32))
    dq_ref[...] = dq.astype(dq_ref.dtype)


def _dkv_kernel(q_ref, k_ref, v_ref, val_ref, m_ref, do_ref, lse_ref, delta_ref, dk_ref, dval_ref,
                dv_ref, *, block_q: int):
    """One (batch row, key block), summed over the query blocks: dk_j = Σ_i de_ij v (1 − h_ij²),
    d val_j = Σ_i α_ij do_i and this block's share of dv = Σ_ij de_ij h_ij."""
    k, val = k_ref[...].astype(jnp.float32), val_ref[...].astype(jnp.float32)
    v = v_ref[...].astype(jnp.float32)[0]
    real = m_ref[...] > 0  # [1, bk]

    def body(i, acc):
        dk, dval, dv = acc
        rows = pl.ds(i * block_q, block_q)
        do = do_ref[rows, :].astype(jnp.float32)
        p, de, h, dh = _block_grads(q_ref[rows, :].astype(jnp.float32), k, v, val, real, do,
                                    lse_ref[rows, :][:, 0], delta_ref[rows, :][:, 0])
        dval = dval + jnp.dot(p.T, do)
        dv = dv + jnp.sum(de[..., None] * h, (0, 1))[None, :]
        return dk + dh.sum(0), dval, dv

    init = (jnp.zeros(k.shape, jnp.float32), jnp.zeros(val.shape, jnp.float32),
            jnp.zeros((1, k.shape[-1]), jnp.float32))
    dk, dval, dv = jax.lax.fori_loop(0, q_ref.shape[0] // block_q, body, init)
    dk_ref[...], dval_ref[...] = dk.astype(dk_ref.dtype), dval.astype(dval_ref.dtype)
    dv_ref[...] = dv


def _pallas_inputs(q, keys, v, values, mask, block_q, block_k):
    """Padded operands: q [B, T', A], keys [B, S', A], v [1, A], values [B, S', D],
    mask [B, 1, S'] float32 (1 at real keys)."""
    return (_pad(q, 1, block_q), _pad(keys, 1, block_k), v.reshape(1, -1),
            _pad(values, 1, block_k), _pad(mask, 1, block_k, False).astype(jnp.float32)[:, None])


def _specs(q_spec, s_pad, a, d):
    """BlockSpecs of the shared operands: (q, keys, v, values, mask) for grid (batch, i)."""
    return [q_spec, pl.BlockSpec((None, s_pad, a), lambda b, i: (b, 0, 0)),
            pl.BlockSpec((1, a), lambda b, i: (0, 0)),
            pl.BlockSpec((None, s_pad, d), lambda b, i: (b, 0, 0)),
            pl.BlockSpec((None, 1, s_pad), lambda b, i: (b, 0, 0))]


def _pallas_fwd_padded(q, keys, v, values, mask, block_q, block_k, interpret):
    qp, kp, vp, valp, mp = _pallas_inputs(q, keys, v, values, mask, block_q, block_k)
    (b, t_pad, a), s_pad, d = qp.shape, kp.shape[1], valp.shape[-1]
    rows = pl.BlockSpec((None, block_q, a), lambda b, i: (b, i, 0))
    context, lse = pl.pallas_call(
        functools.partial(_fwd_kernel, block_k=block_k),
        grid=(b, t_pad // block_q),
        in_specs=_specs(rows, s_pad, a, d),
        out_specs=[pl.BlockSpec((None, block_q, d), lambda b, i: (b, i, 0)),
                   pl.BlockSpec((None, block_q, 1), lambda b, i: (b, i, 0))],
        out_shape=[jax.ShapeDtypeStruct((b, t_pad, d), jnp.float32),
                   jax.ShapeDtypeStruct((b, t_pad, 1), jnp.float32)],
        interpret=interpret, name="additive_attention_fwd",
    )(qp, kp, vp, valp, mp)
    return context, lse


def pallas_additive_context(q, keys, v, values, mask, block_q: int | None = None,
                            block_k: int | None = None, interpret: bool | None = None):
    """`additive_context` as fused Pallas kernels (forward and backward). None: the backend's
    PALLAS_BLOCKS; interpret=None: interpreted unless on GPU or TPU."""
    interpret = interpret_default() if interpret is None else interpret
    default = PALLAS_BLOCKS["interpret" if interpret else jax.default_backend()]
    return _pallas_additive_context(q, keys, v, values, mask, block_q or default[0],
                                    block_k or default[1], interpret)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _pallas_additive_context(q, keys, v, values, mask, block_q, block_k, interpret):
    context, _ = _pallas_fwd_padded(q, keys, v, values, mask, block_q, block_k, interpret)
    return context[:, :q.shape[1]]


def _pallas_fwd(q, keys, v, values, mask, block_q, block_k, interpret):
    context, lse = _pallas_fwd_padded(q, keys, v, values, mask, block_q, block_k, interpret)
    return context[:, :q.shape[1]], (q, keys, v, values, mask, context, lse)


def _pallas_bwd(block_q, block_k, interpret, saved, d_context):
    q, keys, v, values, mask, context, lse = saved
    t, s = q.shape[1], keys.shape[1]
    qp, kp, vp, valp, mp = _pallas_inputs(q, keys, v, values, mask, block_q, block_k)
    (b, t_pad, a), s_pad, d = qp.shape, kp.shape[1], valp.shape[-1]
    do = _pad(d_context.astype(jnp.float32), 1, block_q)  # [B, T', D]
    delta = jnp.sum(do * context, -1, keepdims=True)  # δ_t = do_t · c_t [B, T', 1]
    q_rows = pl.BlockSpec((None, block_q, a), lambda b, i: (b, i, 0))
    row_spec = lambda width: pl.BlockSpec((None, block_q, width), lambda b, i: (b, i, 0))  # noqa: E731
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, block_k=block_k),
        grid=(b, t_pad // block_q),
        in_specs=[*_specs(q_rows, s_pad, a, d), row_spec(d), row_spec(1),
                  row_spec(1)],
        out_specs=row_spec(a),
        out_shape=jax.ShapeDtypeStruct((b, t_pad, a), jnp.float32),
        interpret=interpret, name="additive_attention_dq",
    )(qp, kp, vp, valp, mp, do, lse, delta)
    full = lambda width: pl.BlockSpec((None, t_pad, width), lambda b, j: (b, 0, 0))  # noqa: E731
    key_spec = lambda width: pl.BlockSpec((None, block_k, width), lambda b, j: (b, j, 0))  # noqa: E731
    nk = s_pad // block_k
    dk, dval, dv = pl.pallas_call(
        functools.partial(_dkv_kernel, block_q=block_q),
        grid=(b, nk),
        in_specs=[full(a), key_spec(a), pl.BlockSpec((1, a), lambda b, j: (0, 0)), key_spec(d),
                  pl.BlockSpec((None, 1, block_k), lambda b, j: (b, 0, j)), full(d), full(1),
                  full(1)],
        out_specs=[key_spec(a), key_spec(d),
                   pl.BlockSpec((None, 1, a), lambda b, j: (b * nk + j, 0, 0))],
        out_shape=[jax.ShapeDtypeStruct((b, s_pad, a), jnp.float32),
                   jax.ShapeDtypeStruct((b, s_pad, d), jnp.float32),
                   jax.ShapeDtypeStruct((b * nk, 1, a), jnp.float32)],
        interpret=interpret, name="additive_attention_dkv",
    )(qp, kp, vp, valp, mp, do, lse, delta)
    # Cotangents of (q, keys, v, values, mask); dv: the per-(batch row, key block) shares summed.
    return (dq[:, :t].astype(q.dtype), dk[:, :s].astype(keys.dtype),
            dv.sum((0, 1)).astype(v.dtype), dval[:, :s].astype(values.dtype), None)


_pallas_additive_context.defvjp(_pallas_fwd, _pallas_bwd)
