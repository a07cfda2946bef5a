"""glibc's malloc, set for an import: two arenas, big buffers mapped on their own.

glibc gives threads that allocate at the same time arenas of their own (up
to eight per core) and keeps what they free for later; buffers below its
mmap threshold come from those arenas too, and the threshold rises to the
largest buffer freed so far.  An import hands a bulk's JSON, message bodies
and file contents between the event loop, the source's thread and the
store's worker threads, so freed memory ends up scattered over arenas that
never give it back.  With at most two arenas and buffers above 4 MiB always
mapped (and unmapped when freed), a 20,000-message import peaks at ~87 MiB
instead of ~93 (2,000 messages: ~70 instead of ~71): see docs/performance.md.

Buffers up to 4 MiB (a photo read whole, a file read for its upload, a
bulk's JSON) come from the arenas, and up to 16 MiB free at the top of a
heap is kept (``M_TRIM_THRESHOLD``), so the next buffer reuses those pages.
Mapping every buffer of 1 MiB and more, as before, cost a photo import ~2
CPU s of page faults: each fresh mapping is zeroed by the kernel page by
page as it is first written (~850,000 faults for 2,000 photos; ~90,000 now).

Only the command line sets this (it owns its process); a variable a user set
(``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``)
wins.  Elsewhere (no glibc) nothing happens.
"""

from __future__ import annotations

import os
import sys

__all__ = ["ARENA_MAX", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_malloc"]

ARENA_MAX = 2
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 16 << 20
_M_TRIM_THRESHOLD = -1
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
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        applied |= bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return applied
