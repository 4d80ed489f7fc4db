"""attn_jax: attention in sequence-to-sequence models, in JAX/Flax.

The package has one wing per stage, and imports only run downward:

    data/   vocabularies, datasets (a registry), splits, length buckets, batches
    model/  scorers, kernels, layers, recurrences, the encoder-decoder, its loss
    eval/   decoding, metrics, evaluation passes, gold alignments, heatmaps
    run/    config, train/eval steps, mesh, checkpoints, tracking, the run's workdir

The entry points on top (`python -m attn_jax.train`, `.translate`, `.caption`, `.align`,
`.report`, `.benchmark`) import the wings; no wing imports them.
"""
