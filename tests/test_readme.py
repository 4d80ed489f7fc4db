"""The READMEs' figures against the committed result files they are generated from.

Every table of measured figures in README.md, experiments/*/README.md and docs/*.md is a block
that `python -m attn_jax.report --readme` writes from committed files; a hand-edited figure, a
stale block or a decimal figure in the prose that no committed result file holds fails here.
Reads files only (no jax, no training): fast, and needs nothing outside the repository.
"""

import json
import re
import shutil
from pathlib import Path

import pytest

from attn_jax.eval import doc_blocks

ROOT = doc_blocks.REPO_ROOT
README = ROOT / "README.md"
FIRST_COMMAND = ("python3 -m venv .venv && . .venv/bin/activate && pip install -e . && "
                 "python -m attn_jax.train --config=configs/default.py --workdir=runs/demo")
TEST_COMMAND = ("python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && "
                "ruff check . && python -m pytest")


def test_every_generated_block_equals_its_files():
    assert doc_blocks.stale_blocks() == [], "run `python -m attn_jax.report --readme`"


def test_prose_figures_are_in_committed_result_files():
    assert doc_blocks.unbacked_figures() == [], (
        "a decimal figure outside the generated blocks is in no committed result file: generate "
        "it, cite the table instead, or move it to experiments/<name>/UNBACKED.md")


def test_every_block_is_used_and_every_marker_is_known():
    used = {m["name"] for path in doc_blocks.doc_files()
            for m in doc_blocks._BLOCK.finditer(path.read_text())}
    assert used == set(doc_blocks.BLOCKS)
    for path in doc_blocks.doc_files():
        doc_blocks.regenerate(path.read_text())  # raises on an unknown name or an unclosed marker


def test_first_screen_holds_both_commands():
    first_screen = "\n".join(README.read_text().splitlines()[:25])
    assert FIRST_COMMAND in first_screen and TEST_COMMAND in first_screen


def test_layout_table_lists_every_module_of_every_wing():
    text = README.read_text()
    layout = text[text.index("## Layout"):text.index("## Configuration")]
    for wing in ("data", "model", "eval", "run"):
        row = next(line for line in layout.splitlines() if line.startswith(f"| `attn_jax/{wing}/`"))
        for module in sorted((ROOT / "attn_jax" / wing).glob("*.py")):
            if module.stem != "__init__":
                assert f"`{module.stem}`" in row, (wing, module.stem)


def test_paths_and_modules_named_in_the_docs_exist():
    docs = doc_blocks.doc_files() + [ROOT / "launch" / "README.md"]
    for path in docs:
        text = path.read_text()
        for name in set(re.findall(r"\battn_jax/[\w/]+\.py\b", text)):
            assert (ROOT / name).exists(), f"{path.relative_to(ROOT)} names {name}"
        for module in set(re.findall(r"python -m (attn_jax(?:\.\w+)+)", text)):
            assert (ROOT / (module.replace(".", "/") + ".py")).exists(), f"{path.relative_to(ROOT)}: {module}"


# --- the generator on small fake trees ------------------------------------------------------------


def _fake_root(tmp_path: Path) -> Path:
    shutil.copy(README, tmp_path / "README.md")
    tables = tmp_path / doc_blocks.SWEEP_CONVERGED
    tables.parent.mkdir(parents=True)
    shutil.copy(ROOT / doc_blocks.SWEEP_CONVERGED, tables)
    return tmp_path


def test_a_hand_edited_figure_fails_the_check(tmp_path):
    root = _fake_root(tmp_path)
    doc_blocks.write_readmes(root)
    assert doc_blocks.stale_blocks(root) == []
    text = (root / "README.md").read_text()
    assert "| `additive` | 3 | 98.85 ± 0.09 |" in text
    edited = text.replace("| `additive` | 3 | 98.85 ± 0.09 |", "| `additive` | 3 | 98.95 ± 0.09 |")
    (root / "README.md").write_text(edited)
    assert doc_blocks.stale_blocks(root) == ["README.md: sweep_summary"]


def test_a_figure_in_the_prose_needs_a_result_file(tmp_path):
    root = _fake_root(tmp_path)
    doc_blocks.write_readmes(root)
    readme = root / "README.md"
    readme.write_text(readme.read_text() + "\nAdditive gets 98.85 here, 97.31 there; `9.99` is code.\n")
    unbacked = doc_blocks.unbacked_figures(root)
    assert len(unbacked) == 1 and "97.31" in unbacked[0]


def _results(bleu: float, aer: float, wall: float) -> dict:
    metrics = {"bleu": bleu, "exact_match": 0.862, "aer": aer, "perplexity": 1.022,
               "num_sentences": 2000,
               "bleu_signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
               "bleu_by_length": {"1-10": 99.2, "11-20": 98.9, "21-30": 98.4, "31-40": 98.5, "41+": 97.3}}
    return {"scorer": "additive", "hidden_size": 128, "num_steps": 2352, "max_steps": 2352,
            "evaluated_step": 2200,
            "test": metrics, "valid": {**metrics, "num_sentences": 1000}, "seeds": [],
            "running_example": {"src": "mai ghar ja raha hoon", "hyp": "i am going home"},
            "wall_seconds": wall, "seconds": {"data": 9.0, "setup": 3.9, "train": 207.8}}


def test_default_run_blocks_render_from_results_json(tmp_path):
    assert "Not measured" in doc_blocks.render_default_run(tmp_path)
    run = tmp_path / doc_blocks.DEFAULT_RUN
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(_results(98.1723, 0.1013, 336.4)))
    speeds = ((50, 10.0), (100, 16000.0), (150, 15000.0))  # the first window holds the compiles
    rows = [{"step": s, "split": "train", "seed": 0, "tokens_per_sec": v} for s, v in speeds]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    text = doc_blocks.render_default_run(tmp_path)
    assert "| **98.17** |" in text and "| exact match | 86.2% |" in text and "**0.101**" in text
    assert r"nrefs:1\|case:mixed" in text and "99.2 / 98.9 / 98.4 / 98.5 / 97.3" in text
    assert "**5 min 36 s**" in text and "2,352 (2,200)" in text and "15,500 real target tokens/s" in text
    assert '"mai ghar ja raha hoon" → "i am going home"' in text
    # The encoder comparison shows what exists and names what does not.
    text = doc_blocks.render_encoder_direction(tmp_path)
    assert "| forward (the default) | 98.17 |" in text
    assert f"`{doc_blocks.BIDIRECTIONAL_RUN}/results.json`" in text
    (tmp_path / doc_blocks.BIDIRECTIONAL_RUN).mkdir()
    bidirectional = tmp_path / doc_blocks.BIDIRECTIONAL_RUN / "results.json"
    bidirectional.write_text(json.dumps(_results(98.84, 0.116, 400)))
    text = doc_blocks.render_encoder_direction(tmp_path)
    assert "| bidirectional | 98.84 | 86.2% | 0.116 |" in text and "Not measured" not in text


def test_side_by_side_leads_with_the_equal_model_ratio(tmp_path):
    """The summary.json side_by_side.sh writes: rows of every round and reference head, the
    equal-model (`deep`) rows first whatever their order in the file."""
    assert "Not measured" in doc_blocks.render_side_by_side(tmp_path)
    path = tmp_path / doc_blocks.SIDE_BY_SIDE
    path.parent.mkdir(parents=True)
    machine = {"cpu_model": "AMD EPYC", "cpu_flags": {"avx2": True, "avx512f": True, "fma": False},
               "jax": "0.10.2", "load_average": [1.0, 1.5, 2.0]}

    def row(head, torch, jax, ratio):
        return {"round": 1, "torch_head": head, "torch_tgt_tokens_per_s": torch,
                "attn_jax_tgt_tokens_per_s": jax, "ratio": ratio, "attn_jax_fraction_of_peak": 0.35,
                "load_average_start": [1.0, 1.0, 1.0], "load_average_end": [2.0, 1.0, 1.0]}

    summary = {"machine": machine, "torch": "2.13.0+cpu", "reference_threads": 2,
               "rows": [row("direct", 748.0, 2769.0, 3.7018), row("deep", 1507.0, 2641.0, 1.7525)]}
    path.write_text(json.dumps(summary))
    text = doc_blocks.render_side_by_side(tmp_path)
    assert text.startswith("Measured on: AMD EPYC; flags avx2, avx512f; jax 0.10.2")
    assert "PyTorch 2.13.0+cpu with 2 threads." in text.splitlines()[0]
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows[0] == "| `deep` (the same model) | 1 | 1,507 | 2,641 | **1.75×** | 35% | 1.0 / 2.0 |"
    assert rows[1] == "| `direct` | 1 | 748 | 2,769 | **3.70×** | 35% | 1.0 / 2.0 |"


def test_test_suite_block_reads_the_pytest_log(tmp_path):
    folder = tmp_path / doc_blocks.TEST_SUITE
    folder.mkdir(parents=True)
    (folder / "ci.log").write_text(
        "============================= slowest 10 durations =============================\n"
        "35.12s call     tests/test_sharding.py::test_two_processes\n"
        "0.50s setup    tests/test_train.py::test_run\n"
        "================= 406 passed, 1 skipped in 612.34s (0:10:12) =================\n")
    text = doc_blocks.render_test_suite(tmp_path)
    assert "**406 passed, 1 skipped** in **10 min 12 s**" in text
    assert "| 35.12 s | call | `tests/test_sharding.py::test_two_processes` |" in text


@pytest.mark.parametrize("bad", ["<!-- generated:nope -->\nx\n<!-- /generated -->\n",
                                 "<!-- generated:default_run -->\nx\n"])
def test_unknown_or_unclosed_blocks_are_errors(bad):
    with pytest.raises(ValueError):
        doc_blocks.regenerate(bad)
