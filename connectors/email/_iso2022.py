"""ISO-2022-JP as Windows writes it (CP50220-2): the cp932 repertoire in 7-bit escapes.

Python's ``iso2022_jp`` codecs know JIS X 0208 only, but Japanese mail from
Windows uses the same escapes for NEC's row 13 (circled numbers, units, (株))
and the IBM extension kanji, and for half-width katakana (``ESC ( I``, or
``ESC ) I`` and SO/SI).  Each JIS pair maps to one Shift_JIS pair, which
cp932 decodes.
"""

from __future__ import annotations

import re

__all__ = ["CODEC", "decode"]

CODEC = "iso2022_jp_ms"
"""The name :func:`connectors.email._text.charset_codec` gives the Windows labels."""

_TOKEN = re.compile(rb"(\x1b\$[@B]|\x1b\([BJI]|\x1b\)I|\x0e|\x0f)")
_LINE_END = re.compile(rb"(\r\n|\r|\n)")
_KANA = bytes(range(0x21, 0x60))


def _sjis_pair(first: int, second: int) -> bytes:
    if not (0x21 <= first <= 0x7E and 0x21 <= second <= 0x7E):
        raise ValueError("not a JIS pair")
    lead = ((first + 1) >> 1) + 0x70
    lead += 0x40 if lead >= 0xA0 else 0
    if first % 2 == 0:
        return bytes((lead, second + 0x7E))
    return bytes((lead, second + 0x1F + (1 if second >= 0x60 else 0)))


def _double_byte(piece: bytes) -> str:
    """JIS pairs; a line end inside is kept, as Python's own codec does."""
    out = []
    for i, chunk in enumerate(_LINE_END.split(piece)):
        if i % 2:
            out.append(chunk.decode("ascii"))
            continue
        if len(chunk) % 2:
            raise ValueError("half a JIS pair")
        sjis = b"".join(_sjis_pair(chunk[j], chunk[j + 1]) for j in range(0, len(chunk), 2))
        out.append(sjis.decode("cp932"))
    return "".join(out)


def _katakana(piece: bytes) -> str:
    if piece.translate(None, _KANA):
        raise ValueError("not half-width katakana")
    return bytes(b + 0x80 for b in piece).decode("cp932")


def decode(data: bytes) -> str:
    """``data`` read as CP50220-2; raises ValueError when it is not that."""
    out: list[str] = []
    mode = b"\x1b(B"
    shifted = kana_in_g1 = False
    for i, piece in enumerate(_TOKEN.split(data)):
        if i % 2:
            if piece == b"\x1b)I":
                kana_in_g1 = True
            elif piece in (b"\x0e", b"\x0f"):
                if not kana_in_g1:
                    raise ValueError("shift without a katakana set")
                shifted = piece == b"\x0e"
            else:
                mode = piece
            continue
        if not piece:
            continue
        if b"\x1b" in piece or not piece.isascii():
            raise ValueError("not ISO-2022-JP")
        if shifted or mode == b"\x1b(I":
            out.append(_katakana(piece))
        elif mode.startswith(b"\x1b$"):
            out.append(_double_byte(piece))
        else:
            out.append(piece.decode("ascii"))
    return "".join(out)
