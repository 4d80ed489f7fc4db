r"""Alignment error rate (AER) of a trained run's attention against a gold word-alignment file.

    python -m attn_jax.align --workdir=runs/demo --src=test.hi --tgt=test.en --gold=test.gold \
        [--reverse] [--out=links.txt]

Input. --src and --tgt hold one pre-tokenized sentence per line, words separated by spaces; word
i of a line is word i of the gold (the text is not re-tokenized). --gold has one line per pair in
the common format: 1-based "i-j" sure links and "ipj" possible links, the source word first
(--reverse: the target word first). The possible set is taken as P ∪ S, so S ⊆ P holds whether or
not the file repeats its sure links as possible ones. An empty gold line is a pair with no links.
Files of different line counts, a malformed link, or a link outside its sentence are refused with
an error naming the file and the line, before the run is loaded. Without --gold the links are
written and nothing is scored.

Attention. Each pair is force-decoded: the run's own teacher-forced scoring program (the one that
gives the training-time AER, `steps.make_eval_step(...).score`) reads the given target, with
replica 0 of the best checkpoint by valid BLEU (the newest one if there is none, or with
--checkpoint=newest). Sentences of any length are scored, without the run's length buckets: the
pairs are sorted by length and each batch is padded to a multiple of 8 of its own longest
sentence (one compile per padded length); only the location scorer, which scores a fixed number
of source positions, refuses a longer source (naming its limit).

Tokens to words (the rule of the training-time AER, `metrics.word_alignment`). Each word is
encoded on its own, so no token spans two words (training-time AER encodes whole sentences and
is defined only where that gives the same tokens). The attention row of a target word is the mean
of its tokens' rows; the weight of a source word is the sum of its tokens' columns (the attention
mass on the word); each target word links to its argmax source word (the first on a tie). With
the 'word' vocabulary (one token per word) this is the argmax of the token attention itself.

Special tokens, as in training-time AER (`evaluate.run_split`): the source holds no BOS or EOS;
the decoder's row t is the step that predicts target token t (its input at t = 0 is BOS, so BOS
has no row of its own); the last row, which predicts EOS, is dropped. So every target word gets
exactly one link, and EOS/BOS never appear in a link.

Output. --out: Pharaoh links, 0-based "i-j" (unlike the gold's 1-based indices), source word
first (target word first with --reverse), one line per pair, in order. stdout: one JSON line
{"aer", "sentences", "links" (|A|), "sure" (|S|), "possible" (|P ∪ S|), "sure_hits" (|A∩S|),
"possible_hits" (|A∩P|)}, AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|) summed over the corpus
(`metrics.aer`). A word unknown to the run's vocabulary is read as <unk> (counted in a note on
stderr). Bad input ends with a one-line error naming the fix and exit status 1.

The embedded data's gold, to try the command (a run trained on it; its own sizes and seed):

    python -m attn_jax.align --workdir=runs/demo --export_synthetic=DIR [--export_split=test]

writes DIR/test.hi, DIR/test.en and DIR/test.gold (`format_gold`) and stops; aligning those
files gives exactly the run's training-time test AER for the same parameters.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from typing import IO, Any

import jax
import numpy as np
from absl import app, flags

from attn_jax import checkpoint, metrics, models, runtime, sources, steps, synthetic, translate
from attn_jax import config as config_lib
from attn_jax.tokens import BOS, EOS, PAD, UNK

Link = tuple[int, int]  # (src_idx, tgt_idx), 0-based
PAD_MULTIPLE = 8  # A batch's length is its longest pair rounded up to a multiple of this.


class AlignError(Exception):
    """Input align cannot use; the message names the fix (the command prints it as is)."""


# ------------------------------------------------------------------------------- gold files

_GOLD_LINK = re.compile(r"(\d+)([-p])(\d+)")


def parse_gold(line: str, src_len: int, tgt_len: int, reverse: bool = False,
               where: str = "gold") -> tuple[set[Link], set[Link]]:
    """(sure, possible) 0-based (src, tgt) links of one gold line of 1-based "i-j" / "ipj" links.

    possible is P ∪ S. `reverse`: the line names the target word first. Raises AlignError
    (prefixed by `where`, e.g. "test.gold:3") for a malformed link or one outside the sentence.
    """
    sure: set[Link] = set()
    possible: set[Link] = set()
    for token in line.split():
        m = _GOLD_LINK.fullmatch(token)
        if not m:
            raise AlignError(f"{where}: {token!r} is not a link; gold links are 1-based 'i-j' "
                             "(sure) or 'ipj' (possible), separated by spaces.")
        first, second = int(m.group(1)), int(m.group(3))
        src, tgt = (second, first) if reverse else (first, second)
        if not (1 <= src <= src_len and 1 <= tgt <= tgt_len):
            order = "target-source (--reverse)" if reverse else "source-target"
            raise AlignError(
                f"{where}: link {token!r} ({order}) is outside the pair of {src_len} source and "
                f"{tgt_len} target words (1-based indices); the gold must index the words of "
                "--src/--tgt split at spaces" + ("" if reverse else
                                                 ", or pass --reverse for target-first links")
                + ".")
        link = (src - 1, tgt - 1)
        possible.add(link)
        if m.group(2) == "-":
            sure.add(link)
    return sure, possible


def format_gold(sure: Sequence[Link], possible: Sequence[Link], reverse: bool = False) -> str:
    """One gold line from 0-based (src, tgt) links: 1-based "i-j" for sure links, "ipj" for the
    possible links that are not sure ones, sorted; the target word first if `reverse`."""
    sure_set = {(int(i), int(j)) for i, j in sure}
    links = sorted(sure_set | {(int(i), int(j)) for i, j in possible})
    out = []
    for i, j in links:
        a, b = (j, i) if reverse else (i, j)
        out.append(f"{a + 1}{'-' if (i, j) in sure_set else 'p'}{b + 1}")
    return " ".join(out)


def format_links(links: set[Link], reverse: bool = False) -> str:
    """Pharaoh "i-j" with 0-based indices, source first (target first if `reverse`), sorted."""
    pairs = sorted((j, i) if reverse else (i, j) for i, j in links)
    return " ".join(f"{a}-{b}" for a, b in pairs)


def score(predicted: Sequence[set[Link]], sure: Sequence[set[Link]],
          possible: Sequence[set[Link]]) -> dict[str, Any]:
    """AER (`metrics.aer`) and the counts behind it, summed over the corpus."""
    possible = [p | s for p, s in zip(possible, sure)]
    return {"aer": metrics.aer(predicted, sure, possible), "sentences": len(predicted),
            "links": sum(map(len, predicted)), "sure": sum(map(len, sure)),
            "possible": sum(map(len, possible)),
            "sure_hits": sum(len(a & s) for a, s in zip(predicted, sure)),
            "possible_hits": sum(len(a & p) for a, p in zip(predicted, possible))}


# ---------------------------------------------------------------------------------- aligner


def encode_words(vocab, words: Sequence[str], where: str) -> tuple[list[int], np.ndarray]:
    """(token ids, the word of each token): each word encoded on its own."""
    ids: list[int] = []
    word_of: list[int] = []
    for w, word in enumerate(words):
        pieces = vocab.encode(word)
        if not pieces:
            raise AlignError(f"{where}: word {w + 1} ({word!r}) encodes to no tokens in the run's "
                             "vocabulary; remove it from the text and the gold.")
        ids += pieces
        word_of += [w] * len(pieces)
    return ids, np.asarray(word_of, int)


class Aligner:
    """Word alignments from teacher-forced attention: `score(params, batch)` is a jitted
    `steps.EvalStep.score` (its "forced_attention" [K, B, T, S]; replica 0 is used).

    Build one with `for_model` (a model and its parameters) or `from_workdir` (a trained run)."""

    def __init__(self, score, params, src_vocab, tgt_vocab, batch_size: int = 64,
                 max_source_len: int | None = None):
        if batch_size < 1:
            raise AlignError(f"--batch_size ({batch_size}) must be >= 1.")
        self.score, self.params = score, params
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.batch_size = batch_size
        self.max_source_len = max_source_len  # A source longer than this is refused.
        self.notes: list[str] = []

    @classmethod
    def for_model(cls, model: models.Seq2Seq, params, src_vocab, tgt_vocab,
                  batch_size: int = 64) -> Aligner:
        """Replica 0 of `params` ([K, ...]) of `model`, scored by `steps.make_eval_step`."""
        if model.config.scorer == "none":
            raise AlignError("this run's model.scorer is 'none' (no attention), so it has no "
                             "alignments; pass the workdir of a run with an attention scorer.")
        return cls(steps.make_eval_step(model, 0).score,
                   jax.tree.map(lambda x: x[:1], params),  # Replica 0: [1, ...].
                   src_vocab, tgt_vocab, batch_size,
                   # The location scorer scores a fixed number of source positions.
                   model.config.max_source_len if model.config.scorer == "location" else None)

    @classmethod
    def from_workdir(cls, workdir: str, batch_size: int = 64,
                     best: bool = True) -> tuple[Aligner, list[str]]:
        """A run's model and checkpoint, loaded as `translate.Translator` loads them; returns
        (aligner, warnings) (a warning: the run has not finished training)."""
        if batch_size < 1:
            raise AlignError(f"--batch_size ({batch_size}) must be >= 1.")
        translator = translate.Translator(workdir, batch_size=batch_size, best=best)
        with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
            config = config_lib.from_saved(json.load(f))  # Read fine by the Translator.
        derived = config_lib.derive(config, src_vocab_size=translator.src_vocab.size,
                                    tgt_vocab_size=translator.tgt_vocab.size, steps_per_epoch=1)
        aligner = cls.for_model(models.Seq2Seq(derived.model), translator.params,
                                translator.src_vocab, translator.tgt_vocab, batch_size)
        return aligner, [w.replace("translating with", "aligning with")
                         for w in translator.warnings]

    def align(self, src_lines: Sequence[str], tgt_lines: Sequence[str],
              first_line: int = 1) -> list[set[Link]]:
        """0-based (src word, tgt word) links of each pair: one per target word (none for a pair
        with an empty side)."""
        if len(src_lines) != len(tgt_lines):
            raise AlignError(f"{len(src_lines)} source but {len(tgt_lines)} target sentences.")
        src = [encode_words(self.src_vocab, s.split(), f"--src line {first_line + n}")
               for n, s in enumerate(src_lines)]
        tgt = [encode_words(self.tgt_vocab, t.split(), f"--tgt line {first_line + n}")
               for n, t in enumerate(tgt_lines)]
        for side, encoded in (("source", src), ("target", tgt)):
            unknown = [sum(i == UNK for i in ids) for ids, _ in encoded]
            if sum(unknown):
                self.notes.append(f"{sum(unknown)} {side} tokens in {sum(u > 0 for u in unknown)} "
                                  "lines are not in the run's vocabulary and were read as <unk>")
        todo = [n for n in range(len(src)) if src[n][0] and tgt[n][0]]
        if len(todo) < len(src):
            self.notes.append(f"{len(src) - len(todo)} pairs with an empty side have no links")
        if self.max_source_len is not None:
            for n in todo:
                if len(src[n][0]) > self.max_source_len:
                    raise AlignError(
                        f"--src line {first_line + n} has {len(src[n][0])} tokens, but this run's "
                        f"location attention scores only {self.max_source_len} source positions "
                        "(its largest data bucket); shorten or split the pair.")

        def length(n):  # Padded length of a pair: src, and tgt_in/tgt_out (one more: BOS/EOS).
            return max(len(src[n][0]), len(tgt[n][0]) + 1)

        todo.sort(key=length)
        out: list[set[Link]] = [set() for _ in src]
        rows = min(self.batch_size, len(todo))
        for start in range(0, len(todo), max(rows, 1)):
            chunk = todo[start:start + rows]
            tgt_len = PAD_MULTIPLE * math.ceil(max(map(length, chunk)) / PAD_MULTIPLE)
            src_len = (tgt_len if self.max_source_len is None
                       else min(tgt_len, self.max_source_len))
            batch = {"src": np.full((rows, src_len), PAD, np.int32),  # [B, S]
                     "tgt_in": np.full((rows, tgt_len), PAD, np.int32),  # [B, T]
                     "tgt_out": np.full((rows, tgt_len), PAD, np.int32)}  # [B, T]
            for r, n in enumerate(chunk):
                s, t = src[n][0], tgt[n][0]
                batch["src"][r, :len(s)] = s
                batch["tgt_in"][r, :len(t) + 1] = [BOS, *t]
                batch["tgt_out"][r, :len(t) + 1] = [*t, EOS]
            attention = np.asarray(
                jax.device_get(self.score(self.params, batch)["forced_attention"])[0])  # [B, T, S]
            for r, n in enumerate(chunk):
                out[n] = metrics.word_alignment(attention[r], src[n][1], tgt[n][1])
        return out


# ------------------------------------------------------------------ the embedded data's gold


def export_synthetic(workdir: str, out_dir: str, split: str = "test") -> tuple[str, str, str]:
    """Writes a run's split of the embedded data in this command's input formats: OUT_DIR/SPLIT.hi
    and SPLIT.en (the run's data.source_lang / target_lang; one sentence a line) and SPLIT.gold.

    The split is generated again from the run's config.json (sizes, seed), so it is the run's own
    only while attn_jax/synthetic.py is unchanged: a run whose vocabulary records another
    generator fingerprint is refused. Returns the three paths."""
    order = ("test", "valid", "train")  # The order generate_splits draws them in.
    if split not in order:
        raise AlignError(f"unknown split {split!r}; valid: {', '.join(order)}.")
    config_path = os.path.join(workdir, "config.json")
    meta_path = os.path.join(workdir, "vocab", "meta.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            data = config_lib.from_saved(json.load(f)).data
        with open(meta_path, encoding="utf-8") as f:
            trained_on = json.load(f).get("generator")
    except OSError as e:
        raise AlignError(f"cannot read {e.filename} ({e.strerror}); pass the --workdir of a "
                         "training run that has prepared its data.") from None
    except (ValueError, KeyError, AttributeError) as e:
        raise AlignError(f"{workdir} holds no readable run config ({e}).") from None
    if data.name != "synthetic_hi_en":
        raise AlignError(f"{workdir} was trained on data.name={data.name!r}; only the embedded "
                         "data ('synthetic_hi_en') has gold alignments to export.")
    now = sources.dataset_meta(data)["generator"]  # The fingerprint of attn_jax/synthetic.py.
    if trained_on != now:
        raise AlignError(
            f"{workdir} was trained on the embedded data of generator {trained_on}, but "
            f"attn_jax/synthetic.py is now {now}, so the run's {split} split cannot be "
            "generated again; export with the attn_jax/synthetic.py the run was trained with.")
    sizes = {"test": data.test_size, "valid": data.valid_size, "train": data.train_size}
    drawn = order[:order.index(split) + 1]  # A split depends only on those drawn before it.
    examples = synthetic.generate_splits({k: sizes[k] for k in drawn}, data.seed)[split]
    paths = tuple(os.path.join(out_dir, f"{split}.{ext}")
                  for ext in (data.source_lang, data.target_lang, "gold"))
    columns = ([ex.src for ex in examples], [ex.tgt for ex in examples],
               [format_gold(ex.sure, ex.possible) for ex in examples])
    try:
        os.makedirs(out_dir, exist_ok=True)
        for path, lines in zip(paths, columns):
            with open(path, "w", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))
    except OSError as e:
        raise AlignError(f"cannot write {e.filename} ({e.strerror}); choose a writable "
                         "--export_synthetic folder.") from None
    return paths


# ---------------------------------------------------------------------------------- command


def read_lines(path: str, flag: str) -> list[str]:
    """The lines of a UTF-8 text file (a final newline ends the last line, not a new one)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except OSError as e:
        raise AlignError(f"cannot read --{flag}={path}: {e.strerror}.") from None
    except UnicodeDecodeError as e:
        raise AlignError(f"--{flag}={path} is not UTF-8 text ({e.reason} at byte {e.start}).") \
            from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_gold(path: str, src_lines: Sequence[str], tgt_lines: Sequence[str],
              reverse: bool = False) -> tuple[list[set[Link]], list[set[Link]]]:
    """(sure, possible) 0-based links per pair of a gold file, checked against the sentences."""
    lines = read_lines(path, "gold")
    if len(lines) != len(src_lines):
        raise AlignError(f"--gold={path} has {len(lines)} lines but --src has {len(src_lines)}; "
                         "the gold needs one line per sentence pair (an empty line: no links).")
    parsed = [parse_gold(line, len(s.split()), len(t.split()), reverse, f"{path}:{n}")
              for n, (line, s, t) in enumerate(zip(lines, src_lines, tgt_lines), 1)]
    return [s for s, _ in parsed], [p for _, p in parsed]


def read_inputs(src_path: str, tgt_path: str, gold_path: str | None = None,
                reverse: bool = False) -> tuple[list[str], list[str], tuple | None]:
    """(source lines, target lines, (sure, possible) or None): the command's files, checked
    against each other (line counts, links inside their sentences) before any model is loaded."""
    src_lines = read_lines(src_path, "src")
    tgt_lines = read_lines(tgt_path, "tgt")
    if len(src_lines) != len(tgt_lines):
        raise AlignError(f"--src={src_path} has {len(src_lines)} lines but --tgt={tgt_path} has "
                         f"{len(tgt_lines)}; give one sentence per line, pair by pair.")
    gold = read_gold(gold_path, src_lines, tgt_lines, reverse) if gold_path else None
    return src_lines, tgt_lines, gold


def align_and_score(aligner: Aligner, src_lines: Sequence[str], tgt_lines: Sequence[str],
                    gold: tuple | None = None, reverse: bool = False,
                    out: IO[str] | None = None) -> dict[str, Any]:
    """Aligns the pairs, writes their links to `out`, scores them against `gold` (sure, possible)
    if given: the command's JSON summary (aer None without gold)."""
    predicted = aligner.align(src_lines, tgt_lines)
    if out is not None:
        out.write("".join(format_links(links, reverse) + "\n" for links in predicted))
    if gold is None:
        return {"aer": None, "sentences": len(predicted), "links": sum(map(len, predicted))}
    try:
        return score(predicted, *gold)
    except ValueError as e:  # No links at all: AER is undefined.
        raise AlignError(f"{e}; give non-empty sentence pairs and gold links.") from None


def align_files(aligner: Aligner, src_path: str, tgt_path: str, gold_path: str | None = None,
                reverse: bool = False, out: IO[str] | None = None) -> dict[str, Any]:
    """`read_inputs` then `align_and_score`: what the command does with a loaded run."""
    return align_and_score(aligner, *read_inputs(src_path, tgt_path, gold_path, reverse),
                           reverse=reverse, out=out)


FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Flags exist only when run as a program, so importing this module defines none."""
    flags.DEFINE_string("workdir", None, "A trained (or checkpointed) run.")
    flags.DEFINE_string("src", None, "Source sentences, pre-tokenized, one per line.")
    flags.DEFINE_string("tgt", None, "Target sentences, pre-tokenized, one per line.")
    flags.DEFINE_string("gold", None, "Gold links, 1-based 'i-j' sure / 'ipj' possible.")
    flags.DEFINE_bool("reverse", False, "Gold (and --out) links name the target word first.")
    flags.DEFINE_string("out", None, "Write the predicted Pharaoh links (0-based 'i-j') here.")
    flags.DEFINE_integer("batch_size", 64, "Sentence pairs per batch.")
    flags.DEFINE_enum("checkpoint", "best", ["best", "newest"],
                      "The best checkpoint by valid BLEU (the newest if none), or the newest.")
    flags.DEFINE_string("export_synthetic", None, "Instead of aligning: write the run's "
                        "--export_split of the embedded data here (SPLIT.hi/.en/.gold).")
    flags.DEFINE_enum("export_split", "test", ["test", "valid", "train"],
                      "The split --export_synthetic writes.")


def _align_all() -> dict[str, Any]:
    if FLAGS.export_synthetic and FLAGS.workdir:
        paths = export_synthetic(FLAGS.workdir, FLAGS.export_synthetic, FLAGS.export_split)
        return {"wrote": list(paths)}
    for name in ("workdir", "src", "tgt"):
        if not getattr(FLAGS, name):
            raise AlignError(f"--{name} is required (python -m attn_jax.align --workdir=RUN "
                             "--src=F --tgt=F [--gold=F] [--reverse] [--out=F]).")
    inputs = read_inputs(FLAGS.src, FLAGS.tgt, FLAGS.gold, FLAGS.reverse)  # Checked first.
    aligner, warnings = Aligner.from_workdir(FLAGS.workdir, FLAGS.batch_size,
                                             best=FLAGS.checkpoint == "best")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    with contextlib.ExitStack() as stack:
        out = None
        if FLAGS.out:
            try:
                out = stack.enter_context(open(FLAGS.out, "w", encoding="utf-8"))
            except OSError as e:
                raise AlignError(f"cannot write --out={FLAGS.out}: {e.strerror}.") from None
        summary = align_and_score(aligner, *inputs, reverse=FLAGS.reverse, out=out)
    for note in aligner.notes:
        print(f"note: {note}", file=sys.stderr)
    return summary


def main(argv):
    del argv
    checkpoint.quiet_orbax_logs()
    try:
        summary = _align_all()
    except (AlignError, translate.TranslateError) as e:
        sys.exit(f"error: {e}")
    print(json.dumps(summary))


if __name__ == "__main__":
    runtime.keep_freed_memory()
    runtime.use_compilation_cache()
    _define_flags()
    app.run(main)
