"""Train-step time of configs/scenes.py variants, side by side in one process.

    python experiments/scenes/step_time.py base: w16:model.image_width=16 \
        count:model.count_layers=1 [--steps=40] [--reps=3] [--out=FILE.json]

Each argument is NAME:KEY=VALUE,... (config overrides on configs/scenes.py; nothing after the
colon: the config as committed). Every variant gets its own `benchmark.Trainer` (the model,
optimizer and compiled train step of a training run, one seed) and the same --steps real
training batches of the scenes (both length buckets, compiled before timing); the variants are
timed in turn, --reps rounds, so that a change in the machine's load hits all of them. Prints
and writes (--out) the mean milliseconds per blocked step of each round, the best round, and
its ratio to the first variant's, with the machine (`measure.machine_info`, load average at
start and end).
"""

from __future__ import annotations

import argparse
import json

from attn_jax import benchmark
from attn_jax.data import batches
from attn_jax.run import config as config_lib
from attn_jax.run import measure

CONFIG = "configs/scenes.py"


def _config(overrides: str):
    config = config_lib.load_config_file(CONFIG)
    current = config_lib.flatten(config)
    for item in filter(None, overrides.split(",")):
        key, _, text = item.partition("=")
        kind = type(current.get(key, ""))  # the field's own type (an unknown key: override says so)
        config_lib.override(config, key, text == "True" if kind is bool else kind(text))
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

    trainers, overrides_of, rounds = {}, {}, {}
    for spec in args.variants:
        name, _, overrides = spec.partition(":")
        config = _config(overrides)
        model_config = config_lib.validate(config)
        derived = config_lib.derive(
            config, src_vocab_size=data.src_vocab.size, tgt_vocab_size=data.tgt_vocab.size,
            steps_per_epoch=batches.steps_per_epoch(data, sizes), model=model_config)
        trainers[name] = benchmark.Trainer(derived.model, 1, derived.num_steps, config.train)
        overrides_of[name] = overrides
        for batch in timed[:8]:  # compiles every bucket's shape (and warms up)
            trainers[name].run(batch)
        rounds[name] = []
    for _ in range(args.reps):
        for name, trainer in trainers.items():
            seconds = sum(trainer.run(batch)[0] for batch in timed)
            rounds[name].append(1000 * seconds / len(timed))
    first = min(rounds[next(iter(trainers))])
    result = {"config": CONFIG, "steps": args.steps, "reps": args.reps,
              "variants": {name: {"overrides": overrides_of[name],
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
