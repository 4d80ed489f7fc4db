"""A run's folder and what a training process does around its loop, besides training.

`lock_workdir`: a workdir belongs to one process at a time (an flock on WORKDIR/.lock holding its
pid; the system releases it however the process ends). `check_saved_config` / `write_config`:
WORKDIR/config.json, written only once a run has really started, and checked on resume.

`StopSignals`: while active, SIGTERM and SIGUSR1 only record that they arrived; the loop
checkpoints at its next step and raises `Preempted`, which ends the process with exit status 143
(`PREEMPTED_EXIT_CODE`), the status a scheduler expects of a terminated job (launch/slurm.py
requeues on it).

Metric averaging: `window_metrics` sums a logging window of step metrics into one metrics.jsonl
row per replica; `mean_metrics` is results.json's mean over replicas of evaluation metrics.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from attn_jax.run import config as config_lib
from attn_jax.run import sharding

# The exit status of a run stopped by SIGTERM / SIGUSR1 after saving its checkpoint (128 +
# SIGTERM, what a scheduler expects of a terminated job); launch/slurm.py requeues on it.
PREEMPTED_EXIT_CODE = 143


class Preempted(Exception):
    """SIGTERM or SIGUSR1 arrived: the state was checkpointed at `step`; rerun to resume."""

    exit_code = PREEMPTED_EXIT_CODE  # What the process exits with (tracking records it too).

    def __init__(self, step: int, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; the "
                         "checkpoint of that step is saved: rerun the same command to resume.")
        self.step, self.signum = step, signum


class StopSignals:
    """While active, SIGTERM and SIGUSR1 only record that they arrived (`signum`); the training
    loop asks `stopping` at each step. A no-op off the main thread."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._record)
        return self

    def _record(self, signum, frame) -> None:
        del frame
        logging.warning("Received %s: checkpointing at the next step, then stopping.",
                        signal.Signals(signum).name)
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def stopping(self, done: int, check_now: bool = False) -> bool:
        """Whether the run stops after step `done`. With several processes they agree first (a
        collective, every MAX_STEPS_IN_FLIGHT steps, or now if `check_now`), so that all stop at
        the same step; every process must then call this at the same steps."""
        if jax.process_count() > 1:
            if not check_now and done % sharding.MAX_STEPS_IN_FLIGHT:
                return False
            return sharding.any_process(self.signum is not None)
        return self.signum is not None

    def preempted(self, done: int) -> Preempted:
        """The exception that ends a run stopped after step `done`."""
        return Preempted(done, self.signum or signal.SIGTERM)


@contextlib.contextmanager
def lock_workdir(workdir: str) -> Iterator[None]:
    """Creates the workdir and holds WORKDIR/.lock (with this pid in it) while the block runs.

    A second process is refused with a ValueError naming the holder's pid; an unwritable
    workdir (or parent) is a ValueError naming the path, never a traceback."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"--workdir={workdir} is a file, not a directory; choose another path.")
    path = os.path.join(workdir, ".lock")
    try:
        os.makedirs(workdir, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError as e:
        raise ValueError(f"--workdir={workdir} is not writable ({e.strerror}: {e.filename}); "
                         "fix its permissions or choose another --workdir.") from None
    with os.fdopen(fd, "r+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = f.read().strip() or "unknown"
            raise ValueError(f"--workdir={workdir} is in use by another training process (pid "
                             f"{holder}); wait for it to finish or stop it, or choose another "
                             "--workdir.") from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)  # Closing the file releases the lock.


def check_saved_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Refuses a workdir whose config.json belongs to an incompatible config (writes nothing)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)
    config_lib.check_resume(saved, json.loads(config.to_json()), workdir)


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """WORKDIR/config.json (written whole, then renamed into place)."""
    path = os.path.join(workdir, "config.json")
    with open(path + ".tmp", "w") as f:
        json.dump(json.loads(config.to_json()), f, indent=2)
    os.replace(path + ".tmp", path)


def window_metrics(window: list[dict[str, Any]], seconds: float, lr: float) -> list[dict]:
    """Sums a logging window of step metrics (each [K]) into one row per replica."""
    sums = {k: np.sum([m[k] for m in window], axis=0) for k in ("nll_sum", "weight")}
    grad_norm = np.mean([m["grad_norm"] for m in window], axis=0)
    rows = []
    for k in range(len(sums["weight"])):
        loss = float(sums["nll_sum"][k] / max(sums["weight"][k], 1.0))
        rows.append({"loss": loss, "perplexity": float(np.exp(min(loss, 50.0))),
                     "grad_norm": float(grad_norm[k]), "learning_rate": lr,
                     "tokens_per_sec": float(sums["weight"][k] / max(seconds, 1e-9))})
    return rows


def mean_metrics(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean over replicas of each number (key by key, at any depth, for a dict; None where
    any replica has None); anything else (a signature string, a bool) where every replica has the
    same, else None (e.g. `best_head` when the seeds' best heads differ: `aer_best_head` is then
    the mean of each seed's own best head, and the per-seed entries name them)."""
    return {key: _mean([p[key] for p in per_seed]) for key in per_seed[0]}


def _mean(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, dict):
        return {key: _mean([v[key] for v in values]) for key in first}
    if any(v is None for v in values):
        return None
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return float(np.mean(values))
    return first if all(v == first for v in values) else None
