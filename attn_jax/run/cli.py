"""What the commands share: their start before JAX runs, quiet logs (train, translate, align),
and bad input ending in one line instead of a traceback (translate, align)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from absl import app

from attn_jax.run import checkpoint, runtime


def start(define_flags: Callable[[], None], main: Callable[[list[str]], Any]) -> None:
    """The `__main__` of a command: glibc keeps freed memory and compiled programs are cached
    (both set before JAX starts, `runtime`), the command's flags are defined, then absl runs
    `main`."""
    runtime.keep_freed_memory()
    runtime.use_compilation_cache()
    define_flags()
    app.run(main)


def quiet_logs() -> None:
    """Keeps a command's log to what matters: orbax below WARNING, and JAX's INFO line about a
    TPU backend that is not there (on CPU and GPU hosts, read as an error) are dropped;
    everything else stays."""
    checkpoint.quiet_orbax_logs()
    logging.getLogger("jax._src.xla_bridge").addFilter(
        lambda r: not r.getMessage().startswith("Unable to initialize backend 'tpu'"))


def one_line_errors(body: Callable[[], Any], errors: tuple[type[BaseException], ...]) -> Any:
    """`body()` with the logs kept quiet (`quiet_logs`); one of `errors` ends the process with
    "error: <message>" on stderr and exit status 1 (the message names the fix)."""
    quiet_logs()
    try:
        return body()
    except errors as e:
        sys.exit(f"error: {e}")
