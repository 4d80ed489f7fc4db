"""Sweep expansion and the three launchers (local, W&B, SLURM), offline and without training.

The local launcher is run against a fake trainer module (`--module=fake_train`) that writes
results.json, or fails for scorer=dot, or fails on its first attempt for scorer=general.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `launch` is run from the repository root, not installed.
    sys.path.insert(0, str(REPO))

from attn_jax.model import attention  # noqa: E402
from attn_jax.run import config as config_lib  # noqa: E402
from launch import local, slurm, sweep, wandb_sweep  # noqa: E402
from tests.run_helpers import wandb_records  # noqa: E402

SCORERS = list(attention.COMPARED)
SIZES = [32, 64, 128, 256]

# The real base config's text (it has every key a sweep may set), written into tmp dirs.
STANDIN_CONFIG = (REPO / "configs" / "default.py").read_text()

FAKE_TRAIN = '''
"""Fake trainer: records each call; scorer=dot crashes; scorer=general crashes once, and each of
its attempts lasts at least 0.2 s (so its recorded wall time is never rounded to 0)."""
import json, os, sys, time
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
with open("invocations.txt", "a") as f:
    f.write(args["workdir"] + "\\n")
scorer = args["config.model.scorer"]
os.makedirs(args["workdir"], exist_ok=True)
print("training", args["workdir"])
if scorer == "dot":
    sys.exit(3)
if scorer == "general":
    time.sleep(0.2)
marker = os.path.join(args["workdir"], "attempted")
if scorer == "general" and not os.path.exists(marker):
    open(marker, "w").close()
    sys.exit(1)
seed, k = int(args["config.train.seed"]), int(args["config.train.num_seeds"])
with open(os.path.join(args["workdir"], "results.json"), "w") as f:
    json.dump({"scorer": scorer, "seeds": [{"seed": s} for s in range(seed, seed + k)]}, f)
'''


def small_spec(**changes):
    spec = {"name": "small", "base_config": "base.py",
            "axes": {"model.scorer": ["additive", "dot", "general"], "model.hidden_size": [8, 16]},
            "seeds": {"base": 5, "count": 2}, "fixed": {"train.num_steps": 7}}
    spec.update(changes)
    return spec


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """tmp_path as the current directory, with base.py, a sweep file and the fake trainer."""
    (tmp_path / "base.py").write_text(STANDIN_CONFIG)
    (tmp_path / "fake_train.py").write_text(FAKE_TRAIN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return tmp_path


def write_sweep(path: Path, spec: dict) -> str:
    path.write_text(f"def get_sweep():\n    return {spec!r}\n")
    return str(path.name)


def standin_config(tmp_path):
    (tmp_path / "standin.py").write_text(STANDIN_CONFIG)
    return config_lib.load_config_file(tmp_path / "standin.py")


def default_spec():
    return sweep.load_sweep(REPO / "configs" / "sweeps" / "scorer_hidden.py")


# ----------------------------------------------------------------------- spec and expansion


def test_default_spec_vmap_trials(tmp_path):
    spec = sweep.validate(default_spec(), standin_config(tmp_path))
    trials = sweep.expand(spec)
    assert len(trials) == 7 * 4 == 28
    assert [t.params["model.scorer"] for t in trials[::4]] == SCORERS  # first axis slowest
    assert [t.params["model.hidden_size"] for t in trials[:4]] == SIZES
    assert trials[0].name == "scorer=none,hidden_size=32"
    assert trials[-1].name == "scorer=multihead,hidden_size=256"
    assert all(t.seeds == (0, 1, 2) for t in trials)
    assert trials[9].overrides == {"model.scorer": "dot", "model.hidden_size": 64,
                                   "train.seed": 0, "train.num_seeds": 3,
                                   **default_spec()["fixed"]}
    assert list(trials[9].overrides) == ["model.scorer", "model.hidden_size", "train.seed",
                                         "train.num_seeds", *default_spec()["fixed"]]
    assert [t.index for t in trials] == list(range(28))


def test_default_spec_seed_trials(tmp_path):
    spec = sweep.validate(default_spec(), standin_config(tmp_path))
    trials = sweep.expand(spec, seeds_mode="trials")
    assert len(trials) == 7 * 4 * 3 == 84
    assert [t.seeds for t in trials[:3]] == [(0,), (1,), (2,)]
    assert [t.name for t in trials[:3]] == [f"scorer=none,hidden_size=32,seed={s}" for s in range(3)]
    assert trials[4].overrides == {"model.scorer": "none", "model.hidden_size": 64,
                                   "train.seed": 1, "train.num_seeds": 1,
                                   **default_spec()["fixed"]}
    grid = {(t.params["model.scorer"], t.params["model.hidden_size"], t.seeds[0]) for t in trials}
    assert grid == {(s, h, k) for s in SCORERS for h in SIZES for k in range(3)}


def test_names_unique_stable_and_safe(tmp_path):
    spec = sweep.validate(default_spec(), standin_config(tmp_path))
    for mode in sweep.SEEDS_MODES:
        names = [t.name for t in sweep.expand(spec, mode)]
        assert len(set(names)) == len(names)
        assert names == [t.name for t in sweep.expand(spec, mode)]
        assert all(re.fullmatch(r"[A-Za-z0-9._+=,-]+", n) for n in names)
    # Keys sharing a last component keep enough of their path to stay distinct.
    assert sweep.trial_name({"model.dropout": 0.1, "train.dropout": 0.2, "a.b.c": "x/y"}) == (
        "model.dropout=0.1,train.dropout=0.2,c=x_y")


def test_command_exact(tmp_path):
    spec = sweep.validate(small_spec(), standin_config(tmp_path))
    trial = sweep.expand(spec)[3]
    assert trial.name == "scorer=dot,hidden_size=16"
    assert sweep.command(trial, "runs/s") == [
        "python", "-m", "attn_jax.train", "--config=base.py",
        "--workdir=runs/s/scorer=dot,hidden_size=16", "--config.model.scorer=dot",
        "--config.model.hidden_size=16", "--config.train.seed=5", "--config.train.num_seeds=2",
        "--config.train.num_steps=7"]


@pytest.mark.parametrize("change, needles", [
    ({"axes": {"model.scorr": ["dot"]}}, ["model.scorr", "model.scorer", "model.hidden_size"]),
    ({"axes": {"optim.lr": [0.1]}}, ["optim.lr", "model.scorer", "train.learning_rate"]),
    ({"fixed": {"train.num_step": 5}}, ["train.num_step", "train.num_steps"]),
    ({"axes": {"model.scorer": ["dot", "luong"]}}, ["luong", *SCORERS]),
    ({"axes": {"model.hidden_size": [64, "128"]}}, ["'128'", "int"]),
    ({"axes": {"model.hidden_size": [64.0]}}, ["64.0", "int"]),
    ({"fixed": {"model.bidirectional": 1}}, ["bidirectional", "bool"]),
    ({"axes": {"model": ["x"]}}, ["section", "model.scorer"]),
    ({"axes": {"train.seed": [0, 1]}}, ["seeds"]),
    ({"seeds": {"base": 0}}, ["base", "count"]),
    ({"extra": 1}, ["extra", "name", "base_config", "axes", "seeds", "fixed"]),
    ({"axes": {}}, ["non-empty"]),
    ({"name": "a b"}, ["a b"]),
    ({"base_config": 5}, ["base_config", "5"]),
    ({"base_config": {"model.flow": {"x": "base.py"}}}, ["model.flow", "model.scorer, model.hidden_size"]),
    ({"base_config": {"model.scorer": {"additive": "b.py", "dot": "b.py"}}}, ["missing ['general']"]),
    ({"base_config": {"model.scorer": {"additive": "b.py", "dot": "b.py", "general": "b.py",
                                       "luong": "b.py"}}}, ["not axis values ['luong']"]),
    ({"base_config": {"model.hidden_size": {"8": "b.py", "16": 3}}}, ["['16']", "3"]),
])
def test_invalid_specs_raise_with_valid_names(tmp_path, change, needles):
    with pytest.raises(ValueError) as e:
        sweep.validate(small_spec(**change), standin_config(tmp_path))
    for needle in needles:
        assert needle in str(e.value)


@pytest.mark.parametrize("change, needles", [
    ({"fixed": {"train.num_steps": 7, "train.eval_every": 10}},
     ["sweep trial scorer=additive,hidden_size=8", "train.eval_every (10)", "train.log_every (50)"]),
    ({"axes": {"model.scorer": ["dot"], "model.hidden_size": [8, -8]}},
     ["sweep trial scorer=dot,hidden_size=-8", "model.hidden_size must be > 0"]),
])
def test_every_trial_config_passes_the_config_checks(tmp_path, change, needles):
    """A sweep is checked with the same value checks as --config, trial by trial."""
    with pytest.raises(ValueError) as e:
        sweep.validate(small_spec(**change), standin_config(tmp_path))
    for needle in needles:
        assert needle in str(e.value)


def test_sweep_files_load_with_the_config_loader(workspace):
    """Sweep and base config files load like --config files: errors are one line with file:line."""
    write_sweep(workspace / "sweep_def.py", small_spec())
    (workspace / "base.py").write_text("def get_config():\n    return {'a': \n")
    with pytest.raises(ValueError, match=r"^base.py:2: syntax error"):
        sweep.load("sweep_def.py")
    with pytest.raises(ValueError, match=r"nope.py' not found"):
        sweep.load("nope.py")
    (workspace / "plain.py").write_text("X = 1\n")
    with pytest.raises(ValueError, match=r"plain.py defines no get_sweep\(\)"):
        sweep.load("plain.py")


def test_sweep_cli_help_and_listing(workspace, capsys):
    result = subprocess.run([sys.executable, "-m", "launch.sweep", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m launch.sweep")
    write_sweep(workspace / "sweep_def.py", small_spec())
    assert sweep.main(["--sweep=sweep_def.py", "--only=scorer=dot"]) == 0
    _, trials = sweep.load("sweep_def.py")
    assert capsys.readouterr().out.splitlines() == [
        f"{t.index}\t{t.name}\t{shlex.join(sweep.command(t, 'runs/small'))}"
        for t in trials if t.params["model.scorer"] == "dot"]


def test_float_field_accepts_int_and_base_config_arg(workspace):
    spec = small_spec(base_config="base.py:tiny", fixed={"train.learning_rate": 1})
    spec, trials = sweep.load(spec)
    assert sweep.command(trials[0], "d")[3] == "--config=base.py:tiny"


def test_base_config_by_axis_value(workspace):
    """base_config may pick each trial's --config by one axis's value (keys as written on the
    command line); every trial is validated against its own base config."""
    (workspace / "other.py").write_text(STANDIN_CONFIG.replace(
        "train.learning_rate = 3e-3", "train.learning_rate = 5e-4"))
    spec = small_spec(base_config={"model.hidden_size": {"8": "base.py:tiny", "16": "other.py"}})
    spec, trials = sweep.load(spec)
    assert [(t.name, t.config) for t in trials[:2]] == [
        ("scorer=additive,hidden_size=8", "base.py:tiny"), ("scorer=additive,hidden_size=16", "other.py")]
    assert sweep.command(trials[1], "d")[3] == "--config=other.py"
    assert [t.config for t in sweep.expand(spec, "trials")[:4]] == ["base.py:tiny"] * 2 + ["other.py"] * 2
    config = sweep.trial_config(trials[1])
    assert (config.train.learning_rate, config.train.num_steps, config.model.hidden_size) == (5e-4, 7, 16)
    assert sweep.trial_config(trials[0]).data.train_size == 400  # default.py:tiny's
    # A trial whose own base refuses an override fails validation, named.
    base = {"model.arch": {"rnn": f"{REPO}/configs/default.py:tiny",
                           "transformer": f"{REPO}/configs/transformer.py:tiny"}}
    ok = {"name": "mixed", "base_config": base, "axes": {"model.arch": ["rnn", "transformer"]},
          "seeds": {"base": 0, "count": 1}, "fixed": {}}
    assert [t.config.rsplit("/", 1)[1] for t in sweep.load(ok)[1]] == ["default.py:tiny",
                                                                       "transformer.py:tiny"]
    with pytest.raises(ValueError, match=r"sweep trial arch=transformer: .*bidirectional"):
        sweep.validate(dict(ok, fixed={"model.bidirectional": True}))


def test_seeds_mode_unknown():
    with pytest.raises(ValueError, match="vmap, trials"):
        sweep.expand(small_spec(), seeds_mode="both")


def test_select_filters():
    trials = sweep.expand(small_spec())
    assert [t.name for t in sweep.select(trials, ["scorer=dot"])] == [
        "scorer=dot,hidden_size=8", "scorer=dot,hidden_size=16"]
    assert [t.name for t in sweep.select(trials, ["hidden_size=16,scorer=general", "scorer=dot"])] == [
        "scorer=dot,hidden_size=8", "scorer=dot,hidden_size=16", "scorer=general,hidden_size=16"]
    with pytest.raises(ValueError, match="matches no trial"):
        sweep.select(trials, ["scorer=luong"])


# -------------------------------------------------------------------------- local launcher


def run_local(capsys, *extra):
    rc = local.main(["--sweep=sweep_def.py", "--sweep_dir=out", "--parallel=2",
                     "--module=fake_train", *extra])
    return rc, capsys.readouterr()


def invocations(root: Path) -> list[str]:
    path = root / "invocations.txt"
    return sorted(path.read_text().split()) if path.exists() else []


def statuses(root: Path) -> dict[str, tuple[str, int | None]]:
    data = json.loads((root / "out" / "status.json").read_text())
    return {n: (e["status"], e["returncode"]) for n, e in data["trials"].items()}


def test_local_dry_run_prints_exact_commands(workspace, capsys):
    write_sweep(workspace / "sweep_def.py", small_spec())
    rc, out = run_local(capsys, "--dry_run", "--only=scorer=additive")
    assert rc == 0
    py = shlex.quote(sys.executable)
    assert out.out.splitlines() == [
        f"{py} -m fake_train --config=base.py --workdir=out/scorer=additive,hidden_size={h} "
        f"--config.model.scorer=additive --config.model.hidden_size={h} --config.train.seed=5 "
        f"--config.train.num_seeds=2 --config.train.num_steps=7" for h in (8, 16)]
    assert not (workspace / "out").exists() and invocations(workspace) == []


def test_local_invalid_spec_fails_before_running(workspace, capsys):
    write_sweep(workspace / "sweep_def.py", small_spec(axes={"model.scorer": ["dot", "luong"]}))
    with pytest.raises(ValueError, match="valid scorers"):
        run_local(capsys)
    assert not (workspace / "out").exists() and invocations(workspace) == []


def test_local_failure_isolation_skip_and_resume(workspace, capsys):
    write_sweep(workspace / "sweep_def.py", small_spec())
    rc, out = run_local(capsys)
    assert rc == 1
    assert statuses(workspace) == {
        "scorer=additive,hidden_size=8": ("finished", 0),
        "scorer=additive,hidden_size=16": ("finished", 0),
        "scorer=dot,hidden_size=8": ("failed", 3),
        "scorer=dot,hidden_size=16": ("failed", 3),
        "scorer=general,hidden_size=8": ("failed", 1),
        "scorer=general,hidden_size=16": ("failed", 1)}
    assert len(invocations(workspace)) == 6
    assert "scorer=dot,hidden_size=8" in out.out and "failed" in out.out  # summary table
    wd = workspace / "out" / "scorer=additive,hidden_size=8"
    assert "training out/scorer=additive,hidden_size=8" in (wd / "log.txt").read_text()
    assert json.loads((wd / "results.json").read_text())["seeds"] == [{"seed": 5}, {"seed": 6}]
    assert not list((workspace / "out").glob("*.tmp*"))
    first = json.loads((workspace / "out" / "status.json").read_text())["trials"]

    # Rerun: finished trials are skipped; the others relaunch (general now succeeds).
    rc, out = run_local(capsys)
    assert rc == 1
    calls = invocations(workspace)
    assert calls.count("out/scorer=additive,hidden_size=8") == 1
    assert calls.count("out/scorer=general,hidden_size=8") == 2
    assert calls.count("out/scorer=dot,hidden_size=16") == 2
    status = statuses(workspace)
    assert status["scorer=general,hidden_size=16"] == ("finished", 0)
    assert status["scorer=dot,hidden_size=16"] == ("failed", 3)
    data = json.loads((workspace / "out" / "status.json").read_text())["trials"]
    general = data["scorer=general,hidden_size=8"]
    assert general["attempts"] == 2
    # Time adds up over attempts: the first attempt's plus the second's (each rounded to 0.1 s,
    # each at least the fake trainer's 0.2 s).
    earlier = first["scorer=general,hidden_size=8"]["wall_seconds"]
    assert earlier >= 0.2 and general["wall_seconds"] >= 0.2
    assert general["total_wall_seconds"] == pytest.approx(earlier + general["wall_seconds"], abs=0.11)
    assert data["scorer=additive,hidden_size=8"] == first["scorer=additive,hidden_size=8"]  # skipped
    log = (workspace / "out" / "scorer=general,hidden_size=8" / "log.txt").read_text()
    assert "attempt 1 failed (returncode 1)" in log and "attempt 2 finished (returncode 0)" in log
    assert "2 skipped" in out.out

    # Only the finished ones selected: nothing runs, exit code 0, other entries kept.
    rc, _ = run_local(capsys, "--only=scorer=additive", "--only=scorer=general")
    assert rc == 0 and len(invocations(workspace)) == 10
    assert statuses(workspace)["scorer=dot,hidden_size=8"] == ("failed", 3)


def test_local_seed_trials_mode(workspace, capsys):
    write_sweep(workspace / "sweep_def.py", small_spec(axes={"model.scorer": ["additive"]}))
    rc, _ = run_local(capsys, "--seeds_mode=trials")
    assert rc == 0
    assert statuses(workspace) == {"scorer=additive,seed=5": ("finished", 0),
                                   "scorer=additive,seed=6": ("finished", 0)}
    res = json.loads((workspace / "out" / "scorer=additive,seed=6" / "results.json").read_text())
    assert res["seeds"] == [{"seed": 6}]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_local_stopped_by_signal_stops_its_trials(workspace, signum):
    """A signalled launcher terminates its running trial (a fake one that sleeps), waits for it
    and marks it stopped; it leaves no orphan and no status stuck at 'running'."""
    write_sweep(workspace / "sweep_def.py", small_spec(axes={"model.scorer": ["additive"]},
                                                       seeds={"base": 0, "count": 1}))
    fake_python = workspace / "fakepy"  # Records its pid, then becomes a long sleep.
    fake_python.write_text("#!/bin/sh\necho $$ > child.tmp && mv child.tmp child.pid\n"
                           "exec sleep 600\n")
    fake_python.chmod(0o755)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    launcher = subprocess.Popen(
        [sys.executable, "-m", "launch.local", "--sweep=sweep_def.py", "--sweep_dir=out",
         f"--python={fake_python}"], cwd=workspace, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    pid_file, child = workspace / "child.pid", None
    try:
        deadline = time.monotonic() + 300  # A hang guard, not a timing assertion.
        while not pid_file.exists():  # Until the trial runs (or the launcher fails).
            assert launcher.poll() is None, launcher.communicate()
            assert time.monotonic() < deadline, "the trial never started"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        assert statuses(workspace) == {"scorer=additive": ("running", None)}
        launcher.send_signal(signum)
        out, err = launcher.communicate(timeout=120)
        assert launcher.returncode == 128 + signum, err
        assert not _alive(child)
        assert statuses(workspace) == {"scorer=additive": ("stopped", -signal.SIGTERM)}
        assert signal.Signals(signum).name in err and "rerun the same command" in err
    finally:
        if launcher.poll() is None:
            launcher.kill()
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)


# Records the environment and CPU affinity a trial gets, then finishes.
ENV_TRAIN = """
import json, os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
os.makedirs(args["workdir"], exist_ok=True)
keys = ("CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_PREALLOCATE", "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
with open(os.path.join(args["workdir"], "env.json"), "w") as f:
    json.dump({"env": {k: os.environ.get(k) for k in keys},
               "cpus": sorted(os.sched_getaffinity(0))}, f)
open(os.path.join(args["workdir"], "results.json"), "w").write("{}")
"""


def test_placements_per_slot():
    both = local.placements(2, ["0", "1"], [0, 1, 2, 3])
    assert [p.environment({}) for p in both] == [{"CUDA_VISIBLE_DEVICES": "0"},
                                                 {"CUDA_VISIBLE_DEVICES": "1"}]
    shared = local.placements(3, ["3", "5"], [0, 1])
    assert [p.environment({})["CUDA_VISIBLE_DEVICES"] for p in shared] == ["3", "5", "3"]
    assert {p.environment({})["XLA_PYTHON_CLIENT_PREALLOCATE"] for p in shared} == {"false"}
    # A value the user set stays; the trial's GPU does not.
    user = {"XLA_PYTHON_CLIENT_PREALLOCATE": "true", "CUDA_VISIBLE_DEVICES": "3,5"}
    assert shared[1].environment(user) == {"XLA_PYTHON_CLIENT_PREALLOCATE": "true",
                                           "CUDA_VISIBLE_DEVICES": "5"}
    cpu = local.placements(2, [], [0, 1, 2, 3, 4])
    assert [p.cpus for p in cpu] == [(0, 1), (2, 3)]
    assert cpu[1].environment({}) == {v: "2" for v in local.THREAD_VARS}
    assert cpu[1].environment({"OMP_NUM_THREADS": "7"})["OMP_NUM_THREADS"] == "7"
    assert [p.cpus for p in local.placements(3, [], [0, 1])] == [(0,), (1,), (0,)]
    assert [p.cpus for p in local.placements(2, [], [0, 1], pin_cpus=False)] == [None, None]
    assert local.placements(1, [], [0, 1])[0] == local.Placement({}, {})


def test_detect_gpus(tmp_path, monkeypatch):
    assert local.detect_gpus("0,2") == ["0", "2"] and local.detect_gpus("none") == []
    with pytest.raises(ValueError, match="--gpus"):
        local.detect_gpus(",")
    assert local.detect_gpus("auto", {"CUDA_VISIBLE_DEVICES": "GPU-ab,GPU-cd"}) == [
        "GPU-ab", "GPU-cd"]
    assert local.detect_gpus("auto", {"CUDA_VISIBLE_DEVICES": ""}) == []
    monkeypatch.setenv("PATH", str(tmp_path))  # No nvidia-smi: no GPUs.
    assert local.detect_gpus("auto", {}) == []
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: H100 (UUID: a)'\necho 'GPU 1: H100 (UUID: b)'\n")
    smi.chmod(0o755)
    assert local.detect_gpus("auto", {}) == ["0", "1"]


def _trial_envs(root: Path) -> dict[str, dict]:
    return {d.name: json.loads((d / "env.json").read_text())
            for d in (root / "out").iterdir() if (d / "env.json").exists()}


def test_local_trials_get_their_gpu_or_cpu_share(workspace, capsys, monkeypatch):
    (workspace / "env_train.py").write_text(ENV_TRAIN)
    write_sweep(workspace / "sweep_def.py", small_spec())
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    for var in local.THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    own = os.sched_getaffinity(0)
    assert local.main(["--sweep=sweep_def.py", "--sweep_dir=out", "--parallel=3",
                       "--module=env_train", "--gpus=0,1"]) == 0
    envs = _trial_envs(workspace)
    status = json.loads((workspace / "out" / "status.json").read_text())["trials"]
    assert len(envs) == 6
    for name, got in envs.items():
        assert got["env"]["CUDA_VISIBLE_DEVICES"] in ("0", "1")
        assert got["env"]["CUDA_VISIBLE_DEVICES"] == status[name]["gpu"]
        assert got["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"  # 3 trials on 2 GPUs.
        assert got["env"]["OMP_NUM_THREADS"] is None and set(got["cpus"]) == own
    shutil.rmtree(workspace / "out")

    cpus = sorted(own)
    if len(cpus) < 2:
        pytest.skip("one CPU: nothing to share")
    assert local.main(["--sweep=sweep_def.py", "--sweep_dir=out", "--parallel=2",
                       "--module=env_train", "--gpus=none"]) == 0
    shares = [p.cpus for p in local.placements(2, [], cpus)]
    for name, got in _trial_envs(workspace).items():
        assert tuple(got["cpus"]) in shares and got["cpus"] == status_cpus(workspace, name)
        assert got["env"]["OMP_NUM_THREADS"] == str(len(got["cpus"]))
        assert got["env"]["CUDA_VISIBLE_DEVICES"] is None
    assert os.sched_getaffinity(0) == own  # The launcher's own threads are not pinned.


def status_cpus(root: Path, name: str) -> list[int]:
    return json.loads((root / "out" / "status.json").read_text())["trials"][name]["cpus"]


# ------------------------------------------------------------------------------ W&B route


def test_wandb_yaml_content(workspace):
    spec = sweep.validate(wandb_sweep.route_spec(small_spec()))
    cfg = yaml.safe_load(wandb_sweep.to_yaml(
        wandb_sweep.sweep_config(spec, "sweep_def.py", "runs/w", project="attn_jax")))
    assert cfg["method"] == "grid" and cfg["project"] == "attn_jax"
    assert cfg["parameters"] == {
        "config.model.scorer": {"values": ["additive", "dot", "general"]},
        "config.model.hidden_size": {"values": [8, 16]},
        "config.train.seed": {"value": 5},
        "config.train.num_seeds": {"value": 2},
        "config.train.num_steps": {"value": 7},
        "config.logging.wandb": {"value": "online"}}
    assert cfg["command"] == ["${env}", "${interpreter}", "-m", "launch.wandb_sweep",
                              "--run_trial", "--sweep=sweep_def.py", "--sweep_dir=runs/w",
                              "--seeds_mode=vmap", "--wandb_mode=online", "${args}"]
    trials_cfg = wandb_sweep.sweep_config(spec, "sweep_def.py", "runs/w", seeds_mode="trials")
    assert trials_cfg["parameters"]["config.train.seed"] == {"values": [5, 6]}
    assert trials_cfg["parameters"]["config.train.num_seeds"] == {"value": 1}


def test_wandb_yaml_cli_default_sweep(workspace, capsys):
    """The real sweep definition, with its base config swapped for the stand-in."""
    spec = dict(default_spec(), base_config="base.py")
    write_sweep(workspace / "sweep_def.py", spec)
    assert wandb_sweep.main(["--sweep=sweep_def.py", "--out=sweep.yaml"]) == 0
    cfg = yaml.safe_load((workspace / "sweep.yaml").read_text())
    assert cfg["method"] == "grid"
    assert cfg["parameters"]["config.model.scorer"] == {"values": SCORERS}
    assert cfg["parameters"]["config.model.hidden_size"] == {"values": SIZES}
    assert cfg["parameters"]["config.train.num_seeds"] == {"value": 3}
    assert cfg["command"][-1] == "${args}"


def test_overrides_from_wandb_args():
    args = ["--config.model.scorer=dot", "--config.model.hidden_size=64", "--config.train.seed=0",
            "--config.train.num_seeds=3", "--config.train.learning_rate=0.001"]
    assert wandb_sweep.overrides_from_wandb_args(args) == {
        "model.scorer": "dot", "model.hidden_size": 64, "train.seed": 0, "train.num_seeds": 3,
        "train.learning_rate": 0.001}
    with pytest.raises(ValueError, match="--config.KEY=VALUE"):
        wandb_sweep.overrides_from_wandb_args(["--lr=0.1"])


def test_wandb_args_map_back_to_the_same_trials():
    spec = wandb_sweep.route_spec(small_spec())
    for mode in sweep.SEEDS_MODES:
        for trial in sweep.expand(spec, mode):
            args = wandb_sweep.wandb_args(trial)
            assert wandb_sweep.trial_for_args(spec, args[::-1], mode) == trial
    with pytest.raises(ValueError, match="valid: 8, 16"):
        wandb_sweep.overrides_from_wandb_args(["--config.model.hidden_size=32"], spec)
    with pytest.raises(ValueError, match="not part of this sweep"):
        wandb_sweep.overrides_from_wandb_args(["--config.model.dropout=0.1"], spec)
    with pytest.raises(ValueError, match="match 2 trials"):  # hidden_size missing: ambiguous.
        wandb_sweep.trial_for_args(spec, ["--config.model.scorer=dot"])
    with pytest.raises(ValueError, match="match 0 trials"):  # a seed outside vmap mode.
        wandb_sweep.trial_for_args(spec, ["--config.model.scorer=dot", "--config.train.seed=6",
                                          "--config.model.hidden_size=8"])
    short = ["--config.model.scorer=dot", "--config.model.hidden_size=8"]  # constants left out
    assert wandb_sweep.trial_for_args(spec, short).name == "scorer=dot,hidden_size=8"


def test_wandb_run_trial_dry_run(workspace, capsys):
    write_sweep(workspace / "sweep_def.py", small_spec())
    argv = ["--run_trial", "--sweep=sweep_def.py", "--sweep_dir=runs/w", "--seeds_mode=vmap",
            "--wandb_mode=online", "--dry_run", "--python=python",
            "--config.model.hidden_size=16", "--config.model.scorer=general",
            "--config.train.seed=5", "--config.train.num_seeds=2", "--config.train.num_steps=7",
            "--config.logging.wandb=online"]
    assert wandb_sweep.main(argv) == 0
    spec = wandb_sweep.route_spec(small_spec())
    trial = [t for t in sweep.expand(spec) if t.name == "scorer=general,hidden_size=16"][0]
    assert capsys.readouterr().out.strip() == shlex.join(sweep.command(trial, "runs/w"))
    assert sweep.command(trial, "runs/w")[-1] == "--config.logging.wandb=online"


def agent_argv(cfg: dict, point: dict) -> list[str]:
    """The command `wandb agent` runs for one grid point of a sweep YAML (${env} dropped)."""
    args = [f"--{k}={v}" for k, v in point.items()]
    subs = {"${env}": [], "${interpreter}": [sys.executable], "${args}": args}
    return [a for part in cfg["command"] for a in subs.get(part, [part])]


@pytest.mark.slow
def test_wandb_route_vmapped_seeds_tiny_grid_end_to_end_offline(tmp_path):
    """The W&B route with --seeds_mode=vmap, as `wandb agent` runs it (WANDB_SWEEP_ID and one
    WANDB_RUN_ID per run, offline): a grid point trains its 2 seeds in one process and one W&B
    run (the agent's), with mean and seed-prefixed keys; it once crashed with 'run ID ... is in
    use'. The sweep file holds both points; the agent runs the first (every point takes the
    same route: test_wandb_args_map_back_to_the_same_trials maps every point to its trial)."""
    spec = {"name": "tiny_grid", "base_config": f"{REPO}/configs/default.py:tiny",
            "axes": {"train.log_every": [3, 6]}, "seeds": {"base": 0, "count": 2},
            "fixed": {"data.tfds_dir": str(tmp_path / "tfds"), "data.buckets": [72],
                      "train.num_steps": 6, "eval.num_heatmaps": 0}}
    write_sweep(tmp_path / "sweep_def.py", spec)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(PYTHONPATH=str(REPO), WANDB_MODE="offline", WANDB_SWEEP_ID="sweep1",
               WANDB_CONFIG_DIR=str(tmp_path / "wandb_config"), WANDB_SILENT="true")
    subprocess.run([sys.executable, "-m", "launch.wandb_sweep", "--sweep=sweep_def.py",
                    "--sweep_dir=sweep", "--out=sweep.yaml"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    cfg = yaml.safe_load((tmp_path / "sweep.yaml").read_text())
    assert cfg["metric"] == {"name": "valid/bleu", "goal": "maximize"}
    params = cfg["parameters"]
    assert params["config.train.log_every"]["values"] == [3, 6]
    for i, log_every in enumerate(params["config.train.log_every"]["values"][:1]):
        point = {k: p["value"] if "value" in p else log_every for k, p in params.items()}
        run = subprocess.run(agent_argv(cfg, point), cwd=tmp_path, capture_output=True,
                             text=True, env=dict(env, WANDB_RUN_ID=f"agentrun{i}"))
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        workdir = tmp_path / "sweep" / f"log_every={log_every}"
        results = json.loads((workdir / "results.json").read_text())
        assert [s["seed"] for s in results["seeds"]] == [0, 1]
        rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
        assert sorted({(r["step"], r["seed"]) for r in rows if r["split"] == "train"}) == sorted(
            (s, seed) for s in range(log_every, 7, log_every) for seed in (0, 1))
        (run_dir,) = (workdir / "wandb" / "wandb").glob("offline-run-*")
        assert run_dir.name.endswith(f"-agentrun{i}")  # The agent's run, and only it.
        history: dict = {}
        for r in wandb_records(str(run_dir)):
            if r["type"] == "history":
                history.setdefault(r["history"]["step"]["num"], {}).update(r["history"]["item"])
        valid = {r["seed"]: r["bleu"] for r in rows if r["split"] == "valid" and r["step"] == 6}
        assert history[6]["seed0/valid/bleu"] == pytest.approx(valid[0])
        assert history[6]["seed1/valid/bleu"] == pytest.approx(valid[1])
        assert history[6]["valid/bleu"] == pytest.approx((valid[0] + valid[1]) / 2)
        assert "seed1/train/loss" in history[log_every] and "train/loss" in history[log_every]


# ---------------------------------------------------------------------------------- SLURM


def test_slurm_script(workspace, capsys):
    write_sweep(workspace / "sweep_def.py", dict(default_spec(), base_config="base.py"))
    assert slurm.main(["--sweep=sweep_def.py", "--sweep_dir=runs/s", "--partition=cpu",
                       "--time=01:00:00", "--max_parallel=4", "--out=job.sbatch"]) == 0
    text = (workspace / "job.sbatch").read_text()
    assert (workspace / "runs" / "s" / "slurm").is_dir()
    assert "#SBATCH --array=0-27%4" in text.splitlines()
    assert "#SBATCH --partition=cpu" in text and "#SBATCH --time=01:00:00" in text
    assert "#SBATCH --output=runs/s/slurm/%x_%A_%a.out" in text
    for line in ("#SBATCH --requeue", "#SBATCH --open-mode=append",
                 f"#SBATCH --signal=B:USR1@{slurm.SIGNAL_SECONDS}", "trap 'forward USR1' USR1",
                 "trap 'forward TERM' TERM", '  wait "${child}" || rc=$?',
                 '  if scontrol requeue "${SLURM_JOB_ID}"; then'):
        assert line in text.splitlines(), line
    arms = re.findall(r"^  (\d+)\)\n.*\n.*\n    CMD=\((.*)\)$", text, flags=re.M)
    _, trials = sweep.load("sweep_def.py")
    assert [int(i) for i, _ in arms] == list(range(28))
    for (_, cmd), trial in zip(arms, trials):
        assert shlex.split(cmd) == sweep.command(trial, "runs/s")
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", "job.sbatch"], check=True)


def test_slurm_dry_run_and_task_execution(workspace, capsys):
    """--dry_run prints the script and per-index commands; index i really runs command(trial i)."""
    write_sweep(workspace / "sweep_def.py", small_spec())
    fake_python = workspace / "fakepy"
    fake_python.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > argv.txt\n')
    fake_python.chmod(0o755)
    assert slurm.main(["--sweep=sweep_def.py", "--sweep_dir=runs/s", "--dry_run",
                       f"--python={fake_python}"]) == 0
    out = capsys.readouterr().out
    assert not (workspace / "runs").exists()
    _, trials = sweep.load("sweep_def.py")
    for t in trials:
        cmd = shlex.join(sweep.command(t, "runs/s", python=str(fake_python)))
        assert f"# SLURM_ARRAY_TASK_ID={t.index}: {cmd}" in out
    if not shutil.which("bash"):
        pytest.skip("no bash")
    script = out.split("\n# SLURM_ARRAY_TASK_ID=")[0]
    (workspace / "job.sbatch").write_text(script)
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="3", SLURM_SUBMIT_DIR=str(workspace))
    subprocess.run(["bash", "job.sbatch"], check=True, env=env, capture_output=True)
    assert (workspace / "argv.txt").read_text().splitlines() == sweep.command(
        trials[3], "runs/s", python=str(fake_python))[1:]
    # A finished trial's task exits without running it.
    (workspace / "argv.txt").unlink()
    (workspace / "runs" / "s" / trials[3].name / "results.json").write_text("{}")
    subprocess.run(["bash", "job.sbatch"], check=True, env=env, capture_output=True)
    assert not (workspace / "argv.txt").exists()
    bad = dict(env, SLURM_ARRAY_TASK_ID="99")
    assert subprocess.run(["bash", "job.sbatch"], env=bad, capture_output=True).returncode == 2


def test_slurm_options_signal_and_no_requeue(workspace, capsys):
    write_sweep(workspace / "sweep_def.py", small_spec())
    assert slurm.main(["--sweep=sweep_def.py", "--dry_run", "--signal_seconds=90"]) == 0
    assert "#SBATCH --signal=B:USR1@90" in capsys.readouterr().out.splitlines()
    assert slurm.main(["--sweep=sweep_def.py", "--dry_run", "--signal_seconds=0",
                       "--no-requeue"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --no-requeue" in out.splitlines() and "#SBATCH --signal" not in out
    assert "scontrol" not in out and "#SBATCH --requeue" not in out
    with pytest.raises(ValueError, match="signal_seconds"):
        slurm.main(["--sweep=sweep_def.py", "--dry_run", "--signal_seconds=-5"])


# Stands in for training: records its argv, then waits; on SIGUSR1/SIGTERM it "checkpoints"
# (writes got_signal) and exits 143, like attn_jax.train. EXIT_AT_ONCE=N makes it exit N.
FAKE_TRAINING = """#!/bin/bash
if [[ -n "${EXIT_AT_ONCE:-}" ]]; then exit "${EXIT_AT_ONCE}"; fi
sleep 600 & s=$!
trap 'echo USR1 >> got_signal; kill $s; exit 143' USR1
trap 'echo TERM >> got_signal; kill $s; exit 143' TERM
echo $$ > train.pid.tmp && mv train.pid.tmp train.pid
wait $s
"""


@pytest.mark.skipif(not shutil.which("bash"), reason="no bash")
@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM])
def test_slurm_task_forwards_signal_and_requeues(workspace, capsys, signum):
    """The batch shell gets SLURM's signal, training gets it from the shell, exits 143 after
    its checkpoint, and the task requeues itself through (a fake) scontrol."""
    write_sweep(workspace / "sweep_def.py", small_spec())
    fake_python = workspace / "fakepy"
    fake_python.write_text(FAKE_TRAINING)
    fake_python.chmod(0o755)
    bin_dir = workspace / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/sh\necho "$@" >> scontrol_calls\n')
    (bin_dir / "scontrol").chmod(0o755)
    assert slurm.main(["--sweep=sweep_def.py", "--sweep_dir=runs/s", "--out=job.sbatch",
                       f"--python={fake_python}"]) == 0
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="1", SLURM_JOB_ID="4242",
               SLURM_SUBMIT_DIR=str(workspace), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    job = subprocess.Popen(["bash", "job.sbatch"], cwd=workspace, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    pid_file, train_pid = workspace / "train.pid", None
    try:
        deadline = time.monotonic() + 120  # A hang guard, not a timing assertion.
        while not pid_file.exists():
            assert job.poll() is None, job.communicate()
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.05)
        train_pid = int(pid_file.read_text())
        job.send_signal(signum)  # What SLURM does (to the batch shell: --signal=B:...).
        out, _ = job.communicate(timeout=60)
        assert job.returncode == 0, out
        assert (workspace / "got_signal").read_text().split() == [signum.name[3:]]
        assert (workspace / "scontrol_calls").read_text().split() == ["requeue", "4242"]
        assert "training exited with 143" in out and "requeued job 4242" in out
        assert not _alive(train_pid)
    finally:
        if job.poll() is None:
            job.kill()
        if train_pid is not None and _alive(train_pid):
            os.kill(train_pid, signal.SIGKILL)

    # Training that ends by itself: its exit code is the task's, and nothing is requeued.
    (workspace / "scontrol_calls").unlink()
    for code in (0, 1):
        done = subprocess.run(["bash", "job.sbatch"], cwd=workspace, capture_output=True,
                              env=dict(env, EXIT_AT_ONCE=str(code)))
        assert done.returncode == code and not (workspace / "scontrol_calls").exists()
    # scontrol failing (not a requeueable job): the task reports 143 itself.
    (bin_dir / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    done = subprocess.run(["bash", "job.sbatch"], cwd=workspace, capture_output=True, text=True,
                          env=dict(env, EXIT_AT_ONCE="143"))
    assert done.returncode == 143 and "resubmit this script" in done.stderr


# ----------------------------------------------------------------- scripts/device_check.sh


@pytest.mark.skipif(not shutil.which("bash"), reason="no bash")
def test_device_check_script_parses_and_runs_every_section(tmp_path):
    """bash -n, then a run with a stand-in python that records its arguments: every section
    runs its command (the K list, the training config, the timeout) into the one log."""
    script = REPO / "scripts" / "device_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    fake = tmp_path / "fakepy"
    fake.write_text('#!/bin/sh\necho "fakepy $*" >> "$CALLS"\necho ran\n')
    fake.chmod(0o755)
    log, calls = tmp_path / "check.log", tmp_path / "calls.txt"
    env = dict(os.environ, PYTHON=str(fake), CALLS=str(calls), WORKDIR=str(tmp_path / "w"))
    for quick, seeds, config in (("1", "1,2", "configs/default.py:tiny"),
                                 ("0", "1,2,4,8", "configs/default.py")):
        calls.unlink(missing_ok=True)
        out = subprocess.run(["bash", str(script), str(log)], env=dict(env, QUICK=quick),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        lines = calls.read_text().splitlines()
        assert len(lines) == 5 and "import jax" in lines[0], lines
        assert all("-m attn_jax.benchmark --mode=synthetic --scorers=additive" in line
                   for line in lines[1:4])
        assert "--dtype=float32" in lines[1] and "--dtype=bfloat16" in lines[2]
        assert f"--num_seeds={seeds}" in lines[3]
        assert (quick == "1") == ("--hidden_size=64" in lines[1])
        assert f"-m attn_jax.train --config={config} --workdir={tmp_path / 'w'}" in lines[4]
        text = log.read_text()
        assert text.count("[exit 0]") >= 5 and "=== 4. training smoke run" in text


# ------------------------------------------------------------ the real default config


@pytest.mark.skipif(not (REPO / "configs" / "default.py").exists(), reason="no configs/default.py")
def test_real_default_sweep_validates(monkeypatch):
    monkeypatch.chdir(REPO)
    for arg, count in (("", 28), (":tiny", 14)):
        spec, trials = sweep.load(f"configs/sweeps/scorer_hidden.py{arg}")
        assert len(trials) == count
        # The W&B route's extra override exists in the real config too.
        sweep.validate(wandb_sweep.route_spec(spec))
    assert spec["axes"]["model.scorer"] == SCORERS  # The registry's published names, defined once.


@pytest.mark.skipif(not (REPO / "configs" / "default.py").exists(), reason="no configs/default.py")
def test_readme_sweeps_load(monkeypatch):
    """Every --sweep=... the launch README names loads and validates (no stale docs)."""
    monkeypatch.chdir(REPO)
    text = (REPO / "launch" / "README.md").read_text()
    paths = set(re.findall(r"--sweep=(configs/\S+?\.py(?::\w+)?)\b", text))
    assert "configs/sweeps/scorer_hidden.py" in paths
    for path in paths:
        sweep.load(path)


# ------------------------------------------- the RNN beside the Transformer (issue 25)


def _config(path: str):
    return config_lib.load_config_file(REPO / "configs" / path)


@pytest.mark.skipif(not (REPO / "configs" / "transformer.py").exists(), reason="no configs")
def test_arch_scorer_sweep_expands_to_8_trials_with_each_archs_fields(monkeypatch):
    """configs/sweeps/arch_scorer.py: rnn x transformer x 4 scorers; each trial runs its arch's
    base config (the Transformer's layers, dropout, schedule, learning rate, warmup and label
    smoothing from configs/transformer.py) with scorer_hidden's budget; nothing trains."""
    monkeypatch.chdir(REPO)
    spec, trials = sweep.load("configs/sweeps/arch_scorer.py")
    scorers = ["scaled_dot", "additive", "dot", "general"]
    assert [t.name for t in trials] == [f"arch={a},scorer={s}" for a in ("rnn", "transformer")
                                        for s in scorers]
    assert all(t.seeds == (0, 1, 2) for t in trials)
    budget = default_spec()["fixed"]
    assert spec["fixed"] == budget  # scorer_hidden's, read from that file.
    default, transformer = _config("default.py"), _config("transformer.py")
    fields = ("model.layers", "model.num_heads", "model.dropout", "model.hidden_size",
              "model.norm", "model.flow", "model.cell", "train.schedule", "train.learning_rate",
              "train.warmup_steps", "train.label_smoothing")
    for trial in trials:
        arch = trial.params["model.arch"]
        base = transformer if arch == "transformer" else default
        assert trial.config == f"configs/{'transformer' if arch == 'transformer' else 'default'}.py"
        config = config_lib.flatten(sweep.trial_config(trial))
        assert (config["model.arch"], config["model.scorer"]) == (arch, trial.params["model.scorer"])
        assert {k: config[k] for k in fields} == {k: config_lib.flatten(base)[k] for k in fields}
        assert {k: config[k] for k in budget} == budget
        assert (config["train.seed"], config["train.num_seeds"]) == (0, 3)
    # The two bases differ in fields checked above, so each trial really took its own arch's.
    assert [k for k in fields if config_lib.flatten(transformer)[k]
            != config_lib.flatten(default)[k]]
    seed_trials = sweep.expand(spec, "trials")
    assert len(seed_trials) == 24 and seed_trials[-1].name == "arch=transformer,scorer=general,seed=2"
    assert [t.name for t in sweep.select(trials, ["arch=transformer,scorer=dot"])] == [
        "arch=transformer,scorer=dot"]


@pytest.mark.skipif(not (REPO / "configs" / "transformer.py").exists(), reason="no configs")
def test_arch_scorer_tiny_sweep_validates_on_the_tiny_configs(monkeypatch):
    monkeypatch.chdir(REPO)
    spec, trials = sweep.load("configs/sweeps/arch_scorer.py:tiny")
    assert len(trials) == 8 and spec["fixed"] == {} and all(t.seeds == (0, 1) for t in trials)
    assert {t.config for t in trials} == {"configs/default.py:tiny", "configs/transformer.py:tiny"}
    for trial in trials:
        config = sweep.trial_config(trial)
        assert (config.data.train_size, config.train.num_steps, config.model.hidden_size) == (400, 12, 16)
    sweep.validate(wandb_sweep.route_spec(spec))  # The W&B route's override exists in both bases.
    with pytest.raises(ValueError, match="valid: 'tiny'"):
        sweep.load("configs/sweeps/arch_scorer.py:big")


@pytest.mark.skipif(not (REPO / "configs" / "multi30k.py").exists(), reason="no configs")
def test_multi30k_transformer_config_is_multi30k_data_with_a_transformer():
    """configs/multi30k_transformer.py (and its ':tiny'): configs/multi30k.py's data and
    evaluation (beam 5), the Transformer's model fields; it passes the config checks."""
    for arg in ("", ":tiny"):
        config = _config(f"multi30k_transformer.py{arg}")
        m30k = _config(f"multi30k.py{arg}")
        assert config.data.to_dict() == m30k.data.to_dict()
        assert config.eval.to_dict() == m30k.eval.to_dict()
        model = config_lib.validate(config)  # The model config it derives.
        assert type(model).__name__ == "TransformerConfig" and model.tie_embeddings
        assert (config.train.schedule, config.train.label_smoothing) == ("cosine", 0.1)
    assert config.eval.beam_size == 2 and config.train.num_steps == 20  # the ':tiny' one
    full = _config("multi30k_transformer.py")
    assert (full.eval.beam_size, full.model.layers, config_lib.validate(full).d_model) == (5, 2, 256)


@pytest.mark.skipif(not (REPO / "configs" / "multi30k.py").exists(), reason="no configs")
def test_multi30k_scorers_sweep_is_configs_multi30k_with_each_scorer(monkeypatch):
    """configs/sweeps/multi30k_scorers.py: one trial per published scorer, each exactly
    configs/multi30k.py with its scorer (nothing else differs between trials); ':tiny' the same
    on the tiny config; an unknown argument is refused. Nothing reads the data or trains."""
    monkeypatch.chdir(REPO)
    base = config_lib.flatten(_config("multi30k.py"))
    spec, trials = sweep.load("configs/sweeps/multi30k_scorers.py")
    assert [t.name for t in trials] == [f"scorer={s}" for s in SCORERS]
    for trial in trials:
        config = config_lib.flatten(sweep.trial_config(trial))
        differ = {k for k in base if config[k] != base[k]}
        assert differ <= {"model.scorer", "logging.progress_bar"}, differ
        assert config["model.scorer"] == trial.params["model.scorer"]
        assert (config["train.seed"], config["train.num_seeds"]) == (0, 1)
    spec, trials = sweep.load("configs/sweeps/multi30k_scorers.py:tiny")
    assert {t.config for t in trials} == {"configs/multi30k.py:tiny"} and len(trials) == len(SCORERS)
    with pytest.raises(ValueError, match="valid: 'tiny'"):
        sweep.load("configs/sweeps/multi30k_scorers.py:big")
