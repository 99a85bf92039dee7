"""Keep glibc from hoarding freed message buffers: a fixed mmap threshold.

glibc serves a large allocation (128 KiB and more) with its own ``mmap`` and
gives it back to the system when freed -- but each time it frees one it also
raises that threshold to the freed size (up to 32 MiB).  After the first
5 MB message, every buffer up to 5 MB comes from the heap instead, and a heap
only shrinks from its top: a small object left above a freed message keeps
the memory counted in the process's RSS.  Measured on the benchmark's medium
corpus (20,000 messages, 4 of them ~20 MB), ``migrate`` -- a backup and a
restore in one process -- peaked at 99-108 MB with the moving threshold and at
86-89 MB with it fixed at 128 KiB (a backup alone: 87-96 MB, and 82 MB).
``restore`` and ``export`` alone gain nothing (they read the archive in
buffers of the message's size, or of one chunk) and would only pay for the
extra mmap calls.

Setting the threshold explicitly turns the adjustment off.  It is a setting of
the process, so only a command's entry point calls :func:`fix_mmap_threshold`
(``migrate``; ``backup`` would gain as much); elsewhere (other C libraries,
other systems) it does nothing.
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
DEFAULT_THRESHOLD = 128 << 10  # glibc's own starting value


def fix_mmap_threshold(nbytes: int = DEFAULT_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``nbytes``; True if the C library took it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: its C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, nbytes))
