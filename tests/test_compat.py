"""A run folder written before the package was split into wings still resumes and translates.

tests/fixtures/run_before_wings was written by the code of commit fafe942 (the flat package): the
tiny config at hidden size 8 (200 training pairs, 6 steps, an evaluation and checkpoint at step 3)
killed during step 5, so it holds the step-3 checkpoints, config.json, the vocabulary (with the
generator version it was trained on) and metrics.jsonl up to step 3. Beside it, from the same
commit: the metrics and results of the same run left uninterrupted, and what `translate` printed
for two sentences from the step-3 checkpoint (greedy with alignments, and beam 3).
"""

import io
import json
import os
import shutil

import numpy as np
import pytest

from attn_jax import train, translate
from attn_jax.run import config as config_lib

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "run_before_wings")


def _rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _read(*parts):
    with open(os.path.join(FIXTURE, *parts), encoding="utf-8") as f:
        return f.read()


@pytest.fixture
def old_run(tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(FIXTURE, workdir, ignore=shutil.ignore_patterns("uninterrupted_*", "translate"))
    return workdir


def test_old_run_translates_as_it_did(old_run, tmp_path):
    lines = _read("translate", "input.txt").splitlines()
    for beam, expected in ((1, "greedy.txt"), (3, "beam3.txt")):
        out, alignments = tmp_path / f"out{beam}.txt", tmp_path / f"out{beam}.align"
        translator = translate.Translator(old_run, beam_size=beam)
        with open(out, "w", encoding="utf-8") as o, open(alignments, "w", encoding="utf-8") as a:
            translate.run(translator, lines, o, a, None, io.StringIO())
        assert out.read_text(encoding="utf-8") == _read("translate", expected)
        if beam == 1:
            assert alignments.read_text(encoding="utf-8") == _read("translate", "greedy.align")


def test_old_run_resumes_equal_to_the_uninterrupted_run(old_run, tmp_path):
    with open(os.path.join(old_run, "config.json"), encoding="utf-8") as f:
        config = config_lib.from_saved(json.load(f))
    config.data.tfds_dir = str(tmp_path / "tfds")  # A safe-to-change field: prepared anew here.
    results = train.train_and_evaluate(config, old_run)

    got = _rows(os.path.join(old_run, "metrics.jsonl"))
    want = _rows(os.path.join(FIXTURE, "uninterrupted_metrics.jsonl"))
    assert [(r["step"], r["split"]) for r in got] == [(r["step"], r["split"]) for r in want]
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in want], rtol=1e-5)
    assert [r.get("bleu") for r in got] == [r.get("bleu") for r in want]
    with open(os.path.join(FIXTURE, "uninterrupted_results.json"), encoding="utf-8") as f:
        expected = json.load(f)
    assert results["num_steps"] == expected["num_steps"] == 6
    assert results["evaluated_step"] == expected["evaluated_step"]
    assert results["test"]["bleu"] == pytest.approx(expected["test"]["bleu"], rel=1e-6)
    assert results["test"]["aer"] == pytest.approx(expected["test"]["aer"], rel=1e-6)
