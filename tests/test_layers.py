"""The fused cells are flax's GRUCell / OptimizedLSTMCell (mapped parameters, equal outputs), their
hand-written backward equals autodiff, and Linear is nn.Dense."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn_jax.model import layers

IN, H, B = 5, 4, 3


def _flax_cell(kind):
    return nn.GRUCell(H) if kind == "gru" else nn.OptimizedLSTMCell(H)


def _mapped(kind, flax_params):
    """Our fused parameters holding the same numbers as flax's per-gate ones."""
    gates = ("r", "z", "n") if kind == "gru" else ("i", "f", "g", "o")
    w_i = np.concatenate([flax_params[f"i{g}"]["kernel"] for g in gates], -1)
    w_h = np.concatenate([flax_params[f"h{g}"]["kernel"] for g in gates], -1)
    if kind == "gru":
        return {"w_i": w_i, "w_h": w_h, "b_hn": flax_params["hn"]["bias"],
                "b_i": np.concatenate([flax_params[f"i{g}"]["bias"] for g in gates])}
    return {"w_i": w_i, "w_h": w_h,
            "b_h": np.concatenate([flax_params[f"h{g}"]["bias"] for g in gates])}


@pytest.mark.parametrize("kind", layers.CELLS)
def test_cell_equals_flax_cell_with_mapped_parameters(kind):
    rng = np.random.RandomState(0)
    x = rng.randn(B, IN).astype(np.float32)
    h = rng.randn(B, H).astype(np.float32)
    carry = h if kind == "gru" else (rng.randn(B, H).astype(np.float32), h)
    ref = _flax_cell(kind)
    ref_params = ref.init(jax.random.key(0), carry, x)["params"]
    # Non-zero biases so that every bias is checked.
    ref_params = jax.tree.map(lambda p: p + 0.1 * rng.randn(*p.shape).astype(np.float32),
                              ref_params)
    want_carry, want_h = ref.apply({"params": ref_params}, carry, x)
    cell = layers.Cell(kind, IN, H)
    got_carry, got_h = cell.apply({"params": _mapped(kind, ref_params)}, carry, x)
    np.testing.assert_allclose(got_h, want_h, atol=1e-6)
    for got, want in zip(jax.tree.leaves(got_carry), jax.tree.leaves(want_carry)):
        np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("kind", layers.CELLS)
def test_cell_initialisation_matches_flax_statistics(kind):
    """Same initialisers: lecun-normal input kernels (same fan-in) and one orthogonal block per
    gate in the recurrent kernel."""
    params = layers.Cell(kind, 64, 32).init(
        jax.random.key(0), layers.initial_carry(kind, jnp.zeros((1, 32))), jnp.zeros((1, 64)))
    w_i, w_h = np.asarray(params["params"]["w_i"]), np.asarray(params["params"]["w_h"])
    assert abs(w_i.std() - np.sqrt(1 / 64)) < 0.15 * np.sqrt(1 / 64)
    for block in np.split(w_h, layers.GATES[kind], axis=-1):
        np.testing.assert_allclose(block.T @ block, np.eye(32), atol=1e-5)


@pytest.mark.parametrize("kind", layers.CELLS)
def test_cell_backward_equals_autodiff(kind):
    g = layers.GATES[kind]
    rng = np.random.RandomState(1)
    gi, gh = (rng.randn(B, g * H).astype(np.float32) for _ in range(2))
    h = rng.randn(B, H).astype(np.float32)
    carry = h if kind == "gru" else (rng.randn(B, H).astype(np.float32), h)
    new, vjp = jax.vjp(lambda gi, gh, c: layers.cell_forward(kind, gi, gh, c)[0], gi, gh, carry)
    d_new = jax.tree.map(lambda x: rng.randn(*x.shape).astype(np.float32), new)
    want = vjp(d_new)
    _, res = layers.cell_forward(kind, gi, gh, carry)
    got = layers.cell_backward(kind, res, carry, d_new)
    # The cell's own backward leaves the recurrent matmul's share of d(old h) (dgh W_hᵀ) to the
    # caller; autodiff through gh as an input sees only the direct path, so they agree exactly.
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_linear_equals_dense():
    x = np.random.RandomState(2).randn(3, 7).astype(np.float32)
    for use_bias in (True, False):
        dense = nn.Dense(4, use_bias=use_bias)
        params = dense.init(jax.random.key(0), x)
        got = layers.Linear(7, 4, use_bias=use_bias).apply(params, x)
        np.testing.assert_allclose(got, dense.apply(params, x), atol=1e-6)
        assert jax.tree.map(jnp.shape, layers.Linear(7, 4, use_bias=use_bias).init(
            jax.random.key(0), x)) == jax.tree.map(jnp.shape, params)


def test_bfloat16_matmul_accumulates_in_float32():
    x = np.random.RandomState(3).randn(4, 64).astype(np.float32)
    w = np.random.RandomState(4).randn(64, 8).astype(np.float32)
    got = layers.matmul(x, w, jnp.bfloat16)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, x @ w, rtol=0.05, atol=0.3)
    assert not np.allclose(got, x @ w, atol=1e-6)  # It did compute in bfloat16.
