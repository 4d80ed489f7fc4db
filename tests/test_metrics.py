"""Tests for attn_jax.eval.metrics: hand-computed BLEU, exact match, length buckets, alignments, AER."""

import numpy as np
import pytest

from attn_jax.eval import metrics

# ------------------------------------------------------------------------------------ BLEU / chrF


def test_bleu_identical_is_100():
    hyps = ["i am going home", "the cat sat on the mat"]
    score, signature = metrics.bleu(hyps, list(hyps))
    assert score == pytest.approx(100.0)
    assert "tok:13a" in signature and "case:mixed" in signature


def test_bleu_known_value():
    # hyp "the cat sat on a mat" vs ref "the cat sat on the mat" (same length, BP = 1):
    # n-gram precisions 5/6, 3/5, 2/4, 1/3 -> BLEU = 100 * (5/6 * 3/5 * 2/4 * 1/3) ** (1/4)
    #                                               = 100 * (1/12) ** 0.25 = 53.728...
    score, _ = metrics.bleu(["the cat sat on a mat"], ["the cat sat on the mat"])
    assert score == pytest.approx(100 * (1 / 12) ** 0.25, abs=1e-6)
    assert score == pytest.approx(53.7285, abs=1e-3)


def test_bleu_lowercase_flag():
    hyps, refs = ["The Cat sat on the mat"], ["the cat sat on the mat"]
    cased, cased_sig = metrics.bleu(hyps, refs)
    lower, lower_sig = metrics.bleu(hyps, refs, lowercase=True)
    assert lower == pytest.approx(100.0)
    assert cased < 60.0
    assert "case:lc" in lower_sig and "case:mixed" in cased_sig


def test_bleu_tokenize_in_signature():
    _, signature = metrics.bleu(["a b"], ["a b"], tokenize="none")
    assert "tok:none" in signature


def test_bleu_and_chrf_empty_corpus():
    score, signature = metrics.bleu([], [])
    assert score == 0.0 and "empty-corpus" in signature
    score, signature = metrics.chrf([], [])
    assert score == 0.0 and "empty-corpus" in signature


def test_bleu_length_mismatch_raises():
    with pytest.raises(ValueError, match="references"):
        metrics.bleu(["a"], ["a", "b"])


def test_chrf_identical_and_different():
    score, signature = metrics.chrf(["i am going home"], ["i am going home"])
    assert score == pytest.approx(100.0)
    assert "nc:6" in signature
    score, _ = metrics.chrf(["xyz"], ["i am going home"])
    assert score < 10.0


# ------------------------------------------------------------------------------------ exact match


def test_exact_match_normalises_whitespace():
    hyps = ["i am  going home ", "i go", "Home", "a b"]
    refs = ["i am going home", "i went", "home", "a b"]
    # matches: 1st (whitespace only), 4th; 3rd differs in case -> 2 / 4
    assert metrics.exact_match(hyps, refs) == pytest.approx(0.5)
    assert metrics.exact_match([], []) == 0.0


# ------------------------------------------------------------------------------------ length buckets


@pytest.mark.parametrize(
    "n, bucket",
    [(0, "1-10"), (1, "1-10"), (10, "1-10"), (11, "11-20"), (20, "11-20"), (21, "21-30"),
     (30, "21-30"), (31, "31-40"), (40, "31-40"), (41, "41+"), (500, "41+")],
)
def test_length_bucket(n, bucket):
    assert metrics.length_bucket(n) == bucket


def test_length_bucket_negative_raises():
    with pytest.raises(ValueError):
        metrics.length_bucket(-1)


def test_bleu_by_length_assigns_buckets_and_none_for_empty():
    hyps = ["i am going home", "the cat sat on a mat", "completely wrong words here"]
    refs = ["i am going home", "the cat sat on the mat", "the dog ran to the park"]
    src_lengths = [5, 15, 12]
    scores = metrics.bleu_by_length(hyps, refs, src_lengths)
    assert list(scores) == list(metrics.LENGTH_BUCKETS)
    assert scores["1-10"] == pytest.approx(100.0)
    # "11-20" holds sentences 2 and 3: its corpus BLEU is the BLEU of those two alone.
    expected, _ = metrics.bleu(hyps[1:], refs[1:])
    assert scores["11-20"] == pytest.approx(expected)
    assert 0.0 < scores["11-20"] < 100.0
    assert scores["21-30"] is None and scores["31-40"] is None and scores["41+"] is None


def test_bleu_by_length_custom_buckets():
    scores = metrics.bleu_by_length(["a b c d"], ["a b c d"], [3], buckets=("1-2", "3+"))
    assert scores == {"1-2": None, "3+": pytest.approx(100.0)}


# ------------------------------------------------------------------------------------ alignments


def test_argmax_alignment_ignores_padding_and_eos_row():
    # 3 target words + EOS row; 2 real source words + 1 padding column.
    attention = np.array(
        [
            [0.1, 0.7, 0.9],  # padding column would win; among real columns -> src 1
            [0.8, 0.2, 0.0],  # -> src 0
            [0.3, 0.6, 0.1],  # -> src 1
            [0.9, 0.1, 0.0],  # EOS step: ignored
        ]
    )
    links = metrics.argmax_alignment(attention, src_len=2, tgt_len=3)
    assert links == {(1, 0), (0, 1), (1, 2)}


def test_argmax_alignment_edge_cases():
    assert metrics.argmax_alignment(np.ones((2, 2)), src_len=0, tgt_len=2) == set()
    with pytest.raises(ValueError):
        metrics.argmax_alignment(np.ones((2, 2)), src_len=3, tgt_len=1)
    with pytest.raises(ValueError):
        metrics.argmax_alignment(np.ones((2, 2, 2)), src_len=1, tgt_len=1)


def test_aer_hand_computed_corpus():
    # Sentence 1: S = {(0,0),(1,1),(2,2)}, P = S + {(2,1)}, A = {(0,0),(2,1),(1,2)}
    #   |A∩S| = 1 ((0,0)), |A∩P| = 2 ((0,0),(2,1)), |A| = 3, |S| = 3
    # Sentence 2: S = {(0,0)}, P = {(1,0)} (P given without S: P ∪ S = {(0,0),(1,0)}),
    #   A = {(0,0),(1,0)}:  |A∩S| = 1, |A∩P| = 2, |A| = 2, |S| = 1
    # Corpus: AER = 1 - (1 + 1 + 2 + 2) / (3 + 2 + 3 + 1) = 1 - 6/9 = 1/3
    # (the mean of per-sentence AERs would be (1/2 + 0)/2 = 1/4: counts are summed first)
    predicted = [{(0, 0), (2, 1), (1, 2)}, [(0, 0), (1, 0)]]
    sure = [{(0, 0), (1, 1), (2, 2)}, ((0, 0),)]
    possible = [{(0, 0), (1, 1), (2, 2), (2, 1)}, {(1, 0)}]
    assert metrics.aer(predicted, sure, possible) == pytest.approx(1 / 3)


def test_aer_perfect_disjoint_and_possible_only():
    sure = [{(0, 0), (1, 1)}]
    possible = [{(0, 0), (1, 1), (1, 0)}]
    assert metrics.aer([{(0, 0), (1, 1)}], sure, possible) == pytest.approx(0.0)
    assert metrics.aer([{(0, 1), (2, 2)}], sure, possible) == pytest.approx(1.0)
    # Only a possible (not sure) link predicted: 1 - (0 + 1) / (1 + 2) = 2/3
    assert metrics.aer([{(1, 0)}], sure, possible) == pytest.approx(2 / 3)
    # S = {(0,0)}, P = {(0,0),(1,1)}, A = {(1,1)}: 1 - (0 + 1) / (1 + 1) = 0.5
    assert metrics.aer([{(1, 1)}], [{(0, 0)}], [{(0, 0), (1, 1)}]) == pytest.approx(0.5)


def test_aer_errors():
    with pytest.raises(ValueError, match="lengths differ"):
        metrics.aer([set()], [], [])
    with pytest.raises(ValueError, match="undefined"):
        metrics.aer([set()], [set()], [set()])


def test_argmax_alignment_feeds_aer():
    attention = np.eye(3)[:, ::-1]  # [T=3, S=3], anti-diagonal
    links = metrics.argmax_alignment(attention, src_len=3, tgt_len=3)
    gold = {(2, 0), (1, 1), (0, 2)}
    assert metrics.aer([links], [gold], [gold]) == 0.0


def test_word_alignment_sums_source_pieces_and_averages_target_pieces():
    # Source "▁ka la ▁ghar" (words 0, 0, 1) + a padding column; target "▁i ▁go ing" (words 0, 1,
    # 1) + the EOS row. Token by token, target piece 0 would link to source piece 2 (0.4).
    attention = np.array([
        [0.3, 0.3, 0.4, 0.0],  # word 0: ka 0.6 > ghar 0.4
        [0.1, 0.1, 0.8, 0.0],  # word 1, first piece
        [0.6, 0.0, 0.4, 0.0],  # word 1, second piece: mean row -> ka 0.4 < ghar 0.6
        [0.9, 0.1, 0.0, 0.0],  # EOS step: ignored
    ])
    links = metrics.word_alignment(attention, src_word=[0, 0, 1], tgt_word=[0, 1, 1])
    assert links == {(0, 0), (1, 1)}
    assert metrics.argmax_alignment(attention, src_len=3, tgt_len=3) == {(2, 0), (2, 1), (0, 2)}


def test_word_alignment_with_one_token_per_word_is_argmax_alignment():
    attention = np.random.default_rng(0).random((6, 5))
    assert metrics.word_alignment(attention, range(4), range(5)) == \
        metrics.argmax_alignment(attention, src_len=4, tgt_len=5)
    assert metrics.word_alignment(attention, [], [0, 1]) == set()
    with pytest.raises(ValueError, match="do not fit"):
        metrics.word_alignment(attention, range(6), range(2))


def test_attention_entropy_relative_to_uniform_ignores_padding():
    # Replica 0: row 0 uniform over its 4 real source positions (1 each), row 1 one-hot (0).
    # Replica 1: row 0 [0.5, 0.5, 0, 0] (log 2 / log 4 = 0.5). Padded target positions and the
    # padded source columns (zero weight) count nothing.
    att = np.zeros((2, 2, 3, 6))
    att[0, 0, :, :4] = 0.25
    att[0, 1, :, 2] = 1.0
    att[1, 0, :, :2] = 0.5
    att[1, 1, :, 0] = 1.0
    src_len = np.array([4, 3])
    tgt_mask = np.array([[True, True, False], [True, False, False]])
    sums = metrics.attention_entropy(att, src_len, tgt_mask)
    np.testing.assert_allclose(sums, [2 * 1.0 + 0.0, 2 * 0.5 + 0.0])
    # A one-word source cannot spread: 0, not 0/0.
    one = np.zeros((1, 1, 2, 3))
    one[..., 0] = 1.0
    assert metrics.attention_entropy(one, np.array([1]), np.ones((1, 2), bool))[0] == 0.0
