"""Tests for attn_jax.eval.plots: the per-run attention heatmap train.py and translate.py write."""

import json
import os

import numpy as np
import pytest

from attn_jax.eval import plots

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


class _Words:
    """A word vocabulary stand-in: a token per word, pieces are the words."""

    def __init__(self, words):
        self.words = list(words)

    def encode(self, text):
        return [self.words.index(w) for w in text.split()]

    def pieces(self, ids):
        return [self.words[i] for i in ids]

    def decode(self, ids):
        return " ".join(self.pieces(ids))


@pytest.mark.parametrize("attends", [True, False])
def test_run_heatmaps_draw_replica_0_and_the_running_example_per_seed(tmp_path, attends):
    src_vocab, tgt_vocab = _Words(SRC + ["padding"]), _Words(TGT)
    texts = {plots.RUNNING_EXAMPLE: " ".join(SRC), "test_3": "ghar ja"}
    hyp = [0, 1, 2, 3]  # "i am going home"
    padded = np.pad(_attention(2)[:4], ((0, 0), (0, 2)))  # [T, S + 2]: padded columns.
    translations = [[(hyp, padded), (hyp[:2], padded[:2])],  # seed 5
                    [(hyp[:1], padded[:1]), (hyp[:1], padded[:1])]]  # seed 6
    images = plots.run_heatmaps(str(tmp_path / "attention"), src_vocab, tgt_vocab, texts,
                                translations, (5, 6), "additive", attends)
    assert images == {name: str(tmp_path / "attention" / f"{name}.png") for name in texts}
    assert sorted(os.listdir(tmp_path / "attention")) == [
        "running_example.png", "running_example_seed5.json", "running_example_seed6.json",
        "test_3.png"]
    first = json.load(open(tmp_path / "attention" / "running_example_seed5.json"))
    assert first["src"] == SRC and first["tgt"] == TGT and first["hyp"] == "i am going home"
    assert first["scorer"] == "additive"
    if attends:
        np.testing.assert_allclose(first["attention"], padded[:, :len(SRC)], atol=1e-5)
    else:
        assert first["attention"] is None
    second = json.load(open(tmp_path / "attention" / "running_example_seed6.json"))
    assert second["tgt"] == ["i"]  # Each seed's own translation.
    plain = plots.run_heatmaps(str(tmp_path / "plain"), src_vocab, tgt_vocab,
                               {"test_3": "ghar ja"}, [[(hyp, padded)]], (0,), "dot", attends)
    assert list(plain) == ["test_3"] and os.listdir(tmp_path / "plain") == ["test_3.png"]
