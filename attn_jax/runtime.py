"""Process-level setup for training and benchmarking on a CPU host.

XLA's CPU runtime allocates a step's temporaries as one large block and frees it when the step
ends. glibc hands blocks that large back to the operating system at once, so every step would
page-fault its whole working set back in (system time that grows with the model and batch).
`keep_freed_memory` tells glibc to keep freed memory for reuse instead: one malloc arena, no
separate mappings for large blocks, no trimming. The process's memory then stays at its peak,
which is what a training process reaches anyway. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

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
