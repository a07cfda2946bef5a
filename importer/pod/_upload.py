"""Turn what a caller wants to upload into a hashed, streamable request body.

The upload URL needs the sha256 before the first byte is sent, so content
without a known hash is hashed first: bytes in one go, a path by reading it
in chunks (in a worker thread), and an async stream by spooling it to a
temporary file while hashing.  Bytes and files can be sent again on a retry;
a caller's async stream with a given hash is sent as-is, once.

Files are read in worker threads a chunk per hop, opening with the first
chunk and closing with the last; a file of at most one chunk is read whole
(with its hash, if needed) in a single hop and then sent like bytes.  A file
streamed in chunks is sent up to its announced size; one that ends before it
was cut short meanwhile: :class:`FileChangedError` stops the body at once,
before the HTTP layer sees a body of the wrong length.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio

__all__ = [
    "CHUNK_SIZE",
    "WHOLE_SIZE",
    "FileChangedError",
    "UploadContent",
    "UploadSource",
    "check_sha256",
    "hash_bytes",
    "hash_file",
    "prepare_upload",
]

WHOLE_SIZE = 4 * 1024 * 1024
"""A file up to this size is read in one worker-thread hop and sent as one body."""
CHUNK_SIZE = 1024 * 1024
"""A bigger file is read and sent in chunks of this size: memory stays small."""
_HASH_IN_THREAD_ABOVE = 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")

UploadContent = bytes | Path | AsyncIterable[bytes]
Body = bytes | AsyncIterator[bytes]


def check_sha256(value: str) -> str:
    """The lower-case hex digest, or ``ValueError`` if it isn't one."""
    lowered = value.lower()
    if not _SHA256.fullmatch(lowered):
        raise ValueError("sha256 must be 64 hex characters")
    return lowered


class FileChangedError(OSError):
    """A file got shorter while it was being sent: what was sent is not one version of it."""


@dataclass(frozen=True, slots=True)
class UploadSource:
    """A body ready to send: its digest, its size if known, and a fresh-body factory."""

    sha256: str
    size: int | None
    replayable: bool
    body: Callable[[], Body]


def hash_file(path: Path) -> str:
    """The sha256 of a file, read in chunks (hex)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def hash_bytes(data: bytes) -> str:
    """The sha256 of ``data`` (hex)."""
    return hashlib.sha256(data).hexdigest()


def _read_small(path: Path, sha256: str | None) -> tuple[bytes | None, int, str | None]:
    """The file's size and, if it is at most ``WHOLE_SIZE``, its content and sha256.

    ``sha256`` is the caller's, returned as is; without one the content is hashed.
    """
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size <= WHOLE_SIZE:
            data = handle.read(size + 1)  # sized to the file: a bigger buffer costs page faults
            if len(data) <= size:
                return data, len(data), sha256 if sha256 is not None else hash_bytes(data)
            size = os.fstat(handle.fileno()).st_size  # it grew: send it as a file after all
    return None, size, sha256


def _next_chunk(handle: BinaryIO) -> tuple[bytes, bool]:
    """Up to ``CHUNK_SIZE`` bytes, and whether the file ended (it is closed then).

    A buffered reader returns fewer bytes than asked only at the end of a file.
    """
    chunk = handle.read(CHUNK_SIZE)
    ended = len(chunk) < CHUNK_SIZE
    if ended:
        handle.close()
    return chunk, ended


def _open_at_first_chunk(path: Path) -> tuple[BinaryIO, bytes, bool]:
    handle = path.open("rb")
    try:
        return (handle, *_next_chunk(handle))
    except BaseException:
        handle.close()
        raise


async def _read_file(path: Path, size: int) -> AsyncIterator[bytes]:
    """The file's first ``size`` bytes; :class:`FileChangedError` if it has fewer.

    Bytes past ``size`` (appended since) are not sent: the Pod checks what
    was, against the sha256.
    """
    handle, chunk, ended = await anyio.to_thread.run_sync(_open_at_first_chunk, path)
    sent = 0
    try:
        while True:
            if sent + len(chunk) >= size:
                chunk, ended = chunk[: size - sent], True
            sent += len(chunk)
            if ended and sent < size:
                raise FileChangedError(
                    f"file changed while it was being sent: it no longer has {size} bytes"
                )
            if chunk:
                yield chunk
            if ended:
                return
            chunk, ended = await anyio.to_thread.run_sync(_next_chunk, handle)
    finally:
        if not handle.closed:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(handle.close)


async def _spool(stream: AsyncIterable[bytes], path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    async with await anyio.open_file(path, "wb") as handle:
        async for chunk in stream:
            digest.update(chunk)
            size += len(chunk)
            await handle.write(chunk)
    return digest.hexdigest(), size


def _file_source(path: Path, sha256: str, size: int) -> UploadSource:
    return UploadSource(sha256, size, True, lambda: _read_file(path, size))


@asynccontextmanager
async def prepare_upload(content: UploadContent, sha256: str | None) -> AsyncIterator[UploadSource]:
    """Yield an :class:`UploadSource` for ``content``; temporary files go on exit."""
    expected = check_sha256(sha256) if sha256 is not None else None
    if isinstance(content, bytes | bytearray | memoryview):
        data = bytes(content)
        if expected is None:
            if len(data) > _HASH_IN_THREAD_ABOVE:
                expected = await anyio.to_thread.run_sync(hash_bytes, data)
            else:
                expected = hash_bytes(data)
        yield UploadSource(expected, len(data), True, lambda: data)
    elif isinstance(content, Path):
        small, size, expected = await anyio.to_thread.run_sync(_read_small, content, expected)
        if small is not None and expected is not None:
            whole = small
            yield UploadSource(expected, size, True, lambda: whole)
            return
        if expected is None:
            expected = await anyio.to_thread.run_sync(hash_file, content)
        yield _file_source(content, expected, size)
    elif expected is not None:
        stream = content

        async def once() -> AsyncIterator[bytes]:
            async for chunk in stream:
                yield chunk

        yield UploadSource(expected, None, False, once)
    else:
        fd, name = await anyio.to_thread.run_sync(tempfile.mkstemp, ".upload", "importer-")
        os.close(fd)
        spool = Path(name)
        try:
            digest, size = await _spool(content, spool)
            yield _file_source(spool, digest, size)
        finally:
            await anyio.Path(spool).unlink(missing_ok=True)
