"""Sweep: the RNN and the Transformer, each with every cross-attention scorer both take, 3 seeds.

Grid: model.arch in {rnn, transformer} x model.scorer in {scaled_dot, additive, dot, general}
(the Transformer's cross-attention scorers, attn_jax.model.transformer.CROSS_SCORERS, that the
RNN comparison publishes too, attn_jax.model.attention.COMPARED), seeds 0, 1, 2. By default
(seeds_mode=vmap) that is 2 x 4 = 8 trials, each training its 3 seeds as vmapped replicas in one
process; with --seeds_mode=trials it is 24 single-seed trials.

Each arch keeps its own base config (base_config picks it by model.arch: launch/sweep.py):
  rnn          configs/default.py: the GRU encoder-decoder of the scorer_hidden sweep (Bahdanau
               flow, cosine schedule, no label smoothing);
  transformer  configs/transformer.py: its layers, heads, dropout, rsqrt schedule with its peak
               learning rate and warmup, and label smoothing; d_model = hidden_size, as the RNN's.
Every trial then gets the same overrides: its arch and scorer, its seeds, and the budget of the
scorer_hidden sweep (FIXED there, read from that file, not copied): train to convergence, i.e.
early stop on a valid-BLEU plateau capped at 6 epochs, test metrics from the best checkpoint.
No field of the budget has to differ for the Transformer: its schedule, learning rate and warmup
come from its base config, and the cap and plateau rule are the comparison's.

Run locally from the repository root (2 trials at a time; rerun the same command to resume):

    python -m launch.local --sweep=configs/sweeps/arch_scorer.py --sweep_dir=runs/arch_scorer \
        --parallel=2 [--dry_run] [--only=arch=transformer] [--only=arch=rnn,scorer=dot]
    python -m attn_jax.report --sweep_dir=runs/arch_scorer

The published grid (experiments/arch_scorer/README.md) runs --seeds_mode=trials: each seed stops
on its own plateau, and each trial (a Transformer seed: 30-60 minutes on one core) fits in one
working session, its record kept by launch/keep.sh.

W&B Sweeps and SLURM: see launch/README.md (the same 8 trials, same names, same workdirs).
Produces: runs/arch_scorer/status.json and one workdir per trial, named like
`arch=transformer,scorer=dot`, holding config.json, metrics.jsonl, results.json (test/valid BLEU,
exact match, AER and BLEU by source length, per seed and their mean; for the Transformer also
the AER of every cross-attention layer and head and the best head), heatmaps and checkpoints.
Smoke test of the launchers: --sweep=configs/sweeps/arch_scorer.py:tiny (the `:tiny` variants of
both base configs, 2 seeds, no budget overrides: 8 trials of seconds each).
"""

from __future__ import annotations

import os
from typing import Any

from attn_jax.model.attention import COMPARED
from attn_jax.model.transformer import CROSS_SCORERS
from attn_jax.run import config as config_lib

# The base config of each arch (--config values, relative to the repository root, as
# scorer_hidden's). The axis model.arch takes these keys, in this order.
CONFIGS = {"rnn": "configs/default.py", "transformer": "configs/transformer.py"}
# The scorers both archs take: the Transformer's cross-attention scorers in its registry's
# order, less the ones the RNN comparison does not publish (scaled_general).
SCORERS = [name for name in CROSS_SCORERS if name in COMPARED]
# The sibling sweep whose budget (its "fixed" overrides) every trial here shares.
SCORER_HIDDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scorer_hidden.py")


def get_sweep(arg: str | None = None) -> dict[str, Any]:
    """The sweep as plain data, expanded identically by every launcher (launch.sweep.expand).

    arg: None (the full grid) or 'tiny' for a smoke test of the launchers
    (--sweep=...arch_scorer.py:tiny): configs/default.py:tiny and configs/transformer.py:tiny,
    2 seeds, the tiny runs' own lengths (8 trials, seconds each).
    """
    if arg not in (None, "tiny"):
        raise ValueError(f"configs/sweeps/arch_scorer.py: unknown argument {arg!r}; valid: 'tiny'.")
    tiny = arg == "tiny"
    suffix = ":tiny" if tiny else ""
    # scorer_hidden's budget as that sweep runs it (its ':tiny' variant has none).
    budget = config_lib.load_config_file(SCORER_HIDDEN + suffix, function="get_sweep")["fixed"]
    return {
        "name": "arch_scorer_tiny" if tiny else "arch_scorer",
        # --config of a trial, by its model.arch (launch/sweep.py, base_config).
        "base_config": {"model.arch": {a: path + suffix for a, path in CONFIGS.items()}},
        "axes": {  # The grid; the first axis varies slowest.
            "model.arch": list(CONFIGS),
            "model.scorer": list(SCORERS),
        },
        # Seeds base..base+count-1 (vmapped in one process by default).
        "seeds": {"base": 0, "count": 2 if tiny else 3},
        "fixed": dict(budget),
    }
