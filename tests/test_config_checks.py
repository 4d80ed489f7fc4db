"""Config checks before anything runs: resume compatibility, value checks, one-line load errors."""

import copy
import json
import os
import subprocess
import sys
import textwrap

import pytest

from attn_jax.run import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(REPO, "configs", "default.py")


def tiny():
    return config_lib.load_config_file(DEFAULT + ":tiny")


def as_json(config):
    return json.loads(config.to_json())


def changed(saved, key, value):
    """A copy of the JSON config `saved` with the dotted `key` set to `value`."""
    out = copy.deepcopy(saved)
    *path, leaf = key.split(".")
    node = out
    for part in path:
        node = node[part]
    node[leaf] = value
    return out


def other_value(value):
    """A different value of the same JSON type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    return list(value) + [1]


# ---------------------------------------------------------------------------- resuming


@pytest.mark.parametrize("key, value", [("data.max_len", 40), ("train.learning_rate", 1e-3),
                                        ("train.num_steps", 30), ("train.schedule", "constant"),
                                        ("train.label_smoothing", 0.1), ("eval.beam_size", 4)])
def test_resume_with_changed_data_or_optimizer_is_refused_in_one_line(key, value):
    saved = as_json(tiny())
    with pytest.raises(ValueError) as e:
        config_lib.check_resume(saved, changed(saved, key, value), "runs/x")
    message = str(e.value)
    old = config_lib.flatten(saved)[key]
    assert "\n" not in message
    assert f"{key}: saved {old!r}, now {value!r}" in message
    assert f"--config.{key}={config_lib.format_value(old)}" in message  # The fix: old value ...
    assert "new --workdir" in message  # ... or a new workdir.


def test_every_field_must_match_except_the_safe_ones():
    saved = as_json(tiny())
    keys = list(config_lib.flatten(saved))
    safe = [k for k in keys
            if any(k == s or k.startswith(s + ".") for s in config_lib.SAFE_TO_CHANGE)]
    assert "logging.progress_bar" in safe and "eval.batch_size" in safe
    assert "data.max_len" not in safe and "train.learning_rate" not in safe
    for key in keys:
        current = changed(saved, key, other_value(config_lib.flatten(saved)[key]))
        bad = config_lib.resume_mismatches(saved, current)
        if key in safe:
            assert bad == [], key
            config_lib.check_resume(saved, current, "runs/x")  # No error.
        else:
            assert [b.split(":")[0] for b in bad] == [key]


def test_resume_of_a_run_saved_without_a_field_names_a_new_workdir():
    current = as_json(tiny())
    saved = copy.deepcopy(current)
    del saved["data"]["max_len"]
    with pytest.raises(ValueError, match=r"data.max_len: saved \(absent\), now 72\. To go on, "
                                         r"use a new --workdir\."):
        config_lib.check_resume(saved, current, "runs/x")


# -------------------------------------------------------------------------- validation


def test_negative_length_penalty_is_rejected():
    config = tiny()
    config.eval.length_penalty = -0.5
    with pytest.raises(ValueError, match=r"eval.length_penalty must be >= 0, got -0.5"):
        config_lib.validate(config)
    config.eval.length_penalty = 0.0
    config_lib.validate(config)


@pytest.mark.parametrize("key", ["eval_every", "checkpoint_every"])
def test_intervals_must_be_multiples_of_log_every(key):
    config = tiny()
    assert config.train.log_every == 3
    config.train[key] = 10
    with pytest.raises(ValueError) as e:
        config_lib.validate(config)
    assert f"train.{key} (10) must be a multiple of train.log_every (3)" in str(e.value)
    assert f"--config.train.{key}=9 or 12" in str(e.value)
    for ok in (0, 12):
        config.train[key] = ok
        config_lib.validate(config)


@pytest.mark.parametrize("overrides,match", [
    ({"model.arch": "cnn"}, r"Unknown model.arch 'cnn'; valid: rnn, transformer"),
    ({"model.arch": "transformer", "model.cell": "lstm"},
     r"model.arch='transformer' does not read cell \(rnn only\).*--config.model.cell=gru"),
    ({"model.layers": 3}, r"model.arch='rnn' does not read layers \(transformer only\)"),
    ({"model.arch": "transformer", "model.scorer": "scaled_dot", "model.num_heads": 3},
     r"num_heads"),
    ({"model.arch": "transformer", "model.scorer": "location"}, r"location"),
    ({"model.arch": "transformer", "model.scorer": "scaled_dot", "model.layers": 0}, r"layers"),
])
def test_model_family_options_are_checked_before_anything_runs(overrides, match):
    config = tiny()
    for key, value in overrides.items():
        section, field = key.split(".")
        config[section][field] = value
    with pytest.raises(ValueError, match=match):
        config_lib.validate(config)


def test_a_transformer_config_validates_to_its_model_config():
    config = tiny()
    config.model.arch, config.model.scorer = "transformer", "additive"
    model = config_lib.validate(config)
    assert type(model).__name__ == "TransformerConfig"
    assert (model.scorer, model.d_model, model.d_ff) == ("additive", 16, 64)  # hidden_size 16
    derived = config_lib.derive(config, src_vocab_size=30, tgt_vocab_size=20, steps_per_epoch=4,
                                model=model)
    assert (derived.model.src_vocab_size, derived.model.tgt_vocab_size) == (30, 20)


def test_resume_of_a_run_saved_before_the_transformer_fields():
    """A config.json from before model.arch and the Transformer's fields resumes as an RNN run;
    another absent field still refuses (test above)."""
    current = as_json(tiny())
    saved = copy.deepcopy(current)
    for field in config_lib.ABSENT_MEANS_DEFAULT:
        section, name = field.split(".")
        del saved[section][name]
    config_lib.check_resume(saved, current, "runs/x")
    current["model"]["arch"] = "transformer"
    with pytest.raises(ValueError, match=r"model.arch: saved 'rnn', now 'transformer'"):
        config_lib.check_resume(saved, current, "runs/x")


# ----------------------------------------------------------------- loading and overrides


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_missing_config_file_is_one_line(tmp_path):
    missing = str(tmp_path / "nope.py")
    with pytest.raises(ValueError, match=f"File '{missing}' not found") as e:
        config_lib.load_config_file(missing + ":tiny")
    assert "\n" not in str(e.value)


def test_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.py", """\
        def get_config():
            x = (1,
        return x
        """)
    with pytest.raises(ValueError) as e:
        config_lib.load_config_file(path)
    assert str(e.value).startswith(f"{path}:2: syntax error") and "\n" not in str(e.value)


def test_error_inside_config_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.py", """\
        def get_config():
            return undefined_name
        """)
    with pytest.raises(ValueError, match=f"^{path}:2: NameError: name 'undefined_name'"):
        config_lib.load_config_file(path)
    with pytest.raises(ValueError, match="defines no get_sweep"):
        config_lib.load_config_file(path, function="get_sweep")


@pytest.mark.parametrize("argv", [
    ["--config", DEFAULT, "--config.model.scorr=dot"],
    ["--config", DEFAULT, "--config.model.scorr", "dot"],
    [f"--config={DEFAULT}", "--config.model.scorr", "dot"],
    ["-config", DEFAULT + ":tiny", "-config.model.scorr=dot"],
])
def test_check_overrides_knows_both_flag_forms(argv):
    with pytest.raises(ValueError, match=r"Unknown config key 'model.scorr' .* Did you mean "
                                         r"model.scorer\b"):
        config_lib.check_overrides(argv)
    config_lib.check_overrides([a.replace("scorr", "scorer") for a in argv])  # No error.


def test_check_overrides_missing_file_space_form(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        config_lib.check_overrides(["--config", str(tmp_path / "nope.py"), "--workdir=x"])


def test_override_checks_keys_and_types():
    config = tiny()
    config_lib.override(config, "train.learning_rate", 1)  # An int for a float field is fine.
    assert config.train.learning_rate == 1.0
    with pytest.raises(ValueError, match="Did you mean train.num_steps"):
        config_lib.override(config, "train.num_step", 5)
    with pytest.raises(ValueError, match="'128' for 'model.hidden_size' has type str"):
        config_lib.override(config, "model.hidden_size", "128")
    with pytest.raises(ValueError, match="section, not a field"):
        config_lib.override(config, "model", "x")


def _cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "attn_jax.train", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", ["space_form_typo", "syntax_error"])
def test_cli_config_errors_are_one_line(tmp_path, case):
    if case == "space_form_typo":
        args = ["--config", "configs/default.py:tiny", "--config.model.scorr=dot"]
        expected = "error: Unknown config key 'model.scorr'"
    else:
        path = write(tmp_path / "bad.py", "def get_config(:\n")
        args = [f"--config={path}"]
        expected = f"error: {path}:1: syntax error"
    result = _cli([*args, f"--workdir={tmp_path / 'run'}"], REPO)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith(expected)]
    assert not (tmp_path / "run").exists()


def test_configs_load_from_any_directory(tmp_path):
    """configs/multi30k.py builds on default.py: it loads with the repository not on sys.path,
    both through load_config_file and through absl's --config flag (what train uses)."""
    script = textwrap.dedent(f"""\
        import sys
        from absl import flags
        from ml_collections import config_flags
        from attn_jax.run import config as config_lib
        path = {os.path.join(REPO, "configs", "multi30k.py")!r}
        assert config_lib.load_config_file(path + ":tiny").data.name == "multi30k"
        config_flags.DEFINE_config_file("config")
        flags.FLAGS(["prog", "--config=" + path])
        print(flags.FLAGS.config.data.name, flags.FLAGS.config.train.warmup_steps > 0)
        """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["multi30k", "True"]
