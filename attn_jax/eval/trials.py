"""A sweep's finished trials, read back from their folders, and statistics over their seeds.

`load_sweep(sweep_dir)` reads every trial folder under a sweep folder (config.json,
metrics.jsonl, results.json and attention/running_example*.json, as train.py writes them; see
README.md, "What a run leaves"), skipping those without results.json (`unfinished_trials`).
Statistics are over seeds (results.json "seeds", pooled over trials sharing scorer and hidden
size); std is the sample standard deviation (ddof=1), shown only when there are >= 2 seeds. Every
scorer keeps one colour in every figure (`SCORER_COLORS`), every model family one
(`ARCH_COLORS`), and tables list scorers in `SCORER_COLORS`' order.
"""

from __future__ import annotations

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



def attends(scorer: str) -> bool:
    """False for the no-attention baseline (drawn dashed; it has no alignment to score)."""
    return attention.scorer_class(scorer).attends

def scorer_color(scorer: str) -> str:
    """The fixed colour of `scorer` (a stable fallback colour for unknown scorers)."""
    if scorer in SCORER_COLORS:
        return SCORER_COLORS[scorer]
    return _EXTRA_COLORS[zlib.crc32(scorer.encode()) % len(_EXTRA_COLORS)]


def scorer_rank(scorer: str) -> tuple[int, str]:
    order = list(SCORER_COLORS)
    return (order.index(scorer) if scorer in order else len(order), scorer)


def arch_color(arch: str) -> str:
    """The fixed colour of a model family (a stable fallback for unknown ones)."""
    if arch in ARCH_COLORS:
        return ARCH_COLORS[arch]
    return _EXTRA_COLORS[zlib.crc32(arch.encode()) % len(_EXTRA_COLORS)]


def arch_rank(arch: str) -> tuple[int, str]:
    order = list(arch_lib.ARCHS)
    return (order.index(arch) if arch in order else len(order), arch)


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


def read_json(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
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
    results = read_json(path / "results.json")
    config = read_json(path / "config.json") if (path / "config.json").exists() else {}
    model_cfg = config.get("model", {})
    scorer = results.get("scorer", model_cfg.get("scorer"))
    hidden_size = results.get("hidden_size", model_cfg.get("hidden_size"))
    if scorer is None or hidden_size is None:
        raise ValueError(f"{path}: results.json/config.json name no scorer or hidden_size")
    return Trial(
        scorer=str(scorer),
        hidden_size=int(hidden_size),
        results=results,
        metrics=read_jsonl(path / "metrics.jsonl"),
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
    return sorted(trials, key=lambda t: (scorer_rank(t.scorer), t.hidden_size, str(t.path)))


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


def format_mean_std(mean: float, std: float, n: int, digits: int, pm: str = "±", missing: str = "—") -> str:
    """ "12.34 ± 0.56"; only the mean for a single seed; `missing` when there are no values."""
    if n == 0:
        return missing
    if n == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} {pm} {std:.{digits}f}"


def dig(entry: dict[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(entry, dict) or key not in entry:
            return None
        entry = entry[key]
    return entry


def seed_values(trials: Iterable[Trial], *keys: str) -> list[float | None]:
    """Per-seed values at `keys` (e.g. "test", "bleu_by_length", "1-10"), pooled over trials."""
    return [dig(e, keys) for t in trials for e in t.seed_entries()]


def group_trials(trials: Iterable[Trial]) -> dict[tuple[str, int], list[Trial]]:
    """{(scorer, hidden_size): trials}, keys in scorer order then hidden size."""
    groups: dict[tuple[str, int], list[Trial]] = defaultdict(list)
    for t in trials:
        groups[(t.scorer, t.hidden_size)].append(t)
    return dict(sorted(groups.items(), key=lambda kv: (scorer_rank(kv[0][0]), kv[0][1])))


def scorers_of(trials: Iterable[Trial]) -> list[str]:
    return sorted({t.scorer for t in trials}, key=scorer_rank)


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


def num_seeds_note(counts: Iterable[int]) -> str:
    counts = sorted(set(counts))
    if not counts:
        return "no seeds"
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"mean ± std over {n} seed{'s' if counts[-1] != 1 else ''}"


def first_seed(trial: Trial) -> float:
    """The trial's smallest seed (inf if it names none): the key that puts trials in seed order."""
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
