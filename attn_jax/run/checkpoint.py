"""Orbax checkpoints: the last k training states, plus the best by validation BLEU.

WORKDIR/checkpoints/last/<step>/  the newest `keep` states (resume from the newest intact one)
WORKDIR/checkpoints/best/<step>/  the state with the best mean validation BLEU over replicas
WORKDIR/checkpoints/corrupt/      checkpoints found unreadable on restore, set aside (not deleted)

Saves are atomic (orbax writes to a temporary folder and renames), so a crash mid-save never
corrupts the previous checkpoint. A checkpoint damaged later (a truncated file, a missing
`_METADATA`) is skipped on restore with a warning, and the newest intact one is used (with several
processes, every process skips it and process 0 moves it). A checkpoint whose parameter shapes
differ from the model's is not damaged but belongs to another config: that is a ValueError
naming the first differing parameter, and nothing is moved.
"""

from __future__ import annotations

import logging as std_logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from attn_jax.run import sharding


class NoIntactCheckpoint(FileNotFoundError):
    """Every checkpoint there is unreadable; the message names the folder and the fix."""


def quiet_orbax_logs() -> None:
    """Orbax logs every save and close at INFO through absl; keep a program's own log readable.

    Drops orbax's records below WARNING and keeps its warnings and errors."""
    logging.get_absl_handler().addFilter(
        lambda r: r.levelno >= std_logging.WARNING or "orbax" not in r.pathname)


def _reason(error: Exception) -> str:
    """An exception as one short line."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:160]}" if lines else type(error).__name__


def _param_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """{'encoder/embed/embedding': shape} for a tree of arrays or array metadata."""
    def name(path):
        return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                        for k in path)
    return {name(p): tuple(leaf.shape) for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _saved_param_shapes(step_dir: str) -> dict[str, tuple[int, ...]]:
    """The parameter shapes a step folder's metadata records; raises if it is unreadable."""
    handler = ocp.StandardCheckpointHandler()
    try:
        return _param_shapes(handler.metadata(epath.Path(step_dir) / "default")["params"])
    finally:
        handler.close()


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    """One replicated boolean (readable on every process whatever the sharding)."""
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))


def _barrier_prefix(kind: str) -> ocp.options.MultiprocessingOptions:
    """Barrier names of a manager's own. Each manager finalizes its async saves in a background
    thread that meets the other processes at named barriers; under orbax's default names the
    "last" and "best" saves of one step reach the same barrier at once, which fails ("Barrier
    ... is already ongoing") or hangs a multi-process run."""
    return ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=kind)


def _target(leaf: Any) -> Any:
    """A restore target for one state leaf: its shape, dtype and sharding. A leaf without a
    sharding (`jax.eval_shape`'s, as `translate` builds) goes to this process's first device:
    without one, orbax would put it back on the devices it was saved from, which a run saved on
    2 devices and read on 1 does not have."""
    target = ocp.utils.to_shape_dtype_struct(leaf)
    if isinstance(target, jax.ShapeDtypeStruct) and target.sharding is None:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        return jax.ShapeDtypeStruct(target.shape, target.dtype, sharding=device)
    return target


class Checkpoints:

    def __init__(self, workdir: str, keep: int):
        self.root = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.last = ocp.CheckpointManager(
            os.path.join(self.root, "last"), options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, multiprocessing_options=_barrier_prefix("last")))
        self.best = ocp.CheckpointManager(
            os.path.join(self.root, "best"), options=ocp.CheckpointManagerOptions(
                max_to_keep=1, best_fn=lambda m: m["bleu"], best_mode="max",
                multiprocessing_options=_barrier_prefix("best")))

    def latest_step(self) -> int | None:
        return self.last.latest_step()

    def save(self, step: int, state: Any, valid_bleu: float | None = None,
             last: bool = True) -> None:
        """Saves `state` as the newest (if `last`) and, given its BLEU, as a candidate best."""
        if not bool(_all_finite(state.params)):
            raise FloatingPointError(
                f"Refusing to checkpoint non-finite parameters at step {step}.")
        if last:
            self.last.save(step, args=ocp.args.StandardSave(state))
        if valid_bleu is not None:
            self.best.save(step, args=ocp.args.StandardSave(state), metrics={"bleu": valid_bleu})

    def restore(self, state_like: Any, best: bool = False) -> Any:
        """The newest intact checkpoint (or the best) as a state shaped like `state_like`.

        Unreadable newer checkpoints are moved to checkpoints/corrupt/ with a warning (so that
        training can save those steps again). Raises ValueError if the checkpoint holds other
        parameter shapes (another config), NoIntactCheckpoint if none can be read, and
        FileNotFoundError if there is none.
        """
        manager = self.best if best else self.last
        steps = [manager.best_step()] if best else sorted(manager.all_steps(), reverse=True)
        steps = [s for s in steps if s is not None]
        if not steps:
            raise FileNotFoundError(f"No checkpoint to restore in {manager.directory}.")
        abstract = jax.tree.map(_target, state_like)
        skipped = []  # (step, why), newest first
        for step in steps:
            path = os.path.join(manager.directory, str(step))
            try:
                saved_shapes = _saved_param_shapes(path)
            except Exception as e:  # noqa: BLE001 - any failure to read means a damaged folder
                skipped.append((step, _reason(e)))
                continue
            self._check_shapes(path, saved_shapes, _param_shapes(abstract.params))
            try:
                state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as e:  # noqa: BLE001 - shapes fit, so the data itself is damaged
                skipped.append((step, _reason(e)))
                continue
            for bad, why in skipped:  # Every process skips the same ones; process 0 moves them.
                moved = (self._set_aside(manager, bad) if sharding.is_writer()
                         else "checkpoints/corrupt/ by process 0")
                logging.warning("Skipped the unreadable checkpoint at step %d (%s), moved to %s; "
                                "using the one at step %d.", bad, why, moved, step)
            if skipped:
                sharding.barrier("checkpoints set aside")  # Moved before any process rereads.
                manager.reload()
            return state
        raise NoIntactCheckpoint(
            f"No intact checkpoint in {manager.directory} ("
            + "; ".join(f"step {s}: {why}" for s, why in skipped)
            + f"). Move {manager.directory} away to start this run from step 0, "
              "or use a new --workdir.")

    @staticmethod
    def _check_shapes(path: str, saved: dict[str, tuple], want: dict[str, tuple]) -> None:
        for name in sorted(saved.keys() | want.keys()):
            if saved.get(name) != want.get(name):
                raise ValueError(
                    f"The checkpoint {path} was trained with another config (parameter {name}: "
                    f"saved shape {saved.get(name, 'absent')}, now {want.get(name, 'absent')}). "
                    "Rerun with the config it was trained with (model.*, train.num_seeds), "
                    "or use a new --workdir.")

    def _set_aside(self, manager: ocp.CheckpointManager, step: int) -> str:
        """Moves a damaged step folder to checkpoints/corrupt/<last|best>_<step>[_n]."""
        os.makedirs(os.path.join(self.root, "corrupt"), exist_ok=True)
        kind = os.path.basename(str(manager.directory))
        target, n = os.path.join(self.root, "corrupt", f"{kind}_{step}"), 1
        while os.path.exists(target):
            target, n = os.path.join(self.root, "corrupt", f"{kind}_{step}_{n}"), n + 1
        os.rename(os.path.join(manager.directory, str(step)), target)
        return target

    def wait(self) -> None:
        """Blocks until every save in flight is written."""
        self.last.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.last.wait_until_finished()
        self.best.wait_until_finished()
        self.last.close()
        self.best.close()
