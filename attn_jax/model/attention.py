"""Attention scorers: every variant the project compares, in one file, behind one registry.

At decoder step t the decoder state s (s_{t-1} in the Bahdanau flow, s_t in the Luong flow) is
projected to a query q_t, which scores every source annotation h_j; the scores are normalised over
the real (unpadded) source positions, and the context is the weighted sum of the annotations:

    e_tj = score(q_t, h_j)      α_tj = softmax_j(e_tj)  (α_tj = 0 exactly where j is padding)
    c_t  = Σ_j α_tj h_j

| name         | q_t             | score(q, h_j)                    | paper                              |
|--------------|-----------------|----------------------------------|------------------------------------|
| `additive`   | W s + b         | vᵀ tanh(q + U h_j)               | Bahdanau et al. 2015 ("concat")    |
| `dot`        | s               | qᵀ h_j        (needs |s| = |h|)  | Luong et al. 2015                  |
| `general`    | s               | qᵀ (W h_j)                       | Luong et al. 2015                  |
| `scaled_general` | s           | qᵀ (W h_j) / √d                  | general with Vaswani's scaling     |
| `scaled_dot` | s               | qᵀ h_j / √d   (needs |s| = |h|)  | Vaswani et al. 2017                |
| `location`   | W s + b         | q_j, j < max_source_len          | Luong et al. 2015                  |
| `multihead`  | W_q s, per head | (q_h)ᵀ (W_k h_j)_h / √d_h        | Vaswani et al. 2017                |
| `none`       | -               | no attention: c_t = 0, α_t = 0   | Sutskever et al. 2014 (bottleneck) |

A scorer has three parts, so that the step-by-step decoder and the fused training recurrence
(`attn_jax.model.recurrence`) run the same math:

    memory = scorer.prepare(annotations, mask)  # once per source sentence: the keys (e.g. U h_j)
                                                # and values [B, S, heads, d]
    q = scorer.query(s)                         # the per-step projection (identity for dot)
    e = scorer.score_fn(config, q, keys, scorer.score_params())  # pure: [B, heads, S]

and `scorer(s, memory) -> (context [B, Dc], weights [B, S])` puts them together with the masked
softmax (weights are averaged over heads for heatmaps and AER); `attend_all` does the same for
all target positions at once. A fully padded row (a filler row in a batch) gets all-zero weights
and a zero context: finite, never NaN. To add a scorer, subclass `Scorer` below (usually just
`setup`, `prepare` and `score_fn`) and add one line to `SCORERS`. Its class attributes say what
other code needs to know of it (`scorer_class(name)` finds the class): `attends` (False only for
`none`), `position_based` (True only for `location`: it scores fixed positions, so the model
needs max_source_len) and `uses_keys`.

`attend_all` has three implementations (`AttentionConfig.impl`, `model.attention_impl`); each
scorer carries its own (`Scorer.fused_context`, `Scorer.scores_all`):

* `xla` (default): the per-row score function vmapped over T, the masked softmax and the mix;
  the additive scorer materialises tanh(q_t + U h_j) as [B, T, S, A].
* `chunked`: additive attention blockwise with an online softmax and a recomputing backward
  (`attn_jax.model.kernels`), one [B, bq, bk, A] block at a time; dot, scaled_dot, general and
  multihead through `jax.nn.dot_product_attention` (cuDNN flash attention on GPU where it applies:
  16-bit inputs, head size <= 128 and a multiple of 8; XLA elsewhere).
* `pallas`: additive attention as fused Pallas kernels (GPU: Triton, TPU: Mosaic; elsewhere
  Pallas interpret mode, for tests); the dot family (`DotProduct`) as in `chunked`.

Under `chunked` and `pallas` the weights α (heatmaps, AER) come from a separate computation of
the scores (blockwise for additive) that a jitted step which ignores them drops as dead code. The
other scorers (location, none) and the step-by-step `Scorer.__call__` are the same in every
implementation. The decoder recurrences (`attn_jax.model.recurrence`) score one query row per step and
recompute the additive tanh in their backward already, so they keep O(B·S) per step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from attn_jax.model import kernels
from attn_jax.model import rows as rows_lib
from attn_jax.model.layers import Linear


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """Sizes of one attention module (built by `models.ModelConfig`, never from a ConfigDict)."""

    scorer: str = "additive"  # A key of SCORERS.
    query_size: int = 128  # Size of the decoder state s the query is made from.
    key_size: int = 128  # Size of an annotation h_j (the encoder output).
    attention_size: int = 128  # Additive: size of q and U h. Multihead: total size of all heads.
    num_heads: int = 4  # Multihead only; must divide attention_size.
    max_source_len: int = 64  # Location only: the number of source positions W s scores.
    dtype: Any = None  # Matmul dtype of the projections (None: float32).
    impl: str = "xla"  # `attend_all` implementation, one of IMPLS (module docstring).

    def validate(self) -> None:
        """Raises ValueError naming the valid choices; called before anything is compiled."""
        scorer = scorer_class(self.scorer)
        if self.impl not in IMPLS:
            raise ValueError(
                f"Unknown attention implementation {self.impl!r}; valid: {', '.join(IMPLS)} "
                "(set --config.model.attention_impl=NAME).")
        for field in ("query_size", "key_size", "attention_size", "num_heads", "max_source_len"):
            if getattr(self, field) <= 0:
                raise ValueError(f"attention {field} must be > 0, got {getattr(self, field)}.")
        scorer.check(self)


@flax.struct.dataclass
class Memory:
    """What a scorer keeps per source sentence; every leaf has a leading batch axis."""

    keys: jax.Array  # [B, S, ...] the (projected) keys the query is scored against.
    values: jax.Array  # [B, S, heads, d] what the context averages (the annotations, per head).
    mask: jax.Array  # [B, S] True at real source tokens.


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """softmax over the last axis restricted to mask; masked entries are exactly 0.

    A row with no real entry gives all zeros (not NaN).
    """
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    weights = jax.nn.softmax(scores, axis=-1)
    return jnp.where(mask, weights, 0.0)


def mix(weights: jax.Array, values: jax.Array) -> jax.Array:
    """Σ_j α_j v_j per head: weights [..., heads, S], values [B, S, heads, d] -> [..., heads·d]."""
    out = jnp.einsum("b...hs,bshd->b...hd", weights, values)
    return out.reshape(*out.shape[:-2], -1)


class Scorer(nn.Module):
    """Base class; the default is a parameter-free scorer over the raw annotations."""

    config: AttentionConfig
    attends = True  # False only for the no-attention baseline.
    uses_keys = True  # False if the score ignores the keys (location).
    # True if the weights come from W q over fixed source positions (location): the model
    # needs its max_source_len.
    position_based = False

    @classmethod
    def check(cls, config: AttentionConfig) -> None:
        """Scorer-specific size checks (raise ValueError)."""

    @property
    def num_heads(self) -> int:
        return 1

    @property
    def context_size(self) -> int:
        """Size of the context c_t the scorer returns."""
        return self.config.key_size

    def prepare(self, annotations: jax.Array, mask: jax.Array,
                rows: rows_lib.Rows | None = None) -> Memory:
        """annotations [B, S, Dk], mask [B, S]; rows: the real (b, s) rows (projections skip the
        others, whose keys are then zero and masked anyway)."""
        return Memory(keys=annotations, values=self.values(annotations, rows), mask=mask)

    def values(self, annotations: jax.Array, rows: rows_lib.Rows | None = None) -> jax.Array:
        """What the context averages, per head: [B, S, heads, d] (the annotations themselves)."""
        return annotations[:, :, None, :]

    def query_projection(self) -> Linear | None:
        """The per-step map s -> q, or None when q = s."""
        return None

    def output_projection(self) -> Linear | None:
        """A map applied to the mixed values (multihead's W_o), or None."""
        return None

    def query(self, s: jax.Array) -> jax.Array:
        proj = self.query_projection()
        return s if proj is None else proj(s)

    def score_params(self) -> dict[str, jax.Array]:
        """The parameters `score_fn` uses (besides the query projection)."""
        return {}

    @staticmethod
    def score_fn(config: AttentionConfig, q: jax.Array, keys: jax.Array,
                 params: dict[str, jax.Array]) -> jax.Array:
        """Unnormalised scores: q [B, Dq'] against keys [B, S, ...] -> [B, heads, S]."""
        raise NotImplementedError

    def scores(self, s: jax.Array, memory: Memory) -> jax.Array:
        """e for decoder states s [B, Dq] -> [B, heads, S]."""
        return self.score_fn(self.config, self.query(s), memory.keys, self.score_params())

    def attention_weights(self, s: jax.Array, memory: Memory) -> jax.Array:
        """α for decoder states s [B, Dq] -> [B, heads, S] (0 at padding). Its own method so
        that evaluation can replace α in the step-by-step decoder (`attn_jax.eval.perturb`
        intercepts it with `flax.linen.intercept_methods`); the context follows the weights."""
        return masked_softmax(self.scores(s, memory), memory.mask[:, None, :])

    def __call__(self, s: jax.Array, memory: Memory) -> tuple[jax.Array, jax.Array]:
        """One query row per batch row: s [B, Dq] -> context [B, Dc], weights [B, S]."""
        weights = self.attention_weights(s, memory)  # [B, h, S]
        context = mix(weights, memory.values)  # [B, h·d]
        proj = self.output_projection()
        return (context if proj is None else proj(context)), weights.mean(axis=1)

    def scores_all(self, q: jax.Array, memory: Memory) -> jax.Array:
        """e for projected queries q [B, T, Dq'] of all target positions -> [B, T, heads, S]:
        `score_fn` vmapped over T (what `attend_all` does under every impl unless overridden)."""
        params = self.score_params()
        score = lambda q_t: self.score_fn(self.config, q_t, memory.keys, params)  # noqa: E731
        return jax.vmap(score, in_axes=1, out_axes=1)(q)

    def fused_context(self, q: jax.Array, memory: Memory) -> jax.Array | None:
        """The mixed values [B, T, heads·d] for queries q [B, T, Dq'] by the memory-lean path of
        `config.impl`, or None: `attend_all` mixes the softmax weights (always under `xla`)."""
        return None


class Additive(Scorer):
    """Bahdanau: e_j = vᵀ tanh(W s + b + U h_j); U h_j is computed once per sentence in `prepare`."""

    def setup(self):
        c = self.config
        self.w = Linear(c.query_size, c.attention_size, dtype=c.dtype, name="w_query")
        self.u = Linear(c.key_size, c.attention_size, use_bias=False, dtype=c.dtype, name="u_key")
        self.v = self.param("v", nn.initializers.lecun_normal(), (c.attention_size, 1))

    def prepare(self, annotations, mask, rows=None):
        return Memory(keys=rows_lib.dense(self.u, annotations, rows),
                      values=self.values(annotations, rows), mask=mask)  # keys [B, S, A]

    def query_projection(self):
        return self.w

    def score_params(self):
        return {"v": self.v[:, 0]}

    @staticmethod
    def score_fn(config, q, keys, params):
        hidden = jnp.tanh(keys + q[:, None, :])  # [B, S, A]
        return jnp.einsum("bsa,a->bs", hidden, params["v"])[:, None, :]

    def scores_all(self, q, memory):
        if self.config.impl == "xla":
            return super().scores_all(q, memory)
        v = self.score_params()["v"]
        return kernels.additive_scores(q, memory.keys, v)[:, :, None, :]  # blockwise [B, T, 1, S]

    def fused_context(self, q, memory):
        if self.config.impl == "xla":
            return None
        fused = kernels.additive_context if self.config.impl == "chunked" else \
            kernels.pallas_additive_context
        v = self.score_params()["v"]
        return fused(q, memory.keys, v, memory.values[:, :, 0, :], memory.mask)  # [B, T, Dk]


class DotProduct(Scorer):
    """Base of the scorers whose score is a (scaled) dot product of the query with the keys,
    per head: under `chunked` and `pallas` their context is `jax.nn.dot_product_attention`."""

    scaled = False  # True: the scores are divided by √(head size).

    def fused_context(self, q, memory):
        if self.config.impl == "xla":
            return None
        scale = 1.0 / math.sqrt(q.shape[-1] // self.num_heads) if self.scaled else 1.0
        return dot_product_context(q, memory, self.num_heads, scale)  # [B, T, h·d]


class Dot(DotProduct):
    """Luong dot: e_j = sᵀ h_j (no parameters)."""

    @classmethod
    def check(cls, config):
        if config.query_size != config.key_size:
            raise ValueError(
                f"Scorer {config.scorer!r} needs the decoder size ({config.query_size}) to equal the "
                f"annotation size ({config.key_size}). Fix: leave model.encoder_hidden=0 (derived: "
                "hidden_size // 2 per direction when bidirectional), or use a scorer with a learned "
                "projection: general, additive, multihead.")

    @staticmethod
    def score_fn(config, q, keys, params):
        return jnp.einsum("bd,bsd->bs", q, keys)[:, None, :]


class ScaledDot(Dot):
    """Vaswani: e_j = sᵀ h_j / √d."""

    scaled = True

    @staticmethod
    def score_fn(config, q, keys, params):
        return Dot.score_fn(config, q, keys, params) / math.sqrt(keys.shape[-1])


class General(DotProduct):
    """Luong general: e_j = sᵀ W h_j, with W h_j computed once per sentence in `prepare`."""

    def setup(self):
        c = self.config
        self.w = Linear(c.key_size, c.query_size, use_bias=False, dtype=c.dtype, name="w")

    def prepare(self, annotations, mask, rows=None):
        return Memory(keys=rows_lib.dense(self.w, annotations, rows),
                      values=self.values(annotations, rows), mask=mask)  # keys [B, S, Dq]

    score_fn = staticmethod(Dot.score_fn)


class ScaledGeneral(General):
    """general scaled as scaled_dot is: e_j = sᵀ W h_j / √d. The scale keeps the scores, and so
    the softmax, from saturating while W grows early in training (experiments/multi30k)."""

    scaled = True
    score_fn = staticmethod(ScaledDot.score_fn)  # On the projected keys W h_j.


class Location(Scorer):
    """Luong location: α = softmax(W s + b) over source positions; ignores the annotations' content."""

    uses_keys = False
    position_based = True

    def setup(self):
        c = self.config
        self.w = Linear(c.query_size, c.max_source_len, dtype=c.dtype, name="w")

    def query_projection(self):
        return self.w

    @staticmethod
    def score_fn(config, q, keys, params):
        s = keys.shape[1]
        if s > config.max_source_len:
            raise ValueError(
                f"location attention scores {config.max_source_len} source positions but the batch "
                f"has {s}; raise model.max_source_len (default: the largest data bucket).")
        return q[:, None, :s]  # [B, 1, S]


class MultiHead(DotProduct):
    """Scaled dot product attention with H heads and learned query/key/value/output projections.

    The returned weights (for heatmaps and AER) are the mean over heads.
    """

    scaled = True

    @classmethod
    def check(cls, config):
        if config.attention_size % config.num_heads:
            raise ValueError(
                f"multihead: attention_size {config.attention_size} is not divisible by num_heads "
                f"{config.num_heads}; change model.num_heads or model.attention_size.")

    def setup(self):
        c = self.config
        a = c.attention_size
        self.q = Linear(c.query_size, a, use_bias=False, dtype=c.dtype, name="query")
        self.k = Linear(c.key_size, a, use_bias=False, dtype=c.dtype, name="key")
        self.v = Linear(c.key_size, a, use_bias=False, dtype=c.dtype, name="value")
        self.o = Linear(a, c.key_size, use_bias=False, dtype=c.dtype, name="out")

    @property
    def num_heads(self):
        return self.config.num_heads

    def _split(self, x):
        return x.reshape(*x.shape[:-1], self.config.num_heads, -1)  # [..., H, Dh]

    def prepare(self, annotations, mask, rows=None):
        return Memory(keys=self._split(rows_lib.dense(self.k, annotations, rows)),
                      values=self.values(annotations, rows),
                      mask=mask)  # keys, values [B, S, H, Dh]

    def values(self, annotations, rows=None):
        return self._split(rows_lib.dense(self.v, annotations, rows))

    def query_projection(self):
        return self.q

    def output_projection(self):
        return self.o

    @staticmethod
    def score_fn(config, q, keys, params):
        q = q.reshape(q.shape[0], config.num_heads, -1)  # [B, H, Dh]
        return jnp.einsum("bhd,bshd->bhs", q, keys) / math.sqrt(q.shape[-1])  # [B, H, S]


class Uniform(Scorer):
    """The uniform-attention baseline: α_tj = 1/|real j| whatever the query, so c_t is the mean
    annotation at every step (a learned-nothing reference for what attention's weights add)."""

    uses_keys = False

    @staticmethod
    def score_fn(config, q, keys, params):
        return jnp.zeros((q.shape[0], 1, keys.shape[1]), jnp.float32)  # [B, 1, S]


class NoAttention(Scorer):
    """The plain encoder-decoder: no context (c_t = 0, α_t = 0).

    The decoder sees the source only through its initial state, bridged from the encoder's final
    state: the fixed-vector bottleneck.
    """

    attends = False

    @staticmethod
    def score_fn(config, q, keys, params):
        return jnp.zeros((q.shape[0], 1, keys.shape[1]), q.dtype)

    def __call__(self, s, memory):
        b, n = memory.mask.shape
        return jnp.zeros((b, self.context_size), s.dtype), jnp.zeros((b, n), s.dtype)


SCORERS: dict[str, type[Scorer]] = {
    "none": NoAttention,
    "additive": Additive,
    "dot": Dot,
    "general": General,
    "scaled_dot": ScaledDot,
    "scaled_general": ScaledGeneral,
    "location": Location,
    "multihead": MultiHead,
    "uniform": Uniform,
}
SCORER_NAMES = tuple(SCORERS)
# The published scorers, which the main sweep (configs/sweeps/scorer_hidden.py) compares;
# scaled_general is this project's variant of general (experiments/multi30k/README.md); uniform
# is the baseline of the captioning comparison (configs/sweeps/scenes.py).
COMPARED = tuple(name for name in SCORER_NAMES if name not in ("scaled_general", "uniform"))
IMPLS = ("xla", "chunked", "pallas")  # attend_all implementations (module docstring).


def scorer_class(name: str) -> type[Scorer]:
    """The registered scorer class of `name` (its `attends`, `position_based`, ...); raises
    ValueError listing the valid names for an unknown one."""
    if name not in SCORERS:
        raise ValueError(
            f"Unknown attention scorer {name!r}; valid scorers: {', '.join(SCORER_NAMES)} "
            "(set --config.model.scorer=NAME).")
    return SCORERS[name]


def make_scorer(config: AttentionConfig, name: str = "attention") -> Scorer:
    """The scorer module for config.scorer (validated)."""
    config.validate()
    return SCORERS[config.scorer](config, name=name)


def attend_all(scorer: Scorer, states: jax.Array, memory: Memory) -> tuple[jax.Array, jax.Array]:
    """All target positions at once: states [B, T, Dq] -> context [B, T, Dc], weights [B, T, S].

    `xla`: the per-row score function vmapped over T (parameters shared), not a second
    implementation. `chunked` / `pallas` (scorer.config.impl): see the module docstring.
    """
    b, t = states.shape[:2]
    if not scorer.attends:
        return (jnp.zeros((b, t, scorer.context_size), states.dtype),
                jnp.zeros((b, t, memory.mask.shape[1]), states.dtype))
    q = scorer.query(states)  # [B, T, Dq']
    context = scorer.fused_context(q, memory)  # [B, T, h·d], or None
    weights = masked_softmax(scorer.scores_all(q, memory), memory.mask[:, None, None, :])
    if context is None:
        context = mix(weights, memory.values)  # [B, T, h·d]
    proj = scorer.output_projection()
    return (context if proj is None else proj(context)), weights.mean(axis=2)


def dot_product_context(q: jax.Array, memory: Memory, num_heads: int, scale: float) -> jax.Array:
    """Σ_j softmax_j(scale · q_h·k_hj) v_hj per head through `jax.nn.dot_product_attention`:
    q [B, T, h·dq], memory keys [B, S, dq] or [B, S, h, dq], values [B, S, h, d] -> [B, T, h·d].

    Query/key and value sizes may differ (general scorer): all are zero-padded to the larger one,
    which changes no score, and the output is sliced back. Rows with no real key get 0, as in
    `masked_softmax`. cuDNN (flash attention) on GPU for 16-bit inputs with a padded head size
    <= 128 and a multiple of 8; XLA otherwise.
    """
    b, t = q.shape[:2]
    values = memory.values
    keys = memory.keys if memory.keys.ndim == 4 else memory.keys[:, :, None, :]
    q = q.reshape(b, t, num_heads, -1)  # [B, T, h, dq]
    width, d = max(q.shape[-1], values.shape[-1]), values.shape[-1]
    dtype = jnp.result_type(q, keys, values)
    pad = lambda x: jnp.pad(x.astype(dtype), [(0, 0)] * 3 + [(0, width - x.shape[-1])])  # noqa: E731
    cudnn = (jax.default_backend() == "gpu" and dtype in (jnp.bfloat16, jnp.float16)
             and width <= 128 and width % 8 == 0)
    out = jax.nn.dot_product_attention(
        pad(q), pad(keys), pad(values), mask=memory.mask[:, None, None, :], scale=scale,
        implementation="cudnn" if cudnn else "xla")[..., :d]  # [B, T, h, d]
    out = jnp.where(memory.mask.any(-1)[:, None, None, None], out, 0.0)
    return out.reshape(b, t, -1)
