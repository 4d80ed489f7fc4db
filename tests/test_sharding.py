"""One code path for 1 device, N devices and N processes (attn_jax/run/sharding.py).

Runs happen in worker processes (tests/sharding_worker.py) started with forced CPU host devices
(XLA_FLAGS=--xla_force_host_platform_device_count=N) or as two jax.distributed processes; every
run is configs/default.py:tiny (one bucket) for 12 steps with the same global batch of 16
sentences, so each must log the losses of the 1-device run. The 1-device reference is replica 0
of a K = 2 vmapped run on one device (tests/test_train.py proves a replica equal to its separate
run), final metrics from the last parameters (the best checkpoint of K replicas follows their
mean).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from attn_jax.run import sharding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "sharding_worker.py")
# One bucket: each layout compiles its programs once (the buckets' own tests: test_data.py).
STEPS = {"train.num_steps": 12, "data.buckets": (72,), "eval.use_best": False,
         "eval.num_heatmaps": 0}
REFERENCE = ("k2_one", 0)  # The 1-device reference: this run's replica (seed) 0.


def _env(devices: int | None, **extra) -> dict[str, str]:
    """This environment (XLA_FLAGS too: tests/conftest.py's) with `devices` forced host devices."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    if devices:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    env.update(extra)
    return env


def _start(spec: dict, devices: int | None, **extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WORKER, json.dumps(spec)], cwd=REPO,
                            env=_env(devices, **extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _results(procs: list[subprocess.Popen], timeout: float = 900) -> list[dict]:
    """The RESULT line of each worker; fails with every hung worker's thread stacks."""
    deadline = time.time() + timeout
    try:
        done = [p.communicate(timeout=max(1.0, deadline - time.time())) for p in procs]
    except subprocess.TimeoutExpired:
        hung = [p for p in procs if p.poll() is None]
        for p in hung:
            p.send_signal(signal.SIGUSR1)  # The worker prints every thread's stack...
        time.sleep(3)
        for p in procs:  # ...then dies (after jax.distributed, SIGTERM is ignored).
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        stacks = "\n".join(f"--- worker {procs.index(p)}:\n{p.communicate()[1][-5000:]}"
                           for p in hung)
        pytest.fail(f"{len(hung)} worker(s) hung for {timeout} s; their stacks:\n{stacks}")
    for proc, (_, err) in zip(procs, done):
        assert proc.returncode == 0, err[-3000:]
    return [json.loads([x for x in out.splitlines() if x.startswith("RESULT ")][-1]
                       .removeprefix("RESULT ")) for out, _ in done]


def _result(proc: subprocess.Popen) -> dict:
    return _results([proc])[0]


def _rows(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _losses(workdir: str, split: str = "train",
            seed: int | None = None) -> list[tuple[int, int, float]]:
    return [(r["step"], r["seed"], r["loss"]) for r in _rows(workdir)
            if r["split"] == split and seed in (None, r["seed"])]


def _assert_same_losses(got: str, want: str, want_seed: int | None = None) -> None:
    """`got`'s rows equal `want`'s (only its replica `want_seed`'s, renumbered 0, if given)."""
    for split in ("train", "valid", "test"):
        g, w = _losses(got, split), _losses(want, split, want_seed)
        assert [x[0] for x in g] == [x[0] for x in w], split
        assert [x[1] for x in g] == ([x[1] for x in w] if want_seed is None else [0] * len(w))
        np.testing.assert_allclose([x[2] for x in g], [x[2] for x in w], rtol=1e-5, atol=1e-6,
                                   err_msg=split)


def _reference(four_devices) -> tuple[str, dict]:
    """The 1-device reference run's folder and its replica's final metrics."""
    workdirs, results, _ = four_devices
    name, seed = REFERENCE
    return workdirs[name], results[name]["seeds"][seed]


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    """One 4-device worker: K = 2 vmapped replicas on one device (the reference), the data=4
    layout, the 2-D seeds=2 x data=2 layout of the same K = 2, a data=4 run stopped by SIGTERM
    during step 8, and the Transformer (one layer) on one device and with data=4."""
    root = tmp_path_factory.mktemp("mesh")
    tfds = str(root / "tfds")
    runs = {
        "data4": {"overrides": {**STEPS, "mesh.data": 4}},
        "k2_one": {"overrides": {**STEPS, "train.num_seeds": 2, "mesh.data": 1}},
        "seeds2_data2": {"overrides": {**STEPS, "train.num_seeds": 2, "mesh.seeds": 2,
                                       "mesh.data": 2}},
        "stopped": {"overrides": {**STEPS, "mesh.data": 4}, "sigterm_at": 8},
        **{name: {"config": "configs/transformer.py:tiny",
                  # Dropout off: each data shard draws its own masks (docs/devices.md).
                  "overrides": {**STEPS, "model.layers": 1,
                                "model.dropout": 0.0, "mesh.data": data}}
           for name, data in (("tf_one", 1), ("tf_data4", 4))},
    }
    for name, run in runs.items():
        run["workdir"] = str(root / name)
    results = _result(_start({"tfds_dir": tfds, "runs": runs}, devices=4))
    return {name: run["workdir"] for name, run in runs.items()}, results, tfds


def test_data_axis_equals_one_device(four_devices):
    workdirs, results, _ = four_devices
    one, one_results = _reference(four_devices)
    _assert_same_losses(workdirs["data4"], one, REFERENCE[1])
    assert results["data4"]["test"]["bleu"] == pytest.approx(one_results["test"]["bleu"])


def test_transformer_data_axis_equals_one_device(four_devices):
    workdirs, results, _ = four_devices
    _assert_same_losses(workdirs["tf_data4"], workdirs["tf_one"])
    assert results["tf_data4"]["test"]["bleu"] == pytest.approx(results["tf_one"]["test"]["bleu"])
    assert results["tf_data4"]["test"]["aer_by_head"] == pytest.approx(
        results["tf_one"]["test"]["aer_by_head"])


def test_seeds_and_data_axes_equal_vmapped_seeds_on_one_device(four_devices):
    workdirs, results, _ = four_devices
    _assert_same_losses(workdirs["seeds2_data2"], workdirs["k2_one"])
    assert {r["seed"] for r in _rows(workdirs["seeds2_data2"])} == {0, 1}
    assert [s["test"]["bleu"] for s in results["seeds2_data2"]["seeds"]] == pytest.approx(
        [s["test"]["bleu"] for s in results["k2_one"]["seeds"]])


def test_sigterm_checkpoints_and_a_data4_checkpoint_resumes_on_one_device(four_devices):
    workdirs, results, tfds = four_devices
    one, one_results = _reference(four_devices)
    stopped = workdirs["stopped"]
    assert results["stopped"] == {"preempted_at": 8}
    assert sorted(os.listdir(os.path.join(stopped, "checkpoints", "last")))[-1] == "8"
    assert not os.path.exists(os.path.join(stopped, "results.json"))
    resumed = _result(_start({"tfds_dir": tfds, "runs": {"stopped": {
        "workdir": stopped, "overrides": {**STEPS, "mesh.data": 1}}}}, devices=None))
    # Rows of the window cut by the stop average fewer steps; evaluations and results match.
    for split in ("valid", "test"):
        g, w = _losses(stopped, split), _losses(one, split, REFERENCE[1])
        np.testing.assert_allclose([x[2] for x in g], [x[2] for x in w], rtol=1e-5)
    assert resumed["stopped"]["test"]["bleu"] == pytest.approx(one_results["test"]["bleu"])
    assert resumed["stopped"]["test"]["loss"] == pytest.approx(one_results["test"]["loss"],
                                                               rel=1e-5)
    train_steps = [x[0] for x in _losses(stopped)]
    assert train_steps == sorted(set(train_steps))  # Nothing logged twice.


def test_a_data4_run_translates_on_one_device(four_devices):
    """`translate` (and `caption`) read a run saved on 4 devices in this 1-device process: its
    newest checkpoint gives the running example the run's own final translation."""
    from attn_jax import translate  # pylint: disable=g-import-not-at-top

    assert jax.local_device_count() == 1
    workdir = four_devices[0]["data4"]
    with open(os.path.join(workdir, "results.json")) as f:
        example = json.load(f)["running_example"]
    translator = translate.Translator(workdir, best=False)  # eval.use_best=False: the last
    assert translator.translate([example["src"]])[0].text == example["hyp"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_of_two_devices_equal_one_device(four_devices, tmp_path):
    _, _, tfds = four_devices
    one, one_results = _reference(four_devices)
    workdir = str(tmp_path / "two_processes")
    spec = {"tfds_dir": tfds, "runs": {"mp": {"workdir": workdir, "overrides": {**STEPS}}}}
    port = str(_free_port())
    procs = [_start(spec, devices=2, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                    JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)) for i in range(2)]
    out = _results(procs)
    _assert_same_losses(workdir, one, REFERENCE[1])
    assert out[0]["mp"]["test"]["bleu"] == pytest.approx(one_results["test"]["bleu"])
    assert out[1]["mp"]["test"] == out[0]["mp"]["test"]  # Both computed the metrics...
    steps = [(r["step"], r["split"]) for r in _rows(workdir)]
    assert len(steps) == len(set(steps))  # ...but only process 0 wrote them.


def test_sigterm_from_outside_exits_143_soon_with_a_checkpoint(tmp_path):
    workdir = tmp_path / "cli"
    proc = subprocess.Popen(
        [sys.executable, "-m", "attn_jax.train", "--config=configs/default.py:tiny",
         f"--workdir={workdir}", "--config.train.num_steps=100000",
         "--config.train.eval_every=99999", "--config.train.log_every=3"],
        cwd=REPO, env=_env(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 600
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.5)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.time() - sent < 30
    assert proc.returncode == 143, err[-3000:]
    assert "stopped by SIGTERM at step" in err
    step = int(err.split("stopped by SIGTERM at step ")[1].split(";")[0])
    assert sorted(int(s) for s in os.listdir(workdir / "checkpoints" / "last"))[-1] == step


@pytest.mark.parametrize("data, seeds, devices, k, match", [
    (5, 1, 4, 1, "asks for seeds=1 x data=5"),
    (-1, 3, 4, 3, "does not divide the 4 devices"),
    (1, 2, 4, 3, "does not divide train.num_seeds"),
    (0, 1, 4, 1, "use seeds >= 1 and data >= 1"),
])
def test_impossible_meshes_are_refused(data, seeds, devices, k, match):
    with pytest.raises(ValueError, match=match):
        sharding.mesh_shape(data, seeds, devices, k)


def test_batch_sizes_must_split_over_the_data_axis():
    layout = sharding.Layout(jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1),
                                               (sharding.SEEDS, sharding.DATA)))
    sharding.check_batch_sizes(layout, (16, 8), 256)  # One device: anything splits.
    fake = type("Fake", (), {"data_size": 4})()
    with pytest.raises(ValueError, match="do not split over mesh.data=4"):
        sharding.check_batch_sizes(fake, (16, 6), 256)
    with pytest.raises(ValueError, match="eval.batch_size=250"):
        sharding.check_batch_sizes(fake, (16, 8), 250)


def test_mesh_shape_fills_the_data_axis():
    assert sharding.mesh_shape(-1, 1, 4, 1) == (1, 4)
    assert sharding.mesh_shape(-1, 2, 4, 2) == (2, 2)
    assert sharding.mesh_shape(2, 1, 4, 1) == (1, 2)


def test_one_device_is_a_layout_like_any_other():
    """One device takes the same path as N: a 1 x 1 mesh that places batches and gathers results
    (only the pacing of dispatched steps differs: one device has no all-reduce to wait for)."""
    layout = sharding.single_device()
    assert (layout.seeds_size, layout.data_size) == (1, 1) and layout.steps_in_flight is None
    batch = layout.train_batch({"src": np.arange(6).reshape(1, 2, 3), "index": np.zeros((1, 2))})
    assert set(batch) == {"src"} and batch["src"].sharding.mesh == layout.mesh
    np.testing.assert_array_equal(layout.gather(batch)["src"], np.arange(6).reshape(1, 2, 3))
    wide = sharding.Layout(jax.sharding.Mesh(np.asarray(jax.devices()[:1] * 2).reshape(1, 2),
                                             (sharding.SEEDS, sharding.DATA)))
    assert wide.steps_in_flight == sharding.MAX_STEPS_IN_FLIGHT
