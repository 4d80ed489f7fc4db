"""Data: vocabularies, TFDS builders (array_record), a grain reader and fixed-shape length buckets.

Pipeline (``load(config.data, workdir)``):

  1. raw text pairs come from a TFDS builder prepared with ``file_format='array_record'`` into
     ``data.tfds_dir`` (no TensorFlow needed) and read back with ``builder.as_data_source()``
     through grain:
       'synthetic_hi_en'  -> ``SyntheticHiEn`` (attn_jax.synthetic; gold alignments; no network)
       'multi30k'         -> ``Multi30k`` (raw .gz files from ``data.raw_dir``; manual data)
       'tfds:NAME'        -> any TFDS catalog translation dataset, e.g. 'tfds:wmt14_translate/de-en'
  2. vocabularies (``WordVocab`` or ``SentencePieceVocab``) are built on the train split and saved
     under WORKDIR/vocab/; a resumed run reloads them from there, never retrains them;
  3. every split is tokenized into memory (``Data``); train pairs longer than ``data.max_len`` are
     filtered out and counted, valid/test pairs never are (an error names the fix instead);
  4. batches have one fixed shape per bucket in ``data.buckets`` so jitted steps never recompile:
     ``train_batches`` ([K, B, L], K seeded replicas) and ``eval_batches`` ([B, L]).

Token layout: PAD=0, BOS=1, EOS=2, UNK=3 in every vocabulary.
  src     = [x1..xm, PAD...]
  tgt_in  = [BOS, y1..yn, PAD...]
  tgt_out = [y1..yn, EOS, PAD...]
A pair goes to the smallest bucket L with m <= L and n + 1 <= L; src, tgt_in, tgt_out are all
[.., L].
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import hashlib
import importlib.resources.abc
import importlib.util
import io
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from absl import logging
import grain
import numpy as np
import sentencepiece as spm
import tensorflow_datasets as tfds

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
SPLITS = ("train", "valid", "test")
DATASET_NAMES = ("synthetic_hi_en", "multi30k", "tfds:<catalog name>")
VOCAB_TYPES = ("word", "sentencepiece")
SPM_MODEL_TYPES = ("bpe", "unigram")

MULTI30K_URL = "https://github.com/multi30k/dataset (folder data/task1/raw/)"
MULTI30K_PREFIXES = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
# Our split names -> split names of TFDS catalog datasets.
CATALOG_SPLITS = {"train": "train", "valid": "validation", "test": "test"}

_READ_CHUNK = 4096  # records fetched per batched read from an array_record data source


def _ensure_importlib_resources() -> None:
    """TFDS 4.9.x needs the `importlib_resources` backport to prepare any builder that lives in a
    package (tensorflow/datasets#11212) but only declares it for Python < 3.9. The standard
    library's `importlib.resources` has the same `abc.Traversable`, so alias it when missing."""
    if importlib.util.find_spec("importlib_resources") is None:
        sys.modules["importlib_resources"] = importlib.resources


_ensure_importlib_resources()


# ----------------------------------------------------------------------------------------------
# Vocabularies
# ----------------------------------------------------------------------------------------------


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
                f"sentencepiece model has pad/bos/eos/unk ids {got}, need (0, 1, 2, 3)")

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


def _vocab_meta(cfg: Any) -> dict[str, Any]:
    """The config fields a saved vocabulary depends on (checked again on resume)."""
    meta = {"name": cfg.name, "vocab": cfg.vocab, "joint_vocab": bool(cfg.joint_vocab)}
    if cfg.name != "synthetic_hi_en":
        meta.update(source_lang=cfg.source_lang, target_lang=cfg.target_lang)
    else:
        meta.update(train_size=cfg.train_size, valid_size=cfg.valid_size,
                    test_size=cfg.test_size, seed=cfg.seed, generator=_generator_fingerprint())
    if cfg.vocab == "sentencepiece":
        meta.update(vocab_size=cfg.vocab_size, spm_model_type=cfg.spm_model_type)
    return meta


def _build_vocab(cfg: Any, texts: Sequence[str]) -> Vocab:
    if cfg.vocab == "word":
        return WordVocab.build(texts)
    return SentencePieceVocab.train(texts, cfg.vocab_size, cfg.spm_model_type)


def load_vocabs(workdir: str) -> tuple[Vocab, Vocab]:
    """The (src, tgt) vocabularies a run saved under WORKDIR/vocab/ (for inference)."""
    vocab_dir = os.path.join(workdir, "vocab")
    meta_path = os.path.join(vocab_dir, "meta.json")
    if not os.path.exists(meta_path):
        raise FileNotFoundError(f"{workdir} has no saved vocabulary ({meta_path}); is it a run dir?")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    cls = _VOCAB_CLASSES[meta["vocab"]]
    if meta["joint_vocab"]:
        vocab = cls.load(os.path.join(vocab_dir, "joint"))
        return vocab, vocab
    return cls.load(os.path.join(vocab_dir, "src")), cls.load(os.path.join(vocab_dir, "tgt"))


def load_or_build_vocabs(cfg: Any, workdir: str, train: Sequence[Pair]) -> tuple[Vocab, Vocab]:
    """Loads (src, tgt) vocabularies from WORKDIR/vocab/, or builds them on `train` and saves them.

    Layout: vocab/meta.json plus vocab/joint/ (joint_vocab) or vocab/src/ and vocab/tgt/.
    """
    vocab_dir = os.path.join(workdir, "vocab")
    meta_path = os.path.join(vocab_dir, "meta.json")
    meta = _vocab_meta(cfg)
    cls = _VOCAB_CLASSES[cfg.vocab]
    if os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved != meta:
            raise ValueError(
                f"{meta_path} was written for data config {saved}, but the config now says {meta}. "
                "A run's vocabulary cannot change; use a new --workdir.")
        if meta["joint_vocab"]:
            vocab = cls.load(os.path.join(vocab_dir, "joint"))
            return vocab, vocab
        return cls.load(os.path.join(vocab_dir, "src")), cls.load(os.path.join(vocab_dir, "tgt"))

    start = time.perf_counter()
    src_texts = [p.src for p in train]
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


# ----------------------------------------------------------------------------------------------
# Raw text: TFDS builders
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pair:
    """One raw example. Links only for the synthetic data: (src_idx, tgt_idx) word indices."""

    src: str
    tgt: str
    sure: tuple[tuple[int, int], ...] | None = None
    possible: tuple[tuple[int, int], ...] | None = None


def _download_config(manual_dir: str | None = None) -> tfds.download.DownloadConfig:
    # try_download_gcs=False: never look for pre-built data on the network.
    return tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)


def _synthetic_module():
    from attn_jax import synthetic  # pylint: disable=g-import-not-at-top  (optional until written)
    return synthetic


def _generator_fingerprint() -> str:
    """Short hash of attn_jax/synthetic.py: an edited grammar never reuses stale prepared data."""
    module = _synthetic_module()
    path = getattr(module, "__file__", None)
    if not path or not os.path.exists(path):  # e.g. a stand-in module in tests
        return hashlib.sha1(module.__name__.encode()).hexdigest()[:8]
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()[:8]


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
    """One prepared copy per (sizes, seed, generator source); the name encodes all of them."""

    train_size: int = 0
    valid_size: int = 0
    test_size: int = 0
    seed: int = 0

    @classmethod
    def make(cls, train_size: int, valid_size: int, test_size: int, seed: int) -> SyntheticConfig:
        name = (f"train{train_size}_valid{valid_size}_test{test_size}_seed{seed}"
                f"_gen{_generator_fingerprint()}")
        return cls(name=name, train_size=train_size, valid_size=valid_size, test_size=test_size,
                   seed=seed)


class SyntheticHiEn(tfds.core.GeneratorBasedBuilder):
    """Synthetic romanized Hindi -> English with gold sure/possible alignments (Pharaoh 'i-j')."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        text = tfds.features.Text()
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=tfds.features.FeaturesDict(
                {"src": text, "tgt": text, "sure": text, "possible": text}),
            disable_shuffling=True,  # keep generation order: example i is line i
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # generated locally, nothing to download
        synthetic = _synthetic_module()
        cfg = self.builder_config
        sizes = {"train": cfg.train_size, "valid": cfg.valid_size, "test": cfg.test_size}
        splits = synthetic.generate_splits(sizes, cfg.seed)
        return {name: self._generate_examples(splits[name]) for name in SPLITS}

    def _generate_examples(self, examples):
        synthetic = _synthetic_module()
        for i, ex in enumerate(examples):
            yield i, {"src": ex.src, "tgt": ex.tgt, "sure": synthetic.format_links(ex.sure),
                      "possible": synthetic.format_links(ex.possible)}


def read_lines(path: str) -> list[str]:
    """Lines of a gzipped UTF-8 file, stripped. Invalid UTF-8 or an empty line raise `path:line`."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot read as gzip: {e}") from e
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final newline
    out = []
    for number, line in enumerate(lines, start=1):
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{path}:{number}: invalid UTF-8 ({e.reason} at byte {e.start})") from e
        if not text:
            raise ValueError(f"{path}:{number}: empty line (every line must hold one sentence; "
                             "empty lines are not dropped silently, fix the file)")
        out.append(text)
    return out


def read_parallel(src_path: str, tgt_path: str) -> list[tuple[str, str]]:
    """Line i of `src_path` paired with line i of `tgt_path`; the line counts must match."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise ValueError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: line i of one must "
            "be the translation of line i of the other")
    return list(zip(src, tgt))


def multi30k_files(raw_dir: str, languages: Sequence[str]) -> dict[str, list[str]]:
    """Our split -> raw file path per language, e.g. 'valid' -> [DIR/val.de.gz, DIR/val.en.gz]."""
    return {split: [os.path.join(raw_dir, f"{prefix}.{lang}.gz") for lang in languages]
            for split, prefix in MULTI30K_PREFIXES.items()}


def check_multi30k_files(raw_dir: str, languages: Sequence[str]) -> None:
    """Raises a clear error (where to get the files, which field to set) if any file is missing."""
    if not raw_dir:
        raise FileNotFoundError(
            "data.name='multi30k' needs the raw files, but data.raw_dir is empty. Download "
            f"train/val/test_2016_flickr .{{{','.join(languages)}}}.gz from {MULTI30K_URL} and set "
            "--config.data.raw_dir=DIR.")
    paths = [p for split_paths in multi30k_files(raw_dir, languages).values() for p in split_paths]
    missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"Multi30k raw files missing from data.raw_dir={raw_dir!r}: {', '.join(missing)}. Get "
            f"them from {MULTI30K_URL} and point --config.data.raw_dir at their folder.")


@dataclasses.dataclass
class Multi30kConfig(tfds.core.BuilderConfig):
    """One language pair, e.g. name 'de-en'; either direction is read from it."""

    languages: tuple[str, ...] = ()

    @classmethod
    def make(cls, lang_a: str, lang_b: str) -> Multi30kConfig:
        languages = tuple(sorted((lang_a, lang_b)))
        return cls(name="-".join(languages), languages=languages)


class Multi30k(tfds.core.GeneratorBasedBuilder):
    """Multi30k (WMT16 multimodal task 1) raw text: train 29000 / val 1014 / test_2016_flickr 1000.

    Features: a translation dict {lang: Text} for the config's two languages, so 'de-en' serves
    both de->en and en->de.
    """

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Download from {MULTI30K_URL} the files train.L.gz, val.L.gz and test_2016_flickr.L.gz "
        "for both languages L (e.g. de and en) into one folder, and set "
        "--config.data.raw_dir to that folder.")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=tfds.features.Translation(languages=self.builder_config.languages),
            homepage="https://github.com/multi30k/dataset",
            disable_shuffling=True,  # keep file order: example i is line i
        )

    def _split_generators(self, dl_manager):
        languages = self.builder_config.languages
        raw_dir = os.fspath(dl_manager.manual_dir)
        check_multi30k_files(raw_dir, languages)
        # Read and validate everything before any record is written.
        pairs = {split: read_parallel(*paths)
                 for split, paths in multi30k_files(raw_dir, languages).items()}
        return {split: self._generate_examples(pairs[split], languages) for split in SPLITS}

    def _generate_examples(self, pairs, languages):
        for i, pair in enumerate(pairs):
            yield i, dict(zip(languages, pair))


def _prepared(make_builder: Callable[[], tfds.core.DatasetBuilder],
              manual_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """`make_builder()` prepared as array_record (reused once prepared).

    If another process (a parallel sweep trial) prepares the same data at the same time and our
    own preparation fails on the race, its finished copy is used.
    """
    builder = make_builder()
    if not builder.is_prepared():
        start = time.perf_counter()
        try:
            builder.download_and_prepare(file_format="array_record",
                                         download_config=_download_config(manual_dir))
        except Exception:  # pylint: disable=broad-except
            builder = make_builder()
            if not builder.is_prepared():
                raise
            logging.warning("%s was prepared concurrently by another process; using it",
                            builder.data_dir)
        logging.info("prepared %s in %.1fs", builder.data_dir, time.perf_counter() - start)
    file_format = builder.info.file_format
    if file_format is not None and file_format != tfds.core.FileFormat.ARRAY_RECORD:
        raise ValueError(
            f"{builder.data_dir} is prepared as {file_format.value}, which cannot be read "
            "without TensorFlow. Use another data.tfds_dir (it will be prepared as "
            "array_record).")
    return builder


def _read_source(source: Sequence[Any], decode_fn) -> list[Pair]:
    """Reads a TFDS data source through grain, in batched reads of _READ_CHUNK records."""
    n = len(source)

    def read_chunk(start: int) -> list[Pair]:
        records = source.__getitems__(list(range(start, min(start + _READ_CHUNK, n))))
        return [decode_fn(r) for r in records]

    chunks = grain.MapDataset.range(0, n, _READ_CHUNK).map(read_chunk)
    return [pair for chunk in chunks for pair in chunk]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _read_synthetic(cfg: Any) -> dict[str, list[Pair]]:
    synthetic = _synthetic_module()
    config = SyntheticConfig.make(cfg.train_size, cfg.valid_size, cfg.test_size, cfg.seed)
    builder = _prepared(lambda: SyntheticHiEn(config=config, data_dir=cfg.tfds_dir or None))

    def decode(record) -> Pair:
        return Pair(src=_text(record["src"]), tgt=_text(record["tgt"]),
                    sure=tuple(synthetic.parse_links(_text(record["sure"]))),
                    possible=tuple(synthetic.parse_links(_text(record["possible"]))))

    return {split: _read_source(builder.as_data_source(split=split), decode) for split in SPLITS}


def _translation_decoder(features: Any, source_lang: str, target_lang: str, what: str):
    """Record -> Pair for a translation dict {lang: text} (possibly nested under 'translation')."""
    nested = "translation" in features.keys()
    languages = list((features["translation"] if nested else features).keys())
    for field, lang in (("source_lang", source_lang), ("target_lang", target_lang)):
        if lang not in languages:
            raise ValueError(
                f"data.{field}={lang!r} is not a language of {what}; it has {languages}")
    if source_lang == target_lang:
        raise ValueError(f"data.source_lang and data.target_lang are both {source_lang!r}")

    def decode(record) -> Pair:
        translation = record["translation"] if nested else record
        return Pair(src=_text(translation[source_lang]), tgt=_text(translation[target_lang]))

    return decode


def _read_multi30k(cfg: Any) -> dict[str, list[Pair]]:
    """Multi30k via its builder. Once prepared in data.tfds_dir the raw files are not read again
    (to re-read edited raw files, delete TFDS_DIR/multi30k/)."""
    config = Multi30kConfig.make(cfg.source_lang, cfg.target_lang)

    def make_builder():
        return Multi30k(config=config, data_dir=cfg.tfds_dir or None)

    if not make_builder().is_prepared():
        check_multi30k_files(cfg.raw_dir, config.languages)
    builder = _prepared(make_builder, manual_dir=cfg.raw_dir)
    decode = _translation_decoder(builder.info.features, cfg.source_lang, cfg.target_lang,
                                  "multi30k")
    return {split: _read_source(builder.as_data_source(split=split), decode) for split in SPLITS}


def _read_catalog(cfg: Any, name: str) -> dict[str, list[Pair]]:
    """A TFDS catalog translation dataset; splits train/validation/test -> train/valid/test."""

    def make_builder():
        return tfds.builder(name, data_dir=cfg.tfds_dir or None)

    # Languages are checked before preparing, which may mean a long download.
    decode = _translation_decoder(make_builder().info.features, cfg.source_lang,
                                  cfg.target_lang, f"tfds:{name}")
    builder = _prepared(make_builder)
    available = list(builder.info.splits.keys())
    missing = [s for s in CATALOG_SPLITS.values() if s not in available]
    if missing:
        raise ValueError(f"tfds:{name} lacks split(s) {missing} (it has {available}); "
                         f"attn_jax needs {list(CATALOG_SPLITS.values())}")
    return {ours: _read_source(builder.as_data_source(split=theirs), decode)
            for ours, theirs in CATALOG_SPLITS.items()}


def read_raw_splits(cfg: Any) -> dict[str, list[Pair]]:
    """Prepares (if needed) and reads dataset `cfg.name`: {'train'|'valid'|'test': pairs}."""
    tfds.disable_progress_bar()
    if cfg.name == "synthetic_hi_en":
        return _read_synthetic(cfg)
    if cfg.name == "multi30k":
        return _read_multi30k(cfg)
    if cfg.name.startswith("tfds:") and len(cfg.name) > len("tfds:"):
        return _read_catalog(cfg, cfg.name[len("tfds:"):])
    raise ValueError(f"unknown data.name={cfg.name!r}; valid: {DATASET_NAMES}, "
                     "e.g. 'tfds:wmt14_translate/de-en'")


# ----------------------------------------------------------------------------------------------
# Tokenized in-memory data
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Split:
    """One tokenized split. Example i (the batch 'index') is src_text[i] / src_ids[i] / ... ."""

    name: str
    src_text: list[str]
    tgt_text: list[str]
    src_ids: list[np.ndarray]  # [m_i] int32, no BOS/EOS
    tgt_ids: list[np.ndarray]  # [n_i] int32, no BOS/EOS
    sure: list[tuple[tuple[int, int], ...]] | None  # gold links (synthetic only)
    possible: list[tuple[tuple[int, int], ...]] | None
    bucket: np.ndarray  # [N] int32 index into Data.buckets
    raw_index: np.ndarray  # [N] int32 position in the raw split (differs only after filtering)
    filtered: dict[str, int]  # train: {'too_long': n, 'empty': n}; valid/test: zeros
    # Per bucket: padded arrays of that bucket's examples, ascending index.
    # {'src','tgt_in','tgt_out': [n_b, L_b] int32, 'index': [n_b] int32}
    bucket_arrays: tuple[dict[str, np.ndarray], ...]

    def __len__(self) -> int:
        return len(self.src_text)


@dataclasses.dataclass(frozen=True)
class Data:
    """Everything the trainer needs: vocabularies, buckets, and the three tokenized splits."""

    name: str
    src_vocab: Vocab
    tgt_vocab: Vocab
    buckets: tuple[int, ...]
    seed: int  # data.seed: the train bucket schedule's seed
    splits: dict[str, Split]

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]


def check_config(cfg: Any) -> None:
    """Clear errors for config values this module cannot use."""
    if not (cfg.name in ("synthetic_hi_en", "multi30k") or
            (cfg.name.startswith("tfds:") and len(cfg.name) > len("tfds:"))):
        raise ValueError(f"unknown data.name={cfg.name!r}; valid: {DATASET_NAMES}, "
                         "e.g. 'tfds:wmt14_translate/de-en'")
    if cfg.vocab not in VOCAB_TYPES:
        raise ValueError(f"unknown data.vocab={cfg.vocab!r}; valid: {VOCAB_TYPES}")
    if cfg.vocab == "sentencepiece" and cfg.spm_model_type not in SPM_MODEL_TYPES:
        raise ValueError(
            f"unknown data.spm_model_type={cfg.spm_model_type!r}; valid: {SPM_MODEL_TYPES}")
    buckets = tuple(cfg.buckets)
    if not buckets or any(int(b) < 2 for b in buckets) or list(buckets) != sorted(set(buckets)):
        raise ValueError(f"data.buckets={buckets} must be strictly increasing lengths >= 2")
    if not 2 <= cfg.max_len <= buckets[-1]:
        raise ValueError(
            f"data.max_len={cfg.max_len} must lie in [2, largest bucket {buckets[-1]}]; "
            "raise data.buckets or lower data.max_len")


def smallest_bucket(length: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket length L >= length, or None when none fits."""
    return next((b for b in buckets if length <= b), None)


def _bucket_of(src_len: int, tgt_len: int, buckets: Sequence[int]) -> int:
    """Index of the smallest bucket L with src_len <= L and tgt_len + 1 <= L (EOS), or -1."""
    length = smallest_bucket(max(src_len, tgt_len + 1), buckets)
    return -1 if length is None else list(buckets).index(length)


def _bucket_arrays(src_ids, tgt_ids, bucket, buckets) -> tuple[dict[str, np.ndarray], ...]:
    out = []
    for b, length in enumerate(buckets):
        rows = np.flatnonzero(bucket == b).astype(np.int32)  # [n_b]
        src = np.full((len(rows), length), PAD, np.int32)  # [n_b, L]
        tgt_in = np.full((len(rows), length), PAD, np.int32)  # [n_b, L]
        tgt_out = np.full((len(rows), length), PAD, np.int32)  # [n_b, L]
        for r, i in enumerate(rows):
            s, t = src_ids[i], tgt_ids[i]
            src[r, :len(s)] = s
            tgt_in[r, 0] = BOS
            tgt_in[r, 1:len(t) + 1] = t
            tgt_out[r, :len(t)] = t
            tgt_out[r, len(t)] = EOS
        out.append({"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out, "index": rows})
    return tuple(out)


def tokenize_split(name: str, pairs: Sequence[Pair], src_vocab: Vocab, tgt_vocab: Vocab,
                   buckets: Sequence[int], max_len: int) -> Split:
    """Tokenizes and buckets `pairs`. Train drops (and counts) pairs over max_len or empty;
    valid/test raise instead, since an evaluation set must never shrink silently."""
    src_ids = [np.asarray(src_vocab.encode(p.src), np.int32) for p in pairs]
    tgt_ids = [np.asarray(tgt_vocab.encode(p.tgt), np.int32) for p in pairs]
    keep, filtered = [], {"too_long": 0, "empty": 0}
    for i, (s, t) in enumerate(zip(src_ids, tgt_ids)):
        empty = len(s) == 0 or len(t) == 0
        if name == "train":
            if empty:
                filtered["empty"] += 1
            elif max(len(s), len(t) + 1) > max_len:
                filtered["too_long"] += 1
            else:
                keep.append(i)
            continue
        if empty:
            raise ValueError(
                f"{name} example {i} has an empty source or target after tokenization "
                f"(src={pairs[i].src!r}, tgt={pairs[i].tgt!r}); fix the data")
        if _bucket_of(len(s), len(t), buckets) < 0:
            need = max(len(s), len(t) + 1)
            raise ValueError(
                f"{name} example {i} has {len(s)} source and {len(t)}+1 (EOS) target tokens, "
                f"more than the largest bucket {buckets[-1]} of data.buckets={tuple(buckets)}. "
                f"Raise data.buckets (e.g. add {16 * math.ceil(need / 16)}); evaluation "
                "examples are never dropped.")
        keep.append(i)
    if name == "train" and (filtered["too_long"] or filtered["empty"]):
        logging.warning("train: filtered %d pairs longer than data.max_len=%d and %d empty pairs "
                        "(of %d)", filtered["too_long"], max_len, filtered["empty"], len(pairs))
    if not keep:
        raise ValueError(f"{name} split is empty after filtering ({filtered}); check data.max_len")
    src_ids = [src_ids[i] for i in keep]
    tgt_ids = [tgt_ids[i] for i in keep]
    bucket = np.array([_bucket_of(len(s), len(t), buckets) for s, t in zip(src_ids, tgt_ids)],
                      np.int32)
    has_links = pairs[0].sure is not None
    return Split(
        name=name,
        src_text=[pairs[i].src for i in keep],
        tgt_text=[pairs[i].tgt for i in keep],
        src_ids=src_ids,
        tgt_ids=tgt_ids,
        sure=[pairs[i].sure for i in keep] if has_links else None,
        possible=[pairs[i].possible for i in keep] if has_links else None,
        bucket=bucket,
        raw_index=np.asarray(keep, np.int32),
        filtered=filtered,
        bucket_arrays=_bucket_arrays(src_ids, tgt_ids, bucket, buckets),
    )


def load(cfg: Any, workdir: str) -> Data:
    """Reads `config.data` `cfg`, prepares/reads the dataset, loads or builds the vocabularies
    (WORKDIR/vocab/) and returns every split tokenized and bucketed in memory."""
    check_config(cfg)
    start = time.perf_counter()
    raw = read_raw_splits(cfg)
    read_s = time.perf_counter() - start
    src_vocab, tgt_vocab = load_or_build_vocabs(cfg, workdir, raw["train"])
    vocab_s = time.perf_counter() - start - read_s
    buckets = tuple(int(b) for b in cfg.buckets)
    splits = {name: tokenize_split(name, raw[name], src_vocab, tgt_vocab, buckets, cfg.max_len)
              for name in SPLITS}
    tokenize_s = time.perf_counter() - start - read_s - vocab_s
    data = Data(name=cfg.name, src_vocab=src_vocab, tgt_vocab=tgt_vocab, buckets=buckets,
                seed=int(cfg.seed), splits=splits)
    logging.info("data %s: %s; vocab src %d tgt %d; prepare+read %.1fs, vocab %.1fs, tokenize "
                 "%.1fs", cfg.name, describe(data), src_vocab.size, tgt_vocab.size, read_s, vocab_s,
                 tokenize_s)
    return data


def describe(data: Data) -> str:
    """One line: examples per split and bucket, and the train filter counts."""
    parts = []
    for name, split in data.splits.items():
        per_bucket = np.bincount(split.bucket, minlength=len(data.buckets)).tolist()
        parts.append(f"{name} {len(split)} (per bucket {dict(zip(data.buckets, per_bucket))})")
    return "; ".join(parts) + f"; train filtered {data.splits['train'].filtered}"


# ----------------------------------------------------------------------------------------------
# Batching: one fixed shape per bucket
# ----------------------------------------------------------------------------------------------


def batch_sizes(cfg: Any, buckets: Sequence[int]) -> tuple[int, ...]:
    """Sentences per train batch in each bucket: data.batch_size everywhere, or with
    data.batch_tokens > 0 about batch_tokens / L sentences in the bucket of padded length L (a
    multiple of 8 once at least 8), so every batch holds about the same number of tokens."""
    if cfg.batch_tokens <= 0:
        return tuple(int(cfg.batch_size) for _ in buckets)
    sizes = []
    for length in buckets:
        size = max(1, cfg.batch_tokens // length)
        sizes.append(size // 8 * 8 if size >= 8 else size)
    return tuple(sizes)


def _per_bucket(sizes: int | Sequence[int], n: int) -> tuple[int, ...]:
    sizes = (sizes,) * n if isinstance(sizes, (int, np.integer)) else tuple(sizes)
    if len(sizes) != n or min(sizes) < 1:
        raise ValueError(f"batch sizes must be >= 1, one per bucket ({n}), got {sizes}")
    return sizes


def _batches_per_bucket(split: Split, sizes: int | Sequence[int]) -> list[int]:
    """ceil(n_b / B_b): the last batch of a bucket is filled by wrap-around (see train_batches)."""
    sizes = _per_bucket(sizes, len(split.bucket_arrays))
    return [math.ceil(len(a["index"]) / size) for a, size in zip(split.bucket_arrays, sizes)]


def steps_per_epoch(data: Data, sizes: int | Sequence[int]) -> int:
    """Train steps per epoch: sum over buckets of ceil(n_b / B_b) (`batch_sizes`, or one int)."""
    return sum(_batches_per_bucket(data.splits["train"], sizes))


def _bucket_schedule(counts: Sequence[int], data_seed: int,
                     epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Which bucket each step of `epoch` uses, and the how-many-th use of that bucket it is.

    A shuffle of [b] * counts[b] seeded by (data_seed, epoch) only: identical for every replica.
    """
    order = np.repeat(np.arange(len(counts)), counts)  # [steps_per_epoch]
    np.random.default_rng([0, data_seed, epoch]).shuffle(order)
    occurrence = np.zeros_like(order)
    seen = collections.Counter()
    for step, b in enumerate(order):
        occurrence[step] = seen[b]
        seen[b] += 1
    return order, occurrence


def _replica_permutation(n: int, seed: int, epoch: int, bucket: int) -> np.ndarray:
    """The order in which replica `seed` visits bucket `bucket` in `epoch`."""
    return np.random.default_rng([1, seed, epoch, bucket]).permutation(n)


def train_batches(data: Data, sizes: int | Sequence[int], seeds: Sequence[int],
                  start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Endless train batches for K = len(seeds) replicas: {'src','tgt_in','tgt_out': [K, B, L],
    'index': [K, B]}, with L one of data.buckets and B its batch size (`batch_sizes`; an int:
    the same in every bucket).

    Step k is a pure function of (data, sizes, seeds, data.seed, k):
      epoch, j = divmod(k, steps_per_epoch)
      bucket   = schedule(data.seed, epoch)[j]         (same for all replicas, so shapes match)
      rows     = permutation(seed_i, epoch, bucket)    (each replica its own order)
    so replica i of seeds (s0, s1, ...) sees exactly the batches of a run with seeds (s_i,), and
    start_step=k continues a run exactly. Each epoch every train example appears once; a bucket's
    last batch is completed by wrapping around to the start of that replica's permutation of the
    bucket (so a few examples appear twice per epoch; a bucket smaller than B repeats its examples).
    """
    split = data.splits["train"]
    sizes = _per_bucket(sizes, len(split.bucket_arrays))
    counts = _batches_per_bucket(split, sizes)
    per_epoch = sum(counts)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("train_batches needs at least one seed")
    epoch = None
    for step in itertools.count(start_step):
        step_epoch, j = divmod(step, per_epoch)
        if step_epoch != epoch:
            epoch = step_epoch
            order, occurrence = _bucket_schedule(counts, data.seed, epoch)
            perms: dict[tuple[int, int], np.ndarray] = {}
        b = int(order[j])
        arrays = split.bucket_arrays[b]
        n_b = len(arrays["index"])
        size = sizes[b]
        positions = (occurrence[j] * size + np.arange(size)) % n_b  # [B]
        rows = []
        for seed in seeds:
            if (seed, b) not in perms:
                perms[seed, b] = _replica_permutation(n_b, seed, epoch, b)
            rows.append(perms[seed, b][positions])
        rows = np.stack(rows)  # [K, B]
        yield {key: value[rows] for key, value in arrays.items()}  # [K, B, L] / index [K, B]


def _filler(key: str, rows: int, shape: tuple[int, ...]) -> np.ndarray:
    """Filler rows: index -1, everything else PAD."""
    return np.full((rows,) + shape, -1 if key == "index" else PAD, np.int32)


def eval_batches(data: Data, split: str, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Every example of `split` exactly once: {'src','tgt_in','tgt_out': [B, L], 'index': [B]}.

    Bucket by bucket (ascending L), ascending index within a bucket; the last batch of a bucket is
    padded with filler rows (all PAD, index -1).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for arrays in data.splits[split].bucket_arrays:
        n_b = len(arrays["index"])
        for start in range(0, n_b, batch_size):
            batch = {key: value[start:start + batch_size] for key, value in arrays.items()}
            filler = batch_size - len(batch["index"])
            if filler:
                batch = {key: np.concatenate([value, _filler(key, filler, value.shape[1:])])
                         for key, value in batch.items()}
            yield batch
