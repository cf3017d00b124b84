"""The allocator setting the ``hybrid`` command makes: freed blocks stay in the heap."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hybrid import allocator

# A child process allocates, frees and re-allocates a 64 MiB buffer, touching every page, and
# prints the minor page faults of the second allocation: with glibc's defaults the freed block
# went back to the kernel and every page faults in again; kept, none does.
CHILD = """
import ctypes, resource, sys
from hybrid.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
n = 64 << 20
p = libc.malloc(n); ctypes.memset(p, 1, n); libc.free(ctypes.c_void_p(p))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
p = libc.malloc(n); ctypes.memset(p, 1, n)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_blocks_are_reused_without_faulting_their_pages_in_again():
    pages = (64 << 20) // 4096
    assert _faults("system") > pages // 2  # the default: fresh pages, each faulted in
    assert _faults("keep") < pages // 100


def test_system_malloc_is_left_alone_when_asked(monkeypatch):
    monkeypatch.setenv("HYBRID_MALLOC", "system")
    assert allocator.keep_freed_memory() is False
