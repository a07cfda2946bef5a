"""File names that are not UTF-8 (copied from old FAT or Windows disks) are imported as text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from importer.testing import local_pod, snapshot

from .images import write_image
from .test_incremental import Spy
from .test_photos import outgoing, run, sha_id


def write_raw(folder: Path, name: bytes, data: bytes) -> Path:
    """A file whose name is the bytes ``name`` (Latin-1 here, not UTF-8)."""
    path = os.fsencode(folder) + b"/" + name
    with open(path, "wb") as out:
        out.write(data)
    return Path(os.fsdecode(path))


async def test_names_that_are_not_utf8_are_stored_escaped_and_kept_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "pictures"
    good = write_image(root / "good.jpg", 1)
    data = write_image(tmp_path / "source.jpg", 2).read_bytes()
    latin1 = write_raw(root, b"caf\xe9.jpg", data)  # "café.jpg" in Latin-1
    write_raw(root, b"caf\xe8.jpg", data)  # the same bytes as "cafè.jpg": a second path
    utf8 = write_raw(root, "café.jpg".encode(), write_image(tmp_path / "other.jpg", 3).read_bytes())
    spy = Spy(monkeypatch)
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, [root])
        assert result.skipped == []
        snap = await snapshot(pod)
        photos = {p["id"]: p for p in snap.of_type("Photo")}
        assert set(photos) == {sha_id(good), sha_id(latin1), sha_id(utf8)}
        photo = photos[sha_id(latin1)]
        assert photo["name"] == "caf\\xe8.jpg"  # found first: entries go by name
        paths = sorted(p["path"] for p in outgoing(snap, photo["id"], "path"))
        assert paths == [f"{root}/caf\\xe8.jpg", f"{root}/caf\\xe9.jpg"]
        (original,) = outgoing(snap, photo["id"], "file")
        (thumbnail,) = outgoing(snap, photo["id"], "thumbnail")
        assert original["filename"] == "caf\\xe8.jpg"
        assert thumbnail["filename"] == "caf\\xe8.thumbnail.jpg"
        assert photos[sha_id(utf8)]["name"] == "café.jpg"
        # The checkpoint knows these files: a re-run reads none of them again.
        spy.reset()
        again = await run(pod, tmp_path, [root])
        assert spy.hashed == [] and again.stats.created == 0
