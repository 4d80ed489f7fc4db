"""Tests for attn_jax.interpret (the measurements' driver): its tables from hand-made results,
resuming from the JSON already written, and refused input (nothing here compiles: the
measurements themselves are tested in test_attribution.py and test_perturb.py)."""

import json
import os

import pytest

from attn_jax import interpret


def _result(workdir, scorer, aers, perturbation=None, **extra):
    keys = ("aer", "aer_saliency", "aer_grad_x_input", "aer_integrated_gradients")
    rows = [{"num_sentences": 300, "bleu": 98.0 + k, "exact_match": 0.9,
             **dict(zip(keys, values))} for k, values in enumerate(aers)]
    return {"workdir": workdir, "arch": "rnn", "scorer": scorer, "flow": "bahdanau",
            "seeds": list(range(len(aers))), "split": "test", "ig_steps": 8,
            "max_sentences": 300, "perturb_sentences": 300, "alignments": rows,
            "perturbation": perturbation, **extra}


PERTURBATION = {"perturbations": ["uniform", "seed"], "results": {
    "uniform": {"replicas": [{"tv": 0.5, "js": 0.25, "changed_argmax": 0.5, "delta_nll": 2.0,
                              "bleu_original": 98.0, "bleu_perturbed": 10.0},
                             {"tv": 0.7, "js": 0.35, "changed_argmax": 0.7, "delta_nll": 4.0,
                              "bleu_original": 99.0, "bleu_perturbed": 20.0}]},
    "seed": {"skipped": "one replica"}}}


def test_tables_give_mean_and_sd_over_seeds_and_mark_skipped_perturbations():
    results = [_result("a", "additive", [(0.1, 0.2, 0.3, 0.4), (0.3, 0.4, 0.5, 0.6)],
                       PERTURBATION),
               _result("b", "none", [(None, 0.5, 0.6, 0.7)])]
    text = interpret.tables(results)
    assert ("| rnn additive, bahdanau (2 seeds) | 300 | 98.50 ± 0.71 | 0.200 ± 0.141 | "
            "0.300 ± 0.141 | 0.400 ± 0.141 | 0.500 ± 0.141 |") in text
    assert "| rnn none, bahdanau (1 seed) | 300 | 98.00 | – | 0.500 | 0.600 | 0.700 |" in text
    assert ("| uniform | 0.600 ± 0.141 | 0.300 ± 0.071 | 60.0 ± 14.1% | 3.000 ± 1.414 | "
            "98.50 ± 0.71 → 15.00 ± 7.07 |") in text
    assert "| seed | n/a | n/a | n/a | n/a | n/a |" in text
    assert "none, bahdanau (1 seed) | uniform" not in text  # No perturbation without attention.


def test_runs_measured_already_are_read_back_not_measured_again(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    runs = [str(tmp_path / "x" / "arch=rnn,scorer=dot"), str(tmp_path / "y" / "fresh")]
    done = _result(runs[0], "dot", [(0.1, 0.2, 0.3, 0.4)])
    (out / "arch=rnn,scorer=dot.json").write_text(json.dumps(done))
    measured = []
    monkeypatch.setattr(interpret, "_load", lambda workdir: None)

    def measure(workdir, split, sentences, ig_steps, perturb_sentences, run=None):
        measured.append(workdir)
        return _result(workdir, "general", [(0.5, 0.5, 0.5, 0.5)], ig_steps=ig_steps,
                       seconds=1.0)

    monkeypatch.setattr(interpret, "interpret_run", measure)
    kwargs = dict(split="test", max_sentences=300, ig_steps=8, perturb_sentences=300)
    summary = interpret.interpret_runs(runs, str(out), **kwargs)
    assert measured == [runs[1]]
    assert summary == {"wrote": ["arch=rnn,scorer=dot.json", "fresh.json", "tables.md"]}
    tables = (out / "tables.md").read_text()
    assert "rnn dot, bahdanau" in tables and "rnn general, bahdanau" in tables
    # Other settings measure again.
    interpret.interpret_runs(runs, str(out), **{**kwargs, "max_sentences": 100})
    assert measured == [runs[1], *runs]


@pytest.mark.parametrize("runs,kwargs,words", [
    ([], {}, "usage"),
    (["a/run", "b/run"], {}, "share a folder name"),
    (["a"], {"max_sentences": -1}, ">= 0"),
    (["a"], {"ig_steps": 0}, "ig_steps must be >= 1"),
])
def test_bad_input_is_refused(tmp_path, runs, kwargs, words):
    with pytest.raises(interpret.InterpretError, match=words):
        interpret.interpret_runs(runs, str(tmp_path), **kwargs)


def test_a_folder_without_a_finished_run_is_refused(tmp_path):
    with pytest.raises(interpret.InterpretError, match="no finished run"):
        interpret.interpret_runs([str(tmp_path)], str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")  # Checked before anything is written.


def test_gold_floors_on_a_hand_made_split():
    """Target word 0: sure link to source 1, possible to 0 (the normalised argmax takes 0, a
    possible link); word 1: possible links only (both floors take source 2, the first)."""
    class Split(list):
        sure = [((1, 0),)]
        possible = [((0, 0), (1, 0), (2, 1), (3, 1))]
        tgt_text = ["x y"]

    floors = interpret.gold_floors(Split([0]))
    # |S| = 1. Sure-first: A = {1-0, 2-1}: A∩S 1, A∩P 2 -> 1 - 3/3 = 0. Argmax: A = {0-0, 2-1}:
    # A∩S 0, A∩P 2 -> 1 - 2/3.
    assert floors == {"sure": 0.0, "normalised_argmax": pytest.approx(1 / 3)}
