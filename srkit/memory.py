"""Keep freed memory in the process instead of handing it back to the OS after every tensor.

By default glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and
unmaps it on free. A 640x360x64 float32 feature map is 59 MB, so on CPU every such tensor of every forward
pass is new memory that the kernel zero-fills page by page when it is first touched. Measured on CARN-M x2
(1280x720 output, 2 cores, scripts/bench_inference.py): that page faulting is about two thirds of the plain
forward's wall time. Turning mmap off for the heap and never trimming it lets freed tensors be reused; the
price is that the process keeps its peak memory until it exits (the allocator reuses it, the OS does not
get it back). jemalloc or tcmalloc via ``LD_PRELOAD`` do the same job outside Python.

Because it is process-wide and permanent, no library call turns it on unasked: ``Predictor`` /
``srkit.api.load`` do so only with ``retain_memory=True``. The command-line tools ask for it on a CPU fast
path (their ``--help`` says so); ``--plain`` leaves the allocator alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_state = {"on": False}


def retain_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse (process-wide, not undoable). Returns whether it took
    effect; False where the C library is not glibc (macOS, Windows, musl), which is harmless."""
    if _state["on"]:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; both must hold or freed big blocks still go back to the OS
    _state["on"] = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return _state["on"]


def freed_memory_retained() -> bool:
    return _state["on"]
