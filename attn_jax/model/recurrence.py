"""The training recurrences, with hand-written backward passes (`jax.custom_vjp`).

Autodiff of a scanned step accumulates every weight's gradient inside the backward loop: one
small matmul and one full-size add per weight per time step, and the same for the encoder
memory the attention reads. These recurrences keep only what is truly sequential inside the
loops and defer the rest:

* forward: per step, the recurrent matmuls (h W_h, and the query projection fused with it), the
  attention and the cell's elementwise math. Input projections of all time steps (x W_i) are
  computed before the loop by the caller, as one large matmul.
* backward, per step: the cell's and the attention's elementwise backward and the matmuls that
  carry the gradient to the previous step (dgates W_hᵀ ...). The additive score is recomputed
  from its inputs (nothing of size [B, S, A] is saved per step); only the key gradient of a
  scorer that is not bilinear in the keys is accumulated in the loop.
* after the backward loop: every weight gradient as one large matmul over all (t, b) rows
  (Σ_t h_{t-1}ᵀ dgates_t), and the gradient of the attention values Σ_t α_tᵀ dc_t.

Three recurrences cover the model: `rnn` (an encoder layer, both directions in one loop, or
Luong's decoder without input feeding), `bahdanau` (query s_{t-1}, context into the cell) and
`luong` (cell first, query s_t, attentional state h̃_t fed back). Each takes time-major inputs
and returns time-major outputs; `rnn.Seq2Seq` builds the parameter dictionaries. The cell
math is `layers.cell_forward` / `layers.cell_backward`; the score is the scorer's own `score_fn`
(its backward by `jax.vjp`), so every scorer runs here unchanged. Tests compare each loop's
values and gradients with autodiff of a plain `lax.scan` of the same equations
(tests/test_recurrence.py), and the whole model with autodiff of the step-by-step model.

All loops run `steps` iterations when given (a traced bound on the real length, e.g. the
longest sentence of the batch; outputs past it are zeros), else the whole length.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from attn_jax.model.attention import masked_softmax, mix
from attn_jax.model.layers import cell_backward, cell_forward, hidden, matmul, scoped, with_hidden
from attn_jax.model.rows import outer_rows


def _zeros_like(tree):
    return jax.tree.map(jnp.zeros_like, tree)


def _add(a, b):
    return jax.tree.map(jnp.add, a, b)


def _sum_to(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Sums x over the axes that broadcasting added or expanded to reach x.shape from `shape`."""
    lead = x.ndim - len(shape)
    x = x.sum(axis=tuple(range(lead))) if lead else x
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and x.shape[i] != 1)
    return x.sum(axis=axes, keepdims=True) if axes else x


def _outer(x: jax.Array, dy: jax.Array, rows, directions: bool = False) -> jax.Array:
    """Σ over the (time, batch) rows of xᵀ dy: [T, B, a], [T, B, b] -> [a, b] (only the real
    rows of `rows` when given). directions: x [T, D, B, a], dy [T, D, B, b] -> [D, a, b], one
    matmul per direction rather than one batched dot over the middle axis."""
    if directions:
        return jnp.stack([_outer(x[:, d], dy[:, d], rows) for d in range(x.shape[1])])
    return outer_rows(x, dy, rows)


def _t(w: jax.Array) -> jax.Array:
    """wᵀ (last two axes), made once before a loop rather than by every step's matmul."""
    return jnp.swapaxes(w, -1, -2)


def _loop(step, carry, xs, length: int, steps, reverse: bool = False):
    """lax.scan over `length` steps; with a traced `steps` bound, iterations t >= steps keep the
    carry and output zeros (lax.cond: skipped work, not masked work)."""
    if steps is None:
        return jax.lax.scan(step, carry, xs, length=length, reverse=reverse)
    ts = jnp.arange(length)

    def guarded(c, x):
        t, x = x
        out_shape = jax.eval_shape(step, c, x)[1]
        skip = lambda c, x: (c, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), out_shape))  # noqa: E731
        return jax.lax.cond(t < steps, step, skip, c, x)

    return jax.lax.scan(guarded, carry, (ts, xs), length=length, reverse=reverse)


# ------------------------------------------------------------------------------------ plain RNN


def _rnn_matmul(h, w_h, dtype):
    """h [..., B, H] @ w_h [..., H, G]: per leading (direction) axis when w_h has one."""
    if w_h.ndim == 2:
        return matmul(h, w_h, dtype)
    if dtype is not None:
        return jnp.einsum("dbh,dhg->dbg", h.astype(dtype), w_h.astype(dtype),
                          preferred_element_type=jnp.float32)
    return jnp.einsum("dbh,dhg->dbg", h, w_h)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def rnn(kind: str, dtype: Any, w_h, b_h, gi, carry0, mask, steps=None, rows=None):
    """A cell scanned over time, frozen past each row's end.

    w_h [H, G·H] (or [D, H, G·H] for D directions in one loop), b_h broadcastable to gh,
    gi [T, (D,) B, G·H] the input projections, carry0 [(D,) B, H] (LSTM: (c, h)), mask [T, B]
    True at real steps: where False the carry is kept. Returns (hs [T, (D,) B, H], final carry).
    steps: a traced bound on the real length; rows: the real (t, b) rows (`rows.plan` of the
    time-major [T, B] layout) for the weight gradient.
    """
    return _rnn_fwd(kind, dtype, w_h, b_h, gi, carry0, mask, steps, rows)[0]


@scoped("rnn_fwd")
def _rnn_fwd(kind, dtype, w_h, b_h, gi, carry0, mask, steps, rows):
    def step(carry, xs):
        gi_t, m_t = xs
        gh = _rnn_matmul(hidden(kind, carry), w_h, dtype) + b_h  # gh_t = h_{t-1} W_h + b_h
        new, res = cell_forward(kind, gi_t, gh, carry)
        keep = m_t[:, None]
        new = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, carry)  # frozen past the end
        return new, (hidden(kind, new), carry, res)

    final, (hs, prev, res) = _loop(step, carry0, (gi, mask), gi.shape[0], steps)
    return (hs, final), (w_h, b_h, prev, res, mask, steps, rows)


@scoped("rnn_bwd")
def _rnn_bwd(kind, dtype, saved, cts):
    w_h, b_h, prev, res, mask, steps, rows = saved
    d_hs, d_final = cts
    w_h_t = _t(w_h)

    def step(d_carry, xs):
        d_h, prev_t, res_t, m_t = xs
        # h_t is both the output hs[t] and the carry: dh_t = d carry_t + d hs[t].
        d_new = with_hidden(kind, d_carry, hidden(kind, d_carry) + d_h)
        keep = m_t[:, None]
        d_live = jax.tree.map(lambda d: jnp.where(keep, d, 0.0), d_new)
        # Live rows: through the cell, (d gi_t, d gh_t, d carry_{t-1} direct).
        dgi, dgh, d_prev = cell_backward(kind, res_t, prev_t, d_live)
        # gh_t = h_{t-1} W_h + b_h: dh_{t-1} += dgh_t W_hᵀ.
        d_prev = with_hidden(kind, d_prev, hidden(kind, d_prev) + _rnn_matmul(dgh, w_h_t, dtype))
        # Frozen rows: carry_t = carry_{t-1}, the whole cotangent passes through.
        d_prev = _add(d_prev, jax.tree.map(lambda d: jnp.where(keep, 0.0, d), d_new))
        return d_prev, (dgi, dgh)

    d_carry0, (dgi, dgh) = _loop(step, d_final, (d_hs, prev, res, mask), d_hs.shape[0], steps,
                                 reverse=True)
    h_prev = hidden(kind, prev)
    dw_h = _outer(h_prev, dgh, rows, directions=w_h.ndim == 3)  # dW_h = Σ_t h_{t-1}ᵀ dgh_t
    # Cotangents of (w_h, b_h, gi, carry0, mask, steps, rows); db_h = Σ_t dgh_t.
    return dw_h, _sum_to(dgh, b_h.shape), dgi, d_carry0, None, None, None


rnn.defvjp(_rnn_fwd, _rnn_bwd)


# ------------------------------------------------------------------------- attention decoders


@dataclasses.dataclass(frozen=True)
class DecoderSpec:
    """The static part of an attention decoder recurrence."""

    kind: str  # Cell: "gru" | "lstm".
    score_fn: Callable  # The scorer's pure score function (Scorer.score_fn).
    attention: Any  # Its AttentionConfig (static argument of score_fn).
    attends: bool  # False for the no-attention baseline.
    uses_keys: bool  # False if the score ignores the keys (location).
    has_query: bool  # True if q = s W + b (the projection's columns lead w_s), else q = s.
    dtype: Any = None  # Matmul dtype.


def _attend(spec, q, keys, values, mask, sp):
    """(weights [B, h, S], mixed values [B, h·d]) for queries q [B, Q]; all zeros (one head)
    without attention.

    e = score(q, keys; sp), α = softmax_j(e) over the real j, mixed_h = Σ_j α_hj values_hj."""
    if not spec.attends:
        b, n = mask.shape
        return (jnp.zeros((b, 1, n), q.dtype),
                jnp.zeros((b, values.shape[2] * values.shape[3]), q.dtype))
    weights = masked_softmax(spec.score_fn(spec.attention, q, keys, sp), mask[:, None, :])
    return weights, mix(weights, values)


def _attend_bwd(spec, q, keys, values, sp, weights, d_mixed, d_weights):
    """Gradients of `_attend` (score recomputed): (dq, d keys or None, d score params)."""
    b, h, _ = weights.shape
    # mixed_h = Σ_j α_hj v_hj: dα_hj = v_hj · dmixed_h, plus α's own cotangent.
    dw = jnp.einsum("bshd,bhd->bhs", values, d_mixed.reshape(b, h, -1)) + d_weights
    # Softmax: de_j = α_j (dα_j − Σ_k α_k dα_k) (0 at padding, where α = 0).
    de = weights * (dw - jnp.sum(weights * dw, axis=-1, keepdims=True))  # [B, h, S]
    # e = score(q, keys; sp): its VJP by autodiff of the scorer's own score_fn.
    if spec.uses_keys:
        _, vjp = jax.vjp(lambda q, k, p: spec.score_fn(spec.attention, q, k, p), q, keys, sp)
        return vjp(de)
    _, vjp = jax.vjp(lambda q, p: spec.score_fn(spec.attention, q, keys, p), q, sp)
    dq, dsp = vjp(de)
    return dq, None, dsp


def _split_query(spec, s, sg, width):
    """sg = s [W_q | W] + b: (q, the rest); q = s when the scorer has no query projection."""
    if spec.has_query:
        return sg[:, :sg.shape[-1] - width], sg[:, sg.shape[-1] - width:]
    return s, sg


def _attend_step_bwd(spec, p, keys, values, xs, d_out, d_rest, ds, w_c_t, w_s_t, acc):
    """One step's attention backward, shared by both decoders.

    Forward: sg = s W_s + b_s = [q | rest] (q = s without a query projection), (α, mixed) =
    attend(q), out = ... + mixed W_c. xs = (q_t, α_t, d mixed_t, d α_t) with the outputs'
    own cotangents; d_out = d out; d_rest = d rest; ds: s's cotangent from elsewhere.
    acc = (Σ d keys, Σ d score params). Returns (d mixed_t, dsg, ds + dsg W_sᵀ (+ dq if q = s),
    acc)."""
    q_t, w_t, d_mixed, dw_t = xs
    dk_acc, dsp_acc = acc
    dq = None
    if spec.attends:
        d_mixed = d_mixed + matmul(d_out, w_c_t, spec.dtype)  # out = ... + mixed W_c
        dq, dk, dsp = _attend_bwd(spec, q_t, keys, values, p["score"], w_t, d_mixed, dw_t)
        dsp_acc = _add(dsp_acc, dsp)
        if spec.uses_keys:
            dk_acc = dk_acc + dk
    dsg = jnp.concatenate([dq, d_rest], -1) if spec.has_query and dq is not None else d_rest
    ds = ds + matmul(dsg, w_s_t, spec.dtype)  # sg = s W_s + b_s
    if dq is not None and not spec.has_query:
        ds = ds + dq  # q = s
    return d_mixed, dsg, ds, (dk_acc, dsp_acc)


def _attend_acc0(spec, p, keys):
    """The zero (Σ d keys, Σ d score params) of `_attend_step_bwd`."""
    return (jnp.zeros_like(keys) if spec.attends and spec.uses_keys else None,
            _zeros_like(p["score"]))


def _attention_grads(spec, p, keys, values, weights, mixed, d_out, d_mixed, dk_acc, rows):
    """After the backward loop: (dW_c = Σ_t mixed_tᵀ d out_t, d keys (accumulated in the loop),
    d values = Σ_t α_tᵀ d mixed_t); zeros without attention."""
    if not spec.attends:
        return jnp.zeros_like(p["w_c"]), jnp.zeros_like(keys), jnp.zeros_like(values)
    dv = jnp.einsum("tbhs,tbhe->bshe", weights,
                    d_mixed.reshape(*weights.shape[:3], -1)).reshape(values.shape)
    dk = dk_acc if spec.uses_keys else jnp.zeros_like(keys)
    return _outer(mixed, d_out, rows), dk, dv


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def bahdanau(spec: DecoderSpec, p: dict, gi_e, carry0, keys, values, mask, steps=None,
             rows=None):
    """Bahdanau decoder: q_t from s_{t-1}; c_t = attend(q_t); s_t = cell(s_{t-1}, [y; c_t]).

    p: w_s [H, Q + G·H] = [W_q | W_h], b_s [Q + G·H], w_c [h·d, G·H] (mixed values -> gates),
    score (the scorer's score params). gi_e [T, B, G·H]: the target embeddings' share of the
    input projection, bias included. keys / values / mask: the scorer's memory.
    steps, rows: as for `rnn`. Returns (states [T, B, H], mixed values [T, B, h·d],
    weights [T, B, h, S]).
    """
    return _bahdanau_fwd(spec, p, gi_e, carry0, keys, values, mask, steps, rows)[0]


@scoped("bahdanau_fwd")
def _bahdanau_fwd(spec, p, gi_e, carry0, keys, values, mask, steps, rows):
    kind, gates = spec.kind, gi_e.shape[-1]

    def step(carry, gi_t):
        s = hidden(kind, carry)  # s_{t-1}
        # [q_t | gh_t] = s_{t-1} [W_q | W_h] + [b_q | b_h]
        q, gh = _split_query(spec, s, matmul(s, p["w_s"], spec.dtype) + p["b_s"], gates)
        weights, mixed = _attend(spec, q, keys, values, mask, p["score"])
        if spec.attends:
            gi_t = gi_t + matmul(mixed, p["w_c"], spec.dtype)  # gi_t = gi_e,t + mixed_t W_c
        new, res = cell_forward(kind, gi_t, gh, carry)
        return new, (hidden(kind, new), mixed, weights, carry, res, q)

    _, (states, mixed, weights, prev, res, q) = _loop(step, carry0, gi_e, gi_e.shape[0], steps)
    return (states, mixed, weights), (p, keys, values, prev, res, q, mixed, weights, steps,
                                      rows)


@scoped("bahdanau_bwd")
def _bahdanau_bwd(spec, saved, cts):
    p, keys, values, prev, res, q, mixed, weights, steps, rows = saved
    d_states, d_mixed_out, d_weights = cts
    kind = spec.kind
    w_c_t, w_s_t = _t(p["w_c"]), _t(p["w_s"])

    def step(acc, xs):
        d_carry, attend_acc = acc
        prev_t, res_t, ds_t, attend_xs = xs
        # s_t is both the output states[t] and the carry: ds_t += d states[t].
        d_new = with_hidden(kind, d_carry, hidden(kind, d_carry) + ds_t)
        dgi, dgh, d_prev = cell_backward(kind, res_t, prev_t, d_new)
        # gi_t feeds mixed_t W_c; [q_t | gh_t] = s_{t-1} W_s + b_s: dsg = [dq | dgh].
        d_mixed, dsg, ds, attend_acc = _attend_step_bwd(
            spec, p, keys, values, attend_xs, dgi, dgh, hidden(kind, d_prev), w_c_t, w_s_t,
            attend_acc)
        return (with_hidden(kind, d_prev, ds), attend_acc), (dgi, dsg, d_mixed)

    acc0 = (_zeros_like(jax.tree.map(lambda x: x[0], prev)), _attend_acc0(spec, p, keys))
    xs = (prev, res, d_states, (q, weights, d_mixed_out, d_weights))
    (d_carry0, (dk_acc, dsp)), (dgi, dsg, d_mixed) = _loop(step, acc0, xs, d_states.shape[0],
                                                           steps, reverse=True)
    dw_c, dk, dv = _attention_grads(spec, p, keys, values, weights, mixed, dgi, d_mixed, dk_acc,
                                    rows)
    # dW_s = Σ_t s_{t-1}ᵀ dsg_t, db_s = Σ_t dsg_t; d gi_e = dgi.
    grads = {"w_s": _outer(hidden(kind, prev), dsg, rows), "b_s": dsg.sum((0, 1)), "w_c": dw_c,
             "score": dsp}
    # Cotangents of (p, gi_e, carry0, keys, values, mask, steps, rows).
    return grads, dgi, d_carry0, dk, dv, None, None, None


bahdanau.defvjp(_bahdanau_fwd, _bahdanau_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def luong(spec: DecoderSpec, p: dict, gi_e, carry0, keys, values, mask, steps=None, rows=None):
    """Luong decoder with input feeding: s_t = cell(s_{t-1}, [y; h̃_{t-1}]); q_t from s_t;
    c_t = attend(q_t); h̃_t = tanh(W_c [c_t; s_t]).

    p: w_f [O, G·H] (h̃_{t-1} -> gates), w_h [H, G·H], b_h [G·H], w_s [H, Q + O] = [W_q | W_cs],
    b_s [Q + O], w_c [h·d, O] (mixed values -> attentional state), score. carry0: (cell carry,
    h̃_0). steps, rows: as for `rnn`. Returns (states, mixed values, weights, attentional
    states h̃ [T, B, O]).
    """
    return _luong_fwd(spec, p, gi_e, carry0, keys, values, mask, steps, rows)[0]


@scoped("luong_fwd")
def _luong_fwd(spec, p, gi_e, carry0, keys, values, mask, steps, rows):
    kind, out = spec.kind, p["w_f"].shape[0]

    def step(carry, gi_t):
        cell_carry, feed = carry  # (carry_{t-1}, h̃_{t-1})
        gi_t = gi_t + matmul(feed, p["w_f"], spec.dtype)  # gi_t = gi_e,t + h̃_{t-1} W_f
        gh = matmul(hidden(kind, cell_carry), p["w_h"], spec.dtype) + p["b_h"]
        new, res = cell_forward(kind, gi_t, gh, cell_carry)
        s = hidden(kind, new)  # s_t
        # [q_t | pre_t] = s_t [W_q | W_cs] + b_s
        q, pre = _split_query(spec, s, matmul(s, p["w_s"], spec.dtype) + p["b_s"], out)
        weights, mixed = _attend(spec, q, keys, values, mask, p["score"])
        if spec.attends:
            pre = pre + matmul(mixed, p["w_c"], spec.dtype)  # + mixed_t W_c
        h_tilde = jnp.tanh(pre)  # h̃_t
        return (new, h_tilde), (s, mixed, weights, h_tilde, cell_carry, feed, res, q)

    _, (states, mixed, weights, h_tilde, prev, feed, res, q) = _loop(step, carry0, gi_e,
                                                                     gi_e.shape[0], steps)
    saved = (p, keys, values, prev, feed, res, q, states, mixed, weights, h_tilde, steps, rows)
    return (states, mixed, weights, h_tilde), saved


@scoped("luong_bwd")
def _luong_bwd(spec, saved, cts):
    p, keys, values, prev, feed, res, q, states, mixed, weights, h_tilde, steps, rows = saved
    d_states, d_mixed_out, d_weights, d_h_tilde = cts
    kind = spec.kind
    w_c_t, w_s_t, w_h_t, w_f_t = (_t(p[k]) for k in ("w_c", "w_s", "w_h", "w_f"))

    def step(acc, xs):
        (d_cell, d_feed), attend_acc = acc
        prev_t, res_t, ht_t, ds_t, dht_t, attend_xs = xs
        # h̃_t is an output and the next step's feed: d pre_t = (d feed + d h̃_t)(1 − h̃_t²).
        d_pre = (d_feed + dht_t) * (1.0 - ht_t * ht_t)
        # pre_t = rest_t + mixed_t W_c; [q_t | rest_t] = s_t W_s + b_s: dsq = [dq | d pre_t].
        d_mixed, dsq, ds, attend_acc = _attend_step_bwd(
            spec, p, keys, values, attend_xs, d_pre, d_pre, hidden(kind, d_cell) + ds_t, w_c_t,
            w_s_t, attend_acc)
        dgi, dgh, d_prev = cell_backward(kind, res_t, prev_t, with_hidden(kind, d_cell, ds))
        # gh_t = s_{t-1} W_h + b_h: ds_{t-1} += dgh_t W_hᵀ.
        d_prev = with_hidden(kind, d_prev,
                             hidden(kind, d_prev) + matmul(dgh, w_h_t, spec.dtype))
        d_feed_prev = matmul(dgi, w_f_t, spec.dtype)  # gi_t ∋ h̃_{t-1} W_f: d h̃_{t-1}
        return ((d_prev, d_feed_prev), attend_acc), (dgi, dgh, dsq, d_pre, d_mixed)

    first = lambda x: x[0]  # noqa: E731
    acc0 = ((_zeros_like(jax.tree.map(first, prev)), jnp.zeros_like(h_tilde[0])),
            _attend_acc0(spec, p, keys))
    xs = (prev, res, h_tilde, d_states, d_h_tilde, (q, weights, d_mixed_out, d_weights))
    (d_carry0, (dk_acc, dsp)), (dgi, dgh, dsq, d_pre, d_mixed) = _loop(
        step, acc0, xs, d_states.shape[0], steps, reverse=True)
    dw_c, dk, dv = _attention_grads(spec, p, keys, values, weights, mixed, d_pre, d_mixed,
                                    dk_acc, rows)
    # dW_f = Σ_t h̃_{t-1}ᵀ dgi_t, dW_h = Σ_t s_{t-1}ᵀ dgh_t, dW_s = Σ_t s_tᵀ dsq_t, biases: Σ_t.
    grads = {"w_f": _outer(feed, dgi, rows), "w_h": _outer(hidden(kind, prev), dgh, rows),
             "b_h": dgh.sum((0, 1)), "w_s": _outer(states, dsq, rows), "b_s": dsq.sum((0, 1)),
             "w_c": dw_c, "score": dsp}
    # Cotangents of (p, gi_e, carry0 = (cell carry, h̃_0), keys, values, mask, steps, rows).
    return grads, dgi, d_carry0, dk, dv, None, None, None


luong.defvjp(_luong_fwd, _luong_bwd)
