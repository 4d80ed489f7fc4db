"""Tests for attn_jax.data: vocabularies, TFDS builders (array_record), the catalog path, buckets.

Everything runs on tiny generated corpora under tmp_path (no network, no ../shared), except
`test_real_multi30k`, which is skipped when the shared Multi30k copy is absent.
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import os
import random
import sys
import types

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

import attn_jax
from attn_jax import data as data_lib
from attn_jax.data import BOS, EOS, PAD

# The shared copy beside the repository (../shared/data/multi30k), when there is one.
REAL_MULTI30K = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "shared", "data", "multi30k")

# ---------------------------------------------------------------------------------------------
# Fixtures and stand-ins
# ---------------------------------------------------------------------------------------------


def make_cfg(tmp_path, **overrides) -> ml_collections.ConfigDict:
    """The `config.data` fields of configs/default.py, small."""
    cfg = ml_collections.ConfigDict(dict(
        name="synthetic_hi_en",
        tfds_dir=str(tmp_path / "tfds"),
        raw_dir="",
        source_lang="de",
        target_lang="en",
        train_size=60,
        valid_size=10,
        test_size=12,
        seed=0,
        vocab="word",
        vocab_size=60,
        spm_model_type="bpe",
        joint_vocab=False,
        buckets=(4, 8, 16),
        batch_size=4,
        max_len=16,
    ))
    cfg.update(overrides)
    return cfg


_HI = ["mai", "ghar", "ja", "raha", "hoon", "ladka", "kitab", "padh", "tha", "vah", "khana", "kha"]
_EN = ["i", "home", "go", "am", "going", "boy", "book", "read", "was", "he", "food", "eat"]


@dataclasses.dataclass(frozen=True)
class _Example:
    src: str
    tgt: str
    sure: tuple
    possible: tuple


def _fake_generate_splits(sizes, seed):
    """Stand-in for synthetic.generate_splits: word i of src translates to word i of tgt."""
    rng = random.Random(seed)
    out = {}
    for split in ("train", "valid", "test"):
        examples = []
        for _ in range(sizes[split]):
            n = rng.choice([1, 2, 3, 5, 7, 11, 14])
            words = [rng.randrange(len(_HI)) for _ in range(n)]
            links = tuple((i, i) for i in range(n))
            examples.append(_Example(" ".join(_HI[w] for w in words),
                                     " ".join(_EN[w] for w in words), links[::2], links))
        out[split] = examples
    return out


def _format_links(links):
    return " ".join(f"{i}-{j}" for i, j in links)


def _parse_links(text):
    return tuple(tuple(int(x) for x in link.split("-")) for link in text.split())


@pytest.fixture
def fake_synthetic(monkeypatch):
    """Installs a stand-in attn_jax.synthetic (the contract's API) for the test."""
    module = types.ModuleType("attn_jax.synthetic")
    module.Example = _Example
    module.generate_splits = _fake_generate_splits
    module.format_links = _format_links
    module.parse_links = _parse_links
    monkeypatch.setitem(sys.modules, "attn_jax.synthetic", module)
    monkeypatch.setattr(attn_jax, "synthetic", module, raising=False)
    return module


@pytest.fixture
def synthetic_data(tmp_path, fake_synthetic):
    return data_lib.load(make_cfg(tmp_path), str(tmp_path / "work"))


_DE = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch.",
       "Kinder laufen.", "Ein Mädchen singt ein Lied auf der Bühne."]
_EN_LINES = ["A man rides a bike.", "Two dogs play in the snow.", "A woman reads a book.",
             "Children run.", "A girl sings a song on the stage."]


def _write_gz(path, lines=None, raw: bytes | None = None):
    if raw is None:
        raw = "".join(line + "\n" for line in lines).encode("utf-8")
    with gzip.open(path, "wb") as f:
        f.write(raw)


def write_multi30k(raw_dir, n_train=12):
    """A tiny corpus in Multi30k's layout; line i of X.de.gz translates line i of X.en.gz."""
    os.makedirs(raw_dir, exist_ok=True)
    sizes = {"train": n_train, "val": 4, "test_2016_flickr": 3}
    corpus = {}
    for prefix, n in sizes.items():
        de = [f"{_DE[i % 5]} {prefix} {i}" for i in range(n)]
        en = [f"{_EN_LINES[i % 5]} {prefix} {i}" for i in range(n)]
        _write_gz(os.path.join(raw_dir, f"{prefix}.de.gz"), de)
        _write_gz(os.path.join(raw_dir, f"{prefix}.en.gz"), en)
        corpus[prefix] = (de, en)
    return corpus


# ---------------------------------------------------------------------------------------------
# Vocabularies
# ---------------------------------------------------------------------------------------------


def test_word_vocab_round_trip(tmp_path):
    vocab = data_lib.WordVocab.build(["a b c", "b c", "c"])
    assert vocab.pieces(range(4)) == ["<pad>", "<s>", "</s>", "<unk>"]
    assert vocab.pieces(vocab.encode("c b a")) == ["c", "b", "a"]  # most frequent first
    ids = vocab.encode("a  c b")
    assert len(ids) == 3 and min(ids) > 3
    assert vocab.decode(ids) == "a c b"
    assert vocab.encode("a zzz") == [vocab.encode("a")[0], data_lib.UNK]
    assert vocab.decode([BOS] + ids + [EOS, 5, PAD]) == "a c b"  # stops at EOS, drops BOS
    vocab.save(str(tmp_path))
    loaded = data_lib.WordVocab.load(str(tmp_path))
    assert loaded.size == vocab.size == 7
    assert loaded.encode("a c b") == ids


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_vocab_round_trip(tmp_path, model_type):
    texts = [f"{a} {b}." for a, b in itertools.product(_DE, _EN_LINES)] * 2
    vocab = data_lib.SentencePieceVocab.train(texts, vocab_size=80, model_type=model_type)
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
    assert data_lib.SentencePieceVocab.load(str(tmp_path)).encode(text) == ids


# ---------------------------------------------------------------------------------------------
# Multi30k builder
# ---------------------------------------------------------------------------------------------


def test_multi30k_pairs_lines_in_both_directions(tmp_path):
    corpus = write_multi30k(tmp_path / "raw")
    cfg = make_cfg(tmp_path, name="multi30k", raw_dir=str(tmp_path / "raw"), buckets=(8, 16))
    data = data_lib.load(cfg, str(tmp_path / "w1"))
    for split, prefix in data_lib.MULTI30K_PREFIXES.items():
        de, en = corpus[prefix]
        assert data[split].src_text == de and data[split].tgt_text == en  # line i with line i
        assert data[split].sure is None
    assert data["train"].filtered == {"too_long": 0, "empty": 0}
    i = 3
    assert data.tgt_vocab.decode(data["train"].tgt_ids[i]) == corpus["train"][1][i]

    # The other direction reuses the prepared data; the raw files are no longer needed.
    os.rename(tmp_path / "raw", tmp_path / "raw_moved")
    data = data_lib.load(make_cfg(tmp_path, name="multi30k", raw_dir="", source_lang="en",
                                  target_lang="de", buckets=(8, 16)), str(tmp_path / "w2"))
    assert data["valid"].src_text == corpus["val"][1]
    assert data["valid"].tgt_text == corpus["val"][0]


def _expect_multi30k_error(tmp_path, match):
    cfg = make_cfg(tmp_path, name="multi30k", raw_dir=str(tmp_path / "raw"), buckets=(8, 16))
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        data_lib.load(cfg, str(tmp_path / "work"))


def test_multi30k_missing_file(tmp_path):
    write_multi30k(tmp_path / "raw")
    os.remove(tmp_path / "raw" / "val.en.gz")
    _expect_multi30k_error(tmp_path, r"val\.en\.gz.*github\.com/multi30k/dataset.*raw_dir")


def test_multi30k_unset_raw_dir(tmp_path):
    cfg = make_cfg(tmp_path, name="multi30k", raw_dir="")
    with pytest.raises(FileNotFoundError, match="data.raw_dir is empty"):
        data_lib.load(cfg, str(tmp_path / "work"))


def test_multi30k_mismatched_line_counts(tmp_path):
    write_multi30k(tmp_path / "raw")
    _write_gz(tmp_path / "raw" / "train.en.gz", ["only one line"])
    _expect_multi30k_error(tmp_path, r"train\.de\.gz has 12 lines but .*train\.en\.gz has 1")


def test_multi30k_empty_line(tmp_path):
    write_multi30k(tmp_path / "raw")
    _write_gz(tmp_path / "raw" / "test_2016_flickr.de.gz", ["eins", "  ", "drei"])
    _expect_multi30k_error(tmp_path, r"test_2016_flickr\.de\.gz:2: empty line")


def test_multi30k_invalid_utf8(tmp_path):
    write_multi30k(tmp_path / "raw")
    _write_gz(tmp_path / "raw" / "val.de.gz", raw=b"gut\nschl\xfcssel\nx\ny\n")
    _expect_multi30k_error(tmp_path, r"val\.de\.gz:2: invalid UTF-8")


@pytest.mark.skipif(not os.path.isdir(REAL_MULTI30K),
                    reason=f"the shared Multi30k copy ({REAL_MULTI30K}) is not on this machine")
def test_real_multi30k(tmp_path):
    cfg = make_cfg(tmp_path, name="multi30k", raw_dir=REAL_MULTI30K, buckets=(16, 32, 48, 64),
                   max_len=64, batch_size=64)
    data = data_lib.load(cfg, str(tmp_path / "work"))
    assert [len(data[s]) for s in ("valid", "test")] == [1014, 1000]
    assert len(data["train"]) + sum(data["train"].filtered.values()) == 29000
    assert data["test"].src_text[0].startswith("Ein Mann mit einem orangefarbenen Hut")
    assert data["test"].tgt_text[0].startswith("A man in an orange hat")


# ---------------------------------------------------------------------------------------------
# Catalog datasets ('tfds:NAME'): a local builder stands in for a catalog translation dataset
# ---------------------------------------------------------------------------------------------


class AttnJaxTestTranslate(tfds.core.GeneratorBasedBuilder):
    """Registered as 'attn_jax_test_translate'; shaped like ted_hrlr_translate (pt/en dict)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.Translation(languages=("pt", "en")),
            disable_shuffling=True)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(7), "validation": self._generate_examples(3),
                "test": self._generate_examples(2)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"pt": f"olá mundo {i}", "en": f"hello world {i} !"}


def test_catalog_dataset(tmp_path):
    cfg = make_cfg(tmp_path, name="tfds:attn_jax_test_translate", source_lang="en",
                   target_lang="pt")
    data = data_lib.load(cfg, str(tmp_path / "work"))
    assert [len(data[s]) for s in ("train", "valid", "test")] == [7, 3, 2]
    assert data["valid"].src_text == [f"hello world {i} !" for i in range(3)]
    assert data["valid"].tgt_text == [f"olá mundo {i}" for i in range(3)]
    assert os.path.isdir(tmp_path / "tfds" / "attn_jax_test_translate")

    bad = make_cfg(tmp_path, name="tfds:attn_jax_test_translate", source_lang="de")
    with pytest.raises(ValueError, match=r"data.source_lang='de'.*\['pt', 'en'\]"):
        data_lib.load(bad, str(tmp_path / "work2"))


# ---------------------------------------------------------------------------------------------
# Synthetic data, vocab persistence, config errors
# ---------------------------------------------------------------------------------------------


def test_synthetic_load(tmp_path, synthetic_data, fake_synthetic):
    data = synthetic_data
    expected = _fake_generate_splits({"train": 60, "valid": 10, "test": 12}, 0)
    for split in ("train", "valid", "test"):
        assert data[split].src_text == [ex.src for ex in expected[split]]
        assert data[split].possible == [ex.possible for ex in expected[split]]
        assert data[split].sure == [ex.sure for ex in expected[split]]
    # Word vocab: token i of the ids is word i of the text, so gold links apply directly.
    ex = data["test"]
    assert data.src_vocab.pieces(ex.src_ids[0]) == ex.src_text[0].split()
    assert (tmp_path / "tfds" / "synthetic_hi_en").is_dir()
    # Different sizes never collide with the prepared copy.
    other = data_lib.load(make_cfg(tmp_path, train_size=30), str(tmp_path / "w2"))
    assert len(other["train"]) == 30 and len(data["train"]) == 60


def test_real_synthetic_generator(tmp_path):
    """The real attn_jax.synthetic through the builder: texts and gold links survive the trip."""
    synthetic = pytest.importorskip("attn_jax.synthetic")
    sizes = {"train": 40, "valid": 10, "test": 20}
    cfg = make_cfg(tmp_path, train_size=40, valid_size=10, test_size=20, buckets=(16, 32, 64, 128),
                   max_len=128)
    data = data_lib.load(cfg, str(tmp_path / "work"))
    expected = synthetic.generate_splits(sizes, 0)
    for split in ("train", "valid", "test"):
        assert data[split].src_text == [ex.src for ex in expected[split]]
        assert data[split].tgt_text == [ex.tgt for ex in expected[split]]
        assert data[split].sure == [tuple(ex.sure) for ex in expected[split]]
        assert data[split].possible == [tuple(ex.possible) for ex in expected[split]]
        for src_ids, text in zip(data[split].src_ids, data[split].src_text):
            assert len(src_ids) == len(text.split())  # word positions = token positions


def test_vocab_reloaded_on_resume(tmp_path, fake_synthetic, monkeypatch):
    spm = dict(vocab="sentencepiece", vocab_size=40, joint_vocab=True, buckets=(16, 64), max_len=64)
    cfg = make_cfg(tmp_path, **spm)
    first = data_lib.load(cfg, str(tmp_path / "work"))
    assert (tmp_path / "work" / "vocab" / "joint" / "spm.model").exists()
    assert first.src_vocab is first.tgt_vocab and first.src_vocab.size > 4

    def no_training(*args, **kwargs):
        raise AssertionError("a resumed run retrained its vocabulary")

    monkeypatch.setattr(data_lib.SentencePieceVocab, "train", no_training)
    again = data_lib.load(cfg, str(tmp_path / "work"))
    text = first["train"].src_text[0]
    assert again.src_vocab.encode(text) == first.src_vocab.encode(text)
    for key in ("src", "tgt_out"):
        np.testing.assert_array_equal(first["test"].bucket_arrays[1][key],
                                      again["test"].bucket_arrays[1][key])
    with pytest.raises(ValueError, match="new --workdir"):
        data_lib.load(make_cfg(tmp_path, vocab="word"), str(tmp_path / "work"))


def test_prepare_race_uses_the_other_process_copy(tmp_path, synthetic_data, monkeypatch):
    """Parallel trials may prepare the same data at once; the loser uses the winner's copy."""
    config = data_lib.SyntheticConfig.make(60, 10, 12, 0)
    made = []

    def make_builder():
        builder = data_lib.SyntheticHiEn(config=config, data_dir=str(tmp_path / "tfds"))
        if not made:  # first look: not prepared yet, and our own preparation loses the race
            monkeypatch.setattr(builder, "is_prepared", lambda: False)
            monkeypatch.setattr(builder, "download_and_prepare", _raise_os_error)
        made.append(builder)
        return builder

    builder = data_lib._prepared(make_builder)
    assert len(made) == 2 and builder is made[1]
    assert len(builder.as_data_source(split="test")) == 12


def _raise_os_error(**kwargs):
    raise OSError("destination exists")


@pytest.mark.parametrize("overrides, match", [
    (dict(name="wmt"), r"unknown data.name='wmt'; valid: .*synthetic_hi_en.*multi30k.*tfds:"),
    (dict(name="tfds:"), "unknown data.name"),
    (dict(vocab="bytes"), r"unknown data.vocab='bytes'; valid: \('word', 'sentencepiece'\)"),
    (dict(vocab="sentencepiece", spm_model_type="char"), "spm_model_type"),
    (dict(buckets=(16, 8)), "strictly increasing"),
    (dict(max_len=32), "raise data.buckets"),
])
def test_config_errors(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        data_lib.load(make_cfg(tmp_path, **overrides), str(tmp_path / "work"))


def test_train_filtering_counted_and_eval_never_dropped(tmp_path, fake_synthetic):
    data = data_lib.load(make_cfg(tmp_path, max_len=8), str(tmp_path / "work"))
    expected = _fake_generate_splits({"train": 60, "valid": 10, "test": 12}, 0)["train"]
    too_long = sum(len(ex.src.split()) + 1 > 8 for ex in expected)
    assert too_long > 0
    assert data["train"].filtered == {"too_long": too_long, "empty": 0}
    assert len(data["train"]) == 60 - too_long
    assert [expected[i].src for i in data["train"].raw_index] == data["train"].src_text
    assert len(data["test"]) == 12  # longer than max_len is fine in test: it fits a bucket
    with pytest.raises(ValueError, match=r"valid example \d+ .*Raise data.buckets"):
        data_lib.load(make_cfg(tmp_path, buckets=(4, 8), max_len=8), str(tmp_path / "w2"))


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


def _check_layout(data, split, batch):
    """src = ids then PAD; tgt_in = BOS ids PAD; tgt_out = ids EOS PAD; fillers all PAD."""
    for row, i in enumerate(batch["index"]):
        if i < 0:
            for key in ("src", "tgt_in", "tgt_out"):
                assert not batch[key][row].any()
            continue
        src, tgt = data[split].src_ids[i], data[split].tgt_ids[i]
        length = batch["src"].shape[-1]
        np.testing.assert_array_equal(
            batch["src"][row], np.concatenate([src, np.zeros(length - len(src), np.int32)]))
        pad = np.zeros(length - len(tgt) - 1, np.int32)
        np.testing.assert_array_equal(batch["tgt_in"][row], np.concatenate([[BOS], tgt, pad]))
        np.testing.assert_array_equal(batch["tgt_out"][row], np.concatenate([tgt, [EOS], pad]))
        assert data.tgt_vocab.decode(batch["tgt_out"][row]) == data[split].tgt_text[i]


@pytest.mark.parametrize("split", ["valid", "test", "train"])
def test_eval_batches_cover_every_example_once(synthetic_data, split):
    data = synthetic_data
    seen = []
    for batch in data_lib.eval_batches(data, split, batch_size=3):
        length = batch["src"].shape[1]
        assert length in data.buckets
        assert {k: v.shape for k, v in batch.items()} == {
            "src": (3, length), "tgt_in": (3, length), "tgt_out": (3, length), "index": (3,)}
        assert all(v.dtype == np.int32 for v in batch.values())
        _check_layout(data, split, batch)
        seen += [int(i) for i in batch["index"] if i >= 0]
    assert sorted(seen) == list(range(len(data[split])))


def _take(iterator, n):
    return list(itertools.islice(iterator, n))


@pytest.mark.parametrize("batch_size", [4, 32])  # 32: every bucket is smaller than a batch
def test_train_batches_shapes_and_epoch(synthetic_data, batch_size):
    data = synthetic_data
    per_epoch = data_lib.steps_per_epoch(data, batch_size)
    counts = np.bincount(data["train"].bucket, minlength=len(data.buckets))
    assert per_epoch == sum(-(-n // batch_size) for n in counts)
    batches = _take(data_lib.train_batches(data, batch_size, seeds=(3, 4)), 2 * per_epoch)
    for epoch in range(2):
        seen = []
        for batch in batches[epoch * per_epoch:(epoch + 1) * per_epoch]:
            length = batch["src"].shape[-1]
            assert length in data.buckets
            assert batch["src"].shape == batch["tgt_in"].shape == (2, batch_size, length)
            assert batch["index"].shape == (2, batch_size)
            for replica in range(2):
                _check_layout(data, "train", {k: v[replica] for k, v in batch.items()})
            seen.append(batch["index"][0])
        assert set(np.concatenate(seen).tolist()) == set(range(len(data["train"])))
    lengths_used = {b["src"].shape[-1] for b in batches}
    assert lengths_used == {data.buckets[b] for b in np.flatnonzero(counts)}


def test_train_batches_deterministic_and_resumable(synthetic_data):
    data = synthetic_data
    per_epoch = data_lib.steps_per_epoch(data, 4)
    run = _take(data_lib.train_batches(data, 4, seeds=(0, 1)), per_epoch + 5)
    again = _take(data_lib.train_batches(data, 4, seeds=(0, 1)), per_epoch + 5)
    k = per_epoch - 2  # resume across an epoch boundary
    resumed = _take(data_lib.train_batches(data, 4, seeds=(0, 1), start_step=k), 7)
    for a, b in zip(run, again):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    for a, b in zip(run[k:], resumed):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # Epochs differ in order.
    assert any((a["index"] != b["index"]).any() for a, b in zip(run, run[per_epoch:]))


def test_replica_batches_equal_single_seed_runs(synthetic_data):
    data, seeds = synthetic_data, (11, 22, 33)
    joint = _take(data_lib.train_batches(data, 4, seeds=seeds, start_step=3), 25)
    for i, seed in enumerate(seeds):
        alone = _take(data_lib.train_batches(data, 4, seeds=(seed,), start_step=3), 25)
        for a, b in zip(joint, alone):
            for key in a:
                np.testing.assert_array_equal(a[key][i], b[key][0])
    # ... and the replicas draw different examples.
    assert any((b["index"][0] != b["index"][1]).any() for b in joint)


def test_token_based_batch_sizes_keep_tokens_per_batch_about_constant():
    cfg = ml_collections.ConfigDict({"batch_size": 64, "batch_tokens": 0})
    assert data_lib.batch_sizes(cfg, (16, 32, 80)) == (64, 64, 64)
    cfg.batch_tokens = 2048
    sizes = data_lib.batch_sizes(cfg, (16, 24, 32, 80, 300))
    assert sizes == (128, 80, 64, 24, 6)
    assert all(s % 8 == 0 for s in sizes if s >= 8)
    assert all(0.7 * 2048 <= s * length <= 2048 for s, length in zip(sizes, (16, 24, 32, 80)))


def test_token_batches_shapes_epoch_and_exact_resume(synthetic_data):
    data = synthetic_data
    sizes = tuple(range(2, 2 + len(data.buckets)))  # a different batch size in every bucket
    per_epoch = data_lib.steps_per_epoch(data, sizes)
    split = data.splits["train"]
    assert per_epoch == sum(-(-len(a["index"]) // s) for a, s in zip(split.bucket_arrays, sizes))
    run = _take(data_lib.train_batches(data, sizes, seeds=(0, 1)), per_epoch + 3)
    seen = set()
    for batch in run[:per_epoch]:
        b = data.buckets.index(batch["src"].shape[-1])
        assert batch["src"].shape == (2, sizes[b], data.buckets[b])
        seen.update(batch["index"][0].tolist())
    assert seen == set(range(len(split)))  # every example once per epoch (wrap-around fills)
    resumed = _take(data_lib.train_batches(data, sizes, seeds=(0, 1), start_step=per_epoch), 3)
    for a, b in zip(run[per_epoch:], resumed):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
