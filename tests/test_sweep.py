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

from attn_jax import attention  # noqa: E402
from attn_jax import config as config_lib  # noqa: E402
from launch import local, slurm, sweep, wandb_sweep  # noqa: E402

SCORERS = list(attention.SCORER_NAMES)
SIZES = [32, 64, 128, 256]

# The real base config's text (it has every key a sweep may set), written into tmp dirs.
STANDIN_CONFIG = (REPO / "configs" / "default.py").read_text()

FAKE_TRAIN = '''
"""Fake trainer: records each call; scorer=dot crashes; scorer=general crashes once."""
import json, os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
with open("invocations.txt", "a") as f:
    f.write(args["workdir"] + "\\n")
scorer = args["config.model.scorer"]
os.makedirs(args["workdir"], exist_ok=True)
print("training", args["workdir"])
if scorer == "dot":
    sys.exit(3)
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
    assert data["scorer=general,hidden_size=8"]["attempts"] == 2
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


# ------------------------------------------------------------ the real default config


@pytest.mark.skipif(not (REPO / "configs" / "default.py").exists(), reason="no configs/default.py")
def test_real_default_sweep_validates(monkeypatch):
    monkeypatch.chdir(REPO)
    for arg, count in (("", 28), (":tiny", 14)):
        spec, trials = sweep.load(f"configs/sweeps/scorer_hidden.py{arg}")
        assert len(trials) == count
        # The W&B route's extra override exists in the real config too.
        sweep.validate(wandb_sweep.route_spec(spec))
    assert spec["axes"]["model.scorer"] == SCORERS  # The registry's names, defined once.


@pytest.mark.skipif(not (REPO / "configs" / "default.py").exists(), reason="no configs/default.py")
def test_readme_sweeps_load(monkeypatch):
    """Every --sweep=... the launch README names loads and validates (no stale docs)."""
    monkeypatch.chdir(REPO)
    text = (REPO / "launch" / "README.md").read_text()
    paths = set(re.findall(r"--sweep=(configs/\S+?\.py(?::\w+)?)\b", text))
    assert "configs/sweeps/scorer_hidden.py" in paths
    for path in paths:
        sweep.load(path)
