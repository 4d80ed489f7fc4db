"""Pure, jittable step functions over K vmapped replicas (seeds).

Every leaf of the training state carries a leading replica axis K (K = train.num_seeds, 1 for an
ordinary run): `jax.vmap` turns one replica's step into K independent ones in a single compiled
program. Token metrics are kept as (sum, weight) with padding weight 0 and divided only when
logged, so batches with different amounts of padding average correctly.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import PartitionSpec as P

from attn_jax.data.tokens import PAD
from attn_jax.eval import decode
from attn_jax.model import arch
from attn_jax.model import loss as loss_lib
from attn_jax.run import sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # [K] int32
    params: Any  # pytree, leaves [K, ...]
    opt_state: Any  # pytree, leaves [K, ...]
    key: jax.Array  # [K, 2] raw uint32 PRNG key data (dropout), folded with the step


def compiler_options() -> dict[str, Any] | None:
    """XLA options for the jitted steps. On CPU, LLVM optimisation level 1: the matmuls are
    library calls either way, and it compiles the many small loop kernels faster at the same
    step time (level 0 would slow the elementwise kernels). A level named in XLA_FLAGS wins
    (the test suite compiles at 0: tests/conftest.py)."""
    if (jax.default_backend() != "cpu"
            or "xla_backend_optimization_level" in os.environ.get("XLA_FLAGS", "")):
        return None
    return {"xla_backend_optimization_level": 1}


def make_optimizer(train: ml_collections.ConfigDict, num_steps: int):
    """(optimizer, schedule): Adam with global-norm clipping, linear warmup to the peak, then
    cosine decay, a constant rate, or (rsqrt) the inverse square root of Vaswani et al.:
    peak · sqrt(warmup / step) from the end of the warmup on."""
    warmup = min(train.warmup_steps, max(num_steps - 1, 0))
    if train.schedule == "cosine":
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, train.learning_rate, warmup_steps=warmup, decay_steps=max(num_steps, warmup + 1),
            end_value=train.learning_rate * train.end_lr_factor)
    elif train.schedule == "rsqrt":
        peak, w = train.learning_rate, max(warmup, 1)
        schedule = optax.join_schedules(
            [optax.linear_schedule(0.0, peak, w),
             lambda count: peak * jnp.sqrt(w / jnp.maximum(count + w, 1).astype(jnp.float32))],
            [w])
    else:
        schedule = optax.join_schedules(
            [optax.linear_schedule(0.0, train.learning_rate, max(warmup, 1)),
             optax.constant_schedule(train.learning_rate)], [warmup])
    clip = optax.clip_by_global_norm(train.grad_clip) if train.grad_clip else optax.identity()
    return optax.chain(clip, optax.adam(schedule)), schedule


def init_state(model, tx: optax.GradientTransformation, seeds, src_len: int) -> TrainState:
    """K replicas, replica k initialised from jax.random.key(seeds[k]).

    Replicas are initialised one at a time (one compiled init, reused) and stacked: a vmapped
    init would batch the GRU's orthogonal-init QR decompositions, which can deadlock XLA's CPU
    thread pool on a host with few cores.
    """

    @jax.jit
    def one(seed):
        key = jax.random.key(seed)
        params = arch.of(model.config).init_params(model, jax.random.fold_in(key, 0), src_len)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=tx.init(params),
                          key=jax.random.key_data(jax.random.fold_in(key, 1)))

    replicas = [one(jnp.uint32(seed)) for seed in seeds]
    state = jax.tree.map(lambda *xs: jnp.stack(xs), *replicas)
    # Committed to its device, as a restored checkpoint is: jit caches committed and uncommitted
    # arguments apart, so evaluating restored parameters would otherwise compile every shape again.
    return jax.device_put(state, jax.local_devices()[0])


def extent(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Bounds over every replica of a [K, B, L] batch: the longest source and target (tokens up to
    and including EOS) and the most real target tokens of one replica. The fused loops stop there,
    so padding past the longest sentence costs nothing (one trip count for all replicas)."""
    def longest(x):  # [K, B, L] -> the last real position + 1, over all rows
        return jnp.max(jnp.where(x != PAD, jnp.arange(x.shape[-1]) + 1, 0))

    def most(x):  # [K, B, L] -> the most real tokens of one replica
        return jnp.max(jnp.sum(x != PAD, axis=(1, 2)))

    src = batch["src"]  # Images [K, B, H, W, 3] have no source bounds: every cell is real.
    bounds = {"src": longest(src), "src_rows": most(src)} if src.ndim == 3 else {}
    return {**bounds, "tgt": longest(batch["tgt_out"]), "rows": most(batch["tgt_out"])}


def supervised_attention(attention: jax.Array, links: jax.Array,
                         possible_weight: float = 1.0) -> dict[str, jax.Array]:
    """Supervised attention's term for one batch: {"align_sum": Σ_t KL(gold_t || α_t) over the
    target tokens with gold links (`loss.alignment_kl`), "align_tokens": how many tokens those
    are}. attention [B, T, S] (the model's teacher-forced α), links [B, M, 3] (the batch's);
    possible_weight: a possible-only link's weight in gold_t beside a sure one's 1."""
    gold = loss_lib.gold_attention(links, attention.shape[1], attention.shape[2],
                                   possible_weight)  # [B, T, S]
    return {"align_sum": loss_lib.alignment_kl(attention, gold),
            "align_tokens": jnp.sum(gold.sum(-1) > 0).astype(jnp.float32)}


def _train_step_one(model, tx, smoothing, penalty, align, shard_keys: bool,
                    state: TrainState, batch, bounds):
    """One replica's step inside the layout's shard_map: the batch is this device's rows, so the
    token count and the gradients are summed over the `data` axis (the update is the one of the
    whole batch). With `shard_keys` each device folds its `data` index into the dropout key, so
    every shard draws its own masks. align = (weight, possible weight): weight > 0 adds weight ·
    `supervised_attention` to the summed token loss (so per token, like it, once divided by the
    token count)."""
    align_weight, possible_weight = align
    dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    if shard_keys:
        dropout_key = jax.random.fold_in(dropout_key, jax.lax.axis_index(sharding.DATA))
    weight = jax.lax.psum(jnp.sum(batch["tgt_out"] != PAD).astype(jnp.float32),
                          sharding.DATA)

    def loss_fn(params):
        loss, nll, _, aux = model.apply(
            {"params": params}, batch["src"], batch["tgt_in"], batch["tgt_out"],
            smoothing=smoothing, deterministic=False, extent=bounds,
            rngs={"dropout": dropout_key}, method="loss",
            **({"attention_penalty": penalty} if penalty else {}))
        sums = {"nll_sum": nll}
        if align_weight:
            sums.update(supervised_attention(aux["attention"], batch["links"], possible_weight))
            loss = loss + align_weight * sums["align_sum"]
        return loss / jnp.maximum(weight, 1.0), sums

    (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    sums, grads = jax.lax.psum((sums, grads), sharding.DATA)
    with jax.named_scope("optimizer"):
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
    metrics = {**sums, "weight": weight, "grad_norm": optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def make_train_step(model, tx, smoothing: float, layout: sharding.Layout | None = None,
                    attention_penalty: float = 0.0, align_loss_weight: float = 0.0,
                    align_possible_weight: float = 1.0):
    """(state [K...], batch [K, B, L]) -> (state, metrics [K]); jitted, state donated.
    attention_penalty: train.attention_penalty (the model's `loss` adds it when > 0).
    align_loss_weight: train.align_loss_weight; > 0 adds it times `supervised_attention` of the
    batch's gold 'links' [K, B, M, 3] (`batches.load(..., links=True)`; possible-only links
    weighted align_possible_weight) to the loss, and the metrics gain "align_sum" and
    "align_tokens" (summed over the batch).

    The step is a shard_map over the `layout`'s mesh (one device when None): each device runs
    the same program on its replicas (`seeds`) and rows (`data`); the fused loops of each device
    stop at its own longest sentence. Place the state with `layout.state` and each batch with
    `layout.train_batch`."""
    layout = layout or sharding.single_device()
    # A one-device run draws the dropout masks it always drew (no shard index folded in), so a
    # run saved before resumes exactly; devices of a larger mesh each fold in their own.
    one = functools.partial(_train_step_one, model, tx, smoothing, attention_penalty,
                            (align_loss_weight, align_possible_weight), layout.size > 1)

    def local(state, batch):
        if align_loss_weight and "links" not in batch:  # Python, at trace time.
            raise ValueError("train.align_loss_weight > 0 needs the gold 'links' in the train "
                             "batches: load the data with batches.load(..., links=True).")
        return jax.vmap(one, in_axes=(0, 0, None))(state, batch, extent(batch))

    seeds, rows = P(sharding.SEEDS), P(sharding.SEEDS, sharding.DATA)
    mapped = jax.shard_map(local, mesh=layout.mesh, in_specs=(seeds, rows),
                           out_specs=(seeds, seeds), check_vma=False)
    return jax.jit(mapped, donate_argnums=0, compiler_options=compiler_options())


# ------------------------------------------------------------------------------------ evaluation
#
# Evaluation is two separate programs: teacher-forced scoring (loss and the attention on the
# reference, for AER) and decoding (greedy, or beam search). The caller picks one decoder once,
# so nothing is decoded twice.


def _score_one(model, params, batch):
    """Teacher-forced scoring of one replica: per-row nll and weight [B], attention [B, T, S]
    (the mean over layers and heads for a per-head family, whose every map is also returned as
    "forced_heads" [B, L, H, T, S])."""
    per_head = arch.of(model.config).per_head
    nll, aux = model.apply({"params": params}, batch["src"], batch["tgt_in"], batch["tgt_out"],
                           method="token_nll", **({"all_heads": True} if per_head else {}))  # [B]
    weight = jnp.sum(batch["tgt_out"] != PAD, axis=-1).astype(jnp.float32)  # [B]
    out = {"nll": nll, "weight": weight, "forced_attention": aux["attention"]}
    if per_head:
        out["forced_heads"] = aux["heads"]
    return out


def _decoder_start(model, params, src, beam_size: int = 1):
    """(step_fn, initial carry) for the decoders, encoder outputs tiled to B * beam_size rows."""
    memory, carry = model.apply({"params": params}, src, method="encode")
    if beam_size > 1:
        memory, carry = decode.tile_beams((memory, carry), beam_size)

    def step_fn(ids, carry):
        carry, logits, attn = model.apply({"params": params}, carry, ids, memory,
                                          method="decode_step")
        if attn.ndim == 4:  # [B, L, H, S] per layer and head: decoders keep the mean map.
            attn = attn.mean(axis=(1, 2))
        return logits, attn, carry

    return step_fn, carry


def _greedy_one(model, extra_len: int, params, src):
    step_fn, carry = _decoder_start(model, params, src)
    return decode.greedy(step_fn, carry, batch_size=src.shape[0],
                         max_len=src.shape[1] + extra_len)


def _beam_one(model, beam_size: int, extra_len: int, params, src, alpha):
    """The best beam hypothesis of each row (beam search's outputs at beam 0)."""
    step_fn, carry = _decoder_start(model, params, src, beam_size)
    out = decode.beam_search(step_fn, carry, batch_size=src.shape[0], beam_size=beam_size,
                             max_len=src.shape[1] + extra_len, alpha=alpha)
    return {key: value[:, 0] for key, value in out.items()}


class EvalStep(NamedTuple):
    """Evaluation's jitted programs over K replicas (`make_eval_step`)."""

    # (params [K...], batch [B, L]) -> nll, weight [K, B], forced_attention [K, B, T, S].
    score: Callable[..., dict[str, jax.Array]]
    # (params [K...], src [B, L]) -> tokens [K, B, L'], attention [K, B, L', S], lengths [K, B],
    # L' = L + extra_len.
    greedy: Callable[..., dict[str, jax.Array]]


def make_eval_step(model, extra_len: int, layout: sharding.Layout | None = None) -> EvalStep:
    """Teacher-forced scoring and greedy decoding, each jitted (one compile per bucket). Batch
    rows are split over the `layout`'s `data` axis (one device when None); the outputs come back
    as NumPy."""

    @functools.partial(jax.jit, compiler_options=compiler_options())
    def score(params, batch):
        return jax.vmap(functools.partial(_score_one, model), in_axes=(0, None))(params, batch)

    @functools.partial(jax.jit, compiler_options=compiler_options())
    def greedy(params, src):
        one = functools.partial(_greedy_one, model, extra_len)
        return jax.vmap(one, in_axes=(0, None))(params, src)

    layout = layout or sharding.single_device()
    return EvalStep(score=lambda p, batch: layout.gather(score(p, layout.eval_batch(batch))),
                    greedy=lambda p, src: layout.gather(greedy(p, layout.eval_batch(src))))


def _replica(x: jax.Array, k: int) -> jax.Array:
    return x[k]


def make_beam_step(model, beam_size: int, extra_len: int, layout: sharding.Layout | None = None):
    """(params [K...], src [B, L], alpha) -> the best beam hypothesis per replica and row: tokens
    [K, B, L'], attention [K, B, L', S], lengths and scores [K, B] (L' = L + extra_len), in the
    shapes of `EvalStep.greedy`, as NumPy. One replica is searched at a time (one compile per
    bucket, memory of one), over all the `layout`'s devices (rows split over `data`; one device
    when None). alpha (the length penalty) must be >= 0, else ValueError."""
    one = jax.jit(functools.partial(_beam_one, model, beam_size, extra_len),
                  compiler_options=compiler_options())
    layout = layout or sharding.single_device()

    def step(params, src, alpha):
        decode.check_length_penalty(alpha)  # Traced inside the jitted search: checked here.
        num_replicas = jax.tree.leaves(params)[0].shape[0]
        src = layout.eval_batch(src)
        best = []
        for k in range(num_replicas):
            replica = jax.tree.map(functools.partial(_replica, k=k), params)
            best.append(one(jax.device_put(replica, layout.replicated()), src, alpha))
        return layout.gather(jax.tree.map(lambda *xs: jnp.stack(xs), *best))

    return step
