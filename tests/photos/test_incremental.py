"""Re-runs: unchanged folders are decided from size and mtime alone; changes become new photos."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from connectors.photos import _reader, connector
from importer import FilePayload, derive_id
from importer.engine import EngineSettings
from importer.testing import check_connector, local_pod, run_connector, snapshot

from .images import write_image
from .test_photos import SMALL, item, run, sha_id


class Spy:
    """Counts files read and hashed (``_reader._read``) and decoded (``Image.open``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hashed: list[Path] = []
        self.opened = 0
        hash_file = _reader._read
        open_image = Image.open

        def counting_hash(path: Path, size: int) -> tuple[FilePayload, bytes | None]:
            self.hashed.append(path)
            return hash_file(path, size)

        def counting_open(*args: Any, **kwargs: Any) -> Any:
            self.opened += 1
            return open_image(*args, **kwargs)

        monkeypatch.setattr(_reader, "_read", counting_hash)
        monkeypatch.setattr(Image, "open", counting_open)

    def reset(self) -> None:
        self.hashed.clear()
        self.opened = 0


def folder(tmp_path: Path, count: int) -> Path:
    root = tmp_path / "pictures"
    for i in range(count):
        write_image(root / f"d{i % 3}" / f"p{i:02}.jpg", 100 + i, (96, 64))
    return root


async def test_rerun_of_an_unchanged_folder_reads_nothing_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = folder(tmp_path, 12)
    spy = Spy(monkeypatch)
    async with local_pod(tmp_path / "pod") as pod:
        first = await run(pod, tmp_path, [root])
        assert len(spy.hashed) == 12 and spy.opened == 12
        assert first.stats.created == 12 * 4  # Photo, original, thumbnail, PhotoPath
        before = await snapshot(pod)
        spy.reset()
        again = await run(pod, tmp_path, [root])
        assert spy.hashed == [] and spy.opened == 0
        assert again.stats.created == 0 and again.stats.edges_created == 0
        assert again.stats.updated == 0
        assert (await snapshot(pod)).comparable() == before.comparable()


async def test_checkpoint_per_root_holds_size_mtime_hash_and_id(tmp_path: Path) -> None:
    root = folder(tmp_path, 4)
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, [root])
        account = await item(pod, result.account_id)
        state = json.loads(account["importerState"])["photos"][str(root)]
        assert state["v"] == 1
        assert sorted(state["files"]) == ["d0/p00.jpg", "d0/p03.jpg", "d1/p01.jpg", "d2/p02.jpg"]
        size, mtime_ns, phash, photo_id = state["files"]["d1/p01.jpg"]
        stat = (root / "d1" / "p01.jpg").stat()
        assert (size, mtime_ns) == (stat.st_size, stat.st_mtime_ns)
        assert photo_id == sha_id(root / "d1" / "p01.jpg")
        assert (await item(pod, photo_id))["perceptualHash"] == phash


async def test_a_modified_file_becomes_a_new_photo_at_the_same_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = folder(tmp_path, 6)
    target = root / "d2" / "p05.jpg"
    async with local_pod(tmp_path / "pod") as pod:
        await run(pod, tmp_path, [root])
        old_id = sha_id(target)
        write_image(target, 999, (96, 64))
        os.utime(target, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
        spy = Spy(monkeypatch)
        result = await run(pod, tmp_path, [root])
        assert spy.hashed == [target]
        assert result.stats.created == 3  # new Photo and its two Files; the PhotoPath exists
        snap = await snapshot(pod)
        assert len(snap.of_type("Photo")) == 7
        new_id = sha_id(target)
        assert new_id != old_id and old_id in snap.items
        path_id = derive_id("PhotoPath", str(target))
        assert (old_id, "path", path_id) in snap.edges
        assert (new_id, "path", path_id) in snap.edges


async def test_only_the_size_or_mtime_changing_rereads_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = folder(tmp_path, 3)
    async with local_pod(tmp_path / "pod") as pod:
        await run(pod, tmp_path, [root])
        touched = root / "d0" / "p00.jpg"
        os.utime(touched, ns=(1, 1))  # same bytes, new mtime: read again, nothing new
        spy = Spy(monkeypatch)
        result = await run(pod, tmp_path, [root])
        assert spy.hashed == [touched] and spy.opened == 0  # known by its hash: not decoded
        assert result.stats.created == 0 and result.stats.edges_created == 0
        spy.reset()
        await run(pod, tmp_path, [root])
        assert spy.hashed == []


async def test_deleted_files_leave_the_checkpoint_not_the_pod(tmp_path: Path) -> None:
    root = folder(tmp_path, 3)
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, [root])
        (root / "d1" / "p01.jpg").unlink()
        await run(pod, tmp_path, [root])
        account = await item(pod, result.account_id)
        files = json.loads(account["importerState"])["photos"][str(root)]["files"]
        assert sorted(files) == ["d0/p00.jpg", "d2/p02.jpg"]
        assert len((await snapshot(pod)).of_type("Photo")) == 3


async def test_limit_imports_the_first_files_and_the_next_run_the_rest(tmp_path: Path) -> None:
    root = folder(tmp_path, 7)
    async with local_pod(tmp_path / "pod") as pod:
        options = {"roots": [str(root)]}
        first = await run_connector(
            connector, options, client=pod, data_dir=tmp_path, settings=SMALL, limit=3
        )
        assert first.error is None
        names = sorted(p["name"] for p in (await snapshot(pod)).of_type("Photo"))
        assert names == ["p00.jpg", "p03.jpg", "p06.jpg"]  # d0 comes first
        await run(pod, tmp_path, [root])
        assert len((await snapshot(pod)).of_type("Photo")) == 7


async def test_full_refresh_reads_everything_and_duplicates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = folder(tmp_path, 4)
    async with local_pod(tmp_path / "pod") as pod:
        await run(pod, tmp_path, [root])
        before = await snapshot(pod)
        spy = Spy(monkeypatch)
        again = await run_connector(
            connector,
            {"roots": [str(root)]},
            client=pod,
            data_dir=tmp_path,
            settings=SMALL,
            full_refresh=True,
        )
        assert len(spy.hashed) == 4
        assert again.stats.created == 0 and again.stats.edges_created == 0
        assert (await snapshot(pod)).comparable() == before.comparable()


async def test_conformance(tmp_path: Path) -> None:
    root = tmp_path / "pictures"
    for i in range(9):
        write_image(root / f"p{i}.jpg", 200 + i, (120, 90))
    copy = root / "sub" / "p0-copy.jpg"
    copy.parent.mkdir()
    copy.write_bytes((root / "p0.jpg").read_bytes())
    Image.open(root / "p1.jpg").resize((60, 45)).save(root / "sub" / "p1-small.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    await check_connector(
        connector,
        {"roots": [str(root)]},
        tmp_path / "conformance",
        settings=EngineSettings(batch_records=12, max_in_flight=2),
    )


async def test_a_missing_root_is_skipped_and_no_root_at_all_fails(tmp_path: Path) -> None:
    root = folder(tmp_path, 2)
    missing = tmp_path / "unplugged"
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, [missing, root])
        assert [(s.ref, s.reason.split(" (")[0]) for s in result.skipped] == [
            (str(missing), "root folder not found")
        ]
        assert len((await snapshot(pod)).of_type("Photo")) == 2
        failed = await run_connector(
            connector, {"roots": [str(missing)]}, client=pod, data_dir=tmp_path
        )
        assert failed.status == "failed" and "no photo folder" in str(failed.error)
