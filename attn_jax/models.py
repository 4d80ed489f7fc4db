"""RNN encoder-decoder with attention: both decoder flows, one cell scanned over time.

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

`Seq2Seq.encode` and `Seq2Seq.decode_step` are callable on their own (greedy and beam search
drive them); `Seq2Seq.__call__` is the teacher-forced pass: the same `decode_step` scanned over
time with `nn.scan`, returning `(logits, aux)` with aux["attention"] of shape [B, T, S].
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from attn_jax import attention as attn_lib

PAD, BOS, EOS, UNK = 0, 1, 2, 3
CELLS = ("gru", "lstm")
FLOWS = ("bahdanau", "luong")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The model's frozen, typed configuration. Build it with `from_config`; modules read only this."""

    src_vocab_size: int
    tgt_vocab_size: int
    scorer: str = "additive"  # attention.SCORER_NAMES
    flow: str = "bahdanau"  # "bahdanau" (query s_{t-1}) or "luong" (query s_t)
    cell: str = "gru"  # "gru" or "lstm", encoder and decoder
    embed_size: int = 64
    encoder_hidden: int = 64  # Per direction.
    encoder_layers: int = 1
    bidirectional: bool = True
    decoder_hidden: int = 128  # Size of s_t, the attention query.
    attention_size: int = 128  # Additive W q + U h size; multihead total head size.
    num_heads: int = 4  # Multihead only.
    output_size: int = 128  # Bahdanau deep-output size; Luong attentional state h̃ size.
    input_feeding: bool = True  # Luong only: feed h̃_{t-1} into the RNN input.
    max_source_len: int = 64  # Location scorer: source positions W q scores.
    dropout: float = 0.0

    @property
    def annotation_size(self) -> int:
        return self.encoder_hidden * (2 if self.bidirectional else 1)

    @property
    def attention(self) -> attn_lib.AttentionConfig:
        return attn_lib.AttentionConfig(
            scorer=self.scorer, query_size=self.decoder_hidden, key_size=self.annotation_size,
            attention_size=self.attention_size, num_heads=self.num_heads,
            max_source_len=self.max_source_len)

    def validate(self) -> "ModelConfig":
        """Raises ValueError naming the valid choices; cheap, call it before compiling."""
        if self.flow not in FLOWS:
            raise ValueError(f"Unknown decoder flow {self.flow!r}; valid flows: {', '.join(FLOWS)} "
                             "(set --config.model.flow=NAME).")
        if self.cell not in CELLS:
            raise ValueError(f"Unknown RNN cell {self.cell!r}; valid cells: {', '.join(CELLS)} "
                             "(set --config.model.cell=NAME).")
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
                    max_source_len: int) -> "ModelConfig":
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
            max_source_len=max_source_len, dropout=model.dropout).validate()


def _make_cell(kind: str, size: int, **kwargs) -> nn.RNNCellBase:
    return nn.GRUCell(size, **kwargs) if kind == "gru" else nn.OptimizedLSTMCell(size, **kwargs)


def _hidden(kind: str, carry: Any) -> jax.Array:
    """The hidden state s of a cell's carry (an LSTM carry is (c, h))."""
    return carry if kind == "gru" else carry[1]


class Encoder(nn.Module):
    """Stacked (bi)directional RNN over embedded source tokens; respects sequence lengths."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array, lengths: jax.Array, deterministic: bool = True):
        # x [B, S, E], lengths [B] -> annotations [B, S, Da], final [B, Da]
        c = self.config
        for layer in range(c.encoder_layers):
            if layer:
                x = nn.Dropout(c.dropout)(x, deterministic=deterministic)
            fwd = nn.RNN(_make_cell(c.cell, c.encoder_hidden), return_carry=True,
                         name=f"fwd_{layer}")
            if c.bidirectional:
                bwd = nn.RNN(_make_cell(c.cell, c.encoder_hidden), return_carry=True,
                             name=f"bwd_{layer}")
                (cf, cb), x = nn.Bidirectional(fwd, bwd, return_carry=True, name=f"birnn_{layer}")(
                    x, seq_lengths=lengths)
                final = jnp.concatenate([_hidden(c.cell, cf), _hidden(c.cell, cb)], -1)
            else:
                carry, x = fwd(x, seq_lengths=lengths)
                final = _hidden(c.cell, carry)
        return x, final


class Seq2Seq(nn.Module):
    """Embedding -> Encoder -> bridge -> attention decoder (Bahdanau or Luong flow)."""

    config: ModelConfig

    def setup(self):
        c = self.config
        self.src_embed = nn.Embed(c.src_vocab_size, c.embed_size, name="src_embed")
        self.tgt_embed = nn.Embed(c.tgt_vocab_size, c.embed_size, name="tgt_embed")
        self.encoder = Encoder(c, name="encoder")
        self.bridge = nn.Dense(c.decoder_hidden, name="bridge")
        self.attention = attn_lib.make_scorer(c.attention, name="attention")
        self.cell = _make_cell(c.cell, c.decoder_hidden, name="decoder_cell")
        # Bahdanau: the deep output W_d; Luong: the attentional layer W_c.
        self.combine = nn.Dense(c.output_size, use_bias=c.flow == "bahdanau", name="combine")
        self.output = nn.Dense(c.tgt_vocab_size, name="output")  # W_o / W_s
        self.dropout = nn.Dropout(c.dropout)

    def encode(self, src: jax.Array, deterministic: bool = True):
        """src [B, S] -> (memory, carry): attention memory (keys projected once) and s_0."""
        c = self.config
        mask = src != PAD  # [B, S]
        x = self.dropout(self.src_embed(src), deterministic=deterministic)  # [B, S, E]
        annotations, final = self.encoder(x, mask.sum(-1), deterministic)  # [B, S, Da], [B, Da]
        memory = self.attention.prepare(annotations, mask)
        s0 = jnp.tanh(self.bridge(final))  # [B, Hd]
        rnn = s0 if c.cell == "gru" else (jnp.zeros_like(s0), s0)
        carry = {"rnn": rnn}
        if self._feeds_input():
            carry["feed"] = jnp.zeros((src.shape[0], c.output_size), s0.dtype)
        return memory, carry

    def _feeds_input(self) -> bool:
        return self.config.flow == "luong" and self.config.input_feeding

    def decode_step(self, carry, ids: jax.Array, memory: attn_lib.Memory,
                    deterministic: bool = True):
        """One decoder step: ids [B] = y_{t-1} -> (carry, logits [B, V], attention [B, S])."""
        c = self.config
        y = self.dropout(self.tgt_embed(ids), deterministic=deterministic)  # [B, E]
        if c.flow == "bahdanau":
            context, weights = self.attention(_hidden(c.cell, carry["rnn"]), memory)  # [B, Da]
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

    def __call__(self, src: jax.Array, tgt_in: jax.Array, deterministic: bool = True):
        """Teacher forcing: src [B, S], tgt_in [B, T] -> logits [B, T, V], {"attention": [B, T, S]}."""
        memory, carry = self.encode(src, deterministic)
        if self.config.flow == "luong" and not self.config.input_feeding:
            return self._luong_parallel(carry, tgt_in, memory, deterministic)

        def step(module, carry, ids):
            carry, logits, weights = module.decode_step(carry, ids, memory, deterministic)
            return carry, (logits, weights)

        scan = nn.scan(step, variable_broadcast="params", split_rngs={"params": False,
                                                                       "dropout": True},
                       in_axes=1, out_axes=1)
        _, (logits, weights) = scan(self, carry, tgt_in)
        return logits, {"attention": weights}

    def _luong_parallel(self, carry, tgt_in, memory, deterministic):
        """Luong without input feeding: the RNN does not depend on attention, so scan the RNN alone
        and attend from all T states at once (the same scorer, vmapped over T)."""
        y = self.dropout(self.tgt_embed(tgt_in), deterministic=deterministic)  # [B, T, E]

        def rnn_step(cell, c, x):
            return cell(c, x)

        scan = nn.scan(rnn_step, variable_broadcast="params", split_rngs={"params": False},
                       in_axes=1, out_axes=1)
        _, states = scan(self.cell, carry["rnn"], y)  # [B, T, Hd]
        context, weights = attn_lib.attend_all(self.attention, states, memory)  # [B,T,Da], [B,T,S]
        out = jnp.tanh(self.combine(jnp.concatenate([context, states], -1)))  # [B, T, O]
        logits = self.output(self.dropout(out, deterministic=deterministic))  # [B, T, V]
        return logits, {"attention": weights}


def init_params(model: Seq2Seq, rng: jax.Array, src_len: int, tgt_len: int):
    """Parameters for a model, initialised from dummy inputs of the given lengths."""
    src = jnp.ones((1, src_len), jnp.int32)
    tgt = jnp.ones((1, tgt_len), jnp.int32)
    return model.init({"params": rng}, src, tgt)["params"]
