r"""Multi30k German->English (WMT16 multimodal task 1): an RNN with attention on real data.

Get the raw files (train/val/test_2016_flickr .de/.en .gz) from the GitHub repository
multi30k/dataset, folder data/task1/raw/, and point data.raw_dir at them:

    python -m attn_jax.train --config=configs/multi30k.py --workdir=runs/multi30k \
        --config.data.raw_dir=../shared/data/multi30k

Expected on a 2-core CPU (no GPU): about 40 test_2016_flickr BLEU (beam 5, sacreBLEU cased) in
under 20 minutes for the whole command (7 epochs of token batches, additive scorer). Measured
figures, the commands that produced them and the other scorers: experiments/multi30k/README.md.
Smoke run (a minute): --config=configs/multi30k.py:tiny.
"""

import os

from attn_jax.run import config as config_lib

# The sibling configs/default.py, loaded by path so that this file loads from any directory.
DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.py")


def get_config(arg: str | None = None):
    """arg: None, or 'tiny' for a one-minute smoke run on the same data."""
    config = config_lib.load_config_file(DEFAULT)
    data = config.data
    data.name = "multi30k"
    data.raw_dir = "../shared/data/multi30k"  # Folder with the raw .gz files (see docstring).
    data.source_lang, data.target_lang = "de", "en"
    data.vocab = "sentencepiece"
    data.vocab_size = 5000  # Per language: the output layer's cost grows with the target's.
    data.spm_model_type = "bpe"
    data.joint_vocab = False
    data.buckets = (16, 24, 32, 48, 80)
    data.max_len = 80
    data.batch_size = 64  # Only used by 'tiny' (batch_tokens = 0 there).
    data.batch_tokens = 2048  # About 2,048 padded target tokens per batch (128 short sentences).

    model = config.model
    model.scorer = "additive"
    model.flow = "luong"
    model.hidden_size = 256
    model.embed_size = 256
    model.dropout = 0.3
    model.bidirectional = True  # 2 x 128 per direction: annotations of size 256.

    train = config.train
    train.num_epochs = 7.0
    train.learning_rate = 3e-3
    train.warmup_steps = 300
    train.label_smoothing = 0.1
    train.log_every = 100

    config.eval.beam_size = 5
    config.eval.valid_subset = 500  # Periodic validation on 500 sentences; the final one on all.
    if arg == "tiny":
        data.batch_size, data.batch_tokens = 16, 0
        model.hidden_size, model.embed_size = 32, 32
        train.num_epochs, train.num_steps, train.warmup_steps = 0.0, 20, 5
        train.log_every, train.eval_every = 10, 10
        config.eval.valid_subset = 64
        config.eval.beam_size = 2
        config.logging.wandb, config.logging.progress_bar = "disabled", False
    elif arg:
        raise ValueError(f"configs/multi30k.py: unknown argument {arg!r}; valid: 'tiny'.")
    return config
