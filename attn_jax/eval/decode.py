"""Greedy decoding, teacher forcing and beam search, driven by a step-function callback.

Decoding lives outside the model (as in flax `examples/wmt/decode.py`). The caller supplies

    step_fn(ids: int32[N], carry) -> (logits float[N, V], attn float[N, S], new_carry)

where every leaf of `carry` has leading axis N, and closes over everything that does not change
per step (encoder memory, source mask), already tiled to N rows. N is the batch size B for
`greedy` and `forced`, and B * K for `beam_search`: `tile_beams` tiles the initial carry and the
memory. All functions are pure and jittable; close over `step_fn` and pass sizes as Python ints:

    decode = jax.jit(lambda carry: greedy(step_fn, carry, batch_size=B, max_len=L))

Output conventions, shared by `greedy` and `beam_search`:
  * `tokens[..., t]` is the token emitted at step t. The first input is BOS, which is not returned.
  * EOS is included in `tokens` and counted in `lengths`; everything after it is PAD and the
    matching `attention` rows are zeros. A hypothesis that never emits EOS has length max_len.
  * `attention[..., t, :]` is the attention of the step that emitted `tokens[..., t]`.

Beam search scores a finished hypothesis y (EOS included in |y|) with the GNMT length penalty
(Wu et al. 2016, eq. 14):

    score(y) = log p(y) / lp(|y|),    lp(n) = ((5 + n) / 6) ** alpha

alpha = 0 ranks by the raw log-probability sum; a larger alpha favours longer outputs. alpha must
be >= 0 (the early-stopping bound relies on lp growing with length; `check_length_penalty`); it
may be a traced scalar, so one compiled search serves every alpha.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from attn_jax.data.tokens import BOS, EOS, PAD
from attn_jax.model import rnn

StepFn = rnn.StepFn  # (ids [N], carry) -> (logits [N, V], attention [N, S], new carry)
NEG_INF = -jnp.inf  # Score of a dead or empty hypothesis.


def check_length_penalty(alpha: float | jax.Array) -> None:
    """Raises ValueError unless alpha >= 0. A traced alpha cannot be read: check it before jit."""
    if isinstance(alpha, jax.core.Tracer):
        return
    if not float(alpha) >= 0:  # Also refuses NaN.
        raise ValueError(
            f"The beam search length penalty must be >= 0, got {float(alpha)} (a negative one "
            "breaks early stopping); set eval.length_penalty or --length_penalty to 0 or more.")


def tile_beams(tree: Any, beam_size: int) -> Any:
    """[B, ...] -> [B * K, ...] for every leaf, each row repeated K times consecutively."""
    return jax.tree.map(lambda x: jnp.repeat(x, beam_size, axis=0), tree)


def length_penalty(length: jax.Array | int, alpha: float | jax.Array) -> jax.Array:
    """GNMT length penalty lp(n) = ((5 + n) / 6) ** alpha (1 for alpha = 0)."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def _step_sizes(step_fn: StepFn, ids: jax.Array, carry: Any) -> tuple[int, int]:
    """(V, S) of one step, found by tracing step_fn abstractly (no compute)."""
    logits, attn, _ = jax.eval_shape(step_fn, ids, carry)
    return logits.shape[-1], attn.shape[-1]


# ---------------------------------------------------------------------------------------- greedy


def greedy(step_fn: StepFn, init_carry: Any, *, batch_size: int, max_len: int,
           bos_id: int = BOS, eos_id: int = EOS, pad_id: int = PAD) -> dict[str, jax.Array]:
    """Argmax decoding that stops once every row has emitted EOS (or after max_len steps).

    Returns dict(tokens=int32[B, L], attention=float32[B, L, S], lengths=int32[B]) with the
    conventions of the module docstring. Rows that have finished are fed PAD.
    """
    B, L = batch_size, max_len
    ids = jnp.full((B,), bos_id, jnp.int32)
    _, S = _step_sizes(step_fn, ids, init_carry)
    state = dict(
        i=jnp.int32(0), ids=ids, carry=init_carry,
        tokens=jnp.full((B, L), pad_id, jnp.int32),  # [B, L]
        attention=jnp.zeros((B, L, S), jnp.float32),  # [B, L, S]
        lengths=jnp.zeros((B,), jnp.int32),  # [B]
        finished=jnp.zeros((B,), bool))  # [B]

    def cond(s):
        return (s["i"] < L) & ~jnp.all(s["finished"])

    def body(s):
        i, done = s["i"], s["finished"]
        logits, attn, carry = step_fn(s["ids"], s["carry"])  # [B, V], [B, S]
        tok = jnp.where(done, pad_id, jnp.argmax(logits, axis=-1)).astype(jnp.int32)  # [B]
        attn = jnp.where(done[:, None], 0.0, attn.astype(jnp.float32))  # [B, S]
        return dict(
            i=i + 1, ids=tok, carry=carry,
            tokens=s["tokens"].at[:, i].set(tok),
            attention=s["attention"].at[:, i].set(attn),
            lengths=jnp.where(done, s["lengths"], i + 1),
            finished=done | (tok == eos_id))

    s = jax.lax.while_loop(cond, body, state)
    return dict(tokens=s["tokens"], attention=s["attention"], lengths=s["lengths"])


# ---------------------------------------------------------------------------------------- forced


def forced(step_fn: StepFn, init_carry: Any, tgt_in: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Teacher-forced run over tgt_in [B, T]: returns (logits [B, T, V], attention [B, T, S]).

    The model's own step-by-step reference (`rnn.step_by_step`, `rnn.step_by_step_loss`) is
    this same scan (`rnn.scan_steps`)."""
    return rnn.scan_steps(step_fn, init_carry, tgt_in)


# ----------------------------------------------------------------------------------- beam search


def _gather_beams(x: jax.Array, idx: jax.Array) -> jax.Array:
    """x [B, K, ...], idx [B, K'] -> [B, K', ...] with out[b, j] = x[b, idx[b, j]]."""
    return x[jnp.arange(x.shape[0])[:, None], idx]


def _gather_carry(carry: Any, idx: jax.Array) -> Any:
    """Reorders a carry whose leaves are [B * K, ...] by parent beam indices idx [B, K]."""
    B, K = idx.shape

    def gather(leaf):
        beams = leaf.reshape((B, K) + leaf.shape[1:])  # [B, K, ...]
        return _gather_beams(beams, idx).reshape(leaf.shape)  # [B * K, ...]

    return jax.tree.map(gather, carry)


def beam_search(step_fn: StepFn, init_carry: Any, *, batch_size: int, beam_size: int,
                max_len: int, alpha: float | jax.Array = 0.6, bos_id: int = BOS,
                eos_id: int = EOS, pad_id: int = PAD) -> dict[str, jax.Array]:
    """Batched beam search over a step function whose carry leaves have leading axis B * K.

    Bookkeeping as in flax wmt: K alive hypotheses ranked by raw log-prob and K finished ones
    ranked by length-penalised score. Each step takes the top 2K of the K * V one-token
    extensions, so that even when K of them end in EOS, K remain: the K best that did not end
    stay alive, and those that ended are merged into the K best finished. The loop ends after
    max_len steps, or once no alive hypothesis can beat the worst finished one in any batch row
    (best alive log p / lp(max_len) < worst finished score). beam_size = 1 is not greedy: a
    hypothesis that ended early is kept while the search goes on, and the better one is returned.

    Returns dict(tokens=int32[B, K, L], scores=float32[B, K] sorted best first,
    attention=float32[B, K, L, S], lengths=int32[B, K]). A batch row where nothing finished
    returns its alive hypotheses instead, scored log p / lp(length). Empty slots (fewer than K
    hypotheses with nonzero probability) have score -inf, PAD tokens, zero attention, length 0.
    Raises ValueError for a negative (concrete) alpha.
    """
    check_length_penalty(alpha)
    B, K, L = batch_size, beam_size, max_len
    ids = jnp.full((B, K), bos_id, jnp.int32)
    V, S = _step_sizes(step_fn, ids.reshape(B * K), init_carry)
    no_tokens = jnp.full((B, K, L), pad_id, jnp.int32)
    no_attn = jnp.zeros((B, K, L, S), jnp.float32)
    state = dict(
        i=jnp.int32(0), ids=ids, carry=init_carry,  # ids [B, K]
        # The K initial beams are copies; only beam 0 is live so step 0 does not repeat it K times.
        alive_logp=jnp.full((B, K), NEG_INF).at[:, 0].set(0.0),  # [B, K]
        alive_tokens=no_tokens, alive_attn=no_attn,  # [B, K, L], [B, K, L, S]
        fin_scores=jnp.full((B, K), NEG_INF), fin_tokens=no_tokens, fin_attn=no_attn,
        fin_lengths=jnp.zeros((B, K), jnp.int32))

    def cond(s):
        best_alive = jnp.max(s["alive_logp"], axis=1) / length_penalty(L, alpha)  # [B] bound
        worst_fin = jnp.min(s["fin_scores"], axis=1)  # [B]; -inf while a slot is empty
        done = (best_alive < worst_fin) | (best_alive == NEG_INF)
        return (s["i"] < L) & ~jnp.all(done)

    def body(s):
        i = s["i"]
        logits, attn, carry = step_fn(s["ids"].reshape(B * K), s["carry"])  # [BK, V], [BK, S]
        logp = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(B, K, V)
        cand = s["alive_logp"][..., None] + logp  # [B, K, V]
        top_logp, flat = jax.lax.top_k(cand.reshape(B, K * V), 2 * K)  # [B, 2K]
        parent, tok = flat // V, (flat % V).astype(jnp.int32)  # [B, 2K]
        tokens = _gather_beams(s["alive_tokens"], parent).at[:, :, i].set(tok)  # [B, 2K, L]
        step_attn = _gather_beams(attn.astype(jnp.float32).reshape(B, K, S), parent)  # [B, 2K, S]
        attn_hist = _gather_beams(s["alive_attn"], parent).at[:, :, i].set(step_attn)
        is_eos = tok == eos_id  # [B, 2K]

        # The K best candidates that did not end stay alive.
        alive_logp, alive = jax.lax.top_k(jnp.where(is_eos, NEG_INF, top_logp), K)  # [B, K]

        # Merge the candidates that just ended into the K best finished ones.
        new_scores = jnp.where(is_eos, top_logp / length_penalty(i + 1, alpha), NEG_INF)
        both = jnp.concatenate([s["fin_scores"], new_scores], axis=1)  # [B, 3K]
        fin_scores, keep = jax.lax.top_k(both, K)  # [B, K]

        def merge(old, new):  # [B, K, ...], [B, 2K, ...] -> [B, K, ...]
            return _gather_beams(jnp.concatenate([old, new], axis=1), keep)

        return dict(
            i=i + 1, ids=_gather_beams(tok, alive),
            carry=_gather_carry(carry, _gather_beams(parent, alive)),
            alive_logp=alive_logp,
            alive_tokens=_gather_beams(tokens, alive), alive_attn=_gather_beams(attn_hist, alive),
            fin_scores=fin_scores,
            fin_tokens=merge(s["fin_tokens"], tokens),
            fin_attn=merge(s["fin_attn"], attn_hist),
            fin_lengths=merge(s["fin_lengths"], jnp.full((B, 2 * K), i + 1, jnp.int32)))

    s = jax.lax.while_loop(cond, body, state)

    # Rows where nothing finished fall back to their alive hypotheses, penalised at their length.
    alive_scores, order = jax.lax.top_k(s["alive_logp"] / length_penalty(s["i"], alpha), K)
    has_fin = s["fin_scores"][:, 0] > NEG_INF  # [B]

    def pick(fin, alive):
        return jnp.where(has_fin.reshape((B,) + (1,) * (fin.ndim - 1)), fin, alive)

    scores = pick(s["fin_scores"], alive_scores)  # [B, K]
    tokens = pick(s["fin_tokens"], _gather_beams(s["alive_tokens"], order))  # [B, K, L]
    attention = pick(s["fin_attn"], _gather_beams(s["alive_attn"], order))  # [B, K, L, S]
    lengths = pick(s["fin_lengths"], jnp.full((B, K), s["i"], jnp.int32))  # [B, K]

    live = scores > NEG_INF  # [B, K]; clear empty slots of any dead beam's leftovers
    return dict(
        tokens=jnp.where(live[..., None], tokens, pad_id),
        scores=scores,
        attention=jnp.where(live[..., None, None], attention, 0.0),
        lengths=jnp.where(live, lengths, 0))
