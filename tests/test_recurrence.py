"""Each fused recurrence (`recurrence.rnn`, `bahdanau`, `luong`) against autodiff of a plain
`lax.scan` of the same equations, written out here: outputs and the gradient of every input,
for GRU and LSTM, the additive and dot scorers and no attention, with ragged and fully padded
source rows; the bounded cases add a traced loop bound (`steps`) and a real-row plan (`rows`).

A failure names the loop that broke; tests/test_models.py holds the whole model to the
step-by-step one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn_jax.model import attention, recurrence
from attn_jax.model import rows as rows_lib

B, S, T, H = 3, 5, 4, 4  # batch, source, target, hidden
A, DV, OUT = 3, 2, 3  # additive attention size, value size, Luong attentional size
GATES = {"gru": 3, "lstm": 4}
SOURCE_LENGTHS = np.array([5, 2, 0])  # full, ragged, fully padded (a filler row)
TARGET_LENGTHS = np.array([3, 2, 1])  # bounded cases: the loops run max = 3 of T = 4 steps
TOL = dict(rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------- the equations, plain JAX


def _hidden(kind, carry):
    return carry if kind == "gru" else carry[1]


def _cell(kind, gi, gh, carry):
    """GRU: r = σ(gi_r + gh_r), z = σ(gi_z + gh_z), n = tanh(gi_n + r gh_n), h' = (1-z) n + z h.
    LSTM: i, f, g, o = σ, σ, tanh, σ of gi + gh; c' = f c + i g, h' = o tanh(c')."""
    if kind == "gru":
        gi_r, gi_z, gi_n = jnp.split(gi, 3, -1)
        gh_r, gh_z, gh_n = jnp.split(gh, 3, -1)
        r, z = jax.nn.sigmoid(gi_r + gh_r), jax.nn.sigmoid(gi_z + gh_z)
        n = jnp.tanh(gi_n + r * gh_n)
        return (1 - z) * n + z * carry
    c, _ = carry
    a_i, a_f, a_g, a_o = jnp.split(gi + gh, 4, -1)
    c = jax.nn.sigmoid(a_f) * c + jax.nn.sigmoid(a_i) * jnp.tanh(a_g)
    return c, jax.nn.sigmoid(a_o) * jnp.tanh(c)


def _attend(scorer, q, keys, values, mask, sp):
    """(α [B, 1, S], mixed [B, DV]): e = vᵀ tanh(q + k_j) or qᵀ k_j, softmax over real j."""
    if scorer == "none":
        return jnp.zeros((q.shape[0], 1, S)), jnp.zeros((q.shape[0], DV))
    if scorer == "additive":
        e = jnp.tanh(q[:, None, :] + keys) @ sp["v"]
    else:
        e = jnp.einsum("bd,bsd->bs", q, keys)
    alpha = jax.nn.softmax(jnp.where(mask, e, -1e9), -1) * mask  # a filler row: all zero
    return alpha[:, None, :], jnp.einsum("bs,bsd->bd", alpha, values[:, :, 0])


def _rnn_reference(kind, w_h, b_h, gi, carry0, mask):
    def step(carry, xs):
        gi_t, m_t = xs
        new = _cell(kind, gi_t, jnp.matmul(_hidden(kind, carry), w_h) + b_h, carry)
        new = jax.tree.map(lambda n, o: jnp.where(m_t[:, None], n, o), new, carry)
        return new, _hidden(kind, new)

    final, hs = jax.lax.scan(step, carry0, (gi, mask))
    return hs, final


def _query_width(scorer):
    return A if scorer == "additive" else 0  # dot and none: q = s


def _bahdanau_reference(kind, scorer, p, gi_e, carry0, keys, values, mask):
    def step(carry, gi_t):
        s = _hidden(kind, carry)
        sg = s @ p["w_s"] + p["b_s"]
        qw = _query_width(scorer)
        q, gh = (sg[:, :qw], sg[:, qw:]) if qw else (s, sg)
        alpha, mixed = _attend(scorer, q, keys, values, mask, p["score"])
        new = _cell(kind, gi_t + mixed @ p["w_c"], gh, carry)
        return new, (_hidden(kind, new), mixed, alpha)

    return jax.lax.scan(step, carry0, gi_e)[1]


def _luong_reference(kind, scorer, p, gi_e, carry0, keys, values, mask):
    def step(carry, gi_t):
        cell_carry, feed = carry
        gh = _hidden(kind, cell_carry) @ p["w_h"] + p["b_h"]
        new = _cell(kind, gi_t + feed @ p["w_f"], gh, cell_carry)
        s = _hidden(kind, new)
        sq = s @ p["w_s"] + p["b_s"]
        qw = _query_width(scorer)
        q, pre = (sq[:, :qw], sq[:, qw:]) if qw else (s, sq)
        alpha, mixed = _attend(scorer, q, keys, values, mask, p["score"])
        h_tilde = jnp.tanh(pre + mixed @ p["w_c"])
        return (new, h_tilde), (s, mixed, alpha, h_tilde)

    return jax.lax.scan(step, carry0, gi_e)[1]


# ------------------------------------------------------------------------------- the checks


def _randn(rng, *shape):
    return jnp.asarray(0.5 * rng.randn(*shape), jnp.float32)


def _carry(rng, kind, *lead):
    h = _randn(rng, *lead, H)
    return h if kind == "gru" else (_randn(rng, *lead, H), h)


def _masked(c, out_mask):
    """c times out_mask [T, B] when c is per step: [T, B, ...] or [T, D, B, ...]."""
    if c.shape[0] != T:
        return c  # a final carry
    m = out_mask if c.shape[1] == B else out_mask[:, None, :]
    return c * m.reshape(m.shape + (1,) * (c.ndim - m.ndim))


def _compare(fused, reference, args, out_mask, steps=None, no_grad=()):
    """Outputs at t < steps (the fused loops output zeros past the bound) and the vjp of every
    arg for random cotangents that are zero where out_mask [T, B] is False; reference gradients
    must be nonzero except at the paths that start with a prefix in no_grad."""
    rng = np.random.RandomState(1)
    out_shapes = jax.eval_shape(reference, *args)
    cts = jax.tree.map(lambda s: _masked(_randn(rng, *s.shape), out_mask), out_shapes)

    def run(args, cts, steps):
        got, vjp_got = jax.vjp(lambda *a: fused(*a, steps), *args)
        want, vjp_want = jax.vjp(reference, *args)
        return got, want, vjp_got(cts), vjp_want(cts)

    lowered = jax.jit(run).lower(args, cts, steps)  # One program per case.
    program = lowered.compile()
    got, want, g_got, g_want = program(args, cts, steps)
    n = T if steps is None else int(steps)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
        a, b = (a[:n], b[:n]) if a.shape[0] == T else (a, b)
        np.testing.assert_allclose(a, b, **TOL, err_msg=f"output {jax.tree_util.keystr(path)}")
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_got), jax.tree.leaves(g_want)):
        name = jax.tree_util.keystr(path)
        np.testing.assert_allclose(a, b, **TOL, err_msg=f"gradient {name}")
        if not name.startswith(no_grad):
            assert np.abs(np.asarray(b)).max() > 0, f"reference gradient {name} is all zero"


def _bounds(bounded):
    """(steps, row plan, cotangent mask [T, B]) for the decoders: the target lengths, or none."""
    if not bounded:
        return None, None, np.ones((T, B), bool)
    real = np.arange(T)[:, None] < TARGET_LENGTHS[None, :]  # [T, B]
    return jnp.int32(TARGET_LENGTHS.max()), rows_lib.plan(jnp.asarray(real).reshape(-1), 2), real


@pytest.mark.parametrize("kind, directions, bounded", [
    ("gru", 2, True), ("lstm", 2, False), ("lstm", 0, True)])
def test_rnn_loop_matches_scan_reference(kind, directions, bounded):
    """The encoder loop (both directions in one loop: w_h [D, H, G·H]) and Luong's plain one
    (w_h [H, G·H]), frozen past each row's end."""
    rng = np.random.RandomState(0)
    lead = (directions,) if directions else ()
    g = GATES[kind] * H
    lengths = np.array([4, 2, 0])
    mask = jnp.asarray(np.arange(T)[:, None] < lengths[None, :])  # [T, B]
    w_h, b_h = _randn(rng, *lead, H, g), _randn(rng, *lead, *((1,) if lead else ()), g)
    gi = _randn(rng, T, *lead, B, g)
    args = (w_h, b_h, gi, _carry(rng, kind, *lead, B))
    steps, plan, out_mask = None, None, np.ones((T, B), bool)
    if bounded:  # Every row ends by step 3: the loop stops there; the plan holds the real rows.
        mask = mask & (jnp.arange(T) < 3)[:, None]
        steps, plan = jnp.int32(3), rows_lib.plan(mask.reshape(-1), 2)
        out_mask = np.broadcast_to(np.arange(T)[:, None] < 3, (T, B))

    def fused(w_h, b_h, gi, carry0, steps):
        return recurrence.rnn(kind, None, w_h, b_h, gi, carry0, mask, steps, plan)

    _compare(fused, lambda *a: _rnn_reference(kind, *a, mask), args, out_mask, steps)


def _decoder_case(loop, kind, scorer, rng):
    """(spec, p, gi_e, carry0, keys, values, mask) with random parameters of the right sizes."""
    cls = attention.scorer_class(scorer)
    qw, g = _query_width(scorer), GATES[kind] * H
    rest = g if loop == "bahdanau" else OUT
    spec = recurrence.DecoderSpec(
        kind=kind, score_fn=cls.score_fn,
        attention=attention.AttentionConfig(scorer=scorer, query_size=H, key_size=H,
                                            attention_size=A),
        attends=cls.attends, uses_keys=cls.uses_keys, has_query=qw > 0)
    p = {"w_s": _randn(rng, H, qw + rest), "b_s": _randn(rng, qw + rest),
         "w_c": _randn(rng, DV, rest), "score": {"v": _randn(rng, A)} if qw else {}}
    carry0 = _carry(rng, kind, B)
    if loop == "luong":
        p.update(w_f=_randn(rng, OUT, g), w_h=_randn(rng, H, g), b_h=_randn(rng, g))
        carry0 = (carry0, _randn(rng, B, OUT))
    keys = _randn(rng, B, S, A if qw else H)  # U h_j (additive) or h_j (dot: |q| = |s| = H)
    values = _randn(rng, B, S, 1, DV)
    mask = jnp.asarray(np.arange(S)[None, :] < SOURCE_LENGTHS[:, None])
    return spec, p, _randn(rng, T, B, g), carry0, keys, values, mask


LOOPS = {"bahdanau": (recurrence.bahdanau, _bahdanau_reference),
         "luong": (recurrence.luong, _luong_reference)}


def _check_decoder(loop, kind, scorer, bounded):
    spec, p, gi_e, carry0, keys, values, mask = _decoder_case(loop, kind, scorer,
                                                              np.random.RandomState(0))
    steps, plan, out_mask = _bounds(bounded)
    fused_loop, reference_loop = LOOPS[loop]

    def fused(p, gi_e, carry0, keys, values, steps):
        return fused_loop(spec, p, gi_e, carry0, keys, values, mask, steps, plan)

    def reference(*a):
        return reference_loop(kind, scorer, *a, mask)

    # No attention: nothing reaches w_c, the keys or the values.
    none = ("[0]['w_c']", "[3]", "[4]") if scorer == "none" else ()
    _compare(fused, reference, (p, gi_e, carry0, keys, values), out_mask, steps, none)


@pytest.mark.parametrize("kind, scorer, bounded", [
    ("gru", "additive", False), ("gru", "dot", False), ("lstm", "additive", True),
    ("lstm", "dot", False), ("gru", "none", False)])
def test_bahdanau_loop_matches_scan_reference(kind, scorer, bounded):
    """Query s_{t-1}, context into the cell's input."""
    _check_decoder("bahdanau", kind, scorer, bounded)


@pytest.mark.parametrize("kind, scorer, bounded", [
    ("gru", "additive", False), ("gru", "dot", True), ("lstm", "additive", False),
    ("lstm", "dot", False)])
def test_luong_loop_matches_scan_reference(kind, scorer, bounded):
    """Query s_t, attentional state h̃_t = tanh(W_c [c_t; s_t]) fed into the next step."""
    _check_decoder("luong", kind, scorer, bounded)
