"""launch/keep.sh: a sweep's finished-trial records kept in a committed folder and put back."""

import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEEP = os.path.join(REPO, "launch", "keep.sh")


def _keep(*args: str) -> str:
    return subprocess.run(["bash", KEEP, *args], check=True, capture_output=True, text=True).stdout


def _trial(root, name: str, attention: tuple[str, ...] = (), finished: bool = True):
    d = root / name
    (d / "attention").mkdir(parents=True)
    (d / "checkpoints").mkdir()
    names = ["config.json", "metrics.jsonl", *(["results.json"] if finished else [])]
    for f in names + [f"attention/{a}" for a in attention] + ["checkpoints/1"]:
        (d / f).write_text(f"{name}/{f}")
    return d


def _files(root) -> set[str]:
    return {os.path.relpath(os.path.join(p, f), root) for p, _, fs in os.walk(root) for f in fs}


def test_save_keeps_records_only_and_restore_puts_them_back(tmp_path):
    sweep, kept = tmp_path / "sweep", tmp_path / "kept"
    _trial(sweep, "text", ("running_example_seed0.json", "running_example.png", "test_1.png"))
    _trial(sweep, "picture", ("running_example.png", "test_1.png"))
    _trial(sweep, "none")  # The no-attention baseline draws nothing.
    _trial(sweep, "running", ("running_example_seed0.json",), finished=False)
    assert _keep("save", str(sweep), str(kept)).split() == [
        "kept", "none", "kept", "picture", "kept", "text"]
    records = {"config.json", "metrics.jsonl", "results.json"}
    assert _files(kept) == (
        {f"text/{f}" for f in records} | {"text/attention/running_example_seed0.json"}
        | {f"picture/{f}" for f in records} | {"picture/attention/running_example.png"}
        | {f"none/{f}" for f in records})
    assert (kept / "text" / "results.json").read_text() == "text/results.json"

    fresh = tmp_path / "fresh"
    _trial(fresh, "text", ("running_example_seed0.json",), finished=False)  # Left alone.
    out = _keep("restore", str(fresh), str(kept))
    assert "left" in out and "restored none" in out and "restored picture" in out
    assert not (fresh / "text" / "results.json").exists()
    assert _files(fresh / "picture") == records | {"attention/running_example.png"}
