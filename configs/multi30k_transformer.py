r"""Multi30k German->English with the Transformer (issue 25): configs/multi30k.py's data, new model.

Get the raw files as for configs/multi30k.py (GitHub multi30k/dataset, data/task1/raw/) and run:

    python -m attn_jax.train --config=configs/multi30k_transformer.py \
        --workdir=runs/m30k_transformer --config.data.raw_dir=../shared/data/multi30k

The data, vocabularies, batches and evaluation are configs/multi30k.py's, read from that file
(not copied): sentencepiece BPE per language, token batches, length buckets, beam 5 with
sacreBLEU cased on detokenized test_2016_flickr. The model is a pre-LN Transformer, 2 encoder
and 2 decoder layers, d_model 256, 4 heads, feed-forward 512, the target embedding tied to the
output layer, scaled dot-product cross-attention (`model.scorer` takes any of
attn_jax.model.transformer.CROSS_SCORERS), dropout 0.1 and label smoothing 0.1, 7 epochs with
warmup and cosine decay (Vaswani's inverse-square-root schedule: --config.train.schedule=rsqrt).

Target: >= 38 test_2016_flickr BLEU (beam 5, sacreBLEU cased), with the whole command within
30 minutes on a 2-core CPU. The size is fitted to that budget: one epoch of a 3 + 3 layer model
took 260 s of steps (experiments/benchmark/README.md), so 2 + 2 layers (about three quarters of
its matmul work per token) for 7 epochs, validated twice, leave the final evaluation room.
Measured BLEU, wall time and the comparison with the RNN at equal wall time:
experiments/multi30k/README.md.
Smoke run (a minute): --config=configs/multi30k_transformer.py:tiny.
"""

import os

from attn_jax.run import config as config_lib

# Sibling configs loaded by path, so that this file loads from any directory.
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.join(HERE, "default.py")
MULTI30K = os.path.join(HERE, "multi30k.py")


def get_config(arg: str | None = None):
    """arg: None, or 'tiny' for a one-minute smoke run on the same data."""
    if arg not in (None, "tiny"):
        raise ValueError(f"configs/multi30k_transformer.py: unknown argument {arg!r}; "
                         "valid: 'tiny'.")
    tiny = arg == "tiny"
    config = config_lib.load_config_file(DEFAULT)  # Every field, at its default.
    m30k = config_lib.load_config_file(MULTI30K + (":tiny" if tiny else ""))
    # Multi30k de->en as configs/multi30k.py reads it: raw files, 5,000-piece BPE per language,
    # buckets 16/24/32/48/80, batches of about 2,048 padded target tokens (tiny: 16 sentences).
    config.data = m30k.data
    # Its evaluation: beam 5 (length penalty 0.6), periodic validation on 500 valid sentences,
    # the final one on all of valid and test, beam and greedy (tiny: beam 2, 64 sentences).
    config.eval = m30k.eval

    model = config.model
    model.arch = "transformer"  # attn_jax/model/transformer.py.
    model.scorer = "scaled_dot"  # Cross-attention score (Vaswani's): any CROSS_SCORERS key.
    model.hidden_size = 256  # d_model (model.d_model = 0 derives it); results.json reports it.
    model.layers = 2  # Encoder layers, and as many decoder layers (3 + 3 does not fit 30 min).
    model.num_heads = 4  # Heads of every attention: d_head 64.
    model.d_ff = 512  # Feed-forward inner size (2 x d_model: the cheaper half of Vaswani's 4x).
    model.norm = "pre"  # LayerNorm inside each residual branch: stable at a high peak rate.
    model.tie_embeddings = True  # Output layer = target embedding transposed: fewer parameters.
    model.dropout = 0.1  # On embeddings and every sub-layer's output (a short run: light).

    train = config.train
    train.num_epochs = 7.0  # As the RNN's 7 (5 epochs reached 37.29: experiments/multi30k).
    train.schedule = "cosine"  # Warmup, then cosine decay: a short run ends at a low rate.
    train.learning_rate = 2e-3  # The peak, reached at the end of the warmup.
    train.warmup_steps = 250  # About one epoch of token batches.
    train.label_smoothing = 0.1  # As configs/multi30k.py's RNN.
    train.log_every = 100  # Steps between training-metric rows.
    # One validation halfway and one at the end (a beam-5 pass over 500 sentences costs about a
    # minute here): the 30-minute budget goes to training.
    train.eval_every = 1100

    if tiny:
        model.hidden_size, model.d_ff, model.layers = 32, 64, 1
        train.num_epochs, train.num_steps, train.warmup_steps = 0.0, 20, 5
        train.log_every, train.eval_every = 10, 10
        config.logging.wandb, config.logging.progress_bar = "disabled", False
    return config
