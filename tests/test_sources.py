"""Tests for attn_jax.data.sources: the TFDS builders (array_record), raw Multi30k files, the catalog
path and reading prepared data back.

Everything runs on tiny generated corpora under tmp_path (no network, no ../shared), except
`test_real_multi30k`, which is skipped when the shared Multi30k copy is absent.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds
from absl import logging as absl_logging

from attn_jax.data import sources
from tests.data_helpers import install_fake_synthetic, make_cfg, write_gz, write_multi30k

# The shared copy beside the repository (../shared/data/multi30k), when there is one.
REAL_MULTI30K = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "shared", "data", "multi30k")


def _texts(pairs):
    return [p.src for p in pairs], [p.tgt for p in pairs]


# ---------------------------------------------------------------------------------------------
# Multi30k builder
# ---------------------------------------------------------------------------------------------


def test_multi30k_pairs_lines_in_both_directions(tmp_path):
    corpus = write_multi30k(tmp_path / "raw")
    raw = sources.read_raw_splits(make_cfg(tmp_path, name="multi30k", raw_dir=str(tmp_path / "raw")))
    for split, prefix in sources.MULTI30K_PREFIXES.items():
        assert _texts(raw[split]) == corpus[prefix]  # line i with line i, in file order
        assert all(p.sure is None and p.possible is None for p in raw[split])

    # The other direction reuses the prepared data; the raw files are no longer needed.
    os.rename(tmp_path / "raw", tmp_path / "raw_moved")
    raw = sources.read_raw_splits(make_cfg(tmp_path, name="multi30k", raw_dir="",
                                           source_lang="en", target_lang="de"))
    de, en = corpus["val"]
    assert _texts(raw["valid"]) == (en, de)


def _expect_multi30k_error(tmp_path, match):
    cfg = make_cfg(tmp_path, name="multi30k", raw_dir=str(tmp_path / "raw"))
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        sources.read_raw_splits(cfg)


def test_multi30k_missing_file(tmp_path):
    write_multi30k(tmp_path / "raw")
    os.remove(tmp_path / "raw" / "val.en.gz")
    _expect_multi30k_error(tmp_path, r"val\.en\.gz.*github\.com/multi30k/dataset.*raw_dir")


def test_multi30k_unset_raw_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.raw_dir is empty"):
        sources.read_raw_splits(make_cfg(tmp_path, name="multi30k", raw_dir=""))


def test_multi30k_mismatched_line_counts(tmp_path):
    write_multi30k(tmp_path / "raw")
    write_gz(tmp_path / "raw" / "train.en.gz", ["only one line"])
    _expect_multi30k_error(tmp_path, r"train\.de\.gz has 12 lines but .*train\.en\.gz has 1")


def test_multi30k_empty_line(tmp_path):
    write_multi30k(tmp_path / "raw")
    write_gz(tmp_path / "raw" / "test_2016_flickr.de.gz", ["eins", "  ", "drei"])
    _expect_multi30k_error(tmp_path, r"test_2016_flickr\.de\.gz:2: empty line")


def test_multi30k_invalid_utf8(tmp_path):
    write_multi30k(tmp_path / "raw")
    write_gz(tmp_path / "raw" / "val.de.gz", raw=b"gut\nschl\xfcssel\nx\ny\n")
    _expect_multi30k_error(tmp_path, r"val\.de\.gz:2: invalid UTF-8")


@pytest.mark.skipif(not os.path.isdir(REAL_MULTI30K),
                    reason=f"the shared Multi30k copy ({REAL_MULTI30K}) is not on this machine")
def test_real_multi30k(tmp_path):
    raw = sources.read_raw_splits(make_cfg(tmp_path, name="multi30k", raw_dir=REAL_MULTI30K))
    assert [len(raw[s]) for s in ("train", "valid", "test")] == [29000, 1014, 1000]
    assert raw["test"][0].src.startswith("Ein Mann mit einem orangefarbenen Hut")
    assert raw["test"][0].tgt.startswith("A man in an orange hat")


def test_prepared_data_read_back_in_order_across_read_chunks(tmp_path, monkeypatch):
    """Records come back in file order however many batched reads it takes."""
    corpus = write_multi30k(tmp_path / "raw", n_train=23)
    monkeypatch.setattr(sources, "_READ_CHUNK", 5)  # 23 train records: reads of 5, 5, 5, 5, 3
    raw = sources.read_raw_splits(make_cfg(tmp_path, name="multi30k", raw_dir=str(tmp_path / "raw")))
    assert _texts(raw["train"]) == corpus["train"]


def test_reading_needs_no_grain(tmp_path):
    """grain is not a dependency: the data modules import and read without it."""
    write_multi30k(tmp_path / "raw")
    code = ("import sys; sys.modules['grain'] = None\n"  # any `import grain` now fails
            "import ml_collections\n"
            "from attn_jax.data import batches, sources\n"
            "cfg = ml_collections.ConfigDict(dict(name='multi30k', tfds_dir=sys.argv[1],\n"
            "    raw_dir=sys.argv[2], source_lang='de', target_lang='en'))\n"
            "print(len(sources.read_raw_splits(cfg)['train']))\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "tfds"), str(tmp_path / "raw")],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-1] == "12"  # after TFDS's own "prepared" lines


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
    raw = sources.read_raw_splits(cfg)
    assert [len(raw[s]) for s in ("train", "valid", "test")] == [7, 3, 2]
    assert _texts(raw["valid"]) == ([f"hello world {i} !" for i in range(3)],
                                    [f"olá mundo {i}" for i in range(3)])
    assert os.path.isdir(tmp_path / "tfds" / "attn_jax_test_translate")

    bad = make_cfg(tmp_path, name="tfds:attn_jax_test_translate", source_lang="de")
    with pytest.raises(ValueError, match=r"data.source_lang='de'.*\['pt', 'en'\]"):
        sources.read_raw_splits(bad)


# ---------------------------------------------------------------------------------------------
# Synthetic builder
# ---------------------------------------------------------------------------------------------


def test_prepare_race_uses_the_other_process_copy(tmp_path, monkeypatch):
    """Parallel trials may prepare the same data at once; the loser uses the winner's copy."""
    install_fake_synthetic(monkeypatch)
    sources.read_raw_splits(make_cfg(tmp_path))  # "the other process" prepares it
    config = sources.SyntheticConfig.make(60, 10, 12, 0)
    made = []

    def make_builder():
        builder = sources.SyntheticHiEn(config=config, data_dir=str(tmp_path / "tfds"))
        if not made:  # first look: not prepared yet, and our own preparation loses the race
            monkeypatch.setattr(builder, "is_prepared", lambda: False)
            monkeypatch.setattr(builder, "download_and_prepare", _raise_os_error)
        made.append(builder)
        return builder

    builder = sources._prepared(make_builder)
    assert len(made) == 2 and builder is made[1]
    assert len(builder.as_data_source(split="test")) == 12


def _raise_os_error(**kwargs):
    raise OSError("destination exists")


def test_builders_do_not_warn_about_their_own_configs(tmp_path, monkeypatch, caplog):
    """Our per-run builder configs are expected: TFDS's "Using custom data configuration" warning
    is not shown for them, and only while one of our builders is being made."""
    install_fake_synthetic(monkeypatch)
    absl_logger = absl_logging.get_absl_logger()
    filters = list(absl_logger.filters)
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="absl"):
        sources.read_raw_splits(make_cfg(tmp_path))
        sources.Multi30k(config=sources.Multi30kConfig.make("de", "en"), data_dir=str(tmp_path))
        assert "prepared" in caplog.text  # our own messages still get through
        assert "Using custom data configuration" not in caplog.text
        assert absl_logger.filters == filters
        absl_logging.warning("Using custom data configuration: elsewhere")
    assert "Using custom data configuration: elsewhere" in caplog.text


def test_local_preparation_announces_no_download(tmp_path, capfd, caplog):
    """Preparing Multi30k from local files (or the embedded data) neither prints TFDS's
    "Downloading and preparing dataset Unknown size" banner nor warns about the half-written
    version folder; a later read of the prepared copy is silent too."""
    write_multi30k(tmp_path / "raw")
    cfg = make_cfg(tmp_path, name="multi30k", raw_dir=str(tmp_path / "raw"))
    with caplog.at_level(logging.INFO, logger="absl"):
        for _ in range(2):
            assert len(sources.read_raw_splits(cfg)["train"]) == 12
        absl_logging.warning("Variant folder elsewhere has no dataset_info.json")
    printed = capfd.readouterr()
    assert "Downloading" not in printed.out + printed.err
    assert "downloaded and prepared" not in printed.out + printed.err
    assert [r.getMessage() for r in caplog.records if "Variant folder" in r.getMessage()] == [
        "Variant folder elsewhere has no dataset_info.json"]  # Only outside our builders.
    assert "prepared" in caplog.text  # Our own message about it still gets through.
