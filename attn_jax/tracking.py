"""Metrics out of a run: WORKDIR/metrics.jsonl (the source of truth) mirrored to Weights & Biases.

Every row is one JSON object tagged with step, split and seed. W&B gets one run per replica
(seed), grouped by the workdir name; it runs offline by default (no account, no network; sync
later with `wandb sync WORKDIR/wandb/wandb/offline-run-*`), online with
--config.logging.wandb=online, and not at all with =disabled. All W&B files stay under
WORKDIR/wandb, never in the home directory.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/Inf to None."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.item() if np.ndim(value) == 0 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_rows(path: str) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl ([] if absent); a line cut short (a process killed while
    writing it) is skipped."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return [r for r in rows if isinstance(r, dict) and "step" in r]


class Tracker:
    """Writes metric rows; `truncate(step)` drops rows after a resumed checkpoint's step."""

    def __init__(self, workdir: str, config: dict[str, Any], seeds: Sequence[int], mode: str,
                 project: str, entity: str, group: str):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.workdir = workdir
        self.seeds = tuple(seeds)
        self.runs = {}
        if mode != "disabled":
            self.runs = self._init_wandb(config, mode, project, entity,
                                         group or os.path.basename(os.path.abspath(workdir)))

    def _init_wandb(self, config, mode, project, entity, group):
        wandb_dir = os.path.abspath(os.path.join(self.workdir, "wandb"))
        for var, sub in (("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"),
                         ("WANDB_DATA_DIR", "data")):
            os.environ.setdefault(var, os.path.join(wandb_dir, sub))
        os.environ.setdefault("WANDB_SILENT", "true")
        os.makedirs(wandb_dir, exist_ok=True)
        import wandb  # Imported lazily: it is slow and unused when disabled.

        ids_path = os.path.join(self.workdir, "wandb_ids.json")
        ids = json.load(open(ids_path)) if os.path.exists(ids_path) else {}
        under_agent = "WANDB_SWEEP_ID" in os.environ  # A sweep agent assigns the run itself.
        runs = {}
        for seed in self.seeds:
            kwargs = {} if under_agent else {
                "id": ids.setdefault(str(seed), uuid.uuid4().hex[:12]), "resume": "allow"}
            runs[seed] = wandb.init(
                project=project, entity=entity or None, group=group, mode=mode, dir=wandb_dir,
                name=f"{group}-seed{seed}" if len(self.seeds) > 1 else group,
                config={**config, "seed": seed}, reinit="create_new", **kwargs)
        if not under_agent:
            with open(ids_path, "w") as f:
                json.dump(ids, f)
        return runs

    def truncate(self, step: int) -> list[dict[str, Any]]:
        """Keeps only rows with step <= `step` (rows a killed run logged after its checkpoint,
        and any line cut short); returns every row that was there."""
        rows = read_rows(self.path)
        with open(self.path + ".tmp", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows if r["step"] <= step)
        os.replace(self.path + ".tmp", self.path)
        return rows

    def write(self, step: int, split: str, per_seed: Sequence[dict[str, Any]]) -> None:
        """One row per seed; per_seed[k] belongs to self.seeds[k]."""
        with open(self.path, "a") as f:
            for seed, metrics in zip(self.seeds, per_seed):
                row = json_safe({"step": int(step), "split": split, "seed": seed, **metrics})
                f.write(json.dumps(row) + "\n")
                if seed in self.runs:
                    flat = {}
                    for k, v in row.items():
                        if isinstance(v, dict):
                            flat.update({f"{split}/{k}/{kk}": vv for kk, vv in v.items()})
                        elif k not in ("step", "split", "seed") and v is not None:
                            flat[f"{split}/{k}"] = v
                    self.runs[seed].log(flat, step=int(step))

    def log_media(self, seed: int, step: int, images: dict[str, str],
                  table: Sequence[Sequence[str]] = (), columns: Sequence[str] = ()) -> None:
        run = self.runs.get(seed)
        if run is None:
            return
        import wandb
        media = {f"attention/{name}": wandb.Image(path) for name, path in images.items()}
        if table:
            media["samples"] = wandb.Table(columns=list(columns), data=[list(r) for r in table])
        run.log(media, step=int(step))

    def summary(self, seed: int, values: dict[str, Any]) -> None:
        if seed in self.runs:
            self.runs[seed].summary.update(json_safe(values))

    def close(self) -> None:
        for run in self.runs.values():
            run.finish()
