"""A photo deleted or saved over while a run goes on costs that photo's upload, not the run."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from connectors.photos import _reader
from importer.pod.errors import PodError
from importer.testing import local_pod, snapshot

from .images import write_image
from .test_file_names import write_raw
from .test_incremental import Spy
from .test_photos import content, run, sha_id

DELETED = "file could not be read for upload: No such file or directory"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("delete", DELETED),
        ("rewrite", "file changed after it was read: its content no longer matches its sha256"),
    ],
)
async def test_a_photo_changed_after_it_was_read_is_skipped_and_the_others_land(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str, reason: str
) -> None:
    root = tmp_path / "pictures"
    paths = [write_image(root / f"{name}.jpg", seed) for seed, name in enumerate("abc", 1)]
    changed = paths[1]
    read_bytes = changed.read_bytes()
    real = _reader.examine

    def examine_then_change(candidate: Any, *args: Any) -> Any:
        outcome = real(candidate, *args)
        if candidate.path == changed:  # the user deletes it, or an editor saves over it
            if change == "delete":
                changed.unlink()
            else:
                write_image(changed, 99)
        return outcome

    monkeypatch.setattr(_reader, "examine", examine_then_change)
    ids = {path: sha_id(path) for path in paths}
    shas = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, [root])
        assert [(s.ref, s.reason) for s in result.skipped] == [(str(changed), reason)]
        snap = await snapshot(pod)
        assert {p["id"] for p in snap.of_type("Photo")} == set(ids.values())
        for path in (paths[0], paths[2]):
            assert await content(pod, shas[path]) == path.read_bytes()
        # The photo read before the change stays, its original without content.
        with pytest.raises(PodError):
            await pod.get_file(hashlib.sha256(read_bytes).hexdigest())
        monkeypatch.undo()
        again = await run(pod, tmp_path, [root])
        assert again.skipped == []
        photos = {p["id"] for p in (await snapshot(pod)).of_type("Photo")}
    if change == "rewrite":  # the new content is a new photo at the same path
        assert photos == {*ids.values(), sha_id(changed)}
    else:
        assert photos == set(ids.values())


async def stored(pod: Any, sha256: str) -> bool:
    try:
        return await pod.get_file(sha256) is not None
    except PodError:
        return False


def change_once_read(monkeypatch: pytest.MonkeyPatch, path: Path, change: Any) -> None:
    """Run ``change`` on ``path`` right after the reader has hashed it, before its upload."""
    real = _reader.examine

    def examine_then_change(candidate: Any, *args: Any) -> Any:
        outcome = real(candidate, *args)
        if candidate.path == path:
            change()
        return outcome

    monkeypatch.setattr(_reader, "examine", examine_then_change)


@pytest.mark.parametrize("back", ["moved back", "copied back", "saved over, then reverted"])
async def test_a_photo_back_as_it_was_gets_its_original_on_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, back: str
) -> None:
    root = tmp_path / "pictures"
    paths = [write_image(root / f"{name}.jpg", seed) for seed, name in enumerate("abc", 1)]
    changed, aside = paths[1], tmp_path / "aside.jpg"
    original = changed.read_bytes()
    if back == "saved over, then reverted":
        change_once_read(monkeypatch, changed, lambda: write_image(changed, 99))
    else:  # to another disk, or the trash
        change_once_read(monkeypatch, changed, lambda: changed.rename(aside))
    async with local_pod(tmp_path / "pod") as pod:
        assert len((await run(pod, tmp_path, [root])).skipped) == 1
        monkeypatch.undo()
        if back == "moved back":
            aside.rename(changed)  # its size and mtime as the checkpoint has them
        elif back == "copied back":
            shutil.copyfile(aside, changed)
        else:
            changed.write_bytes(original)
        spy = Spy(monkeypatch)
        assert (await run(pod, tmp_path, [root])).skipped == []
        assert spy.hashed == [changed]
        snap = await snapshot(pod)
        assert {p["id"] for p in snap.of_type("Photo")} == {sha_id(path) for path in paths}
        assert await content(pod, hashlib.sha256(original).hexdigest()) == original
        assert all([await stored(pod, f["sha256"]) for f in snap.of_type("File")])
        spy.reset()
        again = await run(pod, tmp_path, [root])  # the folder is unchanged now
        assert spy.hashed == [] and again.stats.created == 0


@pytest.mark.parametrize("found", ["in a copy", "restored later"])
async def test_a_deleted_photo_gets_its_original_when_its_bytes_are_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, found: str
) -> None:
    root = tmp_path / "pictures"
    paths = [write_image(root / f"{name}.jpg", seed) for seed, name in enumerate("abc", 1)]
    deleted, aside = paths[1], tmp_path / "backup.jpg"
    original = deleted.read_bytes()
    if found == "in a copy":  # read after the original, as a photo already known
        (root / "copy").mkdir()
        shutil.copyfile(deleted, root / "copy" / "b.jpg")
    change_once_read(monkeypatch, deleted, lambda: deleted.rename(aside))
    async with local_pod(tmp_path / "pod") as pod:
        assert len((await run(pod, tmp_path, [root])).skipped) == 1
        monkeypatch.undo()
        await run(pod, tmp_path, [root])
        if found == "restored later":
            assert not await stored(pod, hashlib.sha256(original).hexdigest())
            shutil.copyfile(aside, deleted)
            await run(pod, tmp_path, [root])
        assert await content(pod, hashlib.sha256(original).hexdigest()) == original
        snap = await snapshot(pod)
        assert all([await stored(pod, f["sha256"]) for f in snap.of_type("File")])


async def test_a_photo_saved_over_at_its_size_and_mtime_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tools that keep the file's date (``exiftool -P``) give the checkpoint nothing to see."""
    root = tmp_path / "pictures"
    paths = [write_image(root / f"{name}.jpg", seed) for seed, name in enumerate("abc", 1)]
    changed = paths[1]
    other = write_image(tmp_path / "other.jpg", 99).read_bytes()
    size = max(len(other), changed.stat().st_size)
    changed.write_bytes(changed.read_bytes().ljust(size, b"\0"))  # after the JPEG's end: ignored
    before = changed.stat()

    def save_over() -> None:
        changed.write_bytes(other.ljust(size, b"\0"))
        os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns))

    change_once_read(monkeypatch, changed, save_over)
    async with local_pod(tmp_path / "pod") as pod:
        assert len((await run(pod, tmp_path, [root])).skipped) == 1
        monkeypatch.undo()
        assert changed.stat().st_size == size and changed.stat().st_mtime_ns == before.st_mtime_ns
        assert (await run(pod, tmp_path, [root])).skipped == []
        assert await content(pod, hashlib.sha256(changed.read_bytes()).hexdigest()) == (
            changed.read_bytes()
        )
        assert sha_id(changed) in {p["id"] for p in (await snapshot(pod)).of_type("Photo")}


async def test_a_photo_with_a_name_that_is_not_utf8_is_named_as_text_when_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "pictures"
    write_image(root / "a.jpg", 1)
    data = write_image(tmp_path / "source.jpg", 2).read_bytes()
    latin1 = write_raw(root, b"caf\xe9.jpg", data)  # from an old FAT disk
    real = _reader.examine

    def examine_then_delete(candidate: Any, *args: Any) -> Any:
        outcome = real(candidate, *args)
        if candidate.path == latin1:
            latin1.unlink()
        return outcome

    monkeypatch.setattr(_reader, "examine", examine_then_delete)
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, [root])
        assert [s.ref for s in result.skipped] == [f"{root}/caf\\xe9.jpg"]
        assert result.run_id is not None
        recorded = await pod.get_item(result.run_id)
    assert recorded is not None
    assert json.loads(recorded["skipLog"]) == [
        {"ref": f"{root}/caf\\xe9.jpg", "reason": DELETED},
    ]
