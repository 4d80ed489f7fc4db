"""Sweep: every attention scorer captioning the embedded scenes, 3 seeds each (issue 26).

Grid: model.scorer in every published scorer (attn_jax.model.attention.COMPARED: none, additive,
dot, general, scaled_dot, location, multihead) plus `uniform` (equal weights on every cell: the
mean annotation, what attention's weights add beyond pooling), seeds 0, 1, 2, on
configs/scenes.py. By default (seeds_mode=vmap) that is 8 trials, each training its 3 seeds as
vmapped replicas in one process; with --seeds_mode=trials, 24 single-seed trials.

Run locally from the repository root (2 trials at a time; rerun the same command to resume):

    python -m launch.local --sweep=configs/sweeps/scenes.py --sweep_dir=runs/scenes_sweep \
        --parallel=2 [--dry_run] [--only=scorer=dot]
    python -m attn_jax.report --sweep_dir=runs/scenes_sweep

Budget (FIXED below, the same for every scorer): 8 epochs of 32 pictures (5,008 steps; the
config's own length when the kept trials ran, on one XLA device: two trials side by side, one per
core) as the cap, evaluating every 650 steps (about an epoch) on 500 valid scenes and
stopping earlier once 3 evaluations in a row gain no more than 0.2 BLEU; test metrics from the
best checkpoint by valid BLEU.
Produces one workdir per trial, named like `scorer=dot`, with results.json (BLEU, CIDEr, exact
match, pointing and mass in box, overall and by object count, per seed and their mean) and the
running example's attention strip.
"""

from __future__ import annotations

from typing import Any

from attn_jax.model.attention import COMPARED

SCORERS = [*COMPARED, "uniform"]
FIXED: dict[str, Any] = {
    "train.num_epochs": 8.0,
    "mesh.cpu_devices": 0,  # one device per trial: the launcher runs two trials side by side
    "train.early_stop_patience": 3,
    "train.early_stop_min_delta": 0.2,
    "train.eval_every": 650,
    "eval.valid_subset": 500,
    "logging.progress_bar": False,
}


def get_sweep(arg: str | None = None) -> dict[str, Any]:
    """The sweep as plain data (launch.sweep.expand). arg: None (the full grid) or 'tiny' for a
    smoke test of the launchers (configs/scenes.py:tiny, 2 seeds, its own length)."""
    if arg not in (None, "tiny"):
        raise ValueError(f"configs/sweeps/scenes.py: unknown argument {arg!r}; valid: 'tiny'.")
    tiny = arg == "tiny"
    return {
        "name": "scenes_tiny" if tiny else "scenes",
        "base_config": "configs/scenes.py:tiny" if tiny else "configs/scenes.py",
        "axes": {"model.scorer": list(SCORERS)},
        "seeds": {"base": 0, "count": 2 if tiny else 3},
        "fixed": {} if tiny else dict(FIXED),
    }
