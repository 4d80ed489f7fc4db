"""Config checks and derived values: everything that must hold before anything is compiled.

`check_overrides` rewords an unknown `--config.a.b=v` key into a message naming the valid keys
(ml_collections would raise a bare AttributeError). `validate` checks values. `derive` computes the
values that depend on others (steps from epochs, intervals, model sizes) AFTER command-line
overrides, so they never go stale; the ConfigDict itself is never modified.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import math
import re
from typing import Any, Sequence

import ml_collections

from attn_jax import models

WANDB_MODES = ("offline", "online", "disabled")
SCHEDULES = ("cosine", "constant")

# Fields that must match between a run and the run it resumes (anything that changes shapes,
# meaning of parameters or the data). Others (eval settings, logging) may change on resume.
RESUME_KEYS = ("data.name", "data.source_lang", "data.target_lang", "data.train_size",
               "data.seed", "data.vocab", "data.vocab_size", "data.joint_vocab", "data.buckets",
               "data.batch_size", "data.batch_tokens", "model", "train.seed", "train.num_seeds")


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Loads 'path/to/config.py[:arg]' the way --config does."""
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("_attn_jax_config", path)
    if module_spec is None:
        raise ValueError(f"Cannot load config file {path!r}.")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def from_saved(saved: dict[str, Any]) -> ml_collections.ConfigDict:
    """A run's config.json content back as a ConfigDict (lists that are tuples in configs, too)."""
    config = ml_collections.ConfigDict(saved)
    config.data.buckets = tuple(config.data.buckets)
    return config


def _flat_keys(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        keys.append(prefix + k)
        if isinstance(v, ml_collections.ConfigDict):
            keys.extend(_flat_keys(v, prefix + k + "."))
    return keys


def check_overrides(argv: Sequence[str]) -> None:
    """Raises ValueError for a `--config.KEY=...` whose KEY the config file does not have."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None:
        return
    valid = _flat_keys(load_config_file(spec))
    for arg in argv:
        m = re.match(r"--config\.([^=]+)(=|$)", arg)
        if m and m.group(1) not in valid:
            key = m.group(1)
            section = key.rsplit(".", 1)[0] if "." in key else ""
            siblings = [k for k in valid if k.rsplit(".", 1)[0] == section and "." in k] or valid
            close = difflib.get_close_matches(key, valid, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"Unknown config key {key!r} in {arg!r}.{hint} Valid keys"
                             f"{' in ' + section if section else ''}: {', '.join(siblings)}.")


@dataclasses.dataclass(frozen=True)
class Derived:
    """Values computed from the config (after overrides) and the data."""

    model: models.ModelConfig
    num_steps: int
    steps_per_epoch: int
    eval_every: int
    checkpoint_every: int
    seeds: tuple[int, ...]


def _choice(value: str, valid: Sequence[str], key: str) -> None:
    if value not in valid:
        raise ValueError(f"Unknown {key} {value!r}; valid: {', '.join(valid)} (--config.{key}=...).")


def validate(config: ml_collections.ConfigDict) -> None:
    """Value checks that need no data; raises ValueError naming the fix."""
    t, e, log = config.train, config.eval, config.logging
    _choice(t.schedule, SCHEDULES, "train.schedule")
    _choice(log.wandb, WANDB_MODES, "logging.wandb")
    positive = {"train.num_seeds": t.num_seeds, "train.learning_rate": t.learning_rate,
                "train.log_every": t.log_every, "train.keep_checkpoints": t.keep_checkpoints,
                "data.batch_size": config.data.batch_size, "eval.batch_size": e.batch_size,
                "eval.beam_size": e.beam_size, "model.hidden_size": config.model.hidden_size}
    for key, value in positive.items():
        if value <= 0:
            raise ValueError(f"{key} must be > 0, got {value}.")
    nonneg = {"train.num_steps": t.num_steps, "train.num_epochs": t.num_epochs,
              "train.warmup_steps": t.warmup_steps, "train.eval_every": t.eval_every,
              "train.checkpoint_every": t.checkpoint_every, "eval.valid_subset": e.valid_subset,
              "eval.num_heatmaps": e.num_heatmaps, "train.grad_clip": t.grad_clip,
              "data.batch_tokens": config.data.batch_tokens}
    for key, value in nonneg.items():
        if value < 0:
            raise ValueError(f"{key} must be >= 0, got {value}.")
    if not t.num_steps and not t.num_epochs:
        raise ValueError("Set train.num_steps or train.num_epochs (both are 0).")
    if not 0 <= t.label_smoothing < 1:
        raise ValueError(f"train.label_smoothing must be in [0, 1), got {t.label_smoothing}.")
    # The model's names and sizes (vocabulary sizes are placeholders until the data is loaded).
    models.ModelConfig.from_config(config.model, src_vocab_size=1, tgt_vocab_size=1,
                                   max_source_len=max(config.data.buckets))


def derive(config: ml_collections.ConfigDict, *, src_vocab_size: int, tgt_vocab_size: int,
           steps_per_epoch: int) -> Derived:
    """The derived values (call after overrides and after loading the data)."""
    validate(config)
    t = config.train
    model = models.ModelConfig.from_config(
        config.model, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size,
        max_source_len=max(config.data.buckets))
    num_steps = t.num_steps or max(1, math.ceil(t.num_epochs * steps_per_epoch))
    # Evaluate 4 times per run by default, on a multiple of log_every so that a checkpoint
    # never falls inside a logging window (resumed runs then log exactly the same rows).
    eval_every = t.eval_every or max(t.log_every, num_steps // 4 // t.log_every * t.log_every)
    checkpoint_every = t.checkpoint_every or eval_every
    if checkpoint_every % t.log_every:
        raise ValueError(f"train.checkpoint_every ({checkpoint_every}) must be a multiple of "
                         f"train.log_every ({t.log_every}) so that resumed runs log the same rows.")
    seeds = tuple(range(t.seed, t.seed + t.num_seeds))
    return Derived(model=model, num_steps=num_steps, steps_per_epoch=steps_per_epoch,
                   eval_every=eval_every, checkpoint_every=checkpoint_every, seeds=seeds)


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """{'a.b': value} for a nested dict."""
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = list(v) if isinstance(v, tuple) else v
    return out


def resume_mismatches(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys in RESUME_KEYS whose values differ between a saved config.json and this run."""
    a, b = flatten(saved), flatten(current)
    bad = []
    for key in sorted(set(a) | set(b)):
        if any(key == k or key.startswith(k + ".") for k in RESUME_KEYS) and a.get(key) != b.get(key):
            bad.append(f"{key}: saved {a.get(key)!r}, now {b.get(key)!r}")
    return bad
