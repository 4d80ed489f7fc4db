"""Orbax checkpoints: the last k training states, plus the best by validation BLEU.

WORKDIR/checkpoints/last/<step>/  the newest `keep` states (resume from the newest)
WORKDIR/checkpoints/best/<step>/  the state with the best mean validation BLEU over replicas
Saves are atomic (orbax writes to a temporary folder and renames), so a crash mid-save never
corrupts the previous checkpoint.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging


def quiet_orbax_logs() -> None:
    """Orbax logs every save and close at INFO through absl; keep a program's own log readable."""
    logging.get_absl_handler().addFilter(lambda record: "orbax" not in record.pathname)


class Checkpoints:

    def __init__(self, workdir: str, keep: int):
        root = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.last = ocp.CheckpointManager(
            os.path.join(root, "last"), options=ocp.CheckpointManagerOptions(max_to_keep=keep))
        self.best = ocp.CheckpointManager(
            os.path.join(root, "best"), options=ocp.CheckpointManagerOptions(
                max_to_keep=1, best_fn=lambda m: m["bleu"], best_mode="max"))

    def latest_step(self) -> int | None:
        return self.last.latest_step()

    def save(self, step: int, state: Any, valid_bleu: float | None = None) -> None:
        leaves = jax.tree.leaves(state.params)
        if not all(np.isfinite(np.asarray(x)).all() for x in leaves):
            raise FloatingPointError(f"Refusing to checkpoint non-finite parameters at step {step}.")
        self.last.save(step, args=ocp.args.StandardSave(state))
        if valid_bleu is not None:
            self.best.save(step, args=ocp.args.StandardSave(state), metrics={"bleu": valid_bleu})

    def restore(self, state_like: Any, best: bool = False) -> Any:
        manager = self.best if best else self.last
        step = manager.best_step() if best else manager.latest_step()
        if step is None:
            raise FileNotFoundError("No checkpoint to restore.")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
        return manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self.last.wait_until_finished()
        self.best.wait_until_finished()
        self.last.close()
        self.best.close()
