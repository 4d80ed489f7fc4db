"""Tests for attn_jax.eval.gold: the Pharaoh gold format, reading and checking gold files against
their sentences, and the AER summary of predicted links."""

import pytest

from attn_jax import align
from attn_jax.eval import gold


def test_gold_lines_parse_and_format():
    sure, possible = gold.parse_gold("1-1 3p2 2-3", src_len=3, tgt_len=3)
    assert sure == {(0, 0), (1, 2)} and possible == {(0, 0), (2, 1), (1, 2)}  # P includes S
    assert gold.parse_gold("1-1 2p3", 3, 2, reverse=True) == ({(0, 0)}, {(0, 0), (2, 1)})
    assert gold.parse_gold("", 3, 3) == (set(), set())
    assert gold.format_gold([(0, 0), (1, 2)], [(2, 1), (0, 0)]) == "1-1 2-3 3p2"
    assert gold.format_gold([(0, 0)], [(2, 1)], reverse=True) == "1-1 2p3"
    assert gold.format_links({(2, 1), (0, 0)}) == "0-0 2-1"
    assert gold.format_links({(2, 1), (0, 0)}, reverse=True) == "0-0 1-2"


@pytest.mark.parametrize("line, match", [
    ("1-1 4-1", r"g:7: link '4-1' \(source-target\) is outside the pair of 3 source"),
    ("1-3", "outside"),  # Target index past the 2 target words.
    ("0-1", "1-based"),  # Indices start at 1.
    ("1-1 2_2", r"'2_2' is not a link"),
    ("1-1 2-", "is not a link"),
])
def test_bad_gold_links_are_refused(line, match):
    with pytest.raises(gold.InputError, match=match):
        gold.parse_gold(line, src_len=3, tgt_len=2, where="g:7")


def test_files_are_read_and_checked_against_each_other(tmp_path):
    (tmp_path / "s").write_bytes(b"ka la\r\nghar\n")
    (tmp_path / "t").write_text("the red\nhouse\n")
    (tmp_path / "g").write_text("1-1 2p2\n\n")
    src, tgt, (sure, possible) = gold.read_inputs(*(str(tmp_path / n) for n in "stg"))
    assert (src, tgt) == (["ka la", "ghar"], ["the red", "house"])  # \r\n read as one break.
    assert sure == [{(0, 0)}, set()] and possible == [{(0, 0), (1, 1)}, set()]
    (tmp_path / "bad").write_bytes(b"\xff\n")
    with pytest.raises(gold.InputError, match=r"--gold=.*bad is not UTF-8 text"):
        gold.read_gold(str(tmp_path / "bad"), ["a"], ["b"])
    with pytest.raises(gold.InputError, match="cannot read --src="):
        gold.read_inputs(str(tmp_path / "none"), str(tmp_path / "t"))
    assert gold.InputError is align.AlignError  # align's one error type catches the gold's.


def test_score_counts_hits_with_sure_links_taken_as_possible():
    predicted = [{(0, 0), (1, 1)}, {(0, 0)}]
    sure = [{(0, 0)}, {(1, 0)}]
    possible = [{(1, 1)}, set()]  # P omits S: read as P ∪ S.
    summary = gold.score(predicted, sure, possible)
    # |A∩S| = 1, |A∩P| = 2 (P ∪ S), |A| = 3, |S| = 2: AER = 1 - 3/5.
    assert summary == {"aer": pytest.approx(0.4), "sentences": 2, "links": 3, "sure": 2,
                       "possible": 3, "sure_hits": 1, "possible_hits": 2}
