"""attn_jax: attention in RNN encoder-decoders, in JAX/Flax."""
