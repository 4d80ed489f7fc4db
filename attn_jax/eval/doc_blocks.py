"""The measured figures of the docs, generated from committed result files, and the check that
keeps them so (`python -m attn_jax.report --readme` / `--check`).

`--readme` and `--check` work on README.md, experiments/*/README.md and docs/*.md: every table of
measured figures there sits between `<!-- generated:NAME -->` and `<!-- /generated -->`, and
`BLOCKS[NAME]` computes it from committed result files (`experiments/<name>/results/`, the sweep's
tables.md and seeds.csv, the benchmark's JSON). A block whose files are not committed yet says
so instead of showing figures. `--check` also lists decimal figures in the prose (outside
generated blocks, code and inline code) that no committed result file holds (`unbacked_figures`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from attn_jax.data.lengths import LENGTH_BUCKETS
from attn_jax.eval.trials import attends, format_mean_std, mean_std, read_json, read_jsonl, scorer_rank

# ---------------------------------------------------------------------------------------------
# README blocks: the measured figures of the READMEs, generated from committed result files
# ---------------------------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC_GLOBS = ("README.md", "experiments/*/README.md", "docs/*.md")
GENERATOR = "python -m attn_jax.report --readme"
_BLOCK = re.compile(r"<!-- generated:(?P<name>[A-Za-z0-9_]+) -->\n(?P<body>.*?)<!-- /generated -->",
                    re.DOTALL)

DEFAULT_RUN = "experiments/default_run/results"
BIDIRECTIONAL_RUN = "experiments/default_run/results/bidirectional"
SIDE_BY_SIDE = "experiments/benchmark/results/side_by_side/summary.json"
TEST_SUITE = "experiments/test_suite/results"
SWEEP_CONVERGED = "experiments/scorer_hidden/converged/tables.md"
SWEEP_H256_SEEDS = "experiments/scorer_hidden/converged/h256_seeds_1_2/seeds.csv"
SWEEP_250_STEPS = "experiments/scorer_hidden/tables.md"
ARCH_SCORER = "experiments/arch_scorer/tables.md"
LONG_INPUTS = ("experiments/benchmark/long_inputs_128_512.json",
               "experiments/benchmark/long_inputs_2048.json")


@dataclasses.dataclass(frozen=True)
class Block:
    """One generated README block: `render(root)` is its Markdown, computed from `sources`."""

    name: str
    sources: tuple[str, ...]  # the files it reads, relative to the repository root
    render: Callable[[Path], str]


def _source_line(*paths: str) -> str:
    return f"Source: {', '.join(f'`{p}`' for p in paths)} (tables written by `{GENERATOR}`)."


def _not_committed(*paths: str) -> str:
    return (f"Not measured in this tree yet: {', '.join(f'`{p}`' for p in paths)} "
            f"{'is' if len(paths) == 1 else 'are'} not committed. The command above writes "
            f"{'it' if len(paths) == 1 else 'them'}; `{GENERATOR}` then fills this block.")


def _md(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> list[str]:
    rule = align or "|" + "---|" * len(header)
    return ["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def _minutes_seconds(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def _bucket_label(bucket: str) -> str:
    return bucket.replace("-", "–")


# --- the default run -------------------------------------------------------------------------


def _train_speed(run_dir: Path) -> tuple[float, int] | None:
    """(median tokens_per_sec, number of windows) over train rows of metrics.jsonl, the first
    window (which holds the compiles) left out."""
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl")
            if r.get("split") == "train" and r.get("tokens_per_sec") is not None]
    speeds = [float(r["tokens_per_sec"]) for r in rows[1:]]
    return (statistics.median(speeds), len(speeds)) if speeds else None


def render_default_run(root: Path) -> str:
    path = root / DEFAULT_RUN / "results.json"
    if not path.exists():
        return _not_committed(f"{DEFAULT_RUN}/results.json")
    r = read_json(path)
    test, valid = r["test"], r.get("valid", {})
    n = int(test.get("num_sentences", 0))
    by_length = test.get("bleu_by_length", {})
    signature = str(test.get("bleu_signature", "")).replace("|", r"\|")
    rows = [(f"BLEU (sacreBLEU `{signature}`)", f"**{test['bleu']:.2f}**"),
            ("exact match", f"{100 * test['exact_match']:.1f}%"),
            ("AER (argmax attention against gold S/P links)",
             "—" if test.get("aer") is None else f"**{test['aer']:.3f}**"),
            ("perplexity", f"{test['perplexity']:.3f}"),
            ("BLEU by source length " + " / ".join(_bucket_label(b) for b in by_length),
             " / ".join("—" if v is None else f"{v:.1f}" for v in by_length.values()))]
    if valid:
        rows.append((f"valid BLEU / AER ({int(valid.get('num_sentences', 0)):,} sentences)",
                     f"{valid['bleu']:.2f} / "
                     + ("—" if valid.get("aer") is None else f"{valid['aer']:.3f}")))
    example = r.get("running_example") or {}
    if example:
        rows.append(("running example (held out)", f"\"{example.get('src')}\" → \"{example.get('hyp')}\""))
    if r.get("num_steps") is not None:
        rows.append(("steps trained (metrics from step)",
                     f"{r['num_steps']:,} ({r.get('evaluated_step', 0):,})"))
    speed = _train_speed(root / DEFAULT_RUN)
    if speed:
        rows.append(("training speed, median of the logged windows after the first",
                     f"{speed[0]:,.0f} real target tokens/s"))
    rows.append(("wall time of the whole command (`wall_seconds`)",
                 f"**{_minutes_seconds(r['wall_seconds'])}**"))
    seconds = r.get("seconds") or {}
    if seconds:
        rows.append(("where it went (`seconds`)", ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())))
    lines = _md([f"metric (test, {n:,} sentences)", "value"], rows)
    sources = _source_line(f"{DEFAULT_RUN}/results.json", f"{DEFAULT_RUN}/metrics.jsonl")
    return "\n".join(lines + ["", sources])


def render_encoder_direction(root: Path) -> str:
    runs = [("forward (the default)", DEFAULT_RUN), ("bidirectional", BIDIRECTIONAL_RUN)]
    present = [(label, d) for label, d in runs if (root / d / "results.json").exists()]
    missing = [f"{d}/results.json" for label, d in runs if (label, d) not in present]
    if not present:
        return _not_committed(*missing)
    rows = []
    for label, d in present:
        r = read_json(root / d / "results.json")
        t = r["test"]
        by_length = t.get("bleu_by_length", {})
        rows.append((label, f"{t['bleu']:.2f}", f"{100 * t['exact_match']:.1f}%",
                     "—" if t.get("aer") is None else f"{t['aer']:.3f}",
                     " / ".join("—" if v is None else f"{v:.1f}" for v in by_length.values()),
                     _minutes_seconds(r["wall_seconds"])))
    lines = _md(["encoder", "test BLEU", "exact match", "test AER", "BLEU by source length "
                 + " / ".join(_bucket_label(b) for b in LENGTH_BUCKETS), "whole command"], rows)
    if missing:
        lines += ["", _not_committed(*missing)]
    return "\n".join(lines + ["", _source_line(*[f"{d}/results.json" for _, d in present])])


# --- the scorer x hidden sweep ---------------------------------------------------------------


@dataclasses.dataclass
class SweepTable:
    """tables.md as `write_tables` writes it: the main table and the BLEU-by-length table,
    each {(scorer, hidden): row cells} with the header."""

    header: list[str]
    rows: dict[tuple[str, int], list[str]]
    length_header: list[str]
    length_rows: dict[tuple[str, int], list[str]]


def _md_tables(text: str) -> list[list[list[str]]]:
    """The Markdown tables of `text`, each a list of rows of cells (the rule line dropped)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def read_sweep_tables(path: Path) -> SweepTable:
    tables = _md_tables(path.read_text())
    main, *rest = tables
    length = next((t for t in rest if any("words" in h for h in t[0])), [main[0]])
    return SweepTable(main[0], {(r[0], int(r[1])): r for r in main[1:]},
                      length[0], {(r[0], int(r[1])): r for r in length[1:]})


def _parse_mean_std(cell: str) -> tuple[float, float | None]:
    mean, _, std = cell.partition("±")
    return float(mean), (float(std) if std.strip() else None)


def _converged_tables(root: Path):
    """The converged grid's committed tables.md (None when it is not committed)."""
    path = root / SWEEP_CONVERGED
    return read_sweep_tables(path) if path.exists() else None


def render_sweep_h128(root: Path) -> str:
    t = _converged_tables(root)
    if t is None:
        return _not_committed(SWEEP_CONVERGED)
    rows = [r for (_, h), r in t.rows.items() if h == 128]
    length_rows = [r for (_, h), r in t.length_rows.items() if h == 128]
    right = "|---|---|---|" + "---:|" * (len(t.header) - 3)
    lines = _md(t.header, rows, right) + ["", "BLEU by source length in words:", ""]
    lines += _md(t.length_header, length_rows, "|---|---|---|" + "---:|" * (len(t.length_header) - 3))
    return "\n".join(lines + ["", _source_line(SWEEP_CONVERGED)])


def render_sweep_summary(root: Path) -> str:
    """The README's summary: hidden 128, test BLEU, AER and the shortest and longest buckets."""
    t = _converged_tables(root)
    if t is None:
        return _not_committed(SWEEP_CONVERGED)
    col = {h: i for i, h in enumerate(t.header)}
    lcol = {h: i for i, h in enumerate(t.length_header)}
    first, last = f"{LENGTH_BUCKETS[0]} words", f"{LENGTH_BUCKETS[-1]} words"
    rows = []
    for key, r in t.rows.items():
        if key[1] != 128:
            continue
        lr = t.length_rows.get(key)
        rows.append((f"`{key[0]}`", r[col["seeds"]], r[col["BLEU"]], r[col["AER"]],
                     lr[lcol[first]] if lr else "—", lr[lcol[last]] if lr else "—"))
    lines = _md(["scorer (hidden 128)", "seeds", "test BLEU", "test AER", f"BLEU {_bucket_label(first)}",
                 f"BLEU {last}"], rows, "|---|---:|---:|---:|---:|---:|")
    return "\n".join(lines + ["", _source_line(SWEEP_CONVERGED)])


def render_bottleneck(root: Path) -> str:
    """Test BLEU by source length with and without attention, at hidden 128 and 256."""
    t = _converged_tables(root)
    if t is None:
        return _not_committed(SWEEP_CONVERGED)
    col = {h: i for i, h in enumerate(t.header)}
    rows = []
    for hidden in (128, 256):
        for scorer in ("additive", "none"):
            r, lr = t.rows.get((scorer, hidden)), t.length_rows.get((scorer, hidden))
            if r is None or lr is None:
                continue
            note = "" if attends(scorer) else " (no attention: the encoder's last state only)"
            label = f"`{scorer}`{note}"
            rows.append([label, str(hidden), r[col["seeds"]], *lr[3:], r[col["BLEU"]]])
    header = ["test BLEU", "hidden", "seeds", *(_bucket_label(b) for b in LENGTH_BUCKETS), "all"]
    lines = _md(header, rows, "|---|---:|---:|" + "---:|" * (len(LENGTH_BUCKETS) + 1))
    return "\n".join(lines + ["", _source_line(SWEEP_CONVERGED)])


def _seeds_csv(path: Path) -> dict[tuple[str, int], list[dict[str, str]]]:
    out: dict[tuple[str, int], list[dict[str, str]]] = defaultdict(list)
    if path.exists():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                out[(row["scorer"], int(row["hidden_size"]))].append(row)
    return out


def render_sweep_sizes(root: Path) -> str:
    """Test BLEU per scorer and hidden size. Cells that tables.md holds for one seed (0) and
    seeds.csv for more are pooled: seed 0's value as tables.md rounds it, the others' in full."""
    t = _converged_tables(root)
    if t is None:
        return _not_committed(SWEEP_CONVERGED)
    extra = _seeds_csv(root / SWEEP_H256_SEEDS)
    col = {h: i for i, h in enumerate(t.header)}
    lcol = {h: i for i, h in enumerate(t.length_header)}
    last = f"{LENGTH_BUCKETS[-1]} words"
    sizes = sorted({h for _, h in t.rows})
    scorers = sorted({s for s, _ in t.rows}, key=scorer_rank)
    rows, notes = [], []
    for scorer in scorers:
        bleu_cells, aer_cells = [], []
        for h in sizes:
            r = t.rows.get((scorer, h))
            if r is None:
                bleu_cells.append("—")
                aer_cells.append("—")
                continue
            more = extra.get((scorer, h), [])
            if r[col["seeds"]] == "1" and more:
                pooled = {}
                for key, table_cell, digits in (("bleu", r[col["BLEU"]], 2), ("aer", r[col["AER"]], 3),
                                                ("bleu_41+", t.length_rows[(scorer, h)][lcol[last]], 1)):
                    values = [float(table_cell)] + [float(m[key]) for m in more if m.get(key)]
                    pooled[key] = (values, format_mean_std(*mean_std(values), digits))
                bleu_cells.append(pooled["bleu"][1] + "¹")
                aer_cells.append(pooled["aer"][1].partition(" ±")[0])
                notes.append(f"{scorer} " + " / ".join(f"{v:.2f}" for v in pooled["bleu"][0])
                             + " (AER " + " / ".join(f"{v:.3f}" for v in pooled["aer"][0])
                             + f"; {last}: {pooled['bleu_41+'][1]})")
            else:
                bleu_cells.append(r[col["BLEU"]])
                aer_cells.append(r[col["AER"]].partition(" ±")[0])
        aer = "—" if all(a == "—" for a in aer_cells) else " / ".join(aer_cells)
        rows.append([scorer, *bleu_cells, aer])
    header = ["scorer", *map(str, sizes), "AER at " + " / ".join(map(str, sizes))]
    lines = _md(header, rows, "|---|" + "---:|" * len(sizes) + "---|")
    if notes:
        lines += ["", "¹ Seed 0 from `" + SWEEP_CONVERGED + "` (its one-seed rows, as rounded there), "
                  "further seeds from `" + SWEEP_H256_SEEDS + "`; mean ± sample std of the pooled seeds. "
                  "Per seed (0 / 1 / 2), test BLEU with AER in brackets: " + "; ".join(notes) + "."]
    return "\n".join(lines + ["", _source_line(SWEEP_CONVERGED, SWEEP_H256_SEEDS)])


def render_sweep_250(root: Path) -> str:
    path = root / SWEEP_250_STEPS
    if not path.exists():
        return _not_committed(SWEEP_250_STEPS)
    t = read_sweep_tables(path)
    rows = [r for (_, h), r in t.rows.items() if h == 256]
    lines = _md(t.header, rows, "|---|---|---|" + "---:|" * (len(t.header) - 3))
    return "\n".join(lines + ["", _source_line(SWEEP_250_STEPS)])


# --- the benchmark ---------------------------------------------------------------------------


def _machine(head: dict[str, Any]) -> str:
    """The machine a benchmark JSON was measured on, in one line (`attn_jax.run.measure.machine_info`
    fields, or the older JSON's host / jax / load_average)."""
    parts = [str(head[k]) for k in ("cpu_model", "host") if head.get(k)]
    flags = head.get("cpu_flags")
    if isinstance(flags, dict):
        flags = [f for f, present in flags.items() if present]
    if flags:
        parts.append("flags " + ", ".join(flags) if isinstance(flags, list) else str(flags))
    if head.get("logical_cpus"):
        parts.append(f"{head['logical_cpus']} logical CPUs"
                     + (f" ({head['physical_cores']} cores)" if head.get("physical_cores") else ""))
    threads = {k: v for k, v in (head.get("thread_env") or {}).items() if v}
    if threads:
        parts.append(", ".join(f"{k}={v}" for k, v in threads.items()))
    versions = dict(head.get("versions") or {})
    for key in ("jax", "torch"):
        if head.get(key):
            versions.setdefault(key, head[key])
    if versions:
        parts.append(", ".join(f"{k} {v}" for k, v in versions.items() if v))
    for key, label in (("load_average", "load average"), ("load_average_start", "load average at start"),
                       ("load_average_end", "at end")):
        if head.get(key):
            parts.append(f"{label} " + " / ".join(f"{x:.1f}" for x in head[key]))
    return "; ".join(parts)


def render_long_inputs(root: Path) -> str:
    present = [p for p in LONG_INPUTS if (root / p).exists()]
    if not present:
        return _not_committed(*LONG_INPUTS)
    gib = 2.0**30
    results = [read_json(root / p) for p in present]
    rows, step = [], {}
    for res in results:
        for case in res.get("additive", []):
            length = f"{case['length']:,}"
            if not case.get("measured", True):
                rows.append((length, case["impl"], "not measured", "", "not measured (no GPU/TPU: the "
                             "kernel only runs interpreted on CPU)", ""))
                continue
            step[(case["impl"], case["length"])] = case["step_s"]
            rows.append((length, case["impl"], f"{case['xla_bytes'] / gib:.3f}",
                         f"{case['naive_tanh_bytes'] / gib:.2f}",
                         ("not run (over `--long_max_gib`)" if case["step_s"] is None
                          else f"{case['step_s']:.2f} s"),
                         f"{case['compile_s']:.1f} s"))
    lines = _md(["S = T", "impl", "XLA GiB", "one tanh GiB", "fwd + bwd step", "compile"], rows)
    lines += ["", "Measured on: " + " | ".join(f"`{p}`: {_machine(r)}" for p, r in zip(present, results))]
    targets = []
    chunked_2048 = [c for r in results for c in r.get("additive", [])
                    if c.get("impl") == "chunked" and c.get("length") == 2048]
    xla_2048 = [c for r in results for c in r.get("additive", [])
                if c.get("impl") == "xla" and c.get("length") == 2048]
    if chunked_2048:
        plain = f" (xla: {xla_2048[0]['xla_bytes'] / gib:.1f} GiB)" if xla_2048 else ""
        targets.append(("additive S = T = 2,048, A = 512, B = 8, fwd + bwd < 2 GiB with `chunked`",
                        f"**{chunked_2048[0]['xla_bytes'] / gib:.2f} GiB** compiled{plain}"))
    if step.get(("chunked", 128)) and step.get(("xla", 128)):
        ratio = step[("chunked", 128)] / step[("xla", 128)]
        targets.append(("`chunked` within 1.5× the plain step time at S = T = 128",
                        f"**{ratio:.2f}×** ({step[('chunked', 128)]:.2f} s against "
                        f"{step[('xla', 128)]:.2f} s)"))
    train = next((r["training"] for r in results if r.get("training")), None)
    if train:
        losses = " → ".join(f"{x:.3f}" for x in train["losses"])
        targets.append((f"Bahdanau-flow training at S = T = {train['length']}, B = {train['batch']}, hidden "
                        f"{train['model']['decoder_hidden']} within 4 GiB",
                        f"**{train['xla_step_bytes'] / gib:.2f} GiB** compiled step; "
                        f"loss per token {losses}"))
        words = f"{train['mean_src_words']:.0f} / {train['mean_tgt_words']:.0f}"
        lines += ["", f"Training check: documents of {words} "
                  f"source / target words on average, compile {train['compile_s']:.1f} s, steps "
                  + ", ".join(f"{s:.1f}" for s in train["step_s"])
                  + f" s; peak resident memory of the process {train['host_peak_rss_bytes'] / gib:.2f} GiB."]
    if targets:
        lines += [""] + _md(["target (issue 13)", "result"], targets)
    return "\n".join(lines + ["", _source_line(*present)])


def render_side_by_side(root: Path) -> str:
    """The equal-model ratio first: rounds whose PyTorch reference ran with `--head deep`, from the
    summary.json that experiments/benchmark/side_by_side.sh writes."""
    path = root / SIDE_BY_SIDE
    if not path.exists():
        return _not_committed(SIDE_BY_SIDE)
    s = read_json(path)
    rows = sorted(s["rows"], key=lambda r: (r["torch_head"] != "deep", r["round"]))
    lines = _md(["PyTorch reference (`torch_ref.py --head`)", "round", "PyTorch real target tokens/s",
                 "attn_jax real target tokens/s", "ratio",
                 "attn_jax % of f32 matmul peak (real tokens)", "load (1 min) start / end"],
                [(f"`{r['torch_head']}`" + (" (the same model)" if r["torch_head"] == "deep" else ""),
                  str(r["round"]), f"{r['torch_tgt_tokens_per_s']:,.0f}",
                  f"{r['attn_jax_tgt_tokens_per_s']:,.0f}", f"**{r['ratio']:.2f}×**",
                  f"{100 * r['attn_jax_fraction_of_peak']:.0f}%",
                  f"{r['load_average_start'][0]:.1f} / {r['load_average_end'][0]:.1f}")
                 for r in rows])
    lines = [f"Measured on: {_machine(s['machine'])}; PyTorch {s['torch']} with "
             f"{s['reference_threads']} threads.", ""] + lines
    return "\n".join(lines + ["", _source_line(SIDE_BY_SIDE)])


# --- the test suite --------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s+(call|setup|teardown)\s+(\S+)")
_PYTEST_TOTAL = re.compile(r"^=+ (?P<counts>.*?) in (?P<seconds>\d+(?:\.\d+)?)s\b.*=+\s*$")


def render_test_suite(root: Path) -> str:
    folder = root / TEST_SUITE
    logs = sorted(p for p in folder.glob("*") if p.suffix in (".txt", ".log")) if folder.exists() else []
    if not logs:
        return _not_committed(f"{TEST_SUITE}/*.log")
    lines = []
    for log in logs:
        durations, total = [], None
        for line in log.read_text(errors="replace").splitlines():
            m = _DURATION.match(line)
            if m:
                durations.append((float(m.group(1)), m.group(2), m.group(3)))
            m = _PYTEST_TOTAL.match(line.strip())
            if m:
                total = m
        rel = log.relative_to(root).as_posix()
        if total is None:
            lines += [f"`{rel}`: no pytest summary line found.", ""]
            continue
        seconds = float(total["seconds"])
        lines += [f"`{rel}`: **{total['counts']}** in **{_minutes_seconds(seconds)}** "
                  f"(pytest's own count of the test part, install excluded).", ""]
        if durations:
            lines += _md(["slowest (`--durations`)", "phase", "test"],
                         [(f"{d:.2f} s", phase, f"`{name}`") for d, phase, name in durations[:10]],
                         "|---:|---|---|") + [""]
    return "\n".join(lines + [_source_line(*[p.relative_to(root).as_posix() for p in logs])])


def render_arch_scorer(root: Path) -> str:
    """The arch x scorer sweep's tables as the report wrote them (every table, every note)."""
    path = root / ARCH_SCORER
    if not path.exists():
        return _not_committed(ARCH_SCORER)
    return path.read_text().strip() + "\n\n" + _source_line(ARCH_SCORER)


BLOCKS: dict[str, Block] = {b.name: b for b in (
    Block("default_run", (f"{DEFAULT_RUN}/results.json", f"{DEFAULT_RUN}/metrics.jsonl"), render_default_run),
    Block("encoder_direction", (f"{DEFAULT_RUN}/results.json", f"{BIDIRECTIONAL_RUN}/results.json"),
          render_encoder_direction),
    Block("sweep_summary", (SWEEP_CONVERGED,), render_sweep_summary),
    Block("sweep_h128", (SWEEP_CONVERGED,), render_sweep_h128),
    Block("sweep_sizes", (SWEEP_CONVERGED, SWEEP_H256_SEEDS), render_sweep_sizes),
    Block("sweep_250_steps", (SWEEP_250_STEPS,), render_sweep_250),
    Block("bottleneck", (SWEEP_CONVERGED,), render_bottleneck),
    Block("arch_scorer", (ARCH_SCORER,), render_arch_scorer),
    Block("long_inputs", LONG_INPUTS, render_long_inputs),
    Block("side_by_side", (SIDE_BY_SIDE,), render_side_by_side),
    Block("test_suite", (TEST_SUITE,), render_test_suite),
)}


def doc_files(root: Path = REPO_ROOT) -> list[Path]:
    """README.md, experiments/*/README.md and docs/*.md under `root`."""
    return sorted({p for pattern in DOC_GLOBS for p in root.glob(pattern)})


def regenerate(text: str, root: Path = REPO_ROOT) -> str:
    """`text` with every generated block rendered afresh. Raises ValueError on an unknown block
    name or an opening marker without its closing one."""
    starts = len(re.findall(r"<!-- generated:", text))
    if starts != len(_BLOCK.findall(text)):
        raise ValueError("a <!-- generated:NAME --> marker without its <!-- /generated -->")

    def fill(m: re.Match) -> str:
        name = m["name"]
        if name not in BLOCKS:
            raise ValueError(f"unknown generated block {name!r}; known: {', '.join(BLOCKS)}")
        return f"<!-- generated:{name} -->\n{BLOCKS[name].render(root).strip()}\n<!-- /generated -->"

    return _BLOCK.sub(fill, text)


def stale_blocks(root: Path = REPO_ROOT) -> list[str]:
    """"path: block" for every generated block whose text differs from a fresh rendering."""
    stale = []
    for path in doc_files(root):
        text = path.read_text()
        fresh = {m["name"]: m.group(0) for m in _BLOCK.finditer(regenerate(text, root))}
        for m in _BLOCK.finditer(text):
            if m.group(0) != fresh[m["name"]]:
                stale.append(f"{path.relative_to(root).as_posix()}: {m['name']}")
    return stale


def write_readmes(root: Path = REPO_ROOT) -> list[Path]:
    """Rewrites every generated block in place; returns the files that changed."""
    changed = []
    for path in doc_files(root):
        text = path.read_text()
        fresh = regenerate(text, root)
        if fresh != text:
            path.write_text(fresh)
            changed.append(path)
    return changed


# --- figures in the prose --------------------------------------------------------------------

RESULT_SUFFIXES = (".json", ".jsonl", ".csv", ".md", ".tex", ".txt", ".log")
NOT_RESULTS = ("README.md", "UNBACKED.md")
# Decimal numbers in prose that are settings or names, not measurements: each phrase is removed
# before the check. Keep it short; a measured figure belongs in a result file.
PROSE_ALLOWLIST = (
    r"label smoothing 0\.1",
    r"length penalty 0\.6",
    r"min_delta`? \(?0\.1 BLEU",
    r"more than 0\.2 BLEU",
    r"Python 3\.\d+",
    r"CUDA 12(\.\d+)?",
)
_FIGURE = re.compile(r"(?<![\w.])\d[\d,]*\.\d+(?:\.\d+)*%?")


def result_files(root: Path = REPO_ROOT) -> list[Path]:
    """Committed result files: under experiments/, by suffix, READMEs and UNBACKED.md excluded."""
    return sorted(p for p in (root / "experiments").rglob("*")
                  if p.is_file() and p.suffix in RESULT_SUFFIXES and p.name not in NOT_RESULTS)


def _numbers_in(value: Any, out: list[float]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        out.append(float(value))
    elif isinstance(value, dict):
        for v in value.values():
            _numbers_in(v, out)
    elif isinstance(value, list):
        for v in value:
            _numbers_in(v, out)


def backed_figures(root: Path = REPO_ROOT, digits: Sequence[int] = (1, 2, 3, 4)) -> set[str]:
    """Every decimal string a committed result file holds: numbers written in its text, and each
    JSON number formatted to 1-4 decimals (and as a percentage of a fraction)."""
    figures: set[str] = set()
    values: list[float] = []
    for path in result_files(root):
        text = path.read_text(errors="replace")
        figures.update(m.group(0).rstrip("%").replace(",", "") for m in _FIGURE.finditer(text))
        if path.suffix == ".json":
            try:
                _numbers_in(json.loads(text), values)
            except json.JSONDecodeError:
                pass
        elif path.suffix == ".jsonl":
            for row in read_jsonl(path):
                _numbers_in(row, values)
    for v in values:
        for d in digits:
            figures.add(f"{abs(v):.{d}f}")
            figures.add(f"{abs(100 * v):.{d}f}%")
    return figures


def prose(text: str) -> str:
    """`text` without generated blocks, fenced code, inline code, HTML comments and link targets."""
    text = _BLOCK.sub("", text)
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    for phrase in PROSE_ALLOWLIST:
        text = re.sub(phrase, "", text)
    return text


def unbacked_figures(root: Path = REPO_ROOT) -> list[str]:
    """"path:line: figure" for each decimal figure in the docs' prose that no committed result
    file holds (versions such as 2.6.0 are not figures)."""
    backed = backed_figures(root)
    found = []
    for path in doc_files(root):
        for line in prose(path.read_text()).splitlines():
            for m in _FIGURE.finditer(line):
                figure = m.group(0).replace(",", "")
                if figure.rstrip("%").count(".") > 1:
                    continue  # a version
                if figure in backed or figure.rstrip("%") in backed:
                    continue
                found.append(f"{path.relative_to(root).as_posix()}: {m.group(0)} (\"{line.strip()[:80]}\")")
    return found
