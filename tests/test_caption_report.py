"""Tests for attn_jax.eval.caption_report (the captioning sweep's report) on a fake sweep folder laid
out as train.py writes caption runs: three scorers x two seeds, and one unfinished trial."""

import csv
import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from attn_jax import report
from attn_jax.eval import caption_report
from attn_jax.eval import trials as trials_lib

SEEDS = (0, 1)
COUNTS = ("1", "2", "3", "4", "5", "6")
# Per-seed (bleu, cider, exact_match, pointing, mass_in_box); the table cells, by hand:
#   additive: BLEU 20, 24 -> 22.00 ± 2.83 (sample std 4/sqrt(2)); CIDEr 0.5, 0.7 -> 0.600 ± 0.141;
#             exact match 10 %, 20 % -> 15.0 ± 7.1; pointing 0.6, 0.8 -> 0.700 ± 0.141;
#             mass 0.30, 0.34 -> 0.320 ± 0.028
#   dot:      18, 19 -> 18.50 ± 0.71; 0.4, 0.5 -> 0.450 ± 0.071; 5 %, 15 % -> 10.0 ± 7.1;
#             0.5, 0.6 -> 0.550 ± 0.071; 0.2, 0.3 -> 0.250 ± 0.071
#   none:     10, 14 -> 12.00 ± 2.83; 0.1, 0.3 -> 0.200 ± 0.141; 0 %, 10 % -> 5.0 ± 7.1; no grounding
METRICS = {
    "none": [(10.0, 0.1, 0.0, None, None), (14.0, 0.3, 0.1, None, None)],
    "additive": [(20.0, 0.5, 0.1, 0.6, 0.30), (24.0, 0.7, 0.2, 0.8, 0.34)],
    "dot": [(18.0, 0.4, 0.05, 0.5, 0.2), (19.0, 0.5, 0.15, 0.6, 0.3)],
}
# Exact match by object count k: start - slope * (k - 1) + 0.1 * seed; pointing (attending
# scorers): start - 0.05 * (k - 1) + 0.02 * seed. Hand-checked cells: additive 1 object: exact
# 90 %, 100 % -> 95.0 ± 7.1, pointing 0.90, 0.92 -> 0.910 ± 0.014; dot 6 objects: exact 30 %,
# 40 % -> 35.0 ± 7.1, pointing 0.55, 0.57 -> 0.560 ± 0.014; none 6 objects: 0 %, 10 % -> 5.0 ± 7.1.
EXACT_BY_OBJECTS = {"none": (0.9, 0.18), "additive": (0.9, 0.1), "dot": (0.8, 0.1)}
POINTING_BY_OBJECTS = {"additive": 0.9, "dot": 0.8}


def _test_metrics(scorer: str, seed: int) -> dict:
    bleu, cider, exact, pointing, mass = METRICS[scorer][seed]
    start, slope = EXACT_BY_OBJECTS[scorer]
    by_objects = {}
    for c in COUNTS:
        k = int(c) - 1
        point = POINTING_BY_OBJECTS.get(scorer)
        by_objects[c] = {"sentences": 10, "bleu": bleu - k, "exact_match": start - slope * k + 0.1 * seed,
                         "pointing": None if point is None else point - 0.05 * k + 0.02 * seed,
                         "mass_in_box": None if point is None else 0.3}
    out = {"bleu": bleu, "cider": cider, "exact_match": exact, "pointing": pointing, "mass_in_box": mass,
           "attention_entropy": None if scorer == "none" else 0.5, "perplexity": 3.0 + seed,
           "loss": 1.0 + seed, "aer": None, "bleu_signature": "nrefs:1", "by_objects": by_objects}
    if scorer != "none":  # the baseline is computed only where there is attention to ground
        out.update(pointing_uniform=0.125, mass_in_box_uniform=0.08)
    return out


def _write_trial(root: Path, scorer: str, finished: bool = True) -> Path:
    trial = root / f"scorer={scorer}"
    (trial / "attention").mkdir(parents=True)
    (trial / "config.json").write_text(json.dumps({"model": {"scorer": scorer, "hidden_size": 32}}))
    (trial / "metrics.jsonl").write_text(json.dumps({"step": 10, "split": "train", "loss": 2.0}) + "\n")
    if not finished:
        return trial
    seeds = [{"seed": s, "test": _test_metrics(scorer, s), "valid": _test_metrics(scorer, s)} for s in SEEDS]
    results = {"scorer": scorer, "hidden_size": 32, "num_steps": 600, "evaluated_step": 300,
               "wall_seconds": 120.0, "test": seeds[0]["test"], "valid": seeds[0]["valid"], "seeds": seeds}
    (trial / "results.json").write_text(json.dumps(results))
    if scorer != "none":  # a small strip picture
        strip = np.random.default_rng(0).uniform(size=(12, 40, 3))
        matplotlib.image.imsave(trial / "attention" / "running_example.png", strip)
    return trial


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, list[Path]]:
    sweep = tmp_path_factory.mktemp("scenes_sweep")
    for scorer in ("dot", "none", "additive"):
        _write_trial(sweep, scorer)
    _write_trial(sweep, "general", finished=False)
    return sweep, report.make_all(sweep)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_is_caption_sweep(written):
    sweep, _ = written
    trials = trials_lib.load_sweep(sweep)
    assert caption_report.is_caption_sweep(trials)
    translation = [trials_lib.Trial("dot", 32, {"test": {"bleu": 1.0}}, [], sweep)]
    assert not caption_report.is_caption_sweep(translation)


def test_main_table(written):
    sweep, _ = written
    lines = _lines(sweep / "plots" / "tables.md")
    assert lines[0] == "| scorer | seeds | BLEU | CIDEr | exact match % | pointing | mass in box |"
    assert lines[1] == "|---|---|---:|---:|---:|---:|---:|"
    assert lines[2:6] == [  # scorer order of attn_jax.eval.trials: none, additive, dot; then the baseline
        "| none | 2 | 12.00 ± 2.83 | 0.200 ± 0.141 | 5.0 ± 7.1 | — | — |",
        "| additive | 2 | 22.00 ± 2.83 | 0.600 ± 0.141 | 15.0 ± 7.1 | 0.700 ± 0.141 | 0.320 ± 0.028 |",
        "| dot | 2 | 18.50 ± 0.71 | 0.450 ± 0.071 | 10.0 ± 7.1 | 0.550 ± 0.071 | 0.250 ± 0.071 |",
        "| uniform baseline (expected) | — | — | — | — | 0.125 | 0.080 |",
    ]


def _rows(table: str) -> dict[str, list[str]]:
    """{scorer: cells} of the Markdown table rows in `table` (header and rule excluded)."""
    rows = [line.strip("| ").split(" | ") for line in table.splitlines() if line.startswith("| ")]
    return {cells[0]: cells[1:] for cells in rows}


def test_by_objects_tables(written):
    sweep, _ = written
    text = (sweep / "plots" / "tables.md").read_text()
    exact, pointing = text.split("| scorer | 1 | 2 | 3 | 4 | 5 | 6 |")[1:]
    assert "Test exact match % by number of objects" in exact
    exact_rows, point_rows = _rows(exact.split("\n\n")[0]), _rows(pointing.split("\n\n")[0])
    assert list(exact_rows) == list(point_rows) == ["none", "additive", "dot"]
    assert exact_rows["additive"][0] == "95.0 ± 7.1" and exact_rows["dot"][5] == "35.0 ± 7.1"
    assert exact_rows["none"][5] == "5.0 ± 7.1"
    assert point_rows["additive"][0] == "0.910 ± 0.014" and point_rows["dot"][5] == "0.560 ± 0.014"
    assert point_rows["none"] == ["—"] * 6


def test_tex_and_skipped(written):
    sweep, _ = written
    tex = (sweep / "plots" / "tables.tex").read_text()
    assert r"additive & 2 & 22.00 $\pm$ 2.83 & 0.600 $\pm$ 0.141 & 15.0 $\pm$ 7.1 & 0.700 $\pm$ 0.141" in tex
    assert r"none & 2 & 12.00 $\pm$ 2.83 & 0.200 $\pm$ 0.141 & 5.0 $\pm$ 7.1 & -- & -- \\" in tex
    assert tex.count(r"\begin{table}") == 3 and "tab:caption_pointing" in tex
    md = (sweep / "plots" / "tables.md").read_text()
    assert md.rstrip().endswith(f"Skipped unfinished trials (no results.json): `{sweep / 'scorer=general'}`")


def test_seeds_csv(written):
    sweep, _ = written
    with open(sweep / "plots" / "seeds.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["scorer"], r["seed"]) for r in rows] == [
        ("none", "0"), ("none", "1"), ("additive", "0"), ("additive", "1"), ("dot", "0"), ("dot", "1")]
    header = list(rows[0])
    assert header[:13] == ["scorer", "hidden_size", "seed", "trial", "bleu", "cider", "exact_match",
                           "pointing", "mass_in_box", "pointing_uniform", "mass_in_box_uniform",
                           "attention_entropy", "perplexity"]
    assert "loss" in header and "aer" not in header and "bleu_signature" not in header  # numbers only
    dot1 = rows[5]
    assert (dot1["trial"], float(dot1["bleu"]), float(dot1["cider"]), float(dot1["pointing"])) == (
        "scorer=dot", 19.0, 0.5, 0.6)
    assert float(dot1["exact_match_objects_6"]) == pytest.approx(0.4)
    assert float(dot1["pointing_objects_6"]) == pytest.approx(0.57)
    assert (dot1["num_steps"], dot1["wall_seconds"]) == ("600", "120.0")
    assert rows[0]["pointing"] == "" and rows[0]["pointing_uniform"] == ""  # none: no grounding


def test_figures(written):
    sweep, paths = written
    out = sweep / "plots"
    for stem in ("grounding", "by_objects", "running_example"):
        for suffix in (".png", ".pdf"):
            assert out / f"{stem}{suffix}" in paths
            assert (out / f"{stem}{suffix}").stat().st_size > 1000
    assert not (out / "bleu_vs_hidden.png").exists()  # not the translation report
    assert {out / "tables.md", out / "tables.tex", out / "seeds.csv"} <= set(paths)


def test_no_strips_no_running_example(tmp_path):
    trial = _write_trial(tmp_path, "none")
    assert caption_report.plot_running_example([trials_lib.load_trial(trial)], tmp_path / "plots") == []
