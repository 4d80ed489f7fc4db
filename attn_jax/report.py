"""The offline sweep report, and the docs' measured figures, rebuilt from files.

    python -m attn_jax.report --sweep_dir=runs/sweep [--out_dir=DIR] [--hidden_size=256]
    python -m attn_jax.report --readme     # rewrite every generated block of the READMEs in place
    python -m attn_jax.report --check      # exit 1 naming each stale block and unbacked figure

The first form reads the finished trials under `--sweep_dir` (`attn_jax.eval.trials`), lists
those it skips (no results.json), and writes the sweep's tables and figures into `--out_dir`
(default SWEEP_DIR/plots): a translation sweep's by `attn_jax.eval.sweep_report` (the scorer x
hidden grid, or the arch x scorer grid), a captioning sweep's by `attn_jax.eval.caption_report`.
`--readme` and `--check`: `attn_jax.eval.doc_blocks`. Flags are defined only when run as a script.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from attn_jax.eval import caption_report, doc_blocks, sweep_report
from attn_jax.eval import trials as trials_lib

# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def make_all(sweep_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
             hidden_size: int | None = None) -> list[Path]:
    """Writes every sweep figure (PNG + PDF) and table; returns the paths written.

    `hidden_size` picks the size for the per-size figures (default: the largest present). A
    sweep with a model family other than the RNN (configs/sweeps/arch_scorer.py) gets the arch
    grid's report instead (`sweep_report.make_arch_report`, at that one size). Raises ValueError if the sweep
    has no finished trial. A captioning sweep (results with CIDEr) gets `caption_report`'s report.
    """
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir / "plots"
    trials = trials_lib.load_sweep(sweep_dir)
    if not trials:
        raise ValueError(f"no finished trial (folder with results.json) under {sweep_dir}")
    skipped = trials_lib.unfinished_trials(sweep_dir)
    if caption_report.is_caption_sweep(trials):
        return caption_report.make_caption_report(trials, out, skipped)
    if sweep_report.is_arch_grid(trials):
        return sweep_report.make_arch_report(trials, out, skipped, hidden_size)
    return sweep_report.make_sweep_report(trials, out, skipped, hidden_size)


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("sweep_dir", None, "Sweep folder holding one subfolder per trial.")
    flags.DEFINE_bool("readme", False, "Rewrite the generated blocks of README.md, experiments/*/README.md "
                      "and docs/*.md from the committed result files.")
    flags.DEFINE_bool("check", False, "Exit 1, naming them, if a generated block is stale or a decimal "
                      "figure in the prose is in no committed result file.")
    flags.DEFINE_string("out_dir", None, "Output folder (default: SWEEP_DIR/plots).")
    flags.DEFINE_integer("hidden_size", None, "Hidden size for the per-size figures, and of the whole "
                         "report of an arch grid (default: largest).")


def main(argv: Sequence[str]) -> None:
    from absl import flags

    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {argv[1:]}")
    FLAGS = flags.FLAGS
    if FLAGS.readme or FLAGS.check:
        if FLAGS.readme:
            for path in doc_blocks.write_readmes():
                print(f"rewrote {path.relative_to(doc_blocks.REPO_ROOT)}")
        if FLAGS.check:
            problems = [f"stale block: {b}" for b in doc_blocks.stale_blocks()]
            problems += [f"figure in no committed result file: {f}" for f in doc_blocks.unbacked_figures()]
            for line in problems:
                print(line)
            if problems:
                raise SystemExit(f"{len(problems)} problem(s); `{doc_blocks.GENERATOR}` rewrites "
                                 "the stale blocks")
        return
    if not FLAGS.sweep_dir:
        from absl import app

        raise app.UsageError("--sweep_dir is required (or --readme / --check)")
    for path in trials_lib.unfinished_trials(FLAGS.sweep_dir):
        print(f"skipped (no results.json): {path}")
    for path in make_all(FLAGS.sweep_dir, FLAGS.out_dir, FLAGS.hidden_size):
        print(path)


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
