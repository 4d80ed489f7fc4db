"""End-to-end: a tiny run trains, writes every artifact, resumes exactly, and refuses bad input."""

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from attn_jax import train
from attn_jax.data import sources
from attn_jax.data.tokens import EOS
from attn_jax.model import rnn
from attn_jax.run import checkpoint, sharding, steps
from attn_jax.run import config as config_lib
from attn_jax.run.config import load_config_file
from tests.run_helpers import replica_rows

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(tfds_dir, **overrides):
    config = load_config_file(os.path.join(REPO, "configs/default.py:tiny"))
    config.data.tfds_dir = tfds_dir
    for key, value in overrides.items():
        section, field = key.split(".")
        config[section][field] = value
    return config


def rows(workdir, split=None):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        out = [json.loads(line) for line in f]
    return [r for r in out if split is None or r["split"] == split]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tfds_dir):
    workdir = str(tmp_path_factory.mktemp("run"))
    config = tiny_config(tfds_dir, **{"logging.wandb": "offline"})
    results = train.train_and_evaluate(config, workdir)
    return workdir, results


def test_end_to_end_loss_falls_and_artifacts_exist(finished_run):
    workdir, results = finished_run
    train_rows = rows(workdir, "train")
    assert [r["step"] for r in train_rows] == [3, 6, 9, 12]
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]
    assert [r["step"] for r in rows(workdir, "valid")] == [6, 12]
    for key in ("bleu", "chrf", "exact_match", "aer", "perplexity", "bleu_by_length"):
        assert key in results["test"], key
    assert set(results["test"]["bleu_by_length"]) == {"1-10", "11-20", "21-30", "31-40", "41+"}
    assert 0 <= results["test"]["aer"] <= 1 and results["test"]["perplexity"] > 1
    assert results["wall_seconds"] > 0
    parts = results["seconds"]  # Where the wall time went: the parts add up to it.
    assert set(parts) == {"data", "setup", "train", "evaluation", "final"}
    assert min(parts.values()) >= 0 and parts["train"] > 0 and parts["evaluation"] > 0
    # Each part is rounded to 0.1 s; unrounded, they sum to the wall time exactly.
    assert sum(parts.values()) == pytest.approx(results["wall_seconds"], abs=0.05 * len(parts))
    stamps = [r["elapsed_seconds"] for r in rows(workdir)]  # Stamped on the same clock.
    assert stamps == sorted(stamps) and 0 < stamps[-1] <= results["wall_seconds"]
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["test"]["bleu"] == results["test"]["bleu"]
    config = json.load(open(os.path.join(workdir, "config.json")))
    assert config["model"]["scorer"] == "additive"
    assert os.listdir(os.path.join(workdir, "checkpoints", "last"))
    assert os.listdir(os.path.join(workdir, "checkpoints", "best"))
    pngs = [f for f in os.listdir(os.path.join(workdir, "attention")) if f.endswith(".png")]
    assert "running_example.png" in pngs and len(pngs) >= 2
    example = json.load(open(os.path.join(workdir, "attention", "running_example_seed0.json")))
    assert np.asarray(example["attention"]).shape[1] == 5  # mai ghar ja raha hoon
    # W&B ran offline, entirely inside the workdir.
    offline = os.listdir(os.path.join(workdir, "wandb", "wandb"))
    assert any(d.startswith("offline-run-") for d in offline)


def test_rerun_of_finished_run_does_not_retrain(finished_run, tfds_dir):
    workdir, results = finished_run
    before = len(rows(workdir))
    again = train.train_and_evaluate(tiny_config(tfds_dir), workdir)
    assert again["test"]["bleu"] == results["test"]["bleu"] and len(rows(workdir)) == before


class Killed(Exception):
    pass


def _patch_train_step(monkeypatch, on_step):
    """Wrap the jitted train step: the n-th call runs on_step(n, step, state, batch)."""
    real = steps.make_train_step

    def make(*args, **kwargs):
        step, count = real(*args, **kwargs), [0]

        def wrapped(state, batch):
            count[0] += 1
            return on_step(count[0], step, state, batch)

        return wrapped

    monkeypatch.setattr(steps, "make_train_step", make)


def _kill_after(monkeypatch, calls):
    """Make the train step raise after `calls` steps, like a killed process."""

    def on_step(n, step, state, batch):
        if n > calls:
            raise Killed()
        return step(state, batch)

    _patch_train_step(monkeypatch, on_step)


def test_kill_and_resume_equals_uninterrupted(tmp_path, tfds_dir, finished_run, monkeypatch):
    reference, _ = finished_run
    workdir = str(tmp_path / "resumed")
    config = tiny_config(tfds_dir)
    _kill_after(monkeypatch, 8)  # Checkpoint at step 6, killed during step 9.
    with pytest.raises(Killed):
        train.train_and_evaluate(config, workdir)
    assert max(r["step"] for r in rows(workdir)) == 6
    earlier = max(r["elapsed_seconds"] for r in rows(workdir))  # Data, compiles, 6 steps.
    monkeypatch.undo()
    results = train.train_and_evaluate(config, workdir)
    # The run's wall time counts the first invocation up to its checkpoint (the stamp of its
    # last row), then this one: the parts of this invocation (each rounded to 0.1 s).
    assert earlier > 0
    this_one = results["seconds"]
    assert results["wall_seconds"] == pytest.approx(earlier + sum(this_one.values()),
                                                    abs=0.05 * len(this_one))
    stamps = [r["elapsed_seconds"] for r in rows(workdir)]
    assert stamps == sorted(stamps) and stamps[-1] <= results["wall_seconds"]
    assert min(r["elapsed_seconds"] for r in rows(workdir) if r["step"] > 6) >= earlier

    def losses(w):
        return [(r["step"], r["split"], r["loss"], r.get("bleu")) for r in rows(w)]

    got, want = losses(workdir), losses(reference)
    assert [g[:2] for g in got] == [w[:2] for w in want]
    np.testing.assert_allclose([g[2] for g in got], [w[2] for w in want], rtol=1e-5)
    assert [g[3] for g in got] == [w[3] for w in want]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tfds_dir, monkeypatch):
    workdir = str(tmp_path / "nan")

    def on_step(n, step, state, batch):
        state, metrics = step(state, batch)
        if n == 8:  # Inside the window that ends at step 9, after the checkpoint at step 6.
            metrics = dict(metrics, nll_sum=metrics["nll_sum"] * np.nan)
        return state, metrics

    _patch_train_step(monkeypatch, on_step)
    with pytest.raises(train.TrainingError, match="last good checkpoint \\(step 6\\) is intact"):
        train.train_and_evaluate(tiny_config(tfds_dir), workdir)
    assert "6" in os.listdir(os.path.join(workdir, "checkpoints", "last"))
    assert not os.path.exists(os.path.join(workdir, "results.json"))


def test_resume_with_different_hidden_size_is_refused(finished_run, tfds_dir):
    workdir, _ = finished_run
    before = open(os.path.join(workdir, "config.json")).read()
    with pytest.raises(ValueError, match="model.hidden_size: saved 16, now 32"):
        train.train_and_evaluate(tiny_config(tfds_dir, **{"model.hidden_size": 32}), workdir)
    assert open(os.path.join(workdir, "config.json")).read() == before


def test_workdir_that_is_a_file_is_refused(tmp_path, tfds_dir):
    path = tmp_path / "afile"
    path.write_text("keep me")
    with pytest.raises(ValueError, match="is a file"):
        train.train_and_evaluate(tiny_config(tfds_dir), str(path))
    assert path.read_text() == "keep me"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "attn_jax.train", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_cli_unknown_scorer_and_unknown_key(tmp_path):
    workdir = tmp_path / "cli"
    result = _cli("--config=configs/default.py:tiny", f"--workdir={workdir}",
                  "--config.model.scorer=bilinear")
    assert result.returncode != 0
    assert ("valid scorers: none, additive, dot, general, scaled_dot, scaled_general, location, "
            "multihead, uniform (set --config.model.scorer=NAME)") in result.stderr
    assert not os.path.exists(workdir / "checkpoints")
    result = _cli("--config=configs/default.py:tiny", f"--workdir={workdir}",
                  "--config.model.scorr=dot")
    assert result.returncode != 0
    assert "Unknown config key 'model.scorr'" in result.stderr and "model.scorer" in result.stderr


def test_vmapped_seeds_equal_separate_runs(tmp_path, tfds_dir):
    """K=2 replicas in one process == a seed-0 run and a seed-1 run (metrics to 1e-5).

    Final metrics from the last parameters: the best checkpoint (eval.use_best) and early
    stopping follow the mean valid BLEU over the replicas, one choice for all of them."""
    seed0 = str(tmp_path / "seed0")
    seed1 = str(tmp_path / "seed1")
    both = str(tmp_path / "both")
    # One bucket (compiled once per run) and no pictures: what is compared is the same.
    last = {"eval.use_best": False, "data.buckets": (72,), "eval.num_heatmaps": 0}
    train.train_and_evaluate(tiny_config(tfds_dir, **last), seed0)
    train.train_and_evaluate(tiny_config(tfds_dir, **{"train.seed": 1, **last}), seed1)
    results = train.train_and_evaluate(tiny_config(tfds_dir, **{"train.num_seeds": 2, **last}),
                                       both)
    assert [s["seed"] for s in results["seeds"]] == [0, 1]
    keys = ("loss", "perplexity", "bleu", "exact_match", "aer")
    replica_rows(rows(both), {0: rows(seed0), 1: rows(seed1)}, keys)
    assert results["test"]["bleu"] == pytest.approx(
        np.mean([s["test"]["bleu"] for s in results["seeds"]]))


def test_translate_entry_point_keeps_every_line(finished_run, tmp_path):
    workdir, _ = finished_run
    long_line = " ".join(["mai ghar ja raha hoon"] * 20)  # 100 tokens > the largest bucket (72).
    src = tmp_path / "in.txt"
    src.write_text(f"mai ghar ja raha hoon\n\n{long_line}\nvah ghar ja rahi hai\n")
    out, align = tmp_path / "out.txt", tmp_path / "align.txt"
    result = subprocess.run(
        [sys.executable, "-m", "attn_jax.translate", f"--workdir={workdir}", f"--input={src}",
         f"--output={out}", f"--alignments={align}", "--beam_size=2"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = out.read_text().split("\n")[:-1]
    assert len(lines) == 4 and lines[1] == ""
    assert "line 2: empty" in result.stderr
    assert "line 3: 100 tokens, truncated to 72" in result.stderr
    links = align.read_text().split("\n")[:-1]
    assert len(links) == 4 and links[1] == ""
    for line, pharaoh in zip(lines, links):
        for link in pharaoh.split():
            i, j = map(int, link.split("-"))
            assert 0 <= j < len(line.split()) or not line  # Word vocab: one token per word.


def _write_multi30k_fixture(raw_dir):
    """A small generated corpus in Multi30k's file layout (the real one is not needed)."""
    import gzip
    words_de = "ein mann eine frau hund spielt im park auf der strasse mit einem ball".split()
    words_en = "a man a woman dog plays in the park on the street with a ball".split()
    rng = np.random.RandomState(0)
    os.makedirs(raw_dir)
    for prefix, n in (("train", 300), ("val", 20), ("test_2016_flickr", 20)):
        de, en = [], []
        for _ in range(n):
            idx = rng.randint(0, len(words_de), rng.randint(3, 12))
            de.append(" ".join(words_de[i] for i in idx).capitalize() + ".")
            en.append(" ".join(words_en[i] for i in idx).capitalize() + ".")
        for lang, lines in (("de", de), ("en", en)):
            with gzip.open(os.path.join(raw_dir, f"{prefix}.{lang}.gz"), "wt") as f:
                f.write("\n".join(lines) + "\n")


def test_multi30k_config_end_to_end_with_subwords_and_beam(tmp_path):
    raw = str(tmp_path / "raw")
    _write_multi30k_fixture(raw)
    config = load_config_file(os.path.join(REPO, "configs/multi30k.py:tiny"))
    config.data.raw_dir, config.data.tfds_dir = raw, str(tmp_path / "tfds")
    config.data.vocab_size = 120
    workdir = str(tmp_path / "m30k")
    results = train.train_and_evaluate(config, workdir)
    assert results["test"]["aer"] is None  # No gold alignments for real data.
    assert results["test"]["num_sentences"] == 20 and 0 <= results["test"]["bleu"] <= 100
    vocab_dir = "joint" if config.data.joint_vocab else "tgt"  # The vocab/ layout.
    assert os.path.isdir(os.path.join(workdir, "vocab", vocab_dir))
    assert any(f.startswith("test_") for f in os.listdir(os.path.join(workdir, "attention")))
    assert "running_example" not in results
    # With beam search on, the same final parameters are also scored greedily.
    assert results["test_greedy"]["num_sentences"] == 20
    assert results["test_greedy"]["bleu_signature"] == results["test"]["bleu_signature"]
    assert set(results["seeds"][0]) == {"seed", "valid", "test", "valid_greedy", "test_greedy"}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        final_splits = {json.loads(line)["split"] for line in f} - {"train", "valid"}
    assert final_splits == {"test", "test_greedy", "valid_greedy"}


def _copy_unfinished(finished, dest):
    """A copy of a finished run's workdir without results.json: a run to be resumed."""
    shutil.copytree(finished, dest, ignore=shutil.ignore_patterns("wandb*", ".lock"))
    os.remove(os.path.join(dest, "results.json"))
    return dest


def _losses(workdir):
    return [(r["step"], r["split"], r["loss"], r.get("bleu")) for r in rows(workdir)]


def test_damaged_newest_checkpoint_resumes_from_the_older_one(finished_run, tfds_dir, tmp_path,
                                                               caplog):
    reference, _ = finished_run
    workdir = _copy_unfinished(reference, str(tmp_path / "damaged"))
    step_dir = os.path.join(workdir, "checkpoints", "last", "12")
    for folder, _, files in os.walk(step_dir):  # Truncate every array data file.
        for name in files:
            if os.path.basename(folder) == "d":
                path = os.path.join(folder, name)
                os.truncate(path, os.path.getsize(path) // 2)
    with caplog.at_level(logging.WARNING):
        train.train_and_evaluate(tiny_config(tfds_dir), workdir)
    assert any("unreadable checkpoint at step 12" in r.getMessage() for r in caplog.records)
    got, want = _losses(workdir), _losses(reference)  # Steps 7-12 were trained again, exactly.
    assert [g[:2] for g in got] == [w[:2] for w in want]
    np.testing.assert_allclose([g[2] for g in got], [w[2] for w in want], rtol=1e-5)
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "corrupt", "last_12"))


def test_deleted_config_json_is_checked_against_the_checkpoint(finished_run, tfds_dir, tmp_path):
    reference, results = finished_run
    workdir = _copy_unfinished(reference, str(tmp_path / "noconfig"))
    config_path = os.path.join(workdir, "config.json")
    os.remove(config_path)
    with pytest.raises(ValueError, match="trained with another config") as e:
        train.train_and_evaluate(tiny_config(tfds_dir, **{"model.hidden_size": 32}), workdir)
    assert "\n" not in str(e.value) and not os.path.exists(config_path)
    again = train.train_and_evaluate(tiny_config(tfds_dir), workdir)  # The original command.
    assert again["test"]["bleu"] == results["test"]["bleu"]
    assert json.load(open(config_path))["model"]["hidden_size"] == 16


def test_deleted_metrics_log_is_reported_on_resume(finished_run, tfds_dir, tmp_path, caplog):
    reference, _ = finished_run
    workdir = _copy_unfinished(reference, str(tmp_path / "nolog"))
    os.remove(os.path.join(workdir, "metrics.jsonl"))
    with caplog.at_level(logging.WARNING):
        train.train_and_evaluate(tiny_config(tfds_dir), workdir)
    assert any("lacks the training rows of steps 3..12" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_no_resume_point_inside_a_logging_window(tmp_path, tfds_dir, monkeypatch):
    """An evaluation that falls inside a logging window (eval_every 4, log_every 3) saves no
    checkpoint to resume from there, so a resumed run still logs the same rows."""
    derive = train.config_lib.derive
    monkeypatch.setattr(train.config_lib, "derive",
                        lambda *a, **k: dataclasses.replace(derive(*a, **k), eval_every=4))
    _kill_after(monkeypatch, 5)  # Evaluated at step 4, killed during step 6.
    workdir = str(tmp_path / "window")
    with pytest.raises(Killed):
        train.train_and_evaluate(tiny_config(tfds_dir), workdir)
    assert [r["step"] for r in rows(workdir, "valid")] == [4]
    assert os.listdir(os.path.join(workdir, "checkpoints", "last")) == []


def test_heatmaps_and_running_example_use_the_metrics_decoder(tmp_path, tfds_dir, monkeypatch,
                                                               caplog):
    """With beam search on, the running example comes from beam search (here a stand-in that
    always says one fixed word), not from greedy decoding; the data summary is logged once."""

    def make_beam_step(model, beam_size, extra_len, layout=None):
        def step(params, src, alpha):  # steps.make_beam_step's outputs, one fixed hypothesis.
            k, (b, s) = jax.tree.leaves(params)[0].shape[0], src.shape
            tokens = np.zeros((k, b, s + extra_len), np.int32)
            tokens[:, :, :2] = (7, EOS)
            return {"tokens": tokens, "lengths": np.full((k, b), 2, np.int32),
                    "attention": np.full((k, b, s + extra_len, s), 1 / s, np.float32),
                    "scores": np.zeros((k, b), np.float32)}
        return step

    monkeypatch.setattr(steps, "make_beam_step", make_beam_step)
    workdir = str(tmp_path / "beam")
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="absl"):
        results = train.train_and_evaluate(
            tiny_config(tfds_dir, **{"eval.beam_size": 2, "train.num_steps": 3}), workdir)
    example = json.load(open(os.path.join(workdir, "attention", "running_example_seed0.json")))
    assert example["tgt"][1] == "</s>" and len(example["tgt"]) == 2
    assert results["running_example"]["hyp"] == example["hyp"] == example["tgt"][0]
    assert np.asarray(example["attention"]).shape == (2, 5)
    assert sum("train filtered" in r.getMessage() for r in caplog.records) == 1


def _scripted_valid_bleu(monkeypatch, bleus):
    """Periodic (subset) valid evaluations report the given BLEUs in turn (mean over replicas)."""
    real = train.evaluate.run_split
    script = iter(bleus)

    def run_split(data, split, *args, subset=0, **kwargs):
        out = real(data, split, *args, subset=subset, **kwargs)
        if split == "valid" and subset:
            bleu = next(script)
            out.metrics = [{**m, "bleu": bleu} for m in out.metrics]
        return out

    monkeypatch.setattr(train.evaluate, "run_split", run_split)


def test_early_stop_on_a_plateau_and_evaluate_the_best_checkpoint(tmp_path, tfds_dir,
                                                                   monkeypatch):
    # Evaluations every 6 steps report 5, 9, 7, 6: with patience 2 the run stops at step 24 of 36,
    # and the final metrics come from the best checkpoint (step 12).
    _scripted_valid_bleu(monkeypatch, [5.0, 9.0, 7.0, 6.0])
    workdir = str(tmp_path / "early")
    config = tiny_config(tfds_dir, **{"train.num_steps": 36, "train.early_stop_patience": 2,
                                      "train.early_stop_min_delta": 0.0, "eval.valid_subset": 20})
    results = train.train_and_evaluate(config, workdir)
    assert (results["num_steps"], results["max_steps"], results["evaluated_step"]) == (24, 36, 12)
    assert max(r["step"] for r in rows(workdir, "train")) == 24
    assert [r["step"] for r in rows(workdir, "test")] == [24]
    # The final evaluation used the step-12 parameters: its running example is theirs.
    from attn_jax import translate
    example = [sources.dataset("synthetic_hi_en").running_example]
    best = translate.Translator(workdir, best=True).translate(example)[0].text
    assert results["running_example"]["hyp"] == best


def test_early_stopped_run_resumes_without_training_further(tmp_path, tfds_dir, monkeypatch):
    _scripted_valid_bleu(monkeypatch, [5.0, 9.0, 7.0, 6.0])
    workdir = str(tmp_path / "early")
    config = tiny_config(tfds_dir, **{"train.num_steps": 36, "train.early_stop_patience": 2,
                                      "train.early_stop_min_delta": 0.0, "eval.valid_subset": 20})
    def killed(*args, **kwargs):
        raise Killed()

    monkeypatch.setattr(train, "_final_evaluation", killed)
    with pytest.raises(Killed):
        train.train_and_evaluate(config, workdir)
    monkeypatch.undo()
    results = train.train_and_evaluate(config, workdir)  # Resumes at 24: stopped already.
    assert (results["num_steps"], results["evaluated_step"]) == (24, 12)
    assert max(r["step"] for r in rows(workdir, "train")) == 24


@pytest.mark.parametrize("placed", [False, True])
def test_restored_parameters_reuse_the_compiled_evaluation(tmp_path, placed):
    """A restored checkpoint's arrays are placed as the state it restores into: a fresh state's
    are committed to their device, and a state placed by the layout (as training places it)
    keeps its sharding; otherwise the final evaluation of the best checkpoint would lower and
    compile every bucket shape a second time."""
    config = tiny_config(str(tmp_path / "tfds"))
    derived = config_lib.derive(config, src_vocab_size=30, tgt_vocab_size=20, steps_per_epoch=4)
    model = rnn.Seq2Seq(derived.model)
    tx, _ = steps.make_optimizer(config.train, 4)
    layout = sharding.single_device()
    state = steps.init_state(model, tx, derived.seeds, 8)
    if placed:
        state = layout.state(state)
    eval_step = steps.make_eval_step(model, extra_len=2, layout=layout if placed else None)
    batch = {key: np.full((4, 8), 5, np.int32) for key in ("src", "tgt_in", "tgt_out")}
    eval_step.score(state.params, batch)
    ckpts = checkpoint.Checkpoints(str(tmp_path / "run"), keep=2)
    ckpts.save(1, state, 1.0, last=True)
    ckpts.wait()
    restored = ckpts.restore(state, best=True)
    ckpts.close()
    compiles = []

    def listener(event, duration, **kwargs):  # Tracing, lowering or compiling a program.
        if event.startswith("/jax/core/compile/"):
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        out = eval_step.score(restored.params, batch)
        reused = list(compiles)
        eval_step.score(restored.params, {k: v[:, :6] for k, v in batch.items()})  # A new shape.
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert reused == [] and compiles  # Nothing compiled again; a new shape is seen compiling.
    np.testing.assert_array_equal(out["nll"], eval_step.score(state.params, batch)["nll"])


@pytest.mark.parametrize("setting", ["folder", "off"])
def test_compilation_cache_folder_from_the_environment(tmp_path, setting):
    """train/translate/align keep compiled programs in $ATTN_JAX_COMPILATION_CACHE; '' turns the
    cache off. Checked in a fresh interpreter: the setting is process-wide."""
    folder = str(tmp_path / "xla") if setting == "folder" else ""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["ATTN_JAX_COMPILATION_CACHE"] = folder
    code = ("import jax; from attn_jax.run import runtime; "
            "print(runtime.use_compilation_cache(), jax.config.jax_compilation_cache_dir)")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ([folder, folder] if folder else ["None", "None"])
