"""Keep freed memory for reuse: what a CPU training process asks of glibc's allocator.

A training step frees and re-allocates megabyte tensors thousands of times. With glibc's
defaults, a block above the mmap threshold (128 KiB, rising only slowly) goes back to the kernel
when freed and comes back as fresh pages, each faulted in again: on a reaction-diffusion step at
batch 64 that is a third of the step's time, as system time (``scripts/bench_train.py``; NOTES,
"Sessions 8–9 — the training step against the reference code itself"). Setting
``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to 1 GiB keeps such blocks in the heap for the
next step. The price: the process holds on to its
peak heap until it exits, which a training process does anyway.

Set by the ``hybrid`` command (not on import: a library must not change its host), unless
``HYBRID_MALLOC=system``. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEEP = 1 << 30  # bytes: blocks up to 1 GiB stay in the heap, and up to 1 GiB of it is kept


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks up to :data:`KEEP` bytes; ``True`` when it took effect."""
    if os.environ.get("HYBRID_MALLOC", "").lower() == "system":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP))
