"""Tests for attn_jax.data.vocab (word and sentencepiece vocabularies, saved per run) and the special
token ids of attn_jax.data.tokens."""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import ml_collections
import pytest

import attn_jax
from attn_jax.data import vocab as vocab_lib
from attn_jax.data.sources import Pair
from attn_jax.data.tokens import BOS, EOS, PAD, SPECIAL_TOKENS, UNK
from tests.data_helpers import DE_LINES, EN_LINES


def test_word_vocab_round_trip(tmp_path):
    vocab = vocab_lib.WordVocab.build(["a b c", "b c", "c"])
    assert vocab.pieces(range(4)) == ["<pad>", "<s>", "</s>", "<unk>"]
    assert vocab.pieces(vocab.encode("c b a")) == ["c", "b", "a"]  # most frequent first
    ids = vocab.encode("a  c b")
    assert len(ids) == 3 and min(ids) > 3
    assert vocab.decode(ids) == "a c b"
    assert vocab.encode("a zzz") == [vocab.encode("a")[0], UNK]
    assert vocab.decode([BOS] + ids + [EOS, 5, PAD]) == "a c b"  # stops at EOS, drops BOS
    vocab.save(str(tmp_path))
    loaded = vocab_lib.WordVocab.load(str(tmp_path))
    assert loaded.size == vocab.size == 7
    assert loaded.encode("a c b") == ids


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_vocab_round_trip(tmp_path, model_type):
    texts = [f"{a} {b}." for a, b in itertools.product(DE_LINES, EN_LINES)] * 2
    vocab = vocab_lib.SentencePieceVocab.train(texts, vocab_size=80, model_type=model_type)
    assert vocab.pieces(range(4)) == ["<pad>", "<s>", "</s>", "<unk>"]
    assert 4 < vocab.size <= 80
    text = "Ein Mann liest ein Buch. A girl reads."
    ids = vocab.encode(text)
    assert BOS not in ids and EOS not in ids
    assert vocab.decode(ids) == text
    assert vocab.decode([BOS] + ids + [EOS] + ids) == text
    assert "".join(vocab.pieces(ids)).replace("\u2581", " ").strip() == text
    vocab.save(str(tmp_path))
    assert os.path.exists(tmp_path / "spm.model")
    assert vocab_lib.SentencePieceVocab.load(str(tmp_path)).encode(text) == ids


def _vocab_cfg(**overrides) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict(dict(vocab="word", joint_vocab=False, vocab_size=60,
                                         spm_model_type="bpe"))
    cfg.update(overrides)
    return cfg


_TRAIN = [Pair("mai ghar ja raha hoon", "i am going home"), Pair("vah ghar gaya", "he went home")]
_DATASET = {"name": "multi30k", "source_lang": "hi", "target_lang": "en"}


@pytest.mark.parametrize("joint", [False, True])
def test_vocabs_saved_once_and_read_back(tmp_path, joint, monkeypatch):
    workdir = str(tmp_path / "run")
    src, tgt = vocab_lib.load_or_build_vocabs(_vocab_cfg(joint_vocab=joint), workdir, _TRAIN,
                                              _DATASET)
    assert (src is tgt) == joint
    meta = json.loads((tmp_path / "run" / "vocab" / "meta.json").read_text())
    assert meta == {**_DATASET, "vocab": "word", "joint_vocab": joint}
    assert src.pieces(src.encode("ghar hoon")) == ["ghar", "hoon"]
    assert tgt.decode(tgt.encode("i am going home")) == "i am going home"

    # A resumed run reads them back and never rebuilds them; so does inference.
    monkeypatch.setattr(vocab_lib.WordVocab, "build", _no_build)
    again = vocab_lib.load_or_build_vocabs(_vocab_cfg(joint_vocab=joint), workdir, [], _DATASET)
    for loaded in (again, vocab_lib.load_vocabs(workdir)):
        assert [v.encode("vah went home ghar") for v in loaded] == [
            v.encode("vah went home ghar") for v in (src, tgt)]


def _no_build(*args, **kwargs):
    raise AssertionError("a saved vocabulary was rebuilt")


@pytest.mark.parametrize("cfg, dataset", [
    (_vocab_cfg(joint_vocab=True), _DATASET),
    (_vocab_cfg(vocab="sentencepiece"), _DATASET),
    (_vocab_cfg(), {**_DATASET, "source_lang": "de"}),
])
def test_saved_vocab_refuses_other_data_or_settings(tmp_path, cfg, dataset):
    vocab_lib.load_or_build_vocabs(_vocab_cfg(), str(tmp_path), _TRAIN, _DATASET)
    with pytest.raises(ValueError, match="cannot change; use a new --workdir"):
        vocab_lib.load_or_build_vocabs(cfg, str(tmp_path), _TRAIN, dataset)


def test_load_vocabs_names_a_folder_without_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no saved vocabulary"):
        vocab_lib.load_vocabs(str(tmp_path))


def test_special_tokens_defined_once():
    """PAD/BOS/EOS/UNK get their values in attn_jax/data/tokens.py only: no module assigns them or
    uses a bare literal as the default of a *_id parameter."""
    assert SPECIAL_TOKENS[PAD] == "<pad>" and (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    assignment = re.compile(r"^\s*(PAD|BOS|EOS|UNK)\b[\w, ]*=\s*\d", re.M)
    literal_default = re.compile(r"\b(pad|bos|eos|unk)_id\s*:\s*int\s*=\s*\d")
    offenders = []
    for path in sorted(Path(attn_jax.__file__).parent.glob("*.py")):
        if path.name == "tokens.py":
            continue
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.name}: {m.group(0).strip()}" for pattern in (assignment, literal_default)
                      for m in pattern.finditer(text)]
    assert not offenders, offenders
