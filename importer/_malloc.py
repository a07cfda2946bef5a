"""glibc's malloc, set for an import: two arenas, big buffers mapped on their own.

glibc gives threads that allocate at the same time arenas of their own (up
to eight per core) and keeps what they free for later; buffers below its
mmap threshold come from those arenas too, and the threshold rises to the
largest buffer freed so far.  An import hands a bulk's JSON, message bodies
and file contents between the event loop, the source's thread and the
store's worker threads, so freed memory ends up scattered over arenas that
never give it back.  With at most two arenas and buffers of 1 MiB and more
always mapped (and unmapped when freed), a 20,000-message import peaked at
~88 MiB instead of ~93 (2,000 messages: ~69.5 instead of ~71): see
docs/performance.md.

Only the command line sets this (it owns its process); a variable a user set
(``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``) wins.  Elsewhere (no glibc)
nothing happens.
"""

from __future__ import annotations

import os
import sys

__all__ = ["ARENA_MAX", "MMAP_THRESHOLD", "tune_malloc"]

ARENA_MAX = 2
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_malloc() -> bool:
    """Apply the settings above where glibc is the allocator; whether any was applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    applied = False
    if "MALLOC_ARENA_MAX" not in os.environ:
        applied |= bool(mallopt(_M_ARENA_MAX, ARENA_MAX))
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        applied |= bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return applied
