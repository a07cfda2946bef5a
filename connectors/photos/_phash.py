"""A 64-bit perceptual hash (DCT, "pHash") and an index of near duplicates.

The hash keeps the signs of the lowest 8x8 frequencies of a 32x32 grey
version relative to their median, so resizing, recompressing or small edits
flip few bits while different pictures differ in about half of them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = ["NearIndex", "hamming", "perceptual_hash"]

_SIDE = 32
_LOW = 8
_K = np.arange(_SIDE, dtype=np.float64)
_DCT: npt.NDArray[np.float64] = np.cos(np.pi / (2 * _SIDE) * np.outer(_K, 2 * _K + 1))
"""The DCT-II basis: row k is frequency k sampled at the 32 pixel centres."""
_WEIGHTS = np.left_shift(np.uint64(1), np.arange(63, -1, -1, dtype=np.uint64))


def perceptual_hash(image: Image.Image) -> int:
    """The 64-bit pHash of ``image`` (any mode, any size)."""
    grey = image.convert("L").resize((_SIDE, _SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    low = (_DCT[:_LOW] @ pixels @ _DCT[:_LOW].T).reshape(-1)
    bits = (low > np.median(low)).astype(np.uint64)
    return int(np.bitwise_or.reduce(bits * _WEIGHTS))


def hamming(a: int, b: int) -> int:
    """How many of the 64 bits differ."""
    return (a ^ b).bit_count()


class NearIndex:
    """Photo hashes seen so far; answers "which are within ``max_distance`` bits"."""

    def __init__(self, max_distance: int, *, max_links: int = 20) -> None:
        self.max_distance = max_distance
        self.max_links = max_links
        self._hashes = np.zeros(256, dtype=np.uint64)
        self._ids: list[str] = []
        self._members: set[str] = set()

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, photo_id: str, value: int) -> None:
        """Remember a photo (a photo already present is not added twice)."""
        if photo_id in self._members:
            return
        count = len(self._ids)
        if count == len(self._hashes):
            grown = np.zeros(count * 2, dtype=np.uint64)
            grown[:count] = self._hashes
            self._hashes = grown
        self._hashes[count] = np.uint64(value)
        self._ids.append(photo_id)
        self._members.add(photo_id)

    def near(self, value: int, *, exclude: str | None = None) -> list[str]:
        """Ids within the distance, nearest (then oldest) first, at most ``max_links``."""
        count = len(self._ids)
        if not count:
            return []
        distances = np.bitwise_count(self._hashes[:count] ^ np.uint64(value))
        close = np.flatnonzero(distances <= self.max_distance)
        order = close[np.argsort(distances[close], kind="stable")]
        found = [self._ids[i] for i in order if self._ids[i] != exclude]
        return found[: self.max_links]
