"""glibc allocator settings for CPU training.

A training step allocates and frees the same large tensors every step (the dynamic PFN's per-point
features are ~100 MB). By default glibc serves each of them with a fresh ``mmap`` and returns it with
``munmap``, so every step pays the page faults of zero-filling them again. ``tune_malloc`` turns
``mmap`` off for the process (``M_MMAP_MAX = 0``) and stops the heap from shrinking
(``M_TRIM_THRESHOLD``), so freed blocks are reused: the tiny teacher's step took 0.52 s instead of
1.18 s (``benchmarks/train_step.py --malloc both``). The cost is that the process keeps its peak memory
until it exits. It is the ``mallopt`` form of ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 31  # bytes; mallopt takes an int


def glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (the only one with these ``mallopt`` parameters)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others
        return None
    return libc


def tune_malloc() -> bool:
    """Keep freed memory for reuse (no ``mmap``, no heap trimming); True when glibc accepted both
    settings, False where the C library is not glibc (nothing changed)."""
    libc = glibc()
    if libc is None:
        return False
    ok_mmap = libc.mallopt(M_MMAP_MAX, 0)
    ok_trim = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    if not (ok_mmap and ok_trim):
        raise RuntimeError(
            f"glibc mallopt refused the settings (M_MMAP_MAX: {ok_mmap}, M_TRIM_THRESHOLD: {ok_trim})"
        )
    return True
