"""Tests for attn_jax.translate on a small untrained run written here (no training): alignments of
hypotheses without EOS, streaming, repaired input (bad bytes, unknown words), the unfinished-run
warning, and one-line errors for bad workdirs, paths and flags."""

import contextlib
import io
import os
import subprocess
import sys

import pytest

from attn_jax import translate
from attn_jax.data import vocab as vocab_lib
from attn_jax.data.sources import Pair
from attn_jax.data.tokens import BOS, EOS, PAD
from attn_jax.run import checkpoint
from attn_jax.run.config import load_config_file
from tests.run_helpers import assert_one_line_error, random_run_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LEN = 24 + 10  # The tiny config's first bucket + eval.max_decode_extra.


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run stopped at its step-3 checkpoint (of 12 planned), whose model can never emit EOS
    (nor PAD or BOS): every hypothesis runs to the length limit."""
    workdir = str(tmp_path_factory.mktemp("run"))
    config = load_config_file(os.path.join(REPO, "configs/default.py:tiny"))
    assert config.train.num_steps == 12 and tuple(config.data.buckets)[0] == 24
    assert config.eval.max_decode_extra == 10
    pairs = [Pair("mai ghar ja raha hoon", "i am going home"),
             Pair("vah ghar ja rahi hai", "she is going home")]
    src_vocab, tgt_vocab = vocab_lib.load_or_build_vocabs(config.data, workdir, pairs, {})
    # Random parameters in the shapes of the state (no initialisation to compile).
    _, state = random_run_state(workdir, config, src_vocab.size, tgt_vocab.size, scale=0.3)
    state.params["output"]["bias"][:, [PAD, BOS, EOS]] = -1e9
    ckpts = checkpoint.Checkpoints(workdir, 2)
    ckpts.save(3, state)
    ckpts.close()
    return workdir


def _cli(*args, stdin=b""):
    return subprocess.run([sys.executable, "-m", "attn_jax.translate", *args], cwd=REPO,
                          input=stdin, capture_output=True, timeout=600)


def test_translation_streams_batch_by_batch(run_dir):
    translator = translate.Translator(run_dir, batch_size=1)
    assert any("step 3 of 12 planned" in w for w in translator.warnings)
    out, err = io.StringIO(), io.StringIO()
    seen = []

    def lines():  # The next line is read only after the previous one's output was written.
        for text in ["mai ghar ja raha hoon", "", "vah ghar ja rahi hai"]:
            seen.append(out.getvalue().count("\n"))
            yield text

    assert translate.run(translator, lines(), out, None, None, err) == (3, 1)
    assert seen == [0, 1, 2]
    assert out.getvalue().split("\n")[1] == "" and "line 2: empty" in err.getvalue()
    result = translator.translate(["mai ghar"])[0]
    assert not result.ended and len(result.tgt_pieces) == MAX_LEN
    assert len(result.links().split()) == MAX_LEN


def test_alignments_cover_hypotheses_without_eos_and_input_is_repaired(run_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"mai ghar ja raha hoon\nmai \xff\xfe ghar\nmai xyz ghar\n")
    out, align = tmp_path / "out.txt", tmp_path / "align.txt"
    result = _cli(f"--workdir={run_dir}", f"--input={src}", f"--output={out}",
                  f"--alignments={align}", "--batch_size=1")  # The shape compiled above.
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert "Traceback" not in err
    assert "Unable to initialize backend" not in err  # No TPU here: not an error worth showing.
    assert "has not finished training" in err and "step 3 of 12 planned" in err
    assert "note: line 2: bytes that are not UTF-8, replaced by U+FFFD" in err
    assert "note: 2 source tokens in 2 lines are not in the run's vocabulary" in err
    lines = out.read_text(encoding="utf-8").split("\n")[:-1]
    links = align.read_text().split("\n")[:-1]
    assert len(lines) == len(links) == 3
    for line, pharaoh in zip(lines, links):
        assert len(line.split()) == MAX_LEN  # No EOS: the hypothesis ran to the limit ...
        # ... and every one of its tokens is aligned (not all but the last).
        assert [int(link.split("-")[1]) for link in pharaoh.split()] == list(range(MAX_LEN))


def test_read_lines_replaces_bad_bytes_and_notes_them():
    notes = []
    lines = list(translate.read_lines(io.BytesIO(b"ok\r\nbad \xc3(\n\xe0 x\n"), notes))
    assert lines == ["ok", "bad \ufffd(", "\ufffd x"]
    assert notes == ["line 2: bytes that are not UTF-8, replaced by U+FFFD",
                     "line 3: bytes that are not UTF-8, replaced by U+FFFD"]


def test_bad_workdirs_flags_and_paths_are_refused(run_dir, tmp_path):
    with pytest.raises(translate.TranslateError, match="is not a directory"):
        translate.Translator(str(tmp_path / "missing"))
    with pytest.raises(translate.TranslateError, match="has no config.json"):
        translate.Translator(str(tmp_path))
    with pytest.raises(translate.TranslateError, match="length penalty must be >= 0"):
        translate.Translator(run_dir, beam_size=2, length_penalty=-1.0)
    with contextlib.ExitStack() as stack, \
            pytest.raises(translate.TranslateError, match="cannot open --input"):
        translate._open(stack, str(tmp_path / "none.txt"), "rb", "input")


def test_main_turns_errors_into_one_line(run_dir, tmp_path, monkeypatch):
    with open(os.path.join(run_dir, "config.json")) as f:  # A run that stopped before its data.
        (tmp_path / "config.json").write_text(f.read())
    with pytest.raises(translate.TranslateError, match="has no saved vocabulary") as error:
        translate.Translator(str(tmp_path))
    assert_one_line_error(monkeypatch, translate, "_translate_all", error.value)
