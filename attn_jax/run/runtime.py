"""Process-level setup for training and benchmarking on a CPU host.

XLA's CPU runtime allocates a step's temporaries as one large block and frees it when the step
ends. glibc hands blocks that large back to the operating system at once, so every step would
page-fault its whole working set back in (system time that grows with the model and batch).
`keep_freed_memory` tells glibc to keep freed memory for reuse instead: one malloc arena, no
separate mappings for large blocks, no trimming. The process's memory then stays at its peak,
which is what a training process reaches anyway. A no-op where the C library is not glibc.

`use_compilation_cache` keeps compiled programs on disk (JAX's persistent compilation cache), so a
second run of the same shapes (a sweep's other seeds, a resumed run, `translate` after `train`)
loads its programs instead of compiling them again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import jax

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc's mallopt parameters.


def keep_freed_memory() -> bool:
    """Configures glibc malloc as above; returns whether it applied. Call before JAX starts."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(param, value) == 1 for param, value in (
        (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1)))


# Where compiled programs are kept; set ATTN_JAX_COMPILATION_CACHE to another folder, or to '' to
# turn the cache off. JAX's own JAX_COMPILATION_CACHE_DIR, when set, takes precedence.
CACHE_ENV = "ATTN_JAX_COMPILATION_CACHE"
DEFAULT_CACHE = os.path.join("~", ".cache", "attn_jax", "xla")


def use_compilation_cache() -> str | None:
    """Turns on JAX's persistent compilation cache (programs that took >= 1 s to compile) in
    $ATTN_JAX_COMPILATION_CACHE (default ~/.cache/attn_jax/xla); returns the folder, or None when
    it is off. The cache key covers the program, the compiler options and the jax/jaxlib
    versions, so an entry is only ever reused for the identical program."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    folder = os.environ.get(CACHE_ENV, DEFAULT_CACHE)
    if not folder:
        return None
    folder = os.path.expanduser(folder)
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return folder
