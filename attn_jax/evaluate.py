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

Attention entropy (any data, scorer != none): the mean over real target tokens of the entropy of
the teacher-forced attention over the real source tokens, relative to uniform
(`metrics.attention_entropy`: 1 = uniform, 0 = one position), so one can watch attention sharpen.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from attn_jax import data as data_lib
from attn_jax import metrics
from attn_jax.tokens import PAD

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


def word_index(vocab, text: str) -> np.ndarray | None:
    """The whitespace word of each token of vocab.encode(text) ([N] int), or None when the tokens
    do not split at the words (a token spanning two words, a word of no tokens)."""
    words = [vocab.encode(word) for word in text.split()]
    if not all(words) or [t for w in words for t in w] != list(vocab.encode(text)):
        return None
    return np.repeat(np.arange(len(words)), [len(w) for w in words])


def _word_maps(data: data_lib.Data, sp, n: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
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


def run_split(data: data_lib.Data, split: str, eval_step, params, *, batch_size: int,
              num_seeds: int, attends: bool, subset: int = 0, beam_step=None,
              length_penalty: float = 0.6) -> SplitOutput:
    """Evaluates every replica on `split` (its first `subset` examples if > 0). Translations come
    from greedy decoding, or from beam search when `beam_step` (steps.make_beam_step) is given."""
    sp = data[split]
    n = len(sp) if not subset else min(subset, len(sp))
    decode = decoder(eval_step, beam_step, length_penalty)
    word_maps = _word_maps(data, sp, n) if attends and sp.sure is not None else None
    nll = np.zeros(num_seeds)
    entropy, entropy_tokens = np.zeros(num_seeds), 0
    weight = 0.0
    hyps = [[""] * n for _ in range(num_seeds)]
    predicted = [[set() for _ in range(n)] for _ in range(num_seeds)]
    for batch in data_lib.eval_batches(data, split, batch_size):
        rows = [(r, i) for r, i in enumerate(batch["index"].tolist()) if 0 <= i < n]
        if not rows:
            continue
        scored = jax.device_get(eval_step.score(params, batch))
        out = decode(params, batch["src"])
        live = np.array([r for r, _ in rows])
        weight += float(scored["weight"][0, live].sum())
        if attends:
            tgt_mask = batch["tgt_out"][live] != PAD
            entropy += metrics.attention_entropy(
                scored["forced_attention"][:, live], (batch["src"][live] != PAD).sum(-1), tgt_mask)
            entropy_tokens += int(tgt_mask.sum())
        for k in range(num_seeds):
            nll[k] += float(scored["nll"][k, live].sum())
            for r, i in rows:
                hyps[k][i] = data.tgt_vocab.decode(out["tokens"][k, r, :out["lengths"][k, r]])
                if word_maps is not None:
                    predicted[k][i] = metrics.word_alignment(
                        scored["forced_attention"][k, r], *word_maps[i])
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
        row["attention_entropy"] = entropy[k] / max(entropy_tokens, 1) if attends else None
        row["aer"] = (metrics.aer(predicted[k], [set(s) for s in sp.sure[:n]],
                                  [set(p) for p in sp.possible[:n]])
                      if word_maps is not None else None)
        results.append(row)
    return SplitOutput(metrics=results, hyps=hyps)


def source_batch(data: data_lib.Data, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """Raw source sentences as src [batch_size, L] in the smallest bucket that fits them."""
    ids = [data.src_vocab.encode(t) for t in texts]
    longest = max(len(x) for x in ids)
    length = data_lib.smallest_bucket(longest, data.buckets)
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
    results = []
    for k in range(out["tokens"].shape[0]):
        per = []
        for r in range(len(texts)):
            length = int(out["lengths"][k, r])
            per.append((out["tokens"][k, r, :length].tolist(), out["attention"][k, r, :length]))
        results.append(per)
    return results
