"""Metrics out of a run: WORKDIR/metrics.jsonl (the source of truth) mirrored to Weights & Biases.

Every row of metrics.jsonl is one JSON object tagged with step, split and seed.

W&B gets **one run per process** (per workdir), whatever the number K of vmapped seeds:
`valid/bleu`, `train/loss`, ... are the mean over the K seeds (the value itself when K = 1) and,
when K > 1, every seed's own values are logged too under `seed<S>/valid/bleu`, ... . So a run
started by `wandb agent` (which hands each process one run id) works with vmapped seeds, and the
sweep's metric is comparable across `--seeds_mode=vmap` and `--seeds_mode=trials`.
`valid/bleu` (and each `seed<S>/valid/bleu`) keeps its maximum as the run summary
(`define_metric(summary="max")`). Each run has job_type `train` (or WANDB_JOB_TYPE) and the tags
`scorer=...`, `hidden=...`, `flow=...` (plus any in WANDB_TAGS).

Resume: the run id is kept in WORKDIR/wandb_ids.json, and a rerun of the workdir continues the
same W&B run (`resume="allow"`). Online, W&B continues the run on its server. Offline, W&B 0.31
would start a second `offline-run-<time>-<id>` directory for the same id at every restart (it
cannot resume a run it cannot see; `wandb sync` then uploads them in start-time order). Instead,
a restarted offline run re-logs the rows of metrics.jsonl up to the resumed step into its new
directory and deletes the older, unsynced directories of the same id: the workdir always holds
exactly one offline run per id, complete from step 1 (`Tracker.truncate` does this; train calls
it once, right after the tracker is made). A run W&B starts fresh although the workdir resumes
(a new agent run, say) gets the same replay. A directory already synced is kept as it is, and
then nothing is replayed (the server has those rows).

Precedence (the user's W&B configuration is respected; W&B's own order is settings file <
environment < wandb.init arguments):
- mode: `logging.wandb=disabled` turns W&B off. Otherwise WANDB_MODE if set, else `mode` in the
  user's W&B settings file (WANDB_CONFIG_DIR/settings or ~/.config/wandb/settings, e.g. written
  by `wandb offline`), else `logging.wandb` (offline by default: no account, no network).
- files: WANDB_DIR if set, else WORKDIR/wandb (run directories in WORKDIR/wandb/wandb/).
  WANDB_CACHE_DIR and WANDB_DATA_DIR default to WORKDIR/wandb/cache and /data, so nothing lands
  in ~/.cache; set them to choose. WANDB_CONFIG_DIR is left alone, so your settings file, login
  and defaults apply.
- entity, group: `logging.entity` / `logging.group` when set, else WANDB_ENTITY /
  WANDB_RUN_GROUP, else the settings file (entity) or the workdir name (group).
  `logging.project` is always passed (under a sweep agent W&B uses the sweep's project).
"""

from __future__ import annotations

import collections
import configparser
import glob
import json
import logging
import math
import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

# The run-level key that holds the best validation BLEU (W&B summary: its maximum).
BEST_METRIC = "valid/bleu"
JOB_TYPE = "train"
_IDS_FILE = "wandb_ids.json"
# Environment defaults this module set itself (so a later tracker in the same process, with
# another workdir, may set them again; a value the user set is never replaced).
_ENV_SET_HERE: dict[str, str] = {}


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


# ------------------------------------------------------------------------ W&B configuration


def settings_file(environ: dict[str, str] | None = None) -> str:
    """The user's W&B settings file: WANDB_CONFIG_DIR/settings, else ~/.config/wandb/settings."""
    environ = os.environ if environ is None else environ
    config_dir = environ.get("WANDB_CONFIG_DIR") or os.path.join("~", ".config", "wandb")
    return os.path.join(os.path.expanduser(config_dir), "settings")


def _settings_mode(path: str) -> str:
    """`mode` from the [default] section of a W&B settings file ('' if none)."""
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except (configparser.Error, OSError, UnicodeDecodeError):
        return ""
    return parser.get("default", "mode", fallback="").strip()


def resolve_mode(config_mode: str, environ: dict[str, str] | None = None) -> tuple[str, str]:
    """(W&B mode, where it came from): 'config' | 'WANDB_MODE' | the settings file's path.

    `disabled` in the config wins; then WANDB_MODE; then the user's settings file; then the
    config's value. A user-configured value is returned as W&B reads it (W&B checks it).
    """
    environ = os.environ if environ is None else environ
    if config_mode == "disabled":
        return "disabled", "config"
    if environ.get("WANDB_MODE"):
        return environ["WANDB_MODE"], "WANDB_MODE"
    path = settings_file(environ)
    mode = _settings_mode(path)
    if mode:
        return mode, path
    return config_mode, "config"


def run_tags(config: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    """['scorer=additive', 'hidden=128', 'flow=bahdanau'] (those the config has), plus WANDB_TAGS."""
    environ = os.environ if environ is None else environ
    model = config.get("model", {}) if isinstance(config, dict) else {}
    tags = [f"{name}={model[key]}" for key, name in
            (("scorer", "scorer"), ("hidden_size", "hidden"), ("flow", "flow")) if key in model]
    tags += [t for t in environ.get("WANDB_TAGS", "").split(",") if t and t not in tags]
    return [t[:64] for t in tags]  # W&B's limit on a tag's length.


def _default_env(var: str, value: str) -> None:
    """Sets an environment variable unless the user set it (one this module set may change)."""
    if var not in os.environ or _ENV_SET_HERE.get(var) == os.environ[var]:
        os.environ[var] = _ENV_SET_HERE[var] = value


# ------------------------------------------------------------------------------ W&B metrics


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def mean_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The mean over seeds of each numeric metric (nested dicts key by key); a string or bool
    kept when every seed has the same; anything else (None, a missing value) left out."""
    out: dict[str, Any] = {}
    for key in rows[0]:
        values = [r.get(key) for r in rows]
        if all(_is_number(v) for v in values):
            out[key] = float(np.mean(values))
        elif all(isinstance(v, dict) for v in values):
            inner = mean_row(values)
            if inner:
                out[key] = inner
        elif values[0] is not None and all(v == values[0] for v in values):
            out[key] = values[0]
    return out


def _flatten(prefix: str, row: dict[str, Any]) -> dict[str, Any]:
    """{'bleu': 9, 'bleu_by_length': {'1-10': 8}} -> {'P/bleu': 9, 'P/bleu_by_length/1-10': 8}."""
    flat: dict[str, Any] = {}
    for k, v in row.items():
        if k in ("step", "split", "seed") or v is None:
            continue
        if isinstance(v, dict):
            flat.update(_flatten(f"{prefix}/{k}", v))
        else:
            flat[f"{prefix}/{k}"] = v
    return flat


def seed_prefix(seed: int) -> str:
    return f"seed{seed}/"


def wandb_metrics(split: str, rows: Sequence[dict[str, Any]],
                  seeds: Sequence[int]) -> dict[str, Any]:
    """What one W&B log call holds for one metrics.jsonl step and split: `split/key` the mean over
    seeds, plus `seed<S>/split/key` per seed when there are several (rows[k] is seeds[k]'s)."""
    out = _flatten(split, mean_row(rows))
    if len(seeds) > 1:
        for seed, row in zip(seeds, rows):
            out.update(_flatten(seed_prefix(seed) + split, row))
    return out


# ---------------------------------------------------------------------------------- Tracker


class Tracker:
    """Writes metric rows; `truncate(step)` drops rows after a resumed checkpoint's step (and
    brings the W&B run in line with what is kept). `run` is the W&B run, or None."""

    def __init__(self, workdir: str, config: dict[str, Any], seeds: Sequence[int], mode: str,
                 project: str, entity: str, group: str):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.workdir = workdir
        self.seeds = tuple(seeds)
        self.run = None
        self._replay = False  # Whether truncate() re-logs the kept rows to W&B.
        self._stale_dirs: list[str] = []  # Older offline directories of this run id.
        wandb_mode, source = resolve_mode(mode)
        if wandb_mode != "disabled":
            if source != "config":
                logging.info("W&B mode %r from %s (logging.wandb=%r applies when neither "
                              "WANDB_MODE nor the W&B settings file sets one).", wandb_mode,
                              source, mode)
            self.run = self._init_wandb(config, wandb_mode if source == "config" else None,
                                        project, entity, group)

    @property
    def runs(self) -> dict[int, Any]:
        """{seed: W&B run} (the one run for every seed; {} without W&B)."""
        return {s: self.run for s in self.seeds} if self.run is not None else {}

    def _run_id(self) -> str:
        """This workdir's W&B run id (made once, kept in WORKDIR/wandb_ids.json)."""
        path = os.path.join(self.workdir, _IDS_FILE)
        ids = {}
        if os.path.exists(path):
            with open(path) as f:
                ids = json.load(f)
        if "run" not in ids:
            # A workdir from before one run per process: its single-seed run continues.
            ids["run"] = next(iter(ids.values())) if len(ids) == 1 else uuid.uuid4().hex[:12]
            with open(path + ".tmp", "w") as f:
                json.dump(ids, f)
            os.replace(path + ".tmp", path)
        return ids["run"]

    def _init_wandb(self, config, mode, project, entity, group):
        root = None if os.environ.get("WANDB_DIR") else os.path.abspath(
            os.path.join(self.workdir, "wandb"))
        base = root or os.path.abspath(os.environ["WANDB_DIR"])
        for var, sub in (("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
            _default_env(var, os.path.join(os.path.abspath(self.workdir), "wandb", sub))
        os.environ.setdefault("WANDB_SILENT", "true")
        os.makedirs(base, exist_ok=True)
        import wandb  # Imported lazily: it is slow and unused when disabled.

        # A sweep agent hands the process its run (WANDB_RUN_ID) and ignores any other id.
        under_agent = bool(os.environ.get("WANDB_SWEEP_ID"))
        run_id = None if under_agent else self._run_id()
        name = os.path.basename(os.path.abspath(self.workdir))
        run = wandb.init(  # Under an agent W&B takes project and entity from the sweep.
            project=None if under_agent else project or None,
            entity=None if under_agent else entity or None, mode=mode, dir=root,
            group=group or (None if os.environ.get("WANDB_RUN_GROUP") else name),
            job_type=None if os.environ.get("WANDB_JOB_TYPE") else JOB_TYPE,
            tags=run_tags(config), name=name,
            config={**config, "seeds": list(self.seeds)}, reinit="create_new",
            **({} if under_agent else {"id": run_id, "resume": "allow"}))
        keys = [BEST_METRIC]
        if len(self.seeds) > 1:
            keys += [seed_prefix(s) + BEST_METRIC for s in self.seeds]
        for key in keys:
            run.define_metric(key, summary="max")
        self._replay = not run.resumed  # A fresh W&B run: the kept rows are logged anew.
        if run.offline:
            here = os.path.abspath(run.settings.sync_dir)
            older = [d for d in glob.glob(os.path.join(os.path.dirname(here),
                                                       f"offline-run-*-{run.id}"))
                     if os.path.abspath(d) != here]
            if any(glob.glob(os.path.join(d, "*.synced")) for d in older):
                self._replay = False  # Synced already: W&B sync appends the new directory.
            else:
                self._stale_dirs = older
        return run

    def truncate(self, step: int) -> list[dict[str, Any]]:
        """Keeps only rows with step <= `step` (rows a killed run logged after its checkpoint,
        and any line cut short); returns every row that was there.

        With W&B on, a fresh W&B run (every offline restart, a new agent run) gets the kept rows,
        and older unsynced offline directories of the same run id are deleted. Call it once,
        before writing.
        """
        rows = read_rows(self.path)
        kept = [r for r in rows if r["step"] <= step]
        with open(self.path + ".tmp", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        os.replace(self.path + ".tmp", self.path)
        if self.run is not None and self._replay:
            groups: dict[tuple[int, str], dict[int, dict]] = collections.defaultdict(dict)
            for r in kept:
                groups[(r["step"], r["split"])][r.get("seed")] = r
            for (row_step, split), by_seed in groups.items():
                seeds = [s for s in self.seeds if s in by_seed]
                if seeds:
                    self.run.log(wandb_metrics(split, [by_seed[s] for s in seeds], seeds),
                                 step=int(row_step))
        for d in self._stale_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self._replay, self._stale_dirs = False, []
        return rows

    def write(self, step: int, split: str, per_seed: Sequence[dict[str, Any]]) -> None:
        """One row per seed; per_seed[k] belongs to self.seeds[k]."""
        rows = [json_safe({"step": int(step), "split": split, "seed": seed, **metrics})
                for seed, metrics in zip(self.seeds, per_seed)]
        with open(self.path, "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        if self.run is not None:
            self.run.log(wandb_metrics(split, rows, self.seeds[:len(rows)]), step=int(step))

    def _prefix(self, seed: int) -> str:
        return seed_prefix(seed) if len(self.seeds) > 1 else ""

    def log_media(self, seed: int, step: int, images: dict[str, str],
                  table: Sequence[Sequence[str]] = (), columns: Sequence[str] = ()) -> None:
        if self.run is None:
            return
        import wandb
        media = {f"attention/{name}": wandb.Image(path) for name, path in images.items()}
        if table:
            media[self._prefix(seed) + "samples"] = wandb.Table(
                columns=list(columns), data=[list(r) for r in table])
        if media:
            self.run.log(media, step=int(step))

    def summary(self, seed: int, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(
                {self._prefix(seed) + k: v for k, v in json_safe(values).items()})

    def close(self, exit_code: int | None = None) -> None:
        """Finishes the W&B run with exit code 0, or, while an exception propagates, its code so
        W&B marks the run: SystemExit's, an `exit_code` attribute's (a preemption's 143), else 1."""
        if self.run is None:
            return
        if exit_code is None:
            exc = sys.exc_info()[1]
            if exc is None:
                exit_code = 0
            elif isinstance(exc, SystemExit):
                exit_code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            else:
                code = getattr(exc, "exit_code", 1)
                exit_code = code if isinstance(code, int) else 1
        self.run.finish(exit_code=exit_code)
        self.run = None


class NoTracker:
    """The tracker of a process that logs nothing: every process of a multi-process run but
    process 0 (they read process 0's rows on resume). It has exactly the methods the training
    loop calls on a `Tracker`, each doing nothing but `truncate`, which reads the rows."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, "metrics.jsonl")

    def truncate(self, step: int) -> list[dict[str, Any]]:
        """The rows of process 0's metrics.jsonl, unchanged (process 0 truncates them)."""
        del step
        return read_rows(self.path)

    def write(self, step: int, split: str, per_seed: Sequence[dict[str, Any]]) -> None:
        """Writes nothing: process 0 writes the rows."""

    def log_media(self, seed: int, step: int, images: dict[str, str],
                  table: Sequence[Sequence[str]] = (), columns: Sequence[str] = ()) -> None:
        """Logs nothing: process 0 logs the media."""

    def summary(self, seed: int, values: dict[str, Any]) -> None:
        """Records nothing: process 0 keeps the summary."""

    def close(self, exit_code: int | None = None) -> None:
        """Nothing to finish."""
