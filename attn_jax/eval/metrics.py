"""Corpus metrics for translation and alignment: BLEU/chrF (sacrebleu), exact match, BLEU by
source-length bucket, argmax alignments from attention (over words, also when the tokens are
subwords), and alignment error rate (AER).

Pure numpy + sacrebleu (no JAX), so it runs anywhere: in the eval loop on host arrays, in
plots/tables, and in tests.

Conventions (README.md):
- Alignment links are `(src_idx, tgt_idx)` pairs of 0-based word indices (Pharaoh "i-j" order).
- Sure links S are a subset of possible links P; `aer` takes P ∪ S to be safe.
- Scores: BLEU and chrF on sacrebleu's 0..100 scale; exact match and AER are fractions in [0, 1].
- Source-length buckets ("1-10", ..., "41+") come from `attn_jax.data.lengths`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from absl import logging
from sacrebleu.metrics import BLEU, CHRF

from attn_jax.data.lengths import LENGTH_BUCKETS, length_bucket

Link = tuple[int, int]  # (src_idx, tgt_idx)

_EMPTY_NOTE = "|note:empty-corpus-score-set-to-0"


# ---------------------------------------------------------------------------------------------
# String metrics
# ---------------------------------------------------------------------------------------------


def _check_pair(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")


def _signature_without_data(metric: BLEU | CHRF) -> str:
    """sacrebleu only knows a signature (its nrefs field) after scoring: score one dummy pair."""
    metric.corpus_score(["x"], [["x"]])
    return str(metric.get_signature())


def _corpus_score(metric: BLEU | CHRF, hyps: Sequence[str], refs: Sequence[str]) -> tuple[float, str]:
    """`metric`'s corpus score (one reference per hypothesis) and its signature string; an empty
    corpus scores 0.0 with `|note:empty-corpus-score-set-to-0` ending the signature."""
    _check_pair(hyps, refs)
    if not hyps:
        logging.warning("%s: empty corpus, returning 0.0", type(metric).__name__.lower())
        return 0.0, _signature_without_data(metric) + _EMPTY_NOTE
    score = float(metric.corpus_score(list(hyps), [list(refs)]).score)
    return score, str(metric.get_signature())


def bleu(
    hyps: Sequence[str], refs: Sequence[str], lowercase: bool = False, tokenize: str = "13a"
) -> tuple[float, str]:
    """Corpus BLEU (sacrebleu, one reference per hypothesis) and its signature string.

    An empty corpus scores 0.0 (sacrebleu itself raises); the signature then ends with
    `|note:empty-corpus-score-set-to-0` so the case is visible wherever the signature is logged.
    """
    return _corpus_score(BLEU(lowercase=lowercase, tokenize=tokenize), hyps, refs)


def chrf(hyps: Sequence[str], refs: Sequence[str]) -> tuple[float, str]:
    """Corpus chrF (sacrebleu defaults: character 6-grams, beta=2) and its signature string.

    An empty corpus scores 0.0 with the same signature note as `bleu`.
    """
    return _corpus_score(CHRF(), hyps, refs)


def exact_match(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Fraction in [0, 1] of hypotheses equal to their reference after whitespace normalisation
    (leading/trailing whitespace stripped, internal runs collapsed to one space). Case-sensitive.
    An empty corpus gives 0.0."""
    _check_pair(hyps, refs)
    if not hyps:
        return 0.0
    hits = sum(" ".join(h.split()) == " ".join(r.split()) for h, r in zip(hyps, refs))
    return hits / len(hyps)


def bleu_by_length(
    hyps: Sequence[str],
    refs: Sequence[str],
    src_lengths: Sequence[int],
    buckets: Sequence[str] = LENGTH_BUCKETS,
    lowercase: bool = False,
    tokenize: str = "13a",
) -> dict[str, float | None]:
    """Corpus BLEU within each source-length bucket: {bucket name: BLEU, or None if empty}.

    `src_lengths[i]` is the number of source words of sentence i (see `length_bucket`). Every
    bucket name is a key, in `buckets` order, so downstream JSON always has the same shape.
    """
    _check_pair(hyps, refs)
    if len(src_lengths) != len(hyps):
        raise ValueError(f"{len(src_lengths)} source lengths for {len(hyps)} hypotheses")
    members: dict[str, list[int]] = {name: [] for name in buckets}
    for i, n in enumerate(src_lengths):
        members[length_bucket(int(n), buckets)].append(i)
    scores: dict[str, float | None] = {}
    for name, idx in members.items():
        if not idx:
            scores[name] = None
            continue
        scores[name], _ = bleu([hyps[i] for i in idx], [refs[i] for i in idx], lowercase, tokenize)
    return scores


# ---------------------------------------------------------------------------------------------
# Alignments
# ---------------------------------------------------------------------------------------------


def argmax_alignment(attention: np.ndarray, src_len: int, tgt_len: int) -> set[Link]:
    """Hard alignment from soft attention: target word t links to argmax_s attention[t, s].

    Args:
      attention: [T, S] weights (rows: target steps, columns: source positions), T >= tgt_len and
        S >= src_len. Rows past `tgt_len` (the EOS step, padding) and columns past `src_len`
        (padding) are ignored.
      src_len: number of real source words.
      tgt_len: number of real target words.

    Returns:
      {(src_idx, tgt_idx)}: one link per target word (empty if src_len or tgt_len is 0).
    """
    attention = np.asarray(attention)
    if attention.ndim != 2:
        raise ValueError(f"attention must be [T, S], got shape {attention.shape}")
    num_t, num_s = attention.shape
    if not (0 <= tgt_len <= num_t and 0 <= src_len <= num_s):
        raise ValueError(f"lengths (src={src_len}, tgt={tgt_len}) exceed attention [T={num_t}, S={num_s}]")
    if src_len == 0 or tgt_len == 0:
        return set()
    best = np.argmax(attention[:tgt_len, :src_len], axis=-1)  # [tgt_len]
    return {(int(s), t) for t, s in enumerate(best)}


def word_alignment(attention: np.ndarray, src_word: Sequence[int],
                   tgt_word: Sequence[int]) -> set[Link]:
    """`argmax_alignment` between words made of subword tokens.

    Args:
      attention: [T, S] weights over tokens, T >= len(tgt_word), S >= len(src_word); rows and
        columns past them (EOS, padding) are ignored.
      src_word: the word of each real source token, nondecreasing from 0 with no gaps
        (e.g. [0, 0, 1] for "▁ka la ▁ghar"); likewise tgt_word for the target tokens.

    A source word's weight is the sum of its tokens' weights (the attention mass on the word); a
    target word's attention is the mean of its tokens' rows. Each target word then links to its
    argmax source word. With one token per word this is `argmax_alignment`.
    """
    src_word, tgt_word = np.asarray(src_word, int), np.asarray(tgt_word, int)
    attention = np.asarray(attention, np.float64)
    fits = (attention.ndim == 2 and len(tgt_word) <= attention.shape[0]
            and len(src_word) <= attention.shape[1])
    if not fits:
        raise ValueError(f"{len(tgt_word)} target and {len(src_word)} source tokens do not fit "
                         f"attention of shape {attention.shape}")
    if not len(src_word) or not len(tgt_word):
        return set()
    num_src, num_tgt = int(src_word.max()) + 1, int(tgt_word.max()) + 1
    sum_src = np.eye(num_src)[src_word]  # [S, Ws]: token s belongs to word w
    mean_tgt = np.eye(num_tgt)[tgt_word]  # [T, Wt]
    mean_tgt /= np.maximum(mean_tgt.sum(0), 1)
    words = mean_tgt.T @ attention[:len(tgt_word), :len(src_word)] @ sum_src  # [Wt, Ws]
    return argmax_alignment(words, num_src, num_tgt)


def attention_entropy(attention: np.ndarray, src_len: np.ndarray,
                      tgt_mask: np.ndarray) -> np.ndarray:
    """How spread out attention is: per replica, the sum over real target positions of the
    entropy of α_t over the real source positions divided by its maximum, log(src_len) (0 =
    all weight on one position, 1 = uniform). Divide by tgt_mask.sum() for the mean.

    Args:
      attention: [K, B, T, S] weights, zero at padded source positions.
      src_len: [B] real source positions per row.
      tgt_mask: [B, T] True at real target positions (EOS included).

    Returns:
      [K] sums; a row with one source position counts 0 (its attention cannot spread).
    """
    attention = np.asarray(attention, np.float64)
    plogp = np.where(attention > 0, attention * np.log(np.maximum(attention, 1e-300)), 0.0)
    entropy = -plogp.sum(-1)  # [K, B, T]
    most = np.log(np.maximum(np.asarray(src_len), 2))[None, :, None]
    relative = np.where(np.asarray(src_len)[None, :, None] > 1, entropy / most, 0.0)
    return (relative * np.asarray(tgt_mask)[None]).sum(axis=(1, 2))


def _as_links(links: Iterable[Sequence[int]]) -> set[Link]:
    return {(int(s), int(t)) for s, t in links}


def aer(
    predicted: Sequence[Iterable[Link]],
    sure: Sequence[Iterable[Link]],
    possible: Sequence[Iterable[Link]],
) -> float:
    """Corpus-level alignment error rate (Och & Ney 2003), in [0, 1], lower is better.

        AER = 1 - (sum_i |A_i ∩ S_i| + sum_i |A_i ∩ P_i|) / (sum_i |A_i| + sum_i |S_i|)

    with A the predicted links, S the sure and P the possible gold links of sentence i. Counts
    are summed over the corpus before dividing (not an average of per-sentence AERs). P is taken
    as P ∪ S, so gold data whose P omits S is scored as intended. Each argument is a list (one
    entry per sentence) of iterables of (src_idx, tgt_idx) pairs.

    Raises ValueError when the lists differ in length, or when there is nothing to score
    (no predicted and no sure links in the whole corpus: AER is undefined).
    """
    if not len(predicted) == len(sure) == len(possible):
        raise ValueError(f"lengths differ: {len(predicted)} predicted, {len(sure)} sure, "
                         f"{len(possible)} possible")
    hits_sure = hits_possible = num_pred = num_sure = 0
    for a_links, s_links, p_links in zip(predicted, sure, possible):
        a, s = _as_links(a_links), _as_links(s_links)
        p = _as_links(p_links) | s
        hits_sure += len(a & s)
        hits_possible += len(a & p)
        num_pred += len(a)
        num_sure += len(s)
    if num_pred + num_sure == 0:
        raise ValueError("AER is undefined: no predicted and no sure links in the corpus")
    return 1.0 - (hits_sure + hits_possible) / (num_pred + num_sure)
