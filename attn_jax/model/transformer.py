"""The Transformer encoder-decoder (Vaswani et al. 2017) as a drop-in for `rnn.Seq2Seq`.

Notation: d = d_model, H = num_heads, d_h = d / H, L = layers (encoder and decoder each).

    encoder:  x = √d E_src[src] + PE(j);  L × [self-attention (padding masked); feed-forward]
    decoder:  y = √d E_tgt[tgt_in] + PE(t); L × [causal self-attention; cross-attention; FF]
    P(y_t) = softmax(y_t W_o + b_o)         (W_o = E_tgtᵀ with tied embeddings)

Images (`model.encoder='cnn'`, image_size > 0): the source embedding is the RNN's image encoder
(attn_jax/model/image.py: the CNN's grid of S cells with learned positions, `image_norm`,
`global_pool` and `image_width` as there), then the same encoder stack over the cells (no
padding); the decoder is unchanged, and its cross-attention maps are heatmaps over the grid.

Each sub-layer is residual: pre-LN (default) x + drop(f(LN(x))), with a final LayerNorm after
each stack; post-LN (the paper's) LN(x + drop(f(x))). PE is sinusoidal (sin at even, cos at odd
features), computed for any position, so nothing limits the sentence length.

Self-attention is scaled dot-product through `jax.nn.dot_product_attention`. The
cross-attention's score is the registry's (`attention.SCORERS[scorer].score_fn`, the function the
RNN scorers and their fused recurrences share), applied per head over d_h:

    q_h = (x W_q + b_q)_h,  k_hj = (m_j W_k)_h,  v_hj = (m_j W_v + b_v)_h   (m: encoder output)
    scaled_dot      e = q_h·k_hj / √d_h          dot             e = q_h·k_hj
    general         e = q_h·(k_hj G_h)           scaled_general  e = q_h·(k_hj G_h) / √d_h
    additive        e = a_hᵀ tanh(q_h + k_hj)    (Bahdanau per head: W_q, W_k play W and U)
    α_h = masked softmax_j e (exactly 0 at source padding),  out = [Σ_j α_hj v_hj]_h W_o + b_o

so "additive cross-attention" is one flag (`model.scorer`). The keys (with G_h for general) and
values of every decoder layer are computed once per sentence (`encode`), as `Scorer.prepare`
does for the RNN. Over all target positions at once the dot family's context goes through
`jax.nn.dot_product_attention`, additive through `attention_impl` (`xla`: the score function
vmapped over T; `chunked` / `pallas`: `attn_jax.model.kernels`, one head at a time, the weights
from the blockwise `kernels.additive_scores`, dead code in a step that ignores them).

Two ways through the same parameters, as for the RNN:
* step by step: `encode` (encoder output, each decoder layer's cross-attention keys/values, and an
  empty self-attention cache), then `decode_step` once per target token. The carry holds, per
  decoder layer, key/value buffers [B, max_len, H, d_h] of fixed size, the real-token mask
  [B, max_len] and the position [B]; a step writes position t (`lax.dynamic_update_slice`) and
  attends over the buffer, so decoding never re-encodes and every step has the same shapes. Every
  carry and memory leaf has the batch axis first: beam search tiles and reorders them as it does
  the RNN's.
* teacher forced: `__call__` (logits), `loss` (the output head over real tokens only,
  `attn_jax.model.loss`, with label smoothing) and `token_nll`, every position at once.

Attention returned: `decode_step` -> [B, L, H, S] (cross-attention of every decoder layer and
head); the teacher-forced methods -> {"attention": [B, T, S]} (the mean over layers and heads:
what the RNN's AER, entropy and heatmaps read) and, with `all_heads=True`, also
{"heads": [B, L, H, T, S]}. `mean_attention` turns a per-head map into the mean one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from attn_jax.data.tokens import PAD
from attn_jax.model import attention as attn_lib
from attn_jax.model import image as image_lib
from attn_jax.model import kernels
from attn_jax.model import loss as loss_lib
from attn_jax.model import rows as rows_lib
from attn_jax.model.layers import Linear, matmul

DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}
NORMS = ("pre", "post")


class Cross(NamedTuple):
    """How the cross-attention uses a registry scorer: a learned G_h per head (bilinear), the
    1/√d_h scale, and Bahdanau's form (its own vector a_h per head; no dot-product context)."""

    bilinear: bool = False
    scaled: bool = False
    additive: bool = False


# The registry scorers the cross-attention takes.
CROSS_SCORERS = {"scaled_dot": Cross(scaled=True), "additive": Cross(additive=True), "dot": Cross(),
                 "general": Cross(bilinear=True), "scaled_general": Cross(bilinear=True, scaled=True)}
_REFUSED = {
    "none": "the Transformer's decoder sees the source only through cross-attention",
    "location": "it scores fixed source positions, not keys",
    "multihead": "the cross-attention is multi-head already (model.num_heads heads of "
                 "scaled_dot: set model.scorer=scaled_dot for Vaswani's)",
}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """The Transformer's frozen, typed configuration. Build it with `from_config`."""

    src_vocab_size: int
    tgt_vocab_size: int
    layers: int = 2  # Encoder layers, and decoder layers.
    num_heads: int = 4  # Heads of every attention (self and cross); must divide d_model.
    d_model: int = 128  # Embedding and residual-stream size.
    d_ff: int = 512  # Feed-forward inner size.
    dropout: float = 0.0  # On embeddings (+ positions) and every sub-layer's output.
    norm: str = "pre"  # "pre" (LN inside the residual, final LN per stack) | "post" (paper's).
    tie_embeddings: bool = False  # Output projection = target embeddingᵀ (plus its own bias).
    scorer: str = "scaled_dot"  # Cross-attention score: a key of CROSS_SCORERS.
    attention_impl: str = "xla"  # All-positions cross-attention for additive: attention.IMPLS.
    dtype: str = "float32"  # Matmul dtype: "float32" | "bfloat16" (params, LN, softmax stay f32).
    max_source_len: int = 72  # Largest data bucket (kept for the harness; no limit here).
    # Default self-attention cache of `encode`: source length + this many target positions
    # (the harness decodes at most src.shape[1] + eval.max_decode_extra tokens).
    max_decode_extra: int = 10
    # Images: "cnn" with image_size pixels per side (the sources are pictures [B, H, W, 3]); text:
    # "rnn" (the config's name for token sources) and 0.
    encoder: str = "rnn"
    image_size: int = 0
    image_norm: bool = False  # The image encoder's options (attn_jax/model/image.py).
    global_pool: int = 0
    image_width: int = 0

    @property
    def d_head(self) -> int:
        return self.d_model // self.num_heads

    @property
    def attention_heads(self) -> tuple[int, int]:
        """(layers, heads) of the cross-attention maps: axes 1, 2 of decode_step's attention."""
        return self.layers, self.num_heads

    @property
    def compute_dtype(self) -> Any:
        return DTYPES[self.dtype]

    @property
    def attention(self) -> attn_lib.AttentionConfig:
        """The per-head config the registry's score function is called with."""
        d = self.d_head
        return attn_lib.AttentionConfig(scorer=self.scorer, query_size=d, key_size=d,
                                        attention_size=d, num_heads=1,
                                        max_source_len=self.max_source_len,
                                        dtype=self.compute_dtype, impl=self.attention_impl)

    def validate(self) -> TransformerConfig:
        """Raises a one-line ValueError naming the fix; cheap, call it before compiling."""
        if self.scorer not in CROSS_SCORERS:
            if self.scorer in _REFUSED:
                raise ValueError(
                    f"model.scorer={self.scorer!r} cannot be the Transformer's cross-attention "
                    f"({_REFUSED[self.scorer]}); use one of {', '.join(CROSS_SCORERS)} "
                    "(--config.model.scorer=scaled_dot).")
            raise ValueError(
                f"Unknown attention scorer {self.scorer!r}; the Transformer's cross-attention "
                f"takes {', '.join(CROSS_SCORERS)} (--config.model.scorer=scaled_dot).")
        if self.norm not in NORMS:
            raise ValueError(f"Unknown model.norm {self.norm!r}; valid: {', '.join(NORMS)} "
                             "(--config.model.norm=pre).")
        if self.dtype not in DTYPES:
            raise ValueError(f"Unknown model dtype {self.dtype!r}; valid: {', '.join(DTYPES)} "
                             "(set --config.model.dtype=NAME).")
        if self.attention_impl not in attn_lib.IMPLS:
            raise ValueError(
                f"Unknown attention implementation {self.attention_impl!r}; valid: "
                f"{', '.join(attn_lib.IMPLS)} (set --config.model.attention_impl=NAME).")
        if self.layers <= 0:
            raise ValueError(f"model.layers must be > 0 for the Transformer, got {self.layers} "
                             "(--config.model.layers=2).")
        for field in ("src_vocab_size", "tgt_vocab_size", "num_heads", "d_model", "d_ff",
                      "max_source_len"):
            if getattr(self, field) <= 0:
                raise ValueError(f"model {field} must be > 0, got {getattr(self, field)}.")
        image_lib.check_source(self.encoder, self.image_size, "Transformer", {
            "image_norm": (self.image_norm, False), "global_pool": (self.global_pool, 0),
            "image_width": (self.image_width, 0)})
        if self.global_pool < 0 or self.image_width < 0:
            raise ValueError(f"model.global_pool and model.image_width must be >= 0, got "
                             f"{self.global_pool} and {self.image_width}.")
        if self.max_decode_extra < 0:
            raise ValueError(f"max_decode_extra must be >= 0, got {self.max_decode_extra}.")
        if self.d_model % self.num_heads:
            divisors = [h for h in range(1, min(self.d_model, 16) + 1) if self.d_model % h == 0]
            raise ValueError(
                f"model.num_heads={self.num_heads} does not divide model.d_model={self.d_model}; "
                f"set --config.model.num_heads to a divisor ({', '.join(map(str, divisors))}) "
                "or change model.d_model.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model dropout must be in [0, 1), got {self.dropout}.")
        return self

    @classmethod
    def from_config(cls, model: Any, *, src_vocab_size: int, tgt_vocab_size: int,
                    max_source_len: int, max_decode_extra: int = 10,
                    image_size: int = 0) -> TransformerConfig:
        """From the `config.model` ConfigDict (configs/default.py comments every field).
        d_model = 0: hidden_size (the RNN's one knob); d_ff = 0: 4 · d_model. image_size > 0:
        the sources are pictures of that size (max_source_len becomes the grid's cells)."""
        d_model = model.d_model or model.hidden_size
        return cls(
            src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size,
            layers=model.layers, num_heads=model.num_heads,
            d_model=d_model, d_ff=model.d_ff or 4 * d_model,
            dropout=model.dropout, norm=model.norm, tie_embeddings=bool(model.tie_embeddings),
            scorer=model.scorer, attention_impl=model.attention_impl,
            dtype=model.dtype,
            max_source_len=image_lib.num_cells(image_size) if image_size > 0 else max_source_len,
            max_decode_extra=max_decode_extra, encoder=model.encoder, image_size=image_size,
            image_norm=model.image_norm, global_pool=model.global_pool,
            image_width=model.image_width).validate()


# ------------------------------------------------------------------------- pure attention


def sinusoid(positions: jax.Array, d: int) -> jax.Array:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...): positions [...] -> [..., d]."""
    half = (d + 1) // 2
    freq = jnp.exp(-math.log(10000.0) * (2.0 * jnp.arange(half, dtype=jnp.float32) / d))
    angle = positions.astype(jnp.float32)[..., None] * freq  # [..., half]
    pe = jnp.stack([jnp.sin(angle), jnp.cos(angle)], -1)  # [..., half, 2]
    return pe.reshape(*positions.shape, 2 * half)[..., :d]


def dot_weights(q: jax.Array, k: jax.Array, mask: jax.Array, scale: float) -> jax.Array:
    """Softmax weights of scaled dot-product attention: q [B, T, H, d], k [B, S, H, d], mask
    broadcastable to [B, T, S] (True: may attend) -> [B, H, T, S], exactly 0 where masked; a row
    with nothing to attend to is all 0."""
    scores = jnp.einsum("bthd,bshd->bhts", q, k) * scale
    return attn_lib.masked_softmax(scores, mask[:, None])


def dot_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array,
                  scale: float) -> jax.Array:
    """Σ_j α_tj v_j per head through `jax.nn.dot_product_attention`: q [B, T, H, d], k, v
    [B, S, H, d], mask [B, T, S] or [B, 1, S] (True: may attend) -> [B, T, H, d]. The weights
    are `dot_weights`' (0 where masked); a row with nothing to attend to gives 0, not the mean."""
    dtype = jnp.result_type(q, k, v)
    out = jax.nn.dot_product_attention(q.astype(dtype), k.astype(dtype), v.astype(dtype),
                                       mask=mask[:, None], scale=scale, implementation="xla")
    return jnp.where(mask.any(-1)[:, :, None, None], out, 0.0)


def mean_attention(attention: jax.Array) -> jax.Array:
    """Per-layer, per-head maps [B, L, H, ...] -> their mean [B, ...] (what AER and heatmaps of
    the average read)."""
    return attention.mean(axis=(1, 2))


def _write(buffer: jax.Array, x: jax.Array, pos: jax.Array) -> jax.Array:
    """buffer [B, M, ...] with row b's position pos[b] set to x[b] ([B, ...])."""
    def one(buf, row, p):
        return jax.lax.dynamic_update_slice_in_dim(buf, row[None].astype(buf.dtype), p, 0)
    return jax.vmap(one)(buffer, x, pos)


# ----------------------------------------------------------------------------------- layers


class CrossAttention(nn.Module):
    """Multi-head attention of decoder states over the encoder output with the registry's score
    per head (module docstring)."""

    config: TransformerConfig

    def setup(self):
        c = self.config
        d, h, dh, dtype = c.d_model, c.num_heads, c.d_head, c.compute_dtype
        self.query = Linear(d, d, dtype=dtype, name="query")
        # No key bias: it would add q·b to every score of a row, which the softmax ignores.
        self.key = Linear(d, d, use_bias=False, dtype=dtype, name="key")
        self.value = Linear(d, d, dtype=dtype, name="value")
        self.out = Linear(d, d, dtype=dtype, name="out")
        self.cross = cross = CROSS_SCORERS[c.scorer]
        self.g = (self.param("g", nn.initializers.lecun_normal(batch_axis=(0,)), (h, dh, dh))
                  if cross.bilinear else None)
        self.a = (self.param("a", nn.initializers.variance_scaling(
            1.0, "fan_in", "truncated_normal", in_axis=-1, out_axis=-2), (h, dh))
                  if cross.additive else None)

    def _split(self, x: jax.Array) -> jax.Array:
        return x.reshape(*x.shape[:-1], self.config.num_heads, self.config.d_head)

    def prepare(self, memory: jax.Array, mask: jax.Array) -> attn_lib.Memory:
        """Once per sentence: encoder output [B, S, d], mask [B, S] -> keys (G_h applied for
        general) and values, each [B, S, H, d_h]."""
        keys = self._split(self.key(memory))
        if self.g is not None:
            keys = jnp.einsum("bshk,hkq->bshq", keys, self.g)
        return attn_lib.Memory(keys=keys, values=self._split(self.value(memory)), mask=mask)

    def _score_params(self) -> dict[str, jax.Array]:
        return {} if self.a is None else {"v": self.a}  # Per head: [H, ...]

    def scores(self, q: jax.Array, memory: attn_lib.Memory) -> jax.Array:
        """The registry's score function per head: q [B, H, d_h] -> [B, H, S], or
        q [B, T, H, d_h] -> [B, T, H, S] (vmapped over T)."""
        config = self.config.attention
        score_fn = attn_lib.scorer_class(config.scorer).score_fn

        def head(q_h, k_h, p_h):  # [B, d_h], [B, S, d_h] -> [B, S]
            return score_fn(config, q_h, k_h, p_h)[:, 0]

        per_head = jax.vmap(head, in_axes=(1, 2, 0), out_axes=1)
        if q.ndim == 4:
            per_head = jax.vmap(per_head, in_axes=(1, None, None), out_axes=1)
        return per_head(q, memory.keys, self._score_params())

    def attention_weights(self, x: jax.Array, memory: attn_lib.Memory) -> jax.Array:
        """α of one query per row: x [B, d] -> [B, H, S] (0 at padding); interceptable, as
        `attention.Scorer.attention_weights` (the step's context follows the weights)."""
        q = self._split(self.query(x))  # [B, H, d_h]
        return attn_lib.masked_softmax(self.scores(q, memory), memory.mask[:, None, :])

    def step(self, x: jax.Array, memory: attn_lib.Memory) -> tuple[jax.Array, jax.Array]:
        """One query per row: x [B, d] -> (out [B, d], weights [B, H, S])."""
        weights = self.attention_weights(x, memory)
        return self.out(attn_lib.mix(weights, memory.values)), weights

    def __call__(self, x: jax.Array, memory: attn_lib.Memory) -> tuple[jax.Array, jax.Array]:
        """Every position: x [B, T, d] -> (out [B, T, d], weights [B, H, T, S]). The weights are
        computed apart from the context (a jitted step that ignores them drops them)."""
        c = self.config
        q = self._split(self.query(x))  # [B, T, H, d_h]
        weights = None
        if not self.cross.additive or c.attention_impl == "xla":
            weights = attn_lib.masked_softmax(self.scores(q, memory),
                                              memory.mask[:, None, None, :])
        if not self.cross.additive:
            scale = 1.0 / math.sqrt(c.d_head) if self.cross.scaled else 1.0
            context = dot_attention(q, memory.keys, memory.values, memory.mask[:, None, :], scale)
            context = context.reshape(*context.shape[:2], -1)
        elif c.attention_impl == "xla":
            context = attn_lib.mix(weights, memory.values)  # [B, T, H·d_h]
        else:
            fused = kernels.additive_context if c.attention_impl == "chunked" else \
                kernels.pallas_additive_context
            per_head = jax.vmap(lambda q_h, k_h, a_h, v_h: fused(q_h, k_h, a_h, v_h, memory.mask),
                                in_axes=(2, 2, 0, 2), out_axes=2)
            context = per_head(q, memory.keys, self.a, memory.values)  # [B, T, H, d_h]
            context = context.reshape(*context.shape[:2], -1)
            # The weights (heatmaps, AER) blockwise too, as the RNN's `attend_all` does.
            scores = jax.vmap(kernels.additive_scores, in_axes=(2, 2, 0), out_axes=2)(
                q, memory.keys, self.a)  # [B, T, H, S]
            weights = attn_lib.masked_softmax(scores, memory.mask[:, None, None, :])
        return self.out(context), jnp.swapaxes(weights, 1, 2)


class SelfAttention(nn.Module):
    """Scaled dot-product multi-head self-attention (q, k, v in one matmul)."""

    config: TransformerConfig

    def setup(self):
        c = self.config
        self.qkv = Linear(c.d_model, 3 * c.d_model, dtype=c.compute_dtype, name="qkv")
        self.out = Linear(c.d_model, c.d_model, dtype=c.compute_dtype, name="out")

    def _qkv(self, x):
        c = self.config
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        return [y.reshape(*y.shape[:-1], c.num_heads, c.d_head) for y in (q, k, v)]

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        """x [B, T, d], mask [B, T, T] or [B, 1, T] -> [B, T, d]."""
        q, k, v = self._qkv(x)
        out = dot_attention(q, k, v, mask, 1.0 / math.sqrt(self.config.d_head))
        return self.out(out.reshape(*x.shape[:-1], -1))

    def step(self, x: jax.Array, cache: dict[str, jax.Array], pos: jax.Array,
             mask: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """x [B, d] at positions pos [B]; cache {"k", "v"} [B, M, H, d_h]; mask [B, M] the
        positions it may attend to (pos included) -> (out [B, d], cache with pos written)."""
        q, k, v = self._qkv(x)  # [B, H, d_h]
        cache = {"k": _write(cache["k"], k, pos), "v": _write(cache["v"], v, pos)}
        out = dot_attention(q[:, None], cache["k"], cache["v"], mask[:, None],
                            1.0 / math.sqrt(self.config.d_head))  # [B, 1, H, d_h]
        return self.out(out.reshape(x.shape[0], -1)), cache


class FeedForward(nn.Module):
    config: TransformerConfig

    @nn.compact
    def __call__(self, x):
        c = self.config
        x = jax.nn.relu(Linear(c.d_model, c.d_ff, dtype=c.compute_dtype, name="wi")(x))
        return Linear(c.d_ff, c.d_model, dtype=c.compute_dtype, name="wo")(x)


class _Residual(nn.Module):
    """Base of the layers: the pre-LN / post-LN residual around a sub-layer."""

    config: TransformerConfig

    def sublayer(self, x, norm, fn, deterministic):
        """fn(x) -> (y, aux); returns (x with the residual sub-layer applied, aux)."""
        if self.config.norm == "pre":
            y, aux = fn(norm(x))
            return x + self.drop(y, deterministic=deterministic), aux
        y, aux = fn(x)
        return norm(x + self.drop(y, deterministic=deterministic)), aux


class EncoderLayer(_Residual):
    def setup(self):
        self.attention = SelfAttention(self.config, name="self_attention")
        self.ff = FeedForward(self.config, name="ff")
        self.norm_attention = nn.LayerNorm(name="norm_attention")
        self.norm_ff = nn.LayerNorm(name="norm_ff")
        self.drop = nn.Dropout(self.config.dropout)

    def __call__(self, x, mask, deterministic=True):
        x, _ = self.sublayer(x, self.norm_attention, lambda h: (self.attention(h, mask), None),
                             deterministic)
        x, _ = self.sublayer(x, self.norm_ff, lambda h: (self.ff(h), None), deterministic)
        return x


class DecoderLayer(_Residual):
    def setup(self):
        self.self_attention = SelfAttention(self.config, name="self_attention")
        self.cross_attention = CrossAttention(self.config, name="cross_attention")
        self.ff = FeedForward(self.config, name="ff")
        self.norm_self = nn.LayerNorm(name="norm_self")
        self.norm_cross = nn.LayerNorm(name="norm_cross")
        self.norm_ff = nn.LayerNorm(name="norm_ff")
        self.drop = nn.Dropout(self.config.dropout)

    def prepare(self, memory, mask):
        return self.cross_attention.prepare(memory, mask)

    def __call__(self, x, self_mask, memory, deterministic=True):
        """Every position: x [B, T, d] -> (x, cross-attention weights [B, H, T, S])."""
        x, _ = self.sublayer(x, self.norm_self,
                             lambda h: (self.self_attention(h, self_mask), None), deterministic)
        x, weights = self.sublayer(x, self.norm_cross,
                                   lambda h: self.cross_attention(h, memory), deterministic)
        x, _ = self.sublayer(x, self.norm_ff, lambda h: (self.ff(h), None), deterministic)
        return x, weights

    def step(self, x, cache, pos, self_mask, memory, deterministic=True):
        """One position: x [B, d] -> (x, cache, cross-attention weights [B, H, S])."""
        x, cache = self.sublayer(x, self.norm_self,
                                 lambda h: self.self_attention.step(h, cache, pos, self_mask),
                                 deterministic)
        x, weights = self.sublayer(x, self.norm_cross,
                                   lambda h: self.cross_attention.step(h, memory), deterministic)
        x, _ = self.sublayer(x, self.norm_ff, lambda h: (self.ff(h), None), deterministic)
        return x, cache, weights


# ------------------------------------------------------------------------------------ model


class Transformer(nn.Module):
    """Embeddings + sinusoidal positions -> encoder stack -> decoder stack -> output layer, with
    `rnn.Seq2Seq`'s methods (`encode`, `decode_step`, `__call__`, `loss`, `token_nll`)."""

    config: TransformerConfig

    def setup(self):
        c = self.config
        init = nn.initializers.normal(stddev=c.d_model ** -0.5)  # × √d at the input: unit scale
        if c.image_size:  # the grid's cells (with learned positions) are the source "tokens"
            self.image_encoder = image_lib.ImageEncoder(
                c.d_model, c.compute_dtype, norm=c.image_norm, global_pool=c.global_pool,
                width=c.image_width, name="image")
        else:
            self.src_embed = nn.Embed(c.src_vocab_size, c.d_model, embedding_init=init,
                                      name="src_embed")
        self.tgt_embed = nn.Embed(c.tgt_vocab_size, c.d_model, embedding_init=init,
                                  name="tgt_embed")
        self.encoder = [EncoderLayer(c, name=f"encoder_{i}") for i in range(c.layers)]
        self.decoder = [DecoderLayer(c, name=f"decoder_{i}") for i in range(c.layers)]
        if c.norm == "pre":
            self.encoder_norm = nn.LayerNorm(name="encoder_norm")
            self.decoder_norm = nn.LayerNorm(name="decoder_norm")
        if c.tie_embeddings:
            self.output_bias = self.param("output_bias", nn.initializers.zeros_init(),
                                          (c.tgt_vocab_size,))
        else:
            self.output = Linear(c.d_model, c.tgt_vocab_size, dtype=c.compute_dtype,
                                 name="output")
        self.dropout = nn.Dropout(c.dropout)

    # ---------------------------------------------------------------------------- shared

    def _embed(self, table: nn.Embed, ids, positions, deterministic):
        x = table(ids) * math.sqrt(self.config.d_model) + sinusoid(positions, self.config.d_model)
        return self.dropout(x, deterministic=deterministic)

    def _head(self) -> dict[str, Any]:
        """The output layer's parameters for `loss_lib` (no hidden layer)."""
        if self.config.tie_embeddings:
            return {"w2": self.tgt_embed.embedding.T, "b2": self.output_bias,
                    "w1": None, "b1": None}
        return {"w2": self.output.kernel, "b2": self.output.bias, "w1": None, "b1": None}

    def _logits(self, x):
        head = self._head()
        return matmul(x, head["w2"], self.config.compute_dtype) + head["b2"]

    def _final(self, x, norm: str):
        return getattr(self, norm)(x) if self.config.norm == "pre" else x

    def _encode(self, src, deterministic=True):
        """src [B, S] (images: [B, H, W, 3]) -> (encoder output [B, S, d], per decoder layer its
        cross-attention Memory)."""
        if self.config.image_size:  # every cell is real
            _, x = self.image_encoder(src)  # [B, S, d]
            mask = jnp.ones(x.shape[:2], bool)
            x = self.dropout(x, deterministic=deterministic)
        else:
            mask = src != PAD  # [B, S]
            x = self._embed(self.src_embed, src, jnp.arange(src.shape[1]), deterministic)
        for layer in self.encoder:
            x = layer(x, mask[:, None, :], deterministic)
        x = self._final(x, "encoder_norm")
        return x, tuple(layer.prepare(x, mask) for layer in self.decoder)

    # ---------------------------------------------------------------------- step by step

    def encode(self, src: jax.Array, deterministic: bool = True,
               extent: dict[str, jax.Array] | None = None, compact: bool = False,
               max_len: int | None = None):
        """src [B, S] (images: [B, H, W, 3]) -> (memory, carry). memory: per decoder layer an
        `attention.Memory` (keys and values [B, S, H, d_h], mask [B, S]); carry: the empty
        self-attention cache of max_len positions (default S + max_decode_extra): {"pos": [B],
        "real": [B, M], "layers": per decoder layer {"k", "v"} [B, M, H, d_h]}. extent and
        compact are the RNN's loop bounds, unused here (all matmuls)."""
        del extent, compact
        c = self.config
        _, memory = self._encode(src, deterministic)
        b = src.shape[0]
        m = max_len if max_len is not None else src.shape[1] + c.max_decode_extra
        empty = jnp.zeros((b, m, c.num_heads, c.d_head), jnp.float32)
        carry = {"pos": jnp.zeros((b,), jnp.int32), "real": jnp.zeros((b, m), bool),
                 "layers": tuple({"k": empty, "v": empty} for _ in self.decoder)}
        return memory, carry

    def decode_step(self, carry, ids: jax.Array, memory, deterministic: bool = True):
        """One decoder step: ids [B] (the token at position carry["pos"]) -> (carry, logits
        [B, V], cross-attention [B, L, H, S]). Past the cache (pos >= M) the logits are NaN."""
        pos, m = carry["pos"], carry["real"].shape[1]
        here = jnp.arange(m)[None, :] == pos[:, None]  # [B, M]
        real = jnp.where(here, (ids != PAD)[:, None], carry["real"])
        self_mask = real & (jnp.arange(m)[None, :] <= pos[:, None])  # [B, M]
        x = self._embed(self.tgt_embed, ids, pos, deterministic)  # [B, d]
        caches, weights = [], []
        for layer, cache, mem in zip(self.decoder, carry["layers"], memory):
            x, cache, w = layer.step(x, cache, pos, self_mask, mem, deterministic)
            caches.append(cache)
            weights.append(w)
        logits = self._logits(self._final(x, "decoder_norm"))
        logits = jnp.where((pos < m)[:, None], logits, jnp.nan)
        new = {"pos": pos + 1, "real": real, "layers": tuple(caches)}
        return new, logits, jnp.stack(weights, axis=1)

    # ------------------------------------------------------------------ teacher forced

    def features(self, src, tgt_in, deterministic: bool = True):
        """The decoder output at every target position [B, T, d] (after the final LN when
        pre-LN) and the cross-attention weights [B, L, H, T, S]."""
        _, memory = self._encode(src, deterministic)
        t = tgt_in.shape[1]
        causal = jnp.tril(jnp.ones((t, t), bool))
        self_mask = causal[None] & (tgt_in != PAD)[:, None, :]  # [B, T, T]
        x = self._embed(self.tgt_embed, tgt_in, jnp.arange(t), deterministic)
        weights = []
        for layer, mem in zip(self.decoder, memory):
            x, w = layer(x, self_mask, mem, deterministic)
            weights.append(w)
        return self._final(x, "decoder_norm"), jnp.stack(weights, axis=1)

    @staticmethod
    def _aux(weights, all_heads):
        aux = {"attention": mean_attention(weights)}  # [B, T, S]
        if all_heads:
            aux["heads"] = weights  # [B, L, H, T, S]
        return aux

    def __call__(self, src: jax.Array, tgt_in: jax.Array, deterministic: bool = True,
                 all_heads: bool = False):
        """Teacher forcing: src [B, S], tgt_in [B, T] -> logits [B, T, V], {"attention":
        [B, T, S]} (+ "heads" [B, L, H, T, S] with all_heads)."""
        x, weights = self.features(src, tgt_in, deterministic)
        return self._logits(x), self._aux(weights, all_heads)

    def _rows(self, x, tgt_out, bound=None):
        b, t, d = x.shape
        targets = tgt_out.reshape(b * t)
        weights = (targets != PAD).astype(jnp.float32)
        plan = rows_lib.plan(targets != PAD, rows_lib.CHUNK, bound)
        return x.reshape(b * t, d), targets, weights, plan

    def loss(self, src: jax.Array, tgt_in: jax.Array, tgt_out: jax.Array, *,
             smoothing: float = 0.0, deterministic: bool = True,
             extent: dict[str, jax.Array] | None = None, all_heads: bool = False):
        """Training loss without [B, T, V] logits: (Σ loss, Σ nll, Σ weight, aux) over real
        tokens (label smoothing ε = smoothing), as `rnn.Seq2Seq.loss`. extent: only its "rows"
        bound is used (the output head's loop; one trip count for vmapped replicas)."""
        x, weights_attn = self.features(src, tgt_in, deterministic)
        bound = None if extent is None else extent["rows"]
        rows, targets, weights, plan = self._rows(x, tgt_out, bound)
        loss, nll = loss_lib.head_loss(self._head(), rows, targets, weights, plan,
                                       smoothing=smoothing, dtype=self.config.compute_dtype)
        return loss, nll, weights.sum(), self._aux(weights_attn, all_heads)

    def token_nll(self, src: jax.Array, tgt_in: jax.Array, tgt_out: jax.Array,
                  all_heads: bool = False):
        """Evaluation: per-sentence nll [B] (summed over real tokens) and {"attention":
        [B, T, S]} (+ "heads" [B, L, H, T, S] with all_heads)."""
        x, weights_attn = self.features(src, tgt_in)
        rows, targets, weights, plan = self._rows(x, tgt_out)
        nll = loss_lib.token_nll(self._head(), rows, targets, weights, plan,
                                 dtype=self.config.compute_dtype)
        return nll.reshape(tgt_out.shape).sum(1), self._aux(weights_attn, all_heads)


def init_params(model: Transformer, rng: jax.Array, src_len: int):
    """Parameters from a dummy source of length src_len (images: a dummy picture): `encode` and
    one `decode_step` touch every parameter (none depends on a length)."""

    def touch(mdl, src):
        memory, carry = mdl.encode(src, max_len=1)
        return mdl.decode_step(carry, jnp.ones((1,), jnp.int32), memory)

    src = image_lib.dummy_source(model.config.image_size, src_len)
    return model.init({"params": rng}, src, method=touch)["params"]


StepFn = Callable[[jax.Array, Any], tuple[jax.Array, jax.Array, Any]]


def step_fn(model: Transformer, params, memory, mean: bool = False) -> StepFn:
    """`decode_step` as the decoders' callback: step(ids [N], carry) -> (logits [N, V],
    attention [N, L, H, S], or [N, S] with mean=True (what `eval.decode` buffers today), carry)."""

    def step(ids, carry):
        carry, logits, attn = model.apply({"params": params}, carry, ids, memory,
                                          method="decode_step")
        return logits, (mean_attention(attn) if mean else attn), carry

    return step


def step_by_step(model: Transformer, params, src: jax.Array, tgt_in: jax.Array):
    """The reference teacher-forced run: `encode` with a cache of T positions, then
    `decode_step` scanned over tgt_in [B, T]: (logits [B, T, V], attention [B, T, L, H, S])."""
    memory, carry = model.apply({"params": params}, src, method="encode",
                                max_len=tgt_in.shape[1])
    step = step_fn(model, params, memory)

    def body(carry, ids):
        logits, attn, carry = step(ids, carry)
        return carry, (logits, attn)

    _, (logits, attn) = jax.lax.scan(body, carry, jnp.swapaxes(tgt_in, 0, 1))
    return jnp.swapaxes(logits, 0, 1), jnp.swapaxes(attn, 0, 1)
