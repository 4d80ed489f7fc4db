"""Pure, jittable step functions over K vmapped replicas (seeds).

Every leaf of the training state carries a leading replica axis K (K = train.num_seeds, 1 for an
ordinary run): `jax.vmap` turns one replica's step into K independent ones in a single compiled
program. Token metrics are kept as (sum, weight) with padding weight 0 and divided only when
logged, so batches with different amounts of padding average correctly.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from attn_jax import decode, models


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # [K] int32
    params: Any  # pytree, leaves [K, ...]
    opt_state: Any  # pytree, leaves [K, ...]
    key: jax.Array  # [K, 2] raw uint32 PRNG key data (dropout), folded with the step


def make_optimizer(train: ml_collections.ConfigDict, num_steps: int):
    """(optimizer, schedule): Adam with global-norm clipping, linear warmup, then cosine decay
    (or constant)."""
    warmup = min(train.warmup_steps, max(num_steps - 1, 0))
    if train.schedule == "cosine":
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, train.learning_rate, warmup_steps=warmup, decay_steps=max(num_steps, warmup + 1),
            end_value=train.learning_rate * train.end_lr_factor)
    else:
        schedule = optax.join_schedules(
            [optax.linear_schedule(0.0, train.learning_rate, max(warmup, 1)),
             optax.constant_schedule(train.learning_rate)], [warmup])
    clip = optax.clip_by_global_norm(train.grad_clip) if train.grad_clip else optax.identity()
    return optax.chain(clip, optax.adam(schedule)), schedule


def init_state(model: models.Seq2Seq, tx: optax.GradientTransformation, seeds, src_len: int,
               tgt_len: int) -> TrainState:
    """K replicas, replica k initialised from jax.random.key(seeds[k]).

    Replicas are initialised one at a time (one compiled init, reused) and stacked: a vmapped
    init would batch the GRU's orthogonal-init QR decompositions, which deadlocks XLA's CPU
    thread pool on 2 cores.
    """

    @jax.jit
    def one(seed):
        key = jax.random.key(seed)
        params = models.init_params(model, jax.random.fold_in(key, 0), src_len, tgt_len)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=tx.init(params),
                          key=jax.random.key_data(jax.random.fold_in(key, 1)))

    replicas = [one(jnp.uint32(seed)) for seed in seeds]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *replicas)


def cross_entropy(logits: jax.Array, targets: jax.Array, smoothing: float = 0.0):
    """Token cross-entropy per row: logits [B, T, V], targets [B, T] -> (loss, nll, weight), each
    [B] sums over the row's real tokens. loss includes label smoothing; nll is the plain negative
    log-likelihood (for perplexity)."""
    weights = (targets != models.PAD).astype(jnp.float32)  # [B, T]
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))  # [B, T, V]
    nll = -jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]  # [B, T]
    loss = (1 - smoothing) * nll - smoothing * logp.mean(-1) if smoothing else nll
    return (loss * weights).sum(-1), (nll * weights).sum(-1), weights.sum(-1)


def _train_step_one(model, tx, smoothing, state: TrainState, batch):
    dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)

    def loss_fn(params):
        logits, _ = model.apply({"params": params}, batch["src"], batch["tgt_in"],
                                deterministic=False, rngs={"dropout": dropout_key})
        loss, nll, weight = (x.sum() for x in cross_entropy(logits, batch["tgt_out"], smoothing))
        return loss / jnp.maximum(weight, 1.0), (nll, weight)

    (_, (nll, weight)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"nll_sum": nll, "weight": weight, "grad_norm": optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def make_train_step(model, tx, smoothing: float):
    """(state [K...], batch [K, B, L]) -> (state, metrics [K]); jitted, state donated."""
    step = functools.partial(_train_step_one, model, tx, smoothing)
    return jax.jit(jax.vmap(step), donate_argnums=0)


def _eval_one(model, max_len: int, params, batch):
    """Teacher-forced loss + attention, and greedy decoding, for one replica."""
    logits, aux = model.apply({"params": params}, batch["src"], batch["tgt_in"])
    _, nll, weight = cross_entropy(logits, batch["tgt_out"])  # [B] each
    memory, carry = model.apply({"params": params}, batch["src"], method="encode")

    def step_fn(ids, carry):
        carry, logits, attn = model.apply({"params": params}, carry, ids, memory,
                                          method="decode_step")
        return logits, attn, carry

    out = decode.greedy(step_fn, carry, batch_size=batch["src"].shape[0], max_len=max_len)
    return {"nll": nll, "weight": weight, "forced_attention": aux["attention"],
            "tokens": out["tokens"], "attention": out["attention"]}


def make_eval_step(model, extra_len: int):
    """(params [K...], batch [B, L]) -> per replica: per-row nll and weight [K, B], forced
    attention [K, B, T, S],
    greedy tokens [K, B, L + extra_len] and their attention. One compile per bucket."""

    @jax.jit
    def step(params, batch):
        max_len = batch["src"].shape[1] + extra_len
        one = functools.partial(_eval_one, model, max_len)
        return jax.vmap(one, in_axes=(0, None))(params, batch)

    return step


def make_beam_step(model, beam_size: int, extra_len: int):
    """(params of ONE replica, src [B, L], alpha) -> beam search outputs (best first)."""

    @jax.jit
    def step(params, src, alpha):
        memory, carry = model.apply({"params": params}, src, method="encode")
        memory, carry = decode.tile_beams((memory, carry), beam_size)

        def step_fn(ids, carry):
            carry, logits, attn = model.apply({"params": params}, carry, ids, memory,
                                              method="decode_step")
            return logits, attn, carry

        return decode.beam_search(step_fn, carry, batch_size=src.shape[0], beam_size=beam_size,
                                  max_len=src.shape[1] + extra_len, alpha=alpha)

    return step
