"""Tests for attn_jax.align: the gold format, subword-to-word links and AER on a hand-made fixture
(fixed attention, hand-computed AER), refused input, and, on the embedded grammar's test split
exported in the gold format, the same AER as the training-time metric for the same parameters."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from attn_jax import align
from attn_jax.data import batches, synthetic
from attn_jax.data.tokens import EOS, PAD
from attn_jax.eval import evaluate
from attn_jax.eval import gold as gold_lib
from attn_jax.model import rnn
from attn_jax.run import checkpoint, steps
from attn_jax.run.config import load_config_file
from tests.run_helpers import assert_one_line_error, random_run_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------- hand-made fixture, fixed attention


class PieceVocab:
    """Sentencepiece-like stand-in: a word is cut into pieces of 2 characters."""

    def __init__(self):
        self.ids: dict[str, int] = {}

    @property
    def size(self):
        return 4 + len(self.ids)

    def encode(self, text):
        return [self.ids.setdefault(w[k:k + 2], 4 + len(self.ids))
                for w in text.split() for k in range(0, len(w), 2)]


# Pair 1: source tokens ka | la la | gh ar (words 0, 1, 2), target tokens th e | re d | ho us e
# (words 0, 1, 2), then the EOS row. Rows: target tokens; columns: source tokens.
ATTENTION_1 = np.array([
    [.4, .3, .3, 0, 0],   # th: token argmax is "ka", but "lala" holds more mass (.6): the -> lala
    [.4, .3, .3, 0, 0],   # e
    [.5, .1, 0, .4, 0],   # re: argmax "ka" alone ...
    [.2, 0, 0, .6, .2],   # d: ... but the mean of red's rows puts .6 on "ghar": red -> ghar
    [.1, .1, 0, .4, .4],  # ho
    [.1, .1, 0, .4, .4],  # us
    [.1, .1, 0, .4, .4],  # e: house -> ghar
    [1., 0, 0, 0, 0],     # EOS: excluded (it would link to "ka")
])
PAIRS = [  # (source, target, gold, the target's attention without EOS fixed by the test)
    ("ka lala ghar", "the red house", "2-2 3-3 3p1 2p1"),
    ("xy zw", "uv", "1-1"),
    (" ".join(f"a{chr(97 + k)}" for k in range(20)), "bb", "20-1"),  # 20 tokens: padded to 24.
]
# Predicted: pair 1 {lala-the, ghar-red, ghar-house}, pair 2 {zw-uv}, pair 3 {at-bb}.
# Sure hits: ghar-house, at-bb = 2; possible hits (P = S + ghar-the, lala-the): also lala-the = 3.
# |A| = 3 + 1 + 1 = 5, |S| = 2 + 1 + 1 = 4: AER = 1 - (2 + 3) / (5 + 4) = 4/9.
HAND_AER = 4 / 9


def _fixed_score(vocabs, shapes):
    """A stand-in for the scoring program: each pair's fixed attention, placed in the batch's
    padded [1, B, T, S] array; the rest (padding) zero. Records the batch shapes."""
    src_vocab, tgt_vocab = vocabs
    table = {tuple(src_vocab.encode(PAIRS[0][0])): ATTENTION_1,
             tuple(src_vocab.encode(PAIRS[1][0])): np.array([[.3, .7], [.9, .1]])}
    long_row = np.eye(20)[[19, 0]]  # "bb" -> "at", then EOS -> "aa".
    table[tuple(src_vocab.encode(PAIRS[2][0]))] = long_row

    def score(params, batch):
        del params
        shapes.append(batch["src"].shape)
        out = np.zeros((1,) + batch["tgt_out"].shape + batch["src"].shape[1:], np.float32)
        for r, src in enumerate(batch["src"]):
            ids = tuple(int(i) for i in src if i != PAD)
            if ids:
                rows = int(np.argmax(batch["tgt_out"][r] == EOS)) + 1
                assert table[ids].shape == (rows, len(ids))
                out[0, r, :rows, :len(ids)] = table[ids]
        return {"forced_attention": out}

    return score


def _write(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return str(path)


@pytest.fixture
def fixture_files(tmp_path):
    src = _write(tmp_path / "f.src", [p[0] for p in PAIRS])
    tgt = _write(tmp_path / "f.tgt", [p[1] for p in PAIRS])
    gold = _write(tmp_path / "f.gold", [p[2] for p in PAIRS])
    return src, tgt, gold


@pytest.mark.parametrize("batch_size, shapes", [(1, [(1, 8), (1, 8), (1, 24)]), (8, [(3, 24)])])
def test_hand_made_fixture_has_the_hand_computed_aer(fixture_files, tmp_path, batch_size, shapes):
    vocabs = PieceVocab(), PieceVocab()
    seen = []
    aligner = align.Aligner(_fixed_score(vocabs, seen), None, *vocabs, batch_size=batch_size)
    out = tmp_path / "links.txt"
    with open(out, "w", encoding="utf-8") as f:
        summary = align.align_files(aligner, *fixture_files, out=f)
    assert summary["aer"] == pytest.approx(HAND_AER, abs=1e-12)
    assert (summary["links"], summary["sure"], summary["sure_hits"], summary["possible_hits"]) \
        == (5, 4, 2, 3)
    assert out.read_text().splitlines() == ["1-0 2-1 2-2", "1-0", "19-0"]  # 0-based, source first
    assert seen == shapes  # Sorted by length, each batch padded to a multiple of 8 of its own.


def test_reverse_reads_and_writes_target_first(fixture_files, tmp_path):
    src, tgt, _ = fixture_files
    reversed_gold = [" ".join(sep.join(t.split(sep)[::-1]) for t in p[2].split()
                              for sep in ("-" if "-" in t else "p",)) for p in PAIRS]
    gold = _write(tmp_path / "rev.gold", reversed_gold)
    vocabs = PieceVocab(), PieceVocab()
    aligner = align.Aligner(_fixed_score(vocabs, []), None, *vocabs)
    out = tmp_path / "links.txt"
    with open(out, "w", encoding="utf-8") as f:
        summary = align.align_files(aligner, src, tgt, gold, reverse=True, out=f)
    assert summary["aer"] == pytest.approx(HAND_AER, abs=1e-12)
    assert out.read_text().splitlines() == ["0-1 1-2 2-2", "0-1", "0-19"]
    with pytest.raises(align.AlignError, match="or pass --reverse"):  # Read source-first.
        align.align_files(aligner, src, tgt, gold)


def test_mismatched_files_are_refused_before_scoring(fixture_files, tmp_path):
    src, tgt, gold = fixture_files
    vocabs = PieceVocab(), PieceVocab()
    calls = []
    aligner = align.Aligner(_fixed_score(vocabs, calls), None, *vocabs)
    short = _write(tmp_path / "short", [p[1] for p in PAIRS[:2]])
    with pytest.raises(align.AlignError, match="has 3 lines but --tgt=.* has 2"):
        align.align_files(aligner, src, short, gold)
    with pytest.raises(align.AlignError, match="--gold=.* has 2 lines but --src has 3"):
        align.align_files(aligner, src, tgt, short)
    out_of_range = _write(tmp_path / "bad.gold", ["1-1", "1-2", "20-1"])  # "uv" is 1 word.
    with pytest.raises(align.AlignError, match=r"bad.gold:2: link '1-2' .* 2 source and 1 target"):
        align.align_files(aligner, src, tgt, out_of_range)
    with pytest.raises(align.AlignError, match="cannot read --src"):
        align.align_files(aligner, str(tmp_path / "missing"), tgt, gold)
    assert not calls  # Nothing was scored.


def test_scorers_without_alignments_or_with_a_length_limit_are_refused():
    """`none` has no attention; location scores a fixed number of source positions. Both are
    refused before anything is compiled."""
    vocab = PieceVocab()
    config = rnn.ModelConfig(src_vocab_size=40, tgt_vocab_size=40, scorer="none")
    with pytest.raises(align.AlignError, match="scorer is 'none'"):
        align.Aligner.for_model(rnn.Seq2Seq(config), None, vocab, vocab)
    config = rnn.ModelConfig(src_vocab_size=40, tgt_vocab_size=40, scorer="location",
                                max_source_len=16)
    aligner = align.Aligner.for_model(rnn.Seq2Seq(config), None, vocab, vocab)
    with pytest.raises(align.AlignError, match="line 2 has 17 tokens.* only 16 source positions"):
        aligner.align(["ab", "ab " * 17], ["cd", "cd"])


# --------------------------------------------- the embedded grammar vs training-time AER


def _random_run(tmp_path_factory, spec: str, **model_fields):
    """The config `spec`'s data (TFDS-prepared embedded grammar) and a run of it with random
    parameters (peaked attention, no training), checkpointed at step 3:
    (workdir, config, data, model, params)."""
    workdir = str(tmp_path_factory.mktemp("run"))
    config = load_config_file(os.path.join(REPO, spec))
    config.data.tfds_dir = str(tmp_path_factory.mktemp("tfds"))
    config.model.update(model_fields)
    data = batches.load(config.data, workdir)
    model, state = random_run_state(workdir, config, data.src_vocab.size, data.tgt_vocab.size,
                                    scale=0.5)
    ckpts = checkpoint.Checkpoints(workdir, 2)
    ckpts.save(3, state)
    ckpts.close()
    return workdir, config, data, model, state.params


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return _random_run(tmp_path_factory, "configs/default.py:tiny")


def _links(line: str) -> set[tuple[int, int]]:
    return {tuple(map(int, link.split("-"))) for link in line.split()}


def test_command_on_the_embedded_test_split_gives_the_training_time_aer(run, tmp_path):
    """The command line end to end on the exported test split plus one pair longer than the run's
    largest bucket: the links of the test split score exactly the training-time AER of the same
    parameters (scored at other padded lengths than training's buckets); the long pair gets one
    link per target word; the summary is the AER of all links written."""
    workdir, config, data, model, params = run
    expected = evaluate.run_split(
        data, "test", steps.make_eval_step(model, config.eval.max_decode_extra), params,
        batch_size=config.eval.batch_size, num_seeds=1, attends=True).metrics[0]["aer"]
    assert 0.3 < expected < 1  # Random parameters: a real mix of right and wrong links.
    export = subprocess.run(
        [sys.executable, "-m", "attn_jax.align", f"--workdir={workdir}",
         f"--export_synthetic={tmp_path}"], cwd=REPO, capture_output=True, timeout=600, text=True)
    assert export.returncode == 0, export.stderr
    paths = [str(tmp_path / f"test.{ext}") for ext in ("hi", "en", "gold")]
    assert json.loads(export.stdout.splitlines()[-1]) == {"wrote": paths}
    src_lines, tgt_lines, gold_lines = (gold_lib.read_lines(p, "x") for p in paths)
    assert src_lines == data["test"].src_text and tgt_lines == data["test"].tgt_text
    test_pairs = synthetic.generate_splits({"test": config.data.test_size}, config.data.seed)["test"]
    assert gold_lines == [gold_lib.format_gold(ex.sure, ex.possible) for ex in test_pairs]
    # The long pair: the two pairs of the longest targets, one after the other.
    a, b = sorted(range(len(src_lines)), key=lambda i: -len(tgt_lines[i].split()))[:2]
    (sure_a, pos_a), (sure_b, pos_b) = (
        gold_lib.parse_gold(gold_lines[i], len(src_lines[i].split()), len(tgt_lines[i].split()))
        for i in (a, b))
    di, dj = len(src_lines[a].split()), len(tgt_lines[a].split())
    src_lines.append(f"{src_lines[a]} {src_lines[b]}")
    tgt_lines.append(f"{tgt_lines[a]} {tgt_lines[b]}")
    gold_lines.append(gold_lib.format_gold(
        sure_a | {(i + di, j + dj) for i, j in sure_b}, pos_a | {(i + di, j + dj) for i, j in pos_b}))
    assert len(tgt_lines[-1].split()) + 1 > max(config.data.buckets)
    files = [_write(tmp_path / f"all.{ext}", lines)
             for ext, lines in zip(("hi", "en", "gold"), (src_lines, tgt_lines, gold_lines))]
    out = tmp_path / "all.links"
    proc = subprocess.run(
        [sys.executable, "-m", "attn_jax.align", f"--workdir={workdir}", f"--src={files[0]}",
         f"--tgt={files[1]}", f"--gold={files[2]}", f"--out={out}"],
        cwd=REPO, capture_output=True, timeout=600, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "aligning with its newest checkpoint, step 3" in proc.stderr  # No best one: newest.
    predicted = [_links(line) for line in out.read_text().splitlines()]
    sure, possible = gold_lib.read_gold(files[2], src_lines, tgt_lines)
    n = len(data["test"])
    assert gold_lib.score(predicted[:n], sure[:n], possible[:n])["aer"] == expected  # Exactly.
    assert json.loads(proc.stdout.splitlines()[-1]) == gold_lib.score(predicted, sure, possible)
    for links, src, tgt in zip(predicted, src_lines, tgt_lines):
        assert sorted(j for _, j in links) == list(range(len(tgt.split())))  # One per target word.
        assert all(0 <= i < len(src.split()) for i, _ in links)


def test_export_refuses_runs_it_cannot_reproduce(run, tmp_path):
    """Only a run of the embedded data, generated by today's attn_jax/data/synthetic.py, is exported."""
    workdir, _, data, _, _ = run
    paths = align.export_synthetic(workdir, str(tmp_path / "ok"), "valid")
    assert gold_lib.read_lines(paths[0], "x") == data["valid"].src_text
    other = tmp_path / "run"
    (other / "vocab").mkdir(parents=True)
    with open(os.path.join(workdir, "vocab", "meta.json")) as f:
        meta = json.load(f)
    with open(os.path.join(workdir, "config.json")) as f:
        saved = json.load(f)
    (other / "vocab" / "meta.json").write_text(json.dumps({**meta, "generator": "0123abcd"}))
    (other / "config.json").write_text(json.dumps(saved))
    with pytest.raises(align.AlignError, match="generator 0123abcd, but attn_jax/data/synthetic.py"):
        align.export_synthetic(str(other), str(tmp_path / "x"))
    for name in ("multi30k", "no_such_data"):  # Without gold; unknown to the registry.
        saved["data"]["name"] = name
        (other / "config.json").write_text(json.dumps(saved))
        with pytest.raises(align.AlignError, match=r"only the embedded data \('synthetic_hi_en'\)"):
            align.export_synthetic(str(other), str(tmp_path / "x"))
    with pytest.raises(align.AlignError, match="cannot read .*config.json"):
        align.export_synthetic(str(tmp_path / "nothing"), str(tmp_path / "x"))


def test_main_turns_errors_into_one_line(monkeypatch, tmp_path):
    """Bad input ends the command with "error: ..." on one line (exit status 1)."""
    src = _write(tmp_path / "a.src", ["ab cd"])
    gold = _write(tmp_path / "a.gold", ["1-1 3-1"])
    with pytest.raises(align.AlignError, match="outside the pair") as error:
        gold_lib.read_inputs(src, src, gold)  # Checked before any run is loaded.
    assert_one_line_error(monkeypatch, align, "_align_all", error.value)


def test_rnn_run_has_no_heads_to_align(run):
    workdir, config, data, model, params = run
    aligner = align.Aligner.for_model(model, params, data.src_vocab, data.tgt_vocab)
    with pytest.raises(align.AlignError, match=r"one attention map per target token"):
        aligner.align_maps(["mai ghar"], ["home"], heads=[(0, 0)])


def test_every_transformer_head_aligns_as_at_training_time(tmp_path_factory):
    """A Transformer run (random parameters, 2 layers x 2 heads): `align` on the exported test
    split gives, for the mean map and for every layer and head, exactly the AER that evaluation
    computes for the same parameters; the table names every head."""
    workdir, config, data, model, params = _random_run(
        tmp_path_factory, "configs/transformer.py:tiny", num_heads=2)
    expected = evaluate.run_split(
        data, "test", steps.make_eval_step(model, config.eval.max_decode_extra), params,
        batch_size=config.eval.batch_size, num_seeds=1, attends=True).metrics[0]
    assert set(expected["aer_by_head"]) == {"L1H1", "L1H2", "L2H1", "L2H2"}
    assert len(set(expected["aer_by_head"].values())) > 1  # The heads differ.

    out_dir = tmp_path_factory.mktemp("export")
    paths = align.export_synthetic(workdir, str(out_dir))
    aligner, _ = align.Aligner.from_workdir(workdir)
    every = [(layer, head) for layer in range(2) for head in range(2)]
    summary = align.align_and_score(aligner, *gold_lib.read_inputs(*paths), heads=every)
    assert summary["map"] == align.MEAN
    assert summary["aer"] == pytest.approx(expected["aer"], abs=1e-12)
    assert {name: s["aer"] for name, s in summary["heads"].items()} == pytest.approx(
        expected["aer_by_head"], abs=1e-12)
    table = align.head_table(summary)
    assert "| layer 2 | " in table and "head 2" in table and "mean of all heads" in table
    one = align.align_and_score(aligner, *gold_lib.read_inputs(*paths), heads=[(1, 0)], use="L2H1")
    assert one["aer"] == pytest.approx(expected["aer_by_head"]["L2H1"], abs=1e-12)
