"""The glibc allocator tuning: after it, large blocks come from the reusable heap, not from mmap."""

from __future__ import annotations

import subprocess
import sys

import pytest

from distillbev.train.malloc import glibc

PROBE = """
import ctypes, sys
from distillbev.train.malloc import glibc, tune_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]

libc = glibc()
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    assert tune_malloc()
libc.malloc.restype = ctypes.c_void_p
before = libc.mallinfo2()
block = libc.malloc(64 << 20)
info = libc.mallinfo2()
print(info.hblkhd - before.hblkhd, info.arena)
libc.free(ctypes.c_void_p(block))
after = libc.mallinfo2()
print(after.arena)
"""


def _probe(setting: str) -> tuple[int, int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, setting], check=True, capture_output=True, text=True)
    (mmapped, arena), (arena_after,) = (tuple(map(int, line.split())) for line in out.stdout.split("\n")[:2])
    return mmapped, arena, arena_after


@pytest.mark.skipif(glibc() is None or not hasattr(glibc(), "mallinfo2"), reason="needs glibc >= 2.33")
def test_tuned_malloc_serves_large_blocks_from_the_heap_and_keeps_them():
    mmapped, arena, _ = _probe("default")
    assert mmapped >= 64 << 20  # glibc's default: a 64 MB block is its own mmap
    mmapped, arena, arena_after = _probe("tuned")
    assert mmapped == 0  # not mmapped
    assert arena >= 64 << 20  # the block sits in the heap ...
    assert arena_after >= 64 << 20  # ... and the heap is not trimmed when it is freed


def test_tune_malloc_is_in_the_run_config_and_on_by_default():
    from distillbev.train.config import RunConfig

    assert RunConfig().tune_malloc is True
