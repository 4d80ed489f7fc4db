"""How sharp each scorer's attention is, at initialisation and in trained runs: the evidence behind
the scorers that trail (README.md here, "Why `general` and `location` trail, and `scaled_dot` does not").

    python experiments/multi30k/score_scale.py --config=configs/multi30k.py \
        --workdir=/tmp/score_scale --raw_dir=../shared/data/multi30k \
        [--scorers=additive,dot,general,scaled_dot,multihead,location] [--runs=runs/m30k_*]

For each scorer, a model of the config is initialised (seed 0) and its teacher-forced attention
on the first --batches valid batches is read (`steps.make_eval_step`'s score program, the one
evaluation uses); for each run directory in --runs, the same with its best checkpoint. Printed
per row:

  entropy   mean over real target tokens of H(α_t) / log(source length): 1 = uniform, 0 = one-hot
            (`attn_jax.eval.metrics.attention_entropy`, the `attention_entropy` of the valid rows);
  score sd  the standard deviation of the scores e_tj over a row's real source positions, mean
            over target tokens. Read from α itself: log α_tj = e_tj - logsumexp_j e_tj, so the
            spread of log α along a row is the spread of the scores;
  max α     mean over target tokens of the largest weight.

--workdir holds the vocabularies (built on the training split the first time, as a run's are);
pass a run's own workdir to reuse its vocabularies.
"""

from __future__ import annotations

import glob
import json
import os
import sys

import jax
import numpy as np
from absl import app, flags

from attn_jax.data import batches
from attn_jax.data.tokens import PAD
from attn_jax.eval import metrics
from attn_jax.model import arch
from attn_jax.run import checkpoint, steps
from attn_jax.run import config as config_lib
from attn_jax.run.config import load_config_file

flags.DEFINE_string("config", "configs/multi30k.py", "Config file (configs/*.py[:arg]).")
flags.DEFINE_string("workdir", "/tmp/score_scale", "Where the vocabularies are built or found.")
flags.DEFINE_string("raw_dir", "", "data.raw_dir (multi30k: the raw .gz files).")
flags.DEFINE_list("scorers", ["additive", "dot", "general", "scaled_dot", "multihead",
                              "location"], "Scorers to initialise.")
flags.DEFINE_list("runs", [], "Finished run directories (globs) to read with their best checkpoint.")
flags.DEFINE_integer("batches", 4, "Valid batches (of eval.batch_size) to read.")
FLAGS = flags.FLAGS


def sharpness(data, score, params, num_batches: int) -> dict[str, float]:
    """entropy, score sd and max α (module docstring) of replica 0 over the first valid batches."""
    entropy = spread = peak = tokens = 0.0
    for i, batch in enumerate(batches.eval_batches(data, "valid", 256)):
        if i == num_batches:
            break
        att = np.asarray(jax.device_get(score(params, batch))["forced_attention"][0], np.float64)
        src_mask = batch["src"] != PAD  # [B, S]
        tgt_mask = (batch["tgt_out"] != PAD) & src_mask.any(-1, keepdims=True)  # [B, T]
        entropy += float(metrics.attention_entropy(att[None], src_mask.sum(-1), tgt_mask)[0])
        log_att = np.log(np.maximum(att, 1e-30))
        real = np.broadcast_to(src_mask[:, None, :], att.shape)
        n = np.maximum(real.sum(-1), 1)
        mean = np.where(real, log_att, 0).sum(-1) / n
        sd = np.sqrt(np.where(real, (log_att - mean[..., None]) ** 2, 0).sum(-1) / n)
        spread += float((sd * tgt_mask).sum())
        peak += float((att.max(-1) * tgt_mask).sum())
        tokens += float(tgt_mask.sum())
    return {"entropy": entropy / tokens, "score_sd": spread / tokens, "max_alpha": peak / tokens}


def _model(config, data):
    derived = config_lib.derive(config, src_vocab_size=data.src_vocab.size,
                                tgt_vocab_size=data.tgt_vocab.size, steps_per_epoch=1)
    model = arch.build(derived.model)
    tx, _ = steps.make_optimizer(config.train, derived.num_steps)
    return model, tx, derived


def main(argv):
    del argv
    config = load_config_file(FLAGS.config)
    if FLAGS.raw_dir:
        config.data.raw_dir = FLAGS.raw_dir
    data = batches.load(config.data, FLAGS.workdir)
    print("| model | step | entropy | score sd | max α |")
    print("|---|---|---|---|---|")
    for scorer in FLAGS.scorers:
        config.model.scorer = scorer
        model, tx, derived = _model(config, data)
        state = steps.init_state(model, tx, derived.seeds, data.buckets[0])
        score = steps.make_eval_step(model, config.eval.max_decode_extra).score
        s = sharpness(data, score, state.params, FLAGS.batches)
        print(f"| {scorer} (init) | 0 | {s['entropy']:.3f} | {s['score_sd']:.2f} | "
              f"{s['max_alpha']:.3f} |", flush=True)
    for workdir in sorted(w for pattern in FLAGS.runs for w in glob.glob(pattern)):
        with open(os.path.join(workdir, "config.json")) as f:
            run_config = config_lib.from_saved(json.load(f))
        run_data = batches.load(run_config.data, workdir)  # The run's own vocabularies.
        model, tx, derived = _model(run_config, run_data)
        like = steps.init_state(model, tx, derived.seeds, data.buckets[0])
        ckpts = checkpoint.Checkpoints(workdir, run_config.train.keep_checkpoints)
        params, step = ckpts.restore(like, best=True).params, ckpts.best.best_step()
        ckpts.close()
        score = steps.make_eval_step(model, run_config.eval.max_decode_extra).score
        s = sharpness(run_data, score, params, FLAGS.batches)
        print(f"| {os.path.basename(workdir.rstrip('/'))} | {step} | {s['entropy']:.3f} | "
              f"{s['score_sd']:.2f} | {s['max_alpha']:.3f} |", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    app.run(main)
