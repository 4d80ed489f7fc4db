"""Tests for attn_jax.eval.decode on toy step functions (no model): NumPy references and brute force.

The toy step function looks its logits up in a fixed random table indexed by (batch row, whole
prefix fed so far), so every hypothesis has its own distribution and a carry that is not reordered
with its beam gives wrong scores. Its carry also records the fed token history and returns it as
the "attention" row (S = max_len): the returned attention must then replay BOS + the returned
tokens, which checks carry reordering and the attention history together.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn_jax.data.tokens import BOS, EOS, PAD
from attn_jax.eval import decode


def make_toy(batch, vocab, max_len, seed, eos_bias=0.0, masked=(PAD, BOS)):
    """Returns (step_fn, init_carry [B rows], logit table [B, V**L, V])."""
    rng = np.random.default_rng(seed)
    table = 2.0 * rng.normal(size=(batch, vocab**max_len, vocab)).astype(np.float32)
    table[..., EOS] += eos_bias
    table[..., list(masked)] = -np.inf  # tokens that can never be emitted
    return (*toy_from_table(table, max_len), table)


def toy_from_table(table, max_len):
    """(step_fn, init_carry) whose logits are table[row, base-V code of the fed prefix]."""
    batch, vocab = table.shape[0], table.shape[-1]
    jtable = jnp.asarray(table)

    def step_fn(ids, carry):
        n = ids.shape[0]
        code = carry["code"] * vocab + ids  # [N] base-V encoding of the fed prefix
        hist = carry["hist"].at[jnp.arange(n), carry["pos"]].set(ids)  # [N, L]
        logits = jtable[carry["row"], code]  # [N, V]
        new = dict(row=carry["row"], code=code, pos=carry["pos"] + 1, hist=hist)
        return logits, hist.astype(jnp.float32), new

    init = dict(row=jnp.arange(batch), code=jnp.zeros(batch, jnp.int32),
                pos=jnp.zeros(batch, jnp.int32), hist=jnp.zeros((batch, max_len), jnp.int32))
    return step_fn, init


def log_softmax(x):
    x = x - x.max()
    with np.errstate(divide="ignore"):
        return x - np.log(np.exp(x).sum())


def seq_logp(table, b, seq):
    """Log-probability of emitting seq (a list of tokens, BOS not included) in batch row b."""
    vocab = table.shape[-1]
    code, prev, total = 0, BOS, 0.0
    for tok in seq:
        code = code * vocab + prev
        total += log_softmax(table[b, code].astype(np.float64))[tok]
        prev = tok
    return total


def numpy_greedy(table, max_len):
    vocab = table.shape[-1]
    out = []
    for b in range(table.shape[0]):
        code, prev, seq = 0, BOS, []
        for _ in range(max_len):
            code = code * vocab + prev
            prev = int(np.argmax(table[b, code]))
            seq.append(prev)
            if prev == EOS:
                break
        out.append(seq)
    return out


def lp(n, alpha):
    return ((5.0 + n) / 6.0) ** alpha


def brute_force(table, b, max_len, alpha, finished=True):
    """All (score, seq) of row b, best first: EOS-terminated ones, or (finished=False) the
    max_len ones without EOS. Only tokens > EOS (the unmasked ones) are enumerated."""
    words = list(range(EOS + 1, table.shape[-1]))
    seqs = ([list(p) + [EOS] for n in range(max_len) for p in itertools.product(words, repeat=n)]
            if finished else [list(p) for p in itertools.product(words, repeat=max_len)])
    scored = [(seq_logp(table, b, s) / lp(len(s), alpha), s) for s in seqs]
    return sorted(scored, key=lambda x: -x[0])


def check_structure(tokens, attention, lengths):
    """EOS ends a hypothesis, PAD after it, attention replays BOS + tokens and is 0 after EOS."""
    tokens, attention, lengths = (np.asarray(x) for x in (tokens, attention, lengths))
    L = tokens.shape[-1]
    for idx in np.ndindex(lengths.shape):
        seq, att, n = tokens[idx], attention[idx], lengths[idx]
        assert 1 <= n <= L
        assert EOS not in seq[: n - 1] and PAD not in seq[:n]
        assert seq[n - 1] == EOS or n == L
        assert np.all(seq[n:] == PAD)
        for t in range(n):  # the carry history fed up to step t: BOS, tokens[:t], then PAD
            np.testing.assert_array_equal(att[t], [BOS, *seq[:t], *[PAD] * (L - t - 1)])
        assert np.all(att[n:] == 0)


# ---------------------------------------------------------------------------------------- greedy


@pytest.fixture(scope="module")
def toy8():
    """8 rows, vocab 6, max_len 5: some rows emit EOS early, some never do."""
    return make_toy(batch=8, vocab=6, max_len=5, seed=0)


def test_greedy_matches_numpy_argmax_loop(toy8):
    step_fn, init, table = toy8
    out = decode.greedy(step_fn, init, batch_size=8, max_len=5)
    assert out["tokens"].shape == (8, 5) and out["tokens"].dtype == jnp.int32
    assert out["attention"].shape == (8, 5, 5) and out["attention"].dtype == jnp.float32
    assert out["lengths"].shape == (8,) and out["lengths"].dtype == jnp.int32
    ref = numpy_greedy(table, 5)
    lengths = [len(s) for s in ref]
    assert min(lengths) < 5 and any(s[-1] != EOS for s in ref)  # both kinds of rows exist
    np.testing.assert_array_equal(out["lengths"], lengths)
    np.testing.assert_array_equal(out["tokens"], [s + [PAD] * (5 - len(s)) for s in ref])
    check_structure(out["tokens"], out["attention"], out["lengths"])


def test_greedy_jit_equals_eager(toy8):
    step_fn, init, _ = toy8
    eager = decode.greedy(step_fn, init, batch_size=8, max_len=5)
    jitted = jax.jit(lambda c: decode.greedy(step_fn, c, batch_size=8, max_len=5))(init)
    for key in eager:
        np.testing.assert_array_equal(eager[key], jitted[key])


def test_decoding_stops_when_all_rows_finished():
    # EOS is always the argmax: greedy and beam search (K = 1, and K = 2 once both finished slots
    # beat every alive hypothesis) must stop early instead of running max_len = 6 steps.
    steps = []

    def step_fn(ids, pos):
        jax.debug.callback(lambda: steps.append(1))
        logits = jnp.log(jnp.array([0.0, 0.0, 0.7, 0.2, 0.1]))
        return jnp.tile(logits, (ids.shape[0], 1)), jnp.ones((ids.shape[0], 3)), pos + 1

    out = decode.greedy(step_fn, jnp.zeros(2, jnp.int32), batch_size=2, max_len=6)
    jax.effects_barrier()
    assert len(steps) == 1
    np.testing.assert_array_equal(out["tokens"], [[EOS] + [PAD] * 5] * 2)
    np.testing.assert_array_equal(out["lengths"], [1, 1])
    np.testing.assert_array_equal(out["attention"][:, 0], 1.0)
    np.testing.assert_array_equal(out["attention"][:, 1:], 0.0)

    for beam, expected_steps in ((1, 1), (2, 2)):
        steps.clear()
        out = run_beam(step_fn, jnp.zeros(2, jnp.int32), batch=2, beam=beam, max_len=6, alpha=0.0)
        jax.effects_barrier()
        assert len(steps) == expected_steps
        np.testing.assert_array_equal(out["tokens"][:, 0], [[EOS] + [PAD] * 5] * 2)


# ---------------------------------------------------------------------------------------- forced


def test_forced_matches_python_loop(toy8):
    step_fn, init, _ = toy8
    tgt_in = jnp.asarray(np.random.default_rng(1).integers(0, 6, size=(8, 4)), jnp.int32)
    logits, attn = jax.jit(lambda c, t: decode.forced(step_fn, c, t))(init, tgt_in)
    assert logits.shape == (8, 4, 6) and attn.shape == (8, 4, 5)
    carry = init
    for t in range(4):
        ref_logits, ref_attn, carry = step_fn(tgt_in[:, t], carry)
        np.testing.assert_allclose(logits[:, t], ref_logits)
        np.testing.assert_allclose(attn[:, t], ref_attn)


# ----------------------------------------------------------------------------------- beam search


def beam_fn(step_fn, batch, beam, max_len):
    """jit(beam_search) of a B-row carry (tiled inside) and alpha, returning NumPy arrays."""

    @jax.jit
    def fn(init, alpha):
        return decode.beam_search(step_fn, decode.tile_beams(init, beam), batch_size=batch,
                                  beam_size=beam, max_len=max_len, alpha=alpha)

    return lambda init, alpha: jax.tree.map(np.asarray, fn(init, alpha))


def run_beam(step_fn, init, batch, beam, max_len, alpha):
    return beam_fn(step_fn, batch, beam, max_len)(init, alpha)


def test_tile_beams_repeats_rows_consecutively():
    tree = {"a": jnp.arange(3), "b": jnp.arange(6).reshape(3, 2)}
    tiled = decode.tile_beams(tree, 2)
    np.testing.assert_array_equal(tiled["a"], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(tiled["b"][2:4], [[2, 3], [2, 3]])


def test_beam_size_one_never_scores_below_greedy(toy8):
    # K = 1 follows the greedy prefix and also keeps each hypothesis that ended on the way (the
    # top 2K), so where greedy ends in EOS the beam returns it or one that scores better.
    step_fn, init, table = toy8
    search = beam_fn(step_fn, batch=8, beam=1, max_len=5)
    for alpha in (0.0, 0.6):
        beam = search(init, alpha)
        check_structure(beam["tokens"][:, 0], beam["attention"][:, 0], beam["lengths"][:, 0])
        compared = 0
        for b, seq in enumerate(numpy_greedy(table, 5)):
            got = list(beam["tokens"][b, 0, : beam["lengths"][b, 0]])
            score = seq_logp(table, b, got) / lp(len(got), alpha)
            np.testing.assert_allclose(beam["scores"][b, 0], score, rtol=1e-5)
            if seq[-1] == EOS:
                assert score >= seq_logp(table, b, seq) / lp(len(seq), alpha) - 1e-5
                compared += 1
        assert compared >= 2


def test_finished_hypotheses_do_not_narrow_the_beam():
    # Vocab {PAD, BOS, EOS, a=3, b=4}, K = 2. Step 0: p(EOS) = .36, p(a) = .34, p(b) = .30; after
    # b, p(EOS) = .99; after a, p(EOS) = .1; elsewhere uniform over {EOS, a, b}. Top K of K * V
    # would keep EOS and a at step 0, leaving a single live beam ("a"), and never see "b EOS":
    # it would return [EOS], [a a EOS]. The top 2K keeps a and b alive, and finds the exact top 2
    # (alpha = 0: [EOS] then [b EOS]; alpha = 2: [b EOS] (-0.89) then [EOS] (-1.02)).
    table = np.full((1, 5**3, 5), np.log(1 / 3), np.float32)
    table[..., [PAD, BOS]] = -np.inf
    table[0, BOS, 2:] = np.log([0.36, 0.34, 0.30])  # the prefix [BOS] has code BOS = 1
    table[0, BOS * 5 + 3, 2:] = np.log([0.1, 0.45, 0.45])  # [BOS, a]
    table[0, BOS * 5 + 4, 2:] = np.log([0.99, 0.005, 0.005])  # [BOS, b]
    step_fn, init = toy_from_table(table, 3)
    search = beam_fn(step_fn, batch=1, beam=2, max_len=3)
    for alpha, best in ((0.0, [[EOS], [4, EOS]]), (2.0, [[4, EOS], [EOS]])):
        out = search(init, alpha)
        ref = brute_force(table, 0, 3, alpha)[:2]
        assert [s for _, s in ref] == best
        assert [list(out["tokens"][0, k, : out["lengths"][0, k]]) for k in range(2)] == best
        np.testing.assert_allclose(out["scores"][0], [s for s, _ in ref], rtol=1e-5)
        check_structure(out["tokens"], out["attention"], out["lengths"])


def test_negative_length_penalty_is_refused(toy8):
    step_fn, init, _ = toy8
    for alpha in (-0.5, float("nan")):
        with pytest.raises(ValueError, match="length penalty must be >= 0"):
            decode.beam_search(step_fn, decode.tile_beams(init, 2), batch_size=8, beam_size=2,
                               max_len=5, alpha=alpha)
    decode.check_length_penalty(0.0)  # Zero (raw log-probabilities) is allowed.


def test_beam_outputs_sorted_and_well_formed(toy8):
    step_fn, init, table = toy8
    out = run_beam(step_fn, init, batch=8, beam=4, max_len=5, alpha=0.6)
    assert out["tokens"].shape == (8, 4, 5) and out["tokens"].dtype == np.int32
    assert out["attention"].shape == (8, 4, 5, 5) and out["attention"].dtype == np.float32
    assert out["scores"].shape == (8, 4) and out["scores"].dtype == np.float32
    assert out["lengths"].shape == (8, 4) and out["lengths"].dtype == np.int32
    assert np.all(out["scores"][:, :-1] >= out["scores"][:, 1:])
    # Every slot is filled here (the top 2K finish many hypotheses); empty slots, where fewer
    # than K hypotheses finish, are checked by the exhaustive test below.
    live = out["scores"] > -np.inf
    assert live.all()
    check_structure(out["tokens"][live], out["attention"][live], out["lengths"][live])
    for b, k in zip(*np.nonzero(live)):  # every score is the penalised log-prob of its tokens
        seq = list(out["tokens"][b, k, : out["lengths"][b, k]])
        assert seq[-1] == EOS
        score = seq_logp(table, b, seq) / lp(len(seq), 0.6)
        np.testing.assert_allclose(out["scores"][b, k], score, rtol=1e-5)


def test_beam_search_with_room_for_everything_is_exhaustive():
    # Vocab 5 with PAD and BOS masked: words {3, 4} and EOS. max_len 4 gives 15 finished sequences
    # and 16 unfinished ones (31 in all); with K = 31 nothing is ever pruned, so the finished
    # hypotheses must be exactly the brute-force ranking, and the 16 spare slots must be empty.
    step_fn, init, table = make_toy(batch=2, vocab=5, max_len=4, seed=3)
    search = beam_fn(step_fn, batch=2, beam=31, max_len=4)
    mean_lengths = []
    for alpha in (0.0, 0.6, 2.0):
        out = search(init, alpha)
        for b in range(2):
            ref = brute_force(table, b, 4, alpha)
            assert len(ref) == 15
            for k, (score, seq) in enumerate(ref):
                assert list(out["tokens"][b, k, : out["lengths"][b, k]]) == seq
                np.testing.assert_allclose(out["scores"][b, k], score, rtol=1e-5)
            assert np.all(out["scores"][b, 15:] == -np.inf)
            assert np.all(out["tokens"][b, 15:] == PAD) and np.all(out["lengths"][b, 15:] == 0)
            assert np.all(out["attention"][b, 15:] == 0)
        live = out["lengths"] > 0
        check_structure(out["tokens"][live], out["attention"][live], out["lengths"][live])
        mean_lengths.append(out["lengths"][:, 0].mean())
    # Exact search: the best hypothesis can only get longer as alpha grows (here it does).
    short, mid, long = mean_lengths
    assert short <= mid <= long and short < long


def test_beam_returns_alive_when_nothing_finishes():
    # EOS can never be emitted: the result is the best max_len prefixes, scored log p / lp(L).
    step_fn, init, table = make_toy(batch=2, vocab=5, max_len=3, seed=4, masked=(PAD, BOS, EOS))
    out = run_beam(step_fn, init, batch=2, beam=8, max_len=3, alpha=0.6)
    for b in range(2):
        ref = brute_force(table, b, 3, 0.6, finished=False)
        assert [list(t) for t in out["tokens"][b]] == [s for _, s in ref]
        np.testing.assert_allclose(out["scores"][b], [s for s, _ in ref], rtol=1e-5)
    np.testing.assert_array_equal(out["lengths"], 3)
    check_structure(out["tokens"], out["attention"], out["lengths"])


def test_length_penalty_prefers_longer_outputs():
    # Position-dependent toy over {PAD, BOS, EOS, a}: p(EOS) = 0.5, 0.8, 0.9, ... at steps 0, 1, 2.
    # alpha = 0: "EOS" (log 0.5 = -0.69) beats "a EOS" (log 0.4 = -0.92).
    # alpha = 3: "a EOS" scores -0.92 / (7/6)**3 = -0.58 and wins.
    p_eos = jnp.array([0.5, 0.8, 0.9, 0.9])

    def step_fn(ids, pos):
        p = p_eos[pos][:, None]  # [N, 1]
        probs = jnp.concatenate([jnp.zeros_like(p), jnp.zeros_like(p), p, 1 - p], axis=1)
        return jnp.log(probs), jnp.ones((ids.shape[0], 2)), pos + 1

    search = beam_fn(step_fn, batch=3, beam=2, max_len=4)
    best = [search(jnp.zeros(3, jnp.int32), alpha)["tokens"][:, 0] for alpha in (0.0, 3.0)]
    np.testing.assert_array_equal(best[0], [[EOS, PAD, PAD, PAD]] * 3)
    np.testing.assert_array_equal(best[1], [[3, EOS, PAD, PAD]] * 3)
