"""The command line's malloc settings take effect in its process (glibc only)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the settings are glibc's (mallopt)"
)

# Prints the arenas glibc made for six threads that each allocate; whether a
# 6 MiB block was mapped on its own after a 16 MiB one was freed (which,
# untouched, raises glibc's dynamic mmap threshold to 16 MiB); whether a
# 3 MiB block was; and whether its pages were kept once it was freed.
_PROBE = r"""
import ctypes, re, sys, tempfile, threading
if sys.argv[1] == "cli":
    from importer.cli import main
    try:
        main(["--version"])
    except SystemExit:
        pass
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc.mallinfo2.restype = Info
started, done = threading.Barrier(7), threading.Event()
blocks = []

def allocate():
    started.wait()
    blocks.append(libc.malloc(100_000))
    done.wait()

threads = [threading.Thread(target=allocate) for _ in range(6)]
for thread in threads:
    thread.start()
started.wait()
while len(blocks) < 6:
    pass
with tempfile.NamedTemporaryFile(suffix=".xml") as out:
    stream = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    arenas = len(re.findall(rb"<heap nr=", open(out.name, "rb").read()))
done.set()
for thread in threads:
    thread.join()
libc.free(libc.malloc(16 << 20))
before = libc.mallinfo2().hblkhd
block = libc.malloc(6 << 20)
mapped = libc.mallinfo2().hblkhd - before >= 6 << 20
libc.free(block)
before = libc.mallinfo2().hblkhd
block = libc.malloc(3 << 20)
small_mapped = libc.mallinfo2().hblkhd - before >= 3 << 20
heap = libc.mallinfo2().arena
libc.free(block)
kept = not small_mapped and libc.mallinfo2().arena >= heap
print("ARENAS", arenas, "MAPPED", mapped, small_mapped, "KEPT", kept)
"""


def _probe(mode: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
        cwd=Path(__file__).parent,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_the_command_line_caps_arenas_and_maps_big_buffers_on_their_own() -> None:
    assert _probe("cli") == "ARENAS 2 MAPPED True False KEPT True"
    # Without it, six threads get arenas of their own and the 6 MiB block
    # comes from an arena (what the probe checks is glibc's, not a stand-in).
    untouched = _probe("none")
    assert untouched.endswith("MAPPED False False KEPT True"), untouched
    assert int(untouched.split()[1]) > 2, untouched


def test_a_users_own_malloc_variables_win() -> None:
    mine = {"MALLOC_ARENA_MAX": "4", "MALLOC_MMAP_THRESHOLD_": "33554432"}
    assert _probe("cli", **mine) == "ARENAS 4 MAPPED False False KEPT True"
    # A trim threshold below the freed block gives its pages back at once.
    assert _probe("cli", MALLOC_TRIM_THRESHOLD_="131072").endswith("KEPT False")
