"""Config files, overrides and checks: everything that must hold before anything is compiled.

`load_config_file` is the one loader of Python config files: run configs (`get_config`) and
sweep definitions (`get_sweep`), from any working directory; a missing file, a syntax error or
an exception in the file is a one-line ValueError naming file:line. `check_overrides` rewords an
unknown `--config.a.b=v` key (after `--config=FILE` or `--config FILE`) into a message naming the
valid keys, and `override` sets a dotted key with ConfigDict's own type checks and the same
messages (sweeps use it). `validate` checks values. `derive` computes the values that depend on
others (steps from epochs, intervals, model sizes) AFTER command-line overrides, so they never go
stale; the ConfigDict itself is never modified. `check_resume` refuses to resume a run whose
saved config differs in any field outside SAFE_TO_CHANGE.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.machinery
import importlib.util
import json
import math
import os
import re
import shlex
import traceback
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections

from attn_jax.data import sources
from attn_jax.eval import attribution
from attn_jax.model import arch as arch_lib
from attn_jax.model import attention

WANDB_MODES = ("offline", "online", "disabled")
SCHEDULES = ("cosine", "constant", "rsqrt")

# The only fields a resumed run may change (a key covers its whole section): where the same data
# and the logs go, and how much is evaluated. Every other field must match the run it resumes,
# since it shapes the data, the batches, the model, the optimizer or the decoder.
SAFE_TO_CHANGE = (
    "logging",  # W&B mode, project, entity and group; the progress bar.
    "eval.batch_size",  # Sentences per evaluation batch (speed only).
    "eval.valid_subset",  # Valid sentences decoded at periodic evaluations.
    "eval.num_heatmaps",  # Test sentences drawn as heatmaps at the end.
    "eval.attribution_methods",  # Attribution alignments computed at evaluations (extra metrics).
    "eval.ig_steps",  # Their integrated gradients' path points.
    "train.keep_checkpoints",  # Recent checkpoints kept on disk.
    "data.tfds_dir",  # Where the same data is prepared (a moved copy is fine).
    "data.raw_dir",  # Where the same raw corpus files are read from.
    "model.attention_impl",  # How attention is computed (same values; runs before it: xla).
    "mesh",  # Devices: checkpoints restore on any mesh, the global batch is the same.
)
# Fields added after runs were saved whose default in configs/default.py is exactly what those
# runs did, so a config.json without them resumes. Any other absent field refuses the resume
# (its default may change what the run does, as data.max_len's filtering would).
ABSENT_MEANS_DEFAULT = (
    "model.arch", "model.layers", "model.d_model", "model.d_ff", "model.norm",
    "model.tie_embeddings",  # The Transformer's fields: runs before it were RNNs.
    "model.encoder", "train.attention_penalty",  # Images: runs before them read text.
    "model.cell_kernel", "model.local_keys",  # Image encoder: runs before them saw one cell.
    "model.grid_layers", "model.image_norm",  # Image encoder: runs before them had neither.
    "model.global_pool", "model.count_layers", "model.image_width",
    "train.align_loss_weight", "train.align_gold",  # Supervised attention: runs before it had none.
    "train.align_possible_weight",
    "eval.attribution_methods", "eval.ig_steps",  # Attribution alignments at evaluation.
)


# ----------------------------------------------------------------------------- loading


def _error_line(error: BaseException, path: str) -> str:
    """'file:line' of the innermost traceback frame in `path` (else just `path`)."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if os.path.abspath(f.filename) == os.path.abspath(path)]
    return f"{path}:{frames[-1].lineno}" if frames else path


def load_config_file(spec: str | os.PathLike, function: str = "get_config") -> Any:
    """Loads 'path/to/file.py[:arg]' the way --config does: returns the file's get_config(arg).

    `function` names another entry point (sweep definitions: 'get_sweep'). Works from any working
    directory (a relative path starts there). Raises a one-line ValueError for a missing file, a
    syntax error or an exception in the file (with file:line), or a file without `function`.
    """
    path, _, arg = os.fspath(spec).partition(":")
    if not os.path.isfile(path):
        raise ValueError(f"File {path!r} not found (a relative path starts at the current "
                         f"directory, {os.getcwd()}); check the path.")
    name = "_attn_jax_file_" + re.sub(r"\W", "_", os.path.abspath(path))
    loader = importlib.machinery.SourceFileLoader(name, path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    try:
        loader.exec_module(module)
        if not callable(getattr(module, function, None)):
            raise ValueError(f"{path} defines no {function}(); it is not a "
                             f"{'sweep definition' if function == 'get_sweep' else 'config file'}.")
        return getattr(module, function)(arg) if arg else getattr(module, function)()
    except ValueError:
        raise  # Already one line (a config's own argument check, or a nested load).
    except SyntaxError as e:
        raise ValueError(f"{e.filename}:{e.lineno}: syntax error: {e.msg}; fix the file.") from None
    except Exception as e:  # noqa: BLE001 - any error in user code becomes one line.
        raise ValueError(f"{_error_line(e, path)}: {type(e).__name__}: {e} (while loading "
                         f"{os.fspath(spec)}); fix the file.") from None


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "default.py")  # The defaults of every config field.


def _merged(base: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in saved.items():
        out[key] = (_merged(base[key], value) if isinstance(value, dict)
                    and isinstance(base.get(key), dict) else value)
    return out


@functools.cache
def _default_json() -> str:
    return load_config_file(DEFAULT_CONFIG).to_json()


def _defaults() -> dict[str, Any]:
    """configs/default.py as JSON data: the default of every config field."""
    return json.loads(_default_json())


def from_saved(saved: dict[str, Any]) -> ml_collections.ConfigDict:
    """A run's config.json content back as a ConfigDict (lists that are tuples in configs, too).

    A field the run's config did not have yet (added to configs/default.py since) takes its
    default there, which keeps what the run did: new options are off by default. So `translate`,
    `align` and the benchmark read runs made by older versions of attn_jax."""
    saved = _merged(_defaults(), saved)
    saved = {**saved, "data": {**saved["data"], "buckets": tuple(saved["data"]["buckets"])}}
    return ml_collections.ConfigDict(saved)


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """{'a.b': value} for the leaves of a nested ConfigDict or dict (tuples as lists, like JSON)."""
    out = {}
    for k, v in cfg.items():
        if isinstance(v, (dict, ml_collections.ConfigDict)):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = list(v) if isinstance(v, tuple) else v
    return out


def format_value(value: Any) -> str:
    """A value as written on the command line (parsed back by ml_collections config_flags)."""
    if isinstance(value, list):
        value = tuple(value)
    return repr(value) if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- overrides


def _unknown_key(key: str, valid: Sequence[str], where: str) -> ValueError:
    """The error for a dotted key the config does not have: close matches and the valid keys."""
    section_keys = [k for k in valid if k.startswith(key + ".")]
    if section_keys:
        return ValueError(f"Config key {key!r} in {where} is a section, not a field; valid keys: "
                          f"{', '.join(section_keys)}.")
    section = key.rsplit(".", 1)[0] if "." in key else ""
    siblings = [k for k in valid if k.rsplit(".", 1)[0] == section and "." in k]
    close = difflib.get_close_matches(key, valid, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ValueError(f"Unknown config key {key!r} in {where}.{hint} Valid keys"
                      f"{' in ' + section if siblings else ''}: {', '.join(siblings or valid)}.")


def override(config: ml_collections.ConfigDict, key: str, value: Any,
             where: str = "an override") -> None:
    """Sets the dotted `key` of `config` to `value`, with ConfigDict's type checks.

    Raises a one-line ValueError for an unknown key (naming close matches and the valid keys) or
    a value of the wrong type (naming the field's type).
    """
    valid = flatten(config)
    if key not in valid:
        raise _unknown_key(key, list(valid), where)
    *path, leaf = key.split(".")
    node = config
    for part in path:
        node = node[part]
    current = node[leaf]
    try:
        if value is None and current is not None:  # ConfigDict lets None replace anything.
            raise TypeError
        node[leaf] = value
    except TypeError:
        raise ValueError(f"{where}: value {value!r} for {key!r} has type {type(value).__name__}, "
                         f"but the field is {type(current).__name__} (default {current!r})."
                         ) from None


def _flag_value(argv: Sequence[str], name: str) -> str | None:
    """The value of --NAME=V or --NAME V (one or two dashes; the last one wins, as in absl)."""
    value = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        m = re.fullmatch(rf"--?{name}(=(.*))?", arg, flags=re.S)
        if m:
            value = m.group(2) if m.group(1) else (argv[i + 1] if i + 1 < len(argv) else None)
    return value


def check_overrides(argv: Sequence[str]) -> None:
    """Checks a command line's --config file and its `--config.KEY` overrides before absl does.

    Raises a one-line ValueError when the file does not load (see load_config_file) or an
    override's KEY is not in it. Both `--config=FILE` and `--config FILE` are understood.
    """
    spec = _flag_value(argv, "config")
    if spec is None:
        return
    valid = list(flatten(load_config_file(spec)))
    for arg in argv:
        m = re.fullmatch(r"--?config\.([^=]+)(=.*)?", arg, flags=re.S)
        if m and m.group(1) not in valid:
            raise _unknown_key(m.group(1), valid, repr(arg))


# -------------------------------------------------------------------------- validation


@dataclasses.dataclass(frozen=True)
class Derived:
    """Values computed from the config (after overrides) and the data."""

    model: Any  # rnn.ModelConfig or transformer.TransformerConfig (model.arch).
    num_steps: int
    steps_per_epoch: int
    eval_every: int
    checkpoint_every: int
    seeds: tuple[int, ...]


def _choice(value: str, valid: Sequence[str], key: str) -> None:
    if value not in valid:
        raise ValueError(f"Unknown {key} {value!r}; valid: {', '.join(valid)} (--config.{key}=...).")


def validate(config: ml_collections.ConfigDict) -> Any:
    """Every value check that needs no data; raises ValueError naming the fix. Returns the model
    config derived from `config.model` (vocabulary sizes 0 until the data is loaded: `derive`
    fills them in), so a run derives its model sizes once."""
    t, e, log = config.train, config.eval, config.logging
    _choice(t.schedule, SCHEDULES, "train.schedule")
    _choice(log.wandb, WANDB_MODES, "logging.wandb")
    # Pallas kernels compile for GPU and TPU only; elsewhere they run interpreted, which the
    # tests use (attn_jax.model.kernels) but which is far too slow to train with.
    if config.model.attention_impl == "pallas" and jax.default_backend() not in ("gpu", "tpu"):
        raise ValueError(f"model.attention_impl='pallas' needs a GPU or TPU (this backend: "
                         f"{jax.default_backend()}); use --config.model.attention_impl=chunked.")
    positive = {"train.num_seeds": t.num_seeds, "train.learning_rate": t.learning_rate,
                "train.log_every": t.log_every, "train.keep_checkpoints": t.keep_checkpoints,
                "data.batch_size": config.data.batch_size, "eval.batch_size": e.batch_size,
                "eval.beam_size": e.beam_size}
    for key, value in positive.items():
        if value <= 0:
            raise ValueError(f"{key} must be > 0, got {value} (--config.{key}=...).")
    # A negative length penalty favours short hypotheses and breaks beam search's early stop.
    nonneg = {"train.num_steps": t.num_steps, "train.num_epochs": t.num_epochs,
              "train.warmup_steps": t.warmup_steps, "train.eval_every": t.eval_every,
              "train.checkpoint_every": t.checkpoint_every, "eval.valid_subset": e.valid_subset,
              "eval.num_heatmaps": e.num_heatmaps, "eval.length_penalty": e.length_penalty,
              "eval.max_decode_extra": e.max_decode_extra, "train.grad_clip": t.grad_clip,
              "data.batch_tokens": config.data.batch_tokens,
              "train.early_stop_patience": t.early_stop_patience,
              "train.early_stop_min_delta": t.early_stop_min_delta,
              "train.attention_penalty": t.attention_penalty,
              "train.align_loss_weight": t.align_loss_weight}
    for key, value in nonneg.items():
        if value < 0:
            raise ValueError(f"{key} must be >= 0, got {value} (--config.{key}=...).")
    mesh = config.mesh
    if mesh.seeds < 1 or mesh.data == 0 or mesh.data < -1 or mesh.cpu_devices < 0:
        raise ValueError(f"config.mesh: data={mesh.data}, seeds={mesh.seeds}, cpu_devices="
                         f"{mesh.cpu_devices}; use data >= 1 (or -1: every device), seeds >= 1 "
                         "and cpu_devices >= 0.")
    if t.num_seeds % mesh.seeds:
        raise ValueError(f"mesh.seeds={mesh.seeds} does not divide train.num_seeds={t.num_seeds}; "
                         "use a divisor (--config.mesh.seeds=...).")
    if not t.num_steps and not t.num_epochs:
        raise ValueError("Set train.num_steps or train.num_epochs (both are 0).")
    if not 0 <= t.label_smoothing < 1:
        raise ValueError(f"train.label_smoothing must be in [0, 1), got {t.label_smoothing}.")
    # Every evaluation saves a checkpoint: one inside a logging window would make a resumed run
    # log different rows than an uninterrupted one. (Derived intervals are multiples already.)
    for key in ("eval_every", "checkpoint_every"):
        value = t[key]
        if value % t.log_every:
            below = value // t.log_every * t.log_every
            options = " or ".join(str(v) for v in (below, below + t.log_every) if v > 0)
            raise ValueError(
                f"train.{key} ({value}) must be a multiple of train.log_every ({t.log_every}) so "
                f"that resumed runs log the same rows: set --config.train.{key}={options}, or 0 "
                "to derive it.")
    if t.attention_penalty and config.model.arch != "rnn":
        raise ValueError(f"train.attention_penalty is the RNN decoder's (one map per target "
                         f"token); model.arch={config.model.arch!r} takes "
                         "--config.train.attention_penalty=0.")
    _check_supervised_attention(config)
    _check_attribution(config)
    # The model's family, names and sizes, checked by the model wing (its config's validate).
    arch_lib.check_fields(config.model, _defaults()["model"])
    return arch_lib.model_config(config.model, src_vocab_size=1, tgt_vocab_size=1,
                                 max_source_len=max(config.data.buckets),
                                 max_decode_extra=config.eval.max_decode_extra,
                                 image_size=sources.image_size(config.data.name))


def _check_supervised_attention(config: ml_collections.ConfigDict) -> None:
    """train.align_loss_weight / align_gold: a gold file only with a weight > 0, and a weight > 0
    only for a scorer with learned weights over text that has gold (the data's own or the file).
    A gold file that does not fit the train split is refused where the data is read (train.py)."""
    t = config.train
    weight, path = t.align_loss_weight, t.align_gold
    if not 0.0 <= t.align_possible_weight <= 1.0:
        raise ValueError(f"train.align_possible_weight must be in [0, 1] (a possible link weighs "
                         f"at most as much as a sure one), got {t.align_possible_weight} "
                         "(--config.train.align_possible_weight=...).")
    if path and not weight:
        raise ValueError(f"train.align_gold={path!r} is set but train.align_loss_weight is 0, so "
                         "the gold would do nothing; set --config.train.align_loss_weight to a "
                         "weight > 0 (e.g. 1.0), or drop --config.train.align_gold.")
    if not weight:
        return
    name, scorer_name = config.data.name, config.model.scorer
    entry = sources.dataset(name)
    if entry.images:
        raise ValueError(f"train.align_loss_weight={weight} supervises attention over source "
                         f"words, but data.name={name!r} captions images; use text data or "
                         "--config.train.align_loss_weight=0.")
    scorer = attention.scorer_class(scorer_name)
    # Weights that depend on neither the keys nor learned positions are fixed (uniform, none).
    if not scorer.attends or not (scorer.uses_keys or scorer.position_based):
        raise ValueError(f"model.scorer={scorer_name!r} has no learned attention weights to "
                         f"supervise; use a learned scorer (e.g. --config.model.scorer=additive) "
                         "or --config.train.align_loss_weight=0.")
    if not path and not entry.gold:
        with_gold = ", ".join(n for n, d in sources.DATASETS.items() if d.gold)
        raise ValueError(f"train.align_loss_weight={weight} needs gold alignments, but "
                         f"data.name={name!r} has none; use data with gold ({with_gold}), give "
                         "a gold file for its train split (--config.train.align_gold=PATH), or "
                         "set --config.train.align_loss_weight=0.")
    if path and not os.path.isfile(path):
        raise ValueError(f"train.align_gold={path!r}: no such file (a relative path starts at "
                         f"{os.getcwd()}); point --config.train.align_gold at the train split's "
                         "gold file.")


def _check_attribution(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """eval.attribution_methods: known gradient methods, on text data with gold (they are scored
    by AER), with eval.ig_steps >= 1 for integrated gradients. Returns the methods."""
    ev = config.eval
    try:
        methods = attribution.check_methods(ev.attribution_methods, ev.ig_steps,
                                            "eval.attribution_methods",
                                            attribution.GRADIENT_METHODS)
    except ValueError as e:
        raise ValueError(f"{e} (--config.eval.attribution_methods=..., --config.eval.ig_steps="
                         "...)") from None
    entry = sources.dataset(config.data.name)
    if methods and (entry.images or not entry.gold):
        with_gold = ", ".join(n for n, d in sources.DATASETS.items() if d.gold)
        raise ValueError(f"eval.attribution_methods={ev.attribution_methods!r} scores attribution "
                         f"alignments against gold, which data.name={config.data.name!r} does "
                         f"not have; use data with gold ({with_gold}), or "
                         "--config.eval.attribution_methods='' (align any run with gold files "
                         "through python -m attn_jax.align --method=...).")
    return methods


def derive(config: ml_collections.ConfigDict, *, src_vocab_size: int, tgt_vocab_size: int,
           steps_per_epoch: int, model: Any = None) -> Derived:
    """The derived values (call after overrides and after loading the data). `model`: what
    `validate(config)` returned, when the caller validated already; otherwise validated here."""
    if model is None:
        model = validate(config)
    t = config.train
    model = dataclasses.replace(model, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size)
    num_steps = t.num_steps or max(1, math.ceil(t.num_epochs * steps_per_epoch))
    # Evaluate 4 times per run by default, on a multiple of log_every so that a checkpoint
    # never falls inside a logging window (resumed runs then log exactly the same rows).
    eval_every = t.eval_every or max(t.log_every, num_steps // 4 // t.log_every * t.log_every)
    checkpoint_every = t.checkpoint_every or eval_every
    seeds = tuple(range(t.seed, t.seed + t.num_seeds))
    return Derived(model=model, num_steps=num_steps, steps_per_epoch=steps_per_epoch,
                   eval_every=eval_every, checkpoint_every=checkpoint_every, seeds=seeds)


# ---------------------------------------------------------------------------- resuming


class _Absent:
    """A field the other config does not have (one added or removed since)."""

    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


def _safe_to_change(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in SAFE_TO_CHANGE)


def _mismatches(saved: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, saved value, current value) for every differing field outside SAFE_TO_CHANGE. A
    field of ABSENT_MEANS_DEFAULT that the saved config lacks counts as its default."""
    a, b = flatten(saved), flatten(current)
    added = [key for key in ABSENT_MEANS_DEFAULT if key in b and key not in a]
    if added:
        defaults = flatten(_defaults())
        a.update({key: defaults[key] for key in added})
    return [(key, a.get(key, _ABSENT), b.get(key, _ABSENT)) for key in sorted(set(a) | set(b))
            if not _safe_to_change(key) and a.get(key, _ABSENT) != b.get(key, _ABSENT)]


def resume_mismatches(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: saved X, now Y' for every field outside SAFE_TO_CHANGE that differs between a saved
    config.json and this run's config (both as JSON data)."""
    return [f"{key}: saved {old!r}, now {new!r}" for key, old, new in _mismatches(saved, current)]


def check_resume(saved: dict[str, Any], current: dict[str, Any], workdir: str) -> None:
    """Raises a one-line ValueError naming the fix when `current` may not resume the run saved
    in `workdir` (its config.json content `saved`; both as JSON data)."""
    bad = _mismatches(saved, current)
    if not bad:
        return
    flags_ = " ".join(shlex.quote(f"--config.{key}={format_value(old)}") for key, old, _ in bad
                      if old is not _ABSENT)
    fix = f"rerun with the saved values ({flags_}) or use a new --workdir" if flags_ else (
        "use a new --workdir")
    raise ValueError(f"{workdir} holds a run with other settings, so it cannot be resumed: "
                     f"{'; '.join(resume_mismatches(saved, current))}. To go on, {fix}.")
