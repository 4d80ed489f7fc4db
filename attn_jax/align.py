r"""Alignment error rate (AER) of a trained run's attention against a gold word-alignment file.

    python -m attn_jax.align --workdir=runs/demo --src=test.hi --tgt=test.en --gold=test.gold \
        [--reverse] [--out=links.txt] [--method=attention|saliency|grad_x_input|
        integrated_gradients] [--ig_steps=16]

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

Attributions (--method, `attn_jax.eval.attribution`). --method=saliency | grad_x_input |
integrated_gradients (--ig_steps points) aligns from gradients instead: for each target token,
the attribution of its teacher-forced log-probability to each source token's embedding, mapped to
words and linked by argmax exactly as the attention is. Any scorer, the no-attention one
included; not for image runs, and not with --layer/--head/--all_heads (attention maps only).
The JSON line then names its "method".

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

writes DIR/test.hi, DIR/test.en and DIR/test.gold (`gold.format_gold`) and stops; aligning those
files gives exactly the run's training-time test AER for the same parameters.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import IO, Any

import jax
import numpy as np
from absl import flags

from attn_jax import translate
from attn_jax.data import sources, synthetic
from attn_jax.data.tokens import BOS, EOS, PAD, UNK
from attn_jax.eval import attribution, evaluate, gold, metrics
from attn_jax.eval.gold import Link
from attn_jax.model import arch, attention
from attn_jax.run import cli, steps
from attn_jax.run import config as config_lib

PAD_MULTIPLE = 8  # A batch's length is its longest pair rounded up to a multiple of this.


# Input align cannot use; the message names the fix (the command prints it as is). One type
# with the gold files' errors, so that every refusal is caught as one.
AlignError = gold.InputError


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


MEAN = "mean"  # The map averaged over layers and heads (a model without heads: its only map).


class Aligner:
    """Word alignments from teacher-forced attention: `score(params, batch)` is a jitted
    `steps.EvalStep.score` (its "forced_attention" [K, B, T, S]; replica 0 is used).

    Build one with `for_model` (a model and its parameters) or `from_workdir` (a trained run)."""

    def __init__(self, score, params, src_vocab, tgt_vocab, batch_size: int = 64,
                 max_source_len: int | None = None, heads: tuple[int, int] | None = None):
        if batch_size < 1:
            raise AlignError(f"--batch_size ({batch_size}) must be >= 1.")
        self.score, self.params = score, params
        # (layers, heads) of a per-head model, whose scores hold "forced_heads" [K, B, L, H, T, S].
        self.layout = heads
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.batch_size = batch_size
        self.max_source_len = max_source_len  # A source longer than this is refused.
        self.notes: list[str] = []

    @classmethod
    def for_model(cls, model, params, src_vocab, tgt_vocab, batch_size: int = 64,
                  method: str = attribution.ATTENTION, ig_steps: int = 16) -> Aligner:
        """Replica 0 of `params` ([K, ...]) of `model`, scored by `steps.make_eval_step` (the
        attention), or by `attribution.make_scorer` (a gradient `method`)."""
        try:
            attribution.check_methods([method], ig_steps)
            if method != attribution.ATTENTION:
                attribution.check_model(model.config)
        except ValueError as e:
            raise AlignError(str(e)) from None
        replica = jax.tree.map(lambda x: x[:1], params)  # Replica 0: [1, ...].
        if method != attribution.ATTENTION:
            maps = attribution.make_scorer(model, [method], ig_steps)
            return cls(lambda p, batch: {"forced_attention": maps(p, batch)[method]}, replica,
                       src_vocab, tgt_vocab, batch_size)
        scorer = attention.scorer_class(model.config.scorer)
        if not scorer.attends:
            raise AlignError(f"this run's model.scorer is {model.config.scorer!r} (no attention), "
                             "so it has no attention alignments; pass the workdir of a run with "
                             "an attention scorer, or align from gradients (--method=saliency).")
        return cls(steps.make_eval_step(model, 0).score, replica, src_vocab, tgt_vocab, batch_size,
                   # A position-based scorer scores a fixed number of source positions.
                   model.config.max_source_len if scorer.position_based else None,
                   model.config.attention_heads if arch.of(model.config).per_head else None)

    @classmethod
    def from_workdir(cls, workdir: str, batch_size: int = 64, best: bool = True,
                     method: str = attribution.ATTENTION,
                     ig_steps: int = 16) -> tuple[Aligner, list[str]]:
        """A run's model and checkpoint, loaded as `translate.Translator` loads them; returns
        (aligner, warnings) (a warning: the run has not finished training)."""
        if batch_size < 1:
            raise AlignError(f"--batch_size ({batch_size}) must be >= 1.")
        translator = translate.Translator(workdir, batch_size=batch_size, best=best)
        with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
            config = config_lib.from_saved(json.load(f))  # Read fine by the Translator.
        derived = config_lib.derive(config, src_vocab_size=translator.src_vocab.size,
                                    tgt_vocab_size=translator.tgt_vocab.size, steps_per_epoch=1)
        aligner = cls.for_model(arch.build(derived.model), translator.params,
                                translator.src_vocab, translator.tgt_vocab, batch_size,
                                method, ig_steps)
        return aligner, [w.replace("translating with", "aligning with")
                         for w in translator.warnings]

    def align(self, src_lines: Sequence[str], tgt_lines: Sequence[str],
              first_line: int = 1) -> list[set[Link]]:
        """0-based (src word, tgt word) links of each pair: one per target word (none for a pair
        with an empty side), from the attention map (the mean over layers and heads for a
        per-head model)."""
        return self.align_maps(src_lines, tgt_lines, first_line)[MEAN]

    def align_maps(self, src_lines: Sequence[str], tgt_lines: Sequence[str], first_line: int = 1,
                   heads: Sequence[tuple[int, int]] = ()) -> dict[str, list[set[Link]]]:
        """`align`'s links from the mean map (key MEAN) and from each cross-attention (layer,
        head) in `heads` (0-based; keys `evaluate.head_name`, e.g. 'L1H2')."""
        if heads and self.layout is None:
            raise AlignError("this run's model has one attention map per target token (no layers "
                             "and heads: model.arch=rnn); drop --layer/--head/--all_heads.")
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
        names = {MEAN: None, **{evaluate.head_name(*lh): lh for lh in heads}}
        out: dict[str, list[set[Link]]] = {name: [set() for _ in src] for name in names}
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
            scored = jax.device_get(self.score(self.params, batch))
            for name, lh in names.items():
                attention = np.asarray(scored["forced_attention"][0] if lh is None else
                                       scored["forced_heads"][0][:, lh[0], lh[1]])  # [B, T, S]
                for r, n in enumerate(chunk):
                    out[name][n] = metrics.word_alignment(attention[r], src[n][1], tgt[n][1])
        return out


# ------------------------------------------------------------------ the embedded data's gold


def export_synthetic(workdir: str, out_dir: str, split: str = "test") -> tuple[str, str, str]:
    """Writes a run's split of the embedded data in this command's input formats: OUT_DIR/SPLIT.hi
    and SPLIT.en (the run's data.source_lang / target_lang; one sentence a line) and SPLIT.gold.

    The split is generated again from the run's config.json (sizes, seed), so it is the run's own
    only while attn_jax/data/synthetic.py is unchanged: a run whose vocabulary records another
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
    try:
        has_gold = sources.dataset(data.name).gold
    except ValueError:  # A name no registry entry handles (any more).
        has_gold = False
    if not has_gold:
        with_gold = ", ".join(repr(name) for name, entry in sources.DATASETS.items() if entry.gold)
        raise AlignError(f"{workdir} was trained on data.name={data.name!r}; only the embedded "
                         f"data ({with_gold}) has gold alignments to export.")
    now = sources.dataset_meta(data)["generator"]  # The fingerprint of attn_jax/data/synthetic.py.
    if trained_on != now:
        raise AlignError(
            f"{workdir} was trained on the embedded data of generator {trained_on}, but "
            f"attn_jax/data/synthetic.py is now {now}, so the run's {split} split cannot be "
            "generated again; export with the attn_jax/data/synthetic.py the run was trained with.")
    sizes = {"test": data.test_size, "valid": data.valid_size, "train": data.train_size}
    drawn = order[:order.index(split) + 1]  # A split depends only on those drawn before it.
    examples = synthetic.generate_splits({k: sizes[k] for k in drawn}, data.seed)[split]
    paths = tuple(os.path.join(out_dir, f"{split}.{ext}")
                  for ext in (data.source_lang, data.target_lang, "gold"))
    columns = ([ex.src for ex in examples], [ex.tgt for ex in examples],
               [gold.format_gold(ex.sure, ex.possible) for ex in examples])
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


def align_and_score(aligner: Aligner, src_lines: Sequence[str], tgt_lines: Sequence[str],
                    gold_links: tuple | None = None, reverse: bool = False,
                    out: IO[str] | None = None, heads: Sequence[tuple[int, int]] = (),
                    use: str = MEAN) -> dict[str, Any]:
    """Aligns the pairs, writes the links of map `use` (MEAN, or a `heads` name like 'L1H2') to
    `out`, scores them against `gold_links` (sure, possible) if given: the command's JSON summary
    (aer None without gold), with "map" (`use`) and {"heads": {name: summary}} when `heads` are
    asked for."""
    maps = aligner.align_maps(src_lines, tgt_lines, heads=heads)

    def summary(predicted):
        if gold_links is None:
            return {"aer": None, "sentences": len(predicted), "links": sum(map(len, predicted))}
        try:
            return gold.score(predicted, *gold_links)
        except ValueError as e:  # No links at all: AER is undefined.
            raise AlignError(f"{e}; give non-empty sentence pairs and gold links.") from None

    if out is not None:
        out.write("".join(gold.format_links(links, reverse) + "\n" for links in maps[use]))
    result = summary(maps[use])
    if heads:
        result.update(map=use, heads={name: summary(maps[name]) for name in maps if name != MEAN})
    return result


def align_files(aligner: Aligner, src_path: str, tgt_path: str, gold_path: str | None = None,
                reverse: bool = False, out: IO[str] | None = None) -> dict[str, Any]:
    """`gold.read_inputs` then `align_and_score`: what the command does with a loaded run."""
    return align_and_score(aligner, *gold.read_inputs(src_path, tgt_path, gold_path, reverse),
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
    flags.DEFINE_integer("layer", None, "Per-head models: align with this cross-attention layer "
                         "(1-based; with --head) instead of the mean over layers and heads.")
    flags.DEFINE_integer("head", None, "Per-head models: the head of --layer (1-based).")
    flags.DEFINE_bool("all_heads", False, "Per-head models: also score every layer and head, "
                      "printing a table of their AER (stderr) and adding them to the JSON.")
    flags.DEFINE_string("method", attribution.ATTENTION, "What the links come from: "
                        f"{' | '.join(attribution.METHODS)} (module docstring).")
    flags.DEFINE_integer("ig_steps", 16, "--method=integrated_gradients: points of the path "
                         "integral (>= 1).")
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
    if (FLAGS.layer is None) != (FLAGS.head is None) or min(FLAGS.layer or 1, FLAGS.head or 1) < 1:
        raise AlignError("--layer and --head go together, both >= 1 (e.g. --layer=2 --head=1).")
    try:
        attribution.check_methods([FLAGS.method], FLAGS.ig_steps)
    except ValueError as e:
        raise AlignError(str(e)) from None
    if FLAGS.method != attribution.ATTENTION and (FLAGS.layer is not None or FLAGS.all_heads):
        raise AlignError(f"--layer, --head and --all_heads pick attention maps; --method="
                         f"{FLAGS.method} gives one map per sentence: drop them.")
    inputs = gold.read_inputs(FLAGS.src, FLAGS.tgt, FLAGS.gold, FLAGS.reverse)  # Checked first.
    aligner, warnings = Aligner.from_workdir(FLAGS.workdir, FLAGS.batch_size,
                                             best=FLAGS.checkpoint == "best",
                                             method=FLAGS.method, ig_steps=FLAGS.ig_steps)
    heads, use = _heads_asked(aligner)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    with contextlib.ExitStack() as stack:
        out = None
        if FLAGS.out:
            try:
                out = stack.enter_context(open(FLAGS.out, "w", encoding="utf-8"))
            except OSError as e:
                raise AlignError(f"cannot write --out={FLAGS.out}: {e.strerror}.") from None
        summary = align_and_score(aligner, *inputs, reverse=FLAGS.reverse, out=out,
                                  heads=heads, use=use)
    if FLAGS.method != attribution.ATTENTION:
        summary["method"] = FLAGS.method
    for note in aligner.notes:
        print(f"note: {note}", file=sys.stderr)
    if FLAGS.all_heads:
        print(head_table(summary), file=sys.stderr)
    return summary


def _heads_asked(aligner: Aligner) -> tuple[list[tuple[int, int]], str]:
    """The (layer, head) maps the flags ask for (0-based) and the one whose links are written."""
    if FLAGS.layer is None and not FLAGS.all_heads:
        return [], MEAN
    if aligner.layout is None:
        aligner.align_maps([], [], heads=[(0, 0)])  # The one-line error for a model without heads.
    layers, per_layer = aligner.layout
    if FLAGS.layer is not None and (FLAGS.layer > layers or FLAGS.head > per_layer):
        raise AlignError(f"--layer={FLAGS.layer} --head={FLAGS.head} is outside this run's "
                         f"{layers} layers x {per_layer} heads.")
    every = [(layer, head) for layer in range(layers) for head in range(per_layer)]
    chosen = [(FLAGS.layer - 1, FLAGS.head - 1)] if FLAGS.layer is not None else []
    heads = every if FLAGS.all_heads else chosen
    return heads, evaluate.head_name(*chosen[0]) if chosen else MEAN


def head_table(summary: dict[str, Any]) -> str:
    """Markdown table of AER per layer (rows) and head (columns), and the mean map's."""
    heads = summary["heads"]
    layers = sorted({name[1:name.index("H")] for name in heads}, key=int)
    per_layer = sorted({name[name.index("H") + 1:] for name in heads}, key=int)

    def cell(name):
        aer = heads[name]["aer"]
        return "-" if aer is None else f"{aer:.3f}"

    lines = ["| AER | " + " | ".join(f"head {h}" for h in per_layer) + " |",
             "|---|" + "---:|" * len(per_layer)]
    lines += [f"| layer {layer} | " + " | ".join(cell(f"L{layer}H{h}") for h in per_layer) + " |"
              for layer in layers]
    mean = summary.get("aer") if summary["map"] == MEAN else None
    return "\n".join(lines + ([f"mean of all heads: {mean:.3f}"] if mean is not None else []))


def main(argv):
    del argv
    summary = cli.one_line_errors(_align_all, (AlignError, translate.TranslateError))
    print(json.dumps(summary))


if __name__ == "__main__":
    cli.start(_define_flags, main)
