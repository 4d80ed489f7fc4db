"""Tests for attn_jax.eval.evaluate with stand-in steps (no model): one decoder chosen once, AER over
words with a sentencepiece vocabulary, and the beam step's length-penalty check."""

import numpy as np
import pytest

from attn_jax.data import batches
from attn_jax.data import vocab as vocab_lib
from attn_jax.data.sources import Pair
from attn_jax.data.tokens import EOS
from attn_jax.eval import evaluate, metrics
from attn_jax.run import steps

# Two sentences with gold links (src word, tgt word): exactly one sure link per target word.
PAIRS = [
    Pair("mai ghar ja raha hoon", "i am going home",
         sure=((0, 0), (4, 1), (2, 2), (1, 3)), possible=((3, 2),)),
    Pair("vah kitab padh rahi hai", "she is reading the book",
         sure=((0, 0), (4, 1), (2, 2), (1, 3), (1, 4)), possible=()),
]
BUCKET = 24


@pytest.fixture(scope="module")
def spm_data():
    """The pairs tokenized by small sentencepiece models, so most words are several pieces."""
    src = vocab_lib.SentencePieceVocab.train([p.src for p in PAIRS] * 10, 24, "bpe")
    tgt = vocab_lib.SentencePieceVocab.train([p.tgt for p in PAIRS] * 10, 26, "bpe")
    split = batches.tokenize_split("test", PAIRS, src, tgt, (BUCKET,), BUCKET)
    return batches.Data(name="synthetic_hi_en", src_vocab=src, tgt_vocab=tgt, buckets=(BUCKET,),
                         seed=0, splits={"test": split})


class FakeSteps:
    """Stand-in EvalStep (score, greedy) and beam step over K = 1 replica: the attention follows
    the gold sure links word by word (uniform over a source word's pieces); both decoders return
    the reference. Counts the calls of each decoder."""

    def __init__(self, data):
        self.split = data["test"]
        self.vocabs = {"src": data.src_vocab, "tgt": data.tgt_vocab}
        self.rows = {tuple(ids): i for i, ids in enumerate(self.split.src_ids)}
        self.calls = {"greedy": 0, "beam": 0}

    def score(self, params, batch):
        rows, length = batch["src"].shape
        attention = np.zeros((1, rows, length, length), np.float32)  # [K, B, T, S]
        for r, i in enumerate(batch["index"]):
            if i < 0:
                continue
            src_word = evaluate.word_index(self.vocabs["src"], self.split.src_text[i])
            tgt_word = evaluate.word_index(self.vocabs["tgt"], self.split.tgt_text[i])
            gold = dict((t, s) for s, t in self.split.sure[i])
            for t, word in enumerate(tgt_word):
                pieces = np.flatnonzero(src_word == gold[word])
                attention[0, r, t, pieces] = 1.0 / len(pieces)
        return {"nll": np.ones((1, rows)), "weight": np.ones((1, rows)),
                "forced_attention": attention}

    def _references(self, src):
        rows, length = src.shape
        tokens = np.zeros((1, rows, length + 2), np.int32)
        lengths = np.zeros((1, rows), np.int32)
        for r, ids in enumerate(src):
            i = self.rows.get(tuple(ids[ids != 0]))
            if i is not None:
                ref = list(self.split.tgt_ids[i]) + [EOS]
                tokens[0, r, :len(ref)], lengths[0, r] = ref, len(ref)
        attention = np.zeros((1, rows, length + 2, length), np.float32)
        return {"tokens": tokens, "attention": attention, "lengths": lengths}

    def greedy(self, params, src):
        self.calls["greedy"] += 1
        return self._references(src)

    def beam(self, params, src, alpha):
        self.calls["beam"] += 1
        return self._references(src)

    def __call__(self, params, batch):  # The former combined eval step (score + greedy).
        return {**self.score(params, batch), **self.greedy(params, batch["src"])}


PARAMS = {"w": np.zeros((1, 1))}  # K = 1 replica.


def test_word_index_maps_pieces_to_words(spm_data):
    vocab = spm_data.src_vocab
    for text in (p.src for p in PAIRS):
        words = evaluate.word_index(vocab, text)
        assert len(words) == len(vocab.encode(text)) > len(text.split())  # Real subwords.
        assert list(words) == sorted(words) and words[-1] == len(text.split()) - 1
        starts = [i for i, piece in enumerate(vocab.pieces(vocab.encode(text)))
                  if piece.startswith("\u2581")]
        assert list(np.flatnonzero(np.diff(words, prepend=-1))) == starts


def test_aer_with_sentencepiece_is_over_words(spm_data):
    # The stand-in attention follows the gold links, so the word-level AER is exactly 0; read at
    # subword positions (as word indices) it would not be.
    fake = FakeSteps(spm_data)
    out = evaluate.run_split(spm_data, "test", fake, PARAMS, batch_size=4, num_seeds=1,
                             attends=True)
    assert out.metrics[0]["aer"] == pytest.approx(0.0)
    assert out.metrics[0]["bleu"] == pytest.approx(100.0)
    assert 0.0 <= out.metrics[0]["attention_entropy"] <= 1.0
    split = spm_data["test"]
    batch = next(batches.eval_batches(spm_data, "test", 4))
    attention = fake.score(PARAMS, batch)["forced_attention"][0]
    by_token = [metrics.argmax_alignment(attention[r], len(split.src_ids[i]),
                                         len(split.tgt_ids[i]))
                for r, i in enumerate(batch["index"]) if i >= 0]
    assert metrics.aer(by_token, split.sure, split.possible) > 0.3


def test_beam_evaluation_decodes_once(spm_data):
    fake = FakeSteps(spm_data)
    out = evaluate.run_split(spm_data, "test", fake, PARAMS, batch_size=4, num_seeds=1,
                             attends=True, beam_step=fake.beam, length_penalty=0.6)
    assert fake.calls == {"greedy": 0, "beam": 1}
    assert out.hyps[0] == [p.tgt for p in PAIRS]
    translations = evaluate.translate_texts(spm_data, fake, PARAMS, [PAIRS[1].src], 4,
                                            beam_step=fake.beam)
    assert fake.calls == {"greedy": 0, "beam": 2}
    ids, attention = translations[0][0]
    assert spm_data.tgt_vocab.decode(ids) == PAIRS[1].tgt and ids[-1] == EOS
    assert attention.shape == (len(ids), BUCKET)


def test_beam_step_refuses_a_negative_length_penalty():
    beam = steps.make_beam_step(None, beam_size=2, extra_len=1)  # Checked before any tracing.
    with pytest.raises(ValueError, match="length penalty must be >= 0"):
        beam(PARAMS, np.ones((1, 4), np.int32), -1.0)


def test_per_head_aer_entropy_and_best_head_on_hand_built_maps():
    """Two sentences, one layer of two heads: head 1 points every target word at its gold source
    word, head 2 at the wrong one; AER per head is then exactly 0 and 1 (metrics.aer), head 1 is
    the best, and each head's entropy is its sum over tokens divided by the token count."""
    sure = [{(0, 0), (1, 1)}, {(0, 0)}]
    right = [{(0, 0), (1, 1)}, {(0, 0)}]
    wrong = [{(1, 0), (0, 1)}, {(1, 0)}]
    predicted = np.empty((1, 1, 2, 2), dtype=object)  # [K, L, H, n]
    for i in range(2):
        predicted[0, 0, 0, i], predicted[0, 0, 1, i] = right[i], wrong[i]
    heads = {"shape": (1, 2), "entropy": np.array([[[1.5, 3.0]]]), "predicted": predicted}
    split = type("Split", (), {"sure": sure, "possible": [set(), set()]})()
    out = evaluate._head_metrics(heads, 0, 3, split, 2, gold=True)  # noqa: SLF001
    assert out["aer_by_head"] == {"L1H1": 0.0, "L1H2": 1.0}
    assert (out["best_head"], out["aer_best_head"]) == ("L1H1", 0.0)
    assert out["attention_entropy_by_head"] == {"L1H1": 0.5, "L1H2": 1.0}
    assert "aer_by_head" not in evaluate._head_metrics(heads, 0, 3, split, 2, gold=False)  # noqa: SLF001
    assert evaluate.head_name(1, 3) == "L2H4"
