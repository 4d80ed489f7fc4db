"""Tests for attn_jax.run.workdir: stop signals, the workdir's config.json, and metric averaging
(the lock is tested with a second process in test_faults.py)."""

import json
import os
import signal

import numpy as np
import pytest

from attn_jax.run import workdir
from attn_jax.run.config import load_config_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_stop_signals_are_recorded_then_handed_back(sig):
    previous = signal.getsignal(sig)
    with workdir.StopSignals() as stop:
        assert not stop.stopping(3)
        os.kill(os.getpid(), sig)  # Recorded, not fatal.
        assert stop.signum == sig and stop.stopping(3) and stop.stopping(4, check_now=True)
        error = stop.preempted(7)
    assert signal.getsignal(sig) is previous
    assert isinstance(error, workdir.Preempted) and error.step == 7 and error.signum == sig
    assert error.exit_code == workdir.PREEMPTED_EXIT_CODE == 143
    assert f"stopped by {signal.Signals(sig).name} at step 7" in str(error)


def test_config_json_is_written_and_an_incompatible_one_refused(tmp_path):
    config = load_config_file(os.path.join(REPO, "configs/default.py:tiny"))
    workdir.check_saved_config(str(tmp_path), config)  # None saved: nothing to check.
    workdir.write_config(str(tmp_path), config)
    assert json.load(open(tmp_path / "config.json")) == json.loads(config.to_json())
    assert os.listdir(tmp_path) == ["config.json"]
    workdir.check_saved_config(str(tmp_path), config)
    config.model.hidden_size *= 2
    with pytest.raises(ValueError, match="model.hidden_size"):
        workdir.check_saved_config(str(tmp_path), config)


def test_window_metrics_sum_tokens_before_dividing():
    window = [{"nll_sum": np.array([4.0, 9.0]), "weight": np.array([2.0, 3.0]),
               "grad_norm": np.array([1.0, 2.0])},
              {"nll_sum": np.array([2.0, 0.0]), "weight": np.array([4.0, 0.0]),
               "grad_norm": np.array([3.0, 4.0])}]
    rows = workdir.window_metrics(window, seconds=2.0, lr=0.1)
    assert [r["loss"] for r in rows] == [1.0, 3.0]  # 6/6 and 9/3, not means of step losses.
    assert rows[0]["perplexity"] == pytest.approx(np.e)
    assert [r["grad_norm"] for r in rows] == [2.0, 3.0]
    assert [r["tokens_per_sec"] for r in rows] == [3.0, 1.5]
    assert {r["learning_rate"] for r in rows} == {0.1}


def test_mean_metrics_over_replicas():
    per_seed = [{"bleu": 10.0, "aer": None, "bleu_by_length": {"1-10": 4.0, "41+": None},
                 "bleu_signature": "sig", "num_sentences": 5},
                {"bleu": 20.0, "aer": None, "bleu_by_length": {"1-10": 8.0, "41+": 3.0},
                 "bleu_signature": "sig", "num_sentences": 5}]
    assert workdir.mean_metrics(per_seed) == {
        "bleu": 15.0, "aer": None, "bleu_by_length": {"1-10": 6.0, "41+": None},
        "bleu_signature": "sig", "num_sentences": 5.0}
    # A string the replicas disagree on (each seed's best head) is no one's: None.
    heads = [{"best_head": "L1H2", "aer_best_head": 0.2}, {"best_head": "L2H1", "aer_best_head": 0.4}]
    assert workdir.mean_metrics(heads) == {"best_head": None, "aer_best_head": pytest.approx(0.3)}
    assert workdir.mean_metrics(heads[:1] * 2)["best_head"] == "L1H2"
