"""Local launcher: runs a sweep's trials as subprocesses, up to --parallel at a time.

    python -m launch.local --sweep=configs/sweeps/scorer_hidden.py --sweep_dir=runs/scorer_hidden \
        --parallel=2 [--seeds_mode=vmap|trials] [--only=scorer=dot] [--dry_run]

Run from the repository root. Each trial runs `launch.sweep.command(trial, sweep_dir)` in its
own workdir SWEEP_DIR/NAME, with stdout and stderr appended to SWEEP_DIR/NAME/log.txt.
SWEEP_DIR/status.json (rewritten atomically) holds every trial's state: pending, running,
finished, failed (with the return code) or stopped; its attempts; wall_seconds of its last
attempt and total_wall_seconds of all of them (a resumed trial's whole time; log.txt gets a line
per attempt's end). A trial is finished iff its results.json exists: rerunning the same command
skips finished trials and relaunches the others, which resume from their newest checkpoint.
A crashing trial is marked failed and the others go on; the exit code is 1 if any trial failed.
SIGINT (Ctrl-C) or SIGTERM stops the launcher cleanly: it terminates its running trials (killing
any still alive after a grace period), waits for them, marks them stopped and exits with 128 +
the signal number, so no trial is left running on its own. --dry_run validates the sweep and
prints the exact commands, and writes nothing. Children inherit the environment (W&B: see
attn_jax/run/tracking.py for how its mode is chosen).

Devices: the launcher runs up to --parallel trials in slots 0..P-1; a trial takes a free slot.
- GPUs (`--gpus=0,1`, or `auto`: CUDA_VISIBLE_DEVICES if set, else `nvidia-smi -L`; `none`:
  ignore GPUs): slot s sees one GPU, CUDA_VISIBLE_DEVICES=gpus[s % G]. When trials share a GPU
  (P > G) each gets XLA_PYTHON_CLIENT_PREALLOCATE=false (else the first process takes 75% of
  the GPU's memory), unless that variable is set.
- CPU trials in parallel (no GPU; --pin_cpus, the default): slot s is pinned to its own equal
  share of the launcher's CPUs (sched_setaffinity, inherited by the trial) and gets
  OMP_NUM_THREADS/OPENBLAS_NUM_THREADS/MKL_NUM_THREADS = that share, unless set. XLA's CPU
  thread pool is sized by the CPUs a process may run on; in jax 0.10 the XLA flags
  `--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1` do not limit it, affinity
  does. status.json records each trial's `gpu` or `cpus`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from launch import sweep

RESULTS_FILE = "results.json"
STATUS_FILE = "status.json"
LOG_FILE = "log.txt"
# After SIGINT/SIGTERM, running trials get this long to exit before they are killed. A trial
# checkpoints at its next step, after any evaluation in progress: with 3 vmapped Transformer
# seeds on a shared core that took over 30 s, and the two killed trials lost the steps since
# their last checkpoint.
STOP_GRACE_SECONDS = 600.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = sweep.argument_parser("python -m launch.local", __doc__)
    parser.add_argument("--parallel", type=int, default=1, help="trials run at once")
    parser.add_argument("--only", action="append", default=[],
                        help="run only matching trials, e.g. 'scorer=dot' or 'scorer=dot,hidden_size=64' "
                             "(repeatable; a trial matching any filter runs)")
    parser.add_argument("--dry_run", action="store_true", help="print the commands; run and write nothing")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the trials")
    parser.add_argument("--module", default=sweep.TRAIN_MODULE,
                        help="module each trial runs with -m (tests point this at a fake trainer)")
    parser.add_argument("--gpus", default="auto",
                        help="GPU ids to spread trials over, e.g. '0,1' (one per running trial, "
                             "round robin); 'auto': CUDA_VISIBLE_DEVICES or nvidia-smi; 'none'")
    parser.add_argument("--pin_cpus", action=argparse.BooleanOptionalAction, default=True,
                        help="CPU trials run in parallel: give each its own share of the CPUs")
    args = parser.parse_args(argv)
    if args.parallel < 1:
        parser.error("--parallel must be >= 1")
    return args


# Thread-count variables a CPU trial gets (unless set): numpy/BLAS pools inside a trial.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def detect_gpus(spec: str, environ: dict[str, str] | None = None) -> list[str]:
    """The GPU ids trials are spread over: '0,1' as given; 'none' -> []; 'auto' ->
    CUDA_VISIBLE_DEVICES when set (its entries, ids or UUIDs), else one per `nvidia-smi -L` line."""
    environ = os.environ if environ is None else environ
    if spec == "none":
        return []
    if spec != "auto":
        ids = [g.strip() for g in spec.split(",") if g.strip()]
        if not ids:
            raise ValueError(f"--gpus={spec!r}: give GPU ids like '0,1', 'auto' or 'none'.")
        return ids
    if "CUDA_VISIBLE_DEVICES" in environ:
        return [g.strip() for g in environ["CUDA_VISIBLE_DEVICES"].split(",")
                if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    lines = [line for line in out.stdout.splitlines() if line.startswith("GPU ")]
    return [str(i) for i in range(len(lines))] if out.returncode == 0 else []


@dataclasses.dataclass(frozen=True)
class Placement:
    """What a trial in one slot gets: environment variables (set unless `defaults`, which the
    launcher's own environment may already hold) and the CPUs it is pinned to (None: all)."""

    env: dict[str, str]
    defaults: dict[str, str]
    cpus: tuple[int, ...] | None = None

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        return {**self.defaults, **base, **self.env}

    def describe(self) -> dict[str, Any]:
        if "CUDA_VISIBLE_DEVICES" in self.env:
            return {"gpu": self.env["CUDA_VISIBLE_DEVICES"]}
        return {"cpus": list(self.cpus)} if self.cpus is not None else {}


def placements(parallel: int, gpus: list[str], cpus: list[int],
               pin_cpus: bool = True) -> list[Placement]:
    """One Placement per slot 0..parallel-1 (see the module docstring)."""
    out = []
    for slot in range(parallel):
        if gpus:
            shared = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"} if parallel > len(gpus) else {}
            out.append(Placement({"CUDA_VISIBLE_DEVICES": gpus[slot % len(gpus)]}, shared))
        elif pin_cpus and parallel > 1 and cpus:
            share = len(cpus) // parallel
            mine = (tuple(cpus[slot * share:(slot + 1) * share]) if share else
                    (cpus[slot % len(cpus)],))  # More trials than CPUs: they share, one each.
            out.append(Placement({}, {v: str(len(mine)) for v in THREAD_VARS}, mine))
        else:
            out.append(Placement({}, {}))
    return out


def available_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def is_finished(workdir: str) -> bool:
    """The contract: a trial is finished iff WORKDIR/results.json exists."""
    return os.path.exists(os.path.join(workdir, RESULTS_FILE))


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def write_json_atomic(path: str, obj: Any) -> None:
    """Writes JSON to path via a temporary file and os.replace (readers never see half a file)."""
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


class StatusFile:
    """SWEEP_DIR/status.json: {"sweep": ..., "updated": ..., "trials": {name: {...}}}.

    Entries of trials outside this invocation (e.g. excluded by --only) are kept as they were.
    """

    def __init__(self, path: str, sweep_name: str):
        self.path = path
        self._lock = threading.Lock()
        self.data: dict[str, Any] = {"sweep": sweep_name, "trials": {}}
        if os.path.exists(path):
            with open(path) as f:
                self.data["trials"] = json.load(f).get("trials", {})

    def update(self, name: str, **fields: Any) -> None:
        with self._lock:
            self.data["trials"].setdefault(name, {}).update(fields)
            self.data["updated"] = _now()
            write_json_atomic(self.path, self.data)

    def get(self, name: str) -> dict[str, Any]:
        with self._lock:
            return dict(self.data["trials"].get(name, {}))


class _Stopped(Exception):
    """SIGINT or SIGTERM arrived (raised in the main thread by the signal handler)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame: Any) -> None:
    del frame
    raise _Stopped(signum)


class Runner:
    """Runs trials as subprocesses and records their state in the status file; a trial runs
    in a free slot, whose Placement gives its devices."""

    def __init__(self, sweep_dir: str, status: StatusFile, python: str, module: str,
                 slots: Sequence[Placement] = (Placement({}, {}),)):
        self.sweep_dir = sweep_dir
        self.status = status
        self.python = python
        self.module = module
        self.stopping = threading.Event()
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._slots = list(slots)
        self._free: queue.Queue[int] = queue.Queue()
        for i in range(len(self._slots)):
            self._free.put(i)

    def run_trial(self, trial: sweep.Trial) -> str:
        """Runs one trial to completion in a free slot; returns its final status."""
        slot = self._free.get()
        try:
            return self._run_in(trial, self._slots[slot])
        finally:
            self._free.put(slot)

    def _run_in(self, trial: sweep.Trial, place: Placement) -> str:
        if self.stopping.is_set():
            return "pending"
        wd = sweep.workdir(trial, self.sweep_dir)
        os.makedirs(wd, exist_ok=True)
        argv = sweep.command(trial, self.sweep_dir, python=self.python, module=self.module)
        previous = self.status.get(trial.name)
        attempts = previous.get("attempts", 0) + 1
        # Wall time of the earlier attempts (an entry from before this field: its last attempt's).
        earlier = previous.get("total_wall_seconds", previous.get("wall_seconds") or 0.0)
        start = time.time()
        self.status.update(trial.name, status="running", returncode=None, attempts=attempts,
                           started=_now(), ended=None, wall_seconds=None,
                           total_wall_seconds=earlier, error=None,
                           **{"gpu": None, "cpus": None, **place.describe()})
        with open(os.path.join(wd, LOG_FILE), "a") as log:
            where = "".join(f" {k}={v}" for k, v in place.describe().items())
            log.write(f"\n=== {_now()} attempt {attempts}{where}: {shlex.join(argv)}\n")
            log.flush()
            try:
                proc = self._start(argv, log, place)
            except OSError as e:  # E.g. a missing interpreter: this trial fails, the rest go on.
                log.write(f"could not start: {e}\n")
                self.status.update(trial.name, status="failed", returncode=None, ended=_now(),
                                   error=f"could not start: {e}")
                return "failed"
            if proc is None:  # Stopped before it started.
                self.status.update(trial.name, status="pending", ended=_now())
                return "pending"
            returncode = proc.wait()
            with self._lock:
                self._procs.discard(proc)
        wall = time.time() - start
        fields: dict[str, Any] = {"returncode": returncode, "ended": _now(),
                                  "wall_seconds": round(wall, 1),
                                  "total_wall_seconds": round(earlier + wall, 1)}
        if self.stopping.is_set() and returncode != 0:
            state = "stopped"  # Terminated by SIGINT/SIGTERM: rerunning the command resumes it.
        elif returncode == 0 and is_finished(wd):
            state = "finished"
        else:
            state = "failed"
            if returncode == 0:
                fields["error"] = f"exited 0 without writing {RESULTS_FILE}"
        self.status.update(trial.name, status=state, **fields)
        with open(os.path.join(wd, LOG_FILE), "a") as log:
            log.write(f"=== {_now()} attempt {attempts} {state} (returncode {returncode}) after "
                      f"{wall:.1f} s; {earlier + wall:.1f} s over all attempts\n")
        return state

    def _start(self, argv: list[str], log, place: Placement) -> subprocess.Popen | None:
        """Starts a trial's process, unless the runner is stopping (then None). A pinned trial
        inherits this thread's CPU affinity (Linux: per thread), set just for the start."""
        with self._lock:  # stop() sees every process started before it.
            if self.stopping.is_set():
                return None
            before = os.sched_getaffinity(0) if place.cpus is not None else None
            try:
                if place.cpus is not None:
                    os.sched_setaffinity(0, place.cpus)
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                        env=place.environment(dict(os.environ)))
            finally:
                if before is not None:
                    os.sched_setaffinity(0, before)
            self._procs.add(proc)
            return proc

    def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Starts no more trials; terminates the running ones and waits for them, killing any
        still alive after `grace_seconds`."""
        self.stopping.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            proc.terminate()
        deadline = time.monotonic() + grace_seconds
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


def print_summary(trials: Sequence[sweep.Trial], status: StatusFile, skipped: set[str]) -> None:
    """A table of every trial of this invocation: name, status, return code, wall seconds."""
    width = max([len("trial")] + [len(t.name) for t in trials])
    print(f"\n{'trial':<{width}}  {'status':<9} {'rc':>4} {'wall_s':>8}")
    counts: dict[str, int] = {}
    for t in trials:
        entry = status.get(t.name)
        state = entry.get("status", "pending")
        counts[state] = counts.get(state, 0) + 1
        rc = entry.get("returncode")
        wall = entry.get("wall_seconds")
        note = "  (skipped: already finished)" if t.name in skipped else ""
        print(f"{t.name:<{width}}  {state:<9} {'' if rc is None else rc:>4} "
              f"{'' if wall is None else wall:>8}{note}")
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"{len(trials)} trials: {parts} ({len(skipped)} skipped as already finished)")


def dry_run(trials: Sequence[sweep.Trial], sweep_dir: str, python: str, module: str) -> None:
    """Prints the exact command of every trial that would run (finished ones as comments)."""
    for t in trials:
        cmd = shlex.join(sweep.command(t, sweep_dir, python=python, module=module))
        if is_finished(sweep.workdir(t, sweep_dir)):
            print(f"# skip (finished): {cmd}")
        else:
            print(cmd)
    print(f"# {len(trials)} trials; logs: {sweep_dir}/NAME/{LOG_FILE}; status: {sweep_dir}/{STATUS_FILE}",
          file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Validate (against the base config) and expand before anything runs.
    spec, trials = sweep.load(args.sweep, args.seeds_mode)
    trials = sweep.select(trials, args.only)
    sweep_dir = args.sweep_dir or os.path.join("runs", spec["name"])
    if args.dry_run:
        dry_run(trials, sweep_dir, args.python, args.module)
        return 0

    gpus = detect_gpus(args.gpus)
    slots = placements(args.parallel, gpus, available_cpus(), args.pin_cpus)
    os.makedirs(sweep_dir, exist_ok=True)
    status = StatusFile(os.path.join(sweep_dir, STATUS_FILE), spec["name"])
    skipped, todo = set(), []
    for t in trials:
        wd = sweep.workdir(t, sweep_dir)
        if is_finished(wd):
            skipped.add(t.name)
            status.update(t.name, status="finished", workdir=wd)
        else:
            todo.append(t)
            status.update(t.name, status="pending", workdir=wd)
    print(f"sweep {spec['name']}: {len(trials)} trials, {len(skipped)} already finished, "
          f"running {len(todo)} with --parallel={args.parallel} in {sweep_dir}", flush=True)

    if gpus:
        print(f"GPUs {','.join(gpus)}: one per running trial"
              + (" (shared: XLA_PYTHON_CLIENT_PREALLOCATE=false)" if args.parallel > len(gpus)
                 else ""), flush=True)
    elif slots[0].cpus is not None:
        print("CPU trials pinned to " + ", ".join(
            f"CPUs {','.join(map(str, p.cpus))}" for p in slots), flush=True)
    runner = Runner(sweep_dir, status, args.python, args.module, slots)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=args.parallel)
    previous = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        futures = {pool.submit(runner.run_trial, t): t for t in todo}
        for fut in concurrent.futures.as_completed(futures):
            t = futures[fut]
            print(f"[{_now()}] {t.name}: {fut.result()}", flush=True)
        pool.shutdown(wait=True)
    except _Stopped as e:
        for s in previous:  # Stopping takes at most the grace period; do not interrupt it.
            signal.signal(s, signal.SIG_IGN)
        print(f"{signal.Signals(e.signum).name}: stopping the running trials (rerun the same "
              "command to resume them)", file=sys.stderr, flush=True)
        runner.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        print_summary(trials, status, skipped)
        return 128 + e.signum
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print_summary(trials, status, skipped)
    failed = [t.name for t in trials if status.get(t.name).get("status") != "finished"]
    if failed:
        print(f"{len(failed)} trial(s) not finished (see their {LOG_FILE}): {', '.join(failed)}",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sweep.run_cli(main)
