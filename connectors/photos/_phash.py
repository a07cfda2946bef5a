"""A 64-bit perceptual hash (DCT, "pHash"); near ones are found by ``_near.NearIndex``.

The hash keeps the signs of the lowest 8x8 frequencies of a 32x32 grey
version relative to their median, so resizing, recompressing or small edits
flip few bits while different pictures differ in about half of them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = ["perceptual_hash"]

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
