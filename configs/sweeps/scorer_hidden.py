"""Sweep: every attention scorer x hidden size, 3 seeds each (the project's main comparison).

Grid: model.scorer in every scorer of attn_jax.attention.SCORERS (none, additive, dot, general,
scaled_dot, location, multihead) x model.hidden_size in {32, 64, 128, 256}, seeds 0, 1, 2.
By default (seeds_mode=vmap) that is 7 x 4 = 28 trials, each training its 3 seeds as vmapped
replicas in one process (--config.train.seed=0 --config.train.num_seeds=3); with
--seeds_mode=trials it is 84 single-seed trials.

Run locally from the repository root (2 trials at a time; rerun the same command to resume):

    python -m launch.local --sweep=configs/sweeps/scorer_hidden.py --sweep_dir=runs/scorer_hidden \
        --parallel=2 [--dry_run] [--only=scorer=dot]
    python -m attn_jax.report --sweep_dir=runs/scorer_hidden

W&B Sweeps and SLURM: see launch/README.md (the same 28 trials, same names, same workdirs).

Expected runtime: set by FIXED["train.num_steps"] below; the step budget is chosen so the whole
sweep fits in about an hour on 2 CPU cores with --parallel=2 (measured time and results:
experiments/scorer_hidden/README.md).
Produces: runs/scorer_hidden/status.json and one workdir per trial, named like
`scorer=dot,hidden_size=64`, holding config.json, metrics.jsonl, results.json (test/valid BLEU,
exact match, AER and BLEU by source length, mean over seeds and per seed), attention heatmaps
and checkpoints (see README.md, "What a run leaves").
"""

from __future__ import annotations

from typing import Any

from attn_jax.attention import SCORER_NAMES

HIDDEN_SIZES = [32, 64, 128, 256]
# Overrides shared by every trial (e.g. a shorter step budget for the sweep), as
# {"train.num_steps": 2000}; every key must exist in the base config.
# The budget: 250 steps of 64 sentences (a third of an epoch) per trial, so the 28 trials x 3
# seeds fit in about an hour on 2 CPU cores; the comparison is between scorers at equal budget.
FIXED: dict[str, Any] = {
    "train.num_steps": 250,
    "train.warmup_steps": 25,
    "train.learning_rate": 5e-3,
    "train.log_every": 25,
    "train.eval_every": 50,
    "eval.valid_subset": 100,
    "eval.num_heatmaps": 1,
    "logging.progress_bar": False,
}


def get_sweep(arg: str | None = None) -> dict[str, Any]:
    """The sweep as plain data, expanded identically by every launcher (launch.sweep.expand).

    arg: None, or 'tiny' for a smoke test of the launchers (--sweep=...scorer_hidden.py:tiny):
    the `configs/default.py:tiny` base run, hidden sizes 16 and 32, 2 seeds (14 trials, seconds
    each).
    """
    if arg not in (None, "tiny"):
        raise ValueError(f"configs/sweeps/scorer_hidden.py: unknown argument {arg!r}; valid: 'tiny'.")
    tiny = arg == "tiny"
    return {
        "name": "scorer_hidden_tiny" if tiny else "scorer_hidden",  # Default dir: runs/<name>.
        "base_config": "configs/default.py:tiny" if tiny else "configs/default.py",  # --config.
        "axes": {  # The grid; the first axis varies slowest.
            "model.scorer": list(SCORER_NAMES),  # Every registered scorer.
            "model.hidden_size": [16, 32] if tiny else list(HIDDEN_SIZES),
        },
        # Seeds base..base+count-1 (vmapped in one process by default).
        "seeds": {"base": 0, "count": 2 if tiny else 3},
        "fixed": {} if tiny else dict(FIXED),
    }
