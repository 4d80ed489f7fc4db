"""The report of a captioning sweep (configs/sweeps/scenes.py; issue 26, "Show, Attend and
Tell"), from the trial folders alone. `attn_jax.report.make_all` hands a sweep here when its test
results carry CIDEr (`is_caption_sweep`); `make_caption_report` writes, each figure as PNG and PDF:

  grounding        test pointing and mass in box per scorer: bars (mean, ± std over seeds, seeds
                   as dots), a dashed line at the uniform baseline; `none` named as ungrounded
  by_objects       test exact match (%) and pointing vs the number of objects in the picture, a
                   line per scorer (`none`, the fixed-vector bottleneck, should fall furthest)
  running_example  a panel per scorer: its trial's attention/running_example.png (the running
                   example's attention strip); none written when no trial has one
  tables.md/.tex   scorer x (seeds, BLEU, CIDEr, exact match %, pointing, mass in box) and a last
                   row "uniform baseline (expected)" (test pointing_uniform, mass_in_box_uniform:
                   equal weights on every cell, same words, no model); then exact match (%) and
                   pointing by number of objects (columns 1..6); tables.md lists skipped trials
  seeds.csv        a row per (scorer, seed): every numeric test metric, exact match and pointing
                   by number of objects, the trial's steps and wall time

Rows follow the scorer order of `attn_jax.eval.trials`; trials sharing a scorer (and hidden size)
pool their seeds ("scorer (hidden N)" rows when sizes differ). Cells are mean ± sample std
(ddof=1) over seeds; — (LaTeX --) marks no value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib.image
import numpy as np

from attn_jax.eval import plots, sweep_report
from attn_jax.eval.trials import (
    Trial,
    attends,
    dig,
    first_seed,
    format_mean_std,
    group_trials,
    mean_std,
    num_seeds_note,
    scorer_color,
    seed_values,
)

# (header, results.json key, digits, scale): the main table's metric columns.
_COLUMNS = (("BLEU", "bleu", 2, 1.0), ("CIDEr", "cider", 3, 1.0), ("exact match %", "exact_match", 1, 100.0),
            ("pointing", "pointing", 3, 1.0), ("mass in box", "mass_in_box", 3, 1.0))
_BY_OBJECTS = (("exact match %", "exact_match", 1, 100.0), ("pointing", "pointing", 3, 1.0))
_UNIFORM = {"pointing": "pointing_uniform", "mass_in_box": "mass_in_box_uniform"}
_CSV_FIRST = ("bleu", "cider", "exact_match", "pointing", "mass_in_box", "pointing_uniform",
              "mass_in_box_uniform", "attention_entropy", "perplexity")
_TRIAL_KEYS = ("num_steps", "evaluated_step", "wall_seconds")
UNIFORM_ROW = "uniform baseline (expected)"


def is_caption_sweep(trials: Iterable[Trial]) -> bool:
    """True when some trial's test results carry CIDEr: a captioning sweep."""
    return any("cider" in (t.results.get("test") or {}) for t in trials)


def _groups(trials: Sequence[Trial]) -> dict[str, list[Trial]]:
    """{row label: trials} in scorer order (`group_trials`)."""
    groups = group_trials(trials)
    several = len({h for _, h in groups}) > 1
    return {f"{s} (hidden {h})" if several else s: g for (s, h), g in groups.items()}


def _stat(group: Sequence[Trial], *keys: str, scale: float = 1.0) -> tuple[float, float, int]:
    """mean_std of the per-seed test values at `keys`, times `scale`."""
    return mean_std(None if v is None else scale * v for v in seed_values(group, "test", *keys))


def object_counts(trials: Iterable[Trial], split: str = "test") -> list[str]:
    """The object counts in any seed's `by_objects` ('1', ..., '6'), in numeric order."""
    return sorted({c for t in trials for e in t.seed_entries()
                   for c in (dig(e, (split, "by_objects")) or {})}, key=int)


def uniform_baseline(trials: Sequence[Trial]) -> dict[str, float | None]:
    """{"pointing", "mass_in_box"}: the uniform-attention baseline's expected values (test
    pointing_uniform, mass_in_box_uniform) from the first trial that has them (they depend on the
    test words, not the model); None where none has."""
    return {key: next((t.results["test"][field] for t in trials
                       if (t.results.get("test") or {}).get(field) is not None), None)
            for key, field in _UNIFORM.items()}


def write_caption_tables(trials: Sequence[Trial], out_dir: Path, skipped: Sequence[Path] = ()) -> list[Path]:
    """Writes tables.md and tables.tex (booktabs): the scorer table with the uniform-baseline
    row, then exact match and pointing by number of objects (layout in the module docstring)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    groups, counts, uniform = _groups(trials), object_counts(trials), uniform_baseline(trials)
    note = ("Test split; mean ± std over seeds (sample std, ddof=1; a single seed shows the value "
            "only). Exact match: % of captions equal to the reference. Pointing: the fraction of "
            "object words of the force-decoded reference whose attention peaks in the object's "
            "box; mass in box: the attention mass inside it. — marks no value (scorer none has no "
            f"attention, hence no grounding). {UNIFORM_ROW}: equal weights on every cell for the "
            "same words (expected pointing, exact mass; no model).")

    def tables(pm: str, missing: str, text=lambda x: x) -> list[tuple[list[str], list[list[str]], str]]:
        def cell(stat: tuple[float, float, int], digits: int) -> str:
            return format_mean_std(*stat, digits, pm, missing)

        main = [[text(label), str(len(seed_values(g, "test")))]
                + [cell(_stat(g, key, scale=scale), d) for _, key, d, scale in _COLUMNS]
                for label, g in groups.items()]
        main.append([text(UNIFORM_ROW), missing] + [
            cell(mean_std([uniform[key]]), d) if key in uniform else missing for _, key, d, _ in _COLUMNS])
        out = [(["scorer", "seeds"] + [h for h, *_ in _COLUMNS], main, note)]
        for name, key, d, scale in _BY_OBJECTS:
            body = [[text(label)] + [cell(_stat(g, "by_objects", c, key, scale=scale), d) for c in counts]
                    for label, g in groups.items()]
            out.append((["scorer"] + counts, body, f"Test {name} by number of objects in the picture "
                        "(columns); mean ± std over seeds."))
        return out

    md: list[str] = []
    for k, (header, body, caption) in enumerate(tables("±", "—")):
        md += sweep_report.md_table(header, body, labels=2 if k == 0 else 1) + ["", caption, ""]
    if skipped:
        md += ["Skipped unfinished trials (no results.json): " + ", ".join(f"`{p}`" for p in skipped), ""]
    tex: list[str] = []
    for (header, body, caption), name in zip(tables(r"$\pm$", "--", sweep_report.latex_escape),
                                             ("tab:caption", "tab:caption_exact", "tab:caption_pointing")):
        tex += sweep_report.tex_table(header, body, caption, name) + [""]
    (out_dir / "tables.md").write_text("\n".join(md[:-1]) + "\n")
    (out_dir / "tables.tex").write_text("\n".join(tex[:-1]) + "\n")
    return [out_dir / "tables.md", out_dir / "tables.tex"]


def write_caption_seeds_csv(trials: Sequence[Trial], out_dir: Path) -> list[Path]:
    """Writes seeds.csv: one row per (scorer, seed) in table order: scorer, hidden_size, seed,
    trial (folder name), every test metric that is a number in some seed (`_CSV_FIRST` first,
    the rest alphabetically), exact_match_objects_<n> and pointing_objects_<n>, then the
    trial's num_steps, evaluated_step, wall_seconds. Missing values are empty cells."""
    found = {k for t in trials for e in t.seed_entries() for k, v in (e.get("test") or {}).items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    keys = [k for k in _CSV_FIRST if k in found] + sorted(found - set(_CSV_FIRST))
    by = [(key, c) for _, key, *_ in _BY_OBJECTS for c in object_counts(trials)]
    header = (["scorer", "hidden_size", "seed", "trial", *keys]
              + [f"{key}_objects_{c}" for key, c in by] + list(_TRIAL_KEYS))
    return sweep_report.write_seeds_csv_rows(out_dir, header, group_trials(trials).values(), lambda t, e: (
        [t.scorer, t.hidden_size, e.get("seed"), t.path.name]
        + [dig(e, ("test", k)) for k in keys]
        + [dig(e, ("test", "by_objects", c, key)) for key, c in by]
        + [t.results.get(k) for k in _TRIAL_KEYS]))


def plot_grounding(trials: Sequence[Trial], out_dir: Path) -> list[Path]:
    """Test pointing and mass in box per scorer (module docstring: `grounding`)."""
    groups, uniform = _groups(trials), uniform_baseline(trials)
    fig = plots.new_figure(max(8.0, 1.1 * len(groups) + 3.0), 4.0)
    omitted, counts = {}, []  # dict: ordered set
    for ax, (_, key, _, _) in zip(fig.subplots(1, 2), _COLUMNS[3:]):
        bars = [(label, g[0].scorer, v) for label, g in groups.items()
                if (v := [x for x in seed_values(g, "test", key) if x is not None and math.isfinite(x)])]
        omitted.update(dict.fromkeys(label for label in groups if label not in {b[0] for b in bars}))
        stats = [mean_std(v) for *_, v in bars]
        counts += [n for *_, n in stats]
        x = np.arange(len(bars))
        ax.bar(x, [m for m, _, _ in stats], yerr=[sd for _, sd, _ in stats], capsize=4, edgecolor="black",
               linewidth=0.5, color=[scorer_color(scorer) for _, scorer, _ in bars])
        for i, (*_, values) in enumerate(bars):
            ax.scatter([i] * len(values), values, s=10, color="black", alpha=0.6, zorder=3)
        if uniform[key] is not None:
            ax.axhline(uniform[key], color="black", linestyle="--", linewidth=1, label=UNIFORM_ROW)
            ax.legend(fontsize=8, loc="upper right")
        ax.set_xticks(x, labels=[label for label, *_ in bars], rotation=30, ha="right")
        ax.set_ylabel(f"test {key.replace('_', ' ')}")
        ax.set_ylim(bottom=0.0)
        ax.grid(axis="y", alpha=0.3)
    title = f"Grounding of the attention ({num_seeds_note(counts)}; dots: seeds)"
    fig.suptitle(title + (f"\nno attention to ground: {', '.join(omitted)}" if omitted else ""), fontsize=10)
    return sweep_report.save(fig, out_dir, "grounding")


def plot_by_objects(trials: Sequence[Trial], out_dir: Path) -> list[Path]:
    """Test exact match (%) and pointing against the number of objects, a line per scorer."""
    groups, counts = _groups(trials), object_counts(trials)
    x = np.array([int(c) for c in counts], dtype=float)
    fig = plots.new_figure(11.0, 4.0)
    axes, seeds, omitted = fig.subplots(1, 2), [], []
    for ax, (name, key, _, scale) in zip(axes, _BY_OBJECTS):
        for k, (label, g) in enumerate(groups.items()):
            stats = [_stat(g, "by_objects", c, key, scale=scale) for c in counts]
            seeds += [n for *_, n in stats if n]
            if not any(n for *_, n in stats):
                omitted.append(f"{label} ({name})")  # `none` has no pointing
                continue
            ax.errorbar(x + 0.04 * sweep_report.dodge(k, len(groups)), [m for m, _, _ in stats],
                        yerr=[sd for _, sd, _ in stats], color=scorer_color(g[0].scorer), marker="o",
                        capsize=3, label=label, linestyle="-" if attends(g[0].scorer) else "--")
        ax.set_xticks(x, labels=counts)
        ax.set_xlabel("objects in the picture")
        ax.set_ylabel(f"test {name}")
        ax.grid(alpha=0.3)
    # One legend for both panels, from the panel with the most lines (beside the right one).
    handles = max((ax.get_legend_handles_labels() for ax in axes), key=lambda h: len(h[0]))
    fig.legend(*handles, title="scorer", fontsize=8, title_fontsize=9, loc="outside right upper")
    title = f"Captions by number of objects ({num_seeds_note(seeds)})"
    fig.suptitle(title + (f"\nno value: {', '.join(omitted)}" if omitted else ""), fontsize=10)
    return sweep_report.save(fig, out_dir, "by_objects")


def plot_running_example(trials: Sequence[Trial], out_dir: Path) -> list[Path]:
    """The running example's attention strips, one panel per scorer (of its trials, the first by
    seed that has attention/running_example.png); [] when no trial has one."""
    panels, missing = [], []
    for label, g in _groups(trials).items():
        path = next((p for t in sorted(g, key=first_seed)
                     for p in [t.path / "attention" / "running_example.png"] if p.exists()), None)
        if path is None:
            missing.append(label)
        else:
            panels.append((label, g[0].scorer, matplotlib.image.imread(path)))
    if not panels:
        return []
    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    aspect = max(image.shape[0] / image.shape[1] for *_, image in panels)
    fig = plots.new_figure(6.0 * ncols, (6.0 * aspect + 0.4) * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (label, scorer, image) in zip(axes, panels):
        ax.imshow(image)
        ax.set_title(label, color=scorer_color(scorer), fontsize=11, fontweight="bold")
    for ax in axes:
        ax.set_axis_off()
    title = "The running example's attention over the picture, one strip per scorer"
    fig.suptitle(title + (f"\nno strip: {', '.join(missing)}" if missing else ""), fontsize=11)
    return sweep_report.save(fig, out_dir, "running_example")


def make_caption_report(trials: Sequence[Trial], out: str | Path, skipped: Sequence[Path] = ()) -> list[Path]:
    """Writes the captioning sweep's figures (PNG + PDF), tables.md/.tex and seeds.csv into
    `out`; returns the paths written. `skipped`: unfinished trial folders to list."""
    out = Path(out)
    paths = plot_grounding(trials, out) + plot_by_objects(trials, out) + plot_running_example(trials, out)
    return paths + write_caption_tables(trials, out, skipped) + write_caption_seeds_csv(trials, out)
