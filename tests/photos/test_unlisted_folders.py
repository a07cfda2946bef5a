"""A folder that cannot be listed keeps what the checkpoint knows below it, and says so."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from importer.testing import local_pod

from .images import write_image
from .test_incremental import Spy, folder
from .test_photos import item, run


def fail_listing(monkeypatch: pytest.MonkeyPatch, broken: Path) -> None:
    """``os.scandir`` of ``broken`` fails like a network share that hiccups."""
    real = os.scandir

    def scandir(path: Any = ".") -> Any:
        if Path(path) == broken:
            raise OSError(5, "Input/output error", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


async def checkpoint(pod: Any, account_id: str, root: Path) -> dict[str, Any]:
    account = await item(pod, account_id)
    files: dict[str, Any] = json.loads(account["importerState"])["photos"][str(root)]["files"]
    return files


async def test_a_root_that_cannot_be_listed_keeps_its_checkpoint_and_the_others_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = folder(tmp_path, 4)
    other = tmp_path / "other"
    write_image(other / "o1.jpg", 50)
    async with local_pod(tmp_path / "pod") as pod:
        first = await run(pod, tmp_path, [root, other])
        before = await checkpoint(pod, first.account_id, root)
        write_image(other / "o2.jpg", 51)
        with monkeypatch.context() as patch:
            fail_listing(patch, root)
            broken = await run(pod, tmp_path, [root, other])
        assert [(s.ref, s.reason) for s in broken.skipped] == [
            (str(root), "root folder could not be listed: Input/output error; nothing read")
        ]
        assert await checkpoint(pod, first.account_id, root) == before
        assert sorted(await checkpoint(pod, first.account_id, other)) == ["o1.jpg", "o2.jpg"]
        run_item = await item(pod, broken.run_id)
        assert run_item["status"] == "done" and run_item["skippedCount"] == 1
        spy = Spy(monkeypatch)
        again = await run(pod, tmp_path, [root, other])  # the share is back
        assert spy.hashed == [] and again.stats.created == 0


async def test_a_folder_that_cannot_be_listed_keeps_its_files_and_the_rest_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = folder(tmp_path, 6)  # d0/p00 d0/p03 d1/p01 d1/p04 d2/p02 d2/p05
    async with local_pod(tmp_path / "pod") as pod:
        first = await run(pod, tmp_path, [root])
        before = await checkpoint(pod, first.account_id, root)
        new = write_image(root / "d2" / "p06.jpg", 106)
        with monkeypatch.context() as patch:
            fail_listing(patch, root / "d1")
            broken = await run(pod, tmp_path, [root])
        assert [(s.ref, s.reason) for s in broken.skipped] == [
            (str(root / "d1"), "folder could not be listed: Input/output error; its files not read")
        ]
        after = await checkpoint(pod, first.account_id, root)
        assert after == {**before, "d2/p06.jpg": after["d2/p06.jpg"]}
        assert after["d2/p06.jpg"][1] == new.stat().st_mtime_ns
        spy = Spy(monkeypatch)
        again = await run(pod, tmp_path, [root])
        assert spy.hashed == [] and again.stats.created == 0


async def test_an_empty_root_that_held_photos_keeps_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = folder(tmp_path, 4)
    away = tmp_path / "unplugged"
    async with local_pod(tmp_path / "pod") as pod:
        first = await run(pod, tmp_path, [root])
        before = await checkpoint(pod, first.account_id, root)
        root.rename(away)
        root.mkdir()  # the bare mount point of a disk not plugged in
        unplugged = await run(pod, tmp_path, [root])
        assert [(s.ref, s.reason) for s in unplugged.skipped] == [
            (str(root), "root folder is empty (a disk not mounted?); nothing read")
        ]
        assert await checkpoint(pod, first.account_id, root) == before
        root.rmdir()
        away.rename(root)
        spy = Spy(monkeypatch)
        again = await run(pod, tmp_path, [root])
        assert spy.hashed == [] and again.stats.created == 0 and again.skipped == []


async def test_an_empty_root_never_imported_is_no_skip(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, [root])
    assert result.skipped == [] and result.stats.created == 0
