"""An index of perceptual hashes that answers "which photos are near this one".

Hashes are kept in a plain ``array`` of unsigned 64-bit integers; numpy is
loaded only when the index is first asked, through a zero-copy view of that
array.  A run with nothing new (the usual scheduled re-run) seeds the index
from its checkpoints but never asks it, so it never pays for importing numpy.
"""

from __future__ import annotations

from array import array

__all__ = ["NearIndex"]


class NearIndex:
    """Photo hashes seen so far; answers "which are within ``max_distance`` bits"."""

    def __init__(self, max_distance: int, *, max_links: int = 20) -> None:
        self.max_distance = max_distance
        self.max_links = max_links
        self._hashes = array("Q")
        self._ids: list[str] = []
        self._members: set[str] = set()

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, photo_id: str, value: int) -> None:
        """Remember a photo (a photo already present is not added twice)."""
        if photo_id in self._members:
            return
        self._hashes.append(value)
        self._ids.append(photo_id)
        self._members.add(photo_id)

    def near(self, value: int, *, exclude: str | None = None) -> list[str]:
        """Ids within the distance, nearest (then oldest) first, at most ``max_links``."""
        if not self._ids:
            return []
        import numpy as np  # only once asked: see the module notes

        # A view of the array: while it lives, the array can't grow (add()
        # would raise BufferError), so it lives only for this line.
        hashes = np.frombuffer(self._hashes, dtype=np.uint64)
        try:
            distances = np.bitwise_count(hashes ^ np.uint64(value))
        finally:
            del hashes
        close = np.flatnonzero(distances <= self.max_distance)
        order = close[np.argsort(distances[close], kind="stable")]
        found = [self._ids[i] for i in order if self._ids[i] != exclude]
        return found[: self.max_links]
