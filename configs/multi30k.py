r"""Multi30k German->English (WMT16 multimodal task 1): an RNN with attention on real data.

Get the raw files (train/val/test_2016_flickr .de/.en .gz) from the GitHub repository
multi30k/dataset, folder data/task1/raw/, and point data.raw_dir at them:

    python -m attn_jax.train --config=configs/multi30k.py --workdir=runs/multi30k \
        --config.data.raw_dir=../shared/data/multi30k

Measured on a 2-core CPU (no GPU), 2026-11-25, this exact command (additive, Luong flow, 12
epochs = 5,484 steps): 41 minutes for the whole command; test_2016_flickr BLEU 40.08 cased /
40.34 lowercased, chrF 59.50 with beam 5 (39.38 greedy); valid BLEU 41.06. Expect about 40 test
BLEU in about 40 minutes. `--config.model.scorer=dot`: 39.23 test BLEU (42 min);
`--config.model.scorer=general`: 36.15 (40 min). All figures, greedy vs beam and the commands:
experiments/multi30k/README.md.
Smoke run (a minute): --config=configs/multi30k.py:tiny.
"""

from configs import default


def get_config(arg: str | None = None):
    """arg: None, or 'tiny' for a one-minute smoke run on the same data."""
    config = default.get_config()
    data = config.data
    data.name = "multi30k"
    data.raw_dir = "../shared/data/multi30k"  # Folder with the raw .gz files (see docstring).
    data.source_lang, data.target_lang = "de", "en"
    data.vocab = "sentencepiece"
    data.vocab_size = 8000
    data.spm_model_type = "bpe"
    data.joint_vocab = True
    data.buckets = (16, 24, 32, 48, 80)
    data.max_len = 80
    data.batch_size = 64

    model = config.model
    model.scorer = "additive"
    model.flow = "luong"
    model.hidden_size = 256
    model.embed_size = 256
    model.dropout = 0.3

    train = config.train
    train.num_epochs = 12.0
    train.learning_rate = 2e-3
    train.warmup_steps = 500
    train.label_smoothing = 0.1
    train.log_every = 100

    config.eval.beam_size = 5
    config.eval.valid_subset = 0
    if arg == "tiny":
        data.batch_size = 16
        model.hidden_size, model.embed_size = 32, 32
        train.num_epochs, train.num_steps, train.warmup_steps = 0.0, 20, 5
        train.log_every, train.eval_every = 10, 10
        config.eval.valid_subset = 64
        config.eval.beam_size = 2
        config.logging.wandb, config.logging.progress_bar = "disabled", False
    elif arg:
        raise ValueError(f"configs/multi30k.py: unknown argument {arg!r}; valid: 'tiny'.")
    return config
