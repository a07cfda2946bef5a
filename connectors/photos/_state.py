"""The checkpoint of one root: what was imported, by relative path.

``{"v": 1, "files": {relative path: entry}}`` where an entry is
``[size, mtime_ns, perceptual hash, photo id]`` for an imported photo, or
``[size, mtime_ns]`` for a file that was skipped for good (not an image,
corrupt).  A file whose size and mtime match its entry is not read again.
The hashes and ids also seed the near-duplicate index of the next run.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Entry", "decode", "encode", "is_photo", "unchanged"]

_VERSION = 1

Entry = list[Any]


def decode(state: Any) -> dict[str, Entry]:
    """The file entries of a checkpoint; empty for none or an unknown shape."""
    if not isinstance(state, dict) or state.get("v") != _VERSION:
        return {}
    files = state.get("files")
    if not isinstance(files, dict):
        return {}
    return {
        str(path): entry
        for path, entry in files.items()
        if isinstance(entry, list)
        and len(entry) in (2, 4)
        and all(isinstance(n, int) for n in entry[:2])
    }


def encode(files: dict[str, Entry]) -> dict[str, Any]:
    return {"v": _VERSION, "files": files}


def unchanged(entry: Entry | None, size: int, mtime_ns: int) -> bool:
    return entry is not None and entry[0] == size and entry[1] == mtime_ns


def is_photo(entry: Entry) -> bool:
    return len(entry) == 4 and isinstance(entry[2], str) and isinstance(entry[3], str)
