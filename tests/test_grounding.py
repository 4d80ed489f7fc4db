"""Tests for attn_jax.eval.grounding (pointing game and mass in region on hand-made attention maps)
and plots.caption_strip.

The image is 16 x 16 pixels on a 2 x 2 grid: cell 0 = rows 0-7 x cols 0-7, cell 1 = rows 0-7 x
cols 8-15, cell 2 = rows 8-15 x cols 0-7, cell 3 = rows 8-15 x cols 8-15; a cell has 64 pixels.
"""

import numpy as np
import pytest

from attn_jax.eval import grounding, plots

HW, GRID = (16, 16), (2, 2)
PAD = [-1, -1, -1, -1]
# "a cat on mat": "cat" is the left half of cell 0; "mat" is two boxes: all of cell 2, and a
# 4 x 4 corner of cell 1 (16/64 = 0.25 of it). "a" and "on" name no object.
BOXES = np.array([[PAD, PAD],
                  [[0, 0, 8, 4], PAD],
                  [PAD, PAD],
                  [[8, 0, 16, 8], [0, 12, 4, 16]]], np.int32)  # [n_words=4, G=2, 4]
ATTENTION = np.array([[1.0, 0.0, 0.0, 0.0],  # "a": would hit "cat", but names nothing
                      [0.5, 0.5, 0.0, 0.0],  # "cat": tie -> cell 0 (overlap 0.5): hit
                      [0.0, 0.0, 1.0, 0.0],  # "on": ignored
                      [0.1, 0.2, 0.3, 0.4],  # "mat": argmax cell 3 (overlap 0): miss
                      [0.0, 0.0, 1.0, 0.0]])  # EOS: ignored
# mass: cat 0.5·0.5 = 0.25; mat 0.2·0.25 + 0.3·1 = 0.35
EXPECTED = {"hits": 1, "mass": 0.6, "words": 2}


def _one_word(box, cell):
    attention = np.eye(4)[[cell]]  # [T=1, S=4]: one-hot on `cell`
    return grounding.sentence_grounding(attention, np.array([[box]]), HW, GRID)


def test_region_mask_unions_clips_and_skips_padding():
    mask = grounding.region_mask(np.array([[2, 3, 5, 7], PAD, [4, 6, 6, 9]]), 16, 16)
    assert mask.shape == HW and mask.dtype == bool
    assert mask.sum() == 3 * 4 + 2 * 3 - 1 * 1  # two boxes overlapping in pixel (4, 6)
    assert mask[2, 3] and mask[4, 6] and mask[5, 8] and not mask[5, 3] and not mask[2, 7]
    clipped = grounding.region_mask(np.array([[-2, -2, 3, 20]]), 16, 16)
    assert clipped.sum() == 3 * 16
    assert not grounding.region_mask(np.array([PAD, PAD]), 16, 16).any()


def test_cell_overlap():
    half = grounding.region_mask(np.array([[0, 0, 8, 4]]), 16, 16)
    np.testing.assert_allclose(grounding.cell_overlap(half, GRID), [0.5, 0, 0, 0])
    centre = grounding.region_mask(np.array([[4, 4, 12, 12]]), 16, 16)
    np.testing.assert_allclose(grounding.cell_overlap(centre, GRID), [0.25] * 4)
    rows = grounding.cell_overlap(half, (4, 1))  # 4 x 1 grid: cells of 4 x 16 pixels
    np.testing.assert_allclose(rows, [0.25, 0.25, 0, 0])


@pytest.mark.parametrize("box, cell, hit, mass", [
    ([2, 2, 6, 6], 0, 1, 16 / 64),  # inside cell 0
    ([2, 2, 6, 6], 3, 0, 0.0),  # outside
    ([0, 4, 8, 12], 1, 1, 0.5),  # half of cells 0 and 1
    ([0, 0, 2, 2], 0, 1, 4 / 64),  # no cell centre inside, still a hit at grid resolution
])
def test_one_hot_attention(box, cell, hit, mass):
    assert _one_word(box, cell) == pytest.approx({"hits": hit, "mass": mass, "words": 1})


def test_sentence_grounding_skips_non_object_words_and_eos():
    assert grounding.sentence_grounding(ATTENTION, BOXES, HW, GRID) == pytest.approx(EXPECTED)
    grid_shaped = ATTENTION.reshape(5, 2, 2)  # [T, gh, gw]
    assert grounding.sentence_grounding(grid_shaped, BOXES, HW, GRID) == pytest.approx(EXPECTED)
    padded = np.pad(ATTENTION, ((0, 3), (0, 0)), constant_values=0.25)  # [T+3, S]
    assert grounding.sentence_grounding(padded, BOXES, HW, GRID) == pytest.approx(EXPECTED)


def test_sentence_grounding_with_fewer_steps_than_words():
    # T = 2: only "a" and "cat" have attention; "mat" is not counted
    short = grounding.sentence_grounding(ATTENTION[:2], BOXES, HW, GRID)
    assert short == pytest.approx({"hits": 1, "mass": 0.25, "words": 1})


def test_no_object_words():
    nothing = grounding.sentence_grounding(ATTENTION, BOXES[[0, 2]], HW, GRID)
    assert nothing == {"hits": 0, "mass": 0.0, "words": 0}
    assert grounding.corpus_grounding([nothing]) == {"pointing": None, "mass": None, "words": 0}
    assert grounding.corpus_grounding([]) == {"pointing": None, "mass": None, "words": 0}


def test_uniform_and_center_baselines():
    # cat overlap [0.5, 0, 0, 0]: 1/4 of the cells overlap, mean overlap 0.125
    # mat overlap [0, 0.25, 1, 0]: 2/4 of the cells overlap, mean overlap 1.25/4 = 0.3125
    uniform = grounding.uniform_grounding(BOXES, HW, GRID)
    assert uniform == pytest.approx({"hits": 0.75, "mass": 0.4375, "words": 2})
    flat = grounding.sentence_grounding(np.full((5, 4), 0.25), BOXES, HW, GRID)
    assert flat["mass"] == pytest.approx(uniform["mass"])  # mass is that of α = 1/S exactly
    assert flat["hits"] == 1  # argmax = cell 0 by the tie rule: why hits are an expectation
    assert grounding.uniform_grounding(BOXES, HW, GRID, num_steps=2) == pytest.approx(
        {"hits": 0.25, "mass": 0.125, "words": 1})
    # center: all weight on cell (1, 1) = 3, which neither region touches
    assert grounding.center_grounding(BOXES, HW, GRID) == {"hits": 0, "mass": 0.0, "words": 2}
    lower_right = np.array([[[10, 10, 14, 16]]])  # 4 x 6 pixels of cell 3: 24/64
    assert grounding.center_grounding(lower_right, HW, GRID) == pytest.approx(
        {"hits": 1, "mass": 24 / 64, "words": 1})


def test_corpus_and_by_count():
    one_hit = _one_word([2, 2, 6, 6], 0)  # hits 1, mass 0.25
    miss = _one_word([2, 2, 6, 6], 3)  # hits 0, mass 0
    sentences = [EXPECTED, one_hit, miss]
    # (1 + 1 + 0) / 4 words; (0.6 + 0.25 + 0) / 4
    assert grounding.corpus_grounding(sentences) == pytest.approx(
        {"pointing": 0.5, "mass": 0.2125, "words": 4})
    by_count = grounding.grounding_by_count(sentences, [3, 1, 3])
    assert list(by_count) == [1, 3]
    assert by_count[1] == pytest.approx({"pointing": 1.0, "mass": 0.25, "words": 1})
    assert by_count[3] == pytest.approx({"pointing": 1 / 3, "mass": 0.2, "words": 3})
    with pytest.raises(ValueError, match="object counts"):
        grounding.grounding_by_count(sentences, [1, 2])


def test_errors():
    with pytest.raises(ValueError, match="does not divide"):
        grounding.cell_overlap(np.zeros(HW, bool), (3, 3))
    with pytest.raises(ValueError, match="does not divide"):
        grounding.sentence_grounding(np.full((5, 9), 1 / 9), BOXES, HW, (3, 3))
    with pytest.raises(ValueError, match="attention must be"):
        grounding.sentence_grounding(np.full((5, 9), 1 / 9), BOXES, HW, GRID)
    with pytest.raises(ValueError, match="boxes must be"):
        grounding.sentence_grounding(ATTENTION, BOXES[:, 0], HW, GRID)


def test_caption_strip(tmp_path):
    image = np.zeros((16, 16, 3), np.uint8)
    image[8:, :8] = 255
    words, boxes = ["cat", "mat"], BOXES[[1, 3]]  # [2, G, 4]: one box, then two
    fig = plots.caption_strip(image, words, ATTENTION[[1, 3, 4]], grid=GRID, boxes=boxes)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == words
    assert [len(ax.patches) for ax in panels] == [1, 2]
    nine = plots.caption_strip(image, [f"w{i}" for i in range(9)], np.full((9, 2, 2), 0.25))
    assert len(nine.axes) == 16  # 9 panels wrap into 2 rows of 8
    path = plots.caption_strip(image, words, ATTENTION[[1, 3]], tmp_path / "strip.png", grid=GRID,
                               title="a cat on a mat", boxes=boxes, pdf=True)
    assert path == tmp_path / "strip.png" and path.exists() and (tmp_path / "strip.pdf").exists()
    with pytest.raises(ValueError):
        plots.caption_strip(image, words, ATTENTION[:1], grid=GRID)
