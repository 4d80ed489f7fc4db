"""Tests for attn_jax.eval.cider: CIDEr-D on hand-computed corpora and its defining properties."""

import math

import pytest

from attn_jax.eval.cider import cider

W = math.log(2)  # log N - log df for an n-gram in the references of 1 of N = 2 images


def test_hand_computed_two_images():
    """N = 2 images, so an n-gram in the references of one image weighs w = log 2 - log 1 and
    "a" (in both images' references) weighs log 2 - log 2 = 0. Lengths are bigram counts.

    Image 1: hyp "a cat" (uni a:0 cat:w, norm w; bi "a cat":w, norm w; length 1).
      vs "a cat sits" (uni cat:w sits:w, norm w√2; bi "a cat" "cat sits", norm w√2; tri norm w;
      length 2): sim_1 = w·w / (w · w√2) = 1/√2, sim_2 = 1/√2, sim_3 = sim_4 = 0 (the hyp has
      no trigram); δ = 1 - 2 -> penalty exp(-1/72).
      vs "a cat": sim_1 = sim_2 = 1, δ = 0.
      score = 10 · (√2 · exp(-1/72) + 2) / 4 orders / 2 references = 2.5 + 1.25 √2 exp(-1/72).
    Image 2: hyp "a dog sits" vs "a dog runs" (δ = 0): uni dog:w sits:w vs dog:w runs:w ->
      w² / (w√2 · w√2) = 1/2; bi "a dog" "dog sits" vs "a dog" "dog runs" -> 1/2; the trigrams
      differ ("a dog sits" is in no reference: df = max(1, 0), weight w) -> 0.
      score = 10 · (1/2 + 1/2) / 4 = 2.5.
    Corpus: the mean of the two.
    """
    corpus, scores = cider(["a cat", "a dog sits"], [["a cat sits", "a cat"], ["a dog runs"]])
    image_1 = 2.5 + 1.25 * math.sqrt(2) * math.exp(-1 / 72)
    assert scores == pytest.approx([image_1, 2.5], abs=1e-12)
    assert image_1 == pytest.approx(4.243384, abs=1e-6)
    assert corpus == pytest.approx((image_1 + 2.5) / 2, abs=1e-12)


def test_lowercases_and_splits_on_whitespace():
    hyps, refs = ["a cat", "a dog sits"], [["a cat sits", "a cat"], ["a dog runs"]]
    assert cider(["A  Cat", " a DOG sits "], refs) == cider(hyps, refs)


def test_identical_scores_higher_than_partial_match():
    refs = [["a red cat sits on a mat"], ["a blue dog runs in a park"], ["two birds on a wire"]]
    exact, exact_scores = cider([r[0] for r in refs], refs)
    partial, partial_scores = cider(["a red cat runs in a park", "a blue dog runs in a park",
                                     "two dogs in a wire"], refs)
    assert exact > partial
    assert exact_scores[0] > partial_scores[0] and exact_scores[2] > partial_scores[2]
    assert exact_scores[1] == pytest.approx(partial_scores[1])  # same caption, same df


def test_identical_caption_scores_10_when_no_ngram_is_shared_across_images():
    # every n-gram of a reference occurs in one image only (weight log 2 > 0), and the
    # captions have all four orders: each cosine is 1 -> 10 · mean(1, 1, 1, 1) = 10
    refs = [["red cat sits here"], ["blue dog runs there"]]
    corpus, scores = cider([r[0] for r in refs], refs)
    assert scores == pytest.approx([10.0, 10.0]) and corpus == pytest.approx(10.0)


def test_length_penalty():
    """Only the penalty depends on sigma; with one reference the score scales by
    exp(-δ² / (2σ²)) with δ the difference in bigram counts (here words: 6 vs 3)."""
    hyps, refs = ["cat sits on the red mat", "dog runs"], [["cat sits on"], ["dog runs fast"]]
    _, penalised = cider(hyps, refs)
    _, flat = cider(hyps, refs, sigma=1e9)
    assert penalised[0] == pytest.approx(flat[0] * math.exp(-(5 - 2) ** 2 / 72))
    assert penalised[1] == pytest.approx(flat[1] * math.exp(-(1 - 2) ** 2 / 72))
    assert penalised[0] < flat[0]


def test_clipping_does_not_reward_repeating_a_word():
    """Image 1: hyp "cat cat" vs ref "cat sat" (N = 2, w = log 2; both have 1 bigram: δ = 0).
    Unigram: hyp cat = 2w (norm 2w), ref cat = sat = w (norm w√2); the clipped numerator is
    min(2w, w) · w = w², so sim_1 = w² / (2w · w√2) = 1/(2√2) (unclipped 2w·w would give 1/√2,
    the same as hyp "cat"). The bigram "cat cat" is in no reference: 0.
    Score = 10 · 1/(2√2) / 4."""
    refs = [["cat sat"], ["dog ran"]]
    _, repeated = cider(["cat cat", "dog ran"], refs)
    assert repeated[0] == pytest.approx(10 / (8 * math.sqrt(2)), abs=1e-12)
    _, once = cider(["cat", "dog ran"], refs)  # 0 bigrams: δ = 1
    assert once[0] == pytest.approx(10 / (4 * math.sqrt(2)) * math.exp(-1 / 72), abs=1e-12)
    _, more = cider(["cat cat cat", "dog ran"], refs)
    assert repeated[0] < once[0] and more[0] < repeated[0]


def test_invariant_to_reference_and_image_order():
    hyps = ["a cat sits on a mat", "a dog runs", "two birds"]
    refs = [["a cat on a mat", "the cat sits", "a cat sitting on the mat"],
            ["a dog running", "the dog runs fast"], ["two birds on a wire", "birds"]]
    corpus, scores = cider(hyps, refs)
    shuffled = [r[::-1] for r in refs]
    assert cider(hyps, shuffled)[1] == pytest.approx(scores, abs=1e-12)
    order = [2, 0, 1]
    corpus_p, scores_p = cider([hyps[i] for i in order], [refs[i] for i in order])
    assert scores_p == pytest.approx([scores[i] for i in order], abs=1e-12)
    assert corpus_p == pytest.approx(corpus, abs=1e-12)


def test_single_image_corpus_scores_0():
    # log N = log 1 = 0 and every df >= 1: all weights are 0 (as in the reference scorer)
    assert cider(["a cat"], [["a cat"]]) == (0.0, [0.0])


@pytest.mark.parametrize("hyps, refs", [
    (["a", "b"], [["a"]]),  # lengths differ
    (["a", "b"], [["a"], []]),  # an image without references
    (["a"], ["a"]),  # references not a list per image
    ([], []),  # empty corpus
])
def test_errors(hyps, refs):
    with pytest.raises(ValueError):
        cider(hyps, refs)
