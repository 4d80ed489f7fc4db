"""The offline sweep report, and the README's measured figures, rebuilt from files.

    python -m attn_jax.report --sweep_dir=runs/sweep [--out_dir=DIR] [--hidden_size=256]
    python -m attn_jax.report --readme     # rewrite every generated block of the READMEs in place
    python -m attn_jax.report --check      # exit 1 naming each stale block and unbacked figure

The first form

reads every trial folder under `--sweep_dir` (a folder holding config.json, metrics.jsonl,
results.json and attention/running_example*.json, as train.py writes them; see
README.md, "What a run leaves"), skips (and reports) trials without results.json, and writes
into `--out_dir` (default SWEEP_DIR/plots), each figure as PNG and PDF:

  bleu_vs_hidden      test BLEU vs hidden size, one line per scorer (log2 x axis)
  bleu_by_length      test BLEU per source-length bucket per scorer, `none` included
                      (the fixed-vector bottleneck of Bahdanau et al. 2015, Fig. 2)
  aer                 test AER per scorer (bars); `none` has no attention and is omitted
  running_example     attention heatmaps of the running example, one panel per scorer
  learning_curves     valid BLEU vs step per scorer
  aer_curves          valid AER vs step per scorer (alignment emerging without supervision)
  tables.md/.tex      scorer x hidden size: test BLEU, AER, perplexity as "mean ± std", steps
                      trained (best step) and minutes per trial; then test BLEU per
                      source-length bucket as "mean ± std"
  seeds.csv           the per-seed figures behind every table cell, one row per seed (test
                      metrics, valid BLEU, steps, minutes of its trial): for significance tests,
                      and kept with the tables since run folders are usually not committed

Figures 2 to 6 use one hidden size: `--hidden_size`, default the largest present.

A sweep that holds a model family other than the RNN (results.json "arch", else config.json's
model.arch; configs/sweeps/arch_scorer.py: the RNN and the Transformer x the cross-attention
scorers) is an arch grid: every table row and figure series is an (arch, scorer) pair, at one
hidden size (`--hidden_size`, default the largest; trials at other sizes are listed as left
out), and the report is instead

  bleu_by_arch_scorer test BLEU per scorer, one marker per arch side by side (± std error bars
                      over seeds, each seed a dot)
  aer_by_arch_scorer  the same for test AER: the RNN's attention, the Transformer's
                      cross-attention averaged over layers and heads, and (hollow) each seed's
                      best single head (results.json aer_best_head)
  bleu_by_length      test BLEU per source-length bucket, one panel per arch, a line per scorer
  aer_by_head         test AER of every cross-attention layer x head (mean over seeds), a panel
                      per (arch, scorer) that reports it (aer_by_head), the best head boxed
  tables.md/.tex      arch x scorer: BLEU, exact match, AER, best-head AER and the best head of
                      each seed, steps (best; 'cap': trained to the step cap, no plateau) and
                      minutes; BLEU by source length; AER of every cross-attention head
  seeds.csv           as above, with arch, best_head, aer_best_head and aer_<head> columns
Statistics are over seeds (results.json "seeds", pooled over trials sharing scorer and hidden
size); std is the sample standard deviation (ddof=1), shown only when there are >= 2 seeds.
Every scorer keeps one colour in every figure (`SCORER_COLORS`); heatmaps are drawn as
`attn_jax.eval.plots` draws a run's own. Flags are defined only when run as a script.

`--readme` and `--check` work on README.md, experiments/*/README.md and docs/*.md: every table of
measured figures there sits between `<!-- generated:NAME -->` and `<!-- /generated -->`, and
`BLOCKS[NAME]` computes it from committed result files (`experiments/<name>/results/`, the sweep's
tables.md and seeds.csv, the benchmark's JSON). A block whose files are not committed yet says
so instead of showing figures. `--check` also lists decimal figures in the prose (outside
generated blocks, code and inline code) that no committed result file holds (`unbacked_figures`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import statistics
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.patches
import numpy as np
from absl import logging
from matplotlib.figure import Figure

from attn_jax.data.lengths import LENGTH_BUCKETS
from attn_jax.data.synthetic import RUNNING_EXAMPLE
from attn_jax.eval import plots
from attn_jax.model import arch as arch_lib
from attn_jax.model import attention

# One fixed colour per scorer, used by every figure (tab10 colours; `none` is the grey baseline).
SCORER_COLORS: dict[str, str] = {
    "none": "#7f7f7f",
    "additive": "#1f77b4",
    "dot": "#ff7f0e",
    "general": "#2ca02c",
    "scaled_dot": "#d62728",
    "scaled_general": "#e377c2",
    "location": "#9467bd",
    "multihead": "#8c564b",
    "uniform": "#bcbd22",
}
_EXTRA_COLORS = ("#17becf", "#000000", "#aec7e8")  # for scorers not listed above
# The model family of a run whose results.json and config.json name none: runs from before
# model.arch were RNNs (attn_jax.run.config.ABSENT_MEANS_DEFAULT).
DEFAULT_ARCH = "rnn"
# One fixed colour per model family, in the figures that set the families side by side.
ARCH_COLORS: dict[str, str] = {"rnn": "#4c72b0", "transformer": "#dd8452"}
_SKIP_DIRS = {"checkpoints", "attention", "wandb", "plots", "__pycache__"}



def _attends(scorer: str) -> bool:
    """False for the no-attention baseline (drawn dashed; it has no alignment to score)."""
    return attention.scorer_class(scorer).attends

def scorer_color(scorer: str) -> str:
    """The fixed colour of `scorer` (a stable fallback colour for unknown scorers)."""
    if scorer in SCORER_COLORS:
        return SCORER_COLORS[scorer]
    return _EXTRA_COLORS[zlib.crc32(scorer.encode()) % len(_EXTRA_COLORS)]


def _scorer_rank(scorer: str) -> tuple[int, str]:
    order = list(SCORER_COLORS)
    return (order.index(scorer) if scorer in order else len(order), scorer)


# ---------------------------------------------------------------------------------------------
# Loading a sweep
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Trial:
    """One finished run folder."""

    scorer: str
    hidden_size: int
    results: dict[str, Any]  # results.json
    metrics: list[dict[str, Any]]  # metrics.jsonl rows
    path: Path
    config: dict[str, Any] = dataclasses.field(default_factory=dict)  # config.json ({} if absent)

    @property
    def arch(self) -> str:
        """The model family (results.json "arch", else config.json's model.arch; runs from
        before the field were RNNs)."""
        return str(self.results.get("arch") or self.config.get("model", {}).get("arch")
                   or DEFAULT_ARCH)

    def seed_entries(self) -> list[dict[str, Any]]:
        """results.json "seeds" entries; a results.json without them counts as one seed."""
        seeds = self.results.get("seeds") or []
        if seeds:
            return list(seeds)
        return [{"seed": None, "test": self.results.get("test", {}), "valid": self.results.get("valid", {})}]


def _read_json(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; blank lines and a torn last line (crash mid-write) are skipped."""
    if not path.exists():
        return []
    rows = []
    with open(path) as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                logging.warning("%s:%d: unreadable line skipped", path, i + 1)
    return rows


def find_trial_dirs(sweep_dir: str | os.PathLike) -> list[Path]:
    """Folders under (or equal to) `sweep_dir` that hold a config.json, results.json or
    metrics.jsonl, not descending into checkpoints/, attention/, wandb/ or plots/."""
    found = []
    for root, dirs, files in os.walk(sweep_dir):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        if {"config.json", "results.json", "metrics.jsonl"} & set(files):
            found.append(Path(root))
    return sorted(found)


def unfinished_trials(sweep_dir: str | os.PathLike) -> list[Path]:
    """Trial folders without results.json (crashed or still running)."""
    return [d for d in find_trial_dirs(sweep_dir) if not (d / "results.json").exists()]


def load_trial(path: str | os.PathLike) -> Trial:
    """Loads one finished trial folder (results.json required)."""
    path = Path(path)
    results = _read_json(path / "results.json")
    config = _read_json(path / "config.json") if (path / "config.json").exists() else {}
    model_cfg = config.get("model", {})
    scorer = results.get("scorer", model_cfg.get("scorer"))
    hidden_size = results.get("hidden_size", model_cfg.get("hidden_size"))
    if scorer is None or hidden_size is None:
        raise ValueError(f"{path}: results.json/config.json name no scorer or hidden_size")
    return Trial(
        scorer=str(scorer),
        hidden_size=int(hidden_size),
        results=results,
        metrics=_read_jsonl(path / "metrics.jsonl"),
        path=path,
        config=config,
    )


def load_sweep(sweep_dir: str | os.PathLike) -> list[Trial]:
    """All finished trials under `sweep_dir`, sorted by (scorer order, hidden size, path).
    Trials without results.json are skipped with a logged warning (see `unfinished_trials`)."""
    trials = []
    for d in find_trial_dirs(sweep_dir):
        if not (d / "results.json").exists():
            logging.warning("skipping unfinished trial (no results.json): %s", d)
            continue
        trials.append(load_trial(d))
    return sorted(trials, key=lambda t: (_scorer_rank(t.scorer), t.hidden_size, str(t.path)))


# ---------------------------------------------------------------------------------------------
# Statistics over seeds
# ---------------------------------------------------------------------------------------------


def mean_std(values: Iterable[float | None]) -> tuple[float, float, int]:
    """(mean, sample std with ddof=1, n) over the non-None, finite values; (nan, nan, 0) if none.
    std is 0.0 for a single value."""
    x = np.array([v for v in values if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, 0
    std = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    return float(np.mean(x)), std, int(x.size)


def _dig(entry: dict[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(entry, dict) or key not in entry:
            return None
        entry = entry[key]
    return entry


def seed_values(trials: Iterable[Trial], *keys: str) -> list[float | None]:
    """Per-seed values at `keys` (e.g. "test", "bleu_by_length", "1-10"), pooled over trials."""
    return [_dig(e, keys) for t in trials for e in t.seed_entries()]


def group_trials(trials: Iterable[Trial]) -> dict[tuple[str, int], list[Trial]]:
    """{(scorer, hidden_size): trials}, keys in scorer order then hidden size."""
    groups: dict[tuple[str, int], list[Trial]] = defaultdict(list)
    for t in trials:
        groups[(t.scorer, t.hidden_size)].append(t)
    return dict(sorted(groups.items(), key=lambda kv: (_scorer_rank(kv[0][0]), kv[0][1])))


def scorers_of(trials: Iterable[Trial]) -> list[str]:
    return sorted({t.scorer for t in trials}, key=_scorer_rank)


def select_hidden_size(trials: Sequence[Trial], hidden_size: int | None = None) -> int:
    """`hidden_size` if some trial has it (else ValueError), or the largest one present."""
    sizes = sorted({t.hidden_size for t in trials})
    if not sizes:
        raise ValueError("no finished trials")
    if hidden_size is None:
        return sizes[-1]
    if hidden_size not in sizes:
        raise ValueError(f"hidden_size={hidden_size} not in the sweep; present: {sizes}")
    return hidden_size


def _num_seeds_note(counts: Iterable[int]) -> str:
    counts = sorted(set(counts))
    if not counts:
        return "no seeds"
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"mean ± std over {n} seed{'s' if counts[-1] != 1 else ''}"


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------


def _save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Saves `fig` as OUT_DIR/STEM.png and .pdf; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return plots.save_figure(fig, [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"])


def _dodge(k: int, n: int) -> float:
    """Offset in [-(n-1)/2, (n-1)/2] for series k of n, to keep error bars apart."""
    return k - (n - 1) / 2


def _legend(ax) -> None:
    """Scorer legend outside the axes, on the right, so it never hides data."""
    ax.legend(title="scorer", fontsize=8, title_fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0)


# ---------------------------------------------------------------------------------------------
# Sweep figures
# ---------------------------------------------------------------------------------------------


def _first_seed(trial: Trial) -> float:
    seeds = [e.get("seed") for e in trial.seed_entries() if e.get("seed") is not None]
    return min(seeds) if seeds else math.inf


def running_example_file(trial: Trial) -> Path | None:
    """attention/running_example_seed{S}.json of the trial's first (smallest) seed, else
    attention/running_example.json, else None."""
    folder = trial.path / "attention"
    seeded = []
    for p in folder.glob("running_example_seed*.json"):
        suffix = p.stem.removeprefix("running_example_seed")
        if suffix.isdigit():
            seeded.append((int(suffix), p))
    if seeded:
        return min(seeded)[1]
    plain = folder / "running_example.json"
    return plain if plain.exists() else None


def plot_bleu_vs_hidden(trials: Sequence[Trial], out_dir: Path) -> list[Path]:
    """Figure 1: test BLEU vs hidden size, one line per scorer, mean ± std over seeds."""
    fig = plots.new_figure()
    ax = fig.add_subplot()
    groups = group_trials(trials)
    counts = []
    scorers = scorers_of(trials)
    for k, scorer in enumerate(scorers):
        sizes = sorted(h for (s, h) in groups if s == scorer)
        stats = [mean_std(seed_values(groups[(scorer, h)], "test", "bleu")) for h in sizes]
        mean = np.array([m for m, _, _ in stats])
        std = np.array([sd for _, sd, _ in stats])
        counts += [n for _, _, n in stats]
        x = np.array(sizes, dtype=float) * 2.0 ** (0.04 * _dodge(k, len(scorers)))  # spread error bars
        ax.errorbar(x, mean, yerr=std, color=scorer_color(scorer), marker="o", capsize=3, label=scorer,
                    linestyle="-" if _attends(scorer) else "--")
    all_sizes = sorted({t.hidden_size for t in trials})
    ax.set_xscale("log", base=2)
    ax.set_xticks(all_sizes, labels=[str(h) for h in all_sizes])
    ax.minorticks_off()
    ax.set_xlabel("hidden size (log2 scale)")
    ax.set_ylabel("test BLEU")
    ax.set_title(f"Test BLEU vs hidden size ({_num_seeds_note(counts)})", fontsize=10)
    ax.grid(alpha=0.3)
    _legend(ax)
    return _save(fig, out_dir, "bleu_vs_hidden")


def plot_bleu_by_length(trials: Sequence[Trial], out_dir: Path, hidden_size: int) -> list[Path]:
    """Figure 2: test BLEU per source-length bucket, one line per scorer (incl. `none`)."""
    fig = plots.new_figure()
    ax = fig.add_subplot()
    groups = group_trials(t for t in trials if t.hidden_size == hidden_size)
    x = np.arange(len(LENGTH_BUCKETS))
    counts = []
    for k, ((scorer, _), group) in enumerate(groups.items()):
        stats = [mean_std(seed_values(group, "test", "bleu_by_length", b)) for b in LENGTH_BUCKETS]
        mean = np.array([m for m, _, _ in stats])
        std = np.array([sd for _, sd, _ in stats])
        counts += [n for _, _, n in stats if n]
        ax.errorbar(x + 0.04 * _dodge(k, len(groups)), mean, yerr=std, color=scorer_color(scorer), marker="o",
                    capsize=3, label=scorer, linestyle="-" if _attends(scorer) else "--")
    ax.set_xticks(x, labels=list(LENGTH_BUCKETS))
    ax.set_xlabel("source sentence length (words)")
    ax.set_ylabel("test BLEU")
    ax.set_title(f"Test BLEU by source length, hidden size {hidden_size} ({_num_seeds_note(counts)})",
                 fontsize=10)
    ax.grid(alpha=0.3)
    _legend(ax)
    return _save(fig, out_dir, "bleu_by_length")


def plot_aer(trials: Sequence[Trial], out_dir: Path, hidden_size: int) -> list[Path]:
    """Figure 3: test AER per scorer (bars, seed std as error bars). Scorers without AER
    (`none`: no attention, aer null) are omitted and named in the title."""
    fig = plots.new_figure()
    ax = fig.add_subplot()
    groups = group_trials(t for t in trials if t.hidden_size == hidden_size)
    names, means, stds, counts, omitted = [], [], [], [], []
    for (scorer, _), group in groups.items():
        mean, std, n = mean_std(seed_values(group, "test", "aer"))
        if n == 0:
            omitted.append(scorer)
            continue
        names.append(scorer)
        means.append(mean)
        stds.append(std)
        counts.append(n)
    x = np.arange(len(names))
    bars = ax.bar(x, means, yerr=stds, capsize=4, color=[scorer_color(s) for s in names],
                  edgecolor="black", linewidth=0.5)
    ax.bar_label(bars, labels=[f"{m:.3f}" for m in means], padding=3, fontsize=8)
    ax.set_xticks(x, labels=names)
    ax.set_xlabel("scorer")
    ax.set_ylabel("test AER (lower is better)")
    ax.set_ylim(0.0, min(1.05, max([m + s for m, s in zip(means, stds)] + [0.1]) * 1.2))
    title = f"Alignment error rate, hidden size {hidden_size} ({_num_seeds_note(counts)})"
    if omitted:
        title += f"\nomitted (no attention, no AER): {', '.join(omitted)}"
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out_dir, "aer")


def plot_running_example(trials: Sequence[Trial], out_dir: Path, hidden_size: int) -> list[Path]:
    """Figure 4: attention heatmaps of the running example, one panel per scorer (of the trials
    of each scorer at `hidden_size`, the one with the smallest seed; that seed's file). Scorers
    with no attention file or null attention (`none`) are named in the title instead."""
    panels, missing = [], []
    for (scorer, _), group in group_trials(t for t in trials if t.hidden_size == hidden_size).items():
        trial = min(group, key=_first_seed)
        path = running_example_file(trial)
        data = _read_json(path) if path else {}
        if data.get("attention") is None:
            missing.append(scorer)
            continue
        attention, src, tgt = plots.fit_labels(data["attention"], data["src"], data["tgt"])
        panels.append((scorer, attention, src, tgt, path))
    ncols = max(1, min(3, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig = plots.new_figure(3.4 * ncols + 0.8, 3.0 * nrows + 0.6)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    image = None
    for ax, (scorer, attention, src, tgt, path) in zip(axes, panels):
        image = plots.draw_heatmap(ax, attention, src, tgt)
        seed = path.stem.removeprefix("running_example").removeprefix("_seed") or "?"
        ax.set_title(f"{scorer} (seed {seed})", color=scorer_color(scorer), fontsize=10, fontweight="bold")
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=list(axes[: len(panels)]), label="attention weight", shrink=0.8)
    src_text = " ".join(panels[0][2]) if panels else RUNNING_EXAMPLE.src
    title = f'Attention on "{src_text}", hidden size {hidden_size}'
    if missing:
        title += f"\nno heatmap (no attention): {', '.join(missing)}"
    fig.suptitle(title, fontsize=11)
    return _save(fig, out_dir, "running_example")


def learning_curve(trials: Iterable[Trial], split: str = "valid", key: str = "bleu") -> tuple[
        np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, std) of `key` over seeds at each logged step of `split` rows. A step logged
    twice for one seed (a resumed run) keeps its last row."""
    latest: dict[tuple[int, Any, int], float] = {}
    for i, t in enumerate(trials):
        for row in t.metrics:
            if row.get("split") == split and row.get(key) is not None:
                latest[(i, row.get("seed"), int(row["step"]))] = float(row[key])
    by_step: dict[int, list[float]] = defaultdict(list)
    for (_, _, step), value in latest.items():
        by_step[step].append(value)
    steps = np.array(sorted(by_step), dtype=int)
    stats = [mean_std(by_step[s]) for s in steps]
    return steps, np.array([m for m, _, _ in stats]), np.array([sd for _, sd, _ in stats])


def _curves(trials: Sequence[Trial], out_dir: Path, hidden_size: int, key: str, label: str,
            name: str, skip: Sequence[str] = ()) -> list[Path]:
    """Valid `key` vs training step, one line per scorer (mean over seeds, band = std)."""
    fig = plots.new_figure()
    ax = fig.add_subplot()
    for (scorer, _), group in group_trials(t for t in trials if t.hidden_size == hidden_size).items():
        steps, mean, std = learning_curve(group, key=key)
        if steps.size == 0 or scorer in skip:
            continue
        color = scorer_color(scorer)
        ax.plot(steps, mean, color=color, label=scorer, marker="." if steps.size < 30 else None,
                linestyle="-" if _attends(scorer) else "--")
        ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.12, linewidth=0)
    ax.set_xlabel("training step")
    ax.set_ylabel(label)
    ax.set_title(f"{label} during training, hidden size {hidden_size} (mean over seeds, band = "
                 "± std)", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        _legend(ax)
    return _save(fig, out_dir, name)


def plot_learning_curves(trials: Sequence[Trial], out_dir: Path, hidden_size: int) -> list[Path]:
    """Figure 5: valid BLEU vs training step, one line per scorer (mean over seeds, band = std)."""
    return _curves(trials, out_dir, hidden_size, "bleu", "valid BLEU", "learning_curves")


def plot_aer_curves(trials: Sequence[Trial], out_dir: Path, hidden_size: int) -> list[Path]:
    """Figure 6: valid AER vs training step per scorer: alignment emerging with no alignment
    supervision (`none` has no attention and is omitted)."""
    return _curves(trials, out_dir, hidden_size, "aer", "valid AER", "aer_curves",
                   skip=tuple(name for name in attention.SCORERS if not _attends(name)))


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

_TABLE_COLUMNS = (("BLEU", "bleu", 2), ("AER", "aer", 3), ("perplexity", "perplexity", 2))


def format_mean_std(mean: float, std: float, n: int, digits: int, pm: str = "±", missing: str = "—") -> str:
    """ "12.34 ± 0.56"; only the mean for a single seed; `missing` when there are no values."""
    if n == 0:
        return missing
    if n == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} {pm} {std:.{digits}f}"


def _steps_cell(group: Sequence[Trial]) -> str:
    """Steps each trial trained, with the step its test metrics come from: "3800 (3200), ..."
    (trials in order of their first seed; "—" where results.json does not say)."""
    cells = []
    for t in sorted(group, key=_first_seed):
        steps, best = t.results.get("num_steps"), t.results.get("evaluated_step")
        cells.append("—" if steps is None else f"{steps}" + ("" if best is None else f" ({best})"))
    return ", ".join(cells)


def table_rows(trials: Sequence[Trial], split: str = "test") -> list[dict[str, Any]]:
    """One row per (scorer, hidden size): {"scorer", "hidden_size", "seeds", "bleu": (mean, std,
    n), ..., "bleu_by_length": {bucket: (mean, std, n)}, "steps": str, "minutes": (mean, std, n)}
    with minutes per trial (a trial trains all its vmapped seeds)."""
    rows = []
    for (scorer, hidden), group in group_trials(trials).items():
        row: dict[str, Any] = {"scorer": scorer, "hidden_size": hidden}
        for _, key, _ in _TABLE_COLUMNS:
            row[key] = mean_std(seed_values(group, split, key))
        row["seeds"] = len(seed_values(group, split))
        row["bleu_by_length"] = {b: mean_std(seed_values(group, split, "bleu_by_length", b))
                                 for b in LENGTH_BUCKETS}
        row["steps"] = _steps_cell(group)
        row["minutes"] = mean_std(t.results["wall_seconds"] / 60 for t in group
                                  if t.results.get("wall_seconds") is not None)
        rows.append(row)
    return rows


def _latex_escape(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("&", r"\&").replace("%", r"\%")


def _md_table(header: Sequence[str], body: Iterable[Sequence[str]], labels: int = 3) -> list[str]:
    """A Markdown table whose first `labels` columns are left-aligned, the rest right-aligned."""
    rule = "|" + "|".join(["---"] * labels + ["---:"] * (len(header) - labels)) + "|"
    return ["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(c) + " |" for c in body]


def _tex_table(header: Sequence[str], body: Iterable[Sequence[str]], caption: str,
               label: str) -> list[str]:
    """A booktabs LaTeX table (cells already escaped; header and caption escaped here)."""
    caption = _latex_escape(caption).replace("±", r"$\pm$").replace("—", "--")
    return ([r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
             r"\toprule", " & ".join(_latex_escape(h) for h in header) + r" \\", r"\midrule"]
            + [" & ".join(c) + r" \\" for c in body]
            + [r"\bottomrule", r"\end{tabular}",
               rf"\caption{{{caption}}}",
               rf"\label{{{label}}}", r"\end{table}"])


def write_tables(trials: Sequence[Trial], out_dir: Path, skipped: Sequence[Path] = (),
                 split: str = "test") -> list[Path]:
    """Writes tables.md and tables.tex (needs \\usepackage{booktabs}): scorer x hidden size,
    columns BLEU, AER, perplexity as mean ± std over seeds (sample std), the seed count, steps
    trained (best step) per trial and minutes per trial; then BLEU per source-length bucket."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = table_rows(trials, split)
    note = (f"{split.capitalize()} split; mean ± std over seeds (sample std, ddof=1; a single seed "
            f"shows the value only). AER is a fraction (lower is better); — marks no value "
            f"(scorer none has no attention, hence no AER). Steps: steps each trial trained, with "
            f"the step of the checkpoint its metrics come from in parentheses; minutes: wall time "
            f"per trial (training, evaluations and the final evaluation; a resumed trial's "
            f"earlier invocations included, up to the checkpoint it resumed from).")
    length_note = f"{split.capitalize()} BLEU by source length in words; mean ± std over seeds."
    headers = (["scorer", "hidden", "seeds"] + [name for name, _, _ in _TABLE_COLUMNS]
               + ["steps (best)", "minutes"])
    length_headers = ["scorer", "hidden", "seeds"] + [f"{b} words" for b in LENGTH_BUCKETS]

    def cells(r: dict[str, Any], pm: str, missing: str, text=lambda x: x) -> tuple[list, list]:
        head = [text(r["scorer"]), str(r["hidden_size"]), str(r["seeds"])]
        main = head + [format_mean_std(*r[key], digits, pm, missing) for _, key, digits in _TABLE_COLUMNS]
        main += [text(r["steps"]).replace("—", missing), format_mean_std(*r["minutes"], 1, pm, missing)]
        by_length = head + [format_mean_std(*r["bleu_by_length"][b], 1, pm, missing) for b in LENGTH_BUCKETS]
        return main, by_length

    md_cells = [cells(r, "±", "—") for r in rows]
    md = _md_table(headers, [m for m, _ in md_cells]) + ["", note, ""]
    md += _md_table(length_headers, [b for _, b in md_cells]) + ["", length_note]
    if skipped:
        md += ["", "Skipped unfinished trials (no results.json): " + ", ".join(f"`{p}`" for p in skipped)]
    md_path = out_dir / "tables.md"
    md_path.write_text("\n".join(md) + "\n")

    tex_cells = [cells(r, r"$\pm$", "--", _latex_escape) for r in rows]
    tex = _tex_table(headers, [m for m, _ in tex_cells], note, "tab:sweep") + [""]
    tex += _tex_table(length_headers, [b for _, b in tex_cells], length_note, "tab:sweep_length")
    tex_path = out_dir / "tables.tex"
    tex_path.write_text("\n".join(tex) + "\n")
    return [md_path, tex_path]


def write_seeds_csv(trials: Sequence[Trial], out_dir: Path, split: str = "test") -> list[Path]:
    """Writes seeds.csv: one row per seed (trials in table order), the values the tables average.

    Columns: scorer, hidden_size, seed, trial (folder name), the split's bleu, aer, perplexity,
    exact_match and bleu_<bucket> per source-length bucket, valid_bleu, then the trial's
    num_steps, evaluated_step and wall_seconds (shared by a trial's vmapped seeds). Missing values
    are empty cells.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    metric_keys = ("bleu", "aer", "perplexity", "exact_match")
    header = (["scorer", "hidden_size", "seed", "trial"] + list(metric_keys)
              + [f"bleu_{b}" for b in LENGTH_BUCKETS]
              + ["valid_bleu", "num_steps", "evaluated_step", "wall_seconds"])
    path = out_dir / "seeds.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for group in group_trials(trials).values():
            for t in sorted(group, key=_first_seed):
                for e in t.seed_entries():
                    values = ([t.scorer, t.hidden_size, e.get("seed"), t.path.name]
                              + [_dig(e, (split, k)) for k in metric_keys]
                              + [_dig(e, (split, "bleu_by_length", b)) for b in LENGTH_BUCKETS]
                              + [_dig(e, ("valid", "bleu"))]
                              + [t.results.get(k) for k in ("num_steps", "evaluated_step", "wall_seconds")])
                    writer.writerow(["" if v is None else v for v in values])
    return [path]


# ---------------------------------------------------------------------------------------------
# The arch x scorer grid (configs/sweeps/arch_scorer.py): the model families side by side
# ---------------------------------------------------------------------------------------------

_HEAD_NAME = re.compile(r"^L(\d+)H(\d+)$")  # attn_jax.eval.evaluate.head_name: 'L2H3', from 1.


def arch_color(arch: str) -> str:
    """The fixed colour of a model family (a stable fallback for unknown ones)."""
    if arch in ARCH_COLORS:
        return ARCH_COLORS[arch]
    return _EXTRA_COLORS[zlib.crc32(arch.encode()) % len(_EXTRA_COLORS)]


def _arch_rank(arch: str) -> tuple[int, str]:
    order = list(arch_lib.ARCHS)
    return (order.index(arch) if arch in order else len(order), arch)


def is_arch_grid(trials: Iterable[Trial]) -> bool:
    """True when a model family other than the RNN is in the sweep: its report then groups and
    labels every table and figure by arch (`make_arch_report`)."""
    return any(t.arch != DEFAULT_ARCH for t in trials)


def group_by_arch(trials: Iterable[Trial]) -> dict[tuple[str, str], list[Trial]]:
    """{(arch, scorer): trials}, in family order (attn_jax.model.arch.ARCHS), then scorer order."""
    groups: dict[tuple[str, str], list[Trial]] = defaultdict(list)
    for t in trials:
        groups[(t.arch, t.scorer)].append(t)
    return dict(sorted(groups.items(), key=lambda kv: (_arch_rank(kv[0][0]), _scorer_rank(kv[0][1]))))


def _head_key(name: str) -> tuple[int, int, str]:
    m = _HEAD_NAME.match(name)
    return (int(m[1]), int(m[2]), name) if m else (math.inf, math.inf, name)


def head_names(trials: Iterable[Trial], split: str = "test") -> list[str]:
    """Every cross-attention head with a per-head AER ('L1H1', ...) in any seed, layer by layer."""
    names = {h for t in trials for e in t.seed_entries()
             for h in (_dig(e, (split, "aer_by_head")) or {})}
    return sorted(names, key=_head_key)


def _seed_entries(group: Sequence[Trial]) -> list[dict[str, Any]]:
    """The group's seed entries, trials in order of their first seed."""
    return [e for t in sorted(group, key=_first_seed) for e in t.seed_entries()]


def _arch_steps_cell(group: Sequence[Trial]) -> str:
    """`_steps_cell`, with 'cap' on a trial that trained to its step cap (results.json
    max_steps) instead of stopping on a valid-BLEU plateau: "3800 (3200), 4688 (4600, cap)"."""
    cells = []
    for t in sorted(group, key=_first_seed):
        steps, best = t.results.get("num_steps"), t.results.get("evaluated_step")
        capped = steps is not None and steps == t.results.get("max_steps")
        inner = ", ".join(([] if best is None else [str(best)]) + (["cap"] if capped else []))
        cells.append("—" if steps is None else f"{steps}" + (f" ({inner})" if inner else ""))
    return ", ".join(cells)


def arch_rows(trials: Sequence[Trial], split: str = "test") -> list[dict[str, Any]]:
    """One row per (arch, scorer): {"arch", "scorer", "seeds", "bleu", "exact_match" (in %),
    "aer", "aer_best_head": (mean, std, n), "best_head": [each seed's best head], "aer_by_head":
    {head: (mean, std, n)}, "bleu_by_length": {bucket: (mean, std, n)}, "steps": str,
    "minutes": (mean, std, n)}. AER is the one the run reports for its attention: the RNN's
    attention, the Transformer's cross-attention averaged over every layer and head; the
    best-head AER is each seed's best single head (Transformer only)."""
    heads = head_names(trials, split)
    rows = []
    for (arch, scorer), group in group_by_arch(trials).items():
        entries = _seed_entries(group)
        exact = [_dig(e, (split, "exact_match")) for e in entries]
        rows.append({
            "arch": arch, "scorer": scorer, "seeds": len(entries),
            "bleu": mean_std(seed_values(group, split, "bleu")),
            "exact_match": mean_std(None if v is None else 100.0 * v for v in exact),
            "aer": mean_std(seed_values(group, split, "aer")),
            "aer_best_head": mean_std(seed_values(group, split, "aer_best_head")),
            "best_head": [h for e in entries for h in [_dig(e, (split, "best_head"))] if h],
            "aer_by_head": {h: mean_std(seed_values(group, split, "aer_by_head", h)) for h in heads},
            "bleu_by_length": {b: mean_std(seed_values(group, split, "bleu_by_length", b))
                               for b in LENGTH_BUCKETS},
            "steps": _arch_steps_cell(group),
            "minutes": mean_std(t.results["wall_seconds"] / 60 for t in group
                                if t.results.get("wall_seconds") is not None),
        })
    return rows


def write_arch_tables(trials: Sequence[Trial], out_dir: Path, hidden_size: int,
                      skipped: Sequence[Path] = (), left_out: Sequence[Path] = (),
                      split: str = "test") -> list[Path]:
    """Writes tables.md and tables.tex for an arch grid: arch x scorer with BLEU, exact match,
    AER (the Transformer's head-averaged, its best head's and which head), steps and minutes;
    BLEU by source length; and, for families with per-head attention, the AER of every
    cross-attention layer and head. Every cell is mean ± std over seeds."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = arch_rows(trials, split)
    heads = head_names(trials, split)
    label = ["arch", "scorer", "seeds"]
    headers = label + ["BLEU", "exact match %", "AER", "best-head AER", "best head",
                       "steps (best)", "minutes"]
    note = (f"{split.capitalize()} split, hidden size {hidden_size} (the Transformer's d_model); "
            f"mean ± std over seeds (sample std, ddof=1; a single seed shows the value only). "
            f"AER: of the RNN's attention, and of the Transformer's cross-attention averaged over "
            f"every layer and head; best-head AER: the mean over seeds of each seed's best single "
            f"head, and best head: that head per seed in seed order (L2H3: layer 2, head 3; "
            f"Transformer only). — marks no value. Steps: steps each trial trained, with the step "
            f"of the checkpoint its metrics come from in parentheses and 'cap' where it trained to "
            f"its step cap rather than stopping on a valid-BLEU plateau; minutes: wall time per "
            f"trial (all its vmapped seeds).")
    length_note = f"{split.capitalize()} BLEU by source length in words; mean ± std over seeds."
    head_rows = [r for r in rows if any(n for _, _, n in r["aer_by_head"].values())]
    head_note = (f"{split.capitalize()} AER of every cross-attention head (LxHy: layer x, head y, "
                 f"counted from 1), of the families that report it; mean ± std over seeds.")

    def tables(pm: str, missing: str, text=lambda x: x) -> list[tuple[list[str], list[list[str]], str]]:
        def cell(stat, digits):
            return format_mean_std(*stat, digits, pm, missing)

        def head(r):
            return [text(r["arch"]), text(r["scorer"]), str(r["seeds"])]

        main = [head(r) + [cell(r["bleu"], 2), cell(r["exact_match"], 1), cell(r["aer"], 3),
                           cell(r["aer_best_head"], 3), ", ".join(r["best_head"]) or missing,
                           text(r["steps"]).replace("—", missing), cell(r["minutes"], 1)]
                for r in rows]
        by_length = [head(r) + [cell(r["bleu_by_length"][b], 1) for b in LENGTH_BUCKETS]
                     for r in rows]
        out = [(headers, main, note),
               (label + [f"{b} words" for b in LENGTH_BUCKETS], by_length, length_note)]
        if head_rows:
            out.append((label + heads, [head(r) + [cell(r["aer_by_head"][h], 3) for h in heads]
                                        for r in head_rows], head_note))
        return out

    md: list[str] = []
    for header, body, caption in tables("±", "—"):
        md += _md_table(header, body) + ["", caption, ""]
    if left_out:
        md += ["Left out (another hidden size; pick it with --hidden_size): "
               + ", ".join(f"`{p}`" for p in left_out), ""]
    if skipped:
        md += ["Skipped unfinished trials (no results.json): " + ", ".join(f"`{p}`" for p in skipped), ""]
    md_path = out_dir / "tables.md"
    md_path.write_text("\n".join(md[:-1]) + "\n")
    tex: list[str] = []
    for (header, body, caption), name in zip(tables(r"$\pm$", "--", _latex_escape),
                                             ("tab:arch", "tab:arch_length", "tab:arch_heads")):
        tex += _tex_table(header, body, caption, name) + [""]
    tex_path = out_dir / "tables.tex"
    tex_path.write_text("\n".join(tex[:-1]) + "\n")
    return [md_path, tex_path]


def write_arch_seeds_csv(trials: Sequence[Trial], out_dir: Path, split: str = "test") -> list[Path]:
    """Writes seeds.csv for an arch grid: one row per seed (table order): arch, scorer,
    hidden_size, seed, trial (folder name), the split's bleu, exact_match, aer, aer_best_head,
    best_head, perplexity, bleu_<bucket>, aer_<head> per cross-attention head, valid_bleu, then
    the trial's num_steps, max_steps, evaluated_step and wall_seconds. Missing values are empty."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metric_keys = ("bleu", "exact_match", "aer", "aer_best_head", "best_head", "perplexity")
    trial_keys = ("num_steps", "max_steps", "evaluated_step", "wall_seconds")
    heads = head_names(trials, split)
    header = (["arch", "scorer", "hidden_size", "seed", "trial"] + list(metric_keys)
              + [f"bleu_{b}" for b in LENGTH_BUCKETS] + [f"aer_{h}" for h in heads]
              + ["valid_bleu", *trial_keys])
    path = out_dir / "seeds.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for group in group_by_arch(trials).values():
            for t in sorted(group, key=_first_seed):
                for e in t.seed_entries():
                    values = ([t.arch, t.scorer, t.hidden_size, e.get("seed"), t.path.name]
                              + [_dig(e, (split, k)) for k in metric_keys]
                              + [_dig(e, (split, "bleu_by_length", b)) for b in LENGTH_BUCKETS]
                              + [_dig(e, (split, "aer_by_head", h)) for h in heads]
                              + [_dig(e, ("valid", "bleu"))]
                              + [t.results.get(k) for k in trial_keys])
                    writer.writerow(["" if v is None else v for v in values])
    return [path]


def plot_arch_scorer(trials: Sequence[Trial], out_dir: Path, key: str, label: str, stem: str,
                     best_head: bool = False) -> list[Path]:
    """Test `key` per scorer (x), one marker per arch beside each other: mean with ± std error
    bars over seeds, each seed as a small dot. best_head: also each family's best single head
    (results.json aer_best_head; hollow markers), where it reports one."""
    groups = group_by_arch(trials)
    archs = sorted({a for a, _ in groups}, key=_arch_rank)
    scorers = sorted({s for _, s in groups}, key=_scorer_rank)
    fig = plots.new_figure(max(6.4, 1.3 * len(scorers) + 2.4), 4.2)
    ax = fig.add_subplot()
    series = [(arch, key, "o", "full", arch) for arch in archs]
    if best_head:
        series += [(arch, "aer_best_head", "D", "none", f"{arch}, best head") for arch in archs]
    counts, omitted, drawn = [], [], []
    for arch, field, marker, fill, name in series:
        points = []  # (scorer index, seed values)
        for i, scorer in enumerate(scorers):
            values = [v for v in seed_values(groups.get((arch, scorer), []), "test", field)
                      if v is not None and math.isfinite(v)]
            if values:
                points.append((i, values))
            elif field == key:
                omitted.append(f"{arch} {scorer}")
        if points:  # A family without best-head values gets no series (and no gap).
            drawn.append((arch, marker, fill, name, points))
    for k, (arch, marker, fill, name, points) in enumerate(drawn):
        xs, means, stds, dots = [], [], [], []
        for i, values in points:
            mean, std, n = mean_std(values)
            x = i + 0.12 * _dodge(k, len(drawn))
            xs.append(x)
            means.append(mean)
            stds.append(std)
            counts.append(n)
            dots += [(x, v) for v in values]
        color = arch_color(arch)
        ax.errorbar(xs, means, yerr=stds, color=color, marker=marker, fillstyle=fill,
                    linestyle="none", capsize=4, markersize=7, label=name)
        ax.scatter([x for x, _ in dots], [v for _, v in dots], s=9, color=color, alpha=0.5,
                   linewidths=0, zorder=3)
    ax.set_xticks(np.arange(len(scorers)), labels=scorers)
    ax.set_xlim(-0.6, len(scorers) - 0.4)
    ax.set_xlabel("scorer (the RNN's attention; the Transformer's cross-attention)")
    ax.set_ylabel(label)
    title = f"{label} by model and scorer ({_num_seeds_note(counts)}; dots: seeds)"
    if omitted:
        title += f"\nno value: {', '.join(omitted)}"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="model", fontsize=8, title_fontsize=9, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return _save(fig, out_dir, stem)


def plot_bleu_by_length_by_arch(trials: Sequence[Trial], out_dir: Path) -> list[Path]:
    """Test BLEU per source-length bucket, one panel per arch, one line per scorer."""
    groups = group_by_arch(trials)
    archs = sorted({a for a, _ in groups}, key=_arch_rank)
    fig = plots.new_figure(4.2 * len(archs) + 1.4, 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(archs), sharey=True, squeeze=False)).ravel()
    x = np.arange(len(LENGTH_BUCKETS))
    counts = []
    for ax, arch in zip(axes, archs):
        mine = [(scorer, group) for (a, scorer), group in groups.items() if a == arch]
        for k, (scorer, group) in enumerate(mine):
            stats = [mean_std(seed_values(group, "test", "bleu_by_length", b)) for b in LENGTH_BUCKETS]
            counts += [n for _, _, n in stats if n]
            ax.errorbar(x + 0.04 * _dodge(k, len(mine)), [m for m, _, _ in stats],
                        yerr=[sd for _, sd, _ in stats], color=scorer_color(scorer), marker="o",
                        capsize=3, label=scorer, linestyle="-" if _attends(scorer) else "--")
        ax.set_xticks(x, labels=list(LENGTH_BUCKETS))
        ax.set_xlabel("source sentence length (words)")
        ax.set_title(arch, color=arch_color(arch), fontsize=10, fontweight="bold")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test BLEU")
    _legend(axes[-1])
    fig.suptitle(f"Test BLEU by source length ({_num_seeds_note(counts)})", fontsize=11)
    return _save(fig, out_dir, "bleu_by_length")


def plot_aer_by_head(trials: Sequence[Trial], out_dir: Path) -> list[Path]:
    """Test AER of every cross-attention layer (rows) and head (columns), mean over seeds, one
    panel per (arch, scorer) that reports per-head AER (the Transformer's); the best head of the
    mean is boxed, the head-averaged map's AER is in the panel title. Nothing is written when
    no trial reports per-head AER."""
    panels = []
    for (arch, scorer), group in group_by_arch(trials).items():
        heads = head_names(group)
        if not heads:
            continue
        keys = [_head_key(h) for h in heads]
        layers, per_layer = max(k[0] for k in keys), max(k[1] for k in keys)
        grid = np.full((layers, per_layer), np.nan)
        for (layer, head, name) in keys:
            grid[layer - 1, head - 1] = mean_std(seed_values(group, "test", "aer_by_head", name))[0]
        mean, _, n = mean_std(seed_values(group, "test", "aer"))
        panels.append((arch, scorer, grid, mean, n))
    if not panels:
        return []
    several = len({arch for arch, *_ in panels}) > 1
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = plots.new_figure(2.9 * ncols + 1.0, 2.4 * nrows + 0.8)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    top = max(float(np.nanmax(g)) for _, _, g, _, _ in panels)
    image = None
    for ax, (arch, scorer, grid, mean, n) in zip(axes, panels):
        image = ax.imshow(grid, cmap="viridis_r", vmin=0.0, vmax=max(top, 1e-6), aspect="auto")
        for (r, c), value in np.ndenumerate(grid):
            if math.isfinite(value):
                ax.text(c, r, f"{value:.3f}", ha="center", va="center", fontsize=7,
                        color="white" if value > 0.6 * top else "black")
        best = np.unravel_index(np.nanargmin(grid), grid.shape)
        ax.add_patch(matplotlib.patches.Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1,
                                                  fill=False, edgecolor="red", linewidth=1.5))
        ax.set_xticks(range(grid.shape[1]), labels=[f"H{h + 1}" for h in range(grid.shape[1])])
        ax.set_yticks(range(grid.shape[0]), labels=[f"L{i + 1}" for i in range(grid.shape[0])])
        name = f"{arch} {scorer}" if several else scorer
        averaged = f"{mean:.3f}" if n else "—"
        ax.set_title(f"{name}\nhead-averaged map: {averaged}", color=scorer_color(scorer),
                     fontsize=9)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    fig.colorbar(image, ax=list(axes[:len(panels)]), label="test AER (lower is better)", shrink=0.8)
    counts = sorted({n for *_, n in panels})
    seeds = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    fig.suptitle(f"Test AER of every cross-attention layer and head (mean over {seeds} "
                 f"seed{'s' if counts[-1] != 1 else ''}; box: the best head)", fontsize=10)
    return _save(fig, out_dir, "aer_by_head")


def make_arch_report(trials: Sequence[Trial], out: Path, skipped: Sequence[Path] = (),
                     hidden_size: int | None = None) -> list[Path]:
    """The report of an arch grid (`is_arch_grid`) at one hidden size (`hidden_size`, default the
    largest present): every figure (PNG + PDF), tables.md/.tex and seeds.csv."""
    size = select_hidden_size(trials, hidden_size)
    left_out = [t.path for t in trials if t.hidden_size != size]
    trials = [t for t in trials if t.hidden_size == size]
    paths = plot_arch_scorer(trials, out, "bleu", "test BLEU", "bleu_by_arch_scorer")
    paths += plot_arch_scorer(trials, out, "aer", "test AER (lower is better)",
                              "aer_by_arch_scorer", best_head=True)
    paths += plot_bleu_by_length_by_arch(trials, out)
    paths += plot_aer_by_head(trials, out)
    paths += write_arch_tables(trials, out, size, skipped, left_out)
    paths += write_arch_seeds_csv(trials, out)
    return paths


# ---------------------------------------------------------------------------------------------
# README blocks: the measured figures of the READMEs, generated from committed result files
# ---------------------------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent
DOC_GLOBS = ("README.md", "experiments/*/README.md", "docs/*.md")
GENERATOR = "python -m attn_jax.report --readme"
_BLOCK = re.compile(r"<!-- generated:(?P<name>[A-Za-z0-9_]+) -->\n(?P<body>.*?)<!-- /generated -->",
                    re.DOTALL)

DEFAULT_RUN = "experiments/default_run/results"
BIDIRECTIONAL_RUN = "experiments/default_run/results/bidirectional"
SIDE_BY_SIDE = "experiments/benchmark/results/side_by_side/summary.json"
TEST_SUITE = "experiments/test_suite/results"
SWEEP_CONVERGED = "experiments/scorer_hidden/converged/tables.md"
SWEEP_H256_SEEDS = "experiments/scorer_hidden/converged/h256_seeds_1_2/seeds.csv"
SWEEP_250_STEPS = "experiments/scorer_hidden/tables.md"
ARCH_SCORER = "experiments/arch_scorer/tables.md"
LONG_INPUTS = ("experiments/benchmark/long_inputs_128_512.json",
               "experiments/benchmark/long_inputs_2048.json")


@dataclasses.dataclass(frozen=True)
class Block:
    """One generated README block: `render(root)` is its Markdown, computed from `sources`."""

    name: str
    sources: tuple[str, ...]  # the files it reads, relative to the repository root
    render: Callable[[Path], str]


def _source_line(*paths: str) -> str:
    return f"Source: {', '.join(f'`{p}`' for p in paths)} (tables written by `{GENERATOR}`)."


def _not_committed(*paths: str) -> str:
    return (f"Not measured in this tree yet: {', '.join(f'`{p}`' for p in paths)} "
            f"{'is' if len(paths) == 1 else 'are'} not committed. The command above writes "
            f"{'it' if len(paths) == 1 else 'them'}; `{GENERATOR}` then fills this block.")


def _md(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> list[str]:
    rule = align or "|" + "---|" * len(header)
    return ["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def _minutes_seconds(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def _bucket_label(bucket: str) -> str:
    return bucket.replace("-", "–")


# --- the default run -------------------------------------------------------------------------


def _train_speed(run_dir: Path) -> tuple[float, int] | None:
    """(median tokens_per_sec, number of windows) over train rows of metrics.jsonl, the first
    window (which holds the compiles) left out."""
    rows = [r for r in _read_jsonl(run_dir / "metrics.jsonl")
            if r.get("split") == "train" and r.get("tokens_per_sec") is not None]
    speeds = [float(r["tokens_per_sec"]) for r in rows[1:]]
    return (statistics.median(speeds), len(speeds)) if speeds else None


def render_default_run(root: Path) -> str:
    path = root / DEFAULT_RUN / "results.json"
    if not path.exists():
        return _not_committed(f"{DEFAULT_RUN}/results.json")
    r = _read_json(path)
    test, valid = r["test"], r.get("valid", {})
    n = int(test.get("num_sentences", 0))
    by_length = test.get("bleu_by_length", {})
    signature = str(test.get("bleu_signature", "")).replace("|", r"\|")
    rows = [(f"BLEU (sacreBLEU `{signature}`)", f"**{test['bleu']:.2f}**"),
            ("exact match", f"{100 * test['exact_match']:.1f}%"),
            ("AER (argmax attention against gold S/P links)",
             "—" if test.get("aer") is None else f"**{test['aer']:.3f}**"),
            ("perplexity", f"{test['perplexity']:.3f}"),
            ("BLEU by source length " + " / ".join(_bucket_label(b) for b in by_length),
             " / ".join("—" if v is None else f"{v:.1f}" for v in by_length.values()))]
    if valid:
        rows.append((f"valid BLEU / AER ({int(valid.get('num_sentences', 0)):,} sentences)",
                     f"{valid['bleu']:.2f} / "
                     + ("—" if valid.get("aer") is None else f"{valid['aer']:.3f}")))
    example = r.get("running_example") or {}
    if example:
        rows.append(("running example (held out)", f"\"{example.get('src')}\" → \"{example.get('hyp')}\""))
    if r.get("num_steps") is not None:
        rows.append(("steps trained (metrics from step)",
                     f"{r['num_steps']:,} ({r.get('evaluated_step', 0):,})"))
    speed = _train_speed(root / DEFAULT_RUN)
    if speed:
        rows.append(("training speed, median of the logged windows after the first",
                     f"{speed[0]:,.0f} real target tokens/s"))
    rows.append(("wall time of the whole command (`wall_seconds`)",
                 f"**{_minutes_seconds(r['wall_seconds'])}**"))
    seconds = r.get("seconds") or {}
    if seconds:
        rows.append(("where it went (`seconds`)", ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())))
    lines = _md([f"metric (test, {n:,} sentences)", "value"], rows)
    sources = _source_line(f"{DEFAULT_RUN}/results.json", f"{DEFAULT_RUN}/metrics.jsonl")
    return "\n".join(lines + ["", sources])


def render_encoder_direction(root: Path) -> str:
    runs = [("forward (the default)", DEFAULT_RUN), ("bidirectional", BIDIRECTIONAL_RUN)]
    present = [(label, d) for label, d in runs if (root / d / "results.json").exists()]
    missing = [f"{d}/results.json" for label, d in runs if (label, d) not in present]
    if not present:
        return _not_committed(*missing)
    rows = []
    for label, d in present:
        r = _read_json(root / d / "results.json")
        t = r["test"]
        by_length = t.get("bleu_by_length", {})
        rows.append((label, f"{t['bleu']:.2f}", f"{100 * t['exact_match']:.1f}%",
                     "—" if t.get("aer") is None else f"{t['aer']:.3f}",
                     " / ".join("—" if v is None else f"{v:.1f}" for v in by_length.values()),
                     _minutes_seconds(r["wall_seconds"])))
    lines = _md(["encoder", "test BLEU", "exact match", "test AER", "BLEU by source length "
                 + " / ".join(_bucket_label(b) for b in LENGTH_BUCKETS), "whole command"], rows)
    if missing:
        lines += ["", _not_committed(*missing)]
    return "\n".join(lines + ["", _source_line(*[f"{d}/results.json" for _, d in present])])


# --- the scorer x hidden sweep ---------------------------------------------------------------


@dataclasses.dataclass
class SweepTable:
    """tables.md as `write_tables` writes it: the main table and the BLEU-by-length table,
    each {(scorer, hidden): row cells} with the header."""

    header: list[str]
    rows: dict[tuple[str, int], list[str]]
    length_header: list[str]
    length_rows: dict[tuple[str, int], list[str]]


def _md_tables(text: str) -> list[list[list[str]]]:
    """The Markdown tables of `text`, each a list of rows of cells (the rule line dropped)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def read_sweep_tables(path: Path) -> SweepTable:
    tables = _md_tables(path.read_text())
    main, *rest = tables
    length = next((t for t in rest if any("words" in h for h in t[0])), [main[0]])
    return SweepTable(main[0], {(r[0], int(r[1])): r for r in main[1:]},
                      length[0], {(r[0], int(r[1])): r for r in length[1:]})


def _parse_mean_std(cell: str) -> tuple[float, float | None]:
    mean, _, std = cell.partition("±")
    return float(mean), (float(std) if std.strip() else None)


def _converged_tables(root: Path):
    """The converged grid's committed tables.md (None when it is not committed)."""
    path = root / SWEEP_CONVERGED
    return read_sweep_tables(path) if path.exists() else None


def render_sweep_h128(root: Path) -> str:
    t = _converged_tables(root)
    if t is None:
        return _not_committed(SWEEP_CONVERGED)
    rows = [r for (_, h), r in t.rows.items() if h == 128]
    length_rows = [r for (_, h), r in t.length_rows.items() if h == 128]
    right = "|---|---|---|" + "---:|" * (len(t.header) - 3)
    lines = _md(t.header, rows, right) + ["", "BLEU by source length in words:", ""]
    lines += _md(t.length_header, length_rows, "|---|---|---|" + "---:|" * (len(t.length_header) - 3))
    return "\n".join(lines + ["", _source_line(SWEEP_CONVERGED)])


def render_sweep_summary(root: Path) -> str:
    """The README's summary: hidden 128, test BLEU, AER and the shortest and longest buckets."""
    t = _converged_tables(root)
    if t is None:
        return _not_committed(SWEEP_CONVERGED)
    col = {h: i for i, h in enumerate(t.header)}
    lcol = {h: i for i, h in enumerate(t.length_header)}
    first, last = f"{LENGTH_BUCKETS[0]} words", f"{LENGTH_BUCKETS[-1]} words"
    rows = []
    for key, r in t.rows.items():
        if key[1] != 128:
            continue
        lr = t.length_rows.get(key)
        rows.append((f"`{key[0]}`", r[col["seeds"]], r[col["BLEU"]], r[col["AER"]],
                     lr[lcol[first]] if lr else "—", lr[lcol[last]] if lr else "—"))
    lines = _md(["scorer (hidden 128)", "seeds", "test BLEU", "test AER", f"BLEU {_bucket_label(first)}",
                 f"BLEU {last}"], rows, "|---|---:|---:|---:|---:|---:|")
    return "\n".join(lines + ["", _source_line(SWEEP_CONVERGED)])


def render_bottleneck(root: Path) -> str:
    """Test BLEU by source length with and without attention, at hidden 128 and 256."""
    t = _converged_tables(root)
    if t is None:
        return _not_committed(SWEEP_CONVERGED)
    col = {h: i for i, h in enumerate(t.header)}
    rows = []
    for hidden in (128, 256):
        for scorer in ("additive", "none"):
            r, lr = t.rows.get((scorer, hidden)), t.length_rows.get((scorer, hidden))
            if r is None or lr is None:
                continue
            note = "" if _attends(scorer) else " (no attention: the encoder's last state only)"
            label = f"`{scorer}`{note}"
            rows.append([label, str(hidden), r[col["seeds"]], *lr[3:], r[col["BLEU"]]])
    header = ["test BLEU", "hidden", "seeds", *(_bucket_label(b) for b in LENGTH_BUCKETS), "all"]
    lines = _md(header, rows, "|---|---:|---:|" + "---:|" * (len(LENGTH_BUCKETS) + 1))
    return "\n".join(lines + ["", _source_line(SWEEP_CONVERGED)])


def _seeds_csv(path: Path) -> dict[tuple[str, int], list[dict[str, str]]]:
    out: dict[tuple[str, int], list[dict[str, str]]] = defaultdict(list)
    if path.exists():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                out[(row["scorer"], int(row["hidden_size"]))].append(row)
    return out


def render_sweep_sizes(root: Path) -> str:
    """Test BLEU per scorer and hidden size. Cells that tables.md holds for one seed (0) and
    seeds.csv for more are pooled: seed 0's value as tables.md rounds it, the others' in full."""
    t = _converged_tables(root)
    if t is None:
        return _not_committed(SWEEP_CONVERGED)
    extra = _seeds_csv(root / SWEEP_H256_SEEDS)
    col = {h: i for i, h in enumerate(t.header)}
    lcol = {h: i for i, h in enumerate(t.length_header)}
    last = f"{LENGTH_BUCKETS[-1]} words"
    sizes = sorted({h for _, h in t.rows})
    scorers = sorted({s for s, _ in t.rows}, key=_scorer_rank)
    rows, notes = [], []
    for scorer in scorers:
        bleu_cells, aer_cells = [], []
        for h in sizes:
            r = t.rows.get((scorer, h))
            if r is None:
                bleu_cells.append("—")
                aer_cells.append("—")
                continue
            more = extra.get((scorer, h), [])
            if r[col["seeds"]] == "1" and more:
                pooled = {}
                for key, table_cell, digits in (("bleu", r[col["BLEU"]], 2), ("aer", r[col["AER"]], 3),
                                                ("bleu_41+", t.length_rows[(scorer, h)][lcol[last]], 1)):
                    values = [float(table_cell)] + [float(m[key]) for m in more if m.get(key)]
                    pooled[key] = (values, format_mean_std(*mean_std(values), digits))
                bleu_cells.append(pooled["bleu"][1] + "¹")
                aer_cells.append(pooled["aer"][1].partition(" ±")[0])
                notes.append(f"{scorer} " + " / ".join(f"{v:.2f}" for v in pooled["bleu"][0])
                             + " (AER " + " / ".join(f"{v:.3f}" for v in pooled["aer"][0])
                             + f"; {last}: {pooled['bleu_41+'][1]})")
            else:
                bleu_cells.append(r[col["BLEU"]])
                aer_cells.append(r[col["AER"]].partition(" ±")[0])
        aer = "—" if all(a == "—" for a in aer_cells) else " / ".join(aer_cells)
        rows.append([scorer, *bleu_cells, aer])
    header = ["scorer", *map(str, sizes), "AER at " + " / ".join(map(str, sizes))]
    lines = _md(header, rows, "|---|" + "---:|" * len(sizes) + "---|")
    if notes:
        lines += ["", "¹ Seed 0 from `" + SWEEP_CONVERGED + "` (its one-seed rows, as rounded there), "
                  "further seeds from `" + SWEEP_H256_SEEDS + "`; mean ± sample std of the pooled seeds. "
                  "Per seed (0 / 1 / 2), test BLEU with AER in brackets: " + "; ".join(notes) + "."]
    return "\n".join(lines + ["", _source_line(SWEEP_CONVERGED, SWEEP_H256_SEEDS)])


def render_sweep_250(root: Path) -> str:
    path = root / SWEEP_250_STEPS
    if not path.exists():
        return _not_committed(SWEEP_250_STEPS)
    t = read_sweep_tables(path)
    rows = [r for (_, h), r in t.rows.items() if h == 256]
    lines = _md(t.header, rows, "|---|---|---|" + "---:|" * (len(t.header) - 3))
    return "\n".join(lines + ["", _source_line(SWEEP_250_STEPS)])


# --- the benchmark ---------------------------------------------------------------------------


def _machine(head: dict[str, Any]) -> str:
    """The machine a benchmark JSON was measured on, in one line (`attn_jax.run.measure.machine_info`
    fields, or the older JSON's host / jax / load_average)."""
    parts = [str(head[k]) for k in ("cpu_model", "host") if head.get(k)]
    flags = head.get("cpu_flags")
    if isinstance(flags, dict):
        flags = [f for f, present in flags.items() if present]
    if flags:
        parts.append("flags " + ", ".join(flags) if isinstance(flags, list) else str(flags))
    if head.get("logical_cpus"):
        parts.append(f"{head['logical_cpus']} logical CPUs"
                     + (f" ({head['physical_cores']} cores)" if head.get("physical_cores") else ""))
    threads = {k: v for k, v in (head.get("thread_env") or {}).items() if v}
    if threads:
        parts.append(", ".join(f"{k}={v}" for k, v in threads.items()))
    versions = dict(head.get("versions") or {})
    for key in ("jax", "torch"):
        if head.get(key):
            versions.setdefault(key, head[key])
    if versions:
        parts.append(", ".join(f"{k} {v}" for k, v in versions.items() if v))
    for key, label in (("load_average", "load average"), ("load_average_start", "load average at start"),
                       ("load_average_end", "at end")):
        if head.get(key):
            parts.append(f"{label} " + " / ".join(f"{x:.1f}" for x in head[key]))
    return "; ".join(parts)


def render_long_inputs(root: Path) -> str:
    present = [p for p in LONG_INPUTS if (root / p).exists()]
    if not present:
        return _not_committed(*LONG_INPUTS)
    gib = 2.0**30
    results = [_read_json(root / p) for p in present]
    rows, step = [], {}
    for res in results:
        for case in res.get("additive", []):
            length = f"{case['length']:,}"
            if not case.get("measured", True):
                rows.append((length, case["impl"], "not measured", "", "not measured (no GPU/TPU: the "
                             "kernel only runs interpreted on CPU)", ""))
                continue
            step[(case["impl"], case["length"])] = case["step_s"]
            rows.append((length, case["impl"], f"{case['xla_bytes'] / gib:.3f}",
                         f"{case['naive_tanh_bytes'] / gib:.2f}",
                         ("not run (over `--long_max_gib`)" if case["step_s"] is None
                          else f"{case['step_s']:.2f} s"),
                         f"{case['compile_s']:.1f} s"))
    lines = _md(["S = T", "impl", "XLA GiB", "one tanh GiB", "fwd + bwd step", "compile"], rows)
    lines += ["", "Measured on: " + " | ".join(f"`{p}`: {_machine(r)}" for p, r in zip(present, results))]
    targets = []
    chunked_2048 = [c for r in results for c in r.get("additive", [])
                    if c.get("impl") == "chunked" and c.get("length") == 2048]
    xla_2048 = [c for r in results for c in r.get("additive", [])
                if c.get("impl") == "xla" and c.get("length") == 2048]
    if chunked_2048:
        plain = f" (xla: {xla_2048[0]['xla_bytes'] / gib:.1f} GiB)" if xla_2048 else ""
        targets.append(("additive S = T = 2,048, A = 512, B = 8, fwd + bwd < 2 GiB with `chunked`",
                        f"**{chunked_2048[0]['xla_bytes'] / gib:.2f} GiB** compiled{plain}"))
    if step.get(("chunked", 128)) and step.get(("xla", 128)):
        ratio = step[("chunked", 128)] / step[("xla", 128)]
        targets.append(("`chunked` within 1.5× the plain step time at S = T = 128",
                        f"**{ratio:.2f}×** ({step[('chunked', 128)]:.2f} s against "
                        f"{step[('xla', 128)]:.2f} s)"))
    train = next((r["training"] for r in results if r.get("training")), None)
    if train:
        losses = " → ".join(f"{x:.3f}" for x in train["losses"])
        targets.append((f"Bahdanau-flow training at S = T = {train['length']}, B = {train['batch']}, hidden "
                        f"{train['model']['decoder_hidden']} within 4 GiB",
                        f"**{train['xla_step_bytes'] / gib:.2f} GiB** compiled step; "
                        f"loss per token {losses}"))
        words = f"{train['mean_src_words']:.0f} / {train['mean_tgt_words']:.0f}"
        lines += ["", f"Training check: documents of {words} "
                  f"source / target words on average, compile {train['compile_s']:.1f} s, steps "
                  + ", ".join(f"{s:.1f}" for s in train["step_s"])
                  + f" s; peak resident memory of the process {train['host_peak_rss_bytes'] / gib:.2f} GiB."]
    if targets:
        lines += [""] + _md(["target (issue 13)", "result"], targets)
    return "\n".join(lines + ["", _source_line(*present)])


def render_side_by_side(root: Path) -> str:
    """The equal-model ratio first: rounds whose PyTorch reference ran with `--head deep`, from the
    summary.json that experiments/benchmark/side_by_side.sh writes."""
    path = root / SIDE_BY_SIDE
    if not path.exists():
        return _not_committed(SIDE_BY_SIDE)
    s = _read_json(path)
    rows = sorted(s["rows"], key=lambda r: (r["torch_head"] != "deep", r["round"]))
    lines = _md(["PyTorch reference (`torch_ref.py --head`)", "round", "PyTorch real target tokens/s",
                 "attn_jax real target tokens/s", "ratio",
                 "attn_jax % of f32 matmul peak (real tokens)", "load (1 min) start / end"],
                [(f"`{r['torch_head']}`" + (" (the same model)" if r["torch_head"] == "deep" else ""),
                  str(r["round"]), f"{r['torch_tgt_tokens_per_s']:,.0f}",
                  f"{r['attn_jax_tgt_tokens_per_s']:,.0f}", f"**{r['ratio']:.2f}×**",
                  f"{100 * r['attn_jax_fraction_of_peak']:.0f}%",
                  f"{r['load_average_start'][0]:.1f} / {r['load_average_end'][0]:.1f}")
                 for r in rows])
    lines = [f"Measured on: {_machine(s['machine'])}; PyTorch {s['torch']} with "
             f"{s['reference_threads']} threads.", ""] + lines
    return "\n".join(lines + ["", _source_line(SIDE_BY_SIDE)])


# --- the test suite --------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s+(call|setup|teardown)\s+(\S+)")
_PYTEST_TOTAL = re.compile(r"^=+ (?P<counts>.*?) in (?P<seconds>\d+(?:\.\d+)?)s\b.*=+\s*$")


def render_test_suite(root: Path) -> str:
    folder = root / TEST_SUITE
    logs = sorted(p for p in folder.glob("*") if p.suffix in (".txt", ".log")) if folder.exists() else []
    if not logs:
        return _not_committed(f"{TEST_SUITE}/*.log")
    lines = []
    for log in logs:
        durations, total = [], None
        for line in log.read_text(errors="replace").splitlines():
            m = _DURATION.match(line)
            if m:
                durations.append((float(m.group(1)), m.group(2), m.group(3)))
            m = _PYTEST_TOTAL.match(line.strip())
            if m:
                total = m
        rel = log.relative_to(root).as_posix()
        if total is None:
            lines += [f"`{rel}`: no pytest summary line found.", ""]
            continue
        seconds = float(total["seconds"])
        lines += [f"`{rel}`: **{total['counts']}** in **{_minutes_seconds(seconds)}** "
                  f"(pytest's own count of the test part, install excluded).", ""]
        if durations:
            lines += _md(["slowest (`--durations`)", "phase", "test"],
                         [(f"{d:.2f} s", phase, f"`{name}`") for d, phase, name in durations[:10]],
                         "|---:|---|---|") + [""]
    return "\n".join(lines + [_source_line(*[p.relative_to(root).as_posix() for p in logs])])


def render_arch_scorer(root: Path) -> str:
    """The arch x scorer sweep's tables as the report wrote them (every table, every note)."""
    path = root / ARCH_SCORER
    if not path.exists():
        return _not_committed(ARCH_SCORER)
    return path.read_text().strip() + "\n\n" + _source_line(ARCH_SCORER)


BLOCKS: dict[str, Block] = {b.name: b for b in (
    Block("default_run", (f"{DEFAULT_RUN}/results.json", f"{DEFAULT_RUN}/metrics.jsonl"), render_default_run),
    Block("encoder_direction", (f"{DEFAULT_RUN}/results.json", f"{BIDIRECTIONAL_RUN}/results.json"),
          render_encoder_direction),
    Block("sweep_summary", (SWEEP_CONVERGED,), render_sweep_summary),
    Block("sweep_h128", (SWEEP_CONVERGED,), render_sweep_h128),
    Block("sweep_sizes", (SWEEP_CONVERGED, SWEEP_H256_SEEDS), render_sweep_sizes),
    Block("sweep_250_steps", (SWEEP_250_STEPS,), render_sweep_250),
    Block("bottleneck", (SWEEP_CONVERGED,), render_bottleneck),
    Block("arch_scorer", (ARCH_SCORER,), render_arch_scorer),
    Block("long_inputs", LONG_INPUTS, render_long_inputs),
    Block("side_by_side", (SIDE_BY_SIDE,), render_side_by_side),
    Block("test_suite", (TEST_SUITE,), render_test_suite),
)}


def doc_files(root: Path = REPO_ROOT) -> list[Path]:
    """README.md, experiments/*/README.md and docs/*.md under `root`."""
    return sorted({p for pattern in DOC_GLOBS for p in root.glob(pattern)})


def regenerate(text: str, root: Path = REPO_ROOT) -> str:
    """`text` with every generated block rendered afresh. Raises ValueError on an unknown block
    name or an opening marker without its closing one."""
    starts = len(re.findall(r"<!-- generated:", text))
    if starts != len(_BLOCK.findall(text)):
        raise ValueError("a <!-- generated:NAME --> marker without its <!-- /generated -->")

    def fill(m: re.Match) -> str:
        name = m["name"]
        if name not in BLOCKS:
            raise ValueError(f"unknown generated block {name!r}; known: {', '.join(BLOCKS)}")
        return f"<!-- generated:{name} -->\n{BLOCKS[name].render(root).strip()}\n<!-- /generated -->"

    return _BLOCK.sub(fill, text)


def stale_blocks(root: Path = REPO_ROOT) -> list[str]:
    """"path: block" for every generated block whose text differs from a fresh rendering."""
    stale = []
    for path in doc_files(root):
        text = path.read_text()
        fresh = {m["name"]: m.group(0) for m in _BLOCK.finditer(regenerate(text, root))}
        for m in _BLOCK.finditer(text):
            if m.group(0) != fresh[m["name"]]:
                stale.append(f"{path.relative_to(root).as_posix()}: {m['name']}")
    return stale


def write_readmes(root: Path = REPO_ROOT) -> list[Path]:
    """Rewrites every generated block in place; returns the files that changed."""
    changed = []
    for path in doc_files(root):
        text = path.read_text()
        fresh = regenerate(text, root)
        if fresh != text:
            path.write_text(fresh)
            changed.append(path)
    return changed


# --- figures in the prose --------------------------------------------------------------------

RESULT_SUFFIXES = (".json", ".jsonl", ".csv", ".md", ".tex", ".txt", ".log")
NOT_RESULTS = ("README.md", "UNBACKED.md")
# Decimal numbers in prose that are settings or names, not measurements: each phrase is removed
# before the check. Keep it short; a measured figure belongs in a result file.
PROSE_ALLOWLIST = (
    r"label smoothing 0\.1",
    r"length penalty 0\.6",
    r"min_delta`? \(?0\.1 BLEU",
    r"more than 0\.2 BLEU",
    r"Python 3\.\d+",
    r"CUDA 12(\.\d+)?",
)
_FIGURE = re.compile(r"(?<![\w.])\d[\d,]*\.\d+(?:\.\d+)*%?")


def result_files(root: Path = REPO_ROOT) -> list[Path]:
    """Committed result files: under experiments/, by suffix, READMEs and UNBACKED.md excluded."""
    return sorted(p for p in (root / "experiments").rglob("*")
                  if p.is_file() and p.suffix in RESULT_SUFFIXES and p.name not in NOT_RESULTS)


def _numbers_in(value: Any, out: list[float]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        out.append(float(value))
    elif isinstance(value, dict):
        for v in value.values():
            _numbers_in(v, out)
    elif isinstance(value, list):
        for v in value:
            _numbers_in(v, out)


def backed_figures(root: Path = REPO_ROOT, digits: Sequence[int] = (1, 2, 3, 4)) -> set[str]:
    """Every decimal string a committed result file holds: numbers written in its text, and each
    JSON number formatted to 1-4 decimals (and as a percentage of a fraction)."""
    figures: set[str] = set()
    values: list[float] = []
    for path in result_files(root):
        text = path.read_text(errors="replace")
        figures.update(m.group(0).rstrip("%").replace(",", "") for m in _FIGURE.finditer(text))
        if path.suffix == ".json":
            try:
                _numbers_in(json.loads(text), values)
            except json.JSONDecodeError:
                pass
        elif path.suffix == ".jsonl":
            for row in _read_jsonl(path):
                _numbers_in(row, values)
    for v in values:
        for d in digits:
            figures.add(f"{abs(v):.{d}f}")
            figures.add(f"{abs(100 * v):.{d}f}%")
    return figures


def prose(text: str) -> str:
    """`text` without generated blocks, fenced code, inline code, HTML comments and link targets."""
    text = _BLOCK.sub("", text)
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    for phrase in PROSE_ALLOWLIST:
        text = re.sub(phrase, "", text)
    return text


def unbacked_figures(root: Path = REPO_ROOT) -> list[str]:
    """"path:line: figure" for each decimal figure in the docs' prose that no committed result
    file holds (versions such as 2.6.0 are not figures)."""
    backed = backed_figures(root)
    found = []
    for path in doc_files(root):
        for line in prose(path.read_text()).splitlines():
            for m in _FIGURE.finditer(line):
                figure = m.group(0).replace(",", "")
                if figure.rstrip("%").count(".") > 1:
                    continue  # a version
                if figure in backed or figure.rstrip("%") in backed:
                    continue
                found.append(f"{path.relative_to(root).as_posix()}: {m.group(0)} (\"{line.strip()[:80]}\")")
    return found


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def make_all(sweep_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
             hidden_size: int | None = None) -> list[Path]:
    """Writes every sweep figure (PNG + PDF) and table; returns the paths written.

    `hidden_size` picks the size for the per-size figures (default: the largest present). A
    sweep with a model family other than the RNN (configs/sweeps/arch_scorer.py) gets the arch
    grid's report instead (`make_arch_report`, at that one size). Raises ValueError if the sweep
    has no finished trial. A captioning sweep (results with CIDEr) gets `caption_report`'s report.
    """
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir / "plots"
    trials = load_sweep(sweep_dir)
    if not trials:
        raise ValueError(f"no finished trial (folder with results.json) under {sweep_dir}")
    skipped = unfinished_trials(sweep_dir)
    from attn_jax import caption_report  # here: caption_report imports this module

    if caption_report.is_caption_sweep(trials):
        return caption_report.make_caption_report(trials, out, skipped)
    if is_arch_grid(trials):
        return make_arch_report(trials, out, skipped, hidden_size)
    size = select_hidden_size(trials, hidden_size)
    paths = plot_bleu_vs_hidden(trials, out)
    paths += plot_bleu_by_length(trials, out, size)
    paths += plot_aer(trials, out, size)
    paths += plot_running_example(trials, out, size)
    paths += plot_learning_curves(trials, out, size)
    paths += plot_aer_curves(trials, out, size)
    paths += write_tables(trials, out, skipped)
    paths += write_seeds_csv(trials, out)
    return paths


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("sweep_dir", None, "Sweep folder holding one subfolder per trial.")
    flags.DEFINE_bool("readme", False, "Rewrite the generated blocks of README.md, experiments/*/README.md "
                      "and docs/*.md from the committed result files.")
    flags.DEFINE_bool("check", False, "Exit 1, naming them, if a generated block is stale or a decimal "
                      "figure in the prose is in no committed result file.")
    flags.DEFINE_string("out_dir", None, "Output folder (default: SWEEP_DIR/plots).")
    flags.DEFINE_integer("hidden_size", None, "Hidden size for the per-size figures, and of the whole "
                         "report of an arch grid (default: largest).")


def main(argv: Sequence[str]) -> None:
    from absl import flags

    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {argv[1:]}")
    FLAGS = flags.FLAGS
    if FLAGS.readme or FLAGS.check:
        if FLAGS.readme:
            for path in write_readmes():
                print(f"rewrote {path.relative_to(REPO_ROOT)}")
        if FLAGS.check:
            problems = [f"stale block: {b}" for b in stale_blocks()]
            problems += [f"figure in no committed result file: {f}" for f in unbacked_figures()]
            for line in problems:
                print(line)
            if problems:
                raise SystemExit(f"{len(problems)} problem(s); `{GENERATOR}` rewrites the stale blocks")
        return
    if not FLAGS.sweep_dir:
        from absl import app

        raise app.UsageError("--sweep_dir is required (or --readme / --check)")
    for path in unfinished_trials(FLAGS.sweep_dir):
        print(f"skipped (no results.json): {path}")
    for path in make_all(FLAGS.sweep_dir, FLAGS.out_dir, FLAGS.hidden_size):
        print(path)


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
