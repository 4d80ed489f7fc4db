"""Attention scorers: every variant the project compares, in one file, behind one registry.

At decoder step t the decoder's query q_t (s_{t-1} in the Bahdanau flow, s_t in the Luong flow)
scores every source annotation h_j, the scores are normalised over the real (unpadded) source
positions, and the context is the weighted sum of the annotations:

    e_tj = score(q_t, h_j)      α_tj = softmax_j(e_tj)  (α_tj = 0 exactly where j is padding)
    c_t  = Σ_j α_tj h_j

| name         | score(q, h_j)                         | paper                              |
|--------------|---------------------------------------|------------------------------------|
| `additive`   | vᵀ tanh(W q + U h_j)                  | Bahdanau et al. 2015 ("concat")    |
| `dot`        | qᵀ h_j        (needs |q| = |h|)       | Luong et al. 2015                  |
| `general`    | qᵀ W h_j                              | Luong et al. 2015                  |
| `scaled_dot` | qᵀ h_j / √d   (needs |q| = |h|)       | Vaswani et al. 2017                |
| `location`   | (W q)_j, j < max_source_len           | Luong et al. 2015                  |
| `multihead`  | per head: (W_q q)ᵀ (W_k h_j) / √d_h   | Vaswani et al. 2017                |
| `none`       | no attention: c_t = 0, α_t = 0        | Sutskever et al. 2014 (bottleneck) |

Every scorer has the same interface:

    memory = scorer.prepare(annotations, mask)   # once per source sequence (outside the decoder
                                                 # recurrence): projects the keys, e.g. U h_j
    context, weights = scorer(query, memory)     # one query per row: [B, Dq] -> [B, Dv], [B, S]
    context, weights = attend_all(scorer, queries, memory)  # [B, T, Dq] -> [B, T, Dv], [B, T, S],
                                                 # the same code vmapped over T

A fully padded row (a filler row in a batch) gets all-zero weights and a zero context: finite,
never NaN. To add a scorer, subclass `Scorer` below and add one line to `SCORERS`.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """Sizes of one attention module (built by `models.ModelConfig`, never from a ConfigDict)."""

    scorer: str = "additive"  # A key of SCORERS.
    query_size: int = 128  # Size of the decoder query q (the decoder hidden state).
    key_size: int = 128  # Size of an annotation h_j (the encoder output).
    attention_size: int = 128  # Additive: size of W q + U h. Multihead: total size of all heads.
    num_heads: int = 4  # Multihead only; must divide attention_size.
    max_source_len: int = 64  # Location only: the number of source positions W q scores.

    def validate(self) -> None:
        """Raises ValueError naming the valid choices; called before anything is compiled."""
        if self.scorer not in SCORERS:
            raise ValueError(
                    f"Unknown attention scorer {self.scorer!r}; valid scorers: {', '.join(SCORER_NAMES)} "
                    "(set --config.model.scorer=NAME).")
        for field in ("query_size", "key_size", "attention_size", "num_heads", "max_source_len"):
            if getattr(self, field) <= 0:
                raise ValueError(f"attention {field} must be > 0, got {getattr(self, field)}.")
        SCORERS[self.scorer].check(self)


@flax.struct.dataclass
class Memory:
    """What a scorer keeps per source sentence; every leaf has a leading batch axis."""

    keys: jax.Array  # [B, S, Dk'] the (projected) keys scored against each query.
    values: jax.Array  # [B, S, Dv] what the context averages: the annotations h_j.
    mask: jax.Array  # [B, S] True at real source tokens.


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """softmax over the last axis restricted to mask; masked entries are exactly 0.

    A row with no real entry gives all zeros (not NaN).
    """
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    weights = jax.nn.softmax(scores, axis=-1)
    return jnp.where(mask, weights, 0.0)


class Scorer(nn.Module):
    """Base class: `prepare` once per sentence, then `__call__` per query row."""

    config: AttentionConfig

    @classmethod
    def check(cls, config: AttentionConfig) -> None:
        """Scorer-specific size checks (raise ValueError)."""

    def prepare(self, annotations: jax.Array, mask: jax.Array) -> Memory:
        # annotations [B, S, Dk], mask [B, S]
        return Memory(keys=annotations, values=annotations, mask=mask)

    def score(self, query: jax.Array, memory: Memory) -> jax.Array:
        """Unnormalised scores e_j: query [B, Dq] -> [B, S]."""
        raise NotImplementedError

    def __call__(self, query: jax.Array, memory: Memory) -> tuple[jax.Array, jax.Array]:
        weights = masked_softmax(self.score(query, memory), memory.mask)  # [B, S]
        context = jnp.einsum("bs,bsd->bd", weights, memory.values)  # [B, Dv]
        return context, weights


class Additive(Scorer):
    """Bahdanau: e_j = vᵀ tanh(W q + U h_j); U h_j is computed once per sentence in `prepare`."""

    def setup(self):
        a = self.config.attention_size
        self.w = nn.Dense(a, name="w_query")
        self.u = nn.Dense(a, use_bias=False, name="u_key")
        self.v = nn.Dense(1, use_bias=False, name="v")

    def prepare(self, annotations, mask):
        return Memory(keys=self.u(annotations), values=annotations, mask=mask)  # keys [B, S, A]

    def score(self, query, memory):
        hidden = jnp.tanh(self.w(query)[:, None, :] + memory.keys)  # [B, S, A]
        return self.v(hidden)[..., 0]  # [B, S]


class Dot(Scorer):
    """Luong dot: e_j = qᵀ h_j (no parameters)."""

    @classmethod
    def check(cls, config):
        if config.query_size != config.key_size:
            raise ValueError(
                    f"Scorer {config.scorer!r} needs the decoder size ({config.query_size}) to equal the "
                    f"annotation size ({config.key_size}). Fix: leave model.encoder_hidden=0 (derived: "
                    "hidden_size // 2 per direction when bidirectional), or use a scorer with a learned "
                    "projection: general, additive, multihead.")

    def score(self, query, memory):
        return jnp.einsum("bd,bsd->bs", query, memory.keys)


class ScaledDot(Dot):
    """Vaswani: e_j = qᵀ h_j / √d."""

    def score(self, query, memory):
        return super().score(query, memory) / math.sqrt(memory.keys.shape[-1])


class General(Scorer):
    """Luong general: e_j = qᵀ W h_j, with W h_j computed once per sentence."""

    def setup(self):
        self.w = nn.Dense(self.config.query_size, use_bias=False, name="w")

    def prepare(self, annotations, mask):
        return Memory(keys=self.w(annotations), values=annotations, mask=mask)  # keys [B, S, Dq]

    def score(self, query, memory):
        return jnp.einsum("bd,bsd->bs", query, memory.keys)


class Location(Scorer):
    """Luong location: α = softmax(W q) over source positions; ignores the annotations' content."""

    def setup(self):
        self.w = nn.Dense(self.config.max_source_len, name="w")

    def score(self, query, memory):
        s = memory.mask.shape[-1]
        if s > self.config.max_source_len:
            raise ValueError(
                    f"location attention scores {self.config.max_source_len} source positions but the batch "
                    f"has {s}; raise model.max_source_len (default: the largest data bucket).")
        return self.w(query)[:, :s]  # [B, S]


class MultiHead(Scorer):
    """Scaled dot product attention with H heads and learned query/key/value/output projections.

    The returned weights (for heatmaps and AER) are the mean over heads.
    """

    @classmethod
    def check(cls, config):
        if config.attention_size % config.num_heads:
            raise ValueError(
                    f"multihead: attention_size {config.attention_size} is not divisible by num_heads "
                    f"{config.num_heads}; change model.num_heads or model.attention_size.")

    def setup(self):
        a = self.config.attention_size
        self.q = nn.Dense(a, use_bias=False, name="query")
        self.k = nn.Dense(a, use_bias=False, name="key")
        self.v = nn.Dense(a, use_bias=False, name="value")
        self.o = nn.Dense(self.config.key_size, use_bias=False, name="out")

    def _split(self, x):
        return x.reshape(*x.shape[:-1], self.config.num_heads, -1)  # [..., H, Dh]

    def prepare(self, annotations, mask):
        return Memory(keys=self._split(self.k(annotations)), values=self._split(self.v(annotations)),
                                    mask=mask)  # keys, values [B, S, H, Dh]

    def score(self, query, memory):
        q = self._split(self.q(query))  # [B, H, Dh]
        return jnp.einsum("bhd,bshd->bhs", q, memory.keys) / math.sqrt(q.shape[-1])  # [B, H, S]

    def __call__(self, query, memory):
        weights = masked_softmax(self.score(query, memory), memory.mask[:, None, :])  # [B, H, S]
        heads = jnp.einsum("bhs,bshd->bhd", weights, memory.values)  # [B, H, Dh]
        context = self.o(heads.reshape(heads.shape[0], -1))  # [B, Dk]
        return context, weights.mean(axis=1)


class NoAttention(Scorer):
    """The plain encoder-decoder: no context (c_t = 0, α_t = 0).

    The decoder sees the source only through its initial state, bridged from the encoder's final
    state: the fixed-vector bottleneck.
    """

    def score(self, query, memory):
        return jnp.zeros(memory.mask.shape, query.dtype)

    def __call__(self, query, memory):
        b, s, d = memory.values.shape
        return jnp.zeros((b, d), query.dtype), jnp.zeros((b, s), query.dtype)


SCORERS: dict[str, type[Scorer]] = {
        "none": NoAttention,
        "additive": Additive,
        "dot": Dot,
        "general": General,
        "scaled_dot": ScaledDot,
        "location": Location,
        "multihead": MultiHead,
}
SCORER_NAMES = tuple(SCORERS)


def make_scorer(config: AttentionConfig, name: str = "attention") -> Scorer:
    """The scorer module for config.scorer (validated)."""
    config.validate()
    return SCORERS[config.scorer](config, name=name)


def attend_all(scorer: Scorer, queries: jax.Array, memory: Memory) -> tuple[jax.Array, jax.Array]:
    """All target positions at once: queries [B, T, Dq] -> context [B, T, Dv], weights [B, T, S].

    The per-row scorer vmapped over T (parameters shared), not a second implementation.
    """
    per_row = nn.vmap(lambda mdl, q, m: mdl(q, m), in_axes=(1, None), out_axes=1,
                                        variable_axes={"params": None}, split_rngs={"params": False})
    return per_row(scorer, queries, memory)
