"""Reading header fields of messy real-world mail without ever raising.

Each reader works on the raw header value (8-bit bytes re-decoded first),
uses the modern ``email.policy.default`` parsers, and falls back to the
lenient ``compat32``-era helpers when those raise.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy, utils
from email.header import decode_header
from email.message import Message
from itertools import groupby

from ._text import charset_codec, clean_text, decode_bytes, decode_raw

__all__ = [
    "Mailbox",
    "body_charset",
    "decode_words",
    "header_date",
    "header_text",
    "message_ids",
    "normalize_message_id",
    "raw_header",
    "raw_headers",
    "received_date",
    "to_millis",
    "utf8_words",
]

_FOLD = re.compile(r"\r?\n[ \t]*")
_MSG_ID = re.compile(r"<([^<>]*)>")
_WS = re.compile(r"\s+")
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_ENCODED_RUN = re.compile(rf"{_ENCODED_WORD.pattern}(?:\s+{_ENCODED_WORD.pattern})*")
_MAX_HEADER = 64 * 1024
"""Header values are cut here: longer ones are junk or attacks, not data."""


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One address from an address header."""

    address: str
    name: str | None


def raw_headers(msg: Message, name: str) -> list[str]:
    """Every value of header ``name`` as text: unfolded, 8-bit bytes decoded, trimmed."""
    wanted = name.lower()
    values = []
    for key, value in msg.raw_items():
        if key.lower() != wanted:
            continue
        text = (value if isinstance(value, str) else str(value))[:_MAX_HEADER]
        hint = None if text.isascii() else body_charset(msg)
        values.append(_FOLD.sub(" ", clean_text(decode_raw(text, hint))).strip())
    return values


def body_charset(msg: Message) -> str | None:
    """The charset of the message's first text part: the one mailers that write raw
    8-bit header fields (and filenames) write them in, if they are not UTF-8."""
    try:
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                charset = part.get_content_charset()
                return str(charset) if charset else None
    except Exception:
        return None
    return None


def raw_header(msg: Message, name: str) -> str | None:
    """The first value of header ``name`` (a duplicated header counts once)."""
    values = raw_headers(msg, name)
    return values[0] if values else None


def decode_words(value: str) -> str:
    """RFC 2047 decoding, tolerant of unknown charsets and broken encoded words."""
    try:
        parts = decode_header(value)
    except Exception:
        return value
    out = []
    for chunk, charset in parts:
        out.append(decode_bytes(chunk, charset) if isinstance(chunk, bytes) else chunk)
    return "".join(out)


def _stdlib_decodes(data: bytes, label: str) -> bool:
    """Whether the stdlib parsers read ``data`` as we do: a codec it knows, ours, strictly."""
    codec = charset_codec(label)
    try:
        if codec is None or codecs.lookup(label).name != codec:
            return False
        if b"\x1b" in data and not codec.startswith("iso2022"):
            return False  # ISO-2022 text under another label
        data.decode(codec)
    except (ValueError, LookupError):
        return False
    return True


def _word_bytes(match: re.Match[str]) -> bytes | None:
    """The bytes one encoded word holds, or None if it is broken."""
    encoding, text = match.group(3).lower(), match.group(4)
    try:
        if encoding == "b":
            return base64.b64decode(text + "=" * (-len(text) % 4))
        return binascii.a2b_qp(text.encode("ascii"), header=True)
    except (ValueError, UnicodeEncodeError):
        return None


def _utf8_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode('utf-8')).decode('ascii')}?="


def _as_utf8_word(match: re.Match[str]) -> str:
    """One encoded word, re-encoded as UTF-8 if the stdlib would misread its charset."""
    data = _word_bytes(match)
    if data is None:
        return match.group(0)  # broken: left to the parser's own leniency
    if _stdlib_decodes(data, match.group(1)):
        return match.group(0)
    return _utf8_word(decode_bytes(data, match.group(1)))


def _as_utf8_words(words: list[re.Match[str]]) -> str:
    """Adjacent encoded words of one charset; their bytes read together when one
    alone does not decode (a character cut in two by a mailer that split by length)."""
    label = words[0].group(1)
    parts = [data for data in map(_word_bytes, words) if data is not None]
    if len(parts) < 2 or len(parts) < len(words) or all(_stdlib_decodes(p, label) for p in parts):
        return " ".join(_as_utf8_word(word) for word in words)
    return _utf8_word(decode_bytes(b"".join(parts), label))


def _as_utf8_run(run: re.Match[str]) -> str:
    """A run of encoded words with only whitespace between them (which RFC 2047 drops)."""
    words = _ENCODED_WORD.finditer(run.group(0))
    return " ".join(
        _as_utf8_words(list(group)) for _, group in groupby(words, lambda w: w.group(1).lower())
    )


def utf8_words(raw: str) -> str:
    """``raw`` with each encoded word the stdlib would misread re-encoded as UTF-8.

    The stdlib header parsers know neither the labels real mail mislabels with
    (gb2312 for GBK, ks_c_5601-1987, iso-8859-8-i, windows-874) nor a fallback
    for bytes that do not fit the label; bodies get both from ``decode_bytes``,
    and so do encoded words this way, while the parsers still read the
    structure (quoting, groups, whitespace between words).
    """
    if "=?" not in raw:
        return raw
    return _ENCODED_RUN.sub(_as_utf8_run, raw)


def header_text(msg: Message, name: str) -> str | None:
    """Header ``name`` decoded (RFC 2047) to clean single-line text, or None."""
    raw = raw_header(msg, name)
    if raw is None:
        return None
    if "=?" not in raw:
        # Nothing encoded: the text is the value (the full parser would take
        # ~30 us to say so, for every message).
        text = raw
    else:
        try:
            text = str(policy.default.header_factory(name, utf8_words(raw)))
        except Exception:
            text = decode_words(raw)
    text = _WS.sub(" ", clean_text(text)).strip()
    return text or None


def _address_ok(address: str) -> bool:
    return bool(address) and not _WS.search(address) and len(address) <= 320


def addresses(msg: Message, name: str) -> list[Mailbox]:
    """The mailboxes in every ``name`` header (groups flattened, duplicates kept once)."""
    found: list[Mailbox] = []
    seen: set[str] = set()
    for raw in raw_headers(msg, name):
        for mailbox in _parse_addresses(name, raw):
            key = mailbox.address.lower()
            if key not in seen:
                seen.add(key)
                found.append(mailbox)
    return found


def _plain_pairs(raw: str) -> list[tuple[str, str]] | None:
    """(display name, address) pairs by the quick parser, or None if it may be wrong.

    ``utils.getaddresses`` is about ten times faster than the full RFC 5322
    parser and agrees with it on ordinary lists.  Anything unusual — groups,
    route addresses, comments, an encoded word holding a comma, an entry
    without exactly one ``@`` — goes to the full parser instead.
    """
    if any(c in raw for c in ":;()[]\\"):
        return None
    pairs = utils.getaddresses([raw])
    for display, address in pairs:
        if address.count("@") != 1 or address.startswith("@") or address.endswith("@"):
            return None
        if "=?" in display and ("?=" not in display):
            return None
    if len(pairs) != raw.count("@"):
        return None
    return [(decode_words(d) if "=?" in d else d, a) for d, a in pairs]


def _parse_addresses(name: str, raw: str) -> list[Mailbox]:
    pairs = _plain_pairs(raw)
    if pairs is None:
        try:
            header = policy.default.header_factory(name, utf8_words(raw))
            pairs = [(a.display_name, a.addr_spec) for a in getattr(header, "addresses", ())]
        except Exception:
            pairs = utils.getaddresses([decode_words(raw)])
    result = []
    for display, spec in pairs:
        address = clean_text(spec).strip().strip("<>").strip()
        if not _address_ok(address) or address.startswith("@"):
            continue
        display_name = _WS.sub(" ", clean_text(display or "")).strip().strip("\"'").strip()
        result.append(Mailbox(address, display_name or None))
    return result


def _parse_date(value: str) -> datetime | None:
    try:
        parsed = utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:  # pragma: no cover - older Pythons returned None
        return None
    if parsed.tzinfo is None:  # "-0000": UTC, origin time zone unknown
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed.timestamp()
    except (OverflowError, ValueError, OSError):
        return None
    return parsed


def header_date(msg: Message, name: str = "Date") -> datetime | None:
    """The timezone-aware date in header ``name``, or None if missing or unparseable."""
    raw = raw_header(msg, name)
    return None if raw is None else _parse_date(raw)


def received_date(msg: Message) -> datetime | None:
    """The date of the newest (topmost) Received header that has a readable date."""
    for raw in raw_headers(msg, "Received"):
        _, sep, when = raw.rpartition(";")
        if sep:
            parsed = _parse_date(when.strip())
            if parsed is not None:
                return parsed
    return None


def to_millis(value: datetime) -> int:
    """Milliseconds since the epoch, exact (no float rounding); naive means UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def normalize_message_id(value: str) -> str | None:
    """A Message-ID as ``<local@domain>``: trimmed, unfolded, comments dropped; None if empty."""
    if not value:
        return None
    value = clean_text(value).strip()
    match = _MSG_ID.search(value)
    if match:
        inner = _WS.sub("", match.group(1))
        return f"<{inner}>" if inner else None
    tokens = value.split()
    if len(tokens) == 1:
        token = tokens[0].strip("<>")
        return f"<{token}>" if token else None
    with_at = [t for t in tokens if "@" in t]
    return f"<{with_at[0].strip('<>')}>" if with_at else None


def message_ids(value: str) -> list[str]:
    """Every Message-ID in a References / In-Reply-To value, in order."""
    found = [f"<{_WS.sub('', m)}>" for m in _MSG_ID.findall(value) if m.strip()]
    if found:
        return found
    return [f"<{t.strip('<>')}>" for t in value.split() if "@" in t and t.strip("<>")]
