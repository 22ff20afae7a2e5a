"""CPU memory: keep freed buffers in the process instead of handing them back to the system.

A decode batch at 180x320 allocates and frees a few tensors of 10-60 MB each (conv outputs,
the pixel shuffle's copy, the head). glibc serves every allocation above its mmap threshold
(32 MB at most) with a fresh mmap and unmaps it on free, so each batch pays a page fault per
4 KB page on first touch. With mmap off for the heap (M_MMAP_MAX = 0) and freed memory kept up
to TRIM_THRESHOLD_BYTES (M_TRIM_THRESHOLD), the next batch reuses the same pages
(docs/performance.md has the decode figures). It changes no result (the same arithmetic on the
same values; only where the buffers live), and costs at most TRIM_THRESHOLD_BYTES of freed
memory the process keeps.

Applied by the commands that train or decode (gnerv.runtime.process), never on import. Only on
glibc (Linux); elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util

TRIM_THRESHOLD_BYTES = 512 * 2**20  # freed memory kept for reuse before trimming the heap
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed large buffers; True when it took effect."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl and others lack these)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
