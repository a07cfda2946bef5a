"""Read one image: its size, mode and EXIF, a JPEG thumbnail and a perceptual hash.

JPEGs are decoded at a reduced scale (``Image.draft``: 1/2 to 1/8, chosen so
the result still covers the thumbnail, which keeps the picture's shape), so a
20-megapixel photo costs a few megabytes, not sixty.  The whole file is still
decoded, which is what finds truncated and corrupt images.  The thumbnail and
the perceptual hash both come from that one reduced decoding.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from ._exif import ExifInfo, read_exif
from ._phash import perceptual_hash

__all__ = ["ImageInfo", "NotAPhoto", "heif_available", "read_image"]

PHOTO_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "TIFF", "HEIF"})
HEIF_SUFFIXES = frozenset({".heic", ".heif", ".hif"})
_THUMBNAIL_QUALITY = 85
_TRANSPOSE = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}
"""EXIF orientation -> what turns the stored pixels upright."""
_WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})


class NotAPhoto(Exception):
    """The file is not an image this connector imports; ``reason`` says why.

    ``lasting`` is False when trying again later may succeed (HEIF support
    installed, a permission fixed).
    """

    def __init__(self, reason: str, *, lasting: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lasting = lasting


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str
    mime_type: str | None
    width: int
    """Upright width (EXIF orientation applied)."""
    height: int
    mode: str
    channels: int
    exif: ExifInfo
    thumbnail: bytes
    """JPEG, longest side at most the requested size."""
    perceptual_hash: int


@cache
def heif_available() -> bool:
    """Register pillow-heif's opener if it is installed (the ``heif`` extra)."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def read_image(path: Path, thumbnail_size: int, content: bytes | None = None) -> ImageInfo:
    """Decode ``path`` once; raise :class:`NotAPhoto` if it is not an importable image.

    ``content``: the file's bytes when the caller has read them already.
    """
    heif_available()
    try:
        handle: BinaryIO = path.open("rb") if content is None else io.BytesIO(content)
    except OSError as exc:
        raise NotAPhoto(f"unreadable file: {exc.strerror or exc}", lasting=False) from None
    with handle:
        try:
            with Image.open(handle) as image:
                if content is not None and isinstance(image, ImageFile.ImageFile):
                    # Bytes in memory go to the decoder in one piece: one call
                    # (one GIL release) instead of one per 64 KiB.
                    image.decodermaxblock = max(image.decodermaxblock, len(content))
                return _read(image, thumbnail_size)
        except NotAPhoto:
            raise
        except UnidentifiedImageError:
            if path.suffix.lower() in HEIF_SUFFIXES and not heif_available():
                raise NotAPhoto(
                    "HEIC/HEIF images need pillow-heif (pip install 'importer[heif]')",
                    lasting=False,
                ) from None
            raise NotAPhoto("not an image (unknown or damaged format)") from None
        except Image.DecompressionBombError as exc:
            raise NotAPhoto(f"too many pixels: {exc}") from None
        except MemoryError:
            raise NotAPhoto("too large to decode", lasting=False) from None
        except Exception as exc:
            # Pillow's decoders report damage with many exception types.
            raise NotAPhoto(f"corrupt image ({type(exc).__name__}: {exc})") from None


def _read(image: Image.Image, size: int) -> ImageInfo:
    fmt = image.format or ""
    if fmt not in PHOTO_FORMATS:
        raise NotAPhoto(f"{fmt or 'unknown'} images are not imported")
    width, height = image.size
    mode = image.mode
    channels = len(image.getbands())
    exif = _exif_of(image)
    orientation = exif.orientation
    if fmt in ("JPEG", "MPO"):
        image.draft("RGB", _thumbnail_box(image.size, size))
    image.load()
    if orientation != 1 and _turned_while_loading(image, orientation):
        # This format has no reduced decoding: the size is the full upright one.
        orientation = 1
        width, height = image.size
    elif orientation >= 5:
        width, height = height, width
    picture = _displayable(image)
    # Bicubic (Pillow's default here): the reduced decoding did most of the
    # shrinking, what is left is less than 2x, where Lanczos costs a third
    # more for no visible gain.
    picture.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    for step in _TRANSPOSE.get(orientation, ()):
        picture = picture.transpose(step)
    encoded = io.BytesIO()
    picture.save(encoded, "JPEG", quality=_THUMBNAIL_QUALITY)
    return ImageInfo(
        format=fmt,
        mime_type=Image.MIME.get(fmt),
        width=width,
        height=height,
        mode=mode,
        channels=channels,
        exif=exif,
        thumbnail=encoded.getvalue(),
        perceptual_hash=perceptual_hash(picture),
    )


def _thumbnail_box(stored: tuple[int, int], size: int) -> tuple[int, int]:
    """The thumbnail's own size: the longest side ``size``, the shape kept.

    Asking the JPEG decoder for this (rather than a ``size`` square) lets
    it reduce landscape and portrait pictures by the largest factor that
    still covers the thumbnail.
    """
    width, height = stored
    scale = min(1.0, size / max(width, height, 1))
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def _turned_while_loading(image: Image.Image, orientation: int) -> bool:
    """Whether Pillow turned the image upright itself, as it does TIFF since Pillow 11.

    It then takes the orientation tag away; turning the picture again would
    show it upside down or sideways.
    """
    try:
        return image.getexif().get(ExifTags.Base.Orientation) != orientation
    except Exception:
        return False


def _exif_of(image: Image.Image) -> ExifInfo:
    """The image's EXIF; damaged EXIF costs the metadata, not the photo."""
    try:
        return read_exif(image.getexif())
    except Exception:
        return ExifInfo(json=None, taken=None, orientation=1)


def _displayable(image: Image.Image) -> Image.Image:
    """``image`` as RGB or L: alpha flattened onto white, wide greys scaled to 8 bits."""
    mode = image.mode
    if mode in ("RGB", "L"):
        return image
    if mode in _WIDE_MODES:
        pixels = np.asarray(image, dtype=np.float32)
        top = float(pixels.max()) if pixels.size else 0.0
        scaled = pixels * (255.0 / top) if top > 0 else pixels * 0
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8))
    if mode == "1":
        return image.convert("L")
    if "A" in image.getbands() or "a" in mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        return flat.convert("RGB")
    return image.convert("RGB")
