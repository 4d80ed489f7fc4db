"""Vocabularies: whitespace words (`WordVocab`) or a sentencepiece model (`SentencePieceVocab`).

Every vocabulary maps the special ids of `attn_jax.data.tokens` (PAD=0, BOS=1, EOS=2, UNK=3) to the
pieces '<pad>', '<s>', '</s>', '<unk>'. A run builds its vocabularies once, on the train split,
and saves them under WORKDIR/vocab/:

  vocab/meta.json                  the dataset and vocab settings they were built for (written
                                   last: its presence marks the vocabulary complete)
  vocab/joint/ or vocab/src/ + vocab/tgt/

A resumed run reloads them from there and never retrains them; `load_vocabs(workdir)` reads
them back for inference.
"""

from __future__ import annotations

import collections
import io
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import sentencepiece as spm
from absl import logging

from attn_jax.data.tokens import BOS, EOS, PAD, SPECIAL_TOKENS, UNK

if TYPE_CHECKING:
    from attn_jax.data.sources import Pair

VOCAB_TYPES = ("word", "sentencepiece")
SPM_MODEL_TYPES = ("bpe", "unigram")


class Vocab(Protocol):
    """What every vocabulary offers. Ids PAD=0, BOS=1, EOS=2, UNK=3."""

    @property
    def size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...  # no BOS/EOS

    def decode(self, ids: Iterable[int]) -> str: ...  # stops at EOS, drops PAD/BOS

    def pieces(self, ids: Iterable[int]) -> list[str]: ...  # one label per id (heatmap axes)

    def save(self, directory: str) -> None: ...


def _content_ids(ids: Iterable[int]) -> list[int]:
    """Ids up to the first EOS, without PAD and BOS."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i not in (PAD, BOS):
            out.append(i)
    return out


class WordVocab:
    """Whitespace tokens; token positions equal word positions, so gold alignments apply as is."""

    FILENAME = "word_vocab.json"

    def __init__(self, tokens: Sequence[str]):
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(
                f"a WordVocab must start with {SPECIAL_TOKENS}, got {tuple(tokens[:4])}")
        self._tokens = list(tokens)
        self._ids = {t: i for i, t in enumerate(self._tokens)}
        if len(self._ids) != len(self._tokens):
            raise ValueError("WordVocab tokens must be unique")

    @classmethod
    def build(cls, texts: Iterable[str]) -> WordVocab:
        """Every whitespace token of `texts`, most frequent first (ties alphabetical)."""
        counts = collections.Counter(tok for text in texts for tok in text.split())
        for special in SPECIAL_TOKENS:
            counts.pop(special, None)
        ordered = sorted(counts, key=lambda t: (-counts[t], t))
        return cls(list(SPECIAL_TOKENS) + ordered)

    @property
    def size(self) -> int:
        return len(self._tokens)

    def encode(self, text: str) -> list[int]:
        return [self._ids.get(tok, UNK) for tok in text.split()]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self._tokens[i] for i in _content_ids(ids))

    def pieces(self, ids: Iterable[int]) -> list[str]:
        return [self._tokens[int(i)] for i in ids]

    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, self.FILENAME), "w", encoding="utf-8") as f:
            json.dump({"type": "word", "tokens": self._tokens}, f, ensure_ascii=False)

    @classmethod
    def load(cls, directory: str) -> WordVocab:
        with open(os.path.join(directory, cls.FILENAME), encoding="utf-8") as f:
            return cls(json.load(f)["tokens"])


class SentencePieceVocab:
    """A sentencepiece model (bpe or unigram) trained on the train split; decode detokenizes."""

    FILENAME = "spm.model"

    def __init__(self, model_proto: bytes):
        self._proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        got = (self._sp.pad_id(), self._sp.bos_id(), self._sp.eos_id(), self._sp.unk_id())
        if got != (PAD, BOS, EOS, UNK):
            raise ValueError(
                f"sentencepiece model has pad/bos/eos/unk ids {got}, need {(PAD, BOS, EOS, UNK)}")

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, model_type: str) -> SentencePieceVocab:
        """Trains in memory. `vocab_size` is a soft limit: tiny corpora give smaller vocabularies.

        Identity normalization keeps decode(encode(text)) == text for text whose characters occur
        in training (up to runs of spaces). One thread, so the model is the same on every run.
        """
        if model_type not in SPM_MODEL_TYPES:
            raise ValueError(f"data.spm_model_type={model_type!r}; valid: {SPM_MODEL_TYPES}")
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            pad_id=PAD, bos_id=BOS, eos_id=EOS, unk_id=UNK,
            pad_piece=SPECIAL_TOKENS[PAD], bos_piece=SPECIAL_TOKENS[BOS],
            eos_piece=SPECIAL_TOKENS[EOS], unk_piece=SPECIAL_TOKENS[UNK],
            hard_vocab_limit=False,
            character_coverage=1.0,
            normalization_rule_name="identity",
            num_threads=1,
            minloglevel=2,
        )
        return cls(model.getvalue())

    @property
    def size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text, out_type=int)

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode(_content_ids(ids))

    def pieces(self, ids: Iterable[int]) -> list[str]:
        return [self._sp.id_to_piece(int(i)) for i in ids]

    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, self.FILENAME), "wb") as f:
            f.write(self._proto)

    @classmethod
    def load(cls, directory: str) -> SentencePieceVocab:
        with open(os.path.join(directory, cls.FILENAME), "rb") as f:
            return cls(f.read())


_VOCAB_CLASSES = {"word": WordVocab, "sentencepiece": SentencePieceVocab}


def check_config(cfg: Any) -> None:
    """Clear errors for `config.data` vocabulary settings this module cannot use."""
    if cfg.vocab not in VOCAB_TYPES:
        raise ValueError(f"unknown data.vocab={cfg.vocab!r}; valid: {VOCAB_TYPES}")
    if cfg.vocab == "sentencepiece" and cfg.spm_model_type not in SPM_MODEL_TYPES:
        raise ValueError(
            f"unknown data.spm_model_type={cfg.spm_model_type!r}; valid: {SPM_MODEL_TYPES}")


def _vocab_meta(cfg: Any, dataset: Mapping[str, Any]) -> dict[str, Any]:
    """What a saved vocabulary depends on (checked again on resume): the dataset's identity
    (`sources.dataset_meta`) and the vocab fields of `config.data`."""
    meta = {**dataset, "vocab": cfg.vocab, "joint_vocab": bool(cfg.joint_vocab)}
    if cfg.vocab == "sentencepiece":
        meta.update(vocab_size=cfg.vocab_size, spm_model_type=cfg.spm_model_type)
    return meta


def _build_vocab(cfg: Any, texts: Sequence[str]) -> Vocab:
    if cfg.vocab == "word":
        return WordVocab.build(texts)
    return SentencePieceVocab.train(texts, cfg.vocab_size, cfg.spm_model_type)


def _load_saved(vocab_dir: str, vocab_type: str, joint: bool) -> tuple[Vocab, Vocab]:
    cls = _VOCAB_CLASSES[vocab_type]
    if joint:
        vocab = cls.load(os.path.join(vocab_dir, "joint"))
        return vocab, vocab
    return cls.load(os.path.join(vocab_dir, "src")), cls.load(os.path.join(vocab_dir, "tgt"))


def load_vocabs(workdir: str) -> tuple[Vocab, Vocab]:
    """The (src, tgt) vocabularies a run saved under WORKDIR/vocab/ (for inference)."""
    vocab_dir = os.path.join(workdir, "vocab")
    meta_path = os.path.join(vocab_dir, "meta.json")
    if not os.path.exists(meta_path):
        raise FileNotFoundError(f"{workdir} has no saved vocabulary ({meta_path}); is it a run dir?")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    return _load_saved(vocab_dir, meta["vocab"], meta["joint_vocab"])


def load_or_build_vocabs(cfg: Any, workdir: str, train: Sequence[Pair],
                         dataset: Mapping[str, Any]) -> tuple[Vocab, Vocab]:
    """Loads (src, tgt) vocabularies from WORKDIR/vocab/, or builds them on `train` and saves them.

    `dataset` identifies the data they are built on (`sources.dataset_meta(cfg)`); a saved
    vocabulary built for other data or other vocab settings is refused.
    Layout: vocab/meta.json plus vocab/joint/ (joint_vocab) or vocab/src/ and vocab/tgt/.
    """
    vocab_dir = os.path.join(workdir, "vocab")
    meta_path = os.path.join(vocab_dir, "meta.json")
    meta = _vocab_meta(cfg, dataset)
    if os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved != meta:
            raise ValueError(
                f"{meta_path} was written for data config {saved}, but the config now says {meta}. "
                "A run's vocabulary cannot change; use a new --workdir.")
        return _load_saved(vocab_dir, cfg.vocab, meta["joint_vocab"])

    start = time.perf_counter()
    src_texts = [p.src for p in train if p.image is None]  # Images: no source words.
    tgt_texts = [p.tgt for p in train]
    if meta["joint_vocab"]:
        src_vocab = tgt_vocab = _build_vocab(cfg, src_texts + tgt_texts)
        src_vocab.save(os.path.join(vocab_dir, "joint"))
    else:
        src_vocab, tgt_vocab = _build_vocab(cfg, src_texts), _build_vocab(cfg, tgt_texts)
        src_vocab.save(os.path.join(vocab_dir, "src"))
        tgt_vocab.save(os.path.join(vocab_dir, "tgt"))
    with open(meta_path, "w", encoding="utf-8") as f:  # written last: marks the vocab complete
        json.dump(meta, f, indent=1)
    logging.info("built %s vocab (src %d, tgt %d) in %.1fs -> %s", cfg.vocab, src_vocab.size,
                 tgt_vocab.size, time.perf_counter() - start, vocab_dir)
    return src_vocab, tgt_vocab
