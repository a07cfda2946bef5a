"""Generated test pictures: smooth random scenes (stable under resizing), EXIF, bad files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image

__all__ = ["exif_bytes", "scene", "write_image"]


def scene(seed: int, size: tuple[int, int] = (320, 240), mode: str = "RGB") -> Image.Image:
    """A picture no other seed resembles: a coarse random grid, smoothly upscaled."""
    rng = np.random.default_rng(seed)
    coarse = (rng.random((6, 8, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    return image if mode == "RGB" else image.convert(mode)


def exif_bytes(
    *,
    orientation: int | None = None,
    taken: str | None = None,
    offset: str | None = None,
    gps: tuple[float, float, float] | None = None,
    make: str | None = None,
) -> bytes:
    """EXIF as Pillow writes it: orientation, DateTimeOriginal (+offset), GPS, Make."""
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if make is not None:
        exif[ExifTags.Base.Make] = make
    if taken is not None or offset is not None:
        ifd = exif.get_ifd(ExifTags.IFD.Exif)
        if taken is not None:
            ifd[ExifTags.Base.DateTimeOriginal] = taken
        if offset is not None:
            ifd[ExifTags.Base.OffsetTimeOriginal] = offset
    if gps is not None:
        lat, lon, alt = gps
        info = exif.get_ifd(ExifTags.IFD.GPSInfo)
        info[ExifTags.GPS.GPSLatitudeRef] = "N" if lat >= 0 else "S"
        info[ExifTags.GPS.GPSLatitude] = _dms(abs(lat))
        info[ExifTags.GPS.GPSLongitudeRef] = "E" if lon >= 0 else "W"
        info[ExifTags.GPS.GPSLongitude] = _dms(abs(lon))
        info[ExifTags.GPS.GPSAltitudeRef] = b"\x00" if alt >= 0 else b"\x01"
        info[ExifTags.GPS.GPSAltitude] = abs(alt)
    return exif.tobytes()


def _dms(value: float) -> tuple[float, float, float]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round((value - degrees - minutes / 60) * 3600, 4)
    return float(degrees), float(minutes), seconds


def write_image(
    path: Path,
    seed: int,
    size: tuple[int, int] = (320, 240),
    *,
    mode: str = "RGB",
    **save: Any,
) -> Path:
    """Write ``scene(seed)`` to ``path`` (format from the suffix) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scene(seed, size, mode).save(path, **save)
    return path
