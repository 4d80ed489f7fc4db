"""Tests for attn_jax.report (the offline sweep report) on a small fake sweep folder laid out as
train.py writes runs."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import attn_jax
from attn_jax import report
from attn_jax.data.lengths import LENGTH_BUCKETS
from attn_jax.data.synthetic import RUNNING_EXAMPLE
from attn_jax.eval import sweep_report
from attn_jax.eval import trials as trials_lib
from attn_jax.model import attention

SCORERS = ("none", "additive", "dot")
HIDDEN_SIZES = (32, 64)
SEEDS = (0, 1)
SRC = ["mai", "ghar", "ja", "raha", "hoon"]
TGT = ["i", "am", "going", "home"]
FIGURES = ("bleu_vs_hidden", "bleu_by_length", "aer", "running_example", "learning_curves",
           "aer_curves")


def _test_metrics(scorer: str, hidden: int, seed: int) -> dict:
    """Per-seed test metrics. additive/64 is the hand-checked cell:
    BLEU 10, 12 -> 11.00 ± 1.41 (sample std = 2/sqrt(2)); AER 0.2, 0.3 -> 0.250 ± 0.071;
    perplexity 3, 5 -> 4.00 ± 1.41."""
    if (scorer, hidden) == ("additive", 64):
        bleu, aer, ppl = (10.0, 0.2, 3.0) if seed == 0 else (12.0, 0.3, 5.0)
    else:
        base = {"none": 5.0, "additive": 8.0, "dot": 7.0}[scorer] + hidden / 32
        bleu, aer, ppl = base + seed, 0.4 - 0.05 * seed, 6.0 - seed
    by_length = {b: max(bleu - 2.0 * i * (scorer == "none"), 0.0) for i, b in enumerate(LENGTH_BUCKETS)}
    by_length["41+"] = None if hidden == 32 else by_length["41+"]  # an empty bucket
    return {"bleu": bleu, "exact_match": 0.1, "aer": None if scorer == "none" else aer,
            "perplexity": ppl, "bleu_by_length": by_length}


def _attention(seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(TGT) + 1, len(SRC))) + 3 * np.eye(len(TGT) + 1, len(SRC))
    att = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)  # [T+1 (EOS), S]
    return att.tolist()


def _write_trial(root: Path, scorer: str, hidden: int, finished: bool = True) -> Path:
    trial = root / f"{scorer}_h{hidden}"
    (trial / "attention").mkdir(parents=True)
    config = {"model": {"scorer": scorer, "hidden_size": hidden},
              "train": {"seed": 0, "num_seeds": len(SEEDS), "num_steps": 200}}
    (trial / "config.json").write_text(json.dumps(config))
    rows = []
    for step in (100, 200):
        for seed in SEEDS:
            rows.append({"step": step, "split": "train", "seed": seed, "loss": 1.0, "perplexity": 2.7})
            m = _test_metrics(scorer, hidden, seed)
            rows.append({"step": step, "split": "valid", "seed": seed, **m, "bleu": m["bleu"] * step / 200})
    (trial / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    if not finished:
        return trial
    seeds = [{"seed": s, "test": _test_metrics(scorer, hidden, s), "valid": _test_metrics(scorer, hidden, s)}
             for s in SEEDS]
    results = {"scorer": scorer, "hidden_size": hidden, "wall_seconds": 90.0, "num_steps": 200,
               "evaluated_step": 100,
               "test": seeds[0]["test"], "valid": seeds[0]["valid"], "seeds": seeds}
    (trial / "results.json").write_text(json.dumps(results))
    for s in SEEDS:
        att = None if scorer == "none" else _attention(s)
        (trial / "attention" / f"running_example_seed{s}.json").write_text(
            json.dumps({"src": SRC, "tgt": TGT, "attention": att, "scorer": scorer}))
    return trial


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    for scorer in SCORERS:
        for hidden in HIDDEN_SIZES:
            _write_trial(root, scorer, hidden)
    _write_trial(root, "dot", 128, finished=False)  # crashed: no results.json
    return root


@pytest.fixture(scope="module")
def written(sweep) -> list[Path]:
    return report.make_all(sweep)


def test_load_sweep_skips_unfinished(sweep):
    trials = trials_lib.load_sweep(sweep)
    assert len(trials) == len(SCORERS) * len(HIDDEN_SIZES)
    assert [t.scorer for t in trials[::2]] == list(SCORERS)  # fixed scorer order
    assert {t.hidden_size for t in trials} == set(HIDDEN_SIZES)  # the unfinished h128 is skipped
    assert trials_lib.unfinished_trials(sweep) == [sweep / "dot_h128"]
    assert len(trials[0].metrics) == 8 and len(trials[0].seed_entries()) == 2


def test_every_figure_as_png_and_pdf(sweep, written):
    out = sweep / "plots"
    for stem in FIGURES:
        for ext in ("png", "pdf"):
            path = out / f"{stem}.{ext}"
            assert path in written
            assert path.stat().st_size > 1000, path
    assert (out / "tables.md") in written and (out / "tables.tex") in written
    png_magic = (out / "aer.png").read_bytes()[:8]
    assert png_magic == b"\x89PNG\r\n\x1a\n"
    assert (out / "aer.pdf").read_bytes()[:5] == b"%PDF-"


def test_tables_hold_mean_std(sweep, written):
    md = (sweep / "plots" / "tables.md").read_text()
    # additive, hidden 64: BLEU (10, 12) -> 11.00 ± 1.41; AER (0.2, 0.3) -> 0.250 ± 0.071;
    # perplexity (3, 5) -> 4.00 ± 1.41  (sample std: |a - b| / sqrt(2)).
    # Then the steps the trial trained (best-checkpoint step) and its minutes (90 s).
    assert "| additive | 64 | 2 | 11.00 ± 1.41 | 0.250 ± 0.071 | 4.00 ± 1.41 | 200 (100) | 1.5 |" in md
    # none has no AER: shown as a dash.
    assert "| none | 32 | 2 | 6.50 ± 0.71 | — | 5.50 ± 0.71 | 200 (100) | 1.5 |" in md
    # BLEU by length: none loses 2 BLEU per bucket (seeds 6, 7 on 1-10 words); 41+ is empty at 32.
    assert "| none | 32 | 2 | 6.5 ± 0.7 | 4.5 ± 0.7 | 2.5 ± 0.7 | 0.5 ± 0.7 | — |" in md
    assert "| additive | 64 | 2 | " + " | ".join(["11.0 ± 1.4"] * len(LENGTH_BUCKETS)) + " |" in md
    assert "dot_h128" in md  # the skipped trial is reported
    assert md.index("| none |") < md.index("| additive |") < md.index("| dot |")
    tex = (sweep / "plots" / "tables.tex").read_text()
    assert (r"additive & 64 & 2 & 11.00 $\pm$ 1.41 & 0.250 $\pm$ 0.071 & 4.00 $\pm$ 1.41 & "
            r"200 (100) & 1.5 \\") in tex
    assert r"none & 32 & 2 & 6.5 $\pm$ 0.7 & 4.5 $\pm$ 0.7 & 2.5 $\pm$ 0.7 & 0.5 $\pm$ 0.7 & -- \\" in tex
    assert r"\toprule" in tex and r"\end{tabular}" in tex
    assert r"\caption{Test split; mean $\pm$ std" in tex and "textbackslash" not in tex


def test_seeds_csv_holds_every_seed_behind_the_tables(sweep, written):
    path = sweep / "plots" / "seeds.csv"
    assert path in written
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(SCORERS) * len(HIDDEN_SIZES) * len(SEEDS)  # the unfinished trial has none
    assert [r["scorer"] for r in rows[::4]] == list(SCORERS)  # table order
    cell = [r for r in rows if (r["scorer"], r["hidden_size"]) == ("additive", "64")]
    # The hand-checked cell of the tables, seed by seed: BLEU 10 and 12, AER 0.2 and 0.3.
    assert [(r["seed"], float(r["bleu"]), float(r["aer"]), float(r["perplexity"])) for r in cell] == [
        ("0", 10.0, 0.2, 3.0), ("1", 12.0, 0.3, 5.0)]
    assert [float(r["bleu_1-10"]) for r in cell] == [10.0, 12.0]
    assert {(r["trial"], r["num_steps"], r["evaluated_step"], r["wall_seconds"]) for r in cell} == {
        ("additive_h64", "200", "100", "90.0")}
    none32 = [r for r in rows if (r["scorer"], r["hidden_size"]) == ("none", "32")]
    assert [r["aer"] for r in none32] == ["", ""] and [r["bleu_41+"] for r in none32] == ["", ""]
    assert float(none32[1]["bleu_11-20"]) == 7.0 - 2.0  # seed 1: 7 BLEU, minus 2 per bucket


def test_hidden_size_selection(sweep):
    trials = trials_lib.load_sweep(sweep)
    assert trials_lib.select_hidden_size(trials) == 64
    assert trials_lib.select_hidden_size(trials, 32) == 32
    with pytest.raises(ValueError, match="present"):
        trials_lib.select_hidden_size(trials, 128)


def test_empty_sweep_raises(tmp_path):
    with pytest.raises(ValueError, match="no finished trial"):
        report.make_all(tmp_path)


def test_learning_curve_mean_and_std(sweep):
    trials = [t for t in trials_lib.load_sweep(sweep) if (t.scorer, t.hidden_size) == ("additive", 64)]
    steps, mean, std = sweep_report.learning_curve(trials)
    # valid BLEU = test BLEU * step / 200: step 100 -> (5, 6), step 200 -> (10, 12)
    np.testing.assert_array_equal(steps, [100, 200])
    np.testing.assert_allclose(mean, [5.5, 11.0])
    np.testing.assert_allclose(std, [np.sqrt(0.5), np.sqrt(2.0)])
    # The AER curve (figure aer_curves): valid AER of additive h64 seeds 0, 1 = 0.2, 0.3 each step.
    steps, mean, _ = sweep_report.learning_curve(trials, key="aer")
    np.testing.assert_allclose(mean, [0.25, 0.25])
    none = [t for t in trials_lib.load_sweep(sweep) if t.scorer == "none"]
    assert sweep_report.learning_curve(none, key="aer")[0].size == 0  # No attention, no AER rows.


def test_running_example_file_picks_first_seed(sweep):
    trial = trials_lib.load_trial(sweep / "additive_h64")
    assert trials_lib.running_example_file(trial).name == "running_example_seed0.json"


def test_scorer_colors_fixed():
    assert set(trials_lib.SCORER_COLORS) == set(attention.SCORER_NAMES)
    assert len(set(trials_lib.SCORER_COLORS.values())) == len(trials_lib.SCORER_COLORS)
    assert trials_lib.scorer_color("brand_new") == trials_lib.scorer_color("brand_new")


def test_command_line_writes_the_report_at_a_chosen_hidden_size(sweep, tmp_path):
    out = tmp_path / "h32"
    command = [sys.executable, "-m", "attn_jax.report", f"--sweep_dir={sweep}", f"--out_dir={out}",
               "--hidden_size=32"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"skipped (no results.json): {sweep / 'dot_h128'}" in run.stdout
    written = run.stdout.splitlines()
    assert str(out / "running_example.png") in written and str(out / "tables.md") in written
    assert (out / "running_example.png").stat().st_size > 1000


def test_running_example_defined_once():
    """The running example's text lives in attn_jax.data.synthetic.RUNNING_EXAMPLE only."""
    text = re.escape(RUNNING_EXAMPLE.src)
    literal = re.compile(rf"""["']{text}["']""")
    package = Path(attn_jax.__file__).parent
    copies = [p.name for p in sorted(package.glob("*.py"))
              if p.name != "synthetic.py" and literal.search(p.read_text(encoding="utf-8"))]
    assert not copies, copies


# --- the arch x scorer grid (configs/sweeps/arch_scorer.py) -------------------------------------

ARCH_GRID = (("rnn", "additive"), ("rnn", "dot"), ("transformer", "additive"), ("transformer", "dot"))
ARCH_FIGURES = ("bleu_by_arch_scorer", "aer_by_arch_scorer", "bleu_by_length", "aer_by_head")


def _arch_metrics(arch: str, scorer: str, seed: int) -> dict:
    """Per-seed test metrics of the fake arch grid. transformer/dot is the hand-checked cell:
    BLEU 90, 94 -> 92.00 ± 2.83; exact match 0.5, 0.7 -> 60.0 ± 14.1 (%); head-averaged AER 0.2,
    0.3 -> 0.250 ± 0.071; best heads L2H1 (0.15) and L2H2 (0.25) -> 0.200 ± 0.071."""
    heads = None
    if (arch, scorer) == ("transformer", "dot"):
        bleu, exact, aer = (90.0, 0.5, 0.2) if seed == 0 else (94.0, 0.7, 0.3)
        heads = ({"L1H1": 0.5, "L1H2": 0.4, "L2H1": 0.15, "L2H2": 0.3} if seed == 0 else
                 {"L1H1": 0.6, "L1H2": 0.45, "L2H1": 0.35, "L2H2": 0.25})
    else:
        bleu = {"additive": 95.0, "dot": 93.0}[scorer] + 2.0 * (arch == "rnn") + seed
        exact, aer = 0.8, 0.1 + 0.02 * seed
        if arch == "transformer":
            heads = {"L1H1": 0.4, "L1H2": 0.3, "L2H1": 0.2, "L2H2": 0.12 + 0.01 * seed}
    out = {"bleu": bleu, "exact_match": exact, "aer": aer, "perplexity": 1.5,
           "bleu_by_length": {b: bleu - i for i, b in enumerate(LENGTH_BUCKETS)}}
    if heads:
        best = min(heads, key=heads.get)
        out.update(aer_by_head=heads, aer_best_head=heads[best], best_head=best)
    return out


def _write_arch_trial(root: Path, arch: str, scorer: str, hidden: int = 128,
                      finished: bool = True) -> Path:
    """A trial folder as train.py writes it for `model.arch=arch` (no figures needed here)."""
    trial = root / f"arch={arch},scorer={scorer}" if hidden == 128 else root / f"{arch}_{scorer}_h{hidden}"
    trial.mkdir(parents=True)
    (trial / "config.json").write_text(json.dumps(
        {"model": {"arch": arch, "scorer": scorer, "hidden_size": hidden}}))
    if not finished:
        return trial
    seeds = [{"seed": s, "test": _arch_metrics(arch, scorer, s), "valid": {"bleu": 50.0 + s}}
             for s in SEEDS]
    capped = arch == "transformer"  # Trained to its step cap (400) rather than to a plateau.
    results = {"arch": arch, "scorer": scorer, "hidden_size": hidden, "wall_seconds": 90.0,
               "num_steps": 400 if capped else 300, "max_steps": 400,
               "evaluated_step": 300 if capped else 200, "test": seeds[0]["test"], "seeds": seeds}
    (trial / "results.json").write_text(json.dumps(results))
    return trial


@pytest.fixture(scope="module")
def arch_sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("arch_sweep")
    for arch, scorer in ARCH_GRID:
        _write_arch_trial(root, arch, scorer)
    _write_arch_trial(root, "rnn", "additive", hidden=64)  # Another size: left out, and said so.
    _write_arch_trial(root, "transformer", "general", finished=False)  # Crashed: skipped.
    return root


@pytest.fixture(scope="module")
def arch_written(arch_sweep) -> list[Path]:
    return report.make_all(arch_sweep)


def test_arch_grid_is_recognised_and_grouped_by_arch(arch_sweep, sweep):
    trials = trials_lib.load_sweep(arch_sweep)
    assert sweep_report.is_arch_grid(trials)
    assert not sweep_report.is_arch_grid(trials_lib.load_sweep(sweep))  # No arch named: RNNs, as before.
    assert {t.arch for t in trials_lib.load_sweep(sweep)} == {"rnn"}
    at_128 = [t for t in trials if t.hidden_size == 128]
    groups = sweep_report.group_by_arch(at_128)
    assert list(groups) == list(ARCH_GRID)  # Family order (ARCHS), then scorer order.
    assert sweep_report.head_names(at_128) == ["L1H1", "L1H2", "L2H1", "L2H2"]


def test_arch_grid_report_writes_its_figures_not_the_scorer_hidden_ones(arch_sweep, arch_written):
    out = arch_sweep / "plots"
    for stem in ARCH_FIGURES:
        for ext in ("png", "pdf"):
            assert out / f"{stem}.{ext}" in arch_written
            assert (out / f"{stem}.{ext}").stat().st_size > 1000, stem
    assert not (out / "bleu_vs_hidden.png").exists()
    assert {out / "tables.md", out / "tables.tex", out / "seeds.csv"} <= set(arch_written)


def test_arch_grid_tables_label_every_row_by_arch(arch_sweep, arch_written):
    md = (arch_sweep / "plots" / "tables.md").read_text()
    # The hand-checked cell (see _arch_metrics); steps 400 of a 400-step cap, metrics from 300.
    assert ("| transformer | dot | 2 | 92.00 ± 2.83 | 60.0 ± 14.1 | 0.250 ± 0.071 | 0.200 ± 0.071 "
            "| L2H1, L2H2 | 400 (300, cap) | 1.5 |") in md
    # The RNN has one attention: no best head. BLEU 95 + 2, 96 + 2 on additive.
    assert ("| rnn | additive | 2 | 97.50 ± 0.71 | 80.0 ± 0.0 | 0.110 ± 0.014 | — | — | 300 (200) "
            "| 1.5 |") in md
    assert "| transformer | dot | 2 | 92.0 ± 2.8 | 91.0 ± 2.8 | 90.0 ± 2.8 | 89.0 ± 2.8 | 88.0 ± 2.8 |" in md
    # Per-head AER: the Transformer's rows only.
    assert "| arch | scorer | seeds | L1H1 | L1H2 | L2H1 | L2H2 |" in md
    assert "| transformer | dot | 2 | 0.550 ± 0.071 | 0.425 ± 0.035 | 0.250 ± 0.141 | 0.275 ± 0.035 |" in md
    head_table = md[md.index("| arch | scorer | seeds | L1H1"):]
    assert "| rnn |" not in head_table.split("\n\n")[0]
    order = [md.index(f"| {a} | {s} | 2 | ") for a, s in ARCH_GRID]
    assert order == sorted(order)
    assert "rnn_additive_h64" in md and "arch=transformer,scorer=general" in md  # left out, skipped
    tex = (arch_sweep / "plots" / "tables.tex").read_text()
    assert (r"transformer & dot & 2 & 92.00 $\pm$ 2.83 & 60.0 $\pm$ 14.1 & 0.250 $\pm$ 0.071 & "
            r"0.200 $\pm$ 0.071 & L2H1, L2H2 & 400 (300, cap) & 1.5 \\") in tex
    assert r"rnn & additive & 2 & 97.50 $\pm$ 0.71 & 80.0 $\pm$ 0.0 & 0.110 $\pm$ 0.014 & -- & -- &" in tex
    assert tex.count(r"\begin{table}") == 3 and r"\label{tab:arch_heads}" in tex


def test_arch_grid_seeds_csv(arch_sweep, arch_written):
    rows = list(csv.DictReader((arch_sweep / "plots" / "seeds.csv").open()))
    assert len(rows) == len(ARCH_GRID) * len(SEEDS)  # hidden 64 left out, the crashed one skipped
    assert [(r["arch"], r["scorer"]) for r in rows[::2]] == list(ARCH_GRID)
    cell = [r for r in rows if (r["arch"], r["scorer"]) == ("transformer", "dot")]
    assert [(r["seed"], r["best_head"], float(r["aer_best_head"]), float(r["aer_L2H1"])) for r in cell] == [
        ("0", "L2H1", 0.15, 0.15), ("1", "L2H2", 0.25, 0.35)]
    assert {(r["trial"], r["num_steps"], r["max_steps"]) for r in cell} == {
        ("arch=transformer,scorer=dot", "400", "400")}
    rnn = [r for r in rows if r["arch"] == "rnn"]
    assert {r["best_head"] for r in rnn} == {""} and {r["aer_L1H1"] for r in rnn} == {""}
