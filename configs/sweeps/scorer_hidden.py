"""Sweep: every attention scorer x hidden size, 3 seeds each (the project's main comparison).

Grid: model.scorer in every published scorer, attn_jax.model.attention.COMPARED (none, additive, dot, general,
scaled_dot, location, multihead) x model.hidden_size in {32, 64, 128, 256}, seeds 0, 1, 2.
By default (seeds_mode=vmap) that is 7 x 4 = 28 trials, each training its 3 seeds as vmapped
replicas in one process (--config.train.seed=0 --config.train.num_seeds=3); with
--seeds_mode=trials it is 84 single-seed trials.

Run locally from the repository root (2 trials at a time; rerun the same command to resume):

    python -m launch.local --sweep=configs/sweeps/scorer_hidden.py --sweep_dir=runs/scorer_hidden \
        --parallel=2 [--dry_run] [--only=scorer=dot]
    python -m attn_jax.report --sweep_dir=runs/scorer_hidden

W&B Sweeps and SLURM: see launch/README.md (the same 28 trials, same names, same workdirs).

Budget: every trial trains to convergence under one rule (FIXED below: early stop on a
valid-BLEU plateau, capped at 6 epochs; test metrics from the best checkpoint). On 2 CPU cores the
whole grid takes hours, not the hour the 250-step budget of earlier versions fitted
(experiments/scorer_hidden/README.md says which part was run and how long it took).
Produces: runs/scorer_hidden/status.json and one workdir per trial, named like
`scorer=dot,hidden_size=64`, holding config.json, metrics.jsonl, results.json (test/valid BLEU,
exact match, AER and BLEU by source length, mean over seeds and per seed), attention heatmaps
and checkpoints (see README.md, "What a run leaves").
"""

from __future__ import annotations

from typing import Any

from attn_jax.model.attention import COMPARED

HIDDEN_SIZES = [32, 64, 128, 256]
# Overrides shared by every trial, as {"train.num_steps": 2000}; every key must exist in the base
# config. The budget rule, the same for every scorer and size: train to convergence, i.e. up to
# 6 epochs of 64 sentences, evaluating every 200 steps (a quarter epoch) on 500 valid sentences,
# and stop once 5 evaluations in a row (1,000 steps) gain no more than 0.2 BLEU over the best;
# test metrics and heatmaps then come from the best checkpoint by valid BLEU (eval.use_best).
# Patience 5, not 3: at the peak learning rate valid BLEU can dip 3 times in a row and recover
# (experiments/scorer_hidden/README.md), which stopped some patience-3 trials far from converged.
FIXED: dict[str, Any] = {
    "train.num_epochs": 6.0,
    "train.early_stop_patience": 5,
    "train.early_stop_min_delta": 0.2,
    "train.log_every": 50,
    "train.eval_every": 200,
    "eval.valid_subset": 500,
    "eval.num_heatmaps": 1,
    "logging.progress_bar": False,
}


def get_sweep(arg: str | None = None) -> dict[str, Any]:
    """The sweep as plain data, expanded identically by every launcher (launch.sweep.expand).

    arg: None (the full grid), 'h128' (the hidden-128 column with seed 0 only: 7 trials, the part
    of the converged grid that fits in well under an hour on 2 CPU cores), or 'tiny' for a smoke
    test of the launchers (--sweep=...scorer_hidden.py:tiny): the `configs/default.py:tiny` base
    run, hidden sizes 16 and 32, 2 seeds (14 trials, seconds each).
    """
    if arg not in (None, "tiny", "h128"):
        raise ValueError(f"configs/sweeps/scorer_hidden.py: unknown argument {arg!r}; valid: "
                         "'h128', 'tiny'.")
    tiny = arg == "tiny"
    hidden = [16, 32] if tiny else [128] if arg == "h128" else list(HIDDEN_SIZES)
    return {
        "name": {None: "scorer_hidden", "tiny": "scorer_hidden_tiny", "h128": "scorer_h128"}[arg],
        "base_config": "configs/default.py:tiny" if tiny else "configs/default.py",  # --config.
        "axes": {  # The grid; the first axis varies slowest.
            "model.scorer": list(COMPARED),  # Every published scorer of the registry.
            "model.hidden_size": hidden,
        },
        # Seeds base..base+count-1 (vmapped in one process by default).
        "seeds": {"base": 0, "count": 2 if tiny else 1 if arg == "h128" else 3},
        "fixed": {} if tiny else dict(FIXED),
    }
