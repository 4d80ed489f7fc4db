r"""Is attention an explanation? Attribution alignments and attention perturbation of trained runs.

    python -m attn_jax.interpret --out=DIR [--split=test] [--max_sentences=500] \
        [--ig_steps=16] [--perturb_sentences=500] RUN [RUN ...]

For every RUN (the workdir of a finished `attn_jax.train` run; each trial of a sweep, e.g.
runs/arch_scorer/arch=rnn,scorer=additive) and every replica (seed) in its best checkpoint:

* alignments (data with gold only): the AER of the links from attention and from each gradient
  method of `attn_jax.eval.attribution` (saliency, grad_x_input, integrated_gradients), on the
  first --max_sentences sentences of --split, by the evaluation's own code
  (`evaluate.run_split` with `attribution`: the words, links and AER of training-time AER);
  BLEU of the same sentences beside them;
* perturbation (any data; not for the no-attention scorer): `attn_jax.eval.perturb` on the first
  --perturb_sentences sentences: α replaced by a permutation, uniform weights, the argmax, or
  another seed's weights, and how much the output moves.

Writes DIR/NAME.json per run (NAME: the run folder's name) with the numbers per replica, and
DIR/tables.md: one table of AER by method and one of perturbation effects, a row per run
(mean ± standard deviation over its replicas). A run whose NAME.json is in DIR already (same
workdir, split, ig_steps and sentence counts) is not measured again, so rerunning the command with
more runs resumes it and rewrites the tables over all of them. Bad input (a folder without a
finished run, an image run, an unknown split) stops with a one-line error naming the fix before
anything compiles.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from absl import flags

from attn_jax import translate
from attn_jax.data import batches
from attn_jax.eval import attribution, evaluate, metrics
from attn_jax.eval import perturb as perturb_lib
from attn_jax.model import attention
from attn_jax.run import cli, steps

FLAGS = flags.FLAGS


class InterpretError(Exception):
    """Input the command cannot use; the message names the fix."""


def _load(workdir: str) -> translate.Translator:
    if not os.path.exists(os.path.join(workdir, "results.json")):
        raise InterpretError(f"{workdir} holds no finished run (no results.json); pass the "
                             "workdirs of finished training runs.")
    try:
        run = translate.Translator(workdir)
        attribution.check_model(run.model.config)
    except (translate.TranslateError, ValueError) as e:
        raise InterpretError(str(e)) from None
    return run


def alignments(run: translate.Translator, data: batches.Data, split: str, sentences: int,
               ig_steps: int) -> list[dict[str, Any]] | None:
    """Per replica: AER of attention (None without attention) and of every gradient method, with
    BLEU and exact match, on the first `sentences` of `split`; None when the data has no gold."""
    if data[split].sure is None:
        return None
    config, model = run.config, run.model
    rows = evaluate.run_split(
        data, split, steps.make_eval_step(model, config.eval.max_decode_extra), run.replicas,
        batch_size=config.eval.batch_size, num_seeds=len(_seeds(run)),
        attends=attention.scorer_class(model.config.scorer).attends, subset=sentences,
        attribution=attribution.make_scorer(model, attribution.GRADIENT_METHODS, ig_steps)).metrics
    keep = ("num_sentences", "bleu", "exact_match", "aer",
            *(f"aer_{m}" for m in attribution.GRADIENT_METHODS))
    return [{key: row[key] for key in keep} for row in rows]


def gold_floors(split: batches.Split, sentences: int = 0) -> dict[str, float]:
    """AER of links read off the gold itself, one per target word as every method links, on the
    first `sentences` (0 = all) of a split with gold: "sure" links each target word to a sure
    source word where it has one (else a possible one: the floor of one link per word), and
    "normalised_argmax" to the argmax of its sure + possible links normalised (the first on a
    tie: what an α equal to supervised attention's gold with align_possible_weight=1 gives)."""
    n = len(split) if not sentences else min(sentences, len(split))
    sure_links, argmax_links = [], []
    for i in range(n):
        sure, linked = set(split.sure[i]), set(split.sure[i]) | set(split.possible[i])
        by_sure, by_argmax = set(), set()
        for t in range(len(split.tgt_text[i].split())):
            mine = sorted(s for s, tt in sure if tt == t) or sorted(
                s for s, tt in linked if tt == t)
            if mine:
                by_sure.add((mine[0], t))
            ranked = sorted(s for s, tt in linked if tt == t)
            by_argmax.add((ranked[0] if ranked else 0, t))
        sure_links.append(by_sure)
        argmax_links.append(by_argmax)
    gold = ([set(s) for s in split.sure[:n]], [set(p) for p in split.possible[:n]])
    return {"sure": metrics.aer(sure_links, *gold),
            "normalised_argmax": metrics.aer(argmax_links, *gold)}


def _seeds(run: translate.Translator) -> list[int]:
    t = run.config.train
    return list(range(t.seed, t.seed + t.num_seeds))


def interpret_run(workdir: str, split: str, sentences: int, ig_steps: int,
                  perturb_sentences: int, run: translate.Translator | None = None) -> dict[str, Any]:
    """The JSON of one run (module docstring); `run`: the workdir already loaded."""
    run = run or _load(workdir)
    start = time.time()
    data = batches.load(run.config.data, workdir)
    if split not in data.splits:
        raise InterpretError(f"unknown --split={split!r}; valid: {', '.join(data.splits)}.")
    scorer = run.model.config.scorer
    out: dict[str, Any] = {
        "workdir": workdir, "arch": run.config.model.arch, "scorer": scorer,
        "flow": getattr(run.model.config, "flow", None), "seeds": _seeds(run),
        "checkpoint_step": run.step, "split": split, "ig_steps": ig_steps,
        "max_sentences": sentences, "perturb_sentences": perturb_sentences,
        "alignments": alignments(run, data, split, sentences, ig_steps),
        "gold_floors": gold_floors(data[split], sentences) if data[split].sure else None}
    out["perturbation"] = None
    if attention.scorer_class(scorer).attends and perturb_sentences:
        sp = data[split]
        pairs = list(zip(sp.src_text, sp.tgt_text))[:perturb_sentences]
        out["perturbation"] = perturb_lib.perturb_split(
            run.model, run.replicas, data.src_vocab, data.tgt_vocab, pairs,
            buckets=data.buckets, batch_size=run.config.eval.batch_size,
            extra_len=run.config.eval.max_decode_extra)
    out["seconds"] = round(time.time() - start, 1)
    return out


# ------------------------------------------------------------------------------------ tables


def _mean_sd(values: Sequence[float | None], scale: float = 1.0, digits: int = 3) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _name(result: dict[str, Any]) -> str:
    flow = f", {result['flow']}" if result.get("flow") else ""
    seeds = len(result["seeds"])
    return f"{result['arch']} {result['scorer']}{flow} ({seeds} seed{'s' * (seeds != 1)})"


def tables(results: Sequence[dict[str, Any]]) -> str:
    """The markdown of DIR/tables.md."""
    methods = [("aer", "attention"), *((f"aer_{m}", m) for m in attribution.GRADIENT_METHODS)]
    lines = ["AER of each target word's argmax source word against the gold (lower is better; "
             "mean ± sd over seeds):", "",
             "| run | sentences | BLEU | " + " | ".join(label for _, label in methods) + " |",
             "|---|---:|---:|" + "---:|" * len(methods)]
    for r in results:
        rows = r["alignments"]
        if not rows:
            continue
        lines.append(f"| {_name(r)} | {rows[0]['num_sentences']} | "
                     f"{_mean_sd([x['bleu'] for x in rows], digits=2)} | "
                     + " | ".join(_mean_sd([x[key] for x in rows]) for key, _ in methods) + " |")
    floors = next((r["gold_floors"] for r in results if r.get("gold_floors")), None)
    if floors:
        lines += ["", f"The gold itself, one link per target word on the same sentences: a sure "
                  f"link where the word has one, AER {floors['sure']:.3f}; the argmax of its "
                  f"sure + possible links normalised (first on a tie), "
                  f"{floors['normalised_argmax']:.3f}."]
    lines += ["", "Attention replaced at every decoder step (`attn_jax.eval.perturb`): mean "
              "over seeds of the total variation and Jensen-Shannon divergence (nats) between "
              "the original and perturbed next-token distributions, the share of changed "
              "argmax predictions, the change in nll per token (teacher forced), and greedy "
              "BLEU:", "",
              "| run | perturbation | TV | JS | changed argmax | Δnll/token | BLEU → perturbed |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        report = r["perturbation"]
        for name in report["perturbations"] if report else ():
            result = report["results"][name]
            if "skipped" in result:
                lines.append(f"| {_name(r)} | {name} | n/a | n/a | n/a | n/a | n/a |")
                continue
            rows = result["replicas"]
            lines.append(
                f"| {_name(r)} | {name} | {_mean_sd([x['tv'] for x in rows])} | "
                f"{_mean_sd([x['js'] for x in rows])} | "
                f"{_mean_sd([x['changed_argmax'] for x in rows], 100, 1)}% | "
                f"{_mean_sd([x['delta_nll'] for x in rows])} | "
                f"{_mean_sd([x['bleu_original'] for x in rows], digits=2)} → "
                f"{_mean_sd([x['bleu_perturbed'] for x in rows], digits=2)} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- command


def _define_flags() -> None:
    flags.DEFINE_string("out", None, "Folder for NAME.json per run and tables.md.")
    flags.DEFINE_string("split", "test", "The split measured.")
    flags.DEFINE_integer("max_sentences", 500, "Sentences of --split for the alignments "
                         "(0 = all).")
    flags.DEFINE_integer("ig_steps", 16, "Integrated gradients: points of the path integral.")
    flags.DEFINE_integer("perturb_sentences", 500, "Sentences of --split for the perturbations "
                         "(0 = none).")


def interpret_runs(runs: Sequence[str], out: str, split: str = "test",
                   max_sentences: int = 500, ig_steps: int = 16,
                   perturb_sentences: int = 500) -> dict[str, Any]:
    """The command without its flags: measures each run not measured yet into OUT/NAME.json and
    writes OUT/tables.md over all of them; returns {"wrote": [file names]}."""
    if not out or not runs:
        raise InterpretError("usage: python -m attn_jax.interpret --out=DIR RUN [RUN ...].")
    if max_sentences < 0 or perturb_sentences < 0:
        raise InterpretError("--max_sentences and --perturb_sentences must be >= 0.")
    try:
        attribution.check_methods(attribution.GRADIENT_METHODS, ig_steps)
    except ValueError as e:
        raise InterpretError(str(e)) from None
    names = [os.path.basename(os.path.normpath(workdir)) for workdir in runs]
    if len(set(names)) < len(names):
        raise InterpretError(f"two runs share a folder name ({', '.join(names)}): NAME.json "
                             "would be written twice; pass runs with distinct folder names.")
    loaded = {workdir: _load(workdir) for workdir in runs}  # All checked before any is measured.
    os.makedirs(out, exist_ok=True)
    settings = {"split": split, "ig_steps": ig_steps, "max_sentences": max_sentences,
                "perturb_sentences": perturb_sentences}
    results = []
    for workdir, name in zip(runs, names):
        path = os.path.join(out, f"{name}.json")
        done = _read_json(path)
        if done and done.get("workdir") == workdir and all(
                done.get(k) == v for k, v in settings.items()):
            print(f"{name}: measured already ({path})", file=sys.stderr, flush=True)
            results.append(done)
            continue
        result = interpret_run(workdir, split, max_sentences, ig_steps, perturb_sentences,
                               run=loaded[workdir])
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        os.replace(path + ".tmp", path)  # Whole or absent: a killed command resumes cleanly.
        print(f"{name}: {result['seconds']} s", file=sys.stderr, flush=True)
        results.append(result)
    with open(os.path.join(out, "tables.md"), "w", encoding="utf-8") as f:
        f.write(tables(results))
    return {"wrote": sorted(os.listdir(out))}


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main(argv):
    summary = cli.one_line_errors(
        lambda: interpret_runs(argv[1:], FLAGS.out, FLAGS.split, FLAGS.max_sentences,
                               FLAGS.ig_steps, FLAGS.perturb_sentences), (InterpretError,))
    print(json.dumps(summary))


if __name__ == "__main__":
    cli.start(_define_flags, main)
