"""Raw text pairs: the dataset registry, and TFDS builders prepared as array_record and read
back without TensorFlow.

`read_raw_splits(config.data)` prepares (once, into ``data.tfds_dir``) and reads dataset
``data.name``: {'train'|'valid'|'test': [Pair]} in file order. Every name is one entry of
`DATASETS` (or the ``tfds:`` prefix), which says how it is read and what it carries:

  'synthetic_hi_en'  -> ``SyntheticHiEn`` (attn_jax.data.synthetic; gold alignments; no network)
  'multi30k'         -> ``Multi30k`` (raw .gz files from ``data.raw_dir``; manual data)
  'tfds:NAME'        -> any TFDS catalog translation dataset, e.g. 'tfds:wmt14_translate/de-en'
  'scenes'           -> ``Scenes`` (attn_jax.data.scenes: 64x64 images, captions and gold word
                        boxes; no network)
  'images:FOLDER'    -> a user's captioned images: FOLDER/{train,valid,test}.txt (read directly)

Builders are prepared with ``file_format='array_record'`` (the default tfrecord format needs
TensorFlow) and read through ``builder.as_data_source()`` in batched random-access reads. Raw
Multi30k files are validated line by line before any record is written: invalid UTF-8, an empty
line or mismatched line counts name the file and line.

Image captioning pairs (``Dataset.images``) hold an id in ``Pair.src`` ('test_17',
'running_example', or the image's file name), the caption in ``Pair.tgt``, the picture in
``Pair.image`` ([64, 64, 3] uint8 RGB) and, for 'scenes', the gold grounding in ``Pair.boxes``
([n_words, MAX_GROUP, 4] int32 visible-pixel boxes (y0, x0, y1, x1), half-open, of the objects
caption word w names, padded with -1 rows).

'images:FOLDER' reads FOLDER/train.txt, valid.txt and test.txt, one ``image_file<TAB>caption``
line per caption (several lines for one image: several references, kept as separate pairs);
image files are named relative to FOLDER and read with PIL as RGB 64x64 (other modes are
converted and other sizes resized, bilinear, aspect not kept; one log line per such file). A
missing or empty folder, a missing split file, an empty or malformed line and a line naming a
missing image file raise ValueError naming the file (and line) and the fix. A named file PIL
cannot read as an image is logged, counted and skipped with its captions; a split left with no
pair raises. Files no caption line names are ignored.

A TFDS catalog captioning set such as ``coco_captions`` (COCO 2014, Karpathy splits 'train',
'val', 'test', 'restval'; features 'image' (Image), 'image/filename', 'captions' (Sequence of
{'text', 'id'})) would be served the same way as 'tfds:NAME' translation data: a reader prepares
``tfds.builder('coco_captions', data_dir=data.tfds_dir)`` as array_record (a download of about
20 GB, made only on an explicit request), maps splits train/val/test -> train/valid/test, and
yields one Pair per (image, caption text): src = 'image/filename', tgt = the text, image = the
decoded picture (TFDS decodes Image features with PIL in data sources, without TensorFlow)
resized like folder images, boxes = None. No such entry is registered."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import importlib.resources.abc
import importlib.util
import logging as py_logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

SPLITS = ("train", "valid", "test")

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


@dataclasses.dataclass(frozen=True)
class Pair:
    """One raw example. Links only for the synthetic data: (src_idx, tgt_idx) word indices.

    Image pairs: `src` is an id, `image` the picture [H, W, 3] uint8 and `boxes`, where there is
    gold grounding, [n_words, MAX_GROUP, 4] int32 (module docstring). Both arrays are left out of
    comparisons and hashing (pairs compare by src, tgt and links)."""

    src: str
    tgt: str
    sure: tuple[tuple[int, int], ...] | None = None
    possible: tuple[tuple[int, int], ...] | None = None
    image: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    boxes: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)


# ----------------------------------------------------------------------------------------------
# TFDS builders
# ----------------------------------------------------------------------------------------------


def _download_config(manual_dir: str | None = None) -> tfds.download.DownloadConfig:
    # try_download_gcs=False: never look for pre-built data on the network.
    return tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)


# What TFDS logs about our own local builders that is expected here, not a problem: configs made
# per run rather than listed in BUILDER_CONFIGS, and the half-written version folder it finds
# while preparing one (each would read as an error or as network use).
_EXPECTED_TFDS_NOISE = ("Using custom data configuration", "Variant folder ")


class _DropExpectedNoise(py_logging.Filter):
    def filter(self, record: py_logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_EXPECTED_TFDS_NOISE)


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
    """Drops `_EXPECTED_TFDS_NOISE` from TFDS's log while one of our builders is made or
    prepared; every other message passes."""
    absl_logger = logging.get_absl_logger()
    drop = _DropExpectedNoise()
    absl_logger.addFilter(drop)
    try:
        yield
    finally:
        absl_logger.removeFilter(drop)


def _is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
    with _quiet_tfds():  # A folder being prepared (or left half-written) is not yet an error.
        return builder.is_prepared()


class _LocalBuilder(tfds.core.GeneratorBasedBuilder):
    """A builder prepared from local data (generated or read from files): TFDS's printed
    "Downloading and preparing dataset Unknown size ..." banner would announce a download that
    never happens, so `_prepared` logs the preparation instead."""

    def __init__(self, *args, **kwargs):
        with _quiet_tfds():
            super().__init__(*args, **kwargs)

    def _log_download_bytes(self) -> None:
        pass

    def _log_download_done(self) -> None:
        pass


def _synthetic_module():
    from attn_jax.data import synthetic  # pylint: disable=g-import-not-at-top  (stand-ins in tests)
    return synthetic


def _generator_fingerprint() -> str:
    """The embedded grammar's declared `GENERATOR_VERSION`: an edited grammar never reuses stale
    prepared data or resumes a run trained on other data."""
    module = _synthetic_module()
    version = getattr(module, "GENERATOR_VERSION", None)
    if version is None:  # e.g. a stand-in module in tests
        return hashlib.sha1(module.__name__.encode()).hexdigest()[:8]
    return version


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
    """One prepared copy per (sizes, seed, generator source); the name encodes all of them."""

    train_size: int = 0
    valid_size: int = 0
    test_size: int = 0
    seed: int = 0

    @staticmethod
    def generator() -> str:
        """The version of the generator the data come from (part of the name)."""
        return _generator_fingerprint()

    @classmethod
    def make(cls, train_size: int, valid_size: int, test_size: int, seed: int) -> SyntheticConfig:
        name = (f"train{train_size}_valid{valid_size}_test{test_size}_seed{seed}"
                f"_gen{cls.generator()}")
        return cls(name=name, train_size=train_size, valid_size=valid_size, test_size=test_size,
                   seed=seed)


class SyntheticHiEn(_LocalBuilder):
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


def _scenes_module():
    from attn_jax.data import scenes  # pylint: disable=g-import-not-at-top  (numpy drawing, lazily)
    return scenes


@dataclasses.dataclass
class ScenesConfig(SyntheticConfig):
    """One prepared copy per (sizes, seed, scenes.GENERATOR_VERSION); the name encodes all."""

    @staticmethod
    def generator() -> str:
        return _scenes_module().GENERATOR_VERSION


class Scenes(_LocalBuilder):
    """Embedded image captioning: 64x64 RGB scenes of named shapes, their captions and the gold
    boxes of every caption word (attn_jax.data.scenes)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        scenes = _scenes_module()
        size = scenes.IMAGE_SIZE
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(),
                "image": tfds.features.Tensor(shape=(size, size, 3), dtype=np.uint8,
                                              encoding=tfds.features.Encoding.BYTES),
                "caption": tfds.features.Text(),
                "boxes": tfds.features.Tensor(shape=(None, scenes.MAX_GROUP, 4), dtype=np.int32,
                                              encoding=tfds.features.Encoding.BYTES),
            }),
            disable_shuffling=True,  # keep generation order: example i is scene i
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # generated locally, nothing to download
        cfg = self.builder_config
        sizes = {"train": cfg.train_size, "valid": cfg.valid_size, "test": cfg.test_size}
        splits = _scenes_module().generate_splits(sizes, cfg.seed)
        return {name: self._generate_examples(name, splits[name]) for name in SPLITS}

    def _generate_examples(self, split, examples):
        scenes = _scenes_module()
        for i, scene in enumerate(examples):
            yield i, {"id": scenes.scene_id(split, i, scene), "image": scene.image,
                      "caption": scene.caption, "boxes": scene.boxes}


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


class Multi30k(_LocalBuilder):
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


@contextlib.contextmanager
def _unspilled_writes() -> Iterator[None]:
    """TFDS's writer buffers a split in memory and spills it to temporary files through
    TensorFlow's file API past 1 GB (more than about 80,000 scenes), which fails without
    TensorFlow; the builders here keep the generation order (no shuffle), so the buffer is the
    split itself: keep it in memory whatever its size."""
    from tensorflow_datasets.core import shuffle  # pylint: disable=g-import-not-at-top

    limit = shuffle.MAX_MEM_BUFFER_SIZE
    shuffle.MAX_MEM_BUFFER_SIZE = 1 << 62
    try:
        yield
    finally:
        shuffle.MAX_MEM_BUFFER_SIZE = limit


def _prepared(make_builder: Callable[[], tfds.core.DatasetBuilder],
              manual_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """`make_builder()` prepared as array_record (reused once prepared).

    If another process (a parallel sweep trial) prepares the same data at the same time and our
    own preparation fails on the race, its finished copy is used.
    """
    builder = make_builder()
    if not _is_prepared(builder):
        start = time.perf_counter()
        try:
            with _quiet_tfds(), _unspilled_writes():
                builder.download_and_prepare(file_format="array_record",
                                             download_config=_download_config(manual_dir))
        except Exception:  # pylint: disable=broad-except
            builder = make_builder()
            if not _is_prepared(builder):
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


# ----------------------------------------------------------------------------------------------
# Reading prepared data
# ----------------------------------------------------------------------------------------------


def _read_source(source: Sequence[Any], decode_fn: Callable[[Any], Pair]) -> list[Pair]:
    """Every record of a TFDS data source, in order, fetched in batched reads of _READ_CHUNK."""
    n = len(source)
    pairs = []
    for start in range(0, n, _READ_CHUNK):
        records = source.__getitems__(list(range(start, min(start + _READ_CHUNK, n))))
        pairs.extend(decode_fn(r) for r in records)
    return pairs


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


def _read_scenes(cfg: Any) -> dict[str, list[Pair]]:
    config = ScenesConfig.make(cfg.train_size, cfg.valid_size, cfg.test_size, cfg.seed)
    builder = _prepared(lambda: Scenes(config=config, data_dir=cfg.tfds_dir or None))
    max_group = _scenes_module().MAX_GROUP

    def decode(record) -> Pair:
        return Pair(src=_text(record["id"]), tgt=_text(record["caption"]),
                    image=np.asarray(record["image"], np.uint8),
                    boxes=np.asarray(record["boxes"], np.int32).reshape(-1, max_group, 4))

    return {split: _read_source(builder.as_data_source(split=split), decode) for split in SPLITS}


_CAPTION_LINE = "'image_file<TAB>caption'"


def _caption_lines(path: str) -> list[tuple[int, str, str]]:
    """(line number, image file, caption) of each line of a captions file; a malformed line
    raises `path:line`."""
    with open(path, "rb") as f:
        raw = f.read().split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()  # the final newline
    out = []
    for number, line in enumerate(raw, start=1):
        try:
            text = line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{path}:{number}: invalid UTF-8 ({e.reason} at byte {e.start})") from e
        name, tab, caption = text.partition("\t")
        if not (tab and name.strip() and caption.strip()):
            raise ValueError(f"{path}:{number}: expected {_CAPTION_LINE}, got {text!r}; fix or "
                             "remove the line")
        out.append((number, name.strip(), caption.strip()))
    if not out:
        raise ValueError(f"{path}: no captions; write one {_CAPTION_LINE} line per caption")
    return out


def read_image_folder(folder: str) -> dict[str, list[Pair]]:
    """A user's captioned images (the 'images:FOLDER' rules in the module docstring):
    {'train'|'valid'|'test': [Pair(src=image file, tgt=caption, image=[64, 64, 3] uint8)]}."""
    load_image = _scenes_module().load_image
    if not os.path.isdir(folder) or not os.listdir(folder):
        raise ValueError(
            f"{folder}: missing or empty folder; data.name='images:FOLDER' needs FOLDER/train.txt, "
            f"valid.txt and test.txt ({_CAPTION_LINE} lines) beside the image files")
    images: dict[str, np.ndarray | None] = {}  # file name -> picture, None when unreadable
    out = {}
    for split in SPLITS:
        path = os.path.join(folder, f"{split}.txt")
        if not os.path.isfile(path):
            raise ValueError(f"{path}: missing; write one {_CAPTION_LINE} line per caption of "
                             f"each {split} image (file names relative to {folder})")
        pairs, skipped = [], set()
        for number, name, caption in _caption_lines(path):
            if name not in images:
                file = os.path.join(folder, name)
                if not os.path.isfile(file):
                    raise ValueError(f"{path}:{number}: image file {name!r} does not exist in "
                                     f"{folder}; add it or remove the line")
                try:
                    images[name], done = load_image(file)
                except ValueError as e:
                    logging.warning("%s: skipped with its captions", e)
                    images[name] = None
                else:
                    if done:
                        logging.info("%s: %s", file, done)
            if images[name] is None:
                skipped.add(name)
                continue
            pairs.append(Pair(src=name, tgt=caption, image=images[name]))
        if skipped:
            logging.warning("%s: skipped %d unreadable image file(s): %s", path, len(skipped),
                            ", ".join(sorted(skipped)))
        if not pairs:
            raise ValueError(f"{path}: none of its images could be read; fix or replace them")
        out[split] = pairs
    return out


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

    if not _is_prepared(make_builder()):
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


# ----------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------


def _synthetic_meta(cfg: Any) -> dict[str, Any]:
    return {"name": cfg.name, "train_size": cfg.train_size, "valid_size": cfg.valid_size,
            "test_size": cfg.test_size, "seed": cfg.seed, "generator": _generator_fingerprint()}


def _translation_meta(cfg: Any) -> dict[str, Any]:
    return {"name": cfg.name, "source_lang": cfg.source_lang, "target_lang": cfg.target_lang}


def _running_example() -> str:
    return _synthetic_module().RUNNING_EXAMPLE.src


def _scenes_meta(cfg: Any) -> dict[str, Any]:
    return {"name": cfg.name, "train_size": cfg.train_size, "valid_size": cfg.valid_size,
            "test_size": cfg.test_size, "seed": cfg.seed,
            "generator": _scenes_module().GENERATOR_VERSION}


def _scenes_running_example() -> str:
    return _scenes_module().RUNNING_EXAMPLE_ID


def _images_meta(cfg: Any) -> dict[str, Any]:
    """The folder and a digest of its caption files (edited captions are other data)."""
    digest = hashlib.sha1()
    for split in SPLITS:
        path = os.path.join(cfg.name[len(IMAGES_PREFIX):], f"{split}.txt")
        if os.path.isfile(path):
            with open(path, "rb") as f:
                digest.update(f.read())
    return {"name": cfg.name, "image_size": _scenes_module().IMAGE_SIZE,
            "captions": digest.hexdigest()[:12]}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One `data.name`: how its splits are read and what they carry.

    read: config.data -> {'train'|'valid'|'test': [Pair]}, preparing the data first if needed.
    meta: config.data -> the fields that decide which pairs `read` returns (saved with a run's
      vocabulary: a run resumes only on the same data).
    gold: the pairs carry sure/possible alignment links (AER at evaluation; `align`'s export).
    example: () -> the `running_example` (a function: the generator module is imported lazily).
    images: the pairs carry images (`Pair.image`; `Pair.src` is an id) and, where `Pair.boxes` is
      set, gold grounding boxes per caption word.
    """

    read: Callable[[Any], dict[str, list[Pair]]]
    meta: Callable[[Any], dict[str, Any]]
    gold: bool = False
    example: Callable[[], str] | None = None
    images: bool = False
    scene: Callable[[], Any] | None = None  # () -> the running example's `scenes.Scene`

    @property
    def running_example(self) -> str | None:
        """A held-out source sentence decoded and drawn at the end of every run (None: none).
        For 'scenes' it is the id of test pair 0 (`scenes.RUNNING_EXAMPLE` holds its scene)."""
        return self.example() if self.example else None

    @property
    def example_scene(self) -> Any:
        """Image data: the running example's `scenes.Scene` (picture, caption, gold boxes)
        captioned and drawn at the end of every run; None when the data has none."""
        return self.scene() if self.scene else None


DATASETS: dict[str, Dataset] = {
    "synthetic_hi_en": Dataset(read=_read_synthetic, meta=_synthetic_meta, gold=True,
                               example=_running_example),
    "multi30k": Dataset(read=_read_multi30k, meta=_translation_meta),
    "scenes": Dataset(read=_read_scenes, meta=_scenes_meta, example=_scenes_running_example,
                      images=True, scene=lambda: _scenes_module().RUNNING_EXAMPLE),
}
CATALOG_PREFIX = "tfds:"  # 'tfds:NAME' reads TFDS catalog translation dataset NAME.
_CATALOG = Dataset(read=lambda cfg: _read_catalog(cfg, cfg.name[len(CATALOG_PREFIX):]),
                   meta=_translation_meta)
IMAGES_PREFIX = "images:"  # 'images:FOLDER' reads a folder of captioned images.
_IMAGES = Dataset(read=lambda cfg: read_image_folder(cfg.name[len(IMAGES_PREFIX):]),
                  meta=_images_meta, images=True)
DATASET_NAMES = (*DATASETS, f"{CATALOG_PREFIX}<catalog name>", f"{IMAGES_PREFIX}<folder>")


def dataset(name: str) -> Dataset:
    """The registry entry for `data.name`; a clear error naming the valid ones."""
    if name in DATASETS:
        return DATASETS[name]
    if name.startswith(CATALOG_PREFIX) and len(name) > len(CATALOG_PREFIX):
        return _CATALOG
    if name.startswith(IMAGES_PREFIX) and len(name) > len(IMAGES_PREFIX):
        return _IMAGES
    raise ValueError(f"unknown data.name={name!r}; valid: {DATASET_NAMES}, "
                     "e.g. 'tfds:wmt14_translate/de-en' or 'images:/data/my_captions'")


def check_name(name: str) -> None:
    """A clear error for a `data.name` no registry entry handles."""
    dataset(name)


def image_size(name: str) -> int:
    """Pixels per side of dataset `name`'s pictures (every image dataset is read at the scenes'
    size), or 0 for text."""
    return _scenes_module().IMAGE_SIZE if dataset(name).images else 0


def dataset_meta(cfg: Any) -> dict[str, Any]:
    """The `config.data` fields that decide which text pairs `read_raw_splits` returns (plus the
    synthetic generator's version): the identity of the data a vocabulary is built on."""
    return dataset(cfg.name).meta(cfg)


def read_raw_splits(cfg: Any) -> dict[str, list[Pair]]:
    """Prepares (if needed) and reads dataset `cfg.name`: {'train'|'valid'|'test': pairs}."""
    entry = dataset(cfg.name)
    tfds.disable_progress_bar()
    return entry.read(cfg)
