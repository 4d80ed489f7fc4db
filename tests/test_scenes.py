"""Tests for attn_jax.data.scenes (the embedded captioning scenes) and the image datasets of
attn_jax.data.sources ('scenes' and 'images:FOLDER').

Gold boxes are checked against the drawn pixels, the caption grammar word by word, the splits for
determinism, disjointness and the held-out running example; the TFDS builder and the folder
reader on tiny data under tmp_path. numpy and PIL only, no JAX.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import random
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from attn_jax.data import scenes, sources
from attn_jax.data.scenes import Distractor, Obj
from tests.data_helpers import make_cfg

SPLIT_SIZES = {"train": 40, "valid": 10, "test": 600}


@pytest.fixture(scope="module")
def splits():
    return scenes.generate_splits(SPLIT_SIZES, seed=0)


@pytest.fixture(scope="module")
def test_scenes(splits):
    """Half the stratified split (50 scenes per object count), redrawn with visible masks."""
    return [scenes.render(s.objects, s.background_seed, s.distractors, masks=True)
            for s in splits["test"][::2]]


def _caption(*objects, **kw):
    return scenes.render(objects, **kw).caption


# ---------------------------------------------------------------------------------------------
# Drawing and gold grounding
# ---------------------------------------------------------------------------------------------


def test_boxes_are_the_tight_boxes_of_the_drawn_pixels(test_scenes):
    for scene in test_scenes:
        for k, obj in enumerate(scene.objects):
            mask = scene.masks[k]  # [S, S] visible pixels of object k
            ys, xs = np.nonzero(mask)
            assert tuple(scene.object_boxes[k]) == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
            # Those pixels carry the object's colour (plus grain), so the mask is what was drawn.
            diff = np.abs(scene.image[mask].astype(int) - np.array(obj.rgb or scenes.COLOURS[obj.colour]))
            assert diff.max() <= 16 and diff.mean() < 4, (scene.caption, k)
            area = scenes.render([obj], masks=True).masks[0].sum()  # the whole shape, alone
            assert scene.visible[k] == pytest.approx(mask.sum() / area, abs=1e-6)
        assert not np.any(scene.masks.sum(0) > 1)  # a pixel shows one object at most


def test_occlusion_keeps_every_object_visible(test_scenes):
    visible = np.concatenate([s.visible for s in test_scenes])
    assert visible.min() >= scenes.MIN_VISIBLE
    assert (visible < 0.9).sum() > 20  # occlusion does happen
    sides = np.concatenate([s.object_boxes[:, 2:] - s.object_boxes[:, :2] for s in test_scenes])
    assert sides.min() >= scenes.MIN_BOX_SIDE
    assert sum(len(s.distractors) for s in test_scenes) > 100


def test_word_boxes_name_the_phrase_objects(test_scenes):
    for scene in test_scenes:
        words = scene.caption.split()
        assert scene.boxes.shape == (len(words), scenes.MAX_GROUP, 4)
        assert scene.boxes.dtype == np.int32
        for w, (word, named) in enumerate(zip(words, scene.word_objects)):
            rows = scene.boxes[w]
            np.testing.assert_array_equal(rows[:len(named)], scene.object_boxes[list(named)])
            assert np.all(rows[len(named):] == -1)
            objects = [scene.objects[i] for i in named]
            if word in scenes.FUNCTION_WORDS:
                assert not named, word
            elif word in scenes.COUNT_WORDS:
                assert len(named) == scenes.COUNT_WORDS.index(word) + 1
            elif word in scenes.SIZES:
                assert named and all(o.size == word for o in objects)
            elif word in scenes.COLOURS:
                assert named and all(o.colour == word for o in objects)
            else:
                assert named and all(o.shape == word.removesuffix("s") for o in objects)
                assert (len(named) > 1) == word.endswith("s")
        named = sorted(i for n in scene.word_objects for i in n)
        assert set(named) == set(range(len(scene.objects)))  # every object is named


def test_rendering_is_a_function_of_the_scene(splits):
    for scene in splits["train"][:20]:
        again = scenes.render(scene.objects, scene.background_seed, scene.distractors)
        np.testing.assert_array_equal(again.image, scene.image)
        np.testing.assert_array_equal(again.boxes, scene.boxes)
        assert again.caption == scene.caption
        # The caption does not depend on the drawing order or the background.
        shuffled = list(scene.objects)
        random.Random(0).shuffle(shuffled)
        assert scenes.render(shuffled, background_seed=1).caption == scene.caption


def test_distractors_are_drawn_but_never_named():
    square = Obj("square", "blue", "large", 32, 32, 9.0)
    line = Distractor("line", (10, 10), (54, 54), 230)
    blob = Distractor("blob", (32, 40), (6, 12), 30)
    plain, cluttered = scenes.render([square]), scenes.render([square], 0, [line, blob], masks=True)
    assert cluttered.caption == plain.caption == "a large blue square"
    assert 0.8 < cluttered.visible[0] < 1 and plain.visible[0] == 1  # the line crosses it
    hidden = ~cluttered.masks[0] & scenes.render([square], masks=True).masks[0]
    assert hidden.any() and np.all(np.ptp(cluttered.image[hidden].astype(int), axis=1) < 25)
    blob_only = np.zeros((64, 64), bool)
    blob_only[30:35, 44:48] = True  # inside the blob, right of the square, off the line
    assert np.all(cluttered.image[blob_only] < 60)  # grey under the objects, still visible


# ---------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------


def test_caption_grammar():
    red = Obj("circle", "red", "small", 30, 10)
    blue = Obj("square", "blue", "large", 34, 40)
    assert _caption(red) == "a small red circle"
    assert _caption(blue, red) == "a small red circle to the left of a large blue square"
    low = Obj("triangle", "green", "small", 55, 14)
    assert _caption(red, low) == "a small red circle above a small green triangle"
    assert _caption(low._replace(cx=5), red) == "a small green triangle below a small red circle"
    twins = [low, low._replace(cx=30), low._replace(cx=50, cy=20)]
    assert _caption(*twins) == "three small green triangles"
    assert _caption(twins[0], twins[1], blue) == "two small green triangles and a large blue square"
    assert (_caption(blue, red, Obj("diamond", "yellow", "large", 10, 55))
            == "a small red circle , a large blue square and a large yellow diamond")
    scene = scenes.render([twins[0], blue, twins[1]])
    assert scene.word_objects[:4] == ((0, 2), (0, 2), (0, 2), (0, 2))
    assert scene.word_objects[4:] == ((), (), (1,), (1,), (1,))  # "and a large blue square"


def test_caption_grammar_coverage(splits):
    test = splits["test"]
    captions = [s.caption for s in test]
    words = Counter(w for c in captions for w in c.split())
    assert set(words) == set(scenes.VOCABULARY)  # every count, relation and list word
    assert len(scenes.VOCABULARY) < 60
    assert max(len(c.split()) for c in captions) <= 30
    for relation in scenes.RELATIONS:
        assert sum(f" {relation} " in c for c in captions) >= 5
    for scene in test:  # the relation follows from the two centres
        if len(scene.objects) == 2 and scene.objects[0].kind != scene.objects[1].kind:
            a, b = sorted(scene.objects, key=lambda o: o.cx)
            dx, dy = b.cx - a.cx, b.cy - a.cy
            expected = "to the left of" if abs(dy) <= dx else "above" if dy > 0 else "below"
            assert f" {expected} " in scene.caption
            assert abs(abs(dy) - dx) >= scenes.RELATION_MARGIN
    assert all(scenes.object_count(s.caption) == scenes.object_count(s) for s in test)


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


def _key(scene):
    return scene.caption, scene.image.tobytes()


def test_generation_is_deterministic():
    a, b, c = scenes.generate(12, seed=3), scenes.generate(12, seed=3), scenes.generate(12, seed=4)
    assert [_key(s) for s in a] == [_key(s) for s in b]
    assert [_key(s) for s in a] != [_key(s) for s in c]
    assert all(np.array_equal(x.boxes, y.boxes) for x, y in zip(a, b))


def test_generator_version_pins_the_output():
    # Layouts, captions and boxes (pure Python randomness and exact geometry; the pixels also
    # depend on float rounding of the texture banks). A change here is other data: bump
    # scenes.GENERATOR_VERSION (prepared copies and run vocabularies are keyed by it), then
    # update the digest.
    digest = hashlib.sha1()
    for split in scenes.generate_splits({"train": 30, "valid": 5, "test": 12}, seed=0).values():
        for s in split:
            digest.update(repr((s.caption, s.objects, s.distractors, s.background_seed)).encode())
            digest.update(s.boxes.tobytes())
    assert (scenes.GENERATOR_VERSION, digest.hexdigest()[:12]) == ("scenes-1", "568c7079426b")


def test_splits_deterministic_disjoint_and_stratified(splits):
    again = scenes.generate_splits(SPLIT_SIZES, seed=0)
    for name, split in splits.items():
        assert len(split) == SPLIT_SIZES[name]
        assert [_key(s) for s in split] == [_key(s) for s in again[name]]
    keys = {name: {_key(s) for s in split} for name, split in splits.items()}
    assert not keys["train"] & keys["valid"] and not keys["train"] & keys["test"]
    assert not keys["valid"] & keys["test"]
    assert Counter(scenes.object_count(s) for s in splits["test"]) == {n: 100 for n in range(1, 7)}
    # Each split has its own stream: the train split does not depend on the other sizes.
    other = scenes.generate_splits({"train": 40, "valid": 3, "test": 7}, seed=0)
    assert [_key(s) for s in other["train"]] == [_key(s) for s in splits["train"]]
    assert Counter(scenes.object_count(s) for s in other["test"]) == {1: 2, 2: 1, 3: 1, 4: 1,
                                                                      5: 1, 6: 1}


def test_running_example_is_held_out(splits, monkeypatch):
    example = scenes.RUNNING_EXAMPLE
    assert splits["test"][0] is example
    assert scenes.scene_id("test", 0, example) == sources.dataset("scenes").running_example
    assert example.caption == "a large blue square and two small red triangles"
    assert all(s.caption != example.caption for s in splits["train"] + splits["valid"])
    # Not vacuous: a running example with the caption of a train scene takes it out of train.
    common = splits["train"][0]
    monkeypatch.setattr(scenes, "RUNNING_EXAMPLE", common)
    held_out = scenes.generate_splits({"train": 40, "valid": 10, "test": 0}, seed=0)
    assert all(s.caption != common.caption for s in held_out["train"] + held_out["valid"])
    assert _key(held_out["train"][0]) != _key(common)


# ---------------------------------------------------------------------------------------------
# Sources: the TFDS builder and the folder reader
# ---------------------------------------------------------------------------------------------


def test_scenes_builder_round_trip(tmp_path):
    cfg = make_cfg(tmp_path, name="scenes", train_size=8, valid_size=4, test_size=4, seed=5)
    entry = sources.dataset("scenes")
    assert entry.images and not entry.gold
    raw = sources.read_raw_splits(cfg)
    expected = scenes.generate_splits({"train": 8, "valid": 4, "test": 4}, seed=5)
    for split, pairs in raw.items():
        assert len(pairs) == len(expected[split])
        for i, (pair, scene) in enumerate(zip(pairs, expected[split])):
            assert pair.src == scenes.scene_id(split, i, scene)
            assert pair.tgt == scene.caption and pair.sure is None
            assert pair.image.dtype == np.uint8 and pair.boxes.dtype == np.int32
            np.testing.assert_array_equal(pair.image, scene.image)
            np.testing.assert_array_equal(pair.boxes, scene.boxes)
    assert raw["test"][0].src == "running_example"
    assert sources.dataset_meta(cfg)["generator"] == scenes.GENERATOR_VERSION


def test_scenes_builder_writes_splits_over_tfds_memory_limit(tmp_path, monkeypatch):
    """Past TFDS's in-memory buffer (1 GB: about 80,000 scenes) its writer would spill through
    TensorFlow's file API, which is not installed: a limit below one scene stands in for it."""
    from tensorflow_datasets.core import shuffle  # pylint: disable=g-import-not-at-top

    monkeypatch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 1000)  # bytes: less than one picture
    cfg = make_cfg(tmp_path, name="scenes", train_size=6, valid_size=2, test_size=2, seed=3)
    raw = sources.read_raw_splits(cfg)
    expected = scenes.generate_splits({"train": 6, "valid": 2, "test": 2}, seed=3)
    assert [p.tgt for p in raw["train"]] == [s.caption for s in expected["train"]]
    assert shuffle.MAX_MEM_BUFFER_SIZE == 1000  # restored after preparing


def _png(path, mode, size, colour):
    Image.new(mode, size, colour).save(path)


def _write_folder(folder, train_lines, valid_lines=("a.png\ta red picture",),
                  test_lines=("a.png\ta red picture",)):
    folder.mkdir(exist_ok=True)
    _png(folder / "a.png", "RGB", (64, 64), (200, 10, 10))
    _png(folder / "gray.png", "L", (64, 64), 77)
    _png(folder / "rgba.png", "RGBA", (64, 64), (10, 200, 10, 128))
    _png(folder / "small.png", "RGB", (48, 32), (10, 10, 200))
    (folder / "notes.png").write_text("not an image\n")
    for split, lines in (("train", train_lines), ("valid", valid_lines), ("test", test_lines)):
        (folder / f"{split}.txt").write_text("".join(line + "\n" for line in lines))


def test_image_folder(tmp_path, caplog):
    folder = tmp_path / "captions"
    _write_folder(folder, [
        "a.png\ta red picture", "a.png\tsomething red", "gray.png\ta grey picture",
        "rgba.png\ta green picture", "small.png\ta blue picture", "notes.png\ta note",
        "gray.png\tstill grey"])
    with caplog.at_level(logging.INFO, logger="absl"):
        raw = sources.read_raw_splits(make_cfg(tmp_path, name=f"images:{folder}"))
    train = raw["train"]
    assert [(p.src, p.tgt) for p in train] == [
        ("a.png", "a red picture"), ("a.png", "something red"), ("gray.png", "a grey picture"),
        ("rgba.png", "a green picture"), ("small.png", "a blue picture"),
        ("gray.png", "still grey")]  # two references of a.png: two pairs; notes.png skipped
    for pair in train:
        assert pair.image.shape == (64, 64, 3) and pair.image.dtype == np.uint8
        assert pair.boxes is None
    assert np.all(train[2].image == 77)
    assert np.all(train[3].image == (10, 200, 10)) and np.all(train[4].image == (10, 10, 200))
    messages = [r.getMessage() for r in caplog.records]
    for name, what in (("gray.png", "converted L to RGB"), ("rgba.png", "converted RGBA to RGB"),
                       ("small.png", "resized 48x32 to 64x64")):
        lines = [m for m in messages if os.path.basename(m.split(":")[0]) == name]
        assert len(lines) == 1 and what in lines[0], (name, lines)  # once per file
    assert not any(os.path.basename(m.split(":")[0]) == "a.png" for m in messages)
    assert sum("notes.png" in m and "not a readable image" in m for m in messages) == 1
    assert any("train.txt: skipped 1 unreadable image file(s): notes.png" in m for m in messages)
    entry = sources.dataset(f"images:{folder}")
    assert entry.images and entry.running_example is None
    meta = sources.dataset_meta(make_cfg(tmp_path, name=f"images:{folder}"))
    (folder / "valid.txt").write_text("a.png\tanother caption\n")
    assert sources.dataset_meta(make_cfg(tmp_path, name=f"images:{folder}")) != meta


@pytest.mark.parametrize("case, match", [
    ("missing image", r"train\.txt:2: image file 'missing\.png' does not exist in .*; add it"),
    ("missing split", r"valid\.txt: missing; write one 'image_file<TAB>caption' line"),
    ("empty folder", r"missing or empty folder; data\.name='images:FOLDER' needs"),
    ("no tab", r"train\.txt:1: expected 'image_file<TAB>caption', got 'a\.png a red picture'"),
    ("only bad images", r"train\.txt: none of its images could be read"),
])
def test_image_folder_errors(tmp_path, case, match):
    folder = tmp_path / "captions"
    if case == "empty folder":
        folder.mkdir()
    else:
        train = {"missing image": ["a.png\tred", "missing.png\tgone"],
                 "no tab": ["a.png a red picture"],
                 "only bad images": ["notes.png\ta note"]}.get(case, ["a.png\tred"])
        _write_folder(folder, train)
        if case == "missing split":
            (folder / "valid.txt").unlink()
    with pytest.raises(ValueError, match=match) as error:
        sources.read_raw_splits(make_cfg(tmp_path, name=f"images:{folder}"))
    assert "\n" not in str(error.value)  # one line


def test_registry_names_image_datasets():
    with pytest.raises(ValueError, match=r"images:<folder>"):
        sources.dataset("nope")
    pair = sources.Pair("scene", "a small red circle", image=np.zeros((2, 2, 3), np.uint8))
    assert pair == dataclasses.replace(pair, image=None) and hash(pair)


def test_error_kinds_of_experiments_scenes_errors():
    """experiments/scenes/errors.py sorts a wrong caption into the first kind that fits."""
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "experiments", "scenes", "errors.py")
    spec = importlib.util.spec_from_file_location("scenes_errors", path)
    errors = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(errors)
    ref = "a large blue square and two small red triangles"
    cases = {
        ref: "ok",
        "a large blue circle and two small red triangles": "shape",
        "a large blue square and two small green triangles": "colour",
        "a small blue square and two small red triangles": "size",
        "a large blue square , a small red triangle and a small red triangle": "count",
        "a large blue square and three small red triangles": "count",
        "two small red triangles and a large blue square": "order",
        "a large blue square": "other",
        "a large red circle and two small red triangles": "other",  # colour and shape at once
    }
    assert {hyp: errors.kind(hyp, ref) for hyp in cases} == cases
