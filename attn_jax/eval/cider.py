"""CIDEr-D (Vedantam, Zitnick & Parikh 2015), as the coco-caption evaluation server computes it.

A reimplementation of `CiderScorer` in coco-caption's pycocoevalcap/cider/cider_scorer.py
(github.com/tylin/coco-caption; the `Cider` class the server reports as "CIDEr" is the CIDEr-D
variant: clipped tf, Gaussian length penalty, no stemming, x10). pycocoevalcap is not needed.

For image i with hypothesis c and references r_1..r_m, and n = 1..4:
- g_n(x): the n-gram vector of a caption, tf(ngram) · (log N − log max(1, df(ngram))), where
  N is the number of images in the evaluated corpus and df(ngram) the number of images among
  whose *references* it occurs (document frequencies come from this corpus's references, not
  from a fixed training set). An n-gram in every image's references weighs 0; one in no
  reference gets df = 1.
- sim_n(c, r) = Σ_ngram min(g_n(c), g_n(r)) · g_n(r) / (‖g_n(c)‖ ‖g_n(r)‖), left as the (zero)
  numerator when a norm is 0, times the length penalty exp(−δ² / (2σ²)), σ = 6.
- CIDEr-D(c, r_1..r_m) = 10 · mean_n (1/m) Σ_j sim_n(c, r_j); the corpus score is the mean over
  images.

As in the reference, the length in δ is a caption's number of bigrams, max(words − 1, 0): the
difference in words whenever it matters (an empty caption scores 0 anyway), and no penalty at all
with n = 1. A corpus of one image scores 0 (every weight is log 1 − log 1 = 0). Scores are on the
reference's 0..10 scale (papers usually print 100 x this, e.g. "CIDEr 112.3" for 1.123).

Tokens are whitespace-split and lowercased (captions are assumed tokenized already; the server
runs the PTB tokenizer first).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

NGram = tuple[str, ...]


def _ngrams(caption: str, n: int) -> Counter[NGram]:
    """Counts of the 1..n-grams of a caption."""
    words = caption.lower().split()
    return Counter(tuple(words[i:i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def _vector(counts: Counter[NGram], df: Counter[NGram], log_n: float, n: int
            ) -> tuple[list[dict[NGram, float]], list[float], int]:
    """tf-idf vectors per order, their norms, and the caption's length (its number of bigrams)."""
    vec: list[dict[NGram, float]] = [{} for _ in range(n)]
    for ngram, tf in counts.items():
        vec[len(ngram) - 1][ngram] = tf * (log_n - math.log(max(1.0, df[ngram])))
    norms = [math.sqrt(sum(v * v for v in order.values())) for order in vec]
    length = sum(tf for ngram, tf in counts.items() if len(ngram) == 2)
    return vec, norms, length


def _similarity(hyp: tuple, ref: tuple, n: int, sigma: float) -> float:
    """Σ_n of the clipped, length-penalised cosine between a hypothesis and one reference."""
    (vec_h, norm_h, len_h), (vec_r, norm_r, len_r) = hyp, ref
    penalty = math.exp(-((len_h - len_r) ** 2) / (2 * sigma ** 2))
    total = 0.0
    for k in range(n):
        val = sum(min(w, vec_r[k].get(g, 0.0)) * vec_r[k].get(g, 0.0) for g, w in vec_h[k].items())
        if norm_h[k] != 0 and norm_r[k] != 0:
            val /= norm_h[k] * norm_r[k]
        total += val * penalty
    return total


def cider(hyps: Sequence[str], refs: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0
          ) -> tuple[float, list[float]]:
    """Corpus CIDEr-D and the score of each image (module docstring).

    Args:
      hyps: [N] one hypothesis caption per image.
      refs: [N] lists of reference captions per image (at least one each).
      n: the largest n-gram order. sigma: the length penalty's standard deviation.

    Returns:
      (corpus score = mean of the per-image scores, [N] per-image scores), on the 0..10 scale.

    Raises ValueError on an empty corpus, differing lengths, or an image without references.
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference lists")
    if not hyps:
        raise ValueError("CIDEr is undefined for an empty corpus")
    if any(isinstance(r, str) or not r for r in refs):
        raise ValueError("every image needs a non-empty list of reference captions (refs: [N] "
                         "lists of strings)")
    ref_counts = [[_ngrams(r, n) for r in image] for image in refs]
    df: Counter[NGram] = Counter()  # images whose references contain the n-gram
    for image in ref_counts:
        df.update({g for counts in image for g in counts})
    log_n = math.log(len(refs))
    scores = []
    for hyp, image in zip(hyps, ref_counts):
        vec_h = _vector(_ngrams(hyp, n), df, log_n, n)
        sims = [_similarity(vec_h, _vector(counts, df, log_n, n), n, sigma) for counts in image]
        scores.append(10.0 * sum(sims) / n / len(image))
    return sum(scores) / len(scores), scores
