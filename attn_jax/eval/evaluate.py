"""Evaluation of K replicas on a split: teacher-forced perplexity, translations from one decoder
(greedy, or beam search), BLEU (sacrebleu), exact match, BLEU per source-length bucket, and AER
of the attention.

Scoring and decoding are separate programs (`steps.EvalStep.score`, and `decoder`'s choice of
`EvalStep.greedy` or `steps.make_beam_step`), so a beam-search evaluation never decodes greedily.

AER: force-decode the reference, link each target word to its argmax source word, compare with
the gold sure/possible links (Och & Ney 2003). Gold links index whitespace words; with a subword
vocabulary the attention is first summed over the tokens of each source word and averaged over
the tokens of each target word (`metrics.word_alignment`). Defined only where the data has gold
alignments (the embedded synthetic data) and the model attends (scorer != none); otherwise None.

Attributions (`eval.attribution_methods`, off by default: backward passes per target token):
the same AER for links from gradients (`attn_jax.eval.attribution`), as "aer_saliency" etc.,
for every scorer, the no-attention one included.

Attention entropy (any data, scorer != none): the mean over real target tokens of the entropy of
the teacher-forced attention over the real source tokens, relative to uniform
(`metrics.attention_entropy`: 1 = uniform, 0 = one position), so one can watch attention sharpen.

Image data (captions of pictures, `Split.images`): CIDEr-D beside BLEU, and grounding in AER's
place: force-decode the reference caption and, for every word that names an object, ask whether
the argmax cell of its attention falls on the object (pointing game) and how much of the
attention mass lies on it (`attn_jax.eval.grounding`); BLEU, exact match and grounding also by
the number of objects in the picture (`by_objects`), where BLEU by source length has no meaning.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from attn_jax.data import batches, scenes
from attn_jax.data.tokens import BOS, PAD
from attn_jax.eval import cider as cider_lib
from attn_jax.eval import grounding, metrics
from attn_jax.model import image as image_lib

# (params [K...], src [B, L]) -> host arrays tokens [K, B, L'], attention [K, B, L', S],
# lengths [K, B].
Decoder = Callable[[Any, np.ndarray], dict[str, np.ndarray]]


@dataclasses.dataclass
class SplitOutput:
    """Per replica: metrics and hypotheses (by example index)."""

    metrics: list[dict[str, Any]]
    hyps: list[list[str]]


def decoder(eval_step, beam_step=None, length_penalty: float = 0.6) -> Decoder:
    """The decoder, chosen once: greedy (`eval_step.greedy`), or the best hypothesis of beam search
    (`beam_step`, steps.make_beam_step) with GNMT length penalty `length_penalty`."""
    if beam_step is None:
        return lambda params, src: jax.device_get(eval_step.greedy(params, src))
    return lambda params, src: jax.device_get(beam_step(params, src, length_penalty))


word_index = batches.word_index  # The word of each token of a sentence, or None.


def _word_maps(data: batches.Data, sp, n: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """(source, target) token -> word maps of the first n examples; None if one does not map."""
    maps = []
    for i in range(n):
        src = word_index(data.src_vocab, sp.src_text[i])
        tgt = word_index(data.tgt_vocab, sp.tgt_text[i])
        if src is None or tgt is None:
            logging.warning("AER skipped on %s: example %d does not split into words at token "
                            "boundaries (src %r, tgt %r).", sp.name, i, sp.src_text[i],
                            sp.tgt_text[i])
            return None
        maps.append((src, tgt))
    return maps


def head_name(layer: int, head: int) -> str:
    """'L1H2': layer 1, head 2 (both counted from 1), the key of the per-head metrics."""
    return f"L{layer + 1}H{head + 1}"


def _head_metrics(heads: dict[str, Any], k: int, tokens: int, sp, n: int,
                  gold: bool) -> dict[str, Any]:
    """Replica k's attention entropy and AER of every cross-attention layer and head, and the
    head that aligns best."""
    names = [(head_name(layer, head), layer, head) for layer, head in np.ndindex(*heads["shape"])]
    out = {"attention_entropy_by_head": {name: heads["entropy"][k, layer, head] / max(tokens, 1)
                                         for name, layer, head in names}}
    if gold:
        sure, possible = [set(s) for s in sp.sure[:n]], [set(p) for p in sp.possible[:n]]
        by_head = {name: metrics.aer(list(heads["predicted"][k, layer, head]), sure, possible)
                   for name, layer, head in names}
        best = min(by_head, key=by_head.get)
        out.update(aer_by_head=by_head, aer_best_head=by_head[best], best_head=best)
    return out


def run_split(data: batches.Data, split: str, eval_step, params, *, batch_size: int,
              num_seeds: int, attends: bool, subset: int = 0, beam_step=None,
              length_penalty: float = 0.6, attribution=None) -> SplitOutput:
    """Evaluates every replica on `split` (its first `subset` examples if > 0). Translations come
    from greedy decoding, or from beam search when `beam_step` (steps.make_beam_step) is given.
    attribution: `attn_jax.eval.attribution.make_scorer`'s (params, batch) -> {method: maps
    [K, B, T, S]}; with gold, the AER of each method's links is "aer_METHOD"."""
    sp = data[split]
    n = len(sp) if not subset else min(subset, len(sp))
    decode = decoder(eval_step, beam_step, length_penalty)
    aligns = attends or attribution is not None
    word_maps = _word_maps(data, sp, n) if aligns and sp.sure is not None else None
    attributed: dict[str, list[list[set]]] = {}  # method -> replica -> example -> links
    nll = np.zeros(num_seeds)
    entropy, entropy_tokens = np.zeros(num_seeds), 0
    weight = 0.0
    hyps = [[""] * n for _ in range(num_seeds)]
    predicted = [[set() for _ in range(n)] for _ in range(num_seeds)]
    grounded = [[None] * n for _ in range(num_seeds)]  # image data: per-sentence grounding sums
    boxes = sp.boxes if attends else None
    if boxes is not None:  # Square pictures and the CNN's grid over them.
        image_hw = sp.images.shape[1:3]
        grid = image_lib.grid_shape(image_hw[0])
    heads = None  # Per-head families: (layers, heads), then every head's entropy and alignments.
    for batch in batches.eval_batches(data, split, batch_size):
        rows = [(r, i) for r, i in enumerate(batch["index"].tolist()) if 0 <= i < n]
        if not rows:
            continue
        scored = jax.device_get(eval_step.score(params, batch))
        out = decode(params, batch["src"])
        live = np.array([r for r, _ in rows])
        weight += float(scored["weight"][0, live].sum())
        if attends:
            tgt_mask = batch["tgt_out"][live] != PAD
            src_len = (np.full(len(live), scored["forced_attention"].shape[-1])  # every cell
                       if sp.images is not None else (batch["src"][live] != PAD).sum(-1))
            entropy += metrics.attention_entropy(scored["forced_attention"][:, live], src_len,
                                                 tgt_mask)
            entropy_tokens += int(tgt_mask.sum())
            if "forced_heads" in scored:  # [K, B, L, H, T, S]
                per_head = scored["forced_heads"]
                if heads is None:
                    shape = per_head.shape[2:4]
                    heads = {"shape": shape, "entropy": np.zeros((num_seeds, *shape)),
                             "predicted": np.empty((num_seeds, *shape, n), dtype=object)}
                for layer, head in np.ndindex(*heads["shape"]):
                    heads["entropy"][:, layer, head] += metrics.attention_entropy(
                        per_head[:, live, layer, head], src_len, tgt_mask)
                    if word_maps is not None:
                        for k in range(num_seeds):
                            for r, i in rows:
                                heads["predicted"][k, layer, head, i] = metrics.word_alignment(
                                    per_head[k, r, layer, head], *word_maps[i])
        if attribution is not None and word_maps is not None:
            for start, maps in _attributions(attribution, params, batch, n):
                for method, m in maps.items():
                    links = attributed.setdefault(method,
                                                  [[set()] * n for _ in range(num_seeds)])
                    for k in range(num_seeds):
                        for r, i in rows:
                            if start <= r < start + ATTRIBUTION_ROWS:
                                links[k][i] = metrics.word_alignment(m[k, r - start],
                                                                     *word_maps[i])
        for k in range(num_seeds):
            nll[k] += float(scored["nll"][k, live].sum())
            for r, i in rows:
                hyps[k][i] = data.tgt_vocab.decode(out["tokens"][k, r, :out["lengths"][k, r]])
                if word_maps is not None and attends:
                    predicted[k][i] = metrics.word_alignment(
                        scored["forced_attention"][k, r], *word_maps[i])
                if boxes is not None:
                    grounded[k][i] = grounding.sentence_grounding(
                        scored["forced_attention"][k, r], boxes[i], image_hw, grid)
    refs = sp.tgt_text[:n]
    src_lengths = [len(s.split()) for s in sp.src_text[:n]]
    # The scenes' captions say how many objects their pictures hold.
    objects = [scenes.object_count(r) for r in refs] if sp.boxes is not None else None
    uniform = None  # The uniform-attention baseline's grounding, on the words scored above.
    if boxes is not None:
        uniform = [grounding.uniform_grounding(b, image_hw, grid) for b in boxes[:n]]
    results = []
    for k in range(num_seeds):
        loss = nll[k] / max(weight, 1.0)
        bleu, signature = metrics.bleu(hyps[k], refs)
        row = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "bleu": bleu,
               "bleu_lowercase": metrics.bleu(hyps[k], refs, lowercase=True)[0],
               "chrf": metrics.chrf(hyps[k], refs)[0],
               "exact_match": metrics.exact_match(hyps[k], refs),
               "bleu_by_length": (metrics.bleu_by_length(hyps[k], refs, src_lengths)
                                  if sp.images is None else None),
               "bleu_signature": signature, "num_sentences": n}
        row["attention_entropy"] = entropy[k] / max(entropy_tokens, 1) if attends else None
        gold = (([set(s) for s in sp.sure[:n]], [set(p) for p in sp.possible[:n]])
                if word_maps is not None else None)
        row["aer"] = metrics.aer(predicted[k], *gold) if gold and attends else None
        for method, links in attributed.items():
            row[f"aer_{method}"] = metrics.aer(links[k], *gold)
        if heads is not None:
            row.update(_head_metrics(heads, k, entropy_tokens, sp, n, word_maps is not None))
        if sp.images is not None:
            row.update(_image_metrics(hyps[k], refs, grounded[k] if boxes is not None else None,
                                      objects, uniform))
        results.append(row)
    return SplitOutput(metrics=results, hyps=hyps)


# Rows per attribution program: a batch is cut into parts of this many rows (the last one
# padded with filler rows) and a part holding no example to score is skipped, since the cost of
# attributions grows with every row (one backward pass per target position each).
ATTRIBUTION_ROWS = 32


def _attributions(attribution, params, batch, n: int):
    """(first row, {method: maps [K, R, T, S]}) for each ATTRIBUTION_ROWS-row part of `batch`
    that holds an example below n."""
    for start in range(0, len(batch["index"]), ATTRIBUTION_ROWS):
        part = {key: value[start:start + ATTRIBUTION_ROWS] for key, value in batch.items()}
        if not any(0 <= i < n for i in part["index"].tolist()):
            continue
        filler = ATTRIBUTION_ROWS - len(part["index"])
        if filler:
            part = {key: np.concatenate([value, batches._filler(key, filler, value)])
                    for key, value in part.items()}
        yield start, jax.device_get(attribution(params, part))


def _image_metrics(hyps: Sequence[str], refs: Sequence[str], grounded: list | None,
                   objects: list[int] | None, uniform: list | None) -> dict[str, Any]:
    """CIDEr-D, and (with gold boxes) pointing and mass in the gold region, over the split and by
    the number of objects in the picture; beside them the uniform-attention baseline on the same
    words (`grounding.uniform_grounding`: the expected pointing of a random cell)."""
    out: dict[str, Any] = {"cider": cider_lib.cider(hyps, [[r] for r in refs])[0],
                           "pointing": None, "mass_in_box": None}
    if grounded is not None:
        corpus, base = grounding.corpus_grounding(grounded), grounding.corpus_grounding(uniform)
        out.update(pointing=corpus["pointing"], mass_in_box=corpus["mass"],
                   pointing_uniform=base["pointing"], mass_in_box_uniform=base["mass"])
    if objects is not None:
        by = {}
        parts = grounding.grounding_by_count(grounded, objects) if grounded is not None else {}
        for count in sorted(set(objects)):
            rows = [i for i, c in enumerate(objects) if c == count]
            entry = {"sentences": len(rows),
                     "bleu": metrics.bleu([hyps[i] for i in rows], [refs[i] for i in rows])[0],
                     "exact_match": metrics.exact_match([hyps[i] for i in rows],
                                                        [refs[i] for i in rows])}
            if count in parts:
                entry.update(pointing=parts[count]["pointing"], mass_in_box=parts[count]["mass"])
            by[str(count)] = entry
        out["by_objects"] = by
    return out


def source_batch(data: batches.Data, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """Raw source sentences as src [batch_size, L] in the smallest bucket that fits them."""
    ids = [data.src_vocab.encode(t) for t in texts]
    longest = max(len(x) for x in ids)
    length = batches.smallest_bucket(longest, data.buckets)
    if length is None:
        raise ValueError(f"A sentence of {longest} tokens exceeds the largest bucket "
                         f"{max(data.buckets)}; raise data.buckets.")
    src = np.zeros((batch_size, length), np.int32)  # PAD
    for r, x in enumerate(ids):
        src[r, :len(x)] = x
    return src


def translate_texts(data, eval_step, params, texts: Sequence[str], batch_size: int,
                    beam_step=None, length_penalty: float = 0.6):
    """Translations of raw sentences, greedy or (with `beam_step`) beam search as in `run_split`:
    per replica, a list of (hyp ids with EOS if emitted, attention [T, S]) per text."""
    out = decoder(eval_step, beam_step, length_penalty)(
        params, source_batch(data, texts, batch_size))
    return _per_replica(out, len(texts))


def _per_replica(out: dict[str, np.ndarray], rows: int) -> list[list[tuple[list[int], Any]]]:
    """A decoder's output as, per replica, (ids, attention [T, S]) of its first `rows` rows."""
    results = []
    for k in range(out["tokens"].shape[0]):
        per = []
        for r in range(rows):
            length = int(out["lengths"][k, r])
            per.append((out["tokens"][k, r, :length].tolist(), out["attention"][k, r, :length]))
        results.append(per)
    return results


def caption_images(decode: Decoder, params, images: np.ndarray, batch_size: int):
    """`translate_texts` for pictures: images [N, H, W, 3] uint8 captioned by `decode` (`decoder`)
    `batch_size` at a time (one compiled shape; the last batch padded with black pictures). Per
    replica, a list of (caption ids with EOS if emitted, attention [T, S] over the grid) per
    image."""
    results = None
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        src = np.zeros((batch_size, *images.shape[1:]), np.uint8)  # [B, H, W, 3]
        src[:len(chunk)] = chunk
        part = _per_replica(decode(params, src), len(chunk))
        results = part if results is None else [a + b for a, b in zip(results, part)]
    return results or []


def forced_heads(data: batches.Data, eval_step, params, text: str, hyp: Sequence[int],
                 batch_size: int) -> np.ndarray | None:
    """Replica 0's cross-attention of every layer and head [L, H, T, S] on `text` while it
    produces `hyp` (its own translation: ids, EOS included when emitted), teacher-forced, which
    are the maps its decoder used; None for a model without heads."""
    src = source_batch(data, [text], batch_size)  # [B, L]
    length = max(src.shape[1], 8 * -(-len(hyp) // 8))
    batch = {"src": np.pad(src, ((0, 0), (0, length - src.shape[1]))),
             "tgt_in": np.zeros((batch_size, length), np.int32),  # PAD
             "tgt_out": np.zeros((batch_size, length), np.int32)}
    batch["tgt_in"][0, :len(hyp)] = [BOS, *hyp[:-1]]
    batch["tgt_out"][0, :len(hyp)] = hyp
    scored = jax.device_get(eval_step.score(params, batch))
    if "forced_heads" not in scored:
        return None
    return np.asarray(scored["forced_heads"][0, 0, :, :, :len(hyp)])
