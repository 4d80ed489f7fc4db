"""The tables and figures of a translation sweep, from its finished trials.

`make_sweep_report(trials, out_dir)`, for the finished trials of a scorer x hidden sweep
(`attn_jax.eval.trials.load_sweep`), writes into `out_dir`, each figure as PNG and PDF:

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

Figures 2 to 6 use one hidden size (`hidden_size`, default the largest present).

A sweep that holds a model family other than the RNN (results.json "arch", else config.json's
model.arch; configs/sweeps/arch_scorer.py: the RNN and the Transformer x the cross-attention
scorers) is an arch grid: every table row and figure series is an (arch, scorer) pair, at one
hidden size (default the largest; trials at other sizes are listed as left out), and the
report (`make_arch_report`) is instead

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

Statistics and colours: `attn_jax.eval.trials`. Heatmaps are drawn as `attn_jax.eval.plots` draws
a run's own.
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.patches
import numpy as np
from matplotlib.figure import Figure

from attn_jax.data.lengths import LENGTH_BUCKETS
from attn_jax.data.synthetic import RUNNING_EXAMPLE
from attn_jax.eval import plots
from attn_jax.eval.trials import (
    DEFAULT_ARCH,
    Trial,
    arch_color,
    arch_rank,
    attends,
    dig,
    first_seed,
    format_mean_std,
    group_trials,
    mean_std,
    num_seeds_note,
    read_json,
    running_example_file,
    scorer_color,
    scorer_rank,
    scorers_of,
    seed_values,
    select_hidden_size,
)
from attn_jax.model import attention

# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------


def save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Saves `fig` as OUT_DIR/STEM.png and .pdf; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return plots.save_figure(fig, [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"])


def dodge(k: int, n: int) -> float:
    """Offset in [-(n-1)/2, (n-1)/2] for series k of n, to keep error bars apart."""
    return k - (n - 1) / 2


def legend(ax) -> None:
    """Scorer legend outside the axes, on the right, so it never hides data."""
    ax.legend(title="scorer", fontsize=8, title_fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0)


def write_seeds_csv_rows(out_dir: Path, header: Sequence[str], groups: Iterable[Sequence[Trial]],
                         row: Callable[[Trial, dict[str, Any]], list[Any]]) -> list[Path]:
    """Writes OUT_DIR/seeds.csv: `header`, then `row(trial, seed entry)` for every seed of every
    trial, groups in their order and trials by first seed; None becomes an empty cell."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "seeds.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for group in groups:
            for t in sorted(group, key=first_seed):
                for e in t.seed_entries():
                    writer.writerow(["" if v is None else v for v in row(t, e)])
    return [path]


# ---------------------------------------------------------------------------------------------
# Sweep figures
# ---------------------------------------------------------------------------------------------


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
        x = np.array(sizes, dtype=float) * 2.0 ** (0.04 * dodge(k, len(scorers)))  # spread error bars
        ax.errorbar(x, mean, yerr=std, color=scorer_color(scorer), marker="o", capsize=3, label=scorer,
                    linestyle="-" if attends(scorer) else "--")
    all_sizes = sorted({t.hidden_size for t in trials})
    ax.set_xscale("log", base=2)
    ax.set_xticks(all_sizes, labels=[str(h) for h in all_sizes])
    ax.minorticks_off()
    ax.set_xlabel("hidden size (log2 scale)")
    ax.set_ylabel("test BLEU")
    ax.set_title(f"Test BLEU vs hidden size ({num_seeds_note(counts)})", fontsize=10)
    ax.grid(alpha=0.3)
    legend(ax)
    return save(fig, out_dir, "bleu_vs_hidden")


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
        ax.errorbar(x + 0.04 * dodge(k, len(groups)), mean, yerr=std, color=scorer_color(scorer), marker="o",
                    capsize=3, label=scorer, linestyle="-" if attends(scorer) else "--")
    ax.set_xticks(x, labels=list(LENGTH_BUCKETS))
    ax.set_xlabel("source sentence length (words)")
    ax.set_ylabel("test BLEU")
    ax.set_title(f"Test BLEU by source length, hidden size {hidden_size} ({num_seeds_note(counts)})",
                 fontsize=10)
    ax.grid(alpha=0.3)
    legend(ax)
    return save(fig, out_dir, "bleu_by_length")


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
    title = f"Alignment error rate, hidden size {hidden_size} ({num_seeds_note(counts)})"
    if omitted:
        title += f"\nomitted (no attention, no AER): {', '.join(omitted)}"
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, out_dir, "aer")


def plot_running_example(trials: Sequence[Trial], out_dir: Path, hidden_size: int) -> list[Path]:
    """Figure 4: attention heatmaps of the running example, one panel per scorer (of the trials
    of each scorer at `hidden_size`, the one with the smallest seed; that seed's file). Scorers
    with no attention file or null attention (`none`) are named in the title instead."""
    panels, missing = [], []
    for (scorer, _), group in group_trials(t for t in trials if t.hidden_size == hidden_size).items():
        trial = min(group, key=first_seed)
        path = running_example_file(trial)
        data = read_json(path) if path else {}
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
    return save(fig, out_dir, "running_example")


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
                linestyle="-" if attends(scorer) else "--")
        ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.12, linewidth=0)
    ax.set_xlabel("training step")
    ax.set_ylabel(label)
    ax.set_title(f"{label} during training, hidden size {hidden_size} (mean over seeds, band = "
                 "± std)", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        legend(ax)
    return save(fig, out_dir, name)


def plot_learning_curves(trials: Sequence[Trial], out_dir: Path, hidden_size: int) -> list[Path]:
    """Figure 5: valid BLEU vs training step, one line per scorer (mean over seeds, band = std)."""
    return _curves(trials, out_dir, hidden_size, "bleu", "valid BLEU", "learning_curves")


def plot_aer_curves(trials: Sequence[Trial], out_dir: Path, hidden_size: int) -> list[Path]:
    """Figure 6: valid AER vs training step per scorer: alignment emerging with no alignment
    supervision (`none` has no attention and is omitted)."""
    return _curves(trials, out_dir, hidden_size, "aer", "valid AER", "aer_curves",
                   skip=tuple(name for name in attention.SCORERS if not attends(name)))


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

_TABLE_COLUMNS = (("BLEU", "bleu", 2), ("AER", "aer", 3), ("perplexity", "perplexity", 2))


def _steps_cell(group: Sequence[Trial]) -> str:
    """Steps each trial trained, with the step its test metrics come from: "3800 (3200), ..."
    (trials in order of their first seed; "—" where results.json does not say)."""
    cells = []
    for t in sorted(group, key=first_seed):
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


def latex_escape(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("&", r"\&").replace("%", r"\%")


def md_table(header: Sequence[str], body: Iterable[Sequence[str]], labels: int = 3) -> list[str]:
    """A Markdown table whose first `labels` columns are left-aligned, the rest right-aligned."""
    rule = "|" + "|".join(["---"] * labels + ["---:"] * (len(header) - labels)) + "|"
    return ["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(c) + " |" for c in body]


def tex_table(header: Sequence[str], body: Iterable[Sequence[str]], caption: str,
               label: str) -> list[str]:
    """A booktabs LaTeX table (cells already escaped; header and caption escaped here)."""
    caption = latex_escape(caption).replace("±", r"$\pm$").replace("—", "--")
    return ([r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
             r"\toprule", " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
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
    md = md_table(headers, [m for m, _ in md_cells]) + ["", note, ""]
    md += md_table(length_headers, [b for _, b in md_cells]) + ["", length_note]
    if skipped:
        md += ["", "Skipped unfinished trials (no results.json): " + ", ".join(f"`{p}`" for p in skipped)]
    md_path = out_dir / "tables.md"
    md_path.write_text("\n".join(md) + "\n")

    tex_cells = [cells(r, r"$\pm$", "--", latex_escape) for r in rows]
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
    metric_keys = ("bleu", "aer", "perplexity", "exact_match")
    header = (["scorer", "hidden_size", "seed", "trial"] + list(metric_keys)
              + [f"bleu_{b}" for b in LENGTH_BUCKETS]
              + ["valid_bleu", "num_steps", "evaluated_step", "wall_seconds"])
    return write_seeds_csv_rows(out_dir, header, group_trials(trials).values(), lambda t, e: (
        [t.scorer, t.hidden_size, e.get("seed"), t.path.name]
        + [dig(e, (split, k)) for k in metric_keys]
        + [dig(e, (split, "bleu_by_length", b)) for b in LENGTH_BUCKETS]
        + [dig(e, ("valid", "bleu"))]
        + [t.results.get(k) for k in ("num_steps", "evaluated_step", "wall_seconds")]))


# ---------------------------------------------------------------------------------------------
# The arch x scorer grid (configs/sweeps/arch_scorer.py): the model families side by side
# ---------------------------------------------------------------------------------------------

_HEAD_NAME = re.compile(r"^L(\d+)H(\d+)$")  # attn_jax.eval.evaluate.head_name: 'L2H3', from 1.


def is_arch_grid(trials: Iterable[Trial]) -> bool:
    """True when a model family other than the RNN is in the sweep: its report then groups and
    labels every table and figure by arch (`make_arch_report`)."""
    return any(t.arch != DEFAULT_ARCH for t in trials)


def group_by_arch(trials: Iterable[Trial]) -> dict[tuple[str, str], list[Trial]]:
    """{(arch, scorer): trials}, in family order (attn_jax.model.arch.ARCHS), then scorer order."""
    groups: dict[tuple[str, str], list[Trial]] = defaultdict(list)
    for t in trials:
        groups[(t.arch, t.scorer)].append(t)
    return dict(sorted(groups.items(), key=lambda kv: (arch_rank(kv[0][0]), scorer_rank(kv[0][1]))))


def _head_key(name: str) -> tuple[int, int, str]:
    m = _HEAD_NAME.match(name)
    return (int(m[1]), int(m[2]), name) if m else (math.inf, math.inf, name)


def head_names(trials: Iterable[Trial], split: str = "test") -> list[str]:
    """Every cross-attention head with a per-head AER ('L1H1', ...) in any seed, layer by layer."""
    names = {h for t in trials for e in t.seed_entries()
             for h in (dig(e, (split, "aer_by_head")) or {})}
    return sorted(names, key=_head_key)


def _seed_entries(group: Sequence[Trial]) -> list[dict[str, Any]]:
    """The group's seed entries, trials in order of their first seed."""
    return [e for t in sorted(group, key=first_seed) for e in t.seed_entries()]


def _arch_steps_cell(group: Sequence[Trial]) -> str:
    """`_steps_cell`, with 'cap' on a trial that trained to its step cap (results.json
    max_steps) instead of stopping on a valid-BLEU plateau: "3800 (3200), 4688 (4600, cap)"."""
    cells = []
    for t in sorted(group, key=first_seed):
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
        exact = [dig(e, (split, "exact_match")) for e in entries]
        rows.append({
            "arch": arch, "scorer": scorer, "seeds": len(entries),
            "bleu": mean_std(seed_values(group, split, "bleu")),
            "exact_match": mean_std(None if v is None else 100.0 * v for v in exact),
            "aer": mean_std(seed_values(group, split, "aer")),
            "aer_best_head": mean_std(seed_values(group, split, "aer_best_head")),
            "best_head": [h for e in entries for h in [dig(e, (split, "best_head"))] if h],
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
        md += md_table(header, body) + ["", caption, ""]
    if left_out:
        md += ["Left out (another hidden size; pick it with --hidden_size): "
               + ", ".join(f"`{p}`" for p in left_out), ""]
    if skipped:
        md += ["Skipped unfinished trials (no results.json): " + ", ".join(f"`{p}`" for p in skipped), ""]
    md_path = out_dir / "tables.md"
    md_path.write_text("\n".join(md[:-1]) + "\n")
    tex: list[str] = []
    for (header, body, caption), name in zip(tables(r"$\pm$", "--", latex_escape),
                                             ("tab:arch", "tab:arch_length", "tab:arch_heads")):
        tex += tex_table(header, body, caption, name) + [""]
    tex_path = out_dir / "tables.tex"
    tex_path.write_text("\n".join(tex[:-1]) + "\n")
    return [md_path, tex_path]


def write_arch_seeds_csv(trials: Sequence[Trial], out_dir: Path, split: str = "test") -> list[Path]:
    """Writes seeds.csv for an arch grid: one row per seed (table order): arch, scorer,
    hidden_size, seed, trial (folder name), the split's bleu, exact_match, aer, aer_best_head,
    best_head, perplexity, bleu_<bucket>, aer_<head> per cross-attention head, valid_bleu, then
    the trial's num_steps, max_steps, evaluated_step and wall_seconds. Missing values are empty."""
    metric_keys = ("bleu", "exact_match", "aer", "aer_best_head", "best_head", "perplexity")
    trial_keys = ("num_steps", "max_steps", "evaluated_step", "wall_seconds")
    heads = head_names(trials, split)
    header = (["arch", "scorer", "hidden_size", "seed", "trial"] + list(metric_keys)
              + [f"bleu_{b}" for b in LENGTH_BUCKETS] + [f"aer_{h}" for h in heads]
              + ["valid_bleu", *trial_keys])
    return write_seeds_csv_rows(out_dir, header, group_by_arch(trials).values(), lambda t, e: (
        [t.arch, t.scorer, t.hidden_size, e.get("seed"), t.path.name]
        + [dig(e, (split, k)) for k in metric_keys]
        + [dig(e, (split, "bleu_by_length", b)) for b in LENGTH_BUCKETS]
        + [dig(e, (split, "aer_by_head", h)) for h in heads]
        + [dig(e, ("valid", "bleu"))]
        + [t.results.get(k) for k in trial_keys]))


def plot_arch_scorer(trials: Sequence[Trial], out_dir: Path, key: str, label: str, stem: str,
                     best_head: bool = False) -> list[Path]:
    """Test `key` per scorer (x), one marker per arch beside each other: mean with ± std error
    bars over seeds, each seed as a small dot. best_head: also each family's best single head
    (results.json aer_best_head; hollow markers), where it reports one."""
    groups = group_by_arch(trials)
    archs = sorted({a for a, _ in groups}, key=arch_rank)
    scorers = sorted({s for _, s in groups}, key=scorer_rank)
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
            x = i + 0.12 * dodge(k, len(drawn))
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
    title = f"{label} by model and scorer ({num_seeds_note(counts)}; dots: seeds)"
    if omitted:
        title += f"\nno value: {', '.join(omitted)}"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="model", fontsize=8, title_fontsize=9, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return save(fig, out_dir, stem)


def plot_bleu_by_length_by_arch(trials: Sequence[Trial], out_dir: Path) -> list[Path]:
    """Test BLEU per source-length bucket, one panel per arch, one line per scorer."""
    groups = group_by_arch(trials)
    archs = sorted({a for a, _ in groups}, key=arch_rank)
    fig = plots.new_figure(4.2 * len(archs) + 1.4, 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(archs), sharey=True, squeeze=False)).ravel()
    x = np.arange(len(LENGTH_BUCKETS))
    counts = []
    for ax, arch in zip(axes, archs):
        mine = [(scorer, group) for (a, scorer), group in groups.items() if a == arch]
        for k, (scorer, group) in enumerate(mine):
            stats = [mean_std(seed_values(group, "test", "bleu_by_length", b)) for b in LENGTH_BUCKETS]
            counts += [n for _, _, n in stats if n]
            ax.errorbar(x + 0.04 * dodge(k, len(mine)), [m for m, _, _ in stats],
                        yerr=[sd for _, sd, _ in stats], color=scorer_color(scorer), marker="o",
                        capsize=3, label=scorer, linestyle="-" if attends(scorer) else "--")
        ax.set_xticks(x, labels=list(LENGTH_BUCKETS))
        ax.set_xlabel("source sentence length (words)")
        ax.set_title(arch, color=arch_color(arch), fontsize=10, fontweight="bold")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test BLEU")
    legend(axes[-1])
    fig.suptitle(f"Test BLEU by source length ({num_seeds_note(counts)})", fontsize=11)
    return save(fig, out_dir, "bleu_by_length")


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
    return save(fig, out_dir, "aer_by_head")


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


def make_sweep_report(trials: Sequence[Trial], out: Path, skipped: Sequence[Path] = (),
                      hidden_size: int | None = None) -> list[Path]:
    """The scorer x hidden grid's figures and tables (module docstring); `hidden_size` picks the
    size of figures 2 to 6 (default: the largest present). Returns the paths written."""
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
