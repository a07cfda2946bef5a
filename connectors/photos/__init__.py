"""The photos connector: image files in folders into Photo items in the Pod.

``importer run photos -o roots='["~/Pictures"]'`` — see ``docs/photos.md``.
Each image is a :class:`~connectors.photos.items.Photo` identified by the
sha256 of its bytes, with its original and a JPEG thumbnail as ``File``
items, its GPS position as a ``Location``, every path it was found at as a
:class:`~connectors.photos.items.PhotoPath`, and ``nearDuplicate`` edges to
similar photos.
"""

from __future__ import annotations

from collections.abc import Iterator

from importer import Connector, Record, RunContext

from ._fetch import NoRootFound, fetch_photos
from .items import Photo, PhotoPath
from .options import PhotosOptions

__all__ = ["NoRootFound", "Photo", "PhotoPath", "PhotosConnector", "PhotosOptions", "connector"]


class PhotosConnector(Connector[PhotosOptions]):
    """Imports the images under the configured folders."""

    name = "photos"
    options_model = PhotosOptions
    item_types = (Photo, PhotoPath)

    def fetch(self, ctx: RunContext[PhotosOptions]) -> Iterator[Record]:
        return fetch_photos(ctx)

    def check(self, ctx: RunContext[PhotosOptions]) -> None:
        """Every root must be a folder this process can list."""
        missing = [str(root) for root in ctx.options.roots if not root.is_dir()]
        if missing:
            raise NoRootFound(f"not a folder: {', '.join(missing)}")
        for root in ctx.options.roots:
            next(iter(root.iterdir()), None)


connector = PhotosConnector()
