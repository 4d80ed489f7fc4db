"""W&B Sweeps route: a grid sweep YAML from a sweep definition, and the per-run entry point.

1. Generate the YAML (validates the sweep first; --dry_run also prints every run's command):

    python -m launch.wandb_sweep --sweep=configs/sweeps/scorer_hidden.py --out=sweep.yaml \
        [--sweep_dir=runs/wandb/scorer_hidden] [--seeds_mode=vmap|trials] [--project=attn_jax] \
        [--wandb_mode=online] [--dry_run]

2. Register it and start agents from the repository root (each agent runs one trial at a time):

    wandb sweep sweep.yaml                      # prints ENTITY/PROJECT/SWEEP_ID
    wandb agent ENTITY/PROJECT/SWEEP_ID

The YAML's parameters are named by their config override path ('config.model.scorer', ...),
one per sweep axis plus the seed and fixed overrides as constants, so the agent's `${args}`
are exactly config overrides (`--config.model.scorer=dot --config.model.hidden_size=64 ...`).
Its `command:` runs this module with --run_trial, which maps those arguments back to the
sweep's Trial (same name and workdir, SWEEP_DIR/NAME, as the local and SLURM launchers) and
execs `launch.sweep.command(trial, sweep_dir)`: `python -m attn_jax.train --config=...
--workdir=SWEEP_DIR/NAME --config.model.scorer=dot ...`. Arguments that do not pick exactly one trial
of the sweep fail with a clear error before training starts.

W&B mode: the route adds the fixed override `logging.wandb=online` (--wandb_mode; '' adds none),
so runs started by `wandb agent` report to the sweep even though the base config logs offline
(WANDB_MODE or a `mode` in the W&B settings file still wins: attn_jax/run/tracking.py). Trial names
and workdirs do not depend on it.

Vmapped seeds (--seeds_mode=vmap, the default): the agent hands each process one run
(WANDB_RUN_ID), and a trial logs its K seeds into it: `valid/bleu` is their mean (the YAML's
metric, maximized), `seed<S>/valid/bleu` each seed's own value.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from launch import sweep

PREFIX = "config."
# Runs under `wandb agent` must log online for the sweep to see them, whatever the base config
# says: the route adds this fixed override (--wandb_mode, default 'online'; '' adds nothing).
WANDB_MODE_KEY = "logging.wandb"


def default_sweep_dir(spec: Mapping[str, Any]) -> str:
    return os.path.join("runs", "wandb", spec["name"])


def route_spec(spec: Mapping[str, Any], wandb_mode: str = "online") -> dict[str, Any]:
    """The spec as the W&B route runs it: fixed[logging.wandb] = wandb_mode (unless '')."""
    spec = dict(spec)
    if wandb_mode:
        spec["fixed"] = {**spec["fixed"], WANDB_MODE_KEY: wandb_mode}
    return spec


def load_route(sweep_path: str, seeds_mode: str, wandb_mode: str,
               ) -> tuple[dict[str, Any], list[sweep.Trial]]:
    """Loads and validates the sweep with the route's overrides (before anything runs)."""
    return sweep.load(route_spec(sweep.load_sweep(sweep_path), wandb_mode), seeds_mode)


def parameters(spec: Mapping[str, Any], seeds_mode: str = "vmap") -> dict[str, dict[str, Any]]:
    """W&B parameters: axes as {'values': [...]}, seeds and fixed overrides as {'value': v}."""
    seeds = spec["seeds"]
    params: dict[str, dict[str, Any]] = {
        PREFIX + k: {"values": list(v)} for k, v in spec["axes"].items()}
    if seeds_mode == "vmap":
        params[PREFIX + sweep.SEED_KEY] = {"value": seeds["base"]}
        params[PREFIX + sweep.NUM_SEEDS_KEY] = {"value": seeds["count"]}
    else:
        params[PREFIX + sweep.SEED_KEY] = {
            "values": list(range(seeds["base"], seeds["base"] + seeds["count"]))}
        params[PREFIX + sweep.NUM_SEEDS_KEY] = {"value": 1}
    params.update({PREFIX + k: {"value": v} for k, v in spec["fixed"].items()})
    return params


def sweep_config(spec: Mapping[str, Any], sweep_path: str, sweep_dir: str | None = None,
                 seeds_mode: str = "vmap", project: str | None = None,
                 wandb_mode: str = "online") -> dict[str, Any]:
    """The W&B sweep configuration (a grid) for a validated spec (as given to route_spec)."""
    sweep_dir = sweep_dir or default_sweep_dir(spec)
    config: dict[str, Any] = {
        "name": spec["name"],
        "description": f"{sweep_path} (seeds_mode={seeds_mode}); workdirs under {sweep_dir}",
        "program": "launch/wandb_sweep.py",  # Informational: the command below runs it with -m.
        "method": "grid",
        # attn_jax.run.tracking logs the mean over a run's seeds under this key (its summary: max).
        "metric": {"name": "valid/bleu", "goal": "maximize"},
        "parameters": parameters(spec, seeds_mode),
        "command": ["${env}", "${interpreter}", "-m", "launch.wandb_sweep", "--run_trial",
                    f"--sweep={sweep_path}", f"--sweep_dir={sweep_dir}",
                    f"--seeds_mode={seeds_mode}", f"--wandb_mode={wandb_mode}", "${args}"],
    }
    if project:
        config["project"] = project
    return config


def to_yaml(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)


def wandb_args(trial: sweep.Trial) -> list[str]:
    """The `${args}` a W&B agent passes for this trial's parameters (W&B writes --name=str(value))."""
    return [f"--{PREFIX}{k}={v}" for k, v in trial.overrides.items()]


def overrides_from_wandb_args(args: Sequence[str],
                              spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Maps W&B agent arguments to config overrides.

    ['--config.model.scorer=dot', '--config.model.hidden_size=64'] ->
    {'model.scorer': 'dot', 'model.hidden_size': 64}. With a spec, each value is the spec's own
    value whose str() matches (so '64' -> 64 and a string '1' stays '1'); a value the spec does
    not list raises ValueError. Without a spec, values are parsed as Python literals, else kept
    as strings.
    """
    allowed = _allowed_values(spec) if spec is not None else None
    overrides: dict[str, Any] = {}
    for arg in args:
        name, sep, text = arg.partition("=")
        if not (sep and name.startswith("--" + PREFIX) and len(name) > len("--" + PREFIX)):
            raise ValueError(f"W&B argument {arg!r} is not of the form --{PREFIX}KEY=VALUE.")
        key = name[len("--" + PREFIX):]
        if allowed is None:
            overrides[key] = sweep.parse_value(text)
            continue
        if key not in allowed:
            raise ValueError(f"W&B parameter {key!r} is not part of this sweep; valid: "
                             f"{', '.join(allowed)}")
        matches = [v for v in allowed[key] if str(v) == text or sweep.format_value(v) == text]
        if not matches:
            raise ValueError(f"W&B value {text!r} for {key!r} is not in the sweep; valid: "
                             f"{', '.join(map(str, allowed[key]))}")
        overrides[key] = matches[0]
    return overrides


def _allowed_values(spec: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Every override key of the sweep with the values it may take (both seed modes)."""
    seeds = spec["seeds"]
    allowed = {k: list(v) for k, v in spec["axes"].items()}
    allowed[sweep.SEED_KEY] = list(range(seeds["base"], seeds["base"] + seeds["count"]))
    allowed[sweep.NUM_SEEDS_KEY] = sorted({1, seeds["count"]})
    allowed.update({k: [v] for k, v in spec["fixed"].items()})
    return allowed


def trial_for_args(spec: Mapping[str, Any], args: Sequence[str],
                   seeds_mode: str = "vmap") -> sweep.Trial:
    """The one sweep trial whose overrides agree with every W&B argument (in any order).

    Normally the agent passes every parameter; arguments that leave out constants still map to
    the right trial as long as they pick exactly one.
    """
    overrides = overrides_from_wandb_args(args, spec)
    trials = sweep.expand(spec, seeds_mode)
    hits = [t for t in trials
            if all(k in t.overrides and t.overrides[k] == v for k, v in overrides.items())]
    if len(hits) == 1:
        return hits[0]
    expected = ", ".join(PREFIX + k for k in trials[0].overrides)
    raise ValueError(f"W&B arguments {list(args)} match {len(hits)} trials of sweep "
                     f"{spec['name']!r} (seeds_mode={seeds_mode}), not one; a run passes: {expected}")


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = sweep.argument_parser("python -m launch.wandb_sweep", __doc__,
                                   default_dir="runs/wandb/<sweep name>")
    parser.add_argument("--out", default=None, help="YAML file to write (default: print it)")
    parser.add_argument("--project", default=None, help="W&B project written into the YAML")
    parser.add_argument("--wandb_mode", default="online",
                        help=f"fixed --config.{WANDB_MODE_KEY} of every run ('' adds none)")
    parser.add_argument("--dry_run", action="store_true",
                        help="print the YAML and each run's command; write and run nothing")
    parser.add_argument("--run_trial", action="store_true",
                        help="(used by the YAML's command) run the trial named by the W&B args")
    parser.add_argument("--python", default=sys.executable, help="interpreter for --run_trial")
    parser.add_argument("--module", default=sweep.TRAIN_MODULE, help="module --run_trial runs")
    args, rest = parser.parse_known_args(argv)
    if rest and not args.run_trial:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args, rest


def run_trial(args: argparse.Namespace, wandb_argv: Sequence[str]) -> int:
    """Maps the agent's arguments to a trial and execs its training command (or prints it)."""
    spec, _ = load_route(args.sweep, args.seeds_mode, args.wandb_mode)
    trial = trial_for_args(spec, wandb_argv, args.seeds_mode)
    sweep_dir = args.sweep_dir or default_sweep_dir(spec)
    argv = sweep.command(trial, sweep_dir, python=args.python, module=args.module)
    if args.dry_run:
        print(shlex.join(argv))
        return 0
    os.makedirs(sweep_dir, exist_ok=True)
    print(f"W&B run -> trial {trial.name}: {shlex.join(argv)}", flush=True)
    os.execv(argv[0], argv)  # The W&B run's environment (WANDB_RUN_ID, ...) is inherited.
    return 0  # Not reached.


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = parse_args(argv)
    if args.run_trial:
        return run_trial(args, rest)
    spec, trials = load_route(args.sweep, args.seeds_mode, args.wandb_mode)
    sweep_dir = args.sweep_dir or default_sweep_dir(spec)
    text = to_yaml(sweep_config(spec, args.sweep, sweep_dir, args.seeds_mode, args.project,
                                args.wandb_mode))
    if args.dry_run:
        print(text)
        for t in trials:
            print(f"# {t.index}: {' '.join(wandb_args(t))}\n"
                  f"#   -> {shlex.join(sweep.command(t, sweep_dir))}")
        return 0
    if args.out is None:
        print(text, end="")
        return 0
    with open(args.out, "w") as f:
        f.write(text)
    print(f"wrote {args.out}: {len(trials)} runs (grid). Next, from the repository root:\n"
          f"  wandb sweep {args.out}\n  wandb agent ENTITY/PROJECT/SWEEP_ID", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sweep.run_cli(main)
