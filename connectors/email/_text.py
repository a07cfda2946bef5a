"""Turning the bytes and surrogate-escaped strings of real mail into clean text."""

from __future__ import annotations

import codecs
import re

__all__ = ["clean_text", "decode_bytes", "fix_surrogates"]

_FALLBACK_CHARSETS = ("utf-8", "cp1252", "latin-1")
_CHARSET_ALIASES = {
    "unknown-8bit": None,
    "x-unknown": None,
    "unknown": None,
    "default": None,
    "x-user-defined": None,
    "utf8": "utf-8",
    "ks_c_5601-1987": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "x-mac-roman": "mac-roman",
}
_SURROGATES = re.compile("[\ud800-\udfff]+")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _codec(charset: str | None) -> str | None:
    """A Python codec name for a MIME charset label, or None if unknown."""
    if not charset:
        return None
    label = charset.strip().strip("\"'").lower()
    if label in _CHARSET_ALIASES:
        return _CHARSET_ALIASES[label]
    try:
        return codecs.lookup(label).name
    except (LookupError, ValueError):
        return None


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Decode ``data`` with its declared charset, falling back to UTF-8, cp1252, latin-1.

    A declared charset is tried strictly first so that mislabelled mail (UTF-8
    sent as us-ascii) still decodes; the last fallback never fails.
    """
    tried: list[str] = []
    for name in (_codec(charset), *_FALLBACK_CHARSETS):
        if name is None or name in tried:
            continue
        tried.append(name)
        try:
            return data.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("latin-1")  # pragma: no cover - latin-1 always decodes


def fix_surrogates(value: str) -> str:
    """Re-decode the 8-bit bytes the email parser kept as surrogate escapes."""
    if not _SURROGATES.search(value):
        return value
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", value)
    return decode_bytes(raw)


def clean_text(value: str) -> str:
    """Text fit for the Pod: no surrogates, no NULs or other C0 controls but tab/newline."""
    value = fix_surrogates(value)
    value = _SURROGATES.sub("\ufffd", value)
    return _CONTROL.sub("", value)
