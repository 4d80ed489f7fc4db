"""Attention perturbation (Jain & Wallace 2019, "Attention is not Explanation"): how much a trained
model's output depends on its attention weights α.

At every step of the step-by-step decoder (`decode_step`, the path greedy decoding and the
reference teacher-forced run take) α is replaced before the context is mixed from it:

    permute  a random permutation of α over the real source positions, a fresh one per sentence,
             head, layer and target step (a PRNG key folded with the step);
    uniform  1/n over the n real source positions;
    argmax   one-hot at the first argmax;
    seed     the α that another trained model computes at the same step on the same prefix: both
             models run in lockstep (each its own state), and layer l, head h of this model get
             layer l, head h of the other's.

Every replacement is per head of a multi-head map and on the real source positions only (padding
stays exactly 0). It is the model with its attention replaced: the RNN's later states see the
perturbed contexts, a Transformer's later layers the perturbed cross-attention outputs. The hook
is `flax.linen.intercept_methods` on the `attention_weights` method of the RNN's scorer
(`attention.Scorer`) and of every Transformer cross-attention (`transformer.CrossAttention`),
whose output the interceptor transforms; the parameters are never touched.

Metrics of a perturbation, per replica (`perturb_split`): teacher-forced over the real target
tokens (EOS included), the mean total variation 0.5·Σ|p − p'| and the mean Jensen-Shannon
divergence (natural log: at most ln 2) between the original and the perturbed next-token
distributions, the fraction of tokens whose argmax prediction changes, the mean nll per token,
original and perturbed, and their difference; and corpus BLEU (sacreBLEU, `metrics.bleu`, on
detokenized output as evaluation scores it) of greedy decoding with and without the
perturbation, both through this same step-by-step path, so the difference is the perturbation
alone.
"""

from __future__ import annotations

import contextlib
import functools
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from attn_jax.data import batches
from attn_jax.data.tokens import BOS, EOS, PAD, UNK
from attn_jax.eval import decode, metrics
from attn_jax.model import arch
from attn_jax.model import attention as attn_lib

PERTURBATIONS = ("permute", "uniform", "argmax", "seed")
# (weights [..., S], mask [..., S] (True: a real source position), key) -> weights [..., S].
Transform = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
HOOKED = "attention_weights"  # The method whose output (α [B, heads, S]) is replaced.


class PerturbError(ValueError):
    """A perturbation that cannot be run; the message names the fix."""


# ------------------------------------------------------------------- the α transforms (pure)


def permute(weights: jax.Array, mask: jax.Array, key: jax.Array) -> jax.Array:
    """A random permutation of each row's weights over its real positions (every row and head
    its own); 0 at padding. The sort trick: the real positions ordered by uniform noise."""
    mask = jnp.broadcast_to(mask, weights.shape)
    noise = jnp.where(mask, jax.random.uniform(key, weights.shape), 2.0)  # padding last
    drawn = jnp.take_along_axis(weights, jnp.argsort(noise, axis=-1), axis=-1)
    # The i-th real position (in order) gets the i-th drawn weight.
    real_order = jnp.argsort(~mask, axis=-1, stable=True)  # real positions first
    out = jnp.take_along_axis(drawn, jnp.argsort(real_order, axis=-1), axis=-1)
    return jnp.where(mask, out, 0.0)


def uniform(weights: jax.Array, mask: jax.Array) -> jax.Array:
    """1/n over each row's n real positions, 0 at padding (a row with none: all 0)."""
    mask = jnp.broadcast_to(mask, weights.shape).astype(weights.dtype)
    return mask / jnp.maximum(mask.sum(-1, keepdims=True), 1.0)


def argmax(weights: jax.Array, mask: jax.Array) -> jax.Array:
    """One-hot at each row's first argmax over its real positions (a row with none: all 0)."""
    mask = jnp.broadcast_to(mask, weights.shape)
    top = jnp.argmax(jnp.where(mask, weights, -jnp.inf), axis=-1)
    one_hot = jax.nn.one_hot(top, weights.shape[-1], dtype=weights.dtype)
    return one_hot * mask.any(-1, keepdims=True)


TRANSFORMS: dict[str, Transform] = {
    "permute": permute,
    "uniform": lambda weights, mask, key: uniform(weights, mask),
    "argmax": lambda weights, mask, key: argmax(weights, mask),
}


# ------------------------------------------------------------------------- metrics (pure)


def total_variation(logp: jax.Array, logq: jax.Array) -> jax.Array:
    """0.5 · Σ_v |p_v − q_v| of log-probabilities [..., V] -> [...] (in [0, 1])."""
    return 0.5 * jnp.abs(jnp.exp(logp) - jnp.exp(logq)).sum(-1)


def js_divergence(logp: jax.Array, logq: jax.Array) -> jax.Array:
    """Jensen-Shannon divergence in nats (natural log, in [0, ln 2]) of log-probabilities
    [..., V] -> [...]: ½ KL(p‖m) + ½ KL(q‖m), m = (p + q) / 2."""
    logm = jnp.logaddexp(logp, logq) - math.log(2.0)

    def kl(loga):  # Σ a (log a − log m), 0 where a = 0.
        return jnp.where(loga > -jnp.inf, jnp.exp(loga) * (loga - logm), 0.0).sum(-1)

    return 0.5 * kl(logp) + 0.5 * kl(logq)


# ----------------------------------------------------------------- models and their hook


def _is_transformer(model) -> bool:
    return arch.name_of(model.config) == "transformer"


def attention_layout(model) -> tuple[int, int]:
    """(maps per decoder step, heads per map): the Transformer's (layers, heads); the RNN's one
    map, with the multihead scorer's heads (1 for the other scorers)."""
    c = model.config
    if _is_transformer(model):
        return c.attention_heads
    return 1, (c.num_heads if attn_lib.scorer_class(c.scorer) is attn_lib.MultiHead else 1)


def check_model(model, which: str = "this run's") -> None:
    """Refuses (PerturbError) a model with nothing to perturb: the 'none' scorer, images."""
    c = model.config
    if not attn_lib.scorer_class(c.scorer).attends:
        raise PerturbError(f"{which} model.scorer is 'none' (no attention), so it has no "
                           "attention to perturb; pass the workdir of a run with an attention "
                           "scorer (location and uniform are fine).")
    if getattr(c, "encoder", "rnn") == "cnn":
        raise PerturbError(f"{which} model reads images (an image run: model.encoder='cnn'); "
                           "perturbation reads text: pass the workdir of a text run.")


def check_other(model, other_model) -> None:
    """Refuses (PerturbError) a 'seed' model whose attention does not fit this model's: another
    model family or another number of layers or heads."""
    check_model(other_model, "the other run's")
    mine, theirs = arch.name_of(model.config), arch.name_of(other_model.config)
    if mine != theirs:
        raise PerturbError(f"the other run is model.arch={theirs!r} but this one is {mine!r}; "
                           f"pass an --other_workdir of a model.arch={mine!r} run.")
    if attention_layout(model) != attention_layout(other_model):
        (l1, h1), (l2, h2) = attention_layout(model), attention_layout(other_model)
        raise PerturbError(f"the other run's attention has {l2} map(s) x {h2} head(s) per step, "
                           f"this run's {l1} x {h1}; pass an --other_workdir with the same "
                           "layers and heads (model.layers, model.num_heads, model.scorer).")
    if other_model.config.max_source_len < model.config.max_source_len and \
            attn_lib.scorer_class(other_model.config.scorer).position_based:
        raise PerturbError(f"the other run's location attention scores only "
                           f"{other_model.config.max_source_len} source positions, fewer than "
                           f"this run's {model.config.max_source_len}; pass an --other_workdir "
                           "with the same data.buckets.")


def _interceptor(replace: Callable[[int, jax.Array, jax.Array], jax.Array]):
    """An interceptor that replaces the output α [B, h, S] of the i-th call of the hooked method
    (in call order: the Transformer's layers) by replace(i, α, mask [B, 1, S])."""
    calls = []

    def intercept(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name != HOOKED:
            return out
        memory = args[1] if len(args) > 1 else kwargs["memory"]
        calls.append(None)
        return replace(len(calls) - 1, out, memory.mask[:, None, :])

    return intercept


def _encode(model, params, src, max_len):
    extra = {"max_len": max_len} if _is_transformer(model) and max_len is not None else {}
    return model.apply({"params": params}, src, method="encode", **extra)


def start(model, params, src: jax.Array, perturbation: str | Transform | None = None, *,
          key: jax.Array | None = None, other: tuple[Any, Any] | None = None,
          max_len: int | None = None) -> tuple[decode.StepFn, Any]:
    """(step_fn, initial carry) of one replica for the decoders (`decode.greedy`, `forced`):
    step(ids [B], carry) -> (logits [B, V], attention [B, S] (the mean over layers and heads of
    the α used), carry), with `perturbation` applied at every step: None (the model as it is:
    `decode_step` without the hook), a name in PERTURBATIONS, or a Transform.

    key: the PRNG key of a Transform (folded with the step and the call); other: (model,
    params) of the 'seed' model; max_len: the Transformer's self-attention cache (at least the
    number of steps; default: the source length + its max_decode_extra)."""
    if perturbation == "seed":
        if other is None:
            raise PerturbError("the 'seed' perturbation needs the other model: other=(model, "
                               "params).")
        other_model, other_params = other
        check_other(model, other_model)
        transform = None
    elif perturbation is None or callable(perturbation):
        transform = perturbation
    elif perturbation in TRANSFORMS:
        transform = TRANSFORMS[perturbation]
    else:
        raise PerturbError(f"unknown perturbation {perturbation!r}; valid: "
                           f"{', '.join(PERTURBATIONS)}.")
    if transform is not None and key is None:
        key = jax.random.key(0)
    memory, carry = _encode(model, params, src, max_len)
    carry = {"model": carry, "step": jnp.zeros(src.shape[:1], jnp.int32)}  # step [B]
    if perturbation == "seed":
        other_memory, carry["other"] = _encode(other_model, other_params, src, max_len)

    def step(ids, carry):
        new = {"step": carry["step"] + 1}
        if perturbation == "seed":
            theirs = []

            def record(i, weights, mask):
                theirs.append(weights)
                return weights

            with nn.intercept_methods(_interceptor(record)):
                new["other"], _, _ = other_model.apply(
                    {"params": other_params}, carry["other"], ids, other_memory,
                    method="decode_step")

            def replace(i, weights, mask):
                if i >= len(theirs) or theirs[i].shape != weights.shape:
                    raise PerturbError(f"the other model's attention map {i} does not match "
                                       f"this model's {weights.shape}; use a model with the "
                                       "same layers and heads.")
                return theirs[i].astype(weights.dtype)
        elif transform is not None:
            step_key = jax.random.fold_in(key, carry["step"][0])

            def replace(i, weights, mask):
                return transform(weights, mask, jax.random.fold_in(step_key, i))
        else:
            replace = None
        with nn.intercept_methods(_interceptor(replace)) if replace else contextlib.nullcontext():
            new["model"], logits, attn = model.apply({"params": params}, carry["model"], ids,
                                                     memory, method="decode_step")
        if attn.ndim == 4:  # [B, L, H, S] per layer and head: the decoders keep the mean map.
            attn = attn.mean(axis=(1, 2))
        return logits, attn, new

    return step, carry


def forced_logits(model, params, src: jax.Array, tgt_in: jax.Array,
                  perturbation: str | Transform | None = None, *, key: jax.Array | None = None,
                  other: tuple[Any, Any] | None = None) -> tuple[jax.Array, jax.Array]:
    """Teacher forcing step by step with `perturbation` (`start`): src [B, S], tgt_in [B, T] ->
    (logits [B, T, V], attention [B, T, S]). With perturbation None it is the model's own
    reference run (`rnn.step_by_step`, `transformer.step_by_step`)."""
    step, carry = start(model, params, src, perturbation, key=key, other=other,
                        max_len=tgt_in.shape[1])
    return decode.forced(step, carry, tgt_in)


def compare_forced(model, params, batch: dict[str, jax.Array], perturbations: Sequence[str], *,
                   key: jax.Array, other: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """One teacher-forced pass of the original model beside each perturbed one over a batch
    {"src", "tgt_in", "tgt_out"} [B, ...]: per row, sums over the real target tokens (EOS
    included): {"weight": [B], "original": {"nll"}, name: {"tv", "js", "changed", "nll"}}."""
    src, tgt_in, tgt_out = batch["src"], batch["tgt_in"], batch["tgt_out"]
    runs = {name: start(model, params, src, None if name == "original" else name, key=key,
                        other=other, max_len=tgt_in.shape[1])
            for name in ("original", *perturbations)}  # name -> (step, carry)

    def body(carries, xs):
        ids, target = xs  # [B], [B]
        new, logq = {}, {}
        for name, (step, _) in runs.items():
            logits, _, new[name] = step(ids, carries[name])
            logq[name] = jax.nn.log_softmax(logits.astype(jnp.float32))  # [B, V]
        logp = logq["original"]

        def nll(logq):  # [B]
            return -jnp.take_along_axis(logq, target[:, None], axis=-1)[:, 0]

        out = {"original": {"nll": nll(logp)}}
        for name in perturbations:
            changed = jnp.argmax(logp, -1) != jnp.argmax(logq[name], -1)
            out[name] = {"tv": total_variation(logp, logq[name]),
                         "js": js_divergence(logp, logq[name]),
                         "changed": changed.astype(jnp.float32), "nll": nll(logq[name])}
        return new, out

    carries = {name: carry for name, (_, carry) in runs.items()}
    _, per_token = jax.lax.scan(body, carries, (tgt_in.T, tgt_out.T))  # leaves [T, B]
    real = (tgt_out != PAD).T  # [T, B]
    sums = jax.tree.map(lambda x: jnp.where(real, x, 0.0).sum(0), per_token)  # NaN-safe
    return {"weight": real.sum(0).astype(jnp.float32), **sums}


def greedy_all(model, params, src: jax.Array, perturbations: Sequence[str], *, max_len: int,
               key: jax.Array, other: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """Greedy decoding of src [B, S] (`decode.greedy`, at most max_len tokens) by the original
    model and by each perturbed one: {"original" | name: {"tokens" [B, max_len], "lengths" [B]}}."""
    out = {}
    for name in ("original", *perturbations):
        step, carry = start(model, params, src, None if name == "original" else name, key=key,
                            other=other, max_len=max_len)
        res = decode.greedy(step, carry, batch_size=src.shape[0], max_len=max_len)
        out[name] = {"tokens": res["tokens"], "lengths": res["lengths"]}
    return out


# ---------------------------------------------------------------------------------- driver


def check_perturbations(names: Sequence[str]) -> tuple[str, ...]:
    """The names, checked: known, at least one, none twice."""
    names = tuple(names)
    unknown = [n for n in names if n not in PERTURBATIONS]
    if unknown or not names or len(set(names)) < len(names):
        raise PerturbError(f"perturbations {','.join(names) or '(none)'!r}: give a comma list of "
                           f"distinct names from {','.join(PERTURBATIONS)} (e.g. "
                           "--perturbations=permute,uniform).")
    return names


def _encode_pairs(pairs, src_vocab, tgt_vocab, buckets, notes):
    """[(src ids, tgt ids, bucket length)] of the text pairs; refuses empty and too long ones."""
    out, unknown = [], 0
    for n, (src, tgt) in enumerate(pairs, 1):
        s, t = src_vocab.encode(src), tgt_vocab.encode(tgt)
        if not s or not t:
            raise PerturbError(f"pair {n} has an empty {'source' if not s else 'target'}; "
                               "remove it.")
        length = batches.smallest_bucket(max(len(s), len(t) + 1), buckets)
        if length is None:
            raise PerturbError(f"pair {n} has {len(s)} source and {len(t)}+1 (EOS) target "
                               f"tokens, more than the run's largest bucket {buckets[-1]}; "
                               "shorten or split it.")
        unknown += sum(i == UNK for i in s) + sum(i == UNK for i in t)
        out.append((s, t, length))
    if unknown:
        notes.append(f"{unknown} tokens are not in the run's vocabulary and were read as <unk>")
    return out


def _batches(encoded, buckets, batch_size):
    """Batches {"src", "tgt_in", "tgt_out": [rows, L], "index": [rows]} bucket by bucket (filler
    rows all PAD, index -1); rows = min(batch_size, pairs): one shape per bucket."""
    rows = min(batch_size, len(encoded))
    for length in buckets:
        todo = [i for i, (_, _, b) in enumerate(encoded) if b == length]
        for first in range(0, len(todo), rows):
            batch = {key: np.full((rows, length), PAD, np.int32)
                     for key in ("src", "tgt_in", "tgt_out")}
            batch["index"] = np.full(rows, -1, np.int32)
            for r, i in enumerate(todo[first:first + rows]):
                s, t, _ = encoded[i]
                batch["src"][r, :len(s)] = s
                batch["tgt_in"][r, :len(t) + 1] = [BOS, *t]
                batch["tgt_out"][r, :len(t) + 1] = [*t, EOS]
                batch["index"][r] = i
            yield batch


def _replica(tree, k: int):
    return jax.tree.map(lambda x: x[k], tree)


def _summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    """{"replicas": rows, "mean": {...}, "std": {...} (sample, ddof=1; None for one replica)}."""
    keys = rows[0].keys()
    return {"replicas": rows,
            "mean": {key: statistics.fmean(r[key] for r in rows) for key in keys},
            "std": ({key: statistics.stdev(r[key] for r in rows) for key in keys}
                    if len(rows) > 1 else None)}


def perturb_split(model, params, src_vocab, tgt_vocab, pairs: Sequence[tuple[str, str]], *,
                  buckets: Sequence[int], perturbations: Sequence[str] = PERTURBATIONS,
                  other: tuple[Any, Any] | None = None, batch_size: int = 64, seed: int = 0,
                  extra_len: int = 10) -> dict[str, Any]:
    """Every perturbation of every replica of `params` ([K, ...] leaves) on the text `pairs`
    (source, reference): the JSON-able report (README: attention perturbation).

    Pairs are encoded with the vocabularies and batched in `buckets` (the run's length buckets;
    a longer pair is refused); greedy decoding emits at most source length + extra_len tokens
    (the run's eval.max_decode_extra). 'seed': with other=None, replica k takes its α from
    replica (k + 1) % K (skipped, with a note, when K = 1); with other=(model, params [K', ...]),
    from the other model's replica k % K'. seed: the PRNG seed of 'permute' (the same
    permutations for every replica). Raises PerturbError naming the fix before compiling."""
    perturbations = check_perturbations(perturbations)
    check_model(model)
    if batch_size < 1:
        raise PerturbError(f"batch_size ({batch_size}) must be >= 1.")
    if not pairs:
        raise PerturbError("no sentence pairs to perturb; give at least one.")
    buckets = tuple(sorted(buckets))
    num_replicas = jax.tree.leaves(params)[0].shape[0]
    notes: list[str] = []
    skipped: dict[str, str] = {}
    if "seed" in perturbations:
        if other is not None:
            check_other(model, other[0])
            other_k = jax.tree.leaves(other[1])[0].shape[0]
            other_model, other_params = other[0], jax.tree.map(
                lambda x: x[np.arange(num_replicas) % other_k], other[1])
            source = "the other run's replica k % K'" if other_k > 1 else "the other run"
        elif num_replicas > 1:
            other_model, other_params = model, jax.tree.map(
                lambda x: jnp.roll(x, -1, axis=0), params)
            source = "replica (k + 1) % K of this run"
        else:
            skipped["seed"] = ("this run has one replica (train.num_seeds=1) and no other run "
                               "was given (--other_workdir)")
            notes.append(f"seed: skipped: {skipped['seed']}")
    active = tuple(name for name in perturbations if name not in skipped)
    if "seed" not in active:
        other_model, other_params, source = model, params, None  # Unused.
    encoded = _encode_pairs(pairs, src_vocab, tgt_vocab, buckets, notes)
    refs = [tgt for _, tgt in pairs]

    @jax.jit
    def forced(params, other_params, batch, key):
        return compare_forced(model, params, batch, active, key=key,
                              other=(other_model, other_params))

    @functools.partial(jax.jit, static_argnames="max_len")
    def greedy(params, other_params, src, key, max_len):
        return greedy_all(model, params, src, active, max_len=max_len, key=key,
                          other=(other_model, other_params))

    base_key = jax.random.key(seed)
    names = ("original", *active)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    tokens = 0.0
    signature = None
    for k in range(num_replicas):
        mine, theirs = _replica(params, k), _replica(other_params, k)
        sums = {name: {} for name in names}
        hyps = {name: [""] * len(pairs) for name in names}
        weight = 0.0
        for b, batch in enumerate(_batches(encoded, buckets, batch_size)):
            key = jax.random.fold_in(base_key, b)
            arrays = {n: batch[n] for n in ("src", "tgt_in", "tgt_out")}
            scored = jax.device_get(forced(mine, theirs, arrays, key))
            weight += float(scored["weight"].sum())
            for name in names:
                for metric, value in scored[name].items():
                    sums[name][metric] = sums[name].get(metric, 0.0) + float(value.sum())
            src = batch["src"]
            decoded = jax.device_get(greedy(mine, theirs, src, key, src.shape[1] + extra_len))
            for name in names:
                out = decoded[name]
                for r, i in enumerate(batch["index"].tolist()):
                    if i >= 0:
                        hyps[name][i] = tgt_vocab.decode(out["tokens"][r, :out["lengths"][r]])
        tokens = weight
        bleu_original, signature = metrics.bleu(hyps["original"], refs)
        nll_original = sums["original"]["nll"] / weight
        rows["original"].append({"nll": nll_original, "bleu": bleu_original})
        for name in active:
            bleu, _ = metrics.bleu(hyps[name], refs)
            mean = {metric: value / weight for metric, value in sums[name].items()}
            rows[name].append({
                "tv": mean["tv"], "js": mean["js"], "changed_argmax": mean["changed"],
                "nll_original": nll_original, "nll_perturbed": mean["nll"],
                "delta_nll": mean["nll"] - nll_original, "bleu_original": bleu_original,
                "bleu_perturbed": bleu, "delta_bleu": bleu - bleu_original})
    results: dict[str, Any] = {}
    for name in perturbations:
        if name in skipped:
            results[name] = {"skipped": skipped[name]}
        else:
            results[name] = _summary(rows[name])
            if name == "seed":
                results[name]["other"] = source
    return {"sentences": len(pairs), "tokens": int(tokens), "replicas": num_replicas,
            "perturbations": list(perturbations), "original": _summary(rows["original"]),
            "results": results, "bleu_signature": signature,
            "js_unit": "nats (natural log; at most ln 2)", "notes": notes}


def table(report: dict[str, Any]) -> str:
    """Markdown table of a `perturb_split` report: one row per perturbation (means over the
    replicas); a skipped perturbation reads n/a."""
    lines = ["| perturbation | TV | JS (nats) | changed argmax | Δnll/token | "
             "BLEU (orig → perturbed) |", "|---|---:|---:|---:|---:|---:|"]
    for name in report["perturbations"]:
        result = report["results"][name]
        if "skipped" in result:
            lines.append(f"| {name} | n/a | n/a | n/a | n/a | n/a |")
            continue
        m = result["mean"]
        lines.append(f"| {name} | {m['tv']:.3f} | {m['js']:.3f} | {100 * m['changed_argmax']:.1f}% "
                     f"| {m['delta_nll']:+.3f} | {m['bleu_original']:.2f} → "
                     f"{m['bleu_perturbed']:.2f} |")
    return "\n".join(lines)
