"""The offline sweep report: comparison figures and tables rebuilt from finished run folders.

    python -m attn_jax.report --sweep_dir=runs/sweep [--out_dir=DIR] [--hidden_size=256]

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
Statistics are over seeds (results.json "seeds", pooled over trials sharing scorer and hidden
size); std is the sample standard deviation (ddof=1), shown only when there are >= 2 seeds.
Every scorer keeps one colour in every figure (`SCORER_COLORS`); heatmaps are drawn as
`attn_jax.plots` draws a run's own. Flags are defined only when run as a script.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging
from matplotlib.figure import Figure

from attn_jax import plots
from attn_jax.metrics import LENGTH_BUCKETS
from attn_jax.synthetic import RUNNING_EXAMPLE

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
}
_EXTRA_COLORS = ("#bcbd22", "#17becf", "#000000")  # for scorers not listed above
_SKIP_DIRS = {"checkpoints", "attention", "wandb", "plots", "__pycache__"}


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
                    linestyle="--" if scorer == "none" else "-")
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
                    capsize=3, label=scorer, linestyle="--" if scorer == "none" else "-")
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
                linestyle="--" if scorer == "none" else "-")
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
    return _curves(trials, out_dir, hidden_size, "aer", "valid AER", "aer_curves", skip=("none",))


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

    def md_table(header: list[str], body: list[list[str]]) -> list[str]:
        rule = "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"  # 3 label columns
        return ["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(c) + " |" for c in body]

    md_cells = [cells(r, "±", "—") for r in rows]
    md = md_table(headers, [m for m, _ in md_cells]) + ["", note, ""]
    md += md_table(length_headers, [b for _, b in md_cells]) + ["", length_note]
    if skipped:
        md += ["", "Skipped unfinished trials (no results.json): " + ", ".join(f"`{p}`" for p in skipped)]
    md_path = out_dir / "tables.md"
    md_path.write_text("\n".join(md) + "\n")

    def tex_table(header: list[str], body: list[list[str]], caption: str, label: str) -> list[str]:
        caption = _latex_escape(caption).replace("±", r"$\pm$").replace("—", "--")
        return ([r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
                 r"\toprule", " & ".join(_latex_escape(h) for h in header) + r" \\", r"\midrule"]
                + [" & ".join(c) + r" \\" for c in body]
                + [r"\bottomrule", r"\end{tabular}",
                   rf"\caption{{{caption}}}",
                   rf"\label{{{label}}}", r"\end{table}"])

    tex_cells = [cells(r, r"$\pm$", "--", _latex_escape) for r in rows]
    tex = tex_table(headers, [m for m, _ in tex_cells], note, "tab:sweep") + [""]
    tex += tex_table(length_headers, [b for _, b in tex_cells], length_note, "tab:sweep_length")
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
# Entry points
# ---------------------------------------------------------------------------------------------


def make_all(sweep_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
             hidden_size: int | None = None) -> list[Path]:
    """Writes every sweep figure (PNG + PDF) and table; returns the paths written.

    `hidden_size` picks the size for the per-size figures (default: the largest present).
    Raises ValueError if the sweep has no finished trial.
    """
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir / "plots"
    trials = load_sweep(sweep_dir)
    if not trials:
        raise ValueError(f"no finished trial (folder with results.json) under {sweep_dir}")
    skipped = unfinished_trials(sweep_dir)
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

    flags.DEFINE_string("sweep_dir", None, "Sweep folder holding one subfolder per trial.", required=True)
    flags.DEFINE_string("out_dir", None, "Output folder (default: SWEEP_DIR/plots).")
    flags.DEFINE_integer("hidden_size", None, "Hidden size for the per-size figures (default: largest).")


def main(argv: Sequence[str]) -> None:
    from absl import flags

    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {argv[1:]}")
    FLAGS = flags.FLAGS
    for path in unfinished_trials(FLAGS.sweep_dir):
        print(f"skipped (no results.json): {path}")
    for path in make_all(FLAGS.sweep_dir, FLAGS.out_dir, FLAGS.hidden_size):
        print(path)


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
