"""Evaluation of K replicas on a split: teacher-forced perplexity, greedy (or beam) translations,
BLEU (sacrebleu), exact match, BLEU per source-length bucket, and AER of the attention.

AER: force-decode the reference, link each target word to its argmax source word, compare with
the gold sure/possible links (Och & Ney 2003). Defined only where the data has gold alignments
(the embedded synthetic data) and the model attends (scorer != none); otherwise None.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import numpy as np

from attn_jax import data as data_lib
from attn_jax import metrics


@dataclasses.dataclass
class SplitOutput:
    """Per replica: metrics and hypotheses (by example index)."""

    metrics: list[dict[str, Any]]
    hyps: list[list[str]]


def _trim(tokens: np.ndarray) -> list[int]:
    """Greedy output row -> ids up to and including EOS."""
    out = []
    for t in tokens.tolist():
        out.append(t)
        if t == data_lib.EOS:
            break
    return out


def _beam_outputs(beam_step, params, src, alpha: float, num_seeds: int) -> dict[str, np.ndarray]:
    """Best beam hypothesis per replica: tokens [K, B, L], attention [K, B, L, S]."""
    best = []
    for k in range(num_seeds):
        res = jax.device_get(beam_step(jax.tree.map(lambda x: x[k], params), src, alpha))
        best.append((res["tokens"][:, 0], res["attention"][:, 0]))
    return {"tokens": np.stack([b[0] for b in best]), "attention": np.stack([b[1] for b in best])}


def run_split(data: data_lib.Data, split: str, eval_step, params, *, batch_size: int,
              num_seeds: int, attends: bool, subset: int = 0, beam_step=None,
              length_penalty: float = 0.6) -> SplitOutput:
    """Evaluates every replica on `split` (its first `subset` examples if > 0). Translations come
    from greedy decoding, or from beam search when `beam_step` (steps.make_beam_step) is given."""
    sp = data[split]
    n = len(sp) if not subset else min(subset, len(sp))
    nll = np.zeros(num_seeds)
    weight = 0.0
    hyps = [[""] * n for _ in range(num_seeds)]
    predicted = [[set() for _ in range(n)] for _ in range(num_seeds)]
    for batch in data_lib.eval_batches(data, split, batch_size):
        rows = [(r, i) for r, i in enumerate(batch["index"].tolist()) if 0 <= i < n]
        if not rows:
            continue
        out = jax.device_get(eval_step(params, batch))
        if beam_step is not None:
            out.update(_beam_outputs(beam_step, params, batch["src"], length_penalty, num_seeds))
        live = np.array([r for r, _ in rows])
        weight += float(out["weight"][0, live].sum())
        for k in range(num_seeds):
            nll[k] += float(out["nll"][k, live].sum())
            for r, i in rows:
                hyps[k][i] = data.tgt_vocab.decode(_trim(out["tokens"][k, r]))
                if attends and sp.sure is not None:
                    predicted[k][i] = metrics.argmax_alignment(
                        out["forced_attention"][k, r], len(sp.src_ids[i]), len(sp.tgt_ids[i]))
    refs = sp.tgt_text[:n]
    src_lengths = [len(s.split()) for s in sp.src_text[:n]]
    results = []
    for k in range(num_seeds):
        loss = nll[k] / max(weight, 1.0)
        bleu, signature = metrics.bleu(hyps[k], refs)
        row = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "bleu": bleu,
               "bleu_lowercase": metrics.bleu(hyps[k], refs, lowercase=True)[0],
               "chrf": metrics.chrf(hyps[k], refs)[0],
               "exact_match": metrics.exact_match(hyps[k], refs),
               "bleu_by_length": metrics.bleu_by_length(hyps[k], refs, src_lengths),
               "bleu_signature": signature, "num_sentences": n}
        row["aer"] = (metrics.aer(predicted[k], [set(s) for s in sp.sure[:n]],
                                  [set(p) for p in sp.possible[:n]])
                      if attends and sp.sure is not None else None)
        results.append(row)
    return SplitOutput(metrics=results, hyps=hyps)


def source_batch(data: data_lib.Data, texts: Sequence[str], batch_size: int) -> dict[str, np.ndarray]:
    """A batch of raw source sentences in the smallest bucket that fits (fixed eval shape)."""
    ids = [data.src_vocab.encode(t) for t in texts]
    longest = max(len(x) for x in ids)
    length = data_lib.smallest_bucket(longest, data.buckets)
    if length is None:
        raise ValueError(f"A sentence of {longest} tokens exceeds the largest bucket "
                         f"{max(data.buckets)}; raise data.buckets.")
    src = np.zeros((batch_size, length), np.int32)
    for r, x in enumerate(ids):
        src[r, :len(x)] = x
    tgt = np.zeros((batch_size, length), np.int32)
    tgt[:len(ids), 0] = data_lib.BOS
    return {"src": src, "tgt_in": tgt, "tgt_out": np.zeros_like(tgt),
            "index": np.where(np.arange(batch_size) < len(ids), np.arange(batch_size), -1)}


def translate_texts(data, eval_step, params, texts: Sequence[str], batch_size: int):
    """Greedy translations of raw sentences: per replica, a list of (hyp ids, attention [T, S])."""
    batch = source_batch(data, texts, batch_size)
    out = jax.device_get(eval_step(params, batch))
    results = []
    for k in range(out["tokens"].shape[0]):
        per = []
        for r in range(len(texts)):
            ids = _trim(out["tokens"][k, r])
            per.append((ids, out["attention"][k, r, :len(ids)]))
        results.append(per)
    return results
