"""End-to-end: captioning the embedded scenes (configs/scenes.py:tiny) through the text harness.

Tiny runs through `attn_jax.train.train_and_evaluate`: results.json carries CIDEr, the pointing
game and the attention mass in the gold boxes (overall and by object count) and the running
example's caption; the running example's attention strip is drawn; a killed run resumes exactly;
K=2 vmapped seeds equal two separate runs; `attn_jax.caption` captions image files as the run's
evaluation does and skips a bad file without stopping.
"""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from attn_jax import caption, train
from attn_jax.data import scenes
from attn_jax.eval import plots
from attn_jax.run import config as config_lib
from attn_jax.run import steps
from tests.run_helpers import replica_rows

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENES = os.path.join(REPO, "configs/scenes.py:tiny")
SMALL = {"train.num_steps": 6, "train.log_every": 3, "train.eval_every": 6,
         "eval.batch_size": 8, "eval.num_heatmaps": 0, "eval.use_best": False}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(tfds_dir, **overrides):
    config = config_lib.load_config_file(SCENES)
    config.data.tfds_dir = tfds_dir
    for key, value in {**SMALL, **overrides}.items():
        config_lib.override(config, key, value)
    return config


def rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tfds_dir):
    """One seed-0 run, its strips recorded (not drawn: test_grounding draws one)."""
    workdir = str(tmp_path_factory.mktemp("scenes"))
    strips = []

    def record(image, words, attention, path=None, **kwargs):
        strips.append({"image": image, "words": list(words), "attention": attention,
                       "path": path, **kwargs})
        return path

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "caption_strip", record)
        results = train.train_and_evaluate(tiny_config(tfds_dir), workdir)
    return workdir, results, strips


def test_results_carry_captioning_and_grounding_metrics(uninterrupted):
    _, results, strips = uninterrupted
    test = results["test"]
    for key in ("bleu", "cider", "exact_match", "pointing", "mass_in_box"):
        assert test[key] is not None and np.isfinite(test[key]), key
    assert 0 <= test["pointing"] <= 1 and 0 <= test["mass_in_box"] <= 1
    assert test["aer"] is None and test["bleu_by_length"] is None  # text-only metrics
    by = results["seeds"][0]["test"]["by_objects"]
    assert sum(v["sentences"] for v in by.values()) == test["num_sentences"]
    assert all(0 <= v["pointing"] <= 1 for v in by.values())
    scene = scenes.RUNNING_EXAMPLE
    assert results["running_example"]["src"] == scene.caption
    # The running example's strip: its own picture, one [T, 8, 8] map per emitted token.
    (strip,) = strips
    assert strip["path"].endswith("running_example.png")
    np.testing.assert_array_equal(strip["image"], scene.image)
    assert strip["attention"].shape == (len(strip["words"]), 8, 8)
    np.testing.assert_allclose(strip["attention"].sum((1, 2)), 1.0, atol=1e-5)


class Killed(Exception):
    pass


def test_kill_and_resume_equals_uninterrupted(uninterrupted, tfds_dir, tmp_path, monkeypatch):
    reference, want, _ = uninterrupted
    workdir = str(tmp_path / "resumed")
    config = tiny_config(tfds_dir, **{"train.checkpoint_every": 3})
    real, taken = steps.make_train_step, []

    def make(*args, **kwargs):
        step = real(*args, **kwargs)

        def wrapped(state, batch):
            if len(taken) >= 4:
                raise Killed()
            taken.append(1)
            return step(state, batch)

        return wrapped

    monkeypatch.setattr(steps, "make_train_step", make)
    monkeypatch.setattr(plots, "caption_strip", lambda *a, path=None, **k: path)
    with pytest.raises(Killed):
        train.train_and_evaluate(config, workdir)
    monkeypatch.setattr(steps, "make_train_step", real)
    results = train.train_and_evaluate(config, workdir)
    got, expected = rows(workdir), rows(reference)
    assert [(r["step"], r["split"]) for r in got] == [(r["step"], r["split"]) for r in expected]
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in expected], rtol=1e-5)
    for key in ("bleu", "cider", "pointing", "mass_in_box"):
        assert results["test"][key] == pytest.approx(want["test"][key], abs=1e-6), key


def test_vmapped_seeds_equal_separate_runs(uninterrupted, tfds_dir, tmp_path, monkeypatch):
    seed0, _, _ = uninterrupted
    seed1, both = str(tmp_path / "seed1"), str(tmp_path / "both")
    monkeypatch.setattr(plots, "caption_strip", lambda *a, path=None, **k: path)
    train.train_and_evaluate(tiny_config(tfds_dir, **{"train.seed": 1}), seed1)
    train.train_and_evaluate(tiny_config(tfds_dir, **{"train.num_seeds": 2}), both)
    assert [r["loss"] for r in rows(seed0)] != [r["loss"] for r in rows(seed1)]
    keys = ("loss", "bleu", "cider", "exact_match", "pointing", "mass_in_box",
            "attention_entropy")
    replica_rows(rows(both), {0: rows(seed0), 1: rows(seed1)}, keys)


def test_caption_command_reads_files_and_skips_bad_ones(uninterrupted, tmp_path):
    """`caption.run` on a test picture saved as PNG (as RGBA, converted) and a file that is not
    an image: the picture gets the caption the run's own decoder gives it, the bad file a note,
    and nothing stops."""
    workdir, _, _ = uninterrupted
    picture = scenes.RUNNING_EXAMPLE.image
    good, bad = tmp_path / "scene.png", tmp_path / "notes.png"
    Image.fromarray(picture).convert("RGBA").save(good)
    bad.write_text("not an image")
    captioner = caption.Captioner(workdir, batch_size=4)
    out, err = io.StringIO(), io.StringIO()
    done, skipped = caption.run(captioner, [str(bad), str(good)], out, None, err)
    assert (done, skipped) == (1, 1)
    (line,) = out.getvalue().splitlines()
    path, text = line.split("\t")
    assert path == str(good)
    assert text == captioner.caption(picture[None])[0][0]
    notes = err.getvalue()
    assert "notes.png" in notes and "skipped" in notes and "converted RGBA to RGB" in notes


def test_folder_images_batch_by_caption_length(tmp_path):
    """`data.name='images:FOLDER'` through `batches.load`: pictures in `src` ([B, 64, 64, 3]
    uint8, also the last batch's filler rows, so no shape or dtype recompiles), buckets by the
    caption's length, no gold boxes, and no source vocabulary built from the file names."""
    from attn_jax.data import batches

    rng = np.random.default_rng(0)
    lines = {"train": ["a.png\ta red circle", "b.png\ttwo small blue squares and a circle"],
             "valid": ["a.png\ta red circle"], "test": ["b.png\ta blue square"] * 3}
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)).save(tmp_path / name)
    for split, text in lines.items():
        (tmp_path / f"{split}.txt").write_text("\n".join(text) + "\n")
    config = config_lib.load_config_file(SCENES)
    config_lib.override(config, "data.name", f"images:{tmp_path}")
    config_lib.override(config, "data.buckets", (4, 8))
    config_lib.override(config, "data.max_len", 8)
    data = batches.load(config.data, str(tmp_path / "run"))
    train = data["train"]
    assert train.images.shape == (2, 64, 64, 3) and train.boxes is None
    assert train.bucket.tolist() == [0, 1]  # 3 + EOS tokens fit 4; 7 + EOS need 8
    assert data.src_vocab.size < 10  # special tokens only: the file names are no words
    (batch,) = list(batches.eval_batches(data, "test", 4))
    assert batch["src"].dtype == np.uint8 and batch["src"].shape == (4, 64, 64, 3)
    assert batch["index"].tolist() == [0, 1, 2, -1] and not batch["src"][3].any()
    np.testing.assert_array_equal(batch["src"][0], np.asarray(Image.open(tmp_path / "b.png")))
