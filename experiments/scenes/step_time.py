"""Train-step time of configs/scenes.py variants, side by side in one process.

    python experiments/scenes/step_time.py base: w16:model.image_width=16 \
        count:model.count_layers=1 [--steps=40] [--reps=3] [--out=FILE.json]

Each argument is NAME:KEY=VALUE,... (config overrides on configs/scenes.py; nothing after the
colon: the config as committed). Every variant gets its own model, optimizer and compiled step
(`steps.make_train_step`, one seed) and the same --steps real training batches of the scenes
(both length buckets, compiled before timing); the variants are timed in turn, --reps rounds,
so that a change in the machine's load hits all of them. Prints and writes (--out) the mean
milliseconds per step of each round, the best round, and its ratio to the first variant's, with
the machine (`measure.machine_info`, load average at start and end).
"""

from __future__ import annotations

import argparse
import json
import time

import jax

from attn_jax.data import batches
from attn_jax.model import arch
from attn_jax.run import config as config_lib
from attn_jax.run import measure, sharding, steps

CONFIG = "configs/scenes.py"


def _config(overrides: str):
    config = config_lib.load_config_file(CONFIG)
    current = config_lib.flatten(config)
    for item in filter(None, overrides.split(",")):
        key, _, text = item.partition("=")
        kind = type(current.get(key, ""))
        value = text == "True" if kind is bool else kind(text)
        config_lib.override(config, key, value)
    return config


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="NAME:KEY=VALUE,...")
    parser.add_argument("--steps", type=int, default=40, help="batches per timed round")
    parser.add_argument("--reps", type=int, default=3, help="timed rounds per variant")
    parser.add_argument("--workdir", default="/tmp/attn_jax_step_time", help="vocab folder")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    machine = measure.machine_info()
    base = config_lib.load_config_file(CONFIG)
    data = batches.load(base.data, args.workdir)
    sizes = batches.batch_sizes(base.data, data.buckets)
    stream = batches.train_batches(data, sizes, (0,), start_step=0)
    timed = [next(stream) for _ in range(args.steps)]

    runs = {}
    for spec in args.variants:
        name, _, overrides = spec.partition(":")
        config = _config(overrides)
        model_config = config_lib.validate(config)
        derived = config_lib.derive(
            config, src_vocab_size=data.src_vocab.size, tgt_vocab_size=data.tgt_vocab.size,
            steps_per_epoch=batches.steps_per_epoch(data, sizes), model=model_config)
        model = arch.build(derived.model)
        tx, _ = steps.make_optimizer(config.train, derived.num_steps)
        layout = sharding.make_layout(config.mesh, 1)
        state = layout.state(steps.init_state(model, tx, (0,), data.buckets[0]))
        step = steps.make_train_step(model, tx, config.train.label_smoothing, layout)
        for batch in timed[:8]:  # compiles every bucket's shape (and warms up)
            state, _ = step(state, layout.train_batch(batch))
        jax.block_until_ready(state)
        runs[name] = {"state": state, "step": step, "layout": layout, "overrides": overrides}

    rounds = {name: [] for name in runs}
    for _ in range(args.reps):
        for name, run in runs.items():
            start = time.perf_counter()
            for batch in timed:
                run["state"], _ = run["step"](run["state"], run["layout"].train_batch(batch))
            jax.block_until_ready(run["state"])
            rounds[name].append(1000 * (time.perf_counter() - start) / len(timed))
    first = min(rounds[next(iter(runs))])
    result = {"config": CONFIG, "steps": args.steps, "reps": args.reps,
              "variants": {name: {"overrides": runs[name]["overrides"],
                                  "ms_per_step": [round(t, 2) for t in ms],
                                  "best_ms_per_step": round(min(ms), 2),
                                  "ratio_to_first": round(min(ms) / first, 3)}
                           for name, ms in rounds.items()},
              "machine": {**machine, "load_average_end": measure.load_average()}}
    for name, v in result["variants"].items():
        print(f"{name:16s} {v['best_ms_per_step']:8.2f} ms/step (x{v['ratio_to_first']:.2f}) "
              f"rounds {v['ms_per_step']}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
