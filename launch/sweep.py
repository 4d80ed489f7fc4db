"""Sweep definitions: load, validate and expand them into trials; list a sweep's trials.

    python -m launch.sweep --sweep=configs/sweeps/scorer_hidden.py [--sweep_dir=DIR] \
        [--seeds_mode=vmap|trials] [--only=scorer=dot]

prints every trial (index, name, command) after validating the sweep; it runs nothing.

A sweep definition is a Python file with `get_sweep()` returning plain data
(see configs/sweeps/scorer_hidden.py):

    {"name": "scorer_hidden",                 # filesystem-safe sweep name (the sweep dir's)
     "base_config": "configs/default.py",     # a --config= value (may carry ":arg")
     "axes": {"model.scorer": [...], "model.hidden_size": [...]},  # grid, first axis slowest
     "seeds": {"base": 0, "count": 3},        # seeds base .. base+count-1
     "fixed": {"train.num_steps": 2000}}      # overrides shared by every trial

A grid point that needs several fields of its own (the Transformer's layers, schedule, learning
rate, ...) takes them from its own base config: `base_config` may instead map the values of one
axis to --config values, {AXIS: {VALUE: CONFIG}}, e.g. (configs/sweeps/arch_scorer.py)

     "base_config": {"model.arch": {"rnn": "configs/default.py",
                                    "transformer": "configs/transformer.py"}},

so a trial with model.arch=transformer runs `--config=configs/transformer.py` (with the same
overrides as every trial: its axis values, seeds and fixed). Every value of that axis must have
a config (keys are the values as written on the command line), and every trial is validated
against its own base config.

Every launcher (launch/local.py, launch/wandb_sweep.py, launch/slurm.py) expands a
definition with `expand()` and turns a trial into argv with `command()`, so all of them run
exactly the same trials, with the same names and workdirs:

    spec = validate(load_sweep("configs/sweeps/scorer_hidden.py"))  # ValueError if invalid
    for trial in expand(spec, seeds_mode="vmap"):
        print(trial.name, command(trial, "runs/sweep"))

Files are loaded by `attn_jax.run.config.load_config_file` (the loader --config uses), and every
trial's overrides are applied to the base config with `attn_jax.run.config.override` and checked
with `attn_jax.run.config.validate`, so an unknown key, a value of the wrong type or a bad value
(an unknown scorer, a negative size) stops a launcher before anything runs.

Seeds: with seeds_mode='vmap' (default) one trial trains all seeds as vmapped replicas in one
process (`--config.train.seed=BASE --config.train.num_seeds=COUNT`); with seeds_mode='trials'
every seed is its own trial (`--config.train.seed=S --config.train.num_seeds=1`).
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import itertools
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from attn_jax.run import config as config_lib

TRAIN_MODULE = "attn_jax.train"
SEEDS_MODES = ("vmap", "trials")
SEED_KEY = "train.seed"
NUM_SEEDS_KEY = "train.num_seeds"

_REQUIRED_KEYS = ("name", "base_config", "axes", "seeds", "fixed")
_SEEDS_KEYS = ("base", "count")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._+-]+$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+-]")
_SCALARS = (bool, int, float, str, type(None))

format_value = config_lib.format_value  # A value as written on the command line.


@dataclasses.dataclass(frozen=True)
class Trial:
    """One launchable training run of a sweep.

    Attributes:
        name: stable, filesystem-safe name, e.g. 'scorer=dot,hidden_size=64' (its workdir name).
        overrides: ordered config overrides (dotted key -> value): axes, then train.seed and
            train.num_seeds, then the fixed overrides. `command()` is a function of these alone.
        seeds: the seeds this trial trains (several in 'vmap' mode, one in 'trials' mode).
        config: the base --config value, e.g. 'configs/default.py' (with a per-axis-value
            base_config: the one of this trial's value).
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


def to_plain(value: Any) -> Any:
    """ConfigDict / Mapping / tuple -> plain dict / list, recursively."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def load_sweep(sweep: Any) -> dict[str, Any]:
    """A sweep definition as plain data (not yet validated).

    Args:
        sweep: a file path ('configs/sweeps/scorer_hidden.py', optionally with ':arg' passed to
            get_sweep(arg)), or the spec itself (a dict or ConfigDict).
    """
    if not (isinstance(sweep, Mapping) or hasattr(sweep, "to_dict")):
        sweep = config_lib.load_config_file(sweep, function="get_sweep")
        if not (isinstance(sweep, Mapping) or hasattr(sweep, "to_dict")):
            raise ValueError(f"get_sweep() must return a dict, got {type(sweep).__name__}.")
    return to_plain(sweep)


# -------------------------------------------------------------------------- validation


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
    _check_base_config(spec["base_config"], axes)


def _check_base_config(base: Any, axes: Mapping[str, Any]) -> None:
    """base_config: a --config value, or {AXIS: {VALUE: --config value}} for every VALUE of AXIS."""
    if isinstance(base, str) and base:
        return
    if not isinstance(base, Mapping):
        raise ValueError(f"base_config must be a config path string, or {{AXIS: {{VALUE: config "
                         f"path}}}} to pick it by an axis's value; got {base!r}.")
    if len(base) != 1 or next(iter(base)) not in axes:
        raise ValueError(f"base_config {dict(base)!r} must pick the config by exactly one sweep "
                         f'axis, {{AXIS: {{VALUE: config path}}}}; axes: {", ".join(axes)}.')
    (key, table), = base.items()
    if not isinstance(table, Mapping):
        raise ValueError(f"base_config[{key!r}] must map each value of axis {key!r} to a config "
                         f"path, got {table!r}.")
    values = [format_value(v) for v in axes[key]]
    missing = [v for v in values if v not in table]
    extra = [str(v) for v in table if v not in values]
    if missing or extra:
        raise ValueError(f"base_config[{key!r}] must name a config for every value of the axis "
                         f"and no other: missing {missing}, not axis values {extra}; axis values: "
                         f'{", ".join(values)}.')
    for value, path in table.items():
        if not isinstance(path, str) or not path:
            raise ValueError(f"base_config[{key!r}][{value!r}] must be a config path string, "
                             f"got {path!r}.")


def base_config_of(spec: Mapping[str, Any], point: Mapping[str, Any]) -> str:
    """The --config value of a grid point ({axis key: value}) of a checked spec."""
    base = spec["base_config"]
    if isinstance(base, str):
        return base
    (key, table), = base.items()
    return table[format_value(point[key])]


def trial_config(trial: Trial, base_config: Any = None) -> Any:
    """The trial's whole config, before the value checks: its base config (`base_config`, else
    loaded from trial.config) with its overrides applied, as the training command builds it."""
    config = copy.deepcopy(base_config if base_config is not None
                           else config_lib.load_config_file(trial.config))
    for key, value in trial.overrides.items():
        config_lib.override(config, key, value, f"sweep trial {trial.name}")
    return config


def validate(spec: Any, base_config: Any = None) -> dict[str, Any]:
    """Validates a sweep spec; raises a one-line ValueError naming the fix if it is invalid.

    Every axis value and fixed override must be a key of the base config(s) with a value of its
    type, and every trial's config (its base + overrides) must pass
    `attn_jax.run.config.validate`.

    Args:
        spec: the plain-data spec (see module docstring).
        base_config: a ConfigDict that stands in for every base config; None (default) loads
            each trial's own (spec['base_config'], or the one its axis value picks).

    Returns:
        The spec as plain data.
    """
    spec = to_plain(spec)
    _check_structure(spec)
    trials = expand(spec)
    bases: dict[str, Any] = {}
    for path in dict.fromkeys(t.config for t in trials):  # Each base once, in trial order.
        bases[path] = (base_config if base_config is not None
                       else config_lib.load_config_file(path))
        scratch = copy.deepcopy(bases[path])
        for key, values in spec["axes"].items():
            for value in values:
                config_lib.override(scratch, key, value, "sweep axes")
        for key, value in spec["fixed"].items():
            config_lib.override(scratch, key, value, "sweep fixed overrides")
    for trial in trials:
        config = trial_config(trial, bases[trial.config])
        try:
            config_lib.validate(config)
        except ValueError as e:
            raise ValueError(f"sweep trial {trial.name}: {e}") from None
    return spec


# --------------------------------------------------------------------------- expansion


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
                                config=base_config_of(spec, params), params=params,
                                index=len(trials)))
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
         base_config: Any = None) -> tuple[dict[str, Any], list[Trial]]:
    """load_sweep + validate + expand: what every launcher does first."""
    spec = validate(load_sweep(sweep), base_config)
    return spec, expand(spec, seeds_mode)


def argument_parser(prog: str, doc: str | None,
                    default_dir: str = "runs/<sweep name>") -> argparse.ArgumentParser:
    """A launcher's parser with the options every launcher shares (--sweep, --sweep_dir,
    --seeds_mode); each launcher adds its own."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", required=True, help="sweep definition file with get_sweep(), "
                        "e.g. configs/sweeps/scorer_hidden.py")
    parser.add_argument("--sweep_dir", default=None,
                        help=f"directory holding one workdir per trial (default: {default_dir})")
    parser.add_argument("--seeds_mode", choices=SEEDS_MODES, default="vmap",
                        help="vmap: all seeds of a grid point in one process; trials: one trial "
                        "per seed")
    return parser


def run_cli(main) -> None:
    """Runs a launcher's main(); an invalid sweep ends in one line, before anything has run."""
    try:
        sys.exit(main())
    except ValueError as e:
        sys.exit(f"error: {e}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser("python -m launch.sweep", __doc__)
    parser.add_argument("--only", action="append", default=[],
                        help="list only matching trials, e.g. 'scorer=dot' (repeatable)")
    args = parser.parse_args(argv)
    spec, trials = load(args.sweep, args.seeds_mode)
    sweep_dir = args.sweep_dir or os.path.join("runs", spec["name"])
    for t in select(trials, args.only):
        print(f"{t.index}\t{t.name}\t{shlex.join(command(t, sweep_dir))}")
    return 0


if __name__ == "__main__":
    run_cli(main)
