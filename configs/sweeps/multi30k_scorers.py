"""Sweep: every published attention scorer on Multi30k de->en, configs/multi30k.py as committed.

Grid: model.scorer over the registry's published scorers (attn_jax.model.attention.COMPARED:
additive, dot, general, scaled_dot, location, multihead, none), one seed each: 7 trials, each
the whole `python -m attn_jax.train --config=configs/multi30k.py --config.model.scorer=X`
command (7 epochs of token batches, test_2016_flickr scored with beam 5 from the final
parameters). Nothing else differs between trials, so the table is the scorers' and nothing
else's. About 20-30 minutes a trial on one CPU core; the data is read from configs/multi30k.py's
`data.raw_dir` (override it in that file's command line with --config.data.raw_dir, or edit
the FIXED dict below for a sweep).

    python -m launch.local --sweep=configs/sweeps/multi30k_scorers.py \
        --sweep_dir=runs/multi30k_scorers --parallel=2 [--only=scorer=dot]
    python -m attn_jax.report --sweep_dir=runs/multi30k_scorers
    python -m attn_jax.perturb --workdir=runs/multi30k_scorers/scorer=dot   # issue 27's table

Produces: one workdir per trial, named like `scorer=dot`, holding config.json, metrics.jsonl,
results.json and the checkpoints. Smoke test of the launchers: --sweep=...multi30k_scorers.py:tiny
(configs/multi30k.py:tiny, seconds of training each; it needs the raw Multi30k files too).
"""

from __future__ import annotations

from typing import Any

from attn_jax.model.attention import COMPARED

# Overrides shared by every trial (keys of configs/multi30k.py): no progress bar in a sweep log.
FIXED: dict[str, Any] = {"logging.progress_bar": False}


def get_sweep(arg: str | None = None) -> dict[str, Any]:
    """The sweep as plain data, expanded identically by every launcher (launch.sweep.expand).

    arg: None (the 7 trials) or 'tiny' (configs/multi30k.py:tiny, a smoke test).
    """
    if arg not in (None, "tiny"):
        raise ValueError(f"configs/sweeps/multi30k_scorers.py: unknown argument {arg!r}; "
                         "valid: 'tiny'.")
    tiny = arg == "tiny"
    return {
        "name": "multi30k_scorers_tiny" if tiny else "multi30k_scorers",
        "base_config": "configs/multi30k.py" + (":tiny" if tiny else ""),  # --config.
        "axes": {"model.scorer": list(COMPARED)},  # Every published scorer of the registry.
        "seeds": {"base": 0, "count": 1},
        "fixed": dict(FIXED),
    }
