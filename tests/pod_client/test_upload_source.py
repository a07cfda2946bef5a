"""What the client sends for a path: a small file whole in one read, a big one in chunks."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import anyio.to_thread
import pytest

from importer.pod import FileChangedError, PodNotFound, _upload
from importer.pod._upload import CHUNK_SIZE, WHOLE_SIZE, prepare_upload

from .conftest import PodFactory


async def _body(source: _upload.UploadSource) -> bytes:
    body = source.body()
    if isinstance(body, bytes):
        return body
    return b"".join([chunk async for chunk in body])


def _hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(func, "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    return calls


@pytest.mark.parametrize("size", [0, 1, 100_000, WHOLE_SIZE])
async def test_a_file_of_at_most_one_chunk_is_read_whole_in_one_hop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    data = os.urandom(size)
    path = tmp_path / "small.bin"
    path.write_bytes(data)
    hops = _hops(monkeypatch)
    async with prepare_upload(path, None) as source:
        assert hops == ["_read_small"]
        assert source.sha256 == hashlib.sha256(data).hexdigest()
        assert source.size == size and source.replayable
        assert source.body() == data  # bytes: sent (and resent on a retry) as they are


async def test_a_big_file_is_streamed_in_chunks_and_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(WHOLE_SIZE + CHUNK_SIZE + 12_345)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    opened: list[Any] = []
    real_open = Path.open

    def tracking_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, *args, **kwargs)
        opened.append(handle)
        return handle

    monkeypatch.setattr(Path, "open", tracking_open)
    async with prepare_upload(path, sha) as source:
        assert source.size == len(data) and source.replayable
        for _ in range(2):  # a retry reads the file again from the start
            body = source.body()
            assert not isinstance(body, bytes)
            chunks = [chunk async for chunk in body]
            full = (WHOLE_SIZE + CHUNK_SIZE) // CHUNK_SIZE
            assert [len(c) for c in chunks] == [CHUNK_SIZE] * full + [12_345]
            assert b"".join(chunks) == data
        # Abandoned after the first chunk: the file is closed all the same.
        partial = source.body()
        assert isinstance(partial, AsyncIterator)
        assert len(await partial.__anext__()) == CHUNK_SIZE
        await partial.aclose()  # type: ignore[attr-defined]
    assert opened and all(handle.closed for handle in opened)


async def test_a_big_file_without_a_hash_is_hashed_first(tmp_path: Path) -> None:
    data = os.urandom(WHOLE_SIZE + 1)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    async with prepare_upload(path, None) as source:
        assert source.sha256 == hashlib.sha256(data).hexdigest()
        assert await _body(source) == data


@pytest.mark.parametrize("size", [70_000, WHOLE_SIZE + 70_000])
async def test_paths_round_trip_through_the_pod(pod: PodFactory, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    async with pod() as client:
        await client.create_account()
        await client.create_item({"type": "File", "sha256": sha})
        assert await client.upload_file(path, sha) is True
        assert await client.upload_file(path) is False  # stored already
        assert await client.get_file(sha) == data


@pytest.mark.parametrize("fault", ["unreadable", "cut short"])
async def test_a_file_failing_while_it_is_sent_raises_at_once(
    pod: PodFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """The file's fault, not the Pod's: raised as it is, never answered as a 500 and retried."""
    data = os.urandom(WHOLE_SIZE + 2 * CHUNK_SIZE)
    path = tmp_path / "photo.tif"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    real = _upload._next_chunk
    reads = 0

    def failing(handle: BinaryIO) -> tuple[bytes, bool]:
        nonlocal reads
        reads += 1
        if reads == 2:
            if fault == "unreadable":
                raise OSError(errno.EIO, "Input/output error")
            path.write_bytes(data[:CHUNK_SIZE])  # saved over in place, shorter
        return real(handle)

    monkeypatch.setattr(_upload, "_next_chunk", failing)
    expected = FileChangedError if fault == "cut short" else OSError
    async with pod() as client:
        await client.create_account()
        await client.create_item({"type": "File", "sha256": sha})
        with pytest.raises(expected):
            await client.upload_file(path, sha)
        assert client.retry_count == 0 and reads == 2
        with pytest.raises(PodNotFound):
            await client.get_file(sha)
        monkeypatch.undo()
        path.write_bytes(data)
        assert await client.upload_file(path, sha) is True  # the Pod is none the worse
        assert await client.get_file(sha) == data
