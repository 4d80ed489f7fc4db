"""End-to-end: the Transformer (model.arch='transformer') through the RNN's harness.

Tiny runs of configs/transformer.py:tiny, smaller still (one layer of two heads, one bucket, 6
steps, 8 valid and 8 test sentences), through `attn_jax.train.train_and_evaluate`: a killed run
resumes exactly, K=2 vmapped seeds equal two separate runs, a workdir of one model family refuses
a config of the other before anything runs, dropout is on in the train step and off in
evaluation, and results.json carries the AER of every layer and head.

To take seconds on 2 cores, the runs of this module (fixture `harness`) draw no pictures
(test_train and test_plots draw them); they compile as every test does (tests/conftest.py).
"""

import ast
import dataclasses
import json
import os
import re
import shlex
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn_jax import train
from attn_jax.data import batches, sources
from attn_jax.eval import plots
from attn_jax.model import arch
from attn_jax.run import checkpoint, sharding, steps
from attn_jax.run import config as config_lib
from tests.run_helpers import random_run_state, replica_rows

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRANSFORMER = os.path.join(REPO, "configs/transformer.py:tiny")
RNN = os.path.join(REPO, "configs/default.py:tiny")

# Smaller than either :tiny: the data and the loop (both families), the Transformer's size.
SMALL = {"data.train_size": 200, "data.valid_size": 8, "data.test_size": 8,
         "data.buckets": (72,), "train.num_steps": 6, "train.eval_every": 6,
         "eval.batch_size": 8, "eval.num_heatmaps": 0,
         # Final metrics from the last parameters: the best checkpoint of K replicas is chosen
         # by their mean valid BLEU, so a K=2 run would not compare with single runs otherwise.
         "eval.use_best": False}
# The rsqrt schedule (configs/transformer.py uses cosine, which the RNN's runs test).
SMALL_TRANSFORMER = {"model.layers": 1, "model.num_heads": 2, "train.schedule": "rsqrt"}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def harness():
    """While this module runs: no pictures. Yields the head grids the runs asked for
    ({"attention", "src", "tgt", "path"} each)."""
    requests = []

    def head_grid(attention, src_tokens, tgt_tokens, path, title=None):
        requests.append({"attention": np.asarray(attention), "src": list(src_tokens),
                         "tgt": list(tgt_tokens), "path": str(path)})
        return Path(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "run_heatmaps", lambda *args, **kwargs: {})
        patch.setattr(plots, "head_grid", head_grid)
        yield requests


def tiny_config(tfds_dir, base=TRANSFORMER, **overrides):
    config = config_lib.load_config_file(base)
    config.data.tfds_dir = tfds_dir
    small = {**SMALL, **(SMALL_TRANSFORMER if base == TRANSFORMER else {}), **overrides}
    for key, value in small.items():
        config_lib.override(config, key, value)
    return config


def rows(workdir, split=None):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        out = [json.loads(line) for line in f]
    return [r for r in out if split is None or r["split"] == split]


def losses(workdir):
    return [(r["step"], r["split"], r["loss"], r.get("bleu")) for r in rows(workdir)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tfds_dir, harness):
    """One uninterrupted seed-0 run: the reference of the resume and the vmapped-seeds tests."""
    workdir = str(tmp_path_factory.mktemp("transformer"))
    before = len(harness)
    results = train.train_and_evaluate(tiny_config(tfds_dir), workdir)
    return workdir, results, harness[before:]


class Killed(Exception):
    pass


def _count_train_steps(monkeypatch, kill_after=None):
    """Counts the train steps taken from now on (a list, one entry per step); with kill_after,
    the step after that many raises Killed, like a killed process."""
    taken = []
    real = steps.make_train_step

    def make(*args, **kwargs):
        step = real(*args, **kwargs)

        def wrapped(state, batch):
            if kill_after is not None and len(taken) >= kill_after:
                raise Killed()
            taken.append(1)
            return step(state, batch)

        return wrapped

    monkeypatch.setattr(steps, "make_train_step", make)
    return taken


def test_kill_and_resume_equals_uninterrupted(uninterrupted, tfds_dir, tmp_path, monkeypatch):
    """Killed during step 5 (checkpoint at step 3), then rerun: the rerun trains steps 4-6 only,
    from the checkpoint's parameters, optimizer state and step (which the dropout masks fold
    in), and logs exactly the rows of the uninterrupted run (losses to 1e-5, the same valid and
    test BLEU and per-head AER)."""
    reference, want, _ = uninterrupted
    workdir = str(tmp_path / "resumed")
    # A resume point at step 3 (the uninterrupted run saves at its evaluation, step 6, only).
    config = tiny_config(tfds_dir, **{"train.checkpoint_every": 3})
    _count_train_steps(monkeypatch, kill_after=4)
    with pytest.raises(Killed):
        train.train_and_evaluate(config, workdir)
    assert [(r["step"], r["split"]) for r in rows(workdir)] == [(3, "train")]
    assert os.listdir(os.path.join(workdir, "checkpoints", "last")) == ["3"]
    monkeypatch.undo()

    taken = _count_train_steps(monkeypatch)
    results = train.train_and_evaluate(config, workdir)
    assert len(taken) == 3  # Resumed at step 3, not retrained from the start.
    got, expected = losses(workdir), losses(reference)
    assert [g[:2] for g in got] == [e[:2] for e in expected] == [
        (3, "train"), (6, "train"), (6, "valid"), (6, "test")]
    np.testing.assert_allclose([g[2] for g in got], [e[2] for e in expected], rtol=1e-5)
    assert [g[3] for g in got] == [e[3] for e in expected]
    assert results["test"]["bleu"] == want["test"]["bleu"]
    assert results["test"]["aer_by_head"] == want["test"]["aer_by_head"]


def test_vmapped_seeds_equal_separate_runs(uninterrupted, tfds_dir, tmp_path):
    """K=2 replicas in one process == the seed-0 run and a seed-1 run: every logged metric of
    each replica, its per-head AER included, to 1e-5."""
    seed0, _, _ = uninterrupted
    seed1, both = str(tmp_path / "seed1"), str(tmp_path / "both")
    train.train_and_evaluate(tiny_config(tfds_dir, **{"train.seed": 1}), seed1)
    results = train.train_and_evaluate(tiny_config(tfds_dir, **{"train.num_seeds": 2}), both)
    assert [s["seed"] for s in results["seeds"]] == [0, 1]
    # The seeds differ, so a replica that repeated the other would not pass.
    assert [r["loss"] for r in rows(seed0)] != [r["loss"] for r in rows(seed1)]
    keys = ("loss", "perplexity", "bleu", "exact_match", "aer", "attention_entropy")
    for _, g, w in replica_rows(rows(both), {0: rows(seed0), 1: rows(seed1)}, keys):
        if w["split"] != "train":
            assert g["aer_by_head"].keys() == w["aer_by_head"].keys() == {"L1H1", "L1H2"}
            np.testing.assert_allclose(list(g["aer_by_head"].values()),
                                       list(w["aer_by_head"].values()), rtol=1e-5, atol=1e-5)
    assert results["test"]["bleu"] == pytest.approx(
        np.mean([s["test"]["bleu"] for s in results["seeds"]]))


def _fix_from_message(message: str) -> dict:
    """The `--config.KEY=VALUE` flags of a refusal's "rerun with the saved values (...)"."""
    flags = re.search(r"rerun with the saved values \((.*)\) or use a new --workdir", message)
    assert flags, message
    out = {}
    for flag in shlex.split(flags.group(1)):
        key, _, value = flag.removeprefix("--config.").partition("=")
        out[key] = value
    return out


def _apply(config, flags: dict) -> None:
    current = config_lib.flatten(config)
    for key, value in flags.items():
        config_lib.override(config, key, value if isinstance(current[key], str)
                            else ast.literal_eval(value))


def _snapshot(workdir):
    """Every file under workdir but the lock: {relative path: bytes}."""
    out = {}
    for folder, _, files in os.walk(workdir):
        for name in files:
            path = os.path.join(folder, name)
            if name != ".lock":
                out[os.path.relpath(path, workdir)] = Path(path).read_bytes()
    return out


def _nothing_may_run(monkeypatch):
    """Loading data, initialising or compiling a step fails the test (a refusal comes first)."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the run went on past the config check")

    for module, name in ((batches, "load"), (steps, "init_state"), (steps, "make_train_step"),
                         (steps, "make_eval_step")):
        monkeypatch.setattr(module, name, forbidden)


def test_resume_with_the_other_model_family_is_refused_before_anything_runs(
        uninterrupted, tfds_dir, tmp_path, monkeypatch):
    """A Transformer workdir resumed with the RNN's config, and an RNN workdir with the
    Transformer's: one line naming the saved model.arch and the flags that resume (which do),
    raised before any data is loaded or anything compiled; the workdir is left as it was."""
    workdir, _, _ = uninterrupted
    rnn_run = str(tmp_path / "rnn")  # An RNN run: its config.json (nothing trained).
    os.makedirs(rnn_run)
    random_run_state(rnn_run, tiny_config(tfds_dir, base=RNN), 30, 30, scale=0.1)
    _nothing_may_run(monkeypatch)
    before = _snapshot(workdir)
    results = json.loads(before["results.json"])
    rnn_config = tiny_config(tfds_dir, base=RNN)
    with pytest.raises(ValueError, match="cannot be resumed") as refused:
        train.train_and_evaluate(rnn_config, workdir)
    message = str(refused.value)
    assert "\n" not in message
    assert "model.arch: saved 'transformer', now 'rnn'" in message
    assert "or use a new --workdir" in message
    fix = _fix_from_message(message)
    assert fix["model.arch"] == "transformer"
    assert _snapshot(workdir) == before
    # The named fix is the whole fix: with those flags the RNN config resumes the run (finished:
    # its results come back, nothing is trained or loaded).
    _apply(rnn_config, fix)
    assert train.train_and_evaluate(rnn_config, workdir) == results
    assert _snapshot(workdir) == before

    # The reverse: the RNN run and the Transformer's config.
    before = _snapshot(rnn_run)
    with pytest.raises(ValueError, match="cannot be resumed") as refused:
        train.train_and_evaluate(tiny_config(tfds_dir), rnn_run)
    message = str(refused.value)
    assert "\n" not in message and "model.arch: saved 'rnn', now 'transformer'" in message
    assert _fix_from_message(message)["model.arch"] == "rnn"
    assert _snapshot(rnn_run) == before


def test_rnn_checkpoint_without_config_json_is_refused_by_its_shapes(tfds_dir, tmp_path,
                                                                      harness):
    """With config.json gone, an RNN checkpoint resumed with the Transformer's config is refused
    by its parameters (one line naming the fix) before any step is built; the checkpoint is
    neither changed nor set aside as damaged, and no config.json is written."""
    workdir = str(tmp_path / "rnn")
    os.makedirs(workdir)
    rnn_config = tiny_config(tfds_dir, base=RNN)
    _, state = random_run_state(workdir, rnn_config, 30, 30, scale=0.1)
    ckpts = checkpoint.Checkpoints(workdir, 2)
    ckpts.save(3, jax.tree.map(jnp.asarray, state))
    ckpts.close()
    os.remove(os.path.join(workdir, "config.json"))
    before = _snapshot(workdir)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("make_train_step", "make_eval_step"):
            patch.setattr(steps, name, lambda *a, **k: pytest.fail("a step was built"))
        with pytest.raises(ValueError, match="trained with another config") as refused:
            train.train_and_evaluate(tiny_config(tfds_dir), workdir)
    message = str(refused.value)
    assert "\n" not in message and "model.*" in message and "use a new --workdir" in message
    after = _snapshot(workdir)
    assert {k: v for k, v in after.items() if k in before} == before
    assert not os.path.exists(os.path.join(workdir, "config.json"))
    assert not os.path.exists(os.path.join(workdir, "checkpoints", "corrupt"))


def test_dropout_is_on_in_the_train_step_and_off_in_evaluation(uninterrupted, tfds_dir):
    """The harness's own train step (configs/transformer.py: dropout 0.1) draws its masks from
    the state's key: the same key gives the same loss, another key another loss. Its evaluation
    (teacher-forced scoring and greedy decoding) of the same parameters is that of the same model
    without dropout, exactly."""
    workdir, _, _ = uninterrupted
    config = tiny_config(tfds_dir)
    data = batches.load(config.data, workdir)  # The run's vocabularies.
    derived = config_lib.derive(config, src_vocab_size=data.src_vocab.size,
                                tgt_vocab_size=data.tgt_vocab.size, steps_per_epoch=1)
    assert derived.model.dropout == 0.1
    model = arch.build(derived.model)
    layout = sharding.make_layout(config.mesh, config.train.num_seeds)
    tx, _ = steps.make_optimizer(config.train, derived.num_steps)
    state = layout.state(steps.init_state(model, tx, derived.seeds, data.buckets[0]))
    sizes = batches.batch_sizes(config.data, data.buckets)
    batch = layout.train_batch(next(batches.train_batches(data, sizes, derived.seeds)))
    train_step = steps.make_train_step(model, tx, config.train.label_smoothing, layout)

    host = jax.device_get(state)

    def train_loss(key):  # The step donates its state: each call gets its own, placed as a run's.
        return float(train_step(layout.state(host.replace(key=key)), batch)[1]["nll_sum"][0])

    other_key = jax.random.key_data(jax.random.split(jax.random.key(7), 1))
    assert train_loss(host.key) == train_loss(host.key)
    assert train_loss(host.key) != train_loss(other_key)

    eval_batch = next(batches.eval_batches(data, "valid", config.eval.batch_size))
    without = arch.build(dataclasses.replace(derived.model, dropout=0.0))
    scored, decoded = [], []
    for mdl in (model, without):
        eval_step = steps.make_eval_step(mdl, config.eval.max_decode_extra, layout)
        scored.append(eval_step.score(state.params, eval_batch))
        decoded.append(eval_step.greedy(state.params, eval_batch["src"]))
    for key in ("nll", "forced_attention", "forced_heads"):
        np.testing.assert_array_equal(scored[0][key], scored[1][key], err_msg=key)
    for key in ("tokens", "lengths"):
        np.testing.assert_array_equal(decoded[0][key], decoded[1][key], err_msg=key)
    assert np.all(scored[0]["nll"][0][eval_batch["index"] >= 0] > 0)  # Real sentences scored.


def test_results_carry_every_head_and_the_schedule_is_vaswanis(uninterrupted):
    """results.json and the valid/test rows hold the AER and attention entropy of every layer
    and head (best_head: the one of lowest AER), the running example's head grid gets the
    teacher-forced map of each head, and the logged learning rate is the inverse-square-root
    schedule (peak 2e-3, warmup 2): peak · sqrt(2 / updates before the step)."""
    workdir, results, grids = uninterrupted
    with open(os.path.join(workdir, "results.json")) as f:
        saved = json.load(f)
    assert saved["arch"] == "transformer" and "flow" not in saved
    heads = {"L1H1", "L1H2"}
    assert len(set(saved["test"]["aer_by_head"].values())) == 2  # The heads align differently.
    for metrics in (saved["test"], saved["valid"], saved["seeds"][0]["test"],
                    *rows(workdir, "valid"), *rows(workdir, "test")):
        by_head = metrics["aer_by_head"]
        assert by_head.keys() == metrics["attention_entropy_by_head"].keys() == heads
        best = min(by_head, key=by_head.get)
        assert (metrics["best_head"], metrics["aer_best_head"]) == (best, by_head[best])
        assert all(0 <= v <= 1 for v in by_head.values())

    assert len(grids) == 1
    grid = grids[0]
    words = sources.dataset("synthetic_hi_en").running_example.split()
    assert grid["src"] == words and grid["path"].endswith("running_example_heads.png")
    hyp = results["running_example"]["hyp"].split()
    assert grid["tgt"][:len(hyp)] == hyp
    assert grid["attention"].shape == (1, 2, len(grid["tgt"]), len(words))
    np.testing.assert_allclose(grid["attention"].sum(-1), 1.0, rtol=1e-5)

    peak, warmup = 2e-3, 2
    train_rows = rows(workdir, "train")
    assert [r["step"] for r in train_rows] == [3, 6]
    np.testing.assert_allclose([r["learning_rate"] for r in train_rows],
                               [peak * np.sqrt(warmup / (r["step"] - 1)) for r in train_rows],
                               rtol=1e-6)
