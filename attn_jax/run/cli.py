"""What the commands that load a trained run (`python -m attn_jax.translate`, `.align`) share:
their start before JAX runs, and bad input ending in one line instead of a traceback."""

from __future__ import annotations

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


def one_line_errors(body: Callable[[], Any], errors: tuple[type[BaseException], ...]) -> Any:
    """`body()` with orbax's INFO logs dropped; one of `errors` ends the process with
    "error: <message>" on stderr and exit status 1 (the message names the fix)."""
    checkpoint.quiet_orbax_logs()
    try:
        return body()
    except errors as e:
        sys.exit(f"error: {e}")
