"""The process heap of a long-running reconstruction service: keeping its resident size level.

A reconstruction allocates hundreds of MB (point arrays, grids, meshes, messages) in several threads and
frees them when it ends. With glibc's defaults much of that stays resident: each thread's arena keeps
what it freed, and after large blocks are freed glibc raises its mmap threshold, so the next large
arrays are carved from those arenas, where they fragment them. Repeated requests then ratchet the
resident size up. On other C libraries these functions do nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util

# mallopt() parameters (malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Blocks at least this large get their own mapping, returned to the system when freed. A fixed value
# also stops glibc from raising the threshold as large blocks come and go. Not lower: the optimisation's
# per-step tensors (a few to tens of MB) would then be mapped and zero-filled afresh on every step, which
# doubled its time at 1 MiB.
MMAP_THRESHOLD_BYTES = 256 << 20
# Heaps shared by the threads; glibc's default is eight per core, each keeping its own free memory.
ARENAS = 2


def _load_glibc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _load_glibc()


def keep_heap_compact() -> None:
    """Set the heap up for a long-running service; call once at start-up, before worker threads exist
    (threads already running keep their arenas)."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        _LIBC.mallopt(_M_ARENA_MAX, ARENAS)


def release_freed_memory() -> None:
    """Hand the heap memory freed so far back to the system (glibc's malloc_trim): call after a job."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
