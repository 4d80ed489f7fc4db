"""Small generated corpora and config for the data tests (test_data, test_sources, test_vocab).

Everything is generated under tmp_path: no network, no ../shared.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import random
import sys
import types

import ml_collections

import attn_jax.data


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
class FakeExample:
    src: str
    tgt: str
    sure: tuple
    possible: tuple


def fake_generate_splits(sizes, seed):
    """Stand-in for synthetic.generate_splits: word i of src translates to word i of tgt."""
    rng = random.Random(seed)
    out = {}
    for split in ("train", "valid", "test"):
        examples = []
        for _ in range(sizes[split]):
            n = rng.choice([1, 2, 3, 5, 7, 11, 14])
            words = [rng.randrange(len(_HI)) for _ in range(n)]
            links = tuple((i, i) for i in range(n))
            examples.append(FakeExample(" ".join(_HI[w] for w in words),
                                        " ".join(_EN[w] for w in words), links[::2], links))
        out[split] = examples
    return out


def _format_links(links):
    return " ".join(f"{i}-{j}" for i, j in links)


def _parse_links(text):
    return tuple(tuple(int(x) for x in link.split("-")) for link in text.split())


def install_fake_synthetic(monkeypatch) -> types.ModuleType:
    """Installs a stand-in attn_jax.data.synthetic (the API the data sources use) for one test."""
    module = types.ModuleType("attn_jax.data.synthetic")
    module.Example = FakeExample
    module.generate_splits = fake_generate_splits
    module.format_links = _format_links
    module.parse_links = _parse_links
    monkeypatch.setitem(sys.modules, "attn_jax.data.synthetic", module)
    monkeypatch.setattr(attn_jax.data, "synthetic", module, raising=False)
    return module


DE_LINES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch.",
            "Kinder laufen.", "Ein Mädchen singt ein Lied auf der Bühne."]
EN_LINES = ["A man rides a bike.", "Two dogs play in the snow.", "A woman reads a book.",
            "Children run.", "A girl sings a song on the stage."]


def write_gz(path, lines=None, raw: bytes | None = None):
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
        de = [f"{DE_LINES[i % 5]} {prefix} {i}" for i in range(n)]
        en = [f"{EN_LINES[i % 5]} {prefix} {i}" for i in range(n)]
        write_gz(os.path.join(raw_dir, f"{prefix}.de.gz"), de)
        write_gz(os.path.join(raw_dir, f"{prefix}.en.gz"), en)
        corpus[prefix] = (de, en)
    return corpus
