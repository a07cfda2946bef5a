"""The item types the photos connector writes besides the central ones."""

from __future__ import annotations

from typing import ClassVar

from importer import Item
from importer import Photo as CentralPhoto

__all__ = ["Photo", "PhotoPath"]


class Photo(CentralPhoto):
    """The central ``Photo`` plus its perceptual hash (the engine declares the property).

    Its id is set explicitly from the sha256 of the original bytes, so the
    same file in two folders, or imported twice, is one Photo.
    """

    item_type: ClassVar[str] = "Photo"

    perceptualHash: str | None = None
    """64-bit DCT hash as 16 hex digits; close hashes mean similar pictures."""


class PhotoPath(Item):
    """Where a photo's file was found: ``Photo -path-> PhotoPath``, one per path."""

    key_fields: ClassVar[tuple[str, ...]] = ("path",)

    path: str | None = None
    """Absolute path of the file."""
