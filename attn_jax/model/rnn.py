"""RNN encoder-decoder with attention: both decoder flows over one set of parameters.

Notation (README): h_j encoder annotations, s_t decoder state, y_t target tokens,
e_tj = score(q_t, h_j), α_tj = softmax_j e_tj, c_t = Σ_j α_tj h_j.

`bahdanau` flow (Bahdanau et al. 2015), query s_{t-1}:
    c_t = attend(s_{t-1});  s_t = RNN(s_{t-1}, [emb(y_{t-1}); c_t])
    P(y_t) = softmax(W_o tanh(W_d [s_t; c_t; emb(y_{t-1})]))
`luong` flow (Luong et al. 2015), query s_t:
    s_t = RNN(s_{t-1}, [emb(y_{t-1}); h̃_{t-1}])   (input feeding; without it: RNN(s_{t-1}, emb(y_{t-1})))
    c_t = attend(s_t);  h̃_t = tanh(W_c [c_t; s_t]);  P(y_t) = softmax(W_s h̃_t)
Both: s_0 = tanh(W_b h_final), h_final = the encoder's last state ([forward; backward] when
bidirectional): the learned bridge.

Two ways through the same parameters:
* step by step: `encode`, then `decode_step` once per target token (greedy and beam search
  drive them through `step_fn`; `step_by_step` / `step_by_step_loss` scan it over a given target:
  the reference the tests hold the fast path to);
* teacher forced, all target positions at once: `__call__` (logits [B, T, V] and the attention
  [B, T, S]), `loss` (training: the fused output head over real tokens only, `attn_jax.model.loss`)
  and `token_nll` (evaluation). These run the encoder and decoder as the fused recurrences of
  `attn_jax.model.recurrence`: input projections for all time steps before the loop, the output head
  after it, hand-written backward passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from attn_jax.data.tokens import BOS, EOS, PAD, UNK  # noqa: F401  (models.PAD etc. for callers)
from attn_jax.model import attention as attn_lib
from attn_jax.model import image as image_lib
from attn_jax.model import loss as loss_lib
from attn_jax.model import recurrence
from attn_jax.model import rows as rows_lib
from attn_jax.model.layers import CELLS, Cell, Linear, hidden, initial_carry

FLOWS = ("bahdanau", "luong")
DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The model's frozen, typed configuration. Build it with `from_config`; modules read only this.

    The defaults are those `from_config` derives from configs/default.py (hidden_size 128)."""

    src_vocab_size: int
    tgt_vocab_size: int
    scorer: str = "additive"  # attention.SCORER_NAMES
    flow: str = "bahdanau"  # "bahdanau" (query s_{t-1}) or "luong" (query s_t)
    cell: str = "gru"  # "gru" or "lstm", encoder and decoder
    embed_size: int = 64
    encoder_hidden: int = 128  # Per direction.
    encoder_layers: int = 1
    bidirectional: bool = False
    decoder_hidden: int = 128  # Size of s_t, the attention query.
    attention_size: int = 64  # Additive W q + U h size; multihead total head size.
    num_heads: int = 4  # Multihead only.
    output_size: int = 128  # Bahdanau deep-output size; Luong attentional state h̃ size.
    input_feeding: bool = True  # Luong only: feed h̃_{t-1} into the RNN input.
    max_source_len: int = 72  # Location scorer: source positions W q scores.
    dropout: float = 0.0
    dtype: str = "float32"  # Matmul dtype: "float32" | "bfloat16" (parameters stay float32).
    attention_impl: str = "xla"  # attend_all: attention.IMPLS ("xla" | "chunked" | "pallas").
    encoder: str = "rnn"  # image.ENCODERS: source tokens through an RNN, or images through a CNN.
    image_size: int = 0  # Pixels per side of the images (encoder 'cnn'); 0 for text.
    cell_kernel: int = 1  # Encoder 'cnn': cells each annotation's per-cell layer sees (odd).
    local_keys: bool = False  # Encoder 'cnn': score per-cell keys, read the wider values.
    grid_layers: int = 0  # Encoder 'cnn': self-attention layers over the cells (num_heads heads).
    image_norm: bool = False  # Encoder 'cnn': LayerNorm after each stride-2 convolution.
    global_pool: int = 0  # Encoder 'cnn': per-cell layers that also read the grid's mean.
    count_layers: int = 0  # Encoder 'cnn': unnormalised self-attention layers over the cells.
    image_width: int = 0  # Encoder 'cnn': first convolution's channels (0: annotation size / 4).

    @property
    def annotation_size(self) -> int:
        return self.encoder_hidden * (2 if self.bidirectional else 1)

    @property
    def compute_dtype(self) -> Any:
        return DTYPES[self.dtype]

    @property
    def attention(self) -> attn_lib.AttentionConfig:
        return attn_lib.AttentionConfig(
            scorer=self.scorer, query_size=self.decoder_hidden, key_size=self.annotation_size,
            attention_size=self.attention_size, num_heads=self.num_heads,
            max_source_len=self.max_source_len, dtype=self.compute_dtype,
            impl=self.attention_impl)

    def validate(self) -> ModelConfig:
        """Raises ValueError naming the valid choices; cheap, call it before compiling."""
        if self.flow not in FLOWS:
            raise ValueError(f"Unknown decoder flow {self.flow!r}; valid flows: {', '.join(FLOWS)} "
                             "(set --config.model.flow=NAME).")
        if self.cell not in CELLS:
            raise ValueError(f"Unknown RNN cell {self.cell!r}; valid cells: {', '.join(CELLS)} "
                             "(set --config.model.cell=NAME).")
        if self.dtype not in DTYPES:
            raise ValueError(f"Unknown model dtype {self.dtype!r}; valid: {', '.join(DTYPES)} "
                             "(set --config.model.dtype=NAME).")
        image_lib.check_source(self.encoder, self.image_size, "RNN encoder", {
            "cell_kernel": (self.cell_kernel, 1), "local_keys": (self.local_keys, False),
            "grid_layers": (self.grid_layers, 0), "image_norm": (self.image_norm, False),
            "global_pool": (self.global_pool, 0), "count_layers": (self.count_layers, 0),
            "image_width": (self.image_width, 0)})
        if self.cell_kernel < 1 or self.cell_kernel % 2 == 0:
            raise ValueError(f"model.cell_kernel must be odd and >= 1 (1: each annotation sees "
                             f"its own cell; 3: its 3 x 3 neighbourhood, centred), got "
                             f"{self.cell_kernel}.")
        if self.grid_layers < 0:
            raise ValueError(f"model.grid_layers must be >= 0, got {self.grid_layers}.")
        for field in ("global_pool", "count_layers", "image_width"):
            if getattr(self, field) < 0:
                raise ValueError(f"model.{field} must be >= 0, got {getattr(self, field)}.")
        if self.local_keys and self.cell_kernel == 1 and not self.grid_layers:
            raise ValueError("model.local_keys reads values that see more than the keys: set "
                             "--config.model.cell_kernel=3 (or more) or "
                             "--config.model.grid_layers=1 (or more), or "
                             "--config.model.local_keys=False.")
        if self.grid_layers and self.annotation_size % self.num_heads:
            raise ValueError(f"model.num_heads={self.num_heads} must divide the annotation size "
                             f"{self.annotation_size} (the grid layers' width): change "
                             "--config.model.num_heads or --config.model.hidden_size.")
        for field in ("src_vocab_size", "tgt_vocab_size", "embed_size", "encoder_hidden",
                      "encoder_layers", "decoder_hidden", "output_size"):
            if getattr(self, field) <= 0:
                raise ValueError(f"model {field} must be > 0, got {getattr(self, field)}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model dropout must be in [0, 1), got {self.dropout}.")
        self.attention.validate()
        return self

    @classmethod
    def from_config(cls, model: Any, *, src_vocab_size: int, tgt_vocab_size: int,
                    max_source_len: int, image_size: int = 0) -> ModelConfig:
        """From the `config.model` ConfigDict. Zero sizes are derived from `hidden_size`:

        decoder_hidden = output_size = hidden_size, attention_size = embed_size = hidden_size // 2,
        encoder_hidden = hidden_size // 2 per direction when bidirectional (else hidden_size), so
        annotations and decoder states have the same size and one knob scales the whole model.
        """
        h = model.hidden_size
        if h <= 0:
            raise ValueError(f"model.hidden_size must be > 0, got {h}.")
        if model.bidirectional and h % 2 and not model.encoder_hidden:
            raise ValueError(f"model.hidden_size={h} must be even with a bidirectional encoder "
                             "(each direction gets half), or set model.encoder_hidden.")
        derived = lambda value, default: value if value else default  # noqa: E731
        return cls(
            src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, scorer=model.scorer,
            flow=model.flow, cell=model.cell,
            embed_size=derived(model.embed_size, max(h // 2, 1)),
            encoder_hidden=derived(model.encoder_hidden, h // 2 if model.bidirectional else h),
            encoder_layers=model.encoder_layers, bidirectional=model.bidirectional,
            decoder_hidden=derived(model.decoder_hidden, h),
            attention_size=derived(model.attention_size, max(h // 2, 1)),
            num_heads=model.num_heads,
            output_size=derived(model.output_size, h), input_feeding=model.input_feeding,
            max_source_len=image_lib.num_cells(image_size) if image_size > 0 else max_source_len,
            dropout=model.dropout, dtype=model.dtype, attention_impl=model.attention_impl,
            encoder=model.encoder, image_size=image_size,
            cell_kernel=model.cell_kernel, local_keys=model.local_keys,
            grid_layers=model.grid_layers, image_norm=model.image_norm,
            global_pool=model.global_pool, count_layers=model.count_layers,
            image_width=model.image_width).validate()


def reverse_rows(x: jax.Array, lengths: jax.Array) -> jax.Array:
    """x [B, S, ...] with each row's first lengths[b] entries reversed (padding stays at the end)."""
    t = jnp.arange(x.shape[1])[None, :]
    idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # [B, S]
    return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


class Encoder(nn.Module):
    """Stacked (bi)directional RNN over embedded source tokens; a row's state stops at its end.

    Both directions run in one fused loop (`recurrence.rnn` with a direction axis): the backward
    one reads each row reversed. Equal to flax's `nn.Bidirectional(nn.RNN(...))` with
    `seq_lengths` at real positions (tested).
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool = True,
                 steps: jax.Array | None = None, compact: bool = False,
                 bound: jax.Array | None = None):
        """x [B, S, E], mask [B, S] -> annotations [B, S, Da], final [B, Da]. steps: optional
        traced bound on the longest source; compact: matmuls over real rows only (`rows`), with
        `bound` on the real tokens (`steps.extent`)."""
        c = self.config
        dtype = c.compute_dtype
        lengths = mask.sum(-1)  # [B]
        mask = mask.T  # [S, B] time-major
        plan = rows_lib.plan(mask.reshape(-1), rows_lib.CHUNK, bound) if compact else None
        for layer in range(c.encoder_layers):
            if layer:
                x = nn.Dropout(c.dropout)(x, deterministic=deterministic)
            names = ("fwd", "bwd") if c.bidirectional else ("fwd",)
            cells = [Cell(c.cell, x.shape[-1], c.encoder_hidden, dtype=dtype, name=f"{n}_{layer}")
                     for n in names]
            inputs = [x, reverse_rows(x, lengths)][:len(cells)]
            gi = jnp.stack([cell.project_input(jnp.swapaxes(xi, 0, 1), _on_rows(plan))
                            for cell, xi in zip(cells, inputs)], axis=1)  # [S, D, B, G·H]
            w_h = jnp.stack([cell.w_h for cell in cells])  # [D, H, G·H]
            b_h = jnp.stack([cell.hidden_bias() for cell in cells])[:, None, :]  # [D, 1, G·H]
            h0 = jnp.zeros((len(cells), x.shape[0], c.encoder_hidden), x.dtype)
            hs, final = recurrence.rnn(c.cell, dtype, w_h, b_h, gi, initial_carry(c.cell, h0),
                                       mask, steps, plan)  # hs [S, D, B, H]
            outs = [jnp.swapaxes(hs[:, d], 0, 1) for d in range(len(cells))]  # [B, S, H] each
            if c.bidirectional:
                outs[1] = reverse_rows(outs[1], lengths)
            x = jnp.concatenate(outs, -1)
            final = hidden(c.cell, final)  # [D, B, H]
            final = jnp.concatenate(list(final), -1)  # [B, D·H]
        return x, final


class Seq2Seq(nn.Module):
    """Embedding -> Encoder -> bridge -> attention decoder (Bahdanau or Luong flow)."""

    config: ModelConfig

    def setup(self):
        c = self.config
        dtype = c.compute_dtype
        if c.encoder == "cnn":
            self.image_encoder = image_lib.ImageEncoder(
                c.annotation_size, dtype, c.cell_kernel, c.local_keys, c.grid_layers,
                c.num_heads, c.image_norm, c.global_pool, c.count_layers, c.image_width,
                name="image")
        else:
            self.src_embed = nn.Embed(c.src_vocab_size, c.embed_size, name="src_embed")
            self.encoder = Encoder(c, name="encoder")
        self.tgt_embed = nn.Embed(c.tgt_vocab_size, c.embed_size, name="tgt_embed")
        self.bridge = Linear(c.annotation_size, c.decoder_hidden, dtype=dtype, name="bridge")
        self.attention = attn_lib.make_scorer(c.attention, name="attention")
        context = self.attention.context_size
        if c.flow == "bahdanau":
            cell_in = c.embed_size + context
            combine_in = c.decoder_hidden + context + c.embed_size  # W_d [s; c; y]
        else:
            cell_in = c.embed_size + (c.output_size if c.input_feeding else 0)
            combine_in = context + c.decoder_hidden  # W_c [c; s]
        self.cell = Cell(c.cell, cell_in, c.decoder_hidden, dtype=dtype, name="decoder_cell")
        # Bahdanau: the deep output W_d; Luong: the attentional layer W_c.
        self.combine = Linear(combine_in, c.output_size, use_bias=c.flow == "bahdanau",
                              dtype=dtype, name="combine")
        self.output = Linear(c.output_size, c.tgt_vocab_size, dtype=dtype, name="output")  # W_o / W_s
        self.dropout = nn.Dropout(c.dropout)

    def _feeds_input(self) -> bool:
        return self.config.flow == "luong" and self.config.input_feeding

    # ---------------------------------------------------------------------- step by step

    def encode(self, src: jax.Array, deterministic: bool = True,
               extent: dict[str, jax.Array] | None = None, compact: bool = False):
        """src [B, S] (images: [B, H, W, 3]) -> (memory, carry): attention memory (keys projected
        once) and s_0.

        extent: loop bounds (`Seq2Seq.loss`); compact: projections over real rows only."""
        c = self.config
        if c.encoder == "cnn":  # Every grid cell is real; s_0 from the mean annotation.
            keys, annotations = self.image_encoder(src)  # [B, S, Da] each
            mask = jnp.ones(annotations.shape[:2], bool)  # [B, S]
            final, plan = annotations.mean(1), None  # [B, Da]
        else:
            mask = src != PAD  # [B, S]
            steps, bound = (None, None) if extent is None else (extent["src"], extent["src_rows"])
            x = self.dropout(self.src_embed(src), deterministic=deterministic)  # [B, S, E]
            annotations, final = self.encoder(x, mask, deterministic, steps, compact, bound)
            keys = annotations
            plan = rows_lib.plan(mask.reshape(-1), rows_lib.CHUNK, bound) if compact else None
        memory = self.attention.prepare(keys, mask, plan)
        if c.local_keys:  # Images: scored on per-cell `keys`, the context reads the annotations.
            memory = memory.replace(values=self.attention.values(annotations, plan))
        s0 = jnp.tanh(self.bridge(final))  # [B, Hd]
        carry = {"rnn": initial_carry(c.cell, s0)}
        if self._feeds_input():
            carry["feed"] = jnp.zeros((src.shape[0], c.output_size), s0.dtype)
        return memory, carry

    def decode_step(self, carry, ids: jax.Array, memory: attn_lib.Memory,
                    deterministic: bool = True):
        """One decoder step: ids [B] = y_{t-1} -> (carry, logits [B, V], attention [B, S])."""
        c = self.config
        y = self.dropout(self.tgt_embed(ids), deterministic=deterministic)  # [B, E]
        if c.flow == "bahdanau":
            context, weights = self.attention(hidden(c.cell, carry["rnn"]), memory)  # [B, Dc]
            rnn, s = self.cell(carry["rnn"], jnp.concatenate([y, context], -1))  # s [B, Hd]
            out = jnp.tanh(self.combine(jnp.concatenate([s, context, y], -1)))  # [B, O]
            new_carry = {"rnn": rnn}
        else:
            x = jnp.concatenate([y, carry["feed"]], -1) if self._feeds_input() else y
            rnn, s = self.cell(carry["rnn"], x)
            context, weights = self.attention(s, memory)
            out = jnp.tanh(self.combine(jnp.concatenate([context, s], -1)))  # h̃_t [B, O]
            new_carry = {"rnn": rnn, "feed": out} if self._feeds_input() else {"rnn": rnn}
        logits = self.output(self.dropout(out, deterministic=deterministic))  # [B, V]
        return new_carry, logits, weights

    # ------------------------------------------------------------------ teacher forced

    def __call__(self, src: jax.Array, tgt_in: jax.Array, deterministic: bool = True):
        """Teacher forcing: src [B, S], tgt_in [B, T] -> logits [B, T, V], {"attention": [B, T, S]}."""
        features, aux = self.features(src, tgt_in, deterministic)  # [T, B, F]
        out = features if self.config.flow == "luong" and self._feeds_input() else \
            jnp.tanh(self.combine(features))
        logits = self.output(self.dropout(out, deterministic=deterministic))  # [T, B, V]
        return jnp.swapaxes(logits, 0, 1), aux

    def loss(self, src: jax.Array, tgt_in: jax.Array, tgt_out: jax.Array, *,
             smoothing: float = 0.0, attention_penalty: float = 0.0,
             deterministic: bool = True, extent: dict[str, jax.Array] | None = None):
        """Training loss without [B, T, V] logits: (Σ loss, Σ nll, Σ weight, aux) over real tokens.
        attention_penalty λ > 0 adds λ · `loss_lib.doubly_stochastic` to Σ loss.

        extent (optional, traced): bounds shared by vmapped replicas (`steps.extent`): the longest
        source and target ("src", "tgt") and the most real source and target tokens ("src_rows",
        "rows"); loops stop there.
        """
        features, aux, plan = self._features(src, tgt_in, deterministic, extent)  # [T, B, F]
        t, b, f = features.shape
        targets = jnp.swapaxes(tgt_out, 0, 1).reshape(t * b)
        weights = (targets != PAD).astype(jnp.float32)
        rate = 0.0 if deterministic else self.config.dropout
        loss, nll = loss_lib.head_loss(
            self._head(), features.reshape(t * b, f), targets, weights, plan, smoothing=smoothing,
            dropout_rate=rate, dropout_key=self.make_rng("dropout") if rate > 0 else None,
            dtype=self.config.compute_dtype)
        if attention_penalty:
            source_mask = (jnp.ones(aux["attention"].shape[::2], bool)
                           if self.config.encoder == "cnn" else src != PAD)  # [B, S]
            loss = loss + attention_penalty * loss_lib.doubly_stochastic(
                aux["attention"], tgt_out != PAD, source_mask)
        return loss, nll, weights.sum(), aux

    def token_nll(self, src: jax.Array, tgt_in: jax.Array, tgt_out: jax.Array):
        """Evaluation: per-sentence nll [B] (summed over real tokens) and {"attention": [B, T, S]}."""
        features, aux, plan = self._features(src, tgt_in)  # [T, B, F]
        t, b, f = features.shape
        targets = jnp.swapaxes(tgt_out, 0, 1).reshape(t * b)
        weights = (targets != PAD).astype(jnp.float32)
        nll = loss_lib.token_nll(self._head(), features.reshape(t * b, f), targets, weights, plan,
                                 dtype=self.config.compute_dtype)
        return nll.reshape(t, b).sum(0), aux

    def _head(self) -> dict[str, Any]:
        """The output head's parameters for `loss_lib` (hidden layer = combine, unless Luong with
        input feeding computed h̃ inside the recurrence)."""
        head = {"w2": self.output.kernel, "b2": self.output.bias, "w1": None, "b1": None}
        if not (self.config.flow == "luong" and self._feeds_input()):
            head.update(w1=self.combine.kernel, b1=self.combine.bias)
        return head

    def features(self, src, tgt_in, deterministic: bool = True, extent=None):
        """The decoder's input to the output head for every target position, time-major [T, B, F]
        (Bahdanau: [s_t; c_t; y_{t-1}]; Luong: h̃_t, or [c_t; s_t] without input feeding), and
        {"attention": [B, T, S]}. The fused recurrences; `decode_step` is the reference."""
        return self._features(src, tgt_in, deterministic, extent)[:2]

    def _features(self, src, tgt_in, deterministic=True, extent=None):
        """`features` and the real-row plan of the time-major [T, B] target layout."""
        c = self.config
        dtype = c.compute_dtype
        memory, carry = self.encode(src, deterministic, extent, compact=True)
        steps, bound = (None, None) if extent is None else (extent["tgt"], extent["rows"])
        tgt_in = jnp.swapaxes(tgt_in, 0, 1)  # [T, B]
        plan = rows_lib.plan((tgt_in != PAD).reshape(-1), rows_lib.CHUNK, bound)
        y = self.dropout(self.tgt_embed(tgt_in), deterministic=deterministic)  # [T, B, E]
        e = c.embed_size
        cell, scorer = self.cell, self.attention
        gi_e = cell.project_input(y, _on_rows(plan))  # [T, B, G·H]: the embeddings' share
        query, out_proj = scorer.query_projection(), scorer.output_projection()

        def with_query(w, b):  # [W_q | w], [b_q | b]: the query projection shares the matmul.
            if query is None:
                return w, b
            b_q = query.bias if query.bias is not None else jnp.zeros(query.features, w.dtype)
            return jnp.concatenate([query.kernel, w], 1), jnp.concatenate([b_q, b])

        def from_mixed(w):  # A weight applied to the context, moved before multihead's W_o.
            return w if out_proj is None else out_proj.kernel @ w

        spec = recurrence.DecoderSpec(
            kind=c.cell, score_fn=type(scorer).score_fn, attention=scorer.config,
            attends=scorer.attends, uses_keys=scorer.uses_keys, has_query=query is not None,
            dtype=dtype)
        memory_args = (memory.keys, memory.values, memory.mask, steps, plan)
        context_of = lambda mixed: mixed if out_proj is None else out_proj(mixed)  # noqa: E731
        if c.flow == "bahdanau":
            w_s, b_s = with_query(cell.w_h, cell.hidden_bias())
            p = {"w_s": w_s, "b_s": b_s, "w_c": from_mixed(cell.w_i[e:]),
                 "score": scorer.score_params()}
            states, mixed, weights = recurrence.bahdanau(spec, p, gi_e, carry["rnn"], *memory_args)
            features = jnp.concatenate([states, context_of(mixed), y], -1)
        elif self._feeds_input():
            context = scorer.context_size
            w_cs = self.combine.kernel[context:]  # the attentional layer's s_t rows
            w_s, b_s = with_query(w_cs, jnp.zeros(w_cs.shape[1], w_cs.dtype))
            p = {"w_f": cell.w_i[e:], "w_h": cell.w_h, "b_h": cell.hidden_bias(), "w_s": w_s,
                 "b_s": b_s, "w_c": from_mixed(self.combine.kernel[:context]),
                 "score": scorer.score_params()}
            _, _, weights, features = recurrence.luong(
                spec, p, gi_e, (carry["rnn"], carry["feed"]), *memory_args)
        else:  # Luong without input feeding: the RNN does not depend on attention.
            every = jnp.ones(tgt_in.shape, bool)  # [T, B]
            states, _ = recurrence.rnn(c.cell, dtype, cell.w_h, cell.hidden_bias(), gi_e,
                                       carry["rnn"], every, steps, plan)  # [T, B, Hd]
            context, weights_bt = attn_lib.attend_all(scorer, jnp.swapaxes(states, 0, 1), memory)
            features = jnp.concatenate([jnp.swapaxes(context, 0, 1), states], -1)
            return features, {"attention": weights_bt}, plan
        return features, {"attention": jnp.swapaxes(weights.mean(2), 0, 1)}, plan  # [B, T, S]


def _on_rows(plan: rows_lib.Rows | None):
    """`Cell.project_input`'s product at the real rows of `plan` (every row when None)."""
    return lambda x, w, dtype: rows_lib.linear(x, w, plan, dtype)


def init_params(model: Seq2Seq, rng: jax.Array, src_len: int):
    """Parameters for a model, initialised from a dummy source of length src_len.

    Runs `encode` and one `decode_step`, which touch every parameter (no parameter depends on
    the target length)."""

    def touch(mdl, src):
        memory, carry = mdl.encode(src)
        return mdl.decode_step(carry, jnp.ones((1,), jnp.int32), memory)

    src = image_lib.dummy_source(model.config.image_size, src_len)  # images: src_len unused
    return model.init({"params": rng}, src, method=touch)["params"]


# -------------------------------------------------------------------------- step by step


StepFn = Callable[[jax.Array, Any], tuple[jax.Array, jax.Array, Any]]


def step_fn(model: Seq2Seq, params, memory: attn_lib.Memory) -> StepFn:
    """`decode_step` as the decoders' callback (`attn_jax.eval.decode`):
    step(ids [N], carry) -> (logits [N, V], attention [N, S], new carry)."""

    def step(ids, carry):
        carry, logits, attn = model.apply({"params": params}, carry, ids, memory,
                                          method="decode_step")
        return logits, attn, carry

    return step


def scan_steps(step: StepFn, carry: Any, tgt_in: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A step callback scanned over tgt_in [B, T] (teacher forcing, one token at a time):
    (logits [B, T, V], attention [B, T, S])."""

    def body(carry, ids):  # ids [B]
        logits, attn, carry = step(ids, carry)
        return carry, (logits, attn)

    _, (logits, attn) = jax.lax.scan(body, carry, jnp.swapaxes(tgt_in, 0, 1))  # [T, B, ...]
    return jnp.swapaxes(logits, 0, 1), jnp.swapaxes(attn, 0, 1)


def step_by_step(model: Seq2Seq, params, src: jax.Array, tgt_in: jax.Array):
    """The reference teacher-forced run: `encode`, then `decode_step` scanned over tgt_in [B, T]
    (plain autodiff throughout). Returns (logits [B, T, V], attention [B, T, S])."""
    memory, carry = model.apply({"params": params}, src, method="encode")
    return scan_steps(step_fn(model, params, memory), carry, tgt_in)


def step_by_step_loss(model: Seq2Seq, params, src: jax.Array, tgt_in: jax.Array,
                      tgt_out: jax.Array, smoothing: float = 0.0) -> jax.Array:
    """The step-by-step model's training loss: Σ over real target tokens of the (label-smoothed)
    cross-entropy of `step_by_step`'s full logits. Equal to `Seq2Seq.loss`'s first output
    (tested); this one is plain autodiff throughout."""
    logits, _ = step_by_step(model, params, src, tgt_in)
    loss, _ = loss_lib.cross_entropy(logits, tgt_out, (tgt_out != PAD).astype(jnp.float32),
                                     smoothing)
    return loss.sum()
