"""The model wing: parameters and the functions of them.

Owns the attention scorers and their registry (`attention`), the memory-lean attention kernels
(`kernels`), linear layers and recurrent cells (`layers`), the fused recurrences with hand-written
backward passes (`recurrence`), the output layer and loss over real rows (`loss`, `rows`), the
image encoder that turns a picture into a grid of annotations (`image`), the RNN encoder-decoder
with its frozen `ModelConfig` (`rnn`), the Transformer (`transformer`) and the registry of model
families (`arch`).

Imports only the data wing's token ids (`attn_jax.data.tokens`).
"""
