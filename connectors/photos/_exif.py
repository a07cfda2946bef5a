"""EXIF tags as JSON, the time a photo was taken, and where (GPS).

Only tags with a readable value go into the JSON: numbers, text, and short
lists of those.  Binary blobs (maker notes, embedded thumbnails) and the
TIFF layout tags (strip offsets...) are left out; they mean nothing outside
the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from PIL import ExifTags, Image, TiffImagePlugin

__all__ = ["ExifInfo", "read_exif"]

_DATE_TIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011
_SUBSEC_TIME_ORIGINAL = 0x9291
_MAX_LIST = 64
_MAX_TEXT = 4096
_LAYOUT_TAGS = frozenset(
    {
        "StripOffsets",
        "StripByteCounts",
        "TileOffsets",
        "TileByteCounts",
        "JPEGInterchangeFormat",
        "JPEGInterchangeFormatLength",
        "ExifOffset",
        "GPSInfo",
        "InteroperabilityOffset",
        "MakerNote",
        "PrintImageMatching",
        "XMLPacket",
        "ICCProfile",
        "InterColorProfile",
    }
)


@dataclass(frozen=True, slots=True)
class ExifInfo:
    """What a photo's EXIF says, in the shapes the Pod items need."""

    json: str | None
    taken: datetime | None
    orientation: int
    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None

    @property
    def has_location(self) -> bool:
        return self.latitude is not None and self.longitude is not None


def _plain(value: Any) -> Any:
    """A JSON-able form of an EXIF value, or None when it is not readable."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, TiffImagePlugin.IFDRational | float):
        try:
            number = float(value)
        except ZeroDivisionError:
            return None
        return number if math.isfinite(number) else None
    if isinstance(value, bytes):
        value = value.rstrip(b"\x00")
        if not value or not all(32 <= b < 127 or b in (9, 10, 13) for b in value):
            return None
        value = value.decode("ascii")
    if isinstance(value, str):
        text = value.replace("\x00", "").strip()
        return text if text and len(text) <= _MAX_TEXT else None
    if isinstance(value, tuple | list):
        if not value or len(value) > _MAX_LIST:
            return None
        items = [_plain(v) for v in value]
        return None if any(v is None for v in items) else items
    return None


def _named(tags: Any, names: dict[int, str], into: dict[str, Any]) -> None:
    for tag, value in tags.items():
        name = names.get(tag)
        if name is None or name in _LAYOUT_TAGS:
            continue
        plain = _plain(value)
        if plain is not None:
            into[name] = plain


def _taken(exif_ifd: Any) -> datetime | None:
    """DateTimeOriginal, with its sub-seconds and UTC offset when given."""
    raw = _plain(exif_ifd.get(_DATE_TIME_ORIGINAL))
    if not isinstance(raw, str):
        return None
    try:
        taken = datetime.strptime(raw[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    subsec = _plain(exif_ifd.get(_SUBSEC_TIME_ORIGINAL))
    if isinstance(subsec, int):
        subsec = str(subsec)
    if isinstance(subsec, str) and subsec.isdigit():
        taken = taken.replace(microsecond=int(subsec[:6].ljust(6, "0")))
    offset = _plain(exif_ifd.get(_OFFSET_TIME_ORIGINAL))
    if isinstance(offset, str):
        zone = _zone(offset)
        if zone is not None:
            taken = taken.replace(tzinfo=zone)
    return taken


def _zone(offset: str) -> timezone | None:
    """``+02:00`` / ``-0530`` / ``Z`` as a timezone; None if unreadable."""
    text = offset.strip()
    if text.upper() == "Z":
        return UTC
    sign = {"+": 1, "-": -1}.get(text[:1])
    digits = text[1:].replace(":", "")
    if sign is None or len(digits) != 4 or not digits.isdigit():
        return None
    minutes = int(digits[:2]) * 60 + int(digits[2:])
    if minutes >= 24 * 60:
        return None
    return timezone(sign * timedelta(minutes=minutes))


def _degrees(value: Any, ref: Any, negative: str) -> float | None:
    parts = _plain(value)
    if isinstance(parts, float | int):
        parts = [parts]
    if not isinstance(parts, list) or not 1 <= len(parts) <= 3:
        return None
    if not all(isinstance(p, float | int) for p in parts):
        return None
    degrees = sum(float(p) / 60.0**i for i, p in enumerate(parts))
    ref_text = _plain(ref)
    if isinstance(ref_text, str) and ref_text.upper().startswith(negative):
        degrees = -degrees
    return degrees


def _location(gps: Any) -> tuple[float | None, float | None, float | None]:
    latitude = _degrees(gps.get(2), gps.get(1), "S")
    longitude = _degrees(gps.get(4), gps.get(3), "W")
    if latitude is None or longitude is None:
        return None, None, None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None, None, None
    altitude = _plain(gps.get(6))
    if not isinstance(altitude, float | int):
        altitude = None
    else:
        altitude = float(altitude)
        below = gps.get(5)
        if below in (1, b"\x01"):
            altitude = -altitude
    return latitude, longitude, altitude


def read_exif(exif: Image.Exif) -> ExifInfo:
    """Read the base, Exif and GPS directories of ``exif`` (Pillow's parsed EXIF)."""
    orientation = exif.get(ExifTags.Base.Orientation)
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1
    if not exif:
        return ExifInfo(json=None, taken=None, orientation=orientation)
    tags: dict[str, Any] = {}
    _named(exif, ExifTags.TAGS, tags)
    exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
    _named(exif_ifd, ExifTags.TAGS, tags)
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    _named(gps, ExifTags.GPSTAGS, tags)
    latitude, longitude, altitude = _location(gps) if gps else (None, None, None)
    return ExifInfo(
        json=json.dumps(tags, sort_keys=True, ensure_ascii=False) if tags else None,
        taken=_taken(exif_ifd),
        orientation=orientation,
        latitude=latitude,
        longitude=longitude,
        altitude=altitude,
    )
