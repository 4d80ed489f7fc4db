"""Fault cases of training that need no finished run: a workdir locked by another process, damaged
checkpoints, an unwritable workdir, a metrics line cut short, a failed first command, and the
log filters. Each ends in a recovery or a one-line error naming the fix (end-to-end resumes from
a damaged workdir are in test_train.py)."""

import errno
import logging
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from absl import logging as absl_logging

from attn_jax import train
from attn_jax.run import checkpoint, cli, sharding, steps, tracking
from attn_jax.run import workdir as workdir_lib
from tests.test_train import REPO, tiny_config


def _state(value: float, hidden: int = 3) -> steps.TrainState:
    """A small training state with one replica (K = 1)."""
    return steps.TrainState(step=jnp.zeros((1,), jnp.int32),
                            params={"dense": {"kernel": jnp.full((1, hidden, 2), value)}},
                            opt_state={"mu": {"dense": {"kernel": jnp.zeros((1, hidden, 2))}}},
                            key=jnp.zeros((1, 2), jnp.uint32))


def _saved(workdir: str, steps_: tuple[int, ...] = (1, 2)) -> None:
    """Checkpoints at `steps_`, the state at step s holding the value s."""
    ckpts = checkpoint.Checkpoints(workdir, keep=3)
    for step in steps_:
        ckpts.save(step, _state(float(step)))
    ckpts.close()


def _damage(step_dir: str, how: str) -> None:
    if how == "no_metadata":
        os.remove(os.path.join(step_dir, "default", "_METADATA"))
        return
    files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir) for f in fs]
    data_files = [f for f in files if os.sep + "d" + os.sep in f] or files
    for path in data_files:  # Truncated data files, as a disk filling up mid-copy leaves them.
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)


def _last(workdir, step=""):
    return os.path.join(workdir, "checkpoints", "last", str(step))


@pytest.mark.parametrize("how", ["truncated", "no_metadata"])
def test_damaged_newest_checkpoint_falls_back_to_the_older_one(tmp_path, caplog, how):
    workdir = str(tmp_path)
    _saved(workdir)
    _damage(_last(workdir, 2), how)
    ckpts = checkpoint.Checkpoints(workdir, keep=3)
    with caplog.at_level(logging.WARNING):
        state = ckpts.restore(_state(0.0))
    np.testing.assert_array_equal(state.params["dense"]["kernel"], 1.0)
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "unreadable checkpoint at step 2" in warning and "step 1" in warning
    assert ckpts.latest_step() == 1 and os.listdir(_last(workdir)) == ["1"]
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "corrupt", "last_2"))  # Kept.
    ckpts.save(2, _state(2.0))  # Training can save that step again.
    ckpts.close()
    again = checkpoint.Checkpoints(workdir, keep=3)
    np.testing.assert_array_equal(again.restore(_state(0.0)).params["dense"]["kernel"], 2.0)
    again.close()


def test_of_several_processes_only_process_0_sets_a_damaged_checkpoint_aside(tmp_path,
                                                                               monkeypatch):
    workdir = str(tmp_path)
    _saved(workdir)
    _damage(_last(workdir, 2), "truncated")
    synced = []
    monkeypatch.setattr(sharding, "is_writer", lambda: False)  # As process 1 of 2.
    monkeypatch.setattr(sharding, "barrier", synced.append)
    ckpts = checkpoint.Checkpoints(workdir, keep=3)
    state = ckpts.restore(_state(0.0))
    np.testing.assert_array_equal(state.params["dense"]["kernel"], 1.0)
    assert sorted(os.listdir(_last(workdir))) == ["1", "2"]  # Left for process 0 to move...
    assert synced == ["checkpoints set aside"]  # ...and waited for before rereading.
    ckpts.close()


def test_no_intact_checkpoint_is_one_line_naming_the_folder_and_fix(tmp_path):
    workdir = str(tmp_path)
    _saved(workdir)
    _damage(_last(workdir, 2), "truncated")
    _damage(_last(workdir, 1), "no_metadata")
    ckpts = checkpoint.Checkpoints(workdir, keep=3)
    with pytest.raises(checkpoint.NoIntactCheckpoint) as e:
        ckpts.restore(_state(0.0))
    message = str(e.value)
    assert "\n" not in message and _last(workdir).rstrip("/") in message
    assert "step 2:" in message and "step 1:" in message and "new --workdir" in message
    assert sorted(os.listdir(_last(workdir))) == ["1", "2"]  # Nothing moved: the user decides.
    ckpts.close()


def test_checkpoint_of_another_config_is_refused_not_set_aside(tmp_path):
    workdir = str(tmp_path)
    _saved(workdir)
    ckpts = checkpoint.Checkpoints(workdir, keep=3)
    with pytest.raises(ValueError, match=r"dense/kernel: saved shape \(1, 3, 2\), now \(1, 4, 2\)"):
        ckpts.restore(_state(0.0, hidden=4))
    assert sorted(os.listdir(_last(workdir))) == ["1", "2"]
    assert not os.path.exists(os.path.join(workdir, "checkpoints", "corrupt"))
    ckpts.close()


def test_second_process_on_a_workdir_is_refused_naming_the_first(tmp_path):
    workdir = tmp_path / "run"
    with workdir_lib.lock_workdir(str(workdir)):
        result = subprocess.run(
            [sys.executable, "-m", "attn_jax.train", "--config=configs/default.py:tiny",
             f"--workdir={workdir}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"pid {os.getpid()}" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(workdir) == [".lock"]  # The refused process wrote nothing.
    with workdir_lib.lock_workdir(str(workdir)):  # Released when its holder is done.
        pass


def _refuse_writes_under(monkeypatch, root) -> None:
    """What a read-only `root` does to a process without root's privileges (file modes do not
    bind root, which some test machines run as)."""
    real_mkdir, real_open = os.mkdir, os.open

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(str(root)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    def open_(path, flags, *args, **kwargs):
        if str(path).startswith(str(root)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)


@pytest.mark.parametrize("read_only", ["parent", "workdir"])
def test_unwritable_workdir_is_a_one_line_error(tmp_path, monkeypatch, read_only):
    parent = tmp_path / "parent"
    workdir = parent / "run"
    (workdir if read_only == "workdir" else parent).mkdir(parents=True)
    locked = workdir if read_only == "workdir" else parent
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            _refuse_writes_under(monkeypatch, locked)
        with pytest.raises(ValueError) as e:
            train.train_and_evaluate(tiny_config(str(tmp_path / "tfds")), str(workdir))
        monkeypatch.undo()
    finally:
        locked.chmod(0o755)
    assert "\n" not in str(e.value) and "not writable" in str(e.value)
    assert str(locked) in str(e.value) and "--workdir" in str(e.value)


def test_failed_first_command_leaves_no_config_that_refuses_the_fixed_one(tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(ValueError):
        train.train_and_evaluate(
            tiny_config(str(tmp_path / "tfds"), **{"data.name": "nonexistent"}), str(workdir))
    assert not (workdir / "config.json").exists()


def test_metrics_line_cut_short_by_a_kill_is_dropped(tmp_path):
    tracker = tracking.Tracker(str(tmp_path), {}, (0,), "disabled", "", "", "")
    tracker.write(3, "train", [{"loss": 1.0}])
    tracker.write(6, "train", [{"loss": 0.5}])
    with open(tracker.path, "a") as f:
        f.write('{"step": 9, "split": "tr')  # A process killed while writing a row.
    rows = tracker.truncate(6)
    assert [r["step"] for r in rows] == [3, 6]
    tracker.write(9, "train", [{"loss": 0.25}])
    assert [r["step"] for r in tracking.read_rows(tracker.path)] == [3, 6, 9]


def _record(pathname: str, level: int, message: str, name: str = "absl") -> logging.LogRecord:
    return logging.LogRecord(name, level, pathname, 1, message, None, None)


def test_log_filters_drop_noise_and_keep_warnings():
    cli.quiet_logs()
    handler = absl_logging.get_absl_handler()
    orbax_file = "/site-packages/orbax/checkpoint/checkpoint_manager.py"
    assert not handler.filter(_record(orbax_file, logging.INFO, "Saving checkpoint"))
    assert handler.filter(_record(orbax_file, logging.WARNING, "Waiting for previous save"))
    assert handler.filter(_record("/attn_jax/train.py", logging.INFO, "step 6: valid BLEU"))
    bridge = logging.getLogger("jax._src.xla_bridge")
    assert not bridge.filter(_record("xla_bridge.py", logging.INFO,
                                     "Unable to initialize backend 'tpu': INTERNAL", bridge.name))
    assert bridge.filter(_record("xla_bridge.py", logging.INFO,
                                 "Unable to initialize backend 'cuda': not found", bridge.name))
