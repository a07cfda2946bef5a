"""Encrypted, content-addressed file content of one owner.

Each stored content gets a fresh random 256-bit key and 96-bit nonce and is
written as AES-256-GCM ciphertext with the 16-byte tag appended, named by the
sha256 of its plaintext under ``<owner dir>/files/``.  Key and nonce live only
in the owner's encrypted database.  Content is written to a temporary file,
flushed to disk and then renamed, so a crash leaves either no content or the
complete one, never a torn file.  Nothing here holds a whole file in memory.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
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


class BlobWriter:
    """Encrypts and hashes streamed plaintext into a temporary file."""

    def __init__(self, store: FileStore, max_bytes: int) -> None:
        self.key = secrets.token_bytes(32)
        self.nonce = secrets.token_bytes(12)
        self.size = 0
        self._max = max_bytes
        self._store = store
        self._hash = hashlib.sha256()
        self._encryptor = Cipher(algorithms.AES(self.key), modes.GCM(self.nonce)).encryptor()
        store.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_path = store.tmp_dir / f"{secrets.token_hex(16)}.part"
        fd = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._fh = os.fdopen(fd, "wb")
        self._done = False

    def __repr__(self) -> str:
        return f"BlobWriter(size={self.size})"

    def write(self, chunk: bytes | bytearray) -> None:
        self.size += len(chunk)
        if self.size > self._max:
            raise TooLarge
        self._hash.update(chunk)
        self._fh.write(self._encryptor.update(chunk))

    def finish(self) -> str:
        """Seal the ciphertext, flush it to disk; the plaintext's sha256 (hex)."""
        self._fh.write(self._encryptor.finalize())
        self._fh.write(self._encryptor.tag)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        return self._hash.hexdigest()

    def commit(self, sha256: str) -> None:
        """Move the sealed content to its final, content-addressed place."""
        final = self._store.path(sha256)
        os.replace(self.tmp_path, final)
        _fsync_dir(final.parent)
        self._done = True

    def discard(self) -> None:
        """Forget the content (idempotent; a no-op after :meth:`commit`)."""
        if self._done:
            return
        self._done = True
        self._fh.close()
        self.tmp_path.unlink(missing_ok=True)


class FileStore:
    """The ``files/`` directory of one owner."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / ".tmp"

    def path(self, sha256: str) -> Path:
        return self.root / sha256

    def writer(self, max_bytes: int) -> BlobWriter:
        self.root.mkdir(mode=0o700, exist_ok=True)
        return BlobWriter(self, max_bytes)

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
