"""Supervised attention (train.align_loss_weight): the KL term against a NumPy reference and
exactly 0 at the gold; its gradient through the RNN's fused loss equals step-by-step autodiff;
the gold links the train batches carry, for word and subword vocabularies and a gold file; the
train step lowers the term; every refusal is one line naming the fix, before anything compiles."""

from __future__ import annotations

import itertools
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from attn_jax import train
from attn_jax.data import batches
from attn_jax.data import vocab as vocab_lib
from attn_jax.data.sources import Pair
from attn_jax.data.tokens import PAD
from attn_jax.eval import gold as gold_lib
from attn_jax.model import attention, loss, rnn
from attn_jax.run import config as config_lib
from attn_jax.run import steps
from tests.data_helpers import fake_generate_splits, install_fake_synthetic, make_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny():
    return config_lib.load_config_file(os.path.join(REPO, "configs", "default.py") + ":tiny")


# ------------------------------------------------------------------------------- the loss term


def _reference_gold(links, t, s, possible_weight=1.0):
    """Dense normalised gold [B, T, S] from links [B, M, 2] (all sure) or [B, M, 3] (sure flag)
    by loops (a repeated link once)."""
    out = np.zeros((links.shape[0], t, s))
    for b, row in enumerate(links):
        for link in row:
            if link[0] >= 0:
                sure = len(link) == 2 or link[2] > 0
                out[b, link[0], link[1]] = 1.0 if sure else possible_weight
    total = out.sum(-1, keepdims=True)
    return np.divide(out, total, out=np.zeros_like(out), where=total > 0)


def _reference_kl(attention_, gold):
    """Σ over rows with gold of Σ_{g > 0} g log(g / α), in float64."""
    a, g = np.asarray(attention_, np.float64), np.asarray(gold, np.float64)
    out = 0.0
    for b, t in zip(*np.nonzero(g.sum(-1) > 0)):
        m = g[b, t] > 0
        out += np.sum(g[b, t, m] * np.log(g[b, t, m] / a[b, t, m]))
    return out


def _random_case(seed=0, b=3, t=6, s=5):
    """Masked-softmax α [B, T, S] (rows 1 and 2 with padded sources) and links with -1 padding,
    a repeated link, and target tokens (and a whole sentence) without gold."""
    rng = np.random.RandomState(seed)
    src_len = np.array([5, 3, 1])
    mask = np.arange(s)[None, :] < src_len[:, None]
    alpha = attention.masked_softmax(jnp.asarray(rng.randn(b, t, s), jnp.float32),
                                     jnp.asarray(mask)[:, None, :])
    links = np.full((b, 7, 2), -1, np.int32)
    links[0, :6] = [(0, 0), (0, 2), (1, 4), (3, 1), (3, 1), (4, 0)]  # (3, 1) twice; t=2, 5 none
    links[1, :2] = [(0, 2), (2, 0)]
    # Sentence 2: no gold at all.
    return alpha, links


def test_kl_is_exactly_zero_at_the_normalised_gold_and_positive_elsewhere():
    alpha, links = _random_case()
    gold = loss.gold_attention(jnp.asarray(links), 6, 5)
    has = np.asarray(gold.sum(-1) > 0)
    np.testing.assert_allclose(np.asarray(gold.sum(-1))[has], 1.0, rtol=1e-6)
    # α equal to the gold on every row that has gold (other rows: anything) gives exactly 0.
    at_gold = jnp.where(has[..., None], gold, alpha)
    assert float(loss.alignment_kl(at_gold, gold)) == 0.0
    assert float(loss.alignment_kl(gold, gold)) == 0.0
    assert float(loss.alignment_kl(alpha, gold)) > 0.1
    # One gold row moved slightly off its gold: > 0.
    nudged = at_gold.at[0, 0].set(jnp.array([0.45, 0.0, 0.55, 0.0, 0.0]))
    assert float(loss.alignment_kl(nudged, gold)) > 0.0
    # Rows without gold add nothing, whatever α holds there (even NaN), value and gradient.
    junk = jnp.where(has[..., None], alpha, jnp.nan)
    assert np.isfinite(float(loss.alignment_kl(junk, gold)))
    grad = jax.grad(loss.alignment_kl)(junk, gold)
    assert np.isfinite(np.asarray(grad)).all() and not np.asarray(grad)[~has].any()


def test_possible_links_weigh_possible_weight_beside_sure_ones():
    """Row 0 of sentence 0: sure link to source 0, possible-only to source 2; row 4: possible
    only. At weight 1 both count alike, at 0.5 the sure link holds 2/3, at 0 a row of possible
    links only has no gold."""
    _, links = _random_case(seed=1)
    flagged = np.concatenate([links, np.where(links[..., :1] >= 0, 1, -1)], -1)
    flagged[0, 1, 2] = flagged[0, 5, 2] = 0  # (0, 2) and (4, 0) possible-only.
    for weight in (1.0, 0.5, 0.0):
        gold = np.asarray(loss.gold_attention(jnp.asarray(flagged), 6, 5, weight))
        np.testing.assert_allclose(gold, _reference_gold(flagged, 6, 5, weight), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(loss.gold_attention(jnp.asarray(flagged), 6, 5, 0.5))
                               [0, 0, [0, 2]], [2 / 3, 1 / 3], rtol=1e-6)
    assert not np.asarray(loss.gold_attention(jnp.asarray(flagged), 6, 5, 0.0))[0, 4].any()
    np.testing.assert_allclose(loss.gold_attention(jnp.asarray(flagged), 6, 5),
                               loss.gold_attention(jnp.asarray(links), 6, 5), rtol=1e-6)


def test_gold_and_kl_equal_numpy_references():
    alpha, links = _random_case(seed=3)
    gold = loss.gold_attention(jnp.asarray(links), 6, 5)
    want_gold = _reference_gold(links, 6, 5)
    np.testing.assert_allclose(gold, want_gold, rtol=1e-6)
    assert want_gold[0, 3, 1] == 1.0  # The repeated link counted once.
    np.testing.assert_allclose(loss.alignment_kl(alpha, gold), _reference_kl(alpha, want_gold),
                               rtol=1e-5)
    # The gradient of the cross-entropy part: -g / α where g > 0, 0 elsewhere.
    grad = jax.grad(loss.alignment_kl)(alpha, gold)
    want = np.where(want_gold > 0, -want_gold / np.maximum(np.asarray(alpha), 1e-30), 0.0)
    np.testing.assert_allclose(grad, want, rtol=1e-5)


def _model(scorer, flow="bahdanau", input_feeding=True):
    config = rnn.ModelConfig(src_vocab_size=23, tgt_vocab_size=19, scorer=scorer, flow=flow,
                             input_feeding=input_feeding, embed_size=8, encoder_hidden=6,
                             decoder_hidden=12, attention_size=8, output_size=10, num_heads=2,
                             max_source_len=8, bidirectional=True)
    return rnn.Seq2Seq(config.validate())


def _batch(seed=0, b=4, length=8):
    """src, tgt_in, tgt_out [B, L] with unequal lengths, and diagonal gold links [B, M, 2]
    (target token t -> source token t, where both exist; row 3's last tokens have none)."""
    rng = np.random.RandomState(seed)
    src_len, tgt_len = [7, 4, 2, 6], [5, 6, 3, 4]
    src = np.full((b, length), PAD, np.int32)
    tgt_in = np.full((b, length), PAD, np.int32)
    tgt_out = np.full((b, length), PAD, np.int32)
    links = np.full((b, length, 2), -1, np.int32)
    for r in range(b):
        src[r, :src_len[r]] = rng.randint(4, 23, src_len[r])
        words = rng.randint(4, 19, tgt_len[r])
        tgt_in[r, 0], tgt_in[r, 1:tgt_len[r] + 1] = rnn.BOS, words
        tgt_out[r, :tgt_len[r]], tgt_out[r, tgt_len[r]] = words, rnn.EOS
        n = min(src_len[r], tgt_len[r]) - (2 if r == 3 else 0)
        links[r, :n] = np.stack([np.arange(n), np.arange(n)], 1)
    return tuple(jnp.asarray(a) for a in (src, tgt_in, tgt_out, links))


@pytest.fixture(scope="module")
def additive():
    """A tiny additive-attention (Bahdanau) model and its parameters, shared by the tests below."""
    model = _model("additive")
    return model, jax.jit(lambda key: rnn.init_params(model, key, 8))(jax.random.key(0))


def test_gradient_through_fused_loss_equals_step_by_step_autodiff(additive):
    """The term on the fused recurrence's α (the step's `supervised_attention`, with and without
    the step's loop bounds) against plain autodiff of the step-by-step model's α."""
    model, params = additive
    src, tgt_in, tgt_out, links = _batch()
    batch = {"src": src[None], "tgt_in": tgt_in[None], "tgt_out": tgt_out[None]}

    def fused(p, extent):
        *_, aux = model.apply({"params": p}, src, tgt_in, tgt_out, extent=extent, method="loss")
        return steps.supervised_attention(aux["attention"], links)["align_sum"]

    def reference(p):
        _, alpha = rnn.step_by_step(model, p, src, tgt_in)  # [B, T, S]
        return loss.alignment_kl(alpha, loss.gold_attention(links, 8, 8))

    want, g_want = jax.jit(jax.value_and_grad(reference))(params)
    both = jax.jit(lambda p: [jax.value_and_grad(fused)(p, e) for e in (None, steps.extent(batch))])
    assert float(want) > 0.5
    assert float(optax.tree.norm(g_want["attention"])) > 1e-3  # The term reaches the scorer.
    for got, g_got in both(params):
        np.testing.assert_allclose(got, want, rtol=1e-5)
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_got),
                                jax.tree.leaves(g_want)):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6,
                                       err_msg=jax.tree_util.keystr(path))


def test_train_step_adds_the_term_and_lowers_it(additive):
    """The step's "align_sum" counts the linked tokens of the batch and, with a large weight, a
    few dozen steps on one batch drive it down (without its gradient they would not); a batch
    without links is refused while tracing."""
    model, params = additive
    src, tgt_in, tgt_out, links = _batch(seed=1)
    batch = {"src": src[None], "tgt_in": tgt_in[None], "tgt_out": tgt_out[None],
             "links": links[None]}
    tx = optax.adam(0.1)
    stacked = jax.tree.map(lambda x: x[None], params)  # K = 1 replica
    state = steps.TrainState(step=jnp.zeros(1, jnp.int32), params=stacked,
                             opt_state=jax.vmap(tx.init)(stacked),
                             key=jax.random.key_data(jax.random.key(1))[None])
    step = steps.make_train_step(model, tx, 0.0, align_loss_weight=2.0)
    with pytest.raises(ValueError, match=r"links=True"):
        step(state, {k: v for k, v in batch.items() if k != "links"})
    terms = []
    for _ in range(25):
        state, metrics = step(state, batch)
        terms.append(float(metrics["align_sum"][0]))
        assert float(metrics["align_tokens"][0]) == 5 + 4 + 2 + 2  # Diagonal links per row.
    # Without the term's gradient (weight 1e-9) it stays above 20 over these steps.
    assert terms[0] > 15 and terms[-1] < 0.1 * terms[0], terms


def test_training_rows_gain_the_mean_kl_per_gold_token():
    rows = [{"loss": 1.0}, {"loss": 2.0}]
    window = [{"align_sum": np.array([3.0, 1.0]), "align_tokens": np.array([2.0, 4.0])},
              {"align_sum": np.array([1.0, 1.0]), "align_tokens": np.array([2.0, 0.0])}]
    train._align_rows(rows, window)
    assert [r["align_kl"] for r in rows] == [1.0, 0.5]
    plain = [{"loss": 1.0}]
    train._align_rows(plain, [{"nll_sum": np.array([1.0])}])
    assert plain == [{"loss": 1.0}]  # Off: rows unchanged.


# ------------------------------------------------------------------------------- gold in batches


PAIRS = [Pair("a b c", "x y", sure=((0, 0),), possible=((2, 1),)),
         Pair("a", "x y z", sure=((0, 0), (0, 2)), possible=()),
         Pair("b c", "z", sure=(), possible=()),
         Pair("a b c d e", "x y z w", sure=((4, 3),), possible=((3, 3), (0, 0)))]
# (target token, source token) links per pair, with one token per word.
WORD_LINKS = [{(0, 0), (1, 2)}, {(0, 0), (2, 0)}, set(), {(0, 0), (3, 3), (3, 4)}]


def _split(pairs, src_vocab, tgt_vocab, buckets=(4, 8)):
    split = batches.tokenize_split("train", pairs, src_vocab, tgt_vocab, buckets, 8)
    return batches.add_links(split, src_vocab, tgt_vocab)


def _links_of(row):
    """(target token, source token) pairs of a 'links' row [M, 3]."""
    return {tuple(link[:2]) for link in row.tolist() if link[0] >= 0}


def test_batches_carry_each_examples_token_links():
    src_v = vocab_lib.WordVocab.build(p.src for p in PAIRS)
    tgt_v = vocab_lib.WordVocab.build(p.tgt for p in PAIRS)
    split = _split(PAIRS, src_v, tgt_v)
    small, large = split.bucket_arrays
    assert small["links"].shape == (3, 2, 3) and large["links"].shape == (1, 3, 3)
    assert small["links"].dtype == np.int32 and (small["links"][2] == -1).all()
    for arrays in split.bucket_arrays:
        for i, row in zip(arrays["index"], arrays["links"]):
            assert _links_of(row) == WORD_LINKS[i]
            sure = {(t, j) for j, t in PAIRS[i].sure}
            assert all(link[2] == ((link[0], link[1]) in sure) for link in row if link[0] >= 0)
    data = batches.Data("hand", src_v, tgt_v, (4, 8), 0,
                        {"train": split, "valid": split, "test": split})
    for batch in itertools.islice(batches.train_batches(data, 2, seeds=[0, 1]), 4):
        assert batch["links"].shape[:2] == (2, 2) and batch["links"].shape[3] == 3
        for k, r in np.ndindex(2, 2):
            assert _links_of(batch["links"][k, r]) == WORD_LINKS[batch["index"][k, r]]
    first = next(batches.eval_batches(data, "train", 4))  # 3 examples and a filler row
    assert (first["index"][3] == -1) and (first["links"][3] == -1).all()


class _CharVocab:
    """Subword stand-in: one token per character (spaces are no tokens), or with `spaces` a
    token for each space too, so a sentence's tokens differ from its words' tokens."""

    def __init__(self, spaces=False):
        self.spaces = spaces

    def encode(self, text):
        return [ord(c) for c in text if self.spaces or c != " "]


def test_subword_links_spread_over_the_words_tokens_and_unmappable_pairs_get_none(caplog):
    pairs = [Pair("ab c", "xy", sure=((0, 0),), possible=((1, 0),)),
             Pair("abc", "x yz", sure=((0, 1),), possible=())]
    split = _split(pairs, _CharVocab(), _CharVocab(), buckets=(8,))
    links = split.bucket_arrays[0]["links"]
    # Target word 0 = tokens x, y; source words 0, 1 = tokens a, b and c.
    assert _links_of(links[0]) == {(t, j) for t in (0, 1) for j in (0, 1, 2)}
    assert _links_of(links[1]) == {(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)}
    gold = loss.gold_attention(jnp.asarray(links), 8, 8)
    np.testing.assert_allclose(gold[0, 0, :3], 1 / 3, rtol=1e-6)
    with caplog.at_level(logging.WARNING):
        spaced = _split(pairs, _CharVocab(), _CharVocab(spaces=True), buckets=(8,))
    # Pair 1's target "x yz" tokenizes with a space token: no gold; pair 0 keeps its links.
    assert (spaced.bucket_arrays[0]["links"][1] == -1).all()
    assert _links_of(spaced.bucket_arrays[0]["links"][0]) == _links_of(links[0])
    assert any("1 of 2 train pairs have no gold links" in r.getMessage() for r in caplog.records)


def test_links_of_a_split_without_gold_are_refused():
    pairs = [Pair("a b", "x y")]
    v = vocab_lib.WordVocab.build(["a b x y"])
    with pytest.raises(ValueError, match=r"no gold alignments.*--config\.train\.align_gold"):
        _split(pairs, v, v)


# ------------------------------------------------------------------------------- a gold file


def test_gold_file_reader_checks_lines_links_and_sentences(tmp_path):
    pairs = [("a b c", "x y"), ("a", "x y z")]
    path = tmp_path / "train.gold"
    flag = "config.train.align_gold"
    path.write_text("1-1 3p2\n1-1 1-3\n")
    sure, possible = gold_lib.read_split_gold(str(path), pairs, flag)
    assert sure == [{(0, 0)}, {(0, 0), (0, 2)}] and possible == [{(0, 0), (2, 1)},
                                                                  {(0, 0), (0, 2)}]
    cases = [("1-1\n", r"has 1 lines but the raw train split has 2 pairs"),
             ("1-1\n1x2\n", r"train\.gold:2: '1x2' is not a link"),
             ("1-1\n2-1\n", r"train\.gold:2: link '2-1' is outside train pair 2 of 1 source"),
             ("0-1\n\n", r"train\.gold:1: link '0-1' is outside train pair 1.*1-based")]
    for text, match in cases:
        path.write_text(text)
        with pytest.raises(gold_lib.InputError, match=match) as e:
            gold_lib.read_split_gold(str(path), pairs, flag)
        assert "\n" not in str(e.value)


def test_a_runs_gold_file_replaces_the_datas_own_and_a_bad_one_is_refused(tmp_path,
                                                                            monkeypatch):
    install_fake_synthetic(monkeypatch)
    config = tiny()
    config.data = make_cfg(tmp_path)
    config.train.align_loss_weight = 1.0
    raw = fake_generate_splits({"train": 60, "valid": 10, "test": 12}, 0)["train"]
    path = tmp_path / "train.gold"
    # Every pair's last target word linked to its first source word (the data's own: diagonal).
    path.write_text("".join(f"1-{len(ex.tgt.split())}\n" for ex in raw))
    config.train.align_gold = str(path)
    data = train._load_data(config, str(tmp_path / "work"))
    split = data["train"]
    assert split.sure == [((0, len(raw[i].tgt.split()) - 1),) for i in split.raw_index]
    for arrays in split.bucket_arrays:
        for i, row in zip(arrays["index"], arrays["links"]):
            assert _links_of(row) == {(len(split.tgt_ids[i]) - 1, 0)}
    assert data["test"].sure is not None and "links" not in data["test"].bucket_arrays[0]
    lines = path.read_text().splitlines()
    for bad, match in [(lines[:-1], r"train\.gold has 59 lines but the raw train split has 60"),
                       (["1-40"] + lines[1:], r"train\.gold:1: link '1-40' is outside train pair 1")]:
        path.write_text("".join(line + "\n" for line in bad))
        with pytest.raises(ValueError, match=match):
            train._load_data(config, str(tmp_path / "work"))
    # Off (weight 0, no file): the batches are the ones they always were.
    config.train.align_loss_weight, config.train.align_gold = 0.0, ""
    assert "links" not in train._load_data(config, str(tmp_path / "work"))["train"].bucket_arrays[0]


# ------------------------------------------------------------------------------- config checks


@pytest.mark.parametrize("overrides, match", [
    ({"train.align_loss_weight": -0.5}, r"train\.align_loss_weight must be >= 0, got -0\.5"),
    ({"train.align_loss_weight": 1.0, "train.align_possible_weight": 1.5},
     r"align_possible_weight must be in \[0, 1\]"),
    ({"train.align_gold": "gold.txt"},
     r"train\.align_gold='gold\.txt' is set but train\.align_loss_weight is 0.*"
     r"--config\.train\.align_loss_weight"),
    ({"train.align_loss_weight": 1.0, "data.name": "scenes", "model.encoder": "cnn"},
     r"data\.name='scenes' captions images.*--config\.train\.align_loss_weight=0"),
    ({"train.align_loss_weight": 1.0, "data.name": "images:/tmp/pictures"},
     r"data\.name='images:/tmp/pictures' captions images"),
    ({"train.align_loss_weight": 1.0, "model.scorer": "none"},
     r"model\.scorer='none' has no learned attention weights.*--config\.model\.scorer=additive"),
    ({"train.align_loss_weight": 1.0, "model.scorer": "uniform"},
     r"model\.scorer='uniform' has no learned attention weights"),
    ({"train.align_loss_weight": 1.0, "data.name": "multi30k"},
     r"data\.name='multi30k' has none; use data with gold \(synthetic_hi_en\).*"
     r"--config\.train\.align_gold=PATH"),
    ({"train.align_loss_weight": 1.0, "data.name": "tfds:wmt14_translate/de-en",
      "train.align_gold": "/nonexistent/train.gold"},
     r"train\.align_gold='/nonexistent/train\.gold': no such file"),
])
def test_config_errors_name_the_fix_before_anything_runs(overrides, match):
    config = tiny()
    for key, value in overrides.items():
        config_lib.override(config, key, value)
    with pytest.raises(ValueError, match=match) as e:
        config_lib.validate(config)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("overrides", [
    {"train.align_loss_weight": 1.0},  # The embedded data's own gold.
    {"train.align_loss_weight": 0.5, "model.scorer": "location"},  # Learned position weights.
    {"train.align_loss_weight": 1.0, "model.arch": "transformer", "model.scorer": "scaled_dot"},
    {"train.align_loss_weight": 1.0, "data.name": "multi30k", "train.align_gold": __file__},
])
def test_supported_settings_validate(overrides):
    config = tiny()
    for key, value in overrides.items():
        config_lib.override(config, key, value)
    config_lib.validate(config)
