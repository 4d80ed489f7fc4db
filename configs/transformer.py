r"""The Transformer (Vaswani et al. 2017) on the embedded Hindi->English data.

    python -m attn_jax.train --config=configs/transformer.py --workdir=runs/transformer
    python -m attn_jax.align --workdir=runs/transformer --all_heads   # AER of every layer and head

The same data, vocabularies, train step, checkpoints, decoding and evaluation as the RNN of
configs/default.py; `model.arch='transformer'`: 2 encoder and 2 decoder layers, d_model 128,
4 heads, pre-LN, sinusoidal positions, scaled dot-product cross-attention (`model.scorer` takes
any cross-attention scorer: --config.model.scorer=additive is Bahdanau's score in every head),
no dropout, label smoothing 0.1, 6 epochs with warmup and cosine decay (Vaswani's
inverse-square-root schedule is --config.train.schedule=rsqrt). Expected: test BLEU >= 98 with
the running example right; measured figures, wall time and per-head AER:
experiments/transformer/README.md. Smoke run (seconds): --config=configs/transformer.py:tiny.
"""

import os

from attn_jax.run import config as config_lib

# The sibling configs/default.py, loaded by path so that this file loads from any directory.
DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.py")


def get_config(arg: str | None = None):
    """arg: None, or 'tiny' for a seconds-long smoke run."""
    config = config_lib.load_config_file(DEFAULT + (":tiny" if arg == "tiny" else ""))
    if arg not in (None, "tiny"):
        raise ValueError(f"configs/transformer.py: unknown argument {arg!r}; valid: 'tiny'.")
    model = config.model
    model.arch = "transformer"
    model.scorer = "scaled_dot"  # Vaswani's cross-attention score (any CROSS_SCORERS key).
    model.layers = 2  # Encoder layers, and as many decoder layers; d_model = hidden_size (128).
    model.num_heads = 4  # Heads of every attention (d_head 32).
    # No dropout: 50,000 pairs of one grammar do not overfit in 6 epochs, and dropout 0.1 slowed
    # learning (experiments/transformer/README.md, "First run").
    model.dropout = 0.0
    train = config.train
    train.num_epochs = 6.0  # Twice the RNN's 3: the Transformer learns the grammar more slowly.
    train.schedule = "cosine"  # Warmup, then cosine decay to end_lr_factor of the peak.
    train.learning_rate = 2e-3  # The peak, reached at the end of the warmup.
    train.warmup_steps = 400
    train.label_smoothing = 0.1
    train.eval_every = 400  # About every half epoch (each evaluation also checkpoints).
    train.checkpoint_every = 400
    if arg == "tiny":
        model.dropout = 0.1  # On in the smoke run, so that it goes through dropout's path too.
        train.warmup_steps = 2
        train.eval_every, train.checkpoint_every = 6, 6
    return config
