r"""Attention perturbation of a trained run (Jain & Wallace 2019): how the output changes when the
attention weights are replaced.

    python -m attn_jax.perturb --workdir=runs/demo [--split=test] [--max_sentences=500] \
        [--perturbations=permute,uniform,argmax,seed] [--other_workdir=RUN] [--out=report.json]
    python -m attn_jax.perturb --workdir=runs/demo --src=test.hi --tgt=test.en

At every step of the run's step-by-step decoder α is replaced (`attn_jax.eval.perturb`): permute
(a random permutation over the real source positions, --seed), uniform, argmax (one-hot), seed
(the α of another trained model at the same step on the same prefix: replica (k + 1) % K of the
same checkpoint when the run trained K >= 2 seeds, or the replicas of --other_workdir, a run with
the same vocabularies, model.arch, layers and heads; with one seed and no other run it is skipped
and the table reads n/a). Every replica of the best checkpoint by valid BLEU (the newest without
one, or with --checkpoint=newest) is measured: teacher-forced over the real target tokens (EOS
included) the mean total variation and Jensen-Shannon divergence (nats) between the original and
perturbed next-token distributions, the fraction of changed argmax predictions, the mean nll per
token original and perturbed; and the corpus BLEU of greedy decoding without and with it.

Data: the first --max_sentences pairs (0 = all) of the run's own --split, loaded as training
loads it, or of --src/--tgt (one sentence a line, the target as the reference), in the run's
length buckets (a longer pair is refused). Output: one JSON object on stdout (and --out): the
run, checkpoint and data, then `attn_jax.eval.perturb.perturb_split`'s report ("original",
"results": {perturbation: {"replicas": [...], "mean", "std"} or {"skipped": why}}); a markdown
table on stderr. Bad input (an unknown perturbation, --max_sentences < 0, --src without --tgt, a
workdir without a run, an image run, the 'none' scorer, an incompatible --other_workdir) ends
with a one-line error naming the fix and exit status 1, before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

from absl import flags

from attn_jax import translate
from attn_jax.data import batches
from attn_jax.eval import gold
from attn_jax.eval import perturb as perturb_lib
from attn_jax.run import cli

PerturbError = perturb_lib.PerturbError
SPLITS = ("test", "valid")


@dataclasses.dataclass
class Run:
    """A trained run loaded for perturbation: its config, model, every replica's parameters."""

    workdir: str
    config: Any
    model: Any
    src_vocab: Any
    tgt_vocab: Any
    params: Any = None  # [K, ...] leaves, once `restore`d.
    step: int | None = None
    checkpoint: str | None = None  # 'best' | 'newest'
    warnings: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def read(cls, workdir: str, which: str = "--workdir") -> Run:
        """The run's config, vocabularies and model (nothing restored or compiled); refuses a
        folder without a run, and a model with nothing to perturb."""
        try:
            config, src_vocab, tgt_vocab, model = translate.read_run(workdir, which)
        except (translate.TranslateError, ValueError) as e:
            raise PerturbError(str(e)) from None
        perturb_lib.check_model(model, "this run's" if which == "--workdir" else
                                "the --other_workdir run's")
        return cls(workdir, config, model, src_vocab, tgt_vocab)

    def restore(self, best: bool = True) -> None:
        """Every replica of the best checkpoint by valid BLEU (the newest if none, or not best)."""
        state, self.step, self.checkpoint = translate.restore_state(
            self.workdir, self.config, self.model, best)
        self.params = state.params
        if not os.path.exists(os.path.join(self.workdir, "results.json")):
            self.warnings.append(f"{self.workdir} has not finished training (no results.json); "
                                 f"perturbing its {self.checkpoint} checkpoint, step {self.step}.")


def _same_vocab(a, b) -> bool:
    return a.size == b.size and a.pieces(range(a.size)) == b.pieces(range(b.size))


def read_pairs(run: Run, split: str, src: str | None, tgt: str | None,
               max_sentences: int) -> tuple[list[tuple[str, str]], str]:
    """The first max_sentences (0 = all) (source, reference) pairs of --src/--tgt, or of the
    run's split as training loads it; and a name for them."""
    if src:
        src_lines, tgt_lines = gold.read_lines(src, "src"), gold.read_lines(tgt, "tgt")
        if len(src_lines) != len(tgt_lines):
            raise PerturbError(f"--src has {len(src_lines)} lines but --tgt {len(tgt_lines)}; "
                               "give one target line per source line.")
        pairs, name = list(zip(src_lines, tgt_lines)), f"{src} / {tgt}"
    else:
        try:
            data = batches.load(run.config.data, run.workdir)
        except (ValueError, OSError) as e:
            raise PerturbError(f"cannot load the run's data ({e}); or pass --src and --tgt "
                               "files.") from None
        sp = data[split]
        pairs, name = list(zip(sp.src_text, sp.tgt_text)), split
    return (pairs[:max_sentences] if max_sentences else pairs), name


def perturb_workdir(workdir: str, *, split: str = "test", src: str | None = None,
                    tgt: str | None = None, max_sentences: int = 500,
                    perturbations: str = ",".join(perturb_lib.PERTURBATIONS),
                    other_workdir: str | None = None, seed: int = 0, batch_size: int = 64,
                    best: bool = True) -> tuple[dict[str, Any], list[str]]:
    """The command without its flags: (report, warnings). Every input is checked (PerturbError,
    gold.InputError) before anything is compiled."""
    names = perturb_lib.check_perturbations([n.strip() for n in perturbations.split(",")
                                             if n.strip()])
    if max_sentences < 0:
        raise PerturbError(f"--max_sentences={max_sentences}: give a count >= 0 (0 = all).")
    if batch_size < 1:
        raise PerturbError(f"--batch_size={batch_size}: give a count >= 1.")
    if bool(src) != bool(tgt):
        raise PerturbError("--src and --tgt go together (the source sentences and their "
                           "references); give both, or neither to use the run's --split.")
    if split not in SPLITS:
        raise PerturbError(f"--split={split!r}: use one of {', '.join(SPLITS)}.")
    if not workdir:
        raise PerturbError("--workdir is required: the workdir of a training run.")
    if not os.path.isdir(workdir):
        raise PerturbError(f"--workdir={workdir} is not a directory; pass the workdir of a "
                           "training run (python -m attn_jax.train).")
    run = Run.read(workdir)
    other, warnings = None, []
    if other_workdir and "seed" not in names:
        warnings.append("--other_workdir is read only by the 'seed' perturbation; ignored.")
    if other_workdir and "seed" in names:
        other = Run.read(other_workdir, "--other_workdir")
        for side in ("src", "tgt"):
            if not _same_vocab(getattr(run, f"{side}_vocab"), getattr(other, f"{side}_vocab")):
                raise PerturbError(f"--other_workdir={other_workdir} has another {side} "
                                   "vocabulary than --workdir; pass a run trained on the same "
                                   "data and vocabulary settings.")
        perturb_lib.check_other(run.model, other.model)
    pairs, data_name = read_pairs(run, split, src, tgt, max_sentences)
    if not pairs:
        raise PerturbError("no sentence pairs to perturb; give non-empty --src/--tgt files.")
    run.restore(best)
    if other is not None:
        other.restore(best)
    report = perturb_lib.perturb_split(
        run.model, run.params, run.src_vocab, run.tgt_vocab, pairs,
        buckets=run.config.data.buckets, perturbations=names,
        other=None if other is None else (other.model, other.params), batch_size=batch_size,
        seed=seed, extra_len=run.config.eval.max_decode_extra)
    head = {"workdir": workdir, "checkpoint": run.checkpoint, "step": run.step,
            "arch": run.config.model.arch, "scorer": run.config.model.scorer, "data": data_name,
            "other_workdir": other.workdir if other else None,
            "other_step": other.step if other else None, "seed": seed}
    return {**head, **report}, warnings + run.warnings + (other.warnings if other else [])


FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Flags exist only when run as a program, so importing this module defines none."""
    flags.DEFINE_string("workdir", None, "A trained (or checkpointed) text run.")
    flags.DEFINE_string("split", "test", "The run's split to perturb on: test | valid.")
    flags.DEFINE_string("src", None, "Source sentences, one per line (instead of --split).")
    flags.DEFINE_string("tgt", None, "Their reference translations, one per line.")
    flags.DEFINE_integer("max_sentences", 500, "The first this many pairs (0 = all).")
    flags.DEFINE_string("perturbations", ",".join(perturb_lib.PERTURBATIONS),
                        "Comma list of: " + ", ".join(perturb_lib.PERTURBATIONS) + ".")
    flags.DEFINE_string("other_workdir", None, "'seed': take α from this run's replicas (same "
                        "vocabularies, model.arch, layers and heads).")
    flags.DEFINE_integer("seed", 0, "PRNG seed of the 'permute' permutations.")
    flags.DEFINE_integer("batch_size", 64, "Sentence pairs per batch.")
    flags.DEFINE_enum("checkpoint", "best", ["best", "newest"],
                      "The best checkpoint by valid BLEU (the newest if none), or the newest.")
    flags.DEFINE_string("out", None, "Also write the JSON report here.")


def _perturb_all() -> dict[str, Any]:
    report, warnings = perturb_workdir(
        FLAGS.workdir, split=FLAGS.split, src=FLAGS.src, tgt=FLAGS.tgt,
        max_sentences=FLAGS.max_sentences, perturbations=FLAGS.perturbations,
        other_workdir=FLAGS.other_workdir, seed=FLAGS.seed, batch_size=FLAGS.batch_size,
        best=FLAGS.checkpoint == "best")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for note in report["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if FLAGS.out:
        try:
            with open(FLAGS.out, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=1)
        except OSError as e:
            raise PerturbError(f"cannot write --out={FLAGS.out}: {e.strerror}.") from None
    print(f"{report['workdir']} ({report['arch']}, scorer {report['scorer']}), {report['data']}: "
          f"{report['sentences']} sentences, {report['tokens']} target tokens, "
          f"{report['replicas']} replica(s); means over replicas", file=sys.stderr)
    print(perturb_lib.table(report), file=sys.stderr)
    return report


def main(argv):
    del argv
    report = cli.one_line_errors(_perturb_all, (PerturbError, gold.InputError,
                                                translate.TranslateError))
    print(json.dumps(report))


if __name__ == "__main__":
    cli.start(_define_flags, main)
