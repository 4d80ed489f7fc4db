"""W&B mirroring (attn_jax/run/tracking.py), offline: one run per process with seed-prefixed keys
(also under a sweep agent), resume into the same run and the same offline directory, the
best-BLEU summary, job type and tags, and the user's W&B settings taking precedence.

Offline runs are read back with `wandb leet inspect --json` (the reader wandb 0.31 ships)."""

from __future__ import annotations

import contextlib
import glob
import json
import os

import numpy as np
import pytest

from attn_jax.run import tracking
from tests.run_helpers import wandb_records

CONFIG = {"model": {"scorer": "dot", "hidden_size": 16, "flow": "luong"}}
_WANDB_VARS = ("WANDB_MODE", "WANDB_DIR", "WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_TAGS",
               "WANDB_JOB_TYPE", "WANDB_RUN_GROUP", "WANDB_ENTITY", "WANDB_PROJECT",
               "WANDB_CACHE_DIR", "WANDB_DATA_DIR")


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """No W&B variables from the caller; an empty W&B config dir (no user settings)."""
    for var in _WANDB_VARS:
        monkeypatch.setenv(var, "x")  # Recorded, so the test's changes are undone after it.
        monkeypatch.delenv(var)
    config_dir = tmp_path / "wandb_config"
    config_dir.mkdir()
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(config_dir))
    import wandb
    wandb.teardown()  # W&B reads the environment once per process, at its first setup.
    yield config_dir
    wandb.teardown()


def offline_dirs(root) -> list[str]:
    return sorted(glob.glob(os.path.join(str(root), "offline-run-*")))


def history(recs) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for r in recs:
        if r["type"] == "history":
            item = {k: v for k, v in r["history"]["item"].items() if not k.startswith("_")}
            out.setdefault(r["history"]["step"]["num"], {}).update(item)
    return out


def summary(recs) -> dict:
    out: dict = {}
    for r in recs:
        if r["type"] == "summary":
            out.update(r["summary"]["update"])
    return out


def run_record(recs) -> dict:
    return next(r["run"] for r in recs if r["type"] == "run")


def exit_code(recs) -> int:
    return next(r["exit"].get("exit_code", 0) for r in recs if r["type"] == "exit")


# ------------------------------------------------------------------------------ pure parts


def test_resolve_mode_precedence(tmp_path):
    settings = tmp_path / "settings"
    env = {"WANDB_CONFIG_DIR": str(tmp_path)}
    assert tracking.resolve_mode("offline", env) == ("offline", "config")
    assert tracking.resolve_mode("online", env) == ("online", "config")
    settings.write_text("[default]\nmode = offline\n")  # What `wandb offline` writes.
    assert tracking.resolve_mode("online", env) == ("offline", str(settings))
    env["WANDB_MODE"] = "online"
    assert tracking.resolve_mode("offline", env) == ("online", "WANDB_MODE")
    assert tracking.resolve_mode("disabled", env) == ("disabled", "config")  # The opt-out wins.
    settings.write_text("[default]\nentity = me\n")  # Settings without a mode.
    assert tracking.resolve_mode("online", {"WANDB_CONFIG_DIR": str(tmp_path)}) == (
        "online", "config")
    home = {"HOME": str(tmp_path / "home")}
    assert tracking.settings_file(home).endswith(os.path.join(".config", "wandb", "settings"))


def test_wandb_metrics_mean_and_seed_keys():
    rows = [{"step": 6, "split": "valid", "seed": 5, "bleu": 10.0, "loss": 2.0,
             "signature": "nrefs:1", "bleu_by_length": {"1-10": 8.0, "41+": 1.0}, "aer": None},
            {"step": 6, "split": "valid", "seed": 6, "bleu": 21.0, "loss": 1.0,
             "signature": "nrefs:1", "bleu_by_length": {"1-10": 9.0, "41+": 4.0}, "aer": 0.5}]
    got = tracking.wandb_metrics("valid", rows, (5, 6))
    assert got == {
        "valid/bleu": 15.5, "valid/loss": 1.5, "valid/signature": "nrefs:1",
        "valid/bleu_by_length/1-10": 8.5, "valid/bleu_by_length/41+": 2.5,
        "seed5/valid/bleu": 10.0, "seed5/valid/loss": 2.0, "seed5/valid/signature": "nrefs:1",
        "seed5/valid/bleu_by_length/1-10": 8.0, "seed5/valid/bleu_by_length/41+": 1.0,
        "seed6/valid/bleu": 21.0, "seed6/valid/loss": 1.0, "seed6/valid/signature": "nrefs:1",
        "seed6/valid/bleu_by_length/1-10": 9.0, "seed6/valid/bleu_by_length/41+": 4.0,
        "seed6/valid/aer": 0.5}
    # One seed: plain keys only, the values themselves.
    assert tracking.wandb_metrics("valid", rows[1:], (6,)) == {
        "valid/bleu": 21.0, "valid/loss": 1.0, "valid/signature": "nrefs:1",
        "valid/bleu_by_length/1-10": 9.0, "valid/bleu_by_length/41+": 4.0, "valid/aer": 0.5}
    assert tracking.run_tags(CONFIG, {"WANDB_TAGS": "mine,flow=luong"}) == [
        "scorer=dot", "hidden=16", "flow=luong", "mine"]


# -------------------------------------------------------------------- real offline W&B runs


def test_vmapped_seeds_under_a_sweep_agent_log_to_the_agents_one_run(tmp_path, wandb_env,
                                                                     monkeypatch):
    """What `wandb agent` hands a process (WANDB_SWEEP_ID, WANDB_RUN_ID): K seeds used to
    make K wandb.init calls and crash with 'run ID ... is in use'; now one run, seed keys."""
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep1")
    monkeypatch.setenv("WANDB_RUN_ID", "agentrun1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    workdir = tmp_path / "trial"
    workdir.mkdir()
    tracker = tracking.Tracker(str(workdir), CONFIG, (5, 6), "online", "p", "", "")
    assert set(tracker.runs) == {5, 6} and tracker.runs[5] is tracker.runs[6]
    tracker.truncate(0)
    tracker.write(3, "train", [{"loss": 3.0}, {"loss": 5.0}])
    tracker.write(3, "valid", [{"bleu": 10.0}, {"bleu": 30.0}])
    tracker.write(6, "valid", [{"bleu": 14.0}, {"bleu": 12.0}])
    tracker.close()
    dirs = offline_dirs(workdir / "wandb" / "wandb")
    assert [d.rsplit("-", 1)[1] for d in dirs] == ["agentrun1"]
    assert not (workdir / "wandb_ids.json").exists()  # The agent owns the id.
    recs = wandb_records(dirs[0])
    assert history(recs) == {
        3: {"train/loss": 4.0, "seed5/train/loss": 3.0, "seed6/train/loss": 5.0,
            "valid/bleu": 20.0, "seed5/valid/bleu": 10.0, "seed6/valid/bleu": 30.0},
        6: {"valid/bleu": 13.0, "seed5/valid/bleu": 14.0, "seed6/valid/bleu": 12.0}}
    s = summary(recs)  # The best, not the last, validation BLEU.
    assert (s["valid/bleu"], s["seed5/valid/bleu"], s["seed6/valid/bleu"]) == (
        {"max": 20.0}, {"max": 14.0}, {"max": 30.0})
    run = run_record(recs)
    assert run["job_type"] == "train" and run["display_name"] == "trial"
    assert run["tags"] == ["scorer=dot", "hidden=16", "flow=luong"]
    assert run["config"]["update"]["seeds"] == [5, 6]
    assert exit_code(recs) == 0
    rows = tracking.read_rows(str(workdir / "metrics.jsonl"))
    assert [(r["step"], r["split"], r["seed"]) for r in rows] == [
        (3, "train", 5), (3, "train", 6), (3, "valid", 5), (3, "valid", 6), (6, "valid", 5),
        (6, "valid", 6)]


def test_offline_resume_continues_the_same_run_in_one_directory(tmp_path, wandb_env):
    """A run stopped after its step-3 checkpoint (having logged step 6 too) and rerun: the same
    run id, one offline-run directory holding steps 3 (re-logged) and the new 6, and W&B told
    how the first attempt ended (exit 143, the preemption code)."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    root = workdir / "wandb" / "wandb"
    class Preempted(Exception):
        exit_code = 143

    with pytest.raises(Preempted), contextlib.ExitStack() as stack:
        first = tracking.Tracker(str(workdir), CONFIG, (0,), "offline", "p", "", "")
        stack.callback(first.close)
        first.truncate(0)
        first.write(3, "valid", [{"bleu": 40.0, "loss": 1.0}])
        first.write(6, "valid", [{"bleu": 2.0, "loss": 9.0}])  # After the last checkpoint.
        raise Preempted()
    (first_dir,) = offline_dirs(root)
    assert exit_code(wandb_records(first_dir)) == 143
    run_id = json.loads((workdir / "wandb_ids.json").read_text())["run"]
    assert first_dir.endswith(run_id)

    second = tracking.Tracker(str(workdir), CONFIG, (0,), "offline", "p", "", "")
    assert second.run.id == run_id
    assert [r["step"] for r in second.truncate(3)] == [3, 6]
    second.write(6, "valid", [{"bleu": 30.0, "loss": 0.5}])
    second.close()
    (only,) = offline_dirs(root)  # The first directory was replaced, not kept beside it.
    assert only != first_dir and only.endswith(run_id)
    recs = wandb_records(only)
    assert history(recs) == {3: {"valid/bleu": 40.0, "valid/loss": 1.0},
                             6: {"valid/bleu": 30.0, "valid/loss": 0.5}}
    assert summary(recs)["valid/bleu"] == {"max": 40.0} and exit_code(recs) == 0
    assert [r["step"] for r in tracking.read_rows(str(workdir / "metrics.jsonl"))] == [3, 6]

    # A directory already uploaded with `wandb sync` is never deleted (nor its rows re-logged).
    open(os.path.join(only, f"run-{run_id}.wandb.synced"), "w").close()
    third = tracking.Tracker(str(workdir), CONFIG, (0,), "offline", "p", "", "")
    third.truncate(6)
    third.close()
    dirs = offline_dirs(root)
    assert len(dirs) == 2 and only in dirs
    assert history(wandb_records([d for d in dirs if d != only][0])) == {}


def test_user_settings_and_environment_take_precedence(tmp_path, wandb_env, monkeypatch):
    workdir = tmp_path / "run"
    workdir.mkdir()
    # `wandb offline` in the user's settings beats the config's 'online' (no login is tried).
    (wandb_env / "settings").write_text("[default]\nmode = offline\n")
    other = tmp_path / "elsewhere"
    monkeypatch.setenv("WANDB_DIR", str(other))
    monkeypatch.setenv("WANDB_JOB_TYPE", "finetune")
    tracker = tracking.Tracker(str(workdir), CONFIG, (0,), "online", "p", "", "")
    assert tracker.run.offline
    tracker.close()
    (run_dir,) = offline_dirs(other / "wandb")  # The user's WANDB_DIR, not the workdir.
    assert not (workdir / "wandb" / "wandb").exists()
    assert run_record(wandb_records(run_dir))["job_type"] == "finetune"
    assert os.environ["WANDB_CONFIG_DIR"] == str(wandb_env)  # The settings dir is not moved.

    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.Tracker(str(workdir), CONFIG, (0,), "offline", "p", "", "").run is None
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert tracking.Tracker(str(workdir), CONFIG, (0,), "disabled", "p", "", "").run is None


def test_mean_row_matches_numpy():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 4))
    rows = [{f"m{j}": float(values[k, j]) for j in range(4)} for k in range(3)]
    got = tracking.mean_row(rows)
    np.testing.assert_allclose([got[f"m{j}"] for j in range(4)], values.mean(axis=0))


def test_close_reports_how_the_run_ended(tmp_path):
    class FakeRun:
        def finish(self, exit_code):
            codes.append(exit_code)

    codes: list[int] = []
    for exc in (None, SystemExit(143), SystemExit("error: bad"), RuntimeError("nan")):
        tracker = tracking.Tracker(str(tmp_path), {}, (0,), "disabled", "", "", "")
        tracker.run = FakeRun()
        with contextlib.suppress(BaseException), contextlib.ExitStack() as stack:
            stack.callback(tracker.close)
            if exc is not None:
                raise exc
        assert tracker.run is None
    assert codes == [0, 143, 1, 1]


def test_no_tracker_has_exactly_the_loops_methods_and_writes_nothing(tmp_path):
    """What processes other than 0 log with: the rows process 0 wrote, and nothing else; a name
    the loop does not call (a typo) is an AttributeError, not a silent no-op."""
    tracker = tracking.Tracker(str(tmp_path), {}, (0, 1), "disabled", "", "", "")
    tracker.write(3, "train", [{"loss": 1.0}, {"loss": 2.0}])
    quiet = tracking.NoTracker(str(tmp_path))
    assert quiet.path == tracker.path
    before = open(tracker.path).read()
    assert [r["seed"] for r in quiet.truncate(0)] == [0, 1]  # Read, not truncated.
    quiet.write(6, "train", [{"loss": 0.5}, {"loss": 0.5}])
    quiet.log_media(0, 6, {"x": "x.png"}, [("a", "b", "c")], ("s", "r", "h"))
    quiet.summary(0, {"test": {"bleu": 1.0}})
    quiet.close()
    assert open(tracker.path).read() == before and os.listdir(tmp_path) == ["metrics.jsonl"]
    loop_calls = {"path", "truncate", "write", "log_media", "summary", "close"}
    assert loop_calls <= {name for name in dir(tracker) if not name.startswith("_")}
    assert {name for name in dir(quiet) if not name.startswith("_")} == loop_calls
    with pytest.raises(AttributeError):
        quiet.wirte(6, "train", [])
