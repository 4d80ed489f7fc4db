"""Prints this experiment's Markdown tables from finished run directories (results.json,
metrics.jsonl, config.json), so every figure in README.md comes from the runs, not from hand
copying.

    python experiments/multi30k/table.py runs/m30k/*/

Tables: (1) per run, valid and test BLEU (cased, lowercased) and chrF for the run's decoding
(beam 5) and greedily; (2) per model (scorer and flow; runs of the same model with other seeds
are averaged: mean ± sample standard deviation, ddof=1), in the style of Luong et al. 2015,
Table 4: test BLEU (beam 5),
BLEU by source length, chrF, perplexity, the final valid attention entropy and the wall time;
(3) valid BLEU and (4) valid attention entropy at every evaluation, per run.
"""

import collections
import json
import os
import sys

import numpy as np

LENGTHS = ("1-10", "11-20", "21-30")  # Multi30k test sentences are at most 30 words or so.


def _row(name: str, decoding: str, valid: dict, test: dict, minutes: str) -> str:
    cells = [valid["bleu"], valid["bleu_lowercase"], valid["chrf"],
             test["bleu"], test["bleu_lowercase"], test["chrf"]]
    return "| " + " | ".join([name, decoding, *(f"{c:.2f}" for c in cells), minutes]) + " |"


def _load(workdir: str) -> dict:
    def read(name):
        with open(os.path.join(workdir, name)) as f:
            return json.load(f) if name.endswith(".json") else [json.loads(line) for line in f]

    config, results, rows = read("config.json"), read("results.json"), read("metrics.jsonl")
    return {"name": os.path.basename(workdir.rstrip("/")), "config": config, "results": results,
            "valid": [r for r in rows if r["split"] == "valid"]}


def _cell(values: list[float | None], digits: int = 2) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"  # sample std, as everywhere


def _seed_rows(run: dict) -> list[dict]:
    """The test metrics of each seed in the run (a vmapped-seeds run has several)."""
    return [seed["test"] for seed in run["results"]["seeds"]]


def run_table(runs: list[dict]) -> None:
    print("| run | decoding | valid BLEU | valid BLEU lc | valid chrF | test BLEU | "
          "test BLEU lc | test chrF | wall min |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        r = run["results"]
        beam = run["config"]["eval"]["beam_size"]
        print(_row(run["name"], f"beam {beam}", r["valid"], r["test"],
                   f"{r['wall_seconds'] / 60:.1f}"))
        if "test_greedy" in r:
            print(_row(run["name"], "greedy", r["valid_greedy"], r["test_greedy"], "(same run)"))


def model_table(runs: list[dict]) -> None:
    models = collections.defaultdict(list)
    for run in runs:
        c = run["config"]
        models[(c["model"]["scorer"], c["model"]["flow"])].append(run)
    print("| scorer | flow | seeds | test BLEU | " + " | ".join(f"BLEU {n} words" for n in LENGTHS)
          + " | test chrF | test ppl | valid attention entropy | wall min |")
    print("|---|---|---|---|" + "---|" * len(LENGTHS) + "---|---|---|---|")
    for (scorer, flow), group in sorted(models.items(), key=lambda kv: -np.mean(
            [t["bleu"] for run in kv[1] for t in _seed_rows(run)])):
        tests = [t for run in group for t in _seed_rows(run)]
        seeds = [s["seed"] for run in group for s in run["results"]["seeds"]]
        entropy = [run["valid"][-1].get("attention_entropy") for run in group if run["valid"]]
        cells = [_cell([t["bleu"] for t in tests])]
        cells += [_cell([t["bleu_by_length"].get(n) for t in tests]) for n in LENGTHS]
        cells += [_cell([t["chrf"] for t in tests]), _cell([t["perplexity"] for t in tests]),
                  _cell(entropy, 3),
                  _cell([run["results"]["wall_seconds"] / 60 for run in group], 1)]
        print(f"| {scorer} | {flow} | {','.join(map(str, seeds))} | " + " | ".join(cells) + " |")


def curve_table(runs: list[dict], key: str, digits: int) -> None:
    steps = sorted({row["step"] for run in runs for row in run["valid"]})
    print("| step | " + " | ".join(run["name"] for run in runs) + " |")
    print("|---|" + "---|" * len(runs))
    for step in steps:
        cells = []
        for run in runs:
            values = [row.get(key) for row in run["valid"] if row["step"] == step]
            values = [v for v in values if v is not None]
            cells.append(f"{np.mean(values):.{digits}f}" if values else "")
        print(f"| {step:,} | " + " | ".join(cells) + " |")


def main(workdirs: list[str]) -> None:
    unfinished = [w for w in workdirs if not os.path.exists(os.path.join(w, "results.json"))]
    if unfinished:  # Still training (or stopped): no test metrics to report yet.
        print("skipping unfinished runs:", ", ".join(unfinished), file=sys.stderr)
    runs = [_load(w) for w in workdirs if w not in unfinished]
    run_table(runs)
    print()
    model_table(runs)
    print()
    curve_table(runs, "bleu", 2)
    print()
    curve_table(runs, "attention_entropy", 3)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
