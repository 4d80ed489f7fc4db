"""Prints this experiment's Markdown tables from finished run directories (results.json,
metrics.jsonl), so every figure in README.md comes from the runs, not from hand copying.

    python experiments/multi30k/table.py runs/m30k_additive runs/m30k_dot runs/m30k_general
"""

import json
import os
import sys


def _row(name: str, decoding: str, valid: dict, test: dict, minutes: str) -> str:
    cells = [valid["bleu"], valid["bleu_lowercase"], valid["chrf"],
             test["bleu"], test["bleu_lowercase"], test["chrf"]]
    return "| " + " | ".join([name, decoding, *(f"{c:.2f}" for c in cells), minutes]) + " |"


def main(workdirs: list[str]) -> None:
    print("| scorer | decoding | valid BLEU | valid BLEU lc | valid chrF | test BLEU | "
          "test BLEU lc | test chrF | wall min |")
    print("|---|---|---|---|---|---|---|---|---|")
    curves = {}
    for workdir in workdirs:
        with open(os.path.join(workdir, "results.json")) as f:
            r = json.load(f)
        with open(os.path.join(workdir, "config.json")) as f:
            beam = json.load(f)["eval"]["beam_size"]
        minutes = f"{r['wall_seconds'] / 60:.1f}"
        print(_row(r["scorer"], f"beam {beam}", r["valid"], r["test"], minutes))
        if "test_greedy" in r:
            print(_row(r["scorer"], "greedy", r["valid_greedy"], r["test_greedy"], "(same run)"))
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f]
        curves[r["scorer"]] = [(row["step"], row["bleu"]) for row in rows
                               if row["split"] == "valid"]
    print()
    steps = sorted({s for curve in curves.values() for s, _ in curve})
    print("| step | " + " | ".join(curves) + " |")
    print("|---|" + "---|" * len(curves))
    for step in steps:
        cells = [next((f"{b:.2f}" for s, b in curve if s == step), "") for curve in
                 curves.values()]
        print(f"| {step:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
