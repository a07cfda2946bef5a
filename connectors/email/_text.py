"""Turning the bytes and surrogate-escaped strings of real mail into clean text."""

from __future__ import annotations

import codecs
import re

from . import _iso2022

__all__ = ["charset_codec", "clean_text", "decode_bytes", "decode_raw"]

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
    "windows-31j": "cp932",
    "x-sjis": "cp932",
    "cp50220": _iso2022.CODEC,
    "cp50221": _iso2022.CODEC,
    "cp50222": _iso2022.CODEC,
    "iso-2022-jp-ms": _iso2022.CODEC,
}
_ISO2022_ESCAPE = re.compile(rb"\x1b(?:\$[@AB(]|\$\)C|\([BIJ]|\)I)")
"""A designation of ISO-2022 (JP, JP-2, KR): 7-bit text that no other charset reads."""
_ISO2022_CODECS = ("iso2022_jp", "iso2022_jp_2", "iso2022_jp_ext", "iso2022_kr", _iso2022.CODEC)
_SHIFTS = re.compile("[\x0e\x0f\x1b]")
_SURROGATES = re.compile("[\ud800-\udfff]+")
_CONTROL_BYTES = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
"""C0 controls but tab, newline and carriage return, and DEL."""


def charset_codec(charset: str | None) -> str | None:
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


def decode_bytes(data: bytes, charset: str | None = None, *, hint: str | None = None) -> str:
    """Decode ``data`` with its declared charset, else as UTF-8, else cp1252 or latin-1.

    A declared charset is tried strictly first so that mislabelled mail (UTF-8
    sent as us-ascii) still decodes.  Text that is mostly UTF-8 (or declared
    UTF-8 and holding any valid multi-byte sequence) with a few stray bytes
    loses only those bytes (U+FFFD): re-reading it all as cp1252 would garble
    every other non-ASCII character.  So does text in another declared
    charset (GB18030, Shift_JIS...) that mostly decodes in it.  The last
    fallback never fails.  Text holding ISO-2022 escape sequences is read as
    ISO-2022 first, whatever the label: it is 7-bit, so every other charset
    "reads" it, escapes and all.  ``hint`` is a charset declared for text
    near ``data`` (the body's, for a raw header field): tried after UTF-8, it
    is kept only as :func:`_hinted` allows.
    """
    declared = charset_codec(charset)
    if b"\x1b" in data:
        iso2022 = _iso2022_text(data, declared)
        if iso2022 is not None:
            return iso2022
    if declared is not None:
        try:
            return _decode(data, declared)
        except (ValueError, LookupError):
            pass
    if declared != "utf-8":
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    text = data.decode("utf-8", "replace")
    if _mostly_decoded(text, declared == "utf-8", data):
        return text
    if declared not in (None, "utf-8", "ascii"):  # ASCII decodes no character worth keeping
        try:
            text = _decode(data, declared, "replace")
        except LookupError:
            pass
        else:
            if _mostly_decoded(text, False):
                return text
    hinted = None if hint is None else _hinted(data, hint)
    if hinted is not None:
        return hinted
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _hinted(data: bytes, hint: str) -> str | None:
    """``data`` in the charset ``hint``, if it decodes strictly to non-ASCII letters
    and nothing unprintable (Latin-1 "reads" cp1252's quotes as C1 controls)."""
    codec = charset_codec(hint)
    if codec is None or codec in ("utf-8", "ascii"):
        return None
    try:
        text = _decode(data, codec)
    except (ValueError, LookupError):
        return None
    added = {c for c in set(text) if c > "\x7f"}
    if not any(c.isalpha() for c in added):
        return None
    return text if all(c.isprintable() or c.isspace() for c in added) else None


def _decode(data: bytes, codec: str, errors: str = "strict") -> str:
    if codec != _iso2022.CODEC:
        return data.decode(codec, errors)
    try:
        return _iso2022.decode(data)
    except ValueError:
        if errors == "strict":
            raise
        return data.decode("iso2022_jp", errors)


def _iso2022_text(data: bytes, declared: str | None) -> str | None:
    """``data`` read as the ISO-2022 variant whose escapes it holds, whatever was declared.

    Its escapes would otherwise be dropped as control characters, leaving
    ``$B...(B`` debris.  Only strict decodes without a stray shift or escape
    left count; then one with the few broken characters replaced, if that
    keeps any.
    """
    if not _ISO2022_ESCAPE.search(data):
        return None
    own = declared if declared is not None and declared.startswith("iso2022") else None
    for codec in _ISO2022_CODECS if own is None else (own, *_ISO2022_CODECS):
        try:
            text = _decode(data, codec)
        except ValueError:
            continue
        if not _SHIFTS.search(text):
            return text
    text = _decode(data, own or "iso2022_jp_2", "replace")
    return text if _mostly_decoded(text, True) and not _SHIFTS.search(text) else None


def _mostly_decoded(text: str, declared: bool, utf8: bytes | None = None) -> bool:
    """Whether ``text`` (decoded with replacement) is that charset with a few bad bytes.

    When the charset was declared any decoded non-ASCII character counts, else
    there must be more of them than bad bytes: U+FFFD but those already in
    ``utf8``, the UTF-8 the text was decoded from (looked for only when the
    answer depends on it).  Counted in C (encode/count): this runs for every
    text that did not decode strictly.
    """
    replaced = text.count("\ufffd")
    good = len(text) - len(text.encode("ascii", "ignore")) - replaced
    if declared or good <= 0:
        return good > 0
    return good > replaced or good > replaced - _literal(utf8)


def _literal(utf8: bytes | None) -> int:
    """How many U+FFFD ``utf8`` holds (a memchr first: the lead byte is rare)."""
    if utf8 is None or b"\xef" not in utf8:
        return 0
    return utf8.count(b"\xef\xbf\xbd")


def decode_raw(value: str, hint: str | None = None) -> str:
    """A header field as the parser hands it on, its 8-bit bytes (kept as surrogate
    escapes) or ISO-2022 escapes decoded; ``hint`` as for :func:`decode_bytes`."""
    if value.isascii() and "\x1b" not in value:
        return value
    try:
        data = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value  # not from the parser; clean_text copes
    return decode_bytes(data, hint=hint)


def clean_text(value: str) -> str:
    """Text fit for the Pod: no surrogates, no NULs or other C0 controls but tab/newline.

    Done on the UTF-8 bytes, where the controls are single bytes that
    ``bytes.translate`` drops in one C pass (every body goes through here).
    """
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        # Surrogates: the 8-bit bytes the email parser kept as escapes, read
        # again; any left (not from the parser) become U+FFFD.
        value = _SURROGATES.sub("\ufffd", decode_raw(value))
        data = value.encode("utf-8")
    kept = data.translate(None, _CONTROL_BYTES)
    return value if len(kept) == len(data) else kept.decode("utf-8")
