"""The model families (`model.arch`): one registry line each.

Every family is a frozen config class (`from_config(config.model, ...)`, `validate()`), a Flax
module with the same methods (`encode`, `decode_step`, `loss`, `token_nll`, `__call__`: what the
train step, the decoders and the evaluation call) and an `init_params(module, rng, src_len)`.
`only` names the `config.model` fields that no other family reads: a config that sets one of them
away from its default for another family is refused (`check_fields`), so an RNN option never
silently does nothing in a Transformer run, or the reverse.

Adding a model family: its module in this wing, one `Arch` line in ARCHS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from attn_jax.model import rnn, transformer


@dataclasses.dataclass(frozen=True)
class Arch:
    config: type  # The frozen model config.
    module: type  # The flax module built from it.
    init_params: Callable[..., Any]  # (module, rng, src_len) -> params.
    only: tuple[str, ...]  # config.model fields only this family reads.
    # Attention per layer and head: decode_step returns [B, L, H, S], and token_nll(...,
    # all_heads=True) adds aux["heads"] [B, L, H, T, S] (the mean over both is aux["attention"]).
    per_head: bool = False


ARCHS: dict[str, Arch] = {
    "rnn": Arch(rnn.ModelConfig, rnn.Seq2Seq, rnn.init_params,
                only=("flow", "cell", "embed_size", "encoder_hidden", "decoder_hidden",
                      "attention_size", "output_size", "encoder_layers", "bidirectional",
                      "input_feeding", "cell_kernel", "local_keys", "grid_layers",
                      "count_layers")),
    "transformer": Arch(transformer.TransformerConfig, transformer.Transformer,
                        transformer.init_params,
                        only=("layers", "d_model", "d_ff", "norm", "tie_embeddings"),
                        per_head=True),
}


def get(name: str) -> Arch:
    if name not in ARCHS:
        raise ValueError(f"Unknown model.arch {name!r}; valid: {', '.join(ARCHS)} "
                         "(--config.model.arch=NAME).")
    return ARCHS[name]


def of(model_config: Any) -> Arch:
    """The family of a derived model config."""
    for entry in ARCHS.values():
        if isinstance(model_config, entry.config):
            return entry
    raise TypeError(f"{type(model_config).__name__} is no registered model config")


def name_of(model_config: Any) -> str:
    """The `ARCHS` key of a derived model config's family."""
    entry = of(model_config)
    return next(name for name, e in ARCHS.items() if e is entry)


def check_fields(model: Any, defaults: Mapping[str, Any]) -> None:
    """Refuses `config.model` fields of another family set away from their `defaults`."""
    arch = get(model.arch)
    for name, other in ARCHS.items():
        if other is arch:
            continue
        changed = [f for f in other.only if f not in arch.only and model[f] != defaults[f]]
        if changed:
            fix = " ".join(f"--config.model.{f}={defaults[f]}" for f in changed)
            raise ValueError(f"model.arch={model.arch!r} does not read {', '.join(changed)} "
                             f"({name} only); leave them at their defaults ({fix}) or set "
                             f"--config.model.arch={name}.")


def model_config(model: Any, *, src_vocab_size: int, tgt_vocab_size: int, max_source_len: int,
                 max_decode_extra: int, image_size: int = 0) -> Any:
    """The validated frozen config of `model.arch`'s family from the `config.model` ConfigDict.
    image_size > 0: the sources are images of that size (`model.encoder='cnn'`)."""
    arch = get(model.arch)
    extra = ({"max_decode_extra": max_decode_extra}
             if arch.config is transformer.TransformerConfig else {})
    return arch.config.from_config(model, src_vocab_size=src_vocab_size,
                                   tgt_vocab_size=tgt_vocab_size, max_source_len=max_source_len,
                                   image_size=image_size, **extra)


def build(model_config: Any):
    """The flax module of a derived model config."""
    return of(model_config).module(model_config)
