"""Hash and decode images in a small thread pool, results in scan order.

Pillow and hashlib release the GIL while they work, so a second thread uses
the second core.  Up to ``_QUEUED_PER_WORKER * workers`` files are queued or
done but not yet taken, so the threads never run dry while the consumer is
busy; only ``workers`` are read at a time and only thumbnails outlive the
work, so memory stays bounded.

A file is read once: its bytes are hashed and, if the photo is new, decoded
from memory.  Files above ``_READ_WHOLE_UP_TO`` (huge TIFFs, say) are hashed
in chunks and decoded from disk instead.

Pillow and numpy are imported with the first picture to decode, not with
this module: a run that finds nothing new (the usual scheduled re-run) never
loads them, which is a fifth of what such a run costs.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Container, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from importer import File, FilePayload, derive_id

from ._scan import Candidate, as_text

if TYPE_CHECKING:
    from ._image import ImageInfo

__all__ = ["Outcome", "Reader", "examine"]

_QUEUED_PER_WORKER = 8
"""Files submitted ahead per thread: slack for a consumer that is briefly busy."""
_READ_WHOLE_UP_TO = 64 << 20
"""Bytes up to which a file is read into memory once (hash and decoding share them)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What reading one candidate gave: a photo, a known photo, or a skip."""

    payload: FilePayload | None = None
    photo_id: str | None = None
    info: ImageInfo | None = None
    """None for a photo already known (by id): it was not decoded again."""
    skip: str | None = None
    lasting: bool = True
    """A skip that stays until the file changes (remembered in the checkpoint)."""


def _read(path: Path, expected_size: int) -> tuple[FilePayload, bytes | None]:
    """The file's payload (hashed), and its bytes unless it is too big to keep."""
    name = as_text(path.name)
    if expected_size > _READ_WHOLE_UP_TO:
        return File.payload_from_path(path, filename=name), None
    content = path.read_bytes()
    item = File(sha256=hashlib.sha256(content).hexdigest(), filename=name, size=len(content))
    return FilePayload(item, path), content


def examine(candidate: Candidate, thumbnail_size: int, known: Container[str]) -> Outcome:
    """Hash the file (its sha256 is the photo's identity), then decode it if new."""
    if candidate.size == 0:
        return Outcome(skip="empty file")
    try:
        payload, content = _read(candidate.path, candidate.size)
    except OSError as exc:
        return Outcome(skip=f"unreadable file: {exc.strerror or exc}", lasting=False)
    photo_id = derive_id("Photo", payload.sha256)
    if photo_id in known:
        return Outcome(payload=payload, photo_id=photo_id)
    from ._image import NotAPhoto, read_image  # see the module notes

    try:
        info = read_image(candidate.path, thumbnail_size, content)
    except NotAPhoto as exc:
        return Outcome(skip=exc.reason, lasting=exc.lasting)
    if isinstance(payload.file, File):
        payload.file.mimeType = info.mime_type
    return Outcome(payload=payload, photo_id=photo_id, info=info)


class Reader:
    """Runs :func:`examine` over candidates with ``workers`` threads."""

    def __init__(self, workers: int, thumbnail_size: int, known: Container[str]) -> None:
        self.workers = workers
        self.thumbnail_size = thumbnail_size
        self.known = known
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="photos-read")

    def read(self, candidates: Iterable[Candidate]) -> Iterator[tuple[Candidate, Outcome]]:
        """``(candidate, outcome)`` in the order of ``candidates``."""
        window: deque[tuple[Candidate, Future[Outcome]]] = deque()
        try:
            for candidate in candidates:
                future = self._pool.submit(examine, candidate, self.thumbnail_size, self.known)
                window.append((candidate, future))
                if len(window) >= _QUEUED_PER_WORKER * self.workers:
                    done, pending = window.popleft()
                    yield done, pending.result()
            while window:
                done, pending = window.popleft()
                yield done, pending.result()
        finally:
            for _, pending in window:
                pending.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
