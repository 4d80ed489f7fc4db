"""Helpers shared by the tests: a run folder built by hand, its W&B files, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from attn_jax.model import arch
from attn_jax.run import config as config_lib
from attn_jax.run import steps


def random_run_state(workdir: str, config, src_vocab_size: int, tgt_vocab_size: int,
                     scale: float, length: int = 24):
    """Writes WORKDIR/config.json and returns (model, state): a training state of `config`'s
    shapes filled with N(0, scale^2) floats (zeros elsewhere), nothing initialised or compiled."""
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(json.loads(config.to_json()), f)
    derived = config_lib.derive(config, src_vocab_size=src_vocab_size,
                                tgt_vocab_size=tgt_vocab_size, steps_per_epoch=1)
    model = arch.build(derived.model)
    tx, _ = steps.make_optimizer(config.train, derived.num_steps)
    abstract = jax.eval_shape(lambda: steps.init_state(model, tx, derived.seeds, length))
    rng = np.random.default_rng(0)
    state = jax.tree.map(lambda x: (scale * rng.normal(size=x.shape)).astype(x.dtype)
                         if np.issubdtype(x.dtype, np.floating) else np.zeros(x.shape, x.dtype),
                         abstract)
    return model, state


def wandb_records(run_dir: str) -> list[dict]:
    """The records of an offline W&B run folder (`wandb leet inspect`; skips on older wandb)."""
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", run_dir],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0 and "No such command" in out.stderr + out.stdout:
        pytest.skip("this wandb has no `wandb leet inspect` (wandb 0.31 has)")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def assert_one_line_error(monkeypatch, module, body: str, error: Exception) -> None:
    """A command's `module.main` ends with "error: <error>" on one line (SystemExit, status 1)
    when its body `module.<body>` raises `error`."""

    def fail():
        raise error

    monkeypatch.setattr(module, body, fail)
    with pytest.raises(SystemExit) as exit_:
        module.main([])
    assert exit_.value.code == f"error: {error}" and "\n" not in exit_.value.code


def replica_rows(both: list[dict], singles: dict[int, list[dict]], keys: tuple[str, ...]):
    """Checks a K-seed run's metric rows against separate single-seed runs: each replica logs the
    same (step, split) rows as its seed's run, with `keys` equal to 1e-5 where that run has them.
    Returns the (seed, replica row, single row) triples for further checks."""
    pairs = []
    for seed, want in singles.items():
        got = [r for r in both if r["seed"] == seed]
        assert [(r["step"], r["split"]) for r in got] == [(r["step"], r["split"]) for r in want]
        for g, w in zip(got, want):
            for key in keys:
                if key in w and w[key] is not None:
                    np.testing.assert_allclose(g[key], w[key], rtol=1e-5, atol=1e-5,
                                               err_msg=f"{key} of seed {seed}")
            pairs.append((seed, g, w))
    return pairs
