r"""Default run: additive (Bahdanau) attention on the embedded Hindi->English data.

Command (fresh machine, after `pip install -e .`):

    python -m attn_jax.train --config=configs/default.py --workdir=runs/demo

Expected on a 2-core CPU: minutes (the measured time is in experiments/default_run/README.md);
test BLEU >= 98, AER about 0.10; the running example "mai ghar ja raha hoon" decodes to
"i am going home".

Variants:
    --config.model.scorer=dot --config.model.hidden_size=64     any scorer/size (overrides)
    --config=configs/default.py:tiny                            a ~20 s smoke run (tests use it)

Every field is commented. Derived values (the step count from epochs, evaluation intervals,
model sizes from hidden_size) are computed after command-line overrides, by
`attn_jax.run.config.derive`, never here.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """arg: None, or 'tiny' for a seconds-long smoke run."""
    config = ml_collections.ConfigDict()

    config.data = data = ml_collections.ConfigDict()
    # 'synthetic_hi_en' | 'multi30k' | 'tfds:<catalog name>' (text); 'scenes' | 'images:<folder>'
    # (images and their captions: model.encoder='cnn'; attn_jax/data/scenes.py).
    data.name = "synthetic_hi_en"
    data.tfds_dir = ""  # Where TFDS prepares array_record data; '' = TFDS default (~/tensorflow_datasets).
    data.raw_dir = ""  # Raw corpus files (multi30k: train/val/test_2016_flickr .de/.en .gz).
    data.source_lang = "hi"  # Source language code (multi30k / catalog datasets).
    data.target_lang = "en"  # Target language code.
    data.train_size = 50_000  # Synthetic: training pairs.
    data.valid_size = 1_000  # Synthetic: validation pairs.
    data.test_size = 2_000  # Synthetic: test pairs (stratified over source-length buckets).
    data.seed = 0  # Synthetic generation seed and the seed of the bucket schedule.
    data.vocab = "word"  # 'word' (whitespace tokens) | 'sentencepiece'.
    data.vocab_size = 8000  # Sentencepiece vocabulary size (ignored by 'word').
    data.spm_model_type = "bpe"  # Sentencepiece model type: 'bpe' | 'unigram'.
    data.joint_vocab = False  # Sentencepiece: one model for both languages.
    data.buckets = (16, 32, 48, 72)  # Padded lengths; a pair goes to the smallest that fits.
    data.batch_size = 64  # Sentences per training batch (when batch_tokens is 0).
    # > 0: token-based batching, about batch_tokens / L sentences per batch in the bucket of
    # length L (a multiple of 8), so short-sentence batches hold more sentences. 0: batch_size.
    data.batch_tokens = 0
    data.max_len = 72  # Longest pair kept in train (longer ones are filtered and counted).

    config.model = model = ml_collections.ConfigDict()
    # Model family, a key of attn_jax.model.arch.ARCHS: 'rnn' (the RNN encoder-decoder, both
    # decoder flows) | 'transformer' (attn_jax/model/transformer.py; configs/transformer.py).
    model.arch = "rnn"
    # Attention scorer, a key of attn_jax.model.attention.SCORERS:
    # none|additive|dot|general|scaled_dot|scaled_general|location|multihead|uniform.
    model.scorer = "additive"
    model.flow = "bahdanau"  # 'bahdanau' (query s_{t-1}) | 'luong' (query s_t, h~ = tanh(W[c;s])).
    # What the annotations h_j come from: 'rnn' (source tokens) | 'cnn' (images: a grid of cells,
    # attn_jax/model/image.py; the data must hold images). Both families: with arch='transformer'
    # the grid replaces the token embedding and its encoder layers run over the cells.
    model.encoder = "rnn"
    # Encoder 'cnn': the kernel (in cells, odd) of the first layer after the grid: 1 = each
    # annotation sees only its own cell's 14 pixels; 3 = also its 8 neighbours (30 pixels, centred).
    model.cell_kernel = 1
    # Encoder 'cnn' with cell_kernel > 1: attention scores per-cell keys (each cell's own pixels)
    # and the context reads the cell_kernel annotations (the object whole).
    model.local_keys = False
    # Encoder 'cnn': Transformer encoder layers (self-attention over the cells, model.num_heads
    # heads) after the per-cell layers, so each annotation sees the whole picture (counts need it);
    # with local_keys only the values get them. 0 = none.
    model.grid_layers = 0
    # Encoder 'cnn' (both families): LayerNorm over channels after each stride-2 convolution
    # (before its relu).
    model.image_norm = False
    # Encoder 'cnn' (both families): per-cell layers after the grid that also read a projection
    # of their input's mean over the grid (the whole picture), so a cell can tell how many
    # objects look like its own (counts). 0 = none; 1 = the first per-cell layer; n = and n - 1
    # more per-cell layers.
    model.global_pool = 0
    # Encoder 'cnn': layers of unnormalised (sigmoid) self-attention over the cells after the
    # per-cell layers: each cell reads a sum over the cells like it, not a mean, so it can count
    # them (attn_jax/model/image.py, CountLayer). 0 = none.
    model.count_layers = 0
    # Encoder 'cnn' (both families): channels of the first stride-2 convolution (the second has twice as many,
    # the third the annotation size). 0 = derived: the annotation size // 4.
    model.image_width = 0
    model.cell = "gru"  # 'gru' | 'lstm' (encoder and decoder).
    model.hidden_size = 128  # One knob: decoder, annotation, attention and output sizes.
    model.embed_size = 0  # 0 = derived: hidden_size // 2.
    model.encoder_hidden = 0  # Per direction; 0 = derived: hidden_size // 2 if bidirectional.
    model.decoder_hidden = 0  # 0 = derived: hidden_size.
    model.attention_size = 0  # Additive/multihead inner size; 0 = derived: hidden_size // 2.
    model.output_size = 0  # Deep-output / attentional-state size; 0 = derived: hidden_size.
    model.encoder_layers = 1  # Stacked encoder RNN layers.
    # Bidirectional encoder (annotations [forward; backward]). Off by default, as in the sweeps
    # and earlier runs (experiments/default_run/README.md, "Encoder direction", compares both).
    model.bidirectional = False
    model.num_heads = 4  # Heads of the multihead scorer (and of encoder 'cnn's grid_layers).
    model.input_feeding = True  # Luong flow: feed h~_{t-1} into the decoder RNN.
    model.dropout = 0.0  # Dropout on embeddings and before the output layer.
    model.dtype = "float32"  # Matmul dtype: 'float32' | 'bfloat16' (parameters, softmax, loss stay f32).
    # How attention over all target positions at once (Luong flow without input feeding) is
    # computed: 'xla' (plain; additive holds [B, T, S, A]) | 'chunked' (additive blockwise with an
    # online softmax, any backend; dot family via jax.nn.dot_product_attention) | 'pallas' (fused
    # additive kernel; GPU/TPU only). Values and gradients agree; README, "Attention kernels".
    model.attention_impl = "xla"
    # Transformer only (arch='transformer'; it also reads scorer (its cross-attention's score),
    # num_heads, dropout, attention_impl, dtype and, for images, encoder, image_norm, global_pool
    # and image_width). Setting these with arch='rnn' is an error.
    model.layers = 2  # Encoder layers, and as many decoder layers.
    model.d_model = 0  # Embedding / residual size; 0 = derived: hidden_size. num_heads divides it.
    model.d_ff = 0  # Feed-forward inner size; 0 = derived: 4 * d_model.
    model.norm = "pre"  # 'pre' (LayerNorm inside each residual) | 'post' (the paper's, after it).
    model.tie_embeddings = False  # Output projection = target embedding transposed (own bias).

    config.train = train = ml_collections.ConfigDict()
    train.seed = 0  # Base seed: parameter init and data order of replica 0.
    train.num_seeds = 1  # K independent replicas (seeds seed..seed+K-1), vmapped in one process.
    train.num_epochs = 3.0  # Training length in epochs, used when num_steps is 0.
    train.num_steps = 0  # Training steps; 0 = derived from num_epochs.
    train.learning_rate = 3e-3  # Peak Adam learning rate.
    train.warmup_steps = 100  # Linear warmup steps.
    # After warmup: 'cosine' (to end_lr_factor) | 'constant' | 'rsqrt' (Vaswani's inverse square
    # root: peak * sqrt(warmup_steps / step) after the warmup).
    train.schedule = "cosine"
    train.end_lr_factor = 0.05  # Cosine: final learning rate / peak.
    train.grad_clip = 1.0  # Global gradient-norm clip.
    train.label_smoothing = 0.0  # Label smoothing of the training loss.
    # Xu et al.'s doubly stochastic attention: adds lambda * sum_j (1 - sum_t alpha_tj)^2 per
    # sentence to the loss (summed like the token losses, over real target tokens t). 0 = off.
    train.attention_penalty = 0.0
    # Supervised attention (Chen et al. 2016, Garg et al. 2019): adds this weight times
    # KL(gold_t || alpha_t) per target token with gold links to the loss, gold_t being the
    # token's sure + possible links normalised to sum to 1 (the mean map of a Transformer's
    # layers and heads). Needs gold: the embedded data's, or train.align_gold. 0 = off.
    train.align_loss_weight = 0.0
    # Supervised attention: a possible-only gold link's weight in gold_t beside a sure link's 1,
    # before normalising (1 = sure and possible alike; below 1 the argmax of gold_t is a sure
    # link wherever the token has one; 0 = sure links only). In [0, 1].
    train.align_possible_weight = 1.0
    # A gold alignment file for the train split of data without embedded gold: one line per raw
    # train pair, 1-based 'i-j' sure / 'ipj' possible links, source word first (align's --gold
    # format). '' = the dataset's own gold.
    train.align_gold = ""
    train.log_every = 50  # Steps between training-metric rows.
    # Steps between validation evaluations (each also saves a checkpoint) and between checkpoints:
    # multiples of log_every, so a resumed run logs the same rows. 0 = derived: 4 evaluations per
    # run, and checkpoint_every = eval_every.
    train.eval_every = 0
    train.checkpoint_every = 0
    train.keep_checkpoints = 2  # Recent checkpoints kept (the best by valid BLEU is kept too).
    # Early stopping (the converged-comparison budget): stop once this many evaluations in a row
    # have not beaten the best mean valid BLEU by more than early_stop_min_delta BLEU points;
    # num_epochs / num_steps is then the cap. 0 = off (train to the end).
    train.early_stop_patience = 0
    train.early_stop_min_delta = 0.1  # BLEU points an evaluation must gain to count as progress.

    config.eval = ev = ml_collections.ConfigDict()
    ev.batch_size = 256  # Sentences per evaluation/decoding batch.
    ev.max_decode_extra = 10  # Decoding stops at source bucket length + this many tokens.
    ev.beam_size = 1  # 1 = greedy decoding; > 1 = beam search.
    ev.length_penalty = 0.6  # Beam search GNMT length penalty alpha (>= 0; 0 = none).
    ev.valid_subset = 500  # Valid sentences decoded at periodic evaluations (0 = all).
    ev.num_heatmaps = 4  # Test sentences drawn as heatmaps at the end (plus the running example).
    # Final valid/test metrics and heatmaps from the checkpoint with the best valid BLEU among
    # the periodic evaluations (True), or from the last parameters (False). With K seeds: the
    # best mean over seeds (one checkpoint for all; early stopping also follows the mean).
    ev.use_best = True
    # Alignments from attributions at every evaluation, beside attention's AER (data with gold):
    # comma-separated methods of attn_jax.eval.attribution ('saliency', 'grad_x_input',
    # 'integrated_gradients'); each costs backward passes per target token. '' = off.
    ev.attribution_methods = ""
    ev.ig_steps = 16  # Integrated gradients: points of the path integral (>= 1).

    # Devices (attn_jax/run/sharding.py): the global batch is fixed, so results do not depend on them.
    config.mesh = mesh = ml_collections.ConfigDict()
    mesh.data = -1  # Devices each batch's rows are split over; -1 = all not used by `seeds`.
    mesh.seeds = 1  # Devices the train.num_seeds replicas are split over (divides num_seeds).
    # CPU only: split the host into this many XLA devices (data parallelism over the cores: XLA
    # runs a small model's matmuls on one thread per device). 0 = JAX's default (one device).
    mesh.cpu_devices = 0

    config.logging = log = ml_collections.ConfigDict()
    log.wandb = "offline"  # 'offline' (default, no account) | 'online' | 'disabled'.
    log.project = "attn_jax"  # W&B project.
    log.entity = ""  # W&B entity ('' = your default).
    log.group = ""  # W&B group ('' = derived from the workdir name).
    log.progress_bar = True  # tqdm progress bar with loss and tokens/s.

    if arg == "tiny":  # A smoke run for tests: tiny data, tiny model, a few steps.
        data.train_size, data.valid_size, data.test_size = 400, 40, 50
        data.buckets = (24, 72)
        data.batch_size = 16
        model.hidden_size = 16
        train.num_steps = 12
        train.warmup_steps = 2
        train.log_every = 3
        train.eval_every = 6
        ev.valid_subset = 0
        ev.num_heatmaps = 1
        log.wandb = "disabled"
        log.progress_bar = False
    elif arg:
        raise ValueError(f"configs/default.py: unknown argument {arg!r}; valid: 'tiny'.")
    return config
