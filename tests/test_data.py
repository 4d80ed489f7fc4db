"""Tests for attn_jax.data.batches: loading every split tokenized into memory, buckets and batches.

Everything runs on tiny generated corpora under tmp_path (no network, no ../shared); the TFDS
builders and raw files are tested in test_sources.py, the vocabularies in test_vocab.py.
"""

from __future__ import annotations

import itertools

import ml_collections
import numpy as np
import pytest

from attn_jax.data import batches
from attn_jax.data import vocab as vocab_lib
from attn_jax.data.tokens import BOS, EOS
from tests.data_helpers import fake_generate_splits, install_fake_synthetic, make_cfg


@pytest.fixture
def fake_synthetic(monkeypatch):
    """A stand-in attn_jax.data.synthetic for the test (see data_helpers.fake_generate_splits)."""
    return install_fake_synthetic(monkeypatch)


@pytest.fixture
def synthetic_data(tmp_path, fake_synthetic):
    return batches.load(make_cfg(tmp_path), str(tmp_path / "work"))


# ---------------------------------------------------------------------------------------------
# Synthetic data, vocab persistence, config errors
# ---------------------------------------------------------------------------------------------


def test_synthetic_load(tmp_path, synthetic_data, fake_synthetic):
    data = synthetic_data
    expected = fake_generate_splits({"train": 60, "valid": 10, "test": 12}, 0)
    for split in ("train", "valid", "test"):
        assert data[split].src_text == [ex.src for ex in expected[split]]
        assert data[split].possible == [ex.possible for ex in expected[split]]
        assert data[split].sure == [ex.sure for ex in expected[split]]
    # Word vocab: token i of the ids is word i of the text, so gold links apply directly.
    ex = data["test"]
    assert data.src_vocab.pieces(ex.src_ids[0]) == ex.src_text[0].split()
    assert (tmp_path / "tfds" / "synthetic_hi_en").is_dir()
    # Different sizes never collide with the prepared copy.
    other = batches.load(make_cfg(tmp_path, train_size=30), str(tmp_path / "w2"))
    assert len(other["train"]) == 30 and len(data["train"]) == 60


def test_real_synthetic_generator(tmp_path):
    """The real attn_jax.data.synthetic through the builder: texts and gold links survive the trip."""
    synthetic = pytest.importorskip("attn_jax.data.synthetic")
    sizes = {"train": 40, "valid": 10, "test": 20}
    cfg = make_cfg(tmp_path, train_size=40, valid_size=10, test_size=20, buckets=(16, 32, 64, 128),
                   max_len=128)
    data = batches.load(cfg, str(tmp_path / "work"))
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
    first = batches.load(cfg, str(tmp_path / "work"))
    assert (tmp_path / "work" / "vocab" / "joint" / "spm.model").exists()
    assert first.src_vocab is first.tgt_vocab and first.src_vocab.size > 4

    def no_training(*args, **kwargs):
        raise AssertionError("a resumed run retrained its vocabulary")

    monkeypatch.setattr(vocab_lib.SentencePieceVocab, "train", no_training)
    again = batches.load(cfg, str(tmp_path / "work"))
    text = first["train"].src_text[0]
    assert again.src_vocab.encode(text) == first.src_vocab.encode(text)
    for key in ("src", "tgt_out"):
        np.testing.assert_array_equal(first["test"].bucket_arrays[1][key],
                                      again["test"].bucket_arrays[1][key])
    with pytest.raises(ValueError, match="new --workdir"):
        batches.load(make_cfg(tmp_path, vocab="word"), str(tmp_path / "work"))


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
        batches.load(make_cfg(tmp_path, **overrides), str(tmp_path / "work"))


def test_train_filtering_counted_and_eval_never_dropped(tmp_path, fake_synthetic):
    data = batches.load(make_cfg(tmp_path, max_len=8), str(tmp_path / "work"))
    expected = fake_generate_splits({"train": 60, "valid": 10, "test": 12}, 0)["train"]
    too_long = sum(len(ex.src.split()) + 1 > 8 for ex in expected)
    assert too_long > 0
    assert data["train"].filtered == {"too_long": too_long, "empty": 0}
    assert len(data["train"]) == 60 - too_long
    assert [expected[i].src for i in data["train"].raw_index] == data["train"].src_text
    assert len(data["test"]) == 12  # longer than max_len is fine in test: it fits a bucket
    with pytest.raises(ValueError, match=r"valid example \d+ .*Raise data.buckets"):
        batches.load(make_cfg(tmp_path, buckets=(4, 8), max_len=8), str(tmp_path / "w2"))


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
    for batch in batches.eval_batches(data, split, batch_size=3):
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
    per_epoch = batches.steps_per_epoch(data, batch_size)
    counts = np.bincount(data["train"].bucket, minlength=len(data.buckets))
    assert per_epoch == sum(-(-n // batch_size) for n in counts)
    taken = _take(batches.train_batches(data, batch_size, seeds=(3, 4)), 2 * per_epoch)
    for epoch in range(2):
        seen = []
        for batch in taken[epoch * per_epoch:(epoch + 1) * per_epoch]:
            length = batch["src"].shape[-1]
            assert length in data.buckets
            assert batch["src"].shape == batch["tgt_in"].shape == (2, batch_size, length)
            assert batch["index"].shape == (2, batch_size)
            for replica in range(2):
                _check_layout(data, "train", {k: v[replica] for k, v in batch.items()})
            seen.append(batch["index"][0])
        assert set(np.concatenate(seen).tolist()) == set(range(len(data["train"])))
    lengths_used = {b["src"].shape[-1] for b in taken}
    assert lengths_used == {data.buckets[b] for b in np.flatnonzero(counts)}


def test_train_batches_deterministic_and_resumable(synthetic_data):
    data = synthetic_data
    per_epoch = batches.steps_per_epoch(data, 4)
    run = _take(batches.train_batches(data, 4, seeds=(0, 1)), per_epoch + 5)
    again = _take(batches.train_batches(data, 4, seeds=(0, 1)), per_epoch + 5)
    k = per_epoch - 2  # resume across an epoch boundary
    resumed = _take(batches.train_batches(data, 4, seeds=(0, 1), start_step=k), 7)
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
    joint = _take(batches.train_batches(data, 4, seeds=seeds, start_step=3), 25)
    for i, seed in enumerate(seeds):
        alone = _take(batches.train_batches(data, 4, seeds=(seed,), start_step=3), 25)
        for a, b in zip(joint, alone):
            for key in a:
                np.testing.assert_array_equal(a[key][i], b[key][0])
    # ... and the replicas draw different examples.
    assert any((b["index"][0] != b["index"][1]).any() for b in joint)


def test_token_based_batch_sizes_keep_tokens_per_batch_about_constant():
    cfg = ml_collections.ConfigDict({"batch_size": 64, "batch_tokens": 0})
    assert batches.batch_sizes(cfg, (16, 32, 80)) == (64, 64, 64)
    cfg.batch_tokens = 2048
    sizes = batches.batch_sizes(cfg, (16, 24, 32, 80, 300))
    assert sizes == (128, 80, 64, 24, 6)
    assert all(s % 8 == 0 for s in sizes if s >= 8)
    assert all(0.7 * 2048 <= s * length <= 2048 for s, length in zip(sizes, (16, 24, 32, 80)))


def test_token_batches_shapes_epoch_and_exact_resume(synthetic_data):
    data = synthetic_data
    sizes = tuple(range(2, 2 + len(data.buckets)))  # a different batch size in every bucket
    per_epoch = batches.steps_per_epoch(data, sizes)
    split = data.splits["train"]
    assert per_epoch == sum(-(-len(a["index"]) // s) for a, s in zip(split.bucket_arrays, sizes))
    run = _take(batches.train_batches(data, sizes, seeds=(0, 1)), per_epoch + 3)
    seen = set()
    for batch in run[:per_epoch]:
        b = data.buckets.index(batch["src"].shape[-1])
        assert batch["src"].shape == (2, sizes[b], data.buckets[b])
        seen.update(batch["index"][0].tolist())
    assert seen == set(range(len(split)))  # every example once per epoch (wrap-around fills)
    resumed = _take(batches.train_batches(data, sizes, seeds=(0, 1), start_step=per_epoch), 3)
    for a, b in zip(run[per_epoch:], resumed):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
