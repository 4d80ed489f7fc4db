"""Alignments from attributions: how much each source word contributes to each target word.

Ding et al. (2019) found that gradient-based attributions of a translation model align with the
gold better than its attention. For target token t and source token j, with e_j the source
embedding (the `src_embed` lookup, before any scaling or positions) and f_t = log p(y_t | y_<t, x)
the teacher-forced log-probability of the reference token:

    saliency              ‖∂f_t/∂e_j‖₂
    grad_x_input          (∂f_t/∂e_j) · e_j                       (first-order Taylor share)
    integrated_gradients  e_j · (1/m) Σ_{k=1..m} ∂f_t/∂e_j |_{e = (k - ½)/m · e}
                          (Sundararajan et al. 2017; baseline: all-zero source embeddings,
                          midpoint rule with m = ig_steps points; Σ_j attributions ≈ f_t(e) −
                          f_t(0): completeness)

giving a map [T, S] per sentence in the shape of the attention α. `attention` is α itself. The
maps go through the same word mapping as attention (`metrics.word_alignment`: a source word sums
its tokens' columns, a target word averages its tokens' rows; each target word links to its
argmax source word), so AER compares like with like. The signed methods link a target word to the
source word that raises its probability most.

The gradients are of the model's own teacher-forced logits (`__call__`: for the RNN the fused
recurrences and their hand-written backward passes, held to plain autodiff by the tests), one
backward pass per target position (vmapped over T), times ig_steps for integrated gradients. The
embedding lookup is replaced through `flax.linen.intercept_methods`, so every model family whose
source tokens go through a module named `src_embed` works unchanged, whatever its scorer (the
no-attention baseline included: its attributions still align). Image encoders have no source
embeddings and are refused.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from attn_jax.data.tokens import PAD

ATTENTION = "attention"
GRADIENT_METHODS = ("saliency", "grad_x_input", "integrated_gradients")
METHODS = (ATTENTION, *GRADIENT_METHODS)
EMBED = "src_embed"  # The module whose output the attributions differentiate.


def check_methods(methods: str | Sequence[str], ig_steps: int, what: str = "--method",
                  allowed: Sequence[str] = METHODS) -> tuple[str, ...]:
    """The method names of a comma-separated string or a sequence, checked: an unknown name or
    ig_steps < 1 (when integrated gradients is asked for) raises a one-line ValueError."""
    names = tuple(m.strip() for m in methods.split(",") if m.strip()) \
        if isinstance(methods, str) else tuple(methods)
    for name in names:
        if name not in allowed:
            raise ValueError(f"Unknown attribution method {name!r} in {what}; valid: "
                             f"{', '.join(allowed)}.")
    if "integrated_gradients" in names and ig_steps < 1:
        raise ValueError(f"ig_steps must be >= 1 for integrated_gradients, got {ig_steps} "
                         "(e.g. --ig_steps=16).")
    return names


def check_model(model_config: Any) -> None:
    """Refuses a model without source embeddings (the RNN's image encoder)."""
    if getattr(model_config, "encoder", "rnn") != "rnn":
        raise ValueError("attributions differentiate the source word embeddings, which an image "
                         f"encoder (model.encoder={model_config.encoder!r}) does not have; use "
                         "the attention method, or the grounding metrics for images.")


def _with_embeddings(embeddings: jax.Array):
    """An interceptor that makes `src_embed` return `embeddings` instead of its lookup."""

    def interceptor(next_fun, args, kwargs, context):
        if context.module.name == EMBED and context.method_name == "__call__":
            return embeddings.astype(next_fun(*args, **kwargs).dtype)
        return next_fun(*args, **kwargs)

    return interceptor


def log_probs(model, params, src: jax.Array, tgt_in: jax.Array, tgt_out: jax.Array,
              embeddings: jax.Array | None = None) -> jax.Array:
    """Teacher-forced log p(tgt_out[t]) [B, T] (0 at padding), optionally with the source
    embeddings [B, S, E] replaced by `embeddings`."""
    def run():
        logits, _ = model.apply({"params": params}, src, tgt_in)  # [B, T, V]
        logp = jax.nn.log_softmax(logits.astype(jnp.float32))
        picked = jnp.take_along_axis(logp, tgt_out[..., None], -1)[..., 0]
        return jnp.where(tgt_out != PAD, picked, 0.0)

    if embeddings is None:
        return run()
    with nn.intercept_methods(_with_embeddings(embeddings)):
        return run()


def source_embeddings(params, src: jax.Array) -> jax.Array:
    """The `src_embed` lookup of src [B, S] -> [B, S, E]."""
    return params[EMBED]["embedding"][src]


def per_target_grads(f: Callable[[jax.Array], jax.Array],
                     x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(f(x) [B, T], ∂f[b, t]/∂x[b] for every t: [B, T, ...x.shape[1:]]) for an f whose rows b
    depend only on x[b]: one VJP, pulled back once per target position (vmapped)."""
    out, vjp = jax.vjp(f, x)
    basis = jnp.eye(out.shape[1], dtype=out.dtype)  # [T, T]
    grads = jax.vmap(lambda e: vjp(jnp.broadcast_to(e, out.shape))[0])(basis)  # [T, B, ...]
    return out, jnp.moveaxis(grads, 0, 1)


def attribution_maps(model, params, src: jax.Array, tgt_in: jax.Array, tgt_out: jax.Array,
                     methods: Sequence[str], ig_steps: int = 16) -> dict[str, jax.Array]:
    """{method: [B, T, S]} for the gradient methods in `methods` (module docstring); rows of
    padded target positions and columns of padded source positions are 0."""
    e = source_embeddings(params, src)  # [B, S, E]
    f = functools.partial(log_probs, model, params, src, tgt_in, tgt_out)
    mask = ((src != PAD)[:, None, :] & (tgt_out != PAD)[:, :, None]).astype(jnp.float32)
    out = {}
    if "saliency" in methods or "grad_x_input" in methods:
        _, g = per_target_grads(f, e)  # [B, T, S, E]
        if "saliency" in methods:
            out["saliency"] = jnp.sqrt(jnp.sum(g * g, -1)) * mask
        if "grad_x_input" in methods:
            out["grad_x_input"] = jnp.einsum("btse,bse->bts", g, e) * mask
    if "integrated_gradients" in methods:
        out["integrated_gradients"] = integrated_gradients(f, e, ig_steps) * mask
    return out


def integrated_gradients(f: Callable[[jax.Array], jax.Array], x: jax.Array,
                         steps: int) -> jax.Array:
    """x · mean of ∂f/∂x over the midpoints (k - ½)/steps of the straight path from 0 to x, per
    target position: [B, T, S] summed over the last axis of x [B, S, E]."""
    def body(total, k):
        _, g = per_target_grads(f, (k + 0.5) / steps * x)
        return total + g, None

    zero = jnp.zeros((x.shape[0], jax.eval_shape(f, x).shape[1], *x.shape[1:]), jnp.float32)
    total, _ = jax.lax.scan(body, zero, jnp.arange(steps, dtype=jnp.float32))
    return jnp.einsum("btse,bse->bts", total / steps, x)


def make_scorer(model, methods: Sequence[str], ig_steps: int = 16):
    """A jitted (params [K...], batch) -> {method: [K, B, T, S]} over K replicas: the maps of
    `attribution_maps` for every replica (`batch`: src, tgt_in, tgt_out [B, L])."""
    methods = tuple(m for m in methods if m != ATTENTION)

    @jax.jit
    def score(params, batch):
        one = lambda p: attribution_maps(model, p, batch["src"], batch["tgt_in"],  # noqa: E731
                                         batch["tgt_out"], methods, ig_steps)
        return jax.lax.map(one, params)  # One replica at a time: memory of one.

    return score
