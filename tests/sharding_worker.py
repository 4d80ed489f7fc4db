"""Tiny training runs in a process of its own (tests/test_sharding.py starts it with the devices,
processes and environment under test) and prints what they logged as one JSON line.

    python tests/sharding_worker.py '{"tfds_dir": ..., "runs": {name: {"workdir": ...,
        "config": "configs/transformer.py:tiny", "overrides": {"mesh.data": 4, ...},
        "sigterm_at": 8}}}'    (config: configs/default.py:tiny if absent)
"""

import faulthandler
import json
import os
import signal
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from attn_jax import train  # noqa: E402
from attn_jax.run import sharding, steps, workdir  # noqa: E402
from attn_jax.run.config import load_config_file  # noqa: E402


def _sigterm_at(call: int):
    """Makes the training step send this process SIGTERM during its `call`-th call."""
    make = steps.make_train_step

    def patched(*args, **kwargs):
        step = make(*args, **kwargs)
        calls = [0]

        def counted(state, batch):
            calls[0] += 1
            if calls[0] == call:
                os.kill(os.getpid(), signal.SIGTERM)
            return step(state, batch)

        return counted

    steps.make_train_step = patched


def main() -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # A hang's stacks, on request.
    spec = json.loads(sys.argv[1])
    sharding.initialize_distributed()
    out = {}
    for name, run in spec["runs"].items():
        config = load_config_file(os.path.join(REPO, run.get("config", "configs/default.py:tiny")))
        config.data.tfds_dir = spec["tfds_dir"]
        for key, value in run.get("overrides", {}).items():
            section, field = key.split(".")
            config[section][field] = value
        make_train_step = steps.make_train_step
        if "sigterm_at" in run:
            _sigterm_at(run["sigterm_at"])
        try:
            results = train.train_and_evaluate(config, run["workdir"])
            out[name] = {split: results[split] for split in ("test", "valid", "seeds")}
        except workdir.Preempted as e:
            out[name] = {"preempted_at": e.step}
        finally:
            steps.make_train_step = make_train_step  # The next run trains to its end.
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
