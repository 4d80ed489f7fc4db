"""Tests for attn_jax.plots: the per-run attention heatmap train.py and translate.py write."""

import numpy as np
import pytest

from attn_jax import plots

SRC = ["mai", "ghar", "ja", "raha", "hoon"]
TGT = ["i", "am", "going", "home"]


def _attention(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(TGT) + 1, len(SRC))) + 3 * np.eye(len(TGT) + 1, len(SRC))
    return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)  # [T+1 (EOS), S]


def test_heatmap_writes_png_and_pdf(tmp_path):
    attention = _attention(0)  # [T+1, S]: last row is the EOS step
    path = plots.heatmap(attention, SRC, TGT, tmp_path / "h.png", title="additive")
    assert path == tmp_path / "h.png" and path.stat().st_size > 1000
    assert path.read_bytes()[:4] == b"\x89PNG"
    # subword labels, padded source columns, pdf path -> PDF plus a PNG sibling
    padded = np.pad(attention, ((0, 2), (0, 3)))  # [T+3, S+3]
    path = plots.heatmap(padded, ["▁mai", "▁gh", "ar", "▁ja", "@@hoon"], TGT, tmp_path / "sub.pdf")
    assert path.read_bytes()[:5] == b"%PDF-" and (tmp_path / "sub.png").exists()
    with pytest.raises(ValueError):
        plots.heatmap(attention[:2], SRC, TGT, tmp_path / "bad.png")


def test_fit_labels_drops_padding_and_labels_the_eos_step():
    padded = np.pad(_attention(1), ((0, 2), (0, 3)))  # [T+3, S+3]
    attention, src, tgt = plots.fit_labels(padded, SRC, TGT)
    assert attention.shape == (len(TGT) + 1, len(SRC))
    assert src == SRC and tgt == TGT + ["</s>"]
    heads = np.stack([padded, np.zeros_like(padded)])  # [heads, T, S]: the head average is shown
    np.testing.assert_allclose(plots.fit_labels(heads, SRC, TGT)[0], attention / 2)
