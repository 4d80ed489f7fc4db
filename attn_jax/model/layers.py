"""Layers whose parameters exist before any call: `Linear`, and GRU / LSTM cells with fused gates.

The fused recurrences (`attn_jax.model.recurrence`) read these parameters directly, so they are declared
in `setup` rather than on first call (as `nn.Dense` does).

The cells are the same functions as flax's `nn.GRUCell` and `nn.OptimizedLSTMCell` (tests map the
parameters and compare outputs), with all gates of one input in one matrix, so that a step is two
matmuls and the input matmul can run for every time step at once, outside the recurrence:

    GRU  (gates r, z, n):  gi = x W_i + b_i,   gh = h W_h + [0, 0, b_hn]
         r = σ(gi_r + gh_r),  z = σ(gi_z + gh_z),  n = tanh(gi_n + r ⊙ gh_n),  h' = (1 - z) n + z h
    LSTM (gates i, f, g, o):  gi = x W_i,   gh = h W_h + b_h
         c' = σ(f) c + σ(i) tanh(g),  h' = σ(o) tanh(c')

`cell_forward` / `cell_backward` are the elementwise part of a step as pure functions (the fused
recurrences call them); `Cell.__call__` is one whole step (decoding calls it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

CELLS = ("gru", "lstm")
GATES = {"gru": 3, "lstm": 4}


def scoped(name: str):
    """Decorator: runs the function under the JAX named scope `name`, so profiles
    (`attn_jax.run.profiling`) and HLO metadata say which part of the model an op belongs to."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with jax.named_scope(name):
                return fn(*args, **kwargs)
        return wrapped
    return decorate


def matmul(x: jax.Array, w: jax.Array, dtype: Any = None) -> jax.Array:
    """x @ w over the last axis of x, computed in `dtype` (e.g. bfloat16) when given, result f32."""
    if dtype is not None and dtype != w.dtype:
        return jnp.matmul(x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)
    return jnp.matmul(x, w)


class Linear(nn.Module):
    """`nn.Dense` (same parameter names and initialisation) with parameters declared in setup."""

    in_features: int
    features: int
    use_bias: bool = True
    dtype: Any = None  # Matmul dtype (None: the parameters' float32).

    def setup(self):
        self.kernel = self.param("kernel", nn.initializers.lecun_normal(),
                                 (self.in_features, self.features))
        self.bias = (self.param("bias", nn.initializers.zeros_init(), (self.features,))
                     if self.use_bias else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = matmul(x, self.kernel, self.dtype)
        return y + self.bias if self.use_bias else y


def _stacked_orthogonal(gates: int):
    """W_h [H, gates * H]: one orthogonal [H, H] block per gate (flax's per-gate initialisation)."""
    def init(key, shape, dtype=jnp.float32):
        h = shape[0]
        keys = jax.random.split(key, gates)
        return jnp.concatenate([nn.initializers.orthogonal()(k, (h, h), dtype) for k in keys], -1)
    return init


class Cell(nn.Module):
    """A GRU or LSTM cell with fused gate parameters (see the module docstring).

    Parameters: w_i [in, G·H] (lecun normal, as flax's per-gate kernels: same fan-in), w_h [H, G·H]
    (one orthogonal block per gate), GRU: b_i [3H], b_hn [H]; LSTM: b_h [4H]. Carry: h for the GRU,
    (c, h) for the LSTM, as in flax.
    """

    kind: str  # "gru" | "lstm"
    in_features: int
    features: int
    dtype: Any = None

    def setup(self):
        g, h = GATES[self.kind], self.features
        self.w_i = self.param("w_i", nn.initializers.lecun_normal(), (self.in_features, g * h))
        self.w_h = self.param("w_h", _stacked_orthogonal(g), (h, g * h))
        if self.kind == "gru":
            self.b_i = self.param("b_i", nn.initializers.zeros_init(), (g * h,))
            self.b_hn = self.param("b_hn", nn.initializers.zeros_init(), (h,))
        else:
            self.b_h = self.param("b_h", nn.initializers.zeros_init(), (g * h,))

    def input_bias(self) -> jax.Array | None:
        return self.b_i if self.kind == "gru" else None

    def hidden_bias(self) -> jax.Array:
        """The bias added to h W_h, [G·H] (the GRU's r and z parts are zero)."""
        if self.kind == "gru":
            return jnp.concatenate([jnp.zeros((2 * self.features,), self.b_hn.dtype), self.b_hn])
        return self.b_h

    def project_input(self, x: jax.Array, product: Callable = matmul) -> jax.Array:
        """gi = x W_i (+ b_i): [..., in'] -> [..., G·H].

        An x narrower than the cell's input (in' < in) meets the first in' rows of W_i; the
        caller adds the rest of the input's share. product(x, w, dtype) computes x w (default a
        plain matmul; `rows.linear` at a plan's real rows)."""
        w = self.w_i if x.shape[-1] == self.in_features else self.w_i[:x.shape[-1]]
        gi = product(x, w, self.dtype)
        b = self.input_bias()
        return gi if b is None else gi + b

    def __call__(self, carry: Any, x: jax.Array) -> tuple[Any, jax.Array]:
        gh = matmul(hidden(self.kind, carry), self.w_h, self.dtype) + self.hidden_bias()
        carry, _ = cell_forward(self.kind, self.project_input(x), gh, carry)
        return carry, hidden(self.kind, carry)


def hidden(kind: str, carry: Any) -> jax.Array:
    """The hidden state h of a carry (an LSTM carry is (c, h))."""
    return carry if kind == "gru" else carry[1]


def with_hidden(kind: str, carry: Any, h: jax.Array) -> Any:
    """The carry with its hidden state replaced by h."""
    return h if kind == "gru" else (carry[0], h)


def initial_carry(kind: str, h0: jax.Array) -> Any:
    """A carry whose hidden state is h0 (and, for the LSTM, a zero cell state)."""
    return h0 if kind == "gru" else (jnp.zeros_like(h0), h0)


def cell_forward(kind: str, gi: jax.Array, gh: jax.Array, carry: Any) -> tuple[Any, tuple]:
    """The elementwise part of a step: (gi, gh [..., G·H], carry) -> (new carry, residuals)."""
    if kind == "gru":
        h = carry
        r_pre, z_pre, gi_n = jnp.split(gi, 3, axis=-1)
        hr, hz, gh_n = jnp.split(gh, 3, axis=-1)
        r = jax.nn.sigmoid(r_pre + hr)
        z = jax.nn.sigmoid(z_pre + hz)
        n = jnp.tanh(gi_n + r * gh_n)
        return (1.0 - z) * n + z * h, (r, z, n, gh_n)  # h' = (1 − z) n + z h
    c, _ = carry
    i, f, g, o = jnp.split(gi + gh, 4, axis=-1)  # pre-activations a = gi + gh
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    new_c = f * c + i * g  # c' = σ(a_f) c + σ(a_i) tanh(a_g)
    tanh_c = jnp.tanh(new_c)
    return (new_c, o * tanh_c), (i, f, g, o, tanh_c)  # h' = σ(a_o) tanh(c')


def cell_backward(kind: str, res: tuple, carry: Any, d_new: Any) -> tuple[jax.Array, jax.Array, Any]:
    """Reverse of `cell_forward`: (residuals, old carry, d new carry) -> (d gi, d gh, d old carry).

    d old carry is only the direct path (GRU: z ⊙ dh', LSTM: σ(a_f) ⊙ dc'); the path through
    gh = h W_h + b is the caller's (d gh W_hᵀ)."""
    if kind == "gru":
        r, z, n, gh_n = res
        # h' = (1 − z) n + z h: dn = dh' (1 − z), dz = dh' (h − n), dh = dh' z.
        dn = d_new * (1.0 - z)
        dz = d_new * (carry - n)
        # n = tanh(a_n), a_n = gi_n + r ⊙ gh_n: da_n = dn (1 − n²); dr = da_n ⊙ gh_n.
        dn_pre = dn * (1.0 - n * n)
        # r = σ(a_r), z = σ(a_z), σ' = σ (1 − σ): da_r = dr r (1 − r), da_z = dz z (1 − z).
        dr_pre = dn_pre * gh_n * r * (1.0 - r)
        dz_pre = dz * z * (1.0 - z)
        # a_r = gi_r + gh_r, a_z = gi_z + gh_z, a_n = gi_n + r ⊙ gh_n.
        dgi = jnp.concatenate([dr_pre, dz_pre, dn_pre], -1)
        dgh = jnp.concatenate([dr_pre, dz_pre, dn_pre * r], -1)
        return dgi, dgh, d_new * z
    i, f, g, o, tanh_c = res
    c, _ = carry
    dc_new, dh = d_new
    # h' = o tanh(c'): do = dh' tanh(c'), dc' += dh' o (1 − tanh² c').
    do = dh * tanh_c
    dc = dc_new + dh * o * (1.0 - tanh_c * tanh_c)
    # c' = f c + i g with i, f, o = σ(a), g = tanh(a_g):
    # da_i = dc' g i (1 − i), da_f = dc' c f (1 − f), da_g = dc' i (1 − g²), da_o = do o (1 − o).
    dgates = jnp.concatenate([dc * g * i * (1.0 - i), dc * c * f * (1.0 - f),
                              dc * i * (1.0 - g * g), do * o * (1.0 - o)], -1)
    # a = gi + gh: d gi = d gh = da. Direct: dc = dc' f; h reaches h' only through gh.
    return dgates, dgates, (dc * f, jnp.zeros_like(dh))
