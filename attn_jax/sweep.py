"""Sweep definitions: load, validate and expand them into trials (pure; no JAX import).

A sweep definition is a Python file with `get_sweep()` returning plain data
(see configs/sweeps/scorer_hidden.py):

    {"name": "scorer_hidden",                 # filesystem-safe sweep name (the sweep dir's)
     "base_config": "configs/default.py",     # a --config= value (may carry ":arg")
     "axes": {"model.scorer": [...], "model.hidden_size": [...]},  # grid, first axis slowest
     "seeds": {"base": 0, "count": 3},        # seeds base .. base+count-1
     "fixed": {"train.num_steps": 2000}}      # overrides shared by every trial

Every launcher (launch/local.py, launch/wandb_sweep.py, launch/slurm.py) expands a
definition with `expand()` and turns a trial into argv with `command()`, so all of them run
exactly the same trials, with the same names and workdirs:

    spec = validate(load_sweep("configs/sweeps/scorer_hidden.py"))  # ValueError if invalid
    for trial in expand(spec, seeds_mode="vmap"):
        print(trial.name, command(trial, "runs/sweep"))

Seeds: with seeds_mode='vmap' (default) one trial trains all seeds as vmapped replicas in one
process (`--config.train.seed=BASE --config.train.num_seeds=COUNT`); with seeds_mode='trials'
every seed is its own trial (`--config.train.seed=S --config.train.num_seeds=1`).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import importlib.util
import itertools
import os
import re
import types
from collections.abc import Mapping, Sequence
from typing import Any

TRAIN_MODULE = "attn_jax.train"
SEEDS_MODES = ("vmap", "trials")
SEED_KEY = "train.seed"
NUM_SEEDS_KEY = "train.num_seeds"
# Used only when attn_jax.attention (the scorer registry) cannot be imported.
FALLBACK_SCORER_NAMES = ("none", "additive", "dot", "general", "scaled_dot", "location",
                         "multihead")

_REQUIRED_KEYS = ("name", "base_config", "axes", "seeds", "fixed")
_SEEDS_KEYS = ("base", "count")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._+-]+$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+-]")
_SCALARS = (bool, int, float, str, type(None))


@dataclasses.dataclass(frozen=True)
class Trial:
    """One launchable training run of a sweep.

    Attributes:
        name: stable, filesystem-safe name, e.g. 'scorer=dot,hidden_size=64' (its workdir name).
        overrides: ordered config overrides (dotted key -> value): axes, then train.seed and
            train.num_seeds, then the fixed overrides. `command()` is a function of these alone.
        seeds: the seeds this trial trains (several in 'vmap' mode, one in 'trials' mode).
        config: the base --config value, e.g. 'configs/default.py'.
        params: the grid point only (dotted axis key -> value), plus train.seed in 'trials' mode.
        index: position in the expanded list (the SLURM array index).
    """

    name: str
    overrides: dict[str, Any]
    seeds: tuple[int, ...]
    config: str
    params: dict[str, Any]
    index: int


# ----------------------------------------------------------------------------- loading


def _load_module_from_path(path: str, prefix: str) -> types.ModuleType:
    """Imports a Python file by path (like ml_collections.config_flags does)."""
    if not os.path.isfile(path):
        raise ValueError(f"File {path!r} not found (relative paths are resolved against the "
                         f"current directory {os.getcwd()!r}; run from the repository root).")
    name = f"_attn_jax_{prefix}_" + _UNSAFE_CHARS.sub("_", os.path.abspath(path))
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _split_arg(path: str) -> tuple[str, list[str]]:
    """'file.py:arg' -> ('file.py', ['arg']); 'file.py' -> ('file.py', [])."""
    file_path, sep, arg = path.partition(":")
    return file_path, ([arg] if sep else [])


def to_plain(value: Any) -> Any:
    """ConfigDict / Mapping / tuple -> plain dict / list, recursively."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def load_sweep(path_or_module: Any) -> dict[str, Any]:
    """Loads a sweep definition as plain data (not yet validated).

    Args:
        path_or_module: a file path ('configs/sweeps/scorer_hidden.py', optionally with ':arg'
            passed to get_sweep(arg)), a dotted module name ('configs.sweeps.scorer_hidden'), a
            module object with get_sweep(), or the spec itself (a dict or ConfigDict).
    """
    if isinstance(path_or_module, Mapping) or hasattr(path_or_module, "to_dict"):
        return to_plain(path_or_module)
    args: list[str] = []
    module = path_or_module
    if isinstance(path_or_module, (str, os.PathLike)):
        text = os.fspath(path_or_module)
        file_path, args = _split_arg(text)
        if file_path.endswith(".py") or os.sep in file_path:
            module = _load_module_from_path(file_path, "sweep")
        else:
            module = importlib.import_module(file_path)
    if not hasattr(module, "get_sweep"):
        raise ValueError(f"{path_or_module!r} defines no get_sweep().")
    spec = module.get_sweep(*args)
    if not (isinstance(spec, Mapping) or hasattr(spec, "to_dict")):
        raise ValueError(f"{path_or_module!r}: get_sweep() must return a dict, got {type(spec)}.")
    return to_plain(spec)


def load_base_config(config_path: str) -> Any:
    """Loads a --config value ('configs/default.py' or 'configs/default.py:arg') via get_config()."""
    file_path, args = _split_arg(config_path)
    module = _load_module_from_path(file_path, "config")
    if not hasattr(module, "get_config"):
        raise ValueError(f"Base config {file_path!r} defines no get_config().")
    return module.get_config(*args)


def scorer_names() -> tuple[str, ...]:
    """The scorer registry's names (attn_jax.attention.SCORER_NAMES), else the fixed list."""
    try:
        attention = importlib.import_module("attn_jax.attention")
    except ModuleNotFoundError as e:
        if e.name not in ("attn_jax.attention", "attn_jax"):
            raise
        return FALLBACK_SCORER_NAMES
    return tuple(getattr(attention, "SCORER_NAMES", FALLBACK_SCORER_NAMES))


# -------------------------------------------------------------------------- validation


def _is_section(value: Any) -> bool:
    return isinstance(value, Mapping) or hasattr(value, "to_dict")


def _leaf_keys(config: Any, prefix: str = "") -> list[str]:
    """All dotted leaf keys of a nested config."""
    keys = []
    for k in config.keys():
        full = f"{prefix}{k}"
        if _is_section(config[k]):
            keys.extend(_leaf_keys(config[k], full + "."))
        else:
            keys.append(full)
    return keys


def lookup(config: Any, key: str, where: str = "sweep") -> Any:
    """Returns config[a][b][c] for key 'a.b.c'; ValueError naming valid keys if absent."""
    node, walked = config, []
    for part in key.split("."):
        if not _is_section(node) or part not in node.keys():
            section = ".".join(walked)
            prefix = section + "." if section else ""
            valid = sorted(_leaf_keys(node, prefix)) if _is_section(node) else []
            close = difflib.get_close_matches(key, _leaf_keys(config), n=3)
            hint = f' Did you mean {", ".join(map(repr, close))}?' if close else ""
            raise ValueError(f"Unknown config key {key!r} in {where}.{hint} Valid keys"
                             f'{" under " + repr(section) if section else ""}: {", ".join(valid)}')
        node = node[part]
        walked.append(part)
    if _is_section(node):
        raise ValueError(f"Config key {key!r} in {where} is a section, not a field; valid keys: "
                         f'{", ".join(sorted(_leaf_keys(node, key + ".")))}')
    return node


def _type_ok(value: Any, current: Any) -> bool:
    """Whether `value` may override a field whose default is `current`."""
    if current is None:
        return isinstance(value, _SCALARS)
    if isinstance(current, bool):
        return isinstance(value, bool)
    if isinstance(current, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(current, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(current, str):
        return isinstance(value, str)
    if isinstance(current, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(current))


def _check_values(key: str, values: Sequence[Any], base_config: Any, where: str) -> None:
    """Checks the key exists in the base config and every value has its type (and is a scorer)."""
    if base_config is not None:
        current = lookup(base_config, key, where)
        for v in values:
            if not _type_ok(v, current):
                raise ValueError(f"{where}: value {v!r} for {key!r} has type {type(v).__name__}, but "
                                 f"the base config field is {type(current).__name__} "
                                 f"(default {current!r}).")
    if key == "model.scorer":
        names = scorer_names()
        bad = [v for v in values if v not in names]
        if bad:
            raise ValueError(f"{where}: unknown scorer(s) {bad} for model.scorer; valid scorers: "
                             f'{", ".join(names)}')


def _check_structure(spec: Any) -> None:
    """Checks the spec's own keys and shapes (no base config needed)."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"A sweep spec must be a dict, got {type(spec).__name__}.")
    unknown = sorted(set(spec) - set(_REQUIRED_KEYS))
    missing = [k for k in _REQUIRED_KEYS if k not in spec]
    if unknown or missing:
        raise ValueError(f"Sweep spec keys: unknown {unknown}, missing {missing}; valid keys: "
                         f'{", ".join(_REQUIRED_KEYS)}')
    if not isinstance(spec["name"], str) or not _SAFE_NAME.match(spec["name"]):
        raise ValueError(f'Sweep name {spec["name"]!r} must be a non-empty string of '
                         f"[A-Za-z0-9._+-].")
    if not isinstance(spec["base_config"], str) or not spec["base_config"]:
        raise ValueError(f'base_config must be a config path string, got {spec["base_config"]!r}.')
    axes, fixed, seeds = spec["axes"], spec["fixed"], spec["seeds"]
    if not isinstance(axes, Mapping) or not axes:
        raise ValueError("axes must be a non-empty dict of dotted config key -> list of values.")
    if not isinstance(fixed, Mapping):
        raise ValueError("fixed must be a dict of dotted config key -> value.")
    for key, values in axes.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"axes[{key!r}] must be a non-empty list of values, got {values!r}.")
        if len({repr(v) for v in values}) != len(values):
            raise ValueError(f"axes[{key!r}] has duplicate values: {values!r}.")
        for v in values:
            if not isinstance(v, _SCALARS + (list, tuple)):
                raise ValueError(f"axes[{key!r}]: {v!r} is not plain data.")
    for key, v in fixed.items():
        if not isinstance(v, _SCALARS + (list, tuple)):
            raise ValueError(f"fixed[{key!r}]: {v!r} is not plain data.")
    both = sorted(set(axes) & set(fixed))
    if both:
        raise ValueError(f"Keys {both} are both sweep axes and fixed overrides.")
    managed = sorted({SEED_KEY, NUM_SEEDS_KEY} & (set(axes) | set(fixed)))
    if managed:
        raise ValueError(f'{managed} are set by the "seeds" section ({{"base": int, "count": int}}), '
                         f"not by axes/fixed.")
    if not isinstance(seeds, Mapping) or set(seeds) != set(_SEEDS_KEYS):
        raise ValueError(f"seeds must be a dict with exactly the keys {list(_SEEDS_KEYS)}, "
                         f"got {seeds!r}.")
    for k in _SEEDS_KEYS:
        if not isinstance(seeds[k], int) or isinstance(seeds[k], bool):
            raise ValueError(f"seeds[{k!r}] must be an int, got {seeds[k]!r}.")
    if seeds["count"] < 1 or seeds["base"] < 0:
        raise ValueError(f"seeds needs count >= 1 and base >= 0, got {dict(seeds)!r}.")


def validate(spec: Any, base_config: Any = "load") -> dict[str, Any]:
    """Validates a sweep spec; raises ValueError (naming the valid keys/values) if invalid.

    Args:
        spec: the plain-data spec (see module docstring).
        base_config: the base ConfigDict to check keys and types against; 'load' (default) loads
            spec['base_config'] from disk; None checks the structure and scorer names only.

    Returns:
        The spec as plain data.
    """
    spec = to_plain(spec)
    _check_structure(spec)
    if isinstance(base_config, str) and base_config == "load":
        base_config = load_base_config(spec["base_config"])
    for key, values in spec["axes"].items():
        _check_values(key, values, base_config, "sweep axes")
    for key, value in spec["fixed"].items():
        _check_values(key, [value], base_config, "sweep fixed overrides")
    seeds = spec["seeds"]
    _check_values(SEED_KEY, [seeds["base"]], base_config, "sweep seeds")
    _check_values(NUM_SEEDS_KEY, [seeds["count"]], base_config, "sweep seeds")
    return spec


# --------------------------------------------------------------------------- expansion


def format_value(value: Any) -> str:
    """A value as written on the command line (parsed back by ml_collections config_flags)."""
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Shortest dotted suffix of each key that is unique among `keys` ('model.scorer' -> 'scorer')."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            cand = ".".join(parts[-n:])
            if sum(1 for other in keys if other == cand or other.endswith("." + cand)) == 1:
                short[key] = cand
                break
    return short


def trial_name(params: Mapping[str, Any]) -> str:
    """'scorer=dot,hidden_size=64' from {'model.scorer': 'dot', 'model.hidden_size': 64}."""
    short = _short_keys(list(params))
    parts = [f'{short[k]}={_UNSAFE_CHARS.sub("_", format_value(v))}' for k, v in params.items()]
    return ",".join(parts)


def expand(spec: Any, seeds_mode: str = "vmap") -> list[Trial]:
    """Expands a (validated) spec into its trials, in a stable order (first axis slowest).

    seeds_mode='vmap': one trial per grid point, training seeds base..base+count-1 in one process.
    seeds_mode='trials': one trial per grid point and seed (the seed is the innermost axis).
    """
    if seeds_mode not in SEEDS_MODES:
        raise ValueError(f'Unknown seeds_mode {seeds_mode!r}; valid: {", ".join(SEEDS_MODES)}')
    spec = to_plain(spec)
    _check_structure(spec)
    keys = list(spec["axes"])
    base, count = spec["seeds"]["base"], spec["seeds"]["count"]
    all_seeds = tuple(range(base, base + count))
    seed_groups = [all_seeds] if seeds_mode == "vmap" else [(s,) for s in all_seeds]
    trials: list[Trial] = []
    for point in itertools.product(*(spec["axes"][k] for k in keys)):
        for seeds in seed_groups:
            params = dict(zip(keys, point))
            if seeds_mode == "trials":
                params[SEED_KEY] = seeds[0]
            overrides = dict(zip(keys, point))
            overrides[SEED_KEY] = seeds[0]
            overrides[NUM_SEEDS_KEY] = len(seeds)
            overrides.update(spec["fixed"])
            trials.append(Trial(name=trial_name(params), overrides=overrides, seeds=seeds,
                                config=spec["base_config"], params=params, index=len(trials)))
    names = [t.name for t in trials]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"Trial names collide after sanitizing values: {dupes}")
    return trials


def workdir(trial: Trial, sweep_dir: str) -> str:
    """The trial's workdir: SWEEP_DIR/NAME."""
    return os.path.join(sweep_dir, trial.name)


def command(trial: Trial, sweep_dir: str, python: str = "python",
            module: str = TRAIN_MODULE) -> list[str]:
    """The argv that runs one trial: python -m attn_jax.train --config=... --workdir=... --config.k=v."""
    argv = [python, "-m", module, f"--config={trial.config}",
            f"--workdir={workdir(trial, sweep_dir)}"]
    argv += [f"--config.{k}={format_value(v)}" for k, v in trial.overrides.items()]
    return argv


def select(trials: Sequence[Trial], only: Sequence[str] | None) -> list[Trial]:
    """Keeps the trials matching any filter; a filter 'scorer=dot,hidden_size=64' needs all its parts.

    A part 'k=v' matches when the trial's name carries 'k=v' or a parameter whose dotted key ends
    in k has formatted value v. Raises ValueError if a filter matches nothing.
    """
    if not only:
        return list(trials)

    def matches(trial: Trial, part: str) -> bool:
        if part in trial.name.split(","):
            return True
        k, _, v = part.partition("=")
        return any((key == k or key.endswith("." + k)) and format_value(val) == v
                   for key, val in trial.params.items())

    kept = []
    for f in only:
        hits = [t for t in trials if all(matches(t, p) for p in f.split(",") if p)]
        if not hits:
            example = repr(trials[0].name) if trials else "(no trials)"
            raise ValueError(f"Filter {f!r} matches no trial; trial names look like {example}.")
        kept += [t for t in hits if t not in kept]
    return sorted(kept, key=lambda t: t.index)


def parse_value(text: str) -> Any:
    """Parses a command-line value back to Python ('64' -> 64, 'dot' -> 'dot', 'True' -> True)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def load(sweep: Any, seeds_mode: str = "vmap",
         base_config: Any = "load") -> tuple[dict[str, Any], list[Trial]]:
    """load_sweep + validate + expand: what every launcher does first."""
    spec = validate(load_sweep(sweep), base_config)
    return spec, expand(spec, seeds_mode)
