"""Hash and decode images in a small thread pool, results in scan order.

Pillow and hashlib release the GIL while they work, so a second thread uses
the second core.  At most ``2 * workers`` files are under way at once, and
only their thumbnails outlive the work, so memory stays bounded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from importer import File, FilePayload, derive_id

from ._image import ImageInfo, NotAPhoto, read_image
from ._scan import Candidate

__all__ = ["Outcome", "Reader", "examine"]


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


def examine(candidate: Candidate, thumbnail_size: int, known: Container[str]) -> Outcome:
    """Hash the file (its sha256 is the photo's identity), then decode it if new."""
    if candidate.size == 0:
        return Outcome(skip="empty file")
    try:
        payload = File.payload_from_path(candidate.path)
    except OSError as exc:
        return Outcome(skip=f"unreadable file: {exc.strerror or exc}", lasting=False)
    photo_id = derive_id("Photo", payload.sha256)
    if photo_id in known:
        return Outcome(payload=payload, photo_id=photo_id)
    try:
        info = read_image(candidate.path, thumbnail_size)
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
                if len(window) >= 2 * self.workers:
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
