"""Token cross-entropy: a reference on full logits, and the fused output head used for training.

The output head maps decoder features to the vocabulary: an optional hidden layer
tanh(x W_1 + b_1) (Bahdanau's deep output, Luong's attentional layer), dropout, logits
x W_2 + b_2 over V words. `head_loss` never holds logits for more than `chunk` rows at a time,
and computes them only for real (non-padding) target positions: rows are sorted so that real ones
come first and a loop visits only the chunks that hold any. Its gradient is computed in the same
pass (a custom VJP: logits are never stored), so training memory does not grow with V, and a
padded position costs nothing. Tests check values and gradients against `cross_entropy` on full
logits.

Token metrics are kept as (sum, weight) with padding weight 0 and divided only when logged.

Attention terms: `doubly_stochastic` (Xu et al.'s penalty) and supervised attention
(`gold_attention` builds each target token's gold distribution from compact links,
`alignment_kl` sums KL(gold_t || α_t) over the target tokens that have gold links).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from attn_jax.model import rows as rows_lib
from attn_jax.model.layers import matmul, scoped


def cross_entropy(logits: jax.Array, targets: jax.Array, weights: jax.Array,
                  smoothing: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """Per-token (loss, nll): logits [..., V], targets [...] -> each [...], times weights.

    loss = (1 - ε) nll - ε mean_v log p_v (label smoothing ε); nll = -log p_target.
    """
    loss, nll = _token_losses(jax.nn.log_softmax(logits.astype(jnp.float32)), targets, smoothing)
    return loss * weights, nll * weights


def doubly_stochastic(attention: jax.Array, target_mask: jax.Array,
                      source_mask: jax.Array) -> jax.Array:
    """Xu et al. (2015)'s doubly stochastic attention penalty, summed over sentences:
    Σ_b Σ_j (1 - Σ_t α_btj)² over real target tokens t and real source positions j.

    attention [B, T, S], target_mask [B, T], source_mask [B, S] -> a scalar."""
    mass = jnp.einsum("bts,bt->bs", attention.astype(jnp.float32),
                      target_mask.astype(jnp.float32))  # [B, S]: Σ_t α_tj
    return jnp.sum(jnp.where(source_mask, (1.0 - mass) ** 2, 0.0))


# The smallest α whose log `alignment_kl` takes: a gold link the model gives exactly 0 weight
# (softmax underflow) costs -log(tiny) ≈ 87.3 nats instead of infinity.
_TINY = float(jnp.finfo(jnp.float32).tiny)


def gold_attention(links: jax.Array, num_targets: int, num_sources: int,
                   possible_weight: float = 1.0) -> jax.Array:
    """Each target token's gold attention: links [B, M, 2] of (target token t, source token j)
    pairs, or [B, M, 3] with a third column 1 for a sure link and 0 for a possible-only one,
    -1 rows for padding -> [B, T, S] (T = num_targets, S = num_sources): row t gives each of t's
    linked source tokens weight 1 (sure) or possible_weight (possible-only), normalised to sum
    to 1 (all zeros: t has no link of weight > 0). A link repeated counts once. Jittable; links
    outside [0, T) x [0, S) are dropped."""
    b = links.shape[0]
    t, j = links[..., 0], links[..., 1]  # [B, M]
    real = (t >= 0) & (t < num_targets) & (j >= 0) & (j < num_sources)
    weight = (jnp.where(links[..., 2] > 0, 1.0, possible_weight) if links.shape[-1] == 3
              else jnp.ones(t.shape, jnp.float32))  # [B, M]
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], t.shape)
    # Padding goes out of range and is dropped (a negative index would wrap around).
    marks = jnp.zeros((b, num_targets, num_sources), jnp.float32).at[
        rows, jnp.where(real, t, num_targets), jnp.where(real, j, num_sources)].set(
        weight, mode="drop")  # [B, T, S]
    return marks / jnp.where(marks.sum(-1, keepdims=True) > 0, marks.sum(-1, keepdims=True), 1.0)


def alignment_kl(attention: jax.Array, gold: jax.Array) -> jax.Array:
    """Supervised attention's term: Σ_b Σ_t KL(g_bt || α_bt) = Σ g (log g - log α) over the
    target rows t whose gold g_bt (`gold_attention`, [B, T, S]) is not all zeros; other rows
    (tokens without links, EOS, padding) add nothing. The cross-entropy -Σ g log α less the
    gold's own entropy: the same gradient, and exactly 0.0 where α_bt equals g_bt.

    attention [B, T, S] (rows summing to 1 over real sources), gold [B, T, S] -> a scalar. Only
    the entries where g > 0 are read, so α's other entries (padding, rows past the longest
    target) carry no gradient whatever they hold."""
    a, g = attention.astype(jnp.float32), gold.astype(jnp.float32)
    linked = g > 0
    log_g = jnp.log(jnp.where(linked, g, 1.0))
    log_a = jnp.log(jnp.where(linked, jnp.maximum(a, _TINY), 1.0))
    return jnp.sum(jnp.where(linked, g * (log_g - log_a), 0.0))


def _token_losses(logp: jax.Array, targets: jax.Array, smoothing: float):
    """(loss, nll) of log-probabilities logp [..., V] for targets [...]: nll = -log p_target,
    loss = (1 - ε) nll - ε mean_v log p_v (nll when ε = 0)."""
    nll = -jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]
    loss = (1 - smoothing) * nll - smoothing * logp.mean(-1) if smoothing else nll
    return loss, nll


def _hidden(head, x, dtype):
    if head.get("w1") is None:
        return x
    pre = matmul(x, head["w1"], dtype)
    return jnp.tanh(pre if head.get("b1") is None else pre + head["b1"])


def _dropout_mask(key, i, shape, rate):
    keep = jax.random.bernoulli(jax.random.fold_in(key, i), 1.0 - rate, shape)
    return keep.astype(jnp.float32) / (1.0 - rate)


def _chunk_forward(head, xc, tc, wc, mask, smoothing, dtype):
    """One chunk: (hidden activations, dropped hidden, log-probs, per-row loss, per-row nll)."""
    h = _hidden(head, xc, dtype)
    hd = h if mask is None else h * mask
    logp = jax.nn.log_softmax(matmul(hd, head["w2"], dtype) + head["b2"])  # [R, V]
    loss, nll = _token_losses(logp, tc, smoothing)
    return h, hd, logp, loss * wc, nll * wc


@scoped("token_nll")
def token_nll(head, x, targets, weights, plan: rows_lib.Rows, *, dtype: Any = None) -> jax.Array:
    """Per-row nll [N] (0 at weight-0 rows) without logits for more than a chunk of rows at once.

    plan: the rows with weight != 0 (`rows.plan`)."""
    chunk = plan.chunk
    xs, ts, ws = (rows_lib.gather(a, plan) for a in (x, targets, weights))

    def body(i, out):
        take = lambda a: jax.lax.dynamic_slice_in_dim(a, i * chunk, chunk)  # noqa: E731
        nll = _chunk_forward(head, take(xs), take(ts), take(ws), None, 0.0, dtype)[4]
        return jax.lax.dynamic_update_slice_in_dim(out, nll, i * chunk, 0)

    nll = jax.lax.fori_loop(0, plan.chunks, body, jnp.zeros(ws.shape, jnp.float32))
    return rows_lib.scatter(nll, plan)


def head_loss(head: dict[str, Any], x: jax.Array, targets: jax.Array, weights: jax.Array,
              plan: rows_lib.Rows, *, smoothing: float = 0.0, dropout_rate: float = 0.0,
              dropout_key: jax.Array | None = None,
              dtype: Any = None) -> tuple[jax.Array, jax.Array]:
    """(Σ weight·loss, Σ weight·nll) over rows x [N, F] with targets [N] and weights [N].

    plan: `rows.plan` of the rows with weight != 0 (its bound shared by vmapped replicas).
    Differentiable in head and x (the nll sum is for logging and carries no gradient).
    """
    key = dropout_key if dropout_rate > 0 else None
    loss, nll = _head_loss(smoothing, dropout_rate, dtype, head, x, targets, weights, key, plan)
    return loss, jax.lax.stop_gradient(nll)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _head_loss(smoothing, rate, dtype, head, x, targets, weights, key, plan):
    return _head_loss_fwd(smoothing, rate, dtype, head, x, targets, weights, key, plan,
                          grads=False)[0]


@scoped("head_loss")
def _head_loss_fwd(smoothing, rate, dtype, head, x, targets, weights, key, plan, grads=True):
    chunk = plan.chunk
    xs, ts, ws = (rows_lib.gather(a, plan) for a in (x, targets, weights))
    vocab = head["w2"].shape[1]
    w2_t = head["w2"].T  # Once, not per chunk.
    w1_t = None if head.get("w1") is None else head["w1"].T
    zero = jnp.zeros((), jnp.float32)
    acc0 = {"loss": zero, "nll": zero}
    if grads:
        acc0["head"] = jax.tree.map(jnp.zeros_like, head)
        acc0["dx"] = jnp.zeros(xs.shape, x.dtype)

    def body(i, acc):
        rows = i * chunk
        take = lambda a: jax.lax.dynamic_slice_in_dim(a, rows, chunk)  # noqa: E731
        xc, tc, wc = take(xs), take(ts), take(ws)
        width = head["w2"].shape[0]
        mask = None if key is None else _dropout_mask(key, i, (chunk, width), rate)
        h, hd, logp, loss, nll = _chunk_forward(head, xc, tc, wc, mask, smoothing, dtype)
        acc = dict(acc, loss=acc["loss"] + loss.sum(), nll=acc["nll"] + nll.sum())
        if not grads:
            return acc
        # d loss / d logits = softmax - (1 - ε) onehot - ε / V, per row times its weight.
        dlogits = jnp.exp(logp) - (1 - smoothing) * jax.nn.one_hot(tc, vocab, dtype=logp.dtype)
        if smoothing:
            dlogits = dlogits - smoothing / vocab
        dlogits = dlogits * wc[:, None]
        g = dict(acc["head"])
        # logits = hd W_2 + b_2: dW_2 += hdᵀ dlogits, db_2 += Σ dlogits, dhd = dlogits W_2ᵀ.
        g["w2"] = g["w2"] + matmul(hd.T, dlogits, dtype)
        g["b2"] = g["b2"] + dlogits.sum(0)
        dh = matmul(dlogits, w2_t, dtype)
        if mask is not None:
            dh = dh * mask  # hd = h ⊙ mask (inverted dropout)
        if head.get("w1") is None:
            dxc = dh
        else:
            # h = tanh(x W_1 + b_1): d pre = dh (1 − h²), dW_1 += xᵀ d pre, dx = d pre W_1ᵀ.
            dpre = dh * (1.0 - h * h)
            g["w1"] = g["w1"] + matmul(xc.T, dpre, dtype)
            if head.get("b1") is not None:
                g["b1"] = g["b1"] + dpre.sum(0)
            dxc = matmul(dpre, w1_t, dtype)
        dx = jax.lax.dynamic_update_slice_in_dim(acc["dx"], dxc.astype(x.dtype), rows, 0)
        return dict(acc, head=g, dx=dx)

    acc = jax.lax.fori_loop(0, plan.chunks, body, acc0)
    if not grads:
        return (acc["loss"], acc["nll"]), None
    return (acc["loss"], acc["nll"]), (acc["head"], rows_lib.scatter(acc["dx"], plan), weights)


def _head_loss_bwd(smoothing, rate, dtype, saved, cts):
    d_head, dx, weights = saved
    g_loss, _ = cts  # The nll output is behind stop_gradient (see head_loss).
    # The forward computed d(Σ loss)/d(head, x); scale by the incoming cotangent. Cotangents of
    # (head, x, targets, weights, key, plan).
    scale = lambda t: None if t is None else t * g_loss  # noqa: E731
    return (jax.tree.map(scale, d_head, is_leaf=lambda t: t is None), scale(dx), None,
            jnp.zeros_like(weights), None, None)


_head_loss.defvjp(functools.partial(_head_loss_fwd, grads=True), _head_loss_bwd)
