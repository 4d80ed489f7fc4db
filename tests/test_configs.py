"""Every config the READMEs name loads and validates, and every config says how to run it."""

import glob
import json
import os
import re

import pytest

from attn_jax.model import attention
from attn_jax.run import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _named_configs():
    names = set()
    for doc in ("README.md", "launch/README.md", *glob.glob(os.path.join(REPO, "experiments/*/README.md"))):
        text = open(os.path.join(REPO, doc)).read()
        names |= set(re.findall(r"--config=(configs/[\w/]+\.py(?::\w+)?)", text))
    return sorted(names)


def test_readmes_name_configs():
    assert "configs/default.py" in _named_configs()


@pytest.mark.parametrize("spec", _named_configs())
def test_named_config_loads_and_validates(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Configs load from any working directory.
    config_lib.validate(config_lib.load_config_file(os.path.join(REPO, spec)))


@pytest.mark.parametrize("path", sorted(p for p in glob.glob(os.path.join(REPO, "configs", "*.py"))
                                        if not p.endswith("__init__.py")))
def test_config_docstring_gives_the_command(path):
    text = open(path).read()
    assert "python -m attn_jax.train --config=configs/" in text, path


def test_default_config_lists_the_registered_scorers():
    """The scorer field's comment names exactly the registry's scorers, in its order."""
    text = open(os.path.join(REPO, "configs", "default.py")).read()
    listed = re.search(r"# ([\w|]+)\.\n\s*model\.scorer = ", text).group(1).split("|")
    assert tuple(listed) == attention.SCORER_NAMES


def test_a_run_saved_before_a_field_existed_reads_with_its_default():
    """config.json of an older version lacks fields added since (model.attention_impl,
    train.early_stop_patience): they take configs/default.py's values, the run's own stay."""
    saved = json.loads(config_lib.load_config_file(config_lib.DEFAULT_CONFIG).to_json())
    del saved["model"]["attention_impl"], saved["train"]["early_stop_patience"]
    saved["model"]["scorer"], saved["data"]["buckets"] = "general", [8, 16]
    saved["extra_section"] = {"kept": 1}
    config = config_lib.from_saved(saved)
    assert config.model.attention_impl == "xla" and config.train.early_stop_patience == 0
    assert config.model.scorer == "general" and config.data.buckets == (8, 16)
    assert config.extra_section.kept == 1
    config_lib.validate(config)
