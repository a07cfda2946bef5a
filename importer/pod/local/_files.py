"""Encrypted, content-addressed file content of one owner.

Each stored content gets a fresh random 256-bit key and 96-bit nonce and is
written as AES-256-GCM ciphertext with the 16-byte tag appended, named by the
sha256 of its plaintext under ``<owner dir>/files/``.  Key and nonce live only
in the owner's encrypted database.  Content is written to a temporary file,
flushed to disk and only then given its final name, so a crash leaves either
no content or the complete one, never a torn file.  Nothing here holds a whole
file in memory.

Ciphertext is encrypted into a reused, page-aligned buffer and written from
it a block at a time, with ``O_DIRECT`` where the file system takes it: the
content goes to the disk without being copied into the page cache (it is
rarely read back soon), which costs far less CPU; elsewhere the same writes
go through the page cache.

The final name is taken in two steps so the store's lock is held briefly:
:meth:`BlobWriter.place` hard-links the sealed file to its name *before* the
lock, which succeeds whenever no file of that name exists; the store then
flushes the directory (:meth:`FileStore.flush_names`, once for all the
contents it records together) before their rows commit, and
:meth:`BlobWriter.commit`, under the lock, has nothing left to do.  Only if
the name is taken (a leftover of a crash, or the same content uploaded at the
same time) does ``commit`` replace it under the lock, as the database decides.
A placed file whose row is then refused stays behind as an unknown file, like
a crash leftover, and the next upload of that content replaces it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import (
    AEADDecryptionContext,
    Cipher,
    algorithms,
    modes,
)

__all__ = ["BlobWriter", "ContentCorrupted", "FileStore", "TooLarge"]

_TAG_BYTES = 16
_READ_CHUNK = 1 << 20
_BLOCK = 4096
"""Direct I/O alignment: of buffer addresses, write sizes and file offsets."""
_WRITE_AT = 1 << 20
"""Ciphertext is written out once this much is buffered."""
_BUFFER_BYTES = _WRITE_AT + 2 * _BLOCK
"""Room for a write, the unaligned rest kept back, the tag and cipher slack."""
_SPARE_BUFFERS = 4
"""Write buffers kept for reuse: as many as the engine's default concurrent uploads."""
_O_DIRECT: int = getattr(os, "O_DIRECT", 0)


class TooLarge(Exception):
    """The content exceeds the configured maximum size."""


class ContentCorrupted(Exception):
    """Stored content failed authentication (tampered with or damaged)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Sink:
    """Ciphertext into a new file through an aligned buffer, direct I/O if possible."""

    def __init__(self, path: Path, buffer: mmap.mmap) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        self.direct = bool(_O_DIRECT)
        try:
            self.fd = os.open(path, flags | _O_DIRECT, 0o600)
        except OSError as exc:
            if exc.errno != errno.EINVAL or not self.direct:
                raise
            self.direct = False  # the file system refuses direct I/O (tmpfs, ...)
            self.fd = os.open(path, flags, 0o600)
        self.buffer = buffer
        self.view = memoryview(buffer)
        self.filled = 0

    def room(self) -> int:
        """Plaintext bytes the buffer takes before it must be written out."""
        return _WRITE_AT + _BLOCK - self.filled

    def flush(self, *, last: bool = False) -> None:
        """Write the buffer's whole blocks and keep the rest; with ``last``, the rest too.

        The unaligned end of the content is written through the page cache
        (direct I/O switched off for it), so nothing needs cutting off after.
        """
        filled = self.filled
        end = filled // _BLOCK * _BLOCK if self.direct else filled
        self._write(self.view[:end])
        if last and end < filled:
            if self.direct:
                self._buffered()
            self._write(self.view[end:filled])
            end = filled
        rest = filled - end
        if rest:
            self.view[:rest] = self.view[end:filled]
        self.filled = rest

    def _write(self, data: memoryview) -> None:
        while data:
            try:
                done = os.write(self.fd, data)
            except OSError as exc:
                if exc.errno != errno.EINVAL or not self.direct:
                    raise
                self._buffered()
                continue
            data = data[done:]

    def _buffered(self) -> None:
        """Carry on without direct I/O (refused at the first write by some systems)."""
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~_O_DIRECT)
        self.direct = False

    def seal(self) -> None:
        """Everything written and flushed to disk."""
        self.flush(last=True)
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.view.release()


class BlobWriter:
    """Encrypts and hashes streamed plaintext into a temporary file."""

    def __init__(self, store: FileStore, max_bytes: int) -> None:
        material = os.urandom(32 + 12 + 16)
        self.key = material[:32]
        self.nonce = material[32:44]
        self.size = 0
        self._max = max_bytes
        self._store = store
        self._hash = hashlib.sha256()
        self._encryptor = Cipher(algorithms.AES(self.key), modes.GCM(self.nonce)).encryptor()
        self.tmp_path = store.tmp_dir / f"{material[44:].hex()}.part"
        self._sink = _Sink(self.tmp_path, store.take_buffer())
        self._placed: Path | None = None
        self._done = False

    def __repr__(self) -> str:
        return f"BlobWriter(size={self.size})"

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self.size += len(chunk)
        if self.size > self._max:
            raise TooLarge
        data = memoryview(chunk)
        sink = self._sink
        while data:
            piece = data[: sink.room()]
            self._hash.update(piece)  # piece by piece: hashed and encrypted while cached
            sink.filled += self._encryptor.update_into(piece, sink.view[sink.filled :])
            data = data[len(piece) :]
            if sink.filled >= _WRITE_AT:
                sink.flush()

    def write_all(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        """:meth:`write` each chunk (one worker-thread hop for several)."""
        for chunk in chunks:
            self.write(chunk)

    def finish(self) -> str:
        """Seal the ciphertext, flush it to disk; the plaintext's sha256 (hex)."""
        sink = self._sink
        self._encryptor.finalize()  # GCM: no output, only the tag
        sink.view[sink.filled : sink.filled + _TAG_BYTES] = self._encryptor.tag
        sink.filled += _TAG_BYTES
        sink.seal()
        self._release()
        return self._hash.hexdigest()

    @property
    def placed(self) -> bool:
        """The content has its final name (flushed by :meth:`FileStore.flush_names`)."""
        return self._placed is not None

    def place(self, sha256: str) -> None:
        """Give the sealed content its final name now, if that name is free.

        Called after :meth:`finish` and before the store's lock; see the
        module notes.  The name is durable once :meth:`FileStore.flush_names`
        has run.  Where hard links are not supported, :meth:`commit` does the
        work instead.
        """
        final = self._store.path(sha256)
        try:
            os.link(self.tmp_path, final)
        except OSError:  # the name is taken, or no hard links here
            return
        self._placed = final

    def commit(self, sha256: str) -> None:
        """Make the sealed content the one stored under ``sha256`` (under the store's lock).

        Idempotent: a second call (the transaction that recorded the first
        was rolled back) finds the content in place.
        """
        final = self._store.path(sha256)
        if self._placed != final:
            os.replace(self.tmp_path, final)
            _fsync_dir(final.parent)
            self._placed = final

    def discard(self) -> None:
        """Drop the temporary name (idempotent); the content too unless committed or placed."""
        if self._done:
            return
        self._done = True
        self._release()
        self.tmp_path.unlink(missing_ok=True)  # gone already if commit renamed it

    def _release(self) -> None:
        """Close the file and hand the buffer back (idempotent)."""
        sink = self._sink
        if sink.fd >= 0:
            sink.close()
            self._store.return_buffer(sink.buffer)


class FileStore:
    """The ``files/`` directory of one owner."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / ".tmp"
        self._ready = False
        self._spare: list[mmap.mmap] = []

    def path(self, sha256: str) -> Path:
        return self.root / sha256

    def flush_names(self) -> None:
        """Make every name :meth:`BlobWriter.place` gave so far durable (one directory fsync)."""
        _fsync_dir(self.root)

    def writer(self, max_bytes: int) -> BlobWriter:
        if not self._ready:
            self._make_dirs()
        try:
            return BlobWriter(self, max_bytes)
        except FileNotFoundError:  # the folders went away since: make them again
            self._make_dirs()
            return BlobWriter(self, max_bytes)

    def _make_dirs(self) -> None:
        self.root.mkdir(mode=0o700, exist_ok=True)
        self.tmp_dir.mkdir(exist_ok=True)
        self._ready = True

    def take_buffer(self) -> mmap.mmap:
        """A page-aligned write buffer, reused across writers (list ops are atomic)."""
        try:
            return self._spare.pop()
        except IndexError:
            return mmap.mmap(-1, _BUFFER_BYTES)

    def return_buffer(self, buffer: mmap.mmap) -> None:
        if len(self._spare) < _SPARE_BUFFERS:
            self._spare.append(buffer)
        # else: dropped, unmapped once nothing refers to it any more

    def open(self, sha256: str, key: bytes, nonce: bytes) -> Iterator[bytes]:
        """The decrypted content, chunk by chunk (the file is opened right away).

        The GCM tag (and the plaintext's sha256) can only be checked after the
        last byte, so earlier chunks are released before that, but the last
        chunk is held back until both checks pass.  On a mismatch the iterator
        raises :class:`ContentCorrupted` instead of yielding it, which aborts
        the HTTP response short of its Content-Length: the client sees a
        failed download, never a complete-looking corrupted one.
        """
        fh = self.path(sha256).open("rb")
        try:
            total = os.fstat(fh.fileno()).st_size - _TAG_BYTES
            if total < 0:
                raise ContentCorrupted
            fh.seek(total)
            tag = fh.read(_TAG_BYTES)
            fh.seek(0)
        except BaseException:
            fh.close()
            raise
        decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce, tag)).decryptor()
        return self._decrypt(fh, total, sha256, decryptor)

    @staticmethod
    def _decrypt(
        fh: BinaryIO, total: int, sha256: str, decryptor: AEADDecryptionContext
    ) -> Iterator[bytes]:
        with fh:
            digest = hashlib.sha256()
            remaining = total
            held: bytes | None = None
            while remaining > 0:
                chunk = fh.read(min(_READ_CHUNK, remaining))
                if not chunk:
                    raise ContentCorrupted
                remaining -= len(chunk)
                plain = decryptor.update(chunk)
                digest.update(plain)
                if held is not None:
                    yield held
                held = plain
            try:
                decryptor.finalize()
            except InvalidTag:
                raise ContentCorrupted from None
            if digest.hexdigest() != sha256:
                raise ContentCorrupted
            if held is not None:
                yield held
