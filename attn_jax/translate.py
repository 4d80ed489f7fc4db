r"""Translate raw text with a trained run: the best checkpoint and the run's own vocabulary.

    python -m attn_jax.translate --workdir=runs/demo < in.txt > out.txt
    python -m attn_jax.translate --workdir=runs/demo --beam_size=5 --alignments=align.txt \
        --heatmaps=heatmaps/ < in.txt > out.txt

One detokenized line out per line in, in order. Empty input lines give empty output lines; lines
longer than the largest length bucket are translated from their first tokens (truncated); both
are reported on stderr, never dropped. --alignments writes Pharaoh-style "i-j" links (source
token i, target token j; argmax of the attention; subword tokens for sentencepiece vocabularies).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Iterable, Sequence

import jax
import ml_collections
import numpy as np
from absl import app, flags

from attn_jax import checkpoint, config as config_lib, data as data_lib, models, plots, steps


class Translator:
    """A run loaded for inference: vocabularies, model, replica 0 of the best checkpoint."""

    def __init__(self, workdir: str, beam_size: int = 1, length_penalty: float = 0.6,
                 batch_size: int = 64, best: bool = True):
        with open(os.path.join(workdir, "config.json")) as f:
            config = config_lib.from_saved(json.load(f))
        self.src_vocab, self.tgt_vocab = data_lib.load_vocabs(workdir)
        self.buckets = config.data.buckets
        derived = config_lib.derive(config, src_vocab_size=self.src_vocab.size,
                                    tgt_vocab_size=self.tgt_vocab.size, steps_per_epoch=1)
        model = models.Seq2Seq(derived.model)
        tx, _ = steps.make_optimizer(config.train, derived.num_steps)
        state = steps.init_state(model, tx, derived.seeds, self.buckets[0], self.buckets[0])
        ckpts = checkpoint.Checkpoints(workdir, config.train.keep_checkpoints)
        try:
            state = ckpts.restore(state, best=best)
        except FileNotFoundError:
            state = ckpts.restore(state)  # No validation ran yet: the newest checkpoint.
        ckpts.close()
        self.params = jax.tree.map(lambda x: x[0], state.params)  # Replica 0.
        self.batch_size, self.beam_size, self.alpha = batch_size, beam_size, length_penalty
        self.step = steps.make_beam_step(model, beam_size, config.eval.max_decode_extra)
        self.notes: list[str] = []

    def _ids(self, line_no: int, text: str) -> list[int]:
        ids = self.src_vocab.encode(text)
        if len(ids) > self.buckets[-1]:
            self.notes.append(f"line {line_no}: {len(ids)} tokens, truncated to {self.buckets[-1]}")
            ids = ids[:self.buckets[-1]]
        return ids

    def translate(self, lines: Sequence[str]):
        """-> list of (translation, source pieces, target pieces, attention [T, S] or None)."""
        out: list = [None] * len(lines)
        todo = []
        for n, line in enumerate(lines):
            if not line.strip():
                self.notes.append(f"line {n + 1}: empty; wrote an empty line")
                out[n] = ("", [], [], None)
            else:
                todo.append((n, self._ids(n + 1, line.strip())))
        for bucket in self.buckets:  # One compiled shape per bucket.
            rows = [(n, ids) for n, ids in todo
                    if data_lib.smallest_bucket(len(ids), self.buckets) == bucket]
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start:start + self.batch_size]
                src = np.zeros((self.batch_size, bucket), np.int32)
                for r, (_, ids) in enumerate(chunk):
                    src[r, :len(ids)] = ids
                res = jax.device_get(self.step(self.params, src, self.alpha))
                for r, (n, ids) in enumerate(chunk):
                    length = int(res["lengths"][r, 0])
                    hyp = res["tokens"][r, 0, :length].tolist()
                    attn = res["attention"][r, 0, :length, :len(ids)]
                    out[n] = (self.tgt_vocab.decode(hyp), self.src_vocab.pieces(ids),
                              self.tgt_vocab.pieces(hyp), attn)
        return out


def pharaoh(attention: np.ndarray | None, num_target: int) -> str:
    """Argmax links "i-j" for the first num_target target tokens (EOS excluded)."""
    if attention is None or not attention.size:
        return ""
    return " ".join(f"{int(np.argmax(attention[j]))}-{j}" for j in range(min(num_target,
                                                                             len(attention))))


FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Flags exist only when run as a program, so importing this module defines none."""
    flags.DEFINE_string("workdir", None, "A finished (or checkpointed) training run.")
    flags.DEFINE_string("input", "-", "Input file, one sentence per line ('-' = stdin).")
    flags.DEFINE_string("output", "-", "Output file ('-' = stdout).")
    flags.DEFINE_integer("beam_size", 1, "1 = greedy; > 1 = beam search.")
    flags.DEFINE_float("length_penalty", 0.6, "Beam search GNMT length penalty alpha.")
    flags.DEFINE_integer("batch_size", 64, "Sentences per batch.")
    flags.DEFINE_string("alignments", None, "Write Pharaoh 'i-j' alignments here.")
    flags.DEFINE_string("heatmaps", None, "Write one attention heatmap PNG per line here.")


def _read(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def _write(path: str, lines: Iterable[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    if path == "-":
        sys.stdout.write(text)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def main(argv):
    del argv
    checkpoint.quiet_orbax_logs()
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required.")
    translator = Translator(FLAGS.workdir, FLAGS.beam_size, FLAGS.length_penalty,
                            FLAGS.batch_size)
    results = translator.translate(_read(FLAGS.input))
    _write(FLAGS.output, [r[0] for r in results])
    if FLAGS.alignments:
        _write(FLAGS.alignments, [pharaoh(r[3], len(r[2]) - 1) for r in results])
    if FLAGS.heatmaps:
        os.makedirs(FLAGS.heatmaps, exist_ok=True)
        for n, (hyp, src, tgt, attn) in enumerate(results):
            if attn is not None:
                plots.heatmap(attn, src, tgt, os.path.join(FLAGS.heatmaps, f"line{n + 1}.png"),
                              title=hyp)
    for note in translator.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"translated {len(results)} lines ({len(translator.notes)} notes)", file=sys.stderr)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
