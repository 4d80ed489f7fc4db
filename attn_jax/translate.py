r"""Translate raw text with a trained run: the best checkpoint and the run's own vocabulary.

    python -m attn_jax.translate --workdir=runs/demo < in.txt > out.txt
    python -m attn_jax.translate --workdir=runs/demo --beam_size=5 --alignments=align.txt \
        --heatmaps=heatmaps/ < in.txt > out.txt

One detokenized line out per line in, in order, written and flushed batch by batch (--batch_size
lines), so output starts before the input ends. Nothing is dropped, and every repair is a note on
stderr: empty input lines give empty output lines; lines longer than the largest length bucket are
translated from their first tokens (truncated); bytes that are not UTF-8 are replaced by U+FFFD;
the source tokens the vocabulary does not know (read as <unk>) are counted. A run that has not
finished training (no results.json) is translated with a warning naming the checkpoint's step.
--alignments writes Pharaoh-style "i-j" links (source token i, target token j; argmax of the
attention; subword tokens for sentencepiece vocabularies), one for every target token but EOS.
Bad input (no such workdir, no vocabulary or checkpoint in it, a bad flag or path) ends with a
one-line error naming the fix and exit status 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

import jax
import numpy as np
from absl import flags

from attn_jax.data import batches
from attn_jax.data import vocab as vocab_lib
from attn_jax.data.tokens import EOS, UNK
from attn_jax.eval import decode, evaluate, plots
from attn_jax.model import arch
from attn_jax.run import checkpoint, cli, steps
from attn_jax.run import config as config_lib


class TranslateError(Exception):
    """Input translate cannot use; the message names the fix (the command prints it as is)."""


@dataclasses.dataclass(frozen=True)
class Translation:
    text: str  # Detokenized hypothesis.
    src_pieces: list[str]  # One label per source token.
    tgt_pieces: list[str]  # One label per emitted token, EOS included when emitted.
    attention: np.ndarray | None  # [len(tgt_pieces), len(src_pieces)]; None for an empty line.
    ended: bool = False  # Emitted EOS (False: stopped at the length limit, or an empty line).

    def links(self) -> str:
        """Pharaoh "i-j" argmax links of every target token but EOS."""
        return pharaoh(self.attention, len(self.tgt_pieces) - self.ended)


def pharaoh(attention: np.ndarray | None, num_target: int) -> str:
    """Argmax links "i-j" for the first num_target target tokens."""
    if attention is None or not attention.size:
        return ""
    return " ".join(f"{int(np.argmax(attention[j]))}-{j}"
                    for j in range(min(num_target, len(attention))))


def _restore(workdir: str, config, state, best: bool):
    """(state, step, which): the best checkpoint by valid BLEU if asked and any, else the newest."""
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise TranslateError(f"{workdir} has no checkpoint yet; let its training reach its first "
                             "checkpoint (train.checkpoint_every) before translating.")
    ckpts = checkpoint.Checkpoints(workdir, config.train.keep_checkpoints)
    try:
        step = ckpts.best.best_step() if best else None
        if step is not None:
            return ckpts.restore(state, best=True), step, "best"
        if ckpts.latest_step() is None:
            raise TranslateError(f"{workdir} has no checkpoint yet; let its training reach its "
                                 "first checkpoint (train.checkpoint_every) before translating.")
        state = ckpts.restore(state)  # Sets damaged newer checkpoints aside (with a warning).
        return state, ckpts.latest_step(), "newest"
    except TranslateError:
        raise
    except (ValueError, FileNotFoundError) as e:  # Another config's shapes; none intact.
        raise TranslateError(str(e)) from None
    finally:
        ckpts.close()


def read_run(workdir: str, flag: str = "--workdir") -> tuple[Any, Any, Any, Any]:
    """(config, source vocabulary, target vocabulary, model) of a training run's folder, nothing
    restored or compiled; TranslateError naming the fix for a folder that holds no readable run
    (`flag` names the folder in the messages)."""
    if not os.path.isdir(workdir):
        raise TranslateError(f"{flag}={workdir} is not a directory; pass the {flag} of a "
                             "training run (python -m attn_jax.train).")
    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(config_path):
        raise TranslateError(f"{workdir} has no config.json, so it holds no training run; "
                             f"pass the {flag} of a training run (python -m attn_jax.train).")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = config_lib.from_saved(json.load(f))
    except (ValueError, KeyError, AttributeError) as e:  # JSON or fields unreadable.
        raise TranslateError(f"{config_path} is not a readable run config ({e}); pass the "
                             f"{flag} of an intact training run.") from None
    try:
        src_vocab, tgt_vocab = vocab_lib.load_vocabs(workdir)
    except FileNotFoundError:
        raise TranslateError(
            f"{workdir} has no saved vocabulary ({os.path.join(workdir, 'vocab')}): its "
            "training stopped before preparing the data; rerun the training command to "
            "train it first.") from None
    derived = config_lib.derive(config, src_vocab_size=src_vocab.size,
                                tgt_vocab_size=tgt_vocab.size, steps_per_epoch=1)
    return config, src_vocab, tgt_vocab, arch.build(derived.model)


def restore_state(workdir: str, config, model, best: bool = True):
    """(train state with every replica, its step, 'best' | 'newest'): the best checkpoint by
    valid BLEU if asked and any, else the newest (TranslateError when none is usable)."""
    derived = config_lib.derive(config, src_vocab_size=model.config.src_vocab_size,
                                tgt_vocab_size=model.config.tgt_vocab_size, steps_per_epoch=1)
    tx, _ = steps.make_optimizer(config.train, derived.num_steps)
    abstract = jax.eval_shape(  # The state's shapes only: nothing is compiled or run.
        lambda: steps.init_state(model, tx, derived.seeds, config.data.buckets[0]))
    return _restore(workdir, config, abstract, best)


class Translator:
    """A run loaded for inference: vocabularies, model, replica 0 of the best checkpoint.

    Raises TranslateError for a workdir that holds no usable run or a bad setting. `warnings`
    (the run is unfinished) and `notes` (repaired input) are for the user."""

    def __init__(self, workdir: str, beam_size: int = 1, length_penalty: float = 0.6,
                 batch_size: int = 64, best: bool = True):
        if beam_size < 1 or batch_size < 1:
            raise TranslateError(f"--beam_size ({beam_size}) and --batch_size ({batch_size}) "
                                 "must be >= 1.")
        try:
            decode.check_length_penalty(length_penalty)
        except ValueError as e:
            raise TranslateError(str(e)) from None
        config, self.src_vocab, self.tgt_vocab, model = read_run(workdir)
        self.config = config
        self.buckets = config.data.buckets
        state, step, which = restore_state(workdir, config, model, best)
        self.warnings: list[str] = []
        if not os.path.exists(os.path.join(workdir, "results.json")):
            planned = (f"of {config.train.num_steps} planned" if config.train.num_steps else
                       f"(planned: {config.train.num_epochs:g} epochs)")
            self.warnings.append(f"{workdir} has not finished training (no results.json); "
                                 f"translating with its {which} checkpoint, step {step} {planned}.")
        self.model = model
        self.step = step  # The checkpoint's step.
        self.replicas = state.params  # Every replica (train.num_seeds): [K, ...].
        self.params = jax.tree.map(lambda x: x[:1], state.params)  # Replica 0: [1, ...].
        self.batch_size = batch_size
        self.decode = evaluate.decoder(
            steps.make_eval_step(model, config.eval.max_decode_extra),
            steps.make_beam_step(model, beam_size, config.eval.max_decode_extra)
            if beam_size > 1 else None, length_penalty)
        self.notes: list[str] = []
        self.unknown_tokens = self.unknown_lines = 0

    def _ids(self, line_no: int, text: str) -> list[int]:
        ids = self.src_vocab.encode(text)
        unknown = sum(i == UNK for i in ids)
        self.unknown_tokens += unknown
        self.unknown_lines += unknown > 0
        if len(ids) > self.buckets[-1]:
            self.notes.append(f"line {line_no}: {len(ids)} tokens, truncated to {self.buckets[-1]}")
            ids = ids[:self.buckets[-1]]
        return ids

    def translate(self, lines: Sequence[str], first_line: int = 1) -> list[Translation]:
        """Translations of `lines` (numbered from first_line in notes), in order."""
        out: list = [None] * len(lines)
        todo = []
        for n, line in enumerate(lines):
            if not line.strip():
                self.notes.append(f"line {first_line + n}: empty; wrote an empty line")
                out[n] = Translation("", [], [], None)
            else:
                todo.append((n, self._ids(first_line + n, line.strip())))
        for bucket in self.buckets:  # One compiled shape per bucket.
            rows = [(n, ids) for n, ids in todo
                    if batches.smallest_bucket(len(ids), self.buckets) == bucket]
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start:start + self.batch_size]
                src = np.zeros((self.batch_size, bucket), np.int32)  # [B, L], PAD
                for r, (_, ids) in enumerate(chunk):
                    src[r, :len(ids)] = ids
                res = self.decode(self.params, src)  # [1, B, ...]: replica 0
                for r, (n, ids) in enumerate(chunk):
                    hyp = res["tokens"][0, r, :res["lengths"][0, r]].tolist()
                    out[n] = Translation(
                        self.tgt_vocab.decode(hyp), self.src_vocab.pieces(ids),
                        self.tgt_vocab.pieces(hyp), res["attention"][0, r, :len(hyp), :len(ids)],
                        ended=bool(hyp) and hyp[-1] == EOS)
        return out


def read_lines(stream: IO[bytes], notes: list[str]) -> Iterator[str]:
    """Lines of a byte stream as text, read lazily; bytes that are not UTF-8 become U+FFFD, with
    a note naming the line."""
    for n, raw in enumerate(stream, 1):
        raw = raw.rstrip(b"\r\n")
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            notes.append(f"line {n}: bytes that are not UTF-8, replaced by U+FFFD")
            yield raw.decode("utf-8", errors="replace")


def run(translator: Translator, lines: Iterable[str], out: IO[str], alignments: IO[str] | None,
        heatmaps: str | None, err: IO[str]) -> tuple[int, int]:
    """Translates `lines` batch by batch, writing and flushing each batch's outputs (and the
    translator's notes, to `err`) before reading the next; returns (lines, notes)."""
    done = notes = 0
    lines = iter(lines)
    while batch := list(itertools.islice(lines, translator.batch_size)):
        results = translator.translate(batch, first_line=done + 1)
        out.write("".join(r.text + "\n" for r in results))
        out.flush()
        if alignments:
            alignments.write("".join(r.links() + "\n" for r in results))
            alignments.flush()
        for n, r in enumerate(results, done + 1):
            if heatmaps and r.attention is not None:
                plots.heatmap(r.attention, r.src_pieces, r.tgt_pieces,
                              os.path.join(heatmaps, f"line{n}.png"), title=r.text)
        for note in translator.notes:
            print(f"note: {note}", file=err, flush=True)
        notes += len(translator.notes)
        translator.notes.clear()
        done += len(batch)
    return done, notes


FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Flags exist only when run as a program, so importing this module defines none."""
    flags.DEFINE_string("workdir", None, "A finished (or checkpointed) training run.")
    flags.DEFINE_string("input", "-", "Input file, one sentence per line ('-' = stdin).")
    flags.DEFINE_string("output", "-", "Output file ('-' = stdout).")
    flags.DEFINE_integer("beam_size", 1, "1 = greedy; > 1 = beam search.")
    flags.DEFINE_float("length_penalty", 0.6, "Beam search GNMT length penalty alpha (>= 0).")
    flags.DEFINE_integer("batch_size", 64, "Sentences per batch (read, translated, written).")
    flags.DEFINE_string("alignments", None, "Write Pharaoh 'i-j' alignments here.")
    flags.DEFINE_string("heatmaps", None, "Write one attention heatmap PNG per line here.")


def _open(stack: contextlib.ExitStack, path: str, mode: str, flag: str) -> IO:
    try:
        if "b" in mode:
            return stack.enter_context(open(path, mode))
        return stack.enter_context(open(path, mode, encoding="utf-8"))
    except OSError as e:
        raise TranslateError(f"cannot open --{flag}={path}: {e.strerror}; pass a readable input "
                             "and writable outputs.") from None


def _translate_all() -> None:
    if not FLAGS.workdir:
        raise TranslateError("--workdir is required: the --workdir of a training run.")
    with contextlib.ExitStack() as stack:
        src = (sys.stdin.buffer if FLAGS.input == "-" else
               _open(stack, FLAGS.input, "rb", "input"))
        translator = Translator(FLAGS.workdir, FLAGS.beam_size, FLAGS.length_penalty,
                                FLAGS.batch_size)
        for warning in translator.warnings:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        if FLAGS.output == "-":
            sys.stdout.reconfigure(encoding="utf-8")
            out = sys.stdout
        else:
            out = _open(stack, FLAGS.output, "w", "output")
        align = _open(stack, FLAGS.alignments, "w", "alignments") if FLAGS.alignments else None
        if FLAGS.heatmaps:
            try:
                os.makedirs(FLAGS.heatmaps, exist_ok=True)
            except OSError as e:
                raise TranslateError(
                    f"cannot create --heatmaps={FLAGS.heatmaps}: {e.strerror}.") from None
        count, notes = run(translator, read_lines(src, translator.notes), out, align,
                           FLAGS.heatmaps, sys.stderr)
    if translator.unknown_tokens:
        print(f"note: {translator.unknown_tokens} source tokens in {translator.unknown_lines} "
              "lines are not in the run's vocabulary and were read as <unk>", file=sys.stderr)
        notes += 1
    print(f"translated {count} lines ({notes} notes)", file=sys.stderr)


def main(argv):
    del argv
    cli.one_line_errors(_translate_all, (TranslateError,))


if __name__ == "__main__":
    cli.start(_define_flags, main)
