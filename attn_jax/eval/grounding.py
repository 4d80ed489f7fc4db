"""Grounding of image-caption attention: does the decoder look at the object a word names?

Grounding plays for captioning the role AER plays for translation (Xu et al. 2015, "Show,
Attend and Tell", judge their attention maps by eye; here they are scored against gold regions).

Conventions:
- The attention of target word t is α_t over S = gh·gw cells of the CNN feature grid, row-major:
  cell s = i·gw + j covers pixel rows [i·H/gh, (i+1)·H/gh) and columns [j·W/gw, (j+1)·W/gw).
  H % gh == 0 and W % gw == 0 are required (ValueError otherwise).
- A word's gold region is the union of its boxes: int rows (y0, x0, y1, x1), half-open pixel
  boxes, clipped to the image. A row of all -1 is padding; a word that names no object has only
  padding rows. Per sentence, `boxes` is [n_words, G, 4] (G: the largest group, -1 padded).
  A word with a real box counts as naming an object even if the box lies outside the image
  (it then scores 0).
- overlap_s: the fraction of cell s's pixels inside the region (`cell_overlap`).

Per word t that names an object:
- pointing-game hit: the argmax cell of α_t (the first index on ties) overlaps the region
  (overlap > 0). This is the pointing game of Zhang et al. (2016) at the resolution of the
  grid: they take the maximum pixel of an upsampled map and accept it within 15 pixels of the
  region. At 8 x 8 cells of 8 px on a 64 px image a small object may contain no cell centre,
  so a cell counts when it overlaps the region at all.
- mass in region: Σ_s α_ts · overlap_s, the attention mass inside the region. It is exact for α
  upsampled uniformly over each cell (nearest-neighbour), as `plots.caption_strip` draws it.

Scores are kept as sums (hits, mass, words) per sentence and divided only over a corpus
(`corpus_grounding`, `grounding_by_count`), as token metrics are elsewhere in attn_jax.
Baselines in the same layout: `uniform_grounding` (α = 1/S) and `center_grounding` (all weight
on the cell holding the image's centre pixel).

Pure numpy (no JAX).

References: K. Xu et al., "Show, Attend and Tell: Neural Image Caption Generation with Visual
Attention", ICML 2015. J. Zhang et al., "Top-down Neural Attention by Excitation Backprop",
ECCV 2016 (the pointing game).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

Sums = dict[str, float]  # {"hits": ..., "mass": ..., "words": ...}


def _check_grid(image_hw: Sequence[int], grid: Sequence[int]) -> tuple[int, int, int, int]:
    height, width = int(image_hw[0]), int(image_hw[1])
    gh, gw = int(grid[0]), int(grid[1])
    if min(height, width, gh, gw) <= 0 or height % gh or width % gw:
        raise ValueError(f"grid {gh}x{gw} does not divide the image {height}x{width} into whole "
                         "cells (need H % gh == 0 and W % gw == 0)")
    return height, width, gh, gw


def region_mask(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """The gold region of one word: the union of its non-padding boxes, clipped to the image.

    Args:
      boxes: [k, 4] int rows (y0, x0, y1, x1), half-open; rows of all -1 are padding.
      height, width: the image size in pixels.

    Returns:
      [H, W] bool mask (all False when every row is padding).
    """
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)  # [k, 4]
    mask = np.zeros((height, width), dtype=bool)  # [H, W]
    for y0, x0, y1, x1 in boxes[~np.all(boxes == -1, axis=-1)]:
        mask[max(y0, 0):max(min(y1, height), 0), max(x0, 0):max(min(x1, width), 0)] = True
    return mask


def cell_overlap(mask: np.ndarray, grid: Sequence[int]) -> np.ndarray:
    """The fraction of each grid cell's pixels inside the region.

    Args:
      mask: [H, W] bool region (`region_mask`).
      grid: (gh, gw), dividing H and W (ValueError otherwise).

    Returns:
      [gh * gw] float in [0, 1], row-major cells.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width, gh, gw = _check_grid(mask.shape, grid)
    cells = mask.reshape(gh, height // gh, gw, width // gw)  # [gh, H/gh, gw, W/gw]
    return cells.mean(axis=(1, 3)).reshape(-1)  # [S]


def _object_overlaps(boxes: np.ndarray, image_hw: Sequence[int], grid: Sequence[int],
                     num_steps: int | None) -> list[tuple[int, np.ndarray]]:
    """(t, overlap [S]) for each word t < num_steps (all words if None) that names an object."""
    boxes = np.asarray(boxes, dtype=np.int64)
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [n_words, G, 4], got shape {boxes.shape}")
    height, width, gh, gw = _check_grid(image_hw, grid)
    limit = len(boxes) if num_steps is None else min(num_steps, len(boxes))
    named = ~np.all(boxes[:limit] == -1, axis=-1).all(axis=-1)  # [limit]: any real box
    return [(t, cell_overlap(region_mask(boxes[t], height, width), (gh, gw)))
            for t in np.flatnonzero(named)]


def _as_rows(attention: np.ndarray, grid: Sequence[int]) -> np.ndarray:
    attention = np.asarray(attention, dtype=np.float64)
    if attention.ndim == 3:  # [T, gh, gw]
        attention = attention.reshape(len(attention), -1)  # [T, S]
    num_cells = int(grid[0]) * int(grid[1])
    if attention.ndim != 2 or attention.shape[1] != num_cells:
        raise ValueError(f"attention must be [T, {num_cells}] or [T, {grid[0]}, {grid[1]}] for "
                         f"grid {tuple(grid)}, got shape {attention.shape}")
    return attention


def sentence_grounding(attention: np.ndarray, boxes: np.ndarray, image_hw: Sequence[int],
                       grid: Sequence[int]) -> Sums:
    """Pointing-game hits and attention mass in the gold regions of one caption, as sums.

    Args:
      attention: [T, S] (or [T, gh, gw]) weights; row t is the attention of target word t. Rows
        t >= n_words (the EOS step, padding) are ignored.
      boxes: [n_words, G, 4] int gold boxes per word, -1 padded (module docstring).
      image_hw: (H, W) pixels. grid: (gh, gw) cells, dividing (H, W).

    Returns:
      {"hits": int, "mass": float, "words": int} summed over the positions t < min(T, n_words)
      whose word names an object.
    """
    attention = _as_rows(attention, grid)  # [T, S]
    hits, mass, words = 0, 0.0, 0
    for t, overlap in _object_overlaps(boxes, image_hw, grid, len(attention)):
        hits += int(overlap[np.argmax(attention[t])] > 0)  # argmax: first index on ties
        mass += float(attention[t] @ overlap)
        words += 1
    return {"hits": hits, "mass": mass, "words": words}


def uniform_grounding(boxes: np.ndarray, image_hw: Sequence[int], grid: Sequence[int],
                      num_steps: int | None = None) -> Sums:
    """The uniform-attention baseline (α_t = 1/S) of one caption, in `sentence_grounding`'s layout.

    The argmax of a uniform map is cell 0 by the tie rule, which measures nothing; instead "hits"
    is the *expected* number of hits of a cell drawn uniformly at random: per word, the fraction
    of cells that overlap the region (so "hits" is a float). "mass" is the exact mass of
    uniform attention, the mean overlap. Words are those t < num_steps (all if None) naming an
    object, so pass the model's T to compare on the same words.
    """
    per_word = _object_overlaps(boxes, image_hw, grid, num_steps)
    return {"hits": float(sum(np.mean(o > 0) for _, o in per_word)),
            "mass": float(sum(np.mean(o) for _, o in per_word)), "words": len(per_word)}


def center_grounding(boxes: np.ndarray, image_hw: Sequence[int], grid: Sequence[int],
                     num_steps: int | None = None) -> Sums:
    """The center baseline of one caption: every word puts all its weight on the cell holding
    the centre pixel (H // 2, W // 2), i.e. cell (gh // 2, gw // 2); scored by
    `sentence_grounding` (Zhang et al. 2016 report the same baseline at pixel level)."""
    _, _, gh, gw = _check_grid(image_hw, grid)
    steps = len(boxes) if num_steps is None else num_steps
    attention = np.zeros((steps, gh * gw))  # [T, S]
    attention[:, (gh // 2) * gw + gw // 2] = 1.0
    return sentence_grounding(attention, boxes, image_hw, grid)


def corpus_grounding(sentences: Iterable[Sums]) -> dict[str, float | int | None]:
    """Corpus scores from per-sentence sums (`sentence_grounding` or a baseline).

    Returns:
      {"pointing": Σ hits / Σ words, "mass": Σ mass / Σ words, "words": Σ words}: pointing-game
      accuracy and mean attention mass in the region, per object word over the corpus (not a
      mean of per-sentence rates). When no word names an object (words == 0) both rates are
      None, never NaN.
    """
    hits = mass = 0.0
    words = 0
    for s in sentences:
        hits, mass, words = hits + s["hits"], mass + s["mass"], words + int(s["words"])
    if words == 0:
        return {"pointing": None, "mass": None, "words": 0}
    return {"pointing": float(hits) / words, "mass": float(mass) / words, "words": words}


def grounding_by_count(sentences: Sequence[Sums], counts: Sequence[int]
                       ) -> dict[int, dict[str, float | int | None]]:
    """`corpus_grounding` within groups of sentences by the number of objects in the scene.

    Args:
      sentences: per-sentence sums. counts: [N] the object count of each sentence's image.

    Returns:
      {count: {"pointing", "mass", "words"}} for each count present, in ascending order.
    """
    if len(sentences) != len(counts):
        raise ValueError(f"{len(counts)} object counts for {len(sentences)} sentences")
    groups: dict[int, list[Sums]] = {}
    for sums, count in zip(sentences, counts):
        groups.setdefault(int(count), []).append(sums)
    return {count: corpus_grounding(groups[count]) for count in sorted(groups)}
