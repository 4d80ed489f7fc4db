"""Attention heatmaps of single sentences, as train.py and translate.py write them per run.

`heatmap(attention, src_tokens, tgt_tokens, path)` saves one [T, S] attention matrix with target
tokens on rows and source tokens on columns; the drawing helpers here are shared with the sweep
report (`attn_jax.report`), so a heatmap looks the same in a run folder and in a report.
`run_heatmaps` draws what a training run leaves in WORKDIR/attention/ at its end.
`caption_strip` draws an image caption's attention over the image, one panel per word.

Figures are `matplotlib.figure.Figure` objects rendered by Agg (PNG) and the PDF backend: pyplot
and the global backend are never touched, so importing this module is safe in notebooks and in
the training process.
"""

from __future__ import annotations

import json
import logging as py_logging
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from attn_jax.data.tokens import EOS, SPECIAL_TOKENS

HEATMAP_CMAP = "viridis"
RC = {"pdf.fonttype": 42, "ps.fonttype": 42, "savefig.dpi": 150, "axes.grid": False}
_EOS_LABEL = SPECIAL_TOKENS[EOS]

# TrueType PDF fonts (pdf.fonttype 42) make fontTools log every subset step at INFO, which absl
# shows: keep that library at WARNING.
py_logging.getLogger("fontTools").setLevel(py_logging.WARNING)


def new_figure(width: float = 6.4, height: float = 4.2) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, paths: Sequence[Path]) -> list[Path]:
    """Saves `fig` to every path (the suffix picks the format) with the shared style; returns them."""
    with matplotlib.rc_context(RC):
        for p in paths:
            fig.savefig(p, bbox_inches="tight")
    return list(paths)


def _save_beside(fig: Figure, path: Path, pdf: bool) -> Path:
    """Saves `fig` at `path`; a ".pdf" path also gets a ".png" sibling, `pdf` adds a ".pdf"
    sibling to a PNG path. Returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    targets = [path]
    if path.suffix.lower() == ".pdf":
        targets.append(path.with_suffix(".png"))
    elif pdf:
        targets.append(path.with_suffix(".pdf"))
    save_figure(fig, targets)
    return path


def fit_labels(
    attention: np.ndarray, src_tokens: Sequence[str], tgt_tokens: Sequence[str]
) -> tuple[np.ndarray, list[str], list[str]]:
    """Matches the attention matrix to its labels.

    Columns past len(src_tokens) are source padding and are dropped. Rows: one extra row is the
    EOS step and is labelled "</s>"; further rows are padding and are dropped.
    """
    attention = np.asarray(attention, dtype=float)
    if attention.ndim == 3:  # [heads, T, S]: show the head average
        attention = attention.mean(axis=0)
    if attention.ndim != 2:
        raise ValueError(f"attention must be [T, S], got shape {attention.shape}")
    num_t, num_s = attention.shape
    src, tgt = list(src_tokens), list(tgt_tokens)
    if num_s < len(src) or num_t < len(tgt):
        raise ValueError(f"attention {attention.shape} is smaller than {len(tgt)} x {len(src)} labels")
    if num_t > len(tgt) and (not tgt or tgt[-1] != _EOS_LABEL):
        tgt.append(_EOS_LABEL)
    return attention[: len(tgt), : len(src)], src, tgt  # [T', S']


def _label_fontsize(num_labels: int) -> float:
    return 10 if num_labels <= 15 else 8 if num_labels <= 30 else 6.5


def draw_heatmap(ax, attention: np.ndarray, src: Sequence[str], tgt: Sequence[str]):
    """Draws a [T, S] heatmap on `ax` (targets on rows, sources on columns); returns the image."""
    num_t, num_s = attention.shape
    size = _label_fontsize(max(num_t, num_s))
    image = ax.imshow(attention, cmap=HEATMAP_CMAP, vmin=0.0, vmax=1.0, aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(num_s), labels=src, rotation=45, ha="right", rotation_mode="anchor", fontsize=size)
    ax.set_yticks(range(num_t), labels=tgt, fontsize=size)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    ax.tick_params(length=0)
    return image


def heatmap(
    attention: np.ndarray,
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    path: str | os.PathLike,
    title: str | None = None,
    pdf: bool = False,
) -> Path:
    """Saves an attention heatmap: target tokens on rows (y), source tokens on columns (x).

    Args:
      attention: [T, S] weights in [0, 1] (a [heads, T, S] array is averaged over heads). Columns
        past len(src_tokens) (padding) are dropped; a row past len(tgt_tokens) is the EOS step
        ("</s>"), further rows are dropped.
      src_tokens, tgt_tokens: tick labels (words or subwords).
      path: output file; its suffix picks the format. A ".pdf" path also gets a ".png" sibling;
        `pdf=True` adds a ".pdf" sibling to a PNG path.
      title: optional axes title.

    Returns:
      `path`.
    """
    path = Path(path)
    attention, src, tgt = fit_labels(attention, src_tokens, tgt_tokens)
    cell = 0.42 if max(len(src), len(tgt)) <= 15 else 0.3 if max(len(src), len(tgt)) <= 30 else 0.2  # inches
    width = 3.0 + cell * len(src)
    height = 2.2 + cell * 0.85 * len(tgt)
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    image = draw_heatmap(ax, attention, src, tgt)
    fig.colorbar(image, ax=ax, label="attention weight", shrink=0.9)
    if title:
        ax.set_title(title, fontsize=10)
    return _save_beside(fig, path, pdf)


RUNNING_EXAMPLE = "running_example"  # The name of the dataset's running example in `texts`.


def run_heatmaps(out_dir: str, src_vocab, tgt_vocab, texts: dict[str, str], translations,
                 seeds: Sequence[int], scorer: str, attends: bool) -> dict[str, str]:
    """What a training run draws at its end: OUT_DIR/<name>.png for replica 0 of each text, and
    the running example's weights as JSON per seed (OUT_DIR/running_example_seed<S>.json).

    texts: {name: source sentence}, the running example (if any) first under RUNNING_EXAMPLE.
    translations: per replica, (hypothesis ids, attention [T, S]) per text, in `texts` order
      (`evaluate.translate_texts`). scorer: named in the titles and the JSON; attends: whether
      the scorer has attention weights (the JSON's "attention" is None otherwise).
    Returns {name: png path}.
    """
    os.makedirs(out_dir, exist_ok=True)
    images = {}
    for name, text, (ids, attn) in zip(texts, texts.values(), translations[0]):
        src = src_vocab.pieces(src_vocab.encode(text))
        path = os.path.join(out_dir, f"{name}.png")
        heatmap(attn[:, :len(src)], src, tgt_vocab.pieces(ids), path,
                title=f"{scorer}: {tgt_vocab.decode(ids)}")
        images[name] = path
    if RUNNING_EXAMPLE in texts:
        words = texts[RUNNING_EXAMPLE].split()
        for seed, per in zip(seeds, translations):
            ids, attn = per[0]  # The running example comes first.
            with open(os.path.join(out_dir, f"{RUNNING_EXAMPLE}_seed{seed}.json"), "w") as f:
                json.dump({"src": words, "tgt": tgt_vocab.pieces(ids),
                           "hyp": tgt_vocab.decode(ids), "scorer": scorer,
                           "attention": np.asarray(attn[:, :len(words)]).round(5).tolist()
                           if attends else None}, f)
    return images


def head_grid(attention: np.ndarray, src_tokens: Sequence[str], tgt_tokens: Sequence[str],
              path: str | os.PathLike, title: str | None = None) -> Path:
    """Saves a layers x heads grid of [T, S] heatmaps (`attention` [L, H, T, S]: a per-head
    model's cross-attention), each panel labelled 'layer l, head h' (1-based), as `heatmap`
    labels one map."""
    path = Path(path)
    layers, heads = attention.shape[:2]
    fitted = [[fit_labels(attention[layer, head], src_tokens, tgt_tokens)
               for head in range(heads)] for layer in range(layers)]
    src, tgt = fitted[0][0][1], fitted[0][0][2]
    cell = 0.3 if max(len(src), len(tgt)) <= 15 else 0.2
    fig = new_figure(heads * (1.6 + cell * len(src)), layers * (1.4 + cell * 0.85 * len(tgt)))
    axes = fig.subplots(layers, heads, squeeze=False)
    for layer in range(layers):
        for head in range(heads):
            image = draw_heatmap(axes[layer, head], *fitted[layer][head])
            axes[layer, head].set_title(f"layer {layer + 1}, head {head + 1}", fontsize=9)
    fig.colorbar(image, ax=axes, label="attention weight", shrink=0.6)
    if title:
        fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, [path])
    return path


STRIP_COLUMNS = 8  # Panels per row of a caption strip.


def caption_strip(image: np.ndarray, words: Sequence[str], attention: np.ndarray,
                  path: str | os.PathLike | None = None, grid: Sequence[int] | None = None,
                  title: str | None = None, boxes: np.ndarray | None = None,
                  pdf: bool = False) -> Figure | Path:
    """Draws a caption's attention over its image, one panel per word (Xu et al. 2015, Fig. 3).

    Each panel shows the image with the word's α_t over the feature grid overlaid as a
    semi-transparent heatmap, upsampled to the image by nearest neighbour: each cell's weight is
    painted uniformly over its pixels, the map for which `grounding`'s mass in region is exact
    (Xu et al. upsample smoothly instead). Colours run from 0 to that word's largest weight; the
    word is the panel title. Panels wrap into rows of at most STRIP_COLUMNS.

    Args:
      image: [H, W, 3] uint8 (or [H, W] grey).
      words: the caption's T' words; attention rows past them (EOS, padding) are dropped.
      attention: [T, gh, gw] weights, or [T, S] with `grid` = (gh, gw), T >= len(words).
      path: output file (suffix picks the format; a ".pdf" path also gets a ".png" sibling,
        `pdf=True` adds a ".pdf" sibling to a PNG path, as `heatmap` does). None: return the
        figure unsaved.
      title: optional figure title.
      boxes: optional [n_words, G, 4] gold boxes (y0, x0, y1, x1), half-open pixels, rows of all
        -1 padding (`attn_jax.eval.grounding`): drawn as rectangles on the panels of the words
        that name an object.

    Returns:
      `path`, or the Figure when `path` is None.
    """
    image = np.asarray(image)
    attention = np.asarray(attention, dtype=float)
    if attention.ndim == 2:
        if grid is None or int(grid[0]) * int(grid[1]) != attention.shape[1]:
            raise ValueError(f"[T, S] attention {attention.shape} needs grid=(gh, gw) with gh*gw = S")
        attention = attention.reshape(len(attention), int(grid[0]), int(grid[1]))  # [T, gh, gw]
    if attention.ndim != 3 or len(attention) < len(words):
        raise ValueError(f"attention {attention.shape} must be [T, gh, gw] with T >= {len(words)} words")
    height, width = image.shape[:2]
    extent = (0, width, height, 0)  # pixel edges, so box corners land on pixel boundaries
    cols = max(min(len(words), STRIP_COLUMNS), 1)
    rows = -(-len(words) // cols)
    fig = new_figure(1.7 * cols, 1.9 * rows + (0.3 if title else 0.0))
    axes = fig.subplots(rows, cols, squeeze=False).reshape(-1)
    for t, ax in enumerate(axes):
        ax.set_axis_off()
        if t >= len(words):
            continue
        alpha = attention[t]  # [gh, gw]
        ax.imshow(image, extent=extent, cmap="gray" if image.ndim == 2 else None)
        ax.imshow(alpha, extent=extent, cmap=HEATMAP_CMAP, alpha=0.6, interpolation="nearest",
                  vmin=0.0, vmax=max(float(alpha.max()), 1e-12))
        ax.set_title(words[t], fontsize=10)
        for y0, x0, y1, x1 in ([] if boxes is None or t >= len(boxes) else np.asarray(boxes)[t]):
            if (y0, x0, y1, x1) != (-1, -1, -1, -1):
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="red",
                                       linewidth=1.5))
    if title:
        fig.suptitle(title, fontsize=10)
    if path is None:
        return fig
    path = Path(path)
    return _save_beside(fig, path, pdf)
