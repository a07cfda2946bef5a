"""How uploaded content reaches the disk: blob writing, naming, worker-thread hops, limits."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from importer.pod.local import _files, create_app
from importer.pod.local._db import create_database
from importer.pod.local._errors import PodHTTPError
from importer.pod.local._files import BlobWriter, FileStore
from importer.pod.local._store import Store

MiB = 1 << 20
SIZES = [0, 1, 15, 16, 4095, 4096, 4097, 70_000, MiB - 1, MiB, MiB + 4097, 3 * MiB + 12_345]


def _content(size: int) -> tuple[bytes, str]:
    data = os.urandom(size)
    return data, hashlib.sha256(data).hexdigest()


def _pieces(data: bytes) -> Iterator[bytes]:
    """Uneven pieces, so writes straddle block and buffer boundaries."""
    start, step = 0, 1
    while start < len(data):
        yield data[start : start + step]
        start, step = start + step, step * 3 + 7


def _store(tmp_path: Path, content: bytes) -> tuple[FileStore, str, bytes, bytes]:
    """Write ``content`` through a BlobWriter; the store, sha256, key and nonce."""
    files = FileStore(tmp_path / "files")
    writer = files.writer(1 << 30)
    for piece in _pieces(content):
        writer.write(piece)
    sha = writer.finish()
    writer.place(sha)
    writer.commit(sha)
    writer.discard()
    return files, sha, writer.key, writer.nonce


def _read_back(files: FileStore, sha: str, key: bytes, nonce: bytes) -> bytes:
    return b"".join(files.open(sha, key, nonce))


def _leftovers(files: FileStore) -> list[Path]:
    return sorted(files.tmp_dir.iterdir()) if files.tmp_dir.exists() else []


@pytest.mark.parametrize("size", SIZES)
def test_blob_round_trip_at_block_and_buffer_edges(tmp_path: Path, size: int) -> None:
    data, expected = _content(size)
    files, sha, key, nonce = _store(tmp_path, data)
    assert sha == expected
    stored = files.path(sha)
    assert stored.stat().st_size == size + 16  # ciphertext and tag, no padding
    assert data[:64] not in stored.read_bytes() or size < 64  # encrypted at rest
    assert _read_back(files, sha, key, nonce) == data
    assert _leftovers(files) == []


def test_direct_io_refused_when_opening_falls_back_to_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open
    refused: list[int] = []

    def no_direct(path: Any, flags: int, mode: int = 0o777) -> int:
        if flags & _files._O_DIRECT:
            refused.append(flags)
            raise OSError(errno.EINVAL, "direct I/O not supported here")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", no_direct)
    data, _ = _content(2 * MiB + 5)
    files, sha, key, nonce = _store(tmp_path, data)
    assert refused or not _files._O_DIRECT
    assert _read_back(files, sha, key, nonce) == data


@pytest.mark.skipif(not _files._O_DIRECT, reason="no O_DIRECT on this system")
def test_direct_io_refused_when_writing_falls_back_to_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    refused: list[int] = []

    def no_direct(fd: int, data: Any) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & _files._O_DIRECT:
            refused.append(len(data))
            raise OSError(errno.EINVAL, "direct I/O refused for this write")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", no_direct)
    data, _ = _content(3 * MiB + 100)
    files, sha, key, nonce = _store(tmp_path, data)
    assert len(refused) == 1  # refused once, then written through the page cache
    assert _read_back(files, sha, key, nonce) == data


def test_a_name_taken_by_a_leftover_is_replaced_when_committed(tmp_path: Path) -> None:
    data, sha = _content(100_000)
    files = FileStore(tmp_path / "files")
    writer = files.writer(1 << 30)
    files.path(sha).write_bytes(b"a torn file left by a crash")
    writer.write(data)
    assert writer.finish() == sha
    writer.place(sha)  # the name is taken: nothing happens yet
    assert files.path(sha).read_bytes() == b"a torn file left by a crash"
    writer.commit(sha)
    writer.discard()
    assert _read_back(files, sha, writer.key, writer.nonce) == data
    assert _leftovers(files) == []


@pytest.mark.parametrize("winner", ["placed first", "placed second"])
def test_the_same_content_twice_at_once_keeps_the_committed_copy(
    tmp_path: Path, winner: str
) -> None:
    """Two uploads of one content: the store commits one; the file is always that one's."""
    data, sha = _content(50_000)
    files = FileStore(tmp_path / "files")
    first, second = files.writer(1 << 30), files.writer(1 << 30)
    for writer in (first, second):
        writer.write(data)
        assert writer.finish() == sha
        writer.place(sha)  # only the first gets the name
    committed, refused = (first, second) if winner == "placed first" else (second, first)
    committed.commit(sha)  # the database took this one; the other is told 409
    refused.discard()
    committed.discard()
    assert _read_back(files, sha, committed.key, committed.nonce) == data
    assert committed.key != refused.key
    assert _leftovers(files) == []


def test_too_large_content_is_refused_before_it_is_written(tmp_path: Path) -> None:
    files = FileStore(tmp_path / "files")
    writer = files.writer(10)
    writer.write(b"0123456789")
    with pytest.raises(_files.TooLarge):
        writer.write(b"x")
    writer.discard()
    assert _leftovers(files) == []


# -- the upload endpoint, in process ------------------------------------------------


class _Owner:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.owner = secrets.token_hex(32)
        self.key = secrets.token_hex(32)

    async def start(self) -> None:
        response = await self.http.post(
            "/v4/account", json={"ownerKey": self.owner, "databaseKey": self.key}
        )
        assert response.status_code == 200

    async def file_item(self, sha: str) -> None:
        body = {
            "auth": {"type": "ClientAuth", "databaseKey": self.key},
            "payload": {"type": "File", "sha256": sha},
        }
        response = await self.http.post(f"/v4/{self.owner}/create_item", json=body)
        assert response.status_code == 200, response.text

    async def upload(self, sha: str, content: Any, **headers: str) -> httpx.Response:
        url = f"/v4/{self.owner}/upload_file/{self.key}/{sha}"
        return await self.http.post(url, content=content, headers=headers)

    async def download(self, sha: str) -> httpx.Response:
        body = {"auth": {"type": "ClientAuth", "databaseKey": self.key}, "payload": {"sha256": sha}}
        return await self.http.post(f"/v4/{self.owner}/get_file", json=body)


async def _with_pod(tmp_path: Path, test: Callable[[_Owner], Any]) -> None:
    app = create_app(tmp_path)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://pod") as http:
            owner = _Owner(http)
            await owner.start()
            await test(owner)
    finally:
        app.state.close()


def _stored(tmp_path: Path) -> list[Path]:
    return sorted(p for p in tmp_path.rglob("files/**/*") if p.is_file())


def _leave_a_torn_file(data_dir: Path, sha: str) -> None:
    files_dir = next(data_dir.rglob("pod.db")).parent / "files"
    files_dir.mkdir(exist_ok=True)
    (files_dir / sha).write_bytes(b"half a file from before a crash")


def _count_hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(func, "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    return calls


async def test_a_small_upload_takes_one_worker_thread_hop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, sha = _content(300_000)

    async def test(pod: _Owner) -> None:
        await pod.file_item(sha)
        hops = _count_hops(monkeypatch)
        assert (await pod.upload(sha, data)).status_code == 200
        assert len(hops) == 1, hops
        assert (await pod.download(sha)).content == data

    await _with_pod(tmp_path, test)


async def test_a_large_upload_takes_a_hop_per_mib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, sha = _content(9 * MiB + 3)

    async def test(pod: _Owner) -> None:
        await pod.file_item(sha)
        hops = _count_hops(monkeypatch)

        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(data), MiB):
                yield data[start : start + MiB]

        response = await pod.upload(sha, pieces(), **{"Content-Length": str(len(data))})
        assert response.status_code == 200, response.text
        assert len(hops) <= 2 + 9, hops  # open, nine 1 MiB writes, seal and record
        assert (await pod.download(sha)).content == data

    await _with_pod(tmp_path, test)


async def test_a_body_longer_than_its_content_length_is_refused(tmp_path: Path) -> None:
    data, sha = _content(5000)

    async def test(pod: _Owner) -> None:
        await pod.file_item(sha)
        response = await pod.upload(sha, data + b"more", **{"Content-Length": str(len(data))})
        assert response.status_code == 400
        assert "Content-Length" in response.json()["error"]
        assert _stored(tmp_path) == []
        assert (await pod.download(sha)).status_code == 404

    await _with_pod(tmp_path, test)


@pytest.mark.parametrize("size", [20_000, 6 * MiB])
async def test_refused_uploads_leave_no_file_behind(tmp_path: Path, size: int) -> None:
    data, sha = _content(size)

    async def test(pod: _Owner) -> None:
        assert (await pod.upload(sha, data)).status_code == 404  # no File item
        await pod.file_item(sha)
        tampered = data[:-1] + bytes([data[-1] ^ 0xFF])  # never equal to data
        assert (await pod.upload(sha, tampered)).status_code == 400  # wrong bytes
        assert _stored(tmp_path) == []
        assert (await pod.upload(sha, data)).status_code == 200
        assert (await pod.upload(sha, data)).status_code == 409
        assert [p.name for p in _stored(tmp_path)] == [sha]
        assert (await pod.download(sha)).content == data

    await _with_pod(tmp_path, test)


async def test_an_upload_replaces_a_torn_leftover_of_its_content(tmp_path: Path) -> None:
    data, sha = _content(40_000)

    async def test(pod: _Owner) -> None:
        await pod.file_item(sha)
        _leave_a_torn_file(tmp_path, sha)
        assert (await pod.upload(sha, data)).status_code == 200
        assert (await pod.download(sha)).content == data

    await _with_pod(tmp_path, test)


# -- group commit ---------------------------------------------------------------------


class _Counted:
    """Counts calls of a store's transactions and directory flushes."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.transactions = 0
        self.flushes = 0
        transaction, flush = store._transaction, store.files.flush_names

        def counted_transaction() -> Any:
            self.transactions += 1
            return transaction()

        def counted_flush() -> None:
            self.flushes += 1
            flush()

        monkeypatch.setattr(store, "_transaction", counted_transaction)
        monkeypatch.setattr(store.files, "flush_names", counted_flush)


def _open_store(tmp_path: Path) -> Store:
    key = secrets.token_hex(32)
    create_database(tmp_path / "owner", key)
    return Store.open(tmp_path / "owner", key)


def _announce(store: Store, *contents: bytes) -> None:
    items = [{"type": "File", "sha256": hashlib.sha256(c).hexdigest()} for c in contents]
    store.bulk({"createItems": items})


def _sealed(store: Store, content: bytes) -> tuple[str, BlobWriter]:
    writer = store.files.writer(1 << 30)
    writer.write(content)
    sha = writer.finish()
    writer.place(sha)
    return sha, writer


def _store_together(store: Store, uploads: list[tuple[str, BlobWriter]]) -> list[Any]:
    """``store_blob`` for each upload in a thread of its own, all queued before any runs.

    The test holds the store's lock until every upload waits for it, so the
    first to take it finds them all queued.  Each upload's outcome: None or
    the exception it raised.
    """
    outcomes: list[Any] = [None] * len(uploads)

    def store_one(index: int) -> None:
        sha, writer = uploads[index]
        try:
            store.store_blob(sha, writer)
        except Exception as exc:
            outcomes[index] = exc
        finally:
            writer.discard()

    threads = [threading.Thread(target=store_one, args=(i,)) for i in range(len(uploads))]
    with store._lock:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(store._queued) < len(uploads):
            assert time.monotonic() < deadline, "the uploads never queued"
            time.sleep(0.001)
    for thread in threads:
        thread.join(10)
    return outcomes


def _readable(store: Store, content: bytes) -> bool:
    sha = hashlib.sha256(content).hexdigest()
    found = store.blob_key(sha)
    if found is None:
        return False
    key, nonce, _ = found
    return b"".join(store.files.open(sha, key, nonce)) == content


def test_uploads_that_finish_together_share_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _open_store(tmp_path)
    try:
        first, second, third, unannounced = (os.urandom(5000 + i) for i in range(4))
        _announce(store, first, second, third)
        counted = _Counted(store, monkeypatch)
        uploads = [_sealed(store, c) for c in (first, second, unannounced, third)]
        uploads.append(_sealed(store, first))  # the same content again: the name is taken
        outcomes = _store_together(store, uploads)
        assert outcomes[:2] == [None, None] and outcomes[3] is None
        assert isinstance(outcomes[2], PodHTTPError) and outcomes[2].status == 404
        assert isinstance(outcomes[4], PodHTTPError) and outcomes[4].status == 409
        assert (counted.transactions, counted.flushes) == (1, 1)
        assert all(_readable(store, c) for c in (first, second, third))
        assert not _readable(store, unannounced)
        files = sorted(p.name for p in store.files.root.iterdir() if p.is_file())
        assert hashlib.sha256(unannounced).hexdigest() in files  # placed, then refused: a leftover
        assert _leftovers(store.files) == []
    finally:
        store.close()


def test_a_failing_upload_in_a_group_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _open_store(tmp_path)
    try:
        contents = [os.urandom(3000 + i) for i in range(3)]
        _announce(store, *contents)
        counted = _Counted(store, monkeypatch)
        uploads = [_sealed(store, c) for c in contents]
        broken = uploads[1][1]

        def disk_error(sha256: str) -> None:
            raise OSError(errno.EIO, "I/O error")

        monkeypatch.setattr(broken, "commit", disk_error)
        outcomes = _store_together(store, uploads)
        assert outcomes[0] is None and outcomes[2] is None
        assert isinstance(outcomes[1], OSError)
        assert counted.transactions == 1 + 3  # the group's, rolled back; then one each
        assert _readable(store, contents[0]) and _readable(store, contents[2])
        assert not _readable(store, contents[1])
    finally:
        store.close()
