"""The memory allocator's settings for timing: what the runner and the speed benchmarks share."""

from __future__ import annotations

import ctypes
import platform


def keep_freed_memory() -> None:
    """Have glibc keep freed memory for reuse instead of returning it to the system (a no-op
    without glibc). Otherwise a chunk's megabyte-sized temporaries are handed back after each
    chunk and fault their pages in afresh in the next (on the toy, ~350 page faults per chunk of
    65,536 measure_valued estimates, a fifth of its time)."""
    if platform.libc_ver()[0] != "glibc":
        return
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    m_trim_threshold, m_mmap_threshold = -1, -3  # from malloc.h
    mallopt(m_mmap_threshold, 32 << 20)  # below 32 MiB from the heap, not a fresh mapping
    mallopt(m_trim_threshold, 512 << 20)  # keep up to 512 MiB of freed heap
