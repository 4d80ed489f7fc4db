"""The model wing: parameters and the functions of them.

Owns the attention scorers and their registry (`attention`), the memory-lean attention kernels
(`kernels`), linear layers and recurrent cells (`layers`), the fused recurrences with hand-written
backward passes (`recurrence`), the output layer and loss over real rows (`loss`, `rows`), and the
RNN encoder-decoder with its frozen `ModelConfig` (`rnn`).

Imports only the data wing's token ids (`attn_jax.data.tokens`).
"""
