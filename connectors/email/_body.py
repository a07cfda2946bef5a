"""Splitting a parsed message into its text, its HTML and its attachments.

Text/plain and text/html leaves that are not attachments make the body
(inside multipart/alternative only the best of each kind); every other leaf
(images, PDFs, calendars, winmail.dat, forwarded message/rfc822 parts, or any
part with a filename or ``Content-Disposition: attachment``) is an attachment.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from email import policy, utils
from email.errors import MissingHeaderBodySeparatorDefect
from email.feedparser import FeedParser
from email.message import Message

from ._headers import body_charset, decode_words, header_text
from ._html import meta_charset
from ._text import clean_text, decode_bytes, decode_raw

__all__ = ["Attachment", "Body", "parse_bytes", "split_body"]

_MAX_DEPTH = 40
_BODY_TYPES = frozenset({"text/plain", "text/html"})
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f]")
_TRANSFER_ENCODINGS = frozenset({"base64", "quoted-printable"})
_TRAILING_SPACE = re.compile(rb"[ \t]+(?=\r?\n|\Z)")
_NOT_QP = re.compile(rb"=(?![0-9A-Fa-f]{2}|\r?\n|\Z)")
_FEED_BYTES = 1 << 16


@dataclass(slots=True)
class Attachment:
    data: bytes
    filename: str | None
    mime_type: str


@dataclass(slots=True)
class Body:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "application/octet-stream"


_PARAM_HEADERS = ("content-type", "content-disposition")


def _decoded_params(part: Message, root: Message) -> Message:
    """``part``, or a copy of its parameter fields with their 8-bit bytes decoded
    (as raw header fields of the message ``root`` are).

    The parser hands a field with 8-bit bytes on with each of them as U+FFFD;
    unencoded UTF-8 (RFC 6532) or legacy-charset filenames are common, and so
    are raw ISO-2022-JP ones (decoded before the parameters are split: their
    bytes may hold quotes and semicolons).
    """
    fields = [(k, v) for k, v in part.raw_items() if k.lower() in _PARAM_HEADERS]
    if all(not isinstance(v, str) or (v.isascii() and "\x1b" not in v) for _, v in fields):
        return part
    hint = body_charset(root)
    decoded = Message()
    for key, value in fields:
        decoded[key] = clean_text(decode_raw(value, hint)) if isinstance(value, str) else value
    return decoded


def _param(fields: Message, name: str, header: str) -> str | None:
    """Parameter ``name`` of ``header``; an RFC 2231 charset is read like a body's."""
    value = fields.get_param(name, None, header)
    if value is None:
        return None
    if not isinstance(value, tuple):
        return utils.collapse_rfc2231_value(value)  # unquoted as get_filename() does
    charset, _, text = value
    try:
        data = text.encode("latin-1")  # the percent-decoded bytes
    except UnicodeEncodeError:
        return text  # 8-bit text, decoded already
    return decode_bytes(data, charset or None)


def _filename(part: Message, root: Message) -> str | None:
    try:
        fields = _decoded_params(part, root)
        name = _param(fields, "filename", "content-disposition")
        if name is None:
            name = _param(fields, "name", "content-type")
    except Exception:
        name = None
    if not name:
        return None
    name = str(name).strip()
    if "=?" in name:  # RFC 2047 inside a parameter: wrong, and common
        name = decode_words(name)
    name = _UNSAFE_NAME.sub("", clean_text(name)).replace("\\", "/")
    name = name.rsplit("/", 1)[-1].strip()
    return name[:255] or None


def _disposition(part: Message) -> str | None:
    try:
        value = part.get_content_disposition()
    except Exception:
        return None
    return value.lower() if value else None


def parse_bytes(data: bytes) -> Message:
    """``data`` parsed as ``BytesParser(policy=compat32)`` does, fed a slice at a time.

    ``parsebytes`` decodes the whole message into one string and copies that
    into a StringIO at 4 bytes a character: five times the message's size in
    memory before parsing starts.
    """
    parser = FeedParser(policy=policy.compat32)
    view = memoryview(data)
    for start in range(0, len(data), _FEED_BYTES):
        parser.feed(str(view[start : start + _FEED_BYTES], "ascii", "surrogateescape"))
    return parser.close()


def _cte(part: Message) -> str:
    """The transfer encoding as ``get_payload(decode=True)`` reads it."""
    return str(part.get("content-transfer-encoding", "")).lower()


def _payload_bytes(part: Message) -> bytes:
    """The decoded bytes of a leaf, as ``get_payload(decode=True)`` gives them.

    Base64 is decoded straight from the parsed text when that decodes at all
    (then the stdlib's result is the same): the stdlib splits it into a list
    of lines and joins them first, three more copies of the part.
    """
    payload = part.get_payload()
    if isinstance(payload, str) and payload.isascii() and _cte(part) == "base64":
        try:
            return binascii.a2b_base64(payload)
        except binascii.Error:
            pass
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return b""


def _charset(part: Message) -> str | None:
    try:
        value = part.get_content_charset()
    except Exception:
        return None
    return str(value) if value else None


def _text(part: Message, ctype: str) -> str:
    """The text of a body part; HTML without a MIME charset may name its own in a
    ``<meta>`` tag, which is believed after UTF-8 (as a raw header's hint is)."""
    data, charset = _payload_bytes(part), _charset(part)
    hint = meta_charset(data) if charset is None and ctype == "text/html" else None
    text = clean_text(decode_bytes(data, charset, hint=hint))
    return text.replace("\r\n", "\n").replace("\r", "\n")


_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global", "message/news"})
"""message/* types that hold a whole message (stored as ``.eml``); other
message/* parts (delivery and read reports, ...) keep their own type."""


def _serialized(msg: Message) -> bytes | None:
    try:
        # Serialised as the default policy does (stable bytes, stable File id).
        return msg.as_bytes(policy=policy.default)
    except Exception:
        try:
            return msg.as_string().encode("utf-8", "surrogateescape")
        except Exception:
            return None


def _transfer_encoding(part: Message) -> str | None:
    value = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    return value if value in _TRANSFER_ENCODINGS else None


def _undo_transfer_encoding(text: str, encoding: str) -> bytes | None:
    """``text`` decoded from base64 or quoted-printable; None if it is not that after all.

    Strict, so that a part labelled so but sent as it is stays untouched: base64
    must validate, and in quoted-printable every ``=`` must start an escape or a
    soft line break (a raw message has ``charset=`` or ``boundary=``).
    """
    data = text.encode("utf-8", "surrogateescape")
    try:
        if encoding == "base64":
            compact = b"".join(data.split())
            return base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=True)
        data = _TRAILING_SPACE.sub(b"", data)  # added in transport (RFC 2045 6.7)
        return None if _NOT_QP.search(data) else binascii.a2b_qp(data)
    except ValueError:
        return None


def _header_lines(msg: Message) -> str:
    return "".join(f"{name}: {value}\n" for name, value in msg.raw_items())


def _message_source(msg: Message) -> str | None:
    """The text ``msg`` was parsed from, but for spaces after header colons; None if split.

    A transfer-encoded message/* part is parsed before it is decoded: base64 as
    a body without header fields, quoted-printable mostly as header fields
    (until a soft line break leaves a line that is not one).
    """
    body = msg.get_payload()
    if not isinstance(body, str):
        return None
    separated = not any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in msg.defects)
    return _header_lines(msg) + ("\n" if separated else "") + body


def _report_source(blocks: list[Message]) -> str | None:
    """The text of a report part the parser split into field groups (blank line between)."""
    texts = []
    for block in blocks:
        body = block.get_payload()
        if not isinstance(body, str):
            return None
        texts.append(_header_lines(block) + body)
    return "\n".join(texts)


def _transfer_decoded(part: Message, source: str | None) -> bytes | None:
    """The bytes of a message/* ``part`` sent base64 or quoted-printable, else None.

    RFC 2046 allows only 7bit, 8bit or binary there, but some clients and
    mailing lists encode the part anyway.  Text that is not in its declared
    encoding after all, or that decoding leaves unchanged, gives None: the
    part is then kept as it came, nothing lost.
    """
    encoding = _transfer_encoding(part)
    if encoding is None or source is None:
        return None
    decoded = _undo_transfer_encoding(source, encoding)
    if decoded is None or not decoded.strip():
        return None
    return None if decoded == source.encode("utf-8", "surrogateescape") else decoded


def _inner_message(part: Message) -> Message | None:
    """The message a message/rfc822 part holds (transfer encoding undone), if parsed."""
    payload = part.get_payload()
    if not (isinstance(payload, list) and payload and isinstance(payload[0], Message)):
        return None
    inner = payload[0]
    decoded = _transfer_decoded(part, _message_source(inner))
    try:
        return inner if decoded is None else parse_bytes(decoded)
    except Exception:
        return inner  # kept as it came, nothing lost


def _report_bytes(part: Message, ctype: str) -> bytes:
    """Every field group of a message/* report part (the parser splits them), in order.

    A transfer-encoded report is decoded and its groups read from the result,
    just as from one that was not encoded.
    """
    blocks = _children(part)
    if not blocks:
        return _payload_bytes(part)
    decoded = _transfer_decoded(part, _report_source(blocks))
    reread: list[Message] = []
    if decoded is not None:
        header = f"Content-Type: {' '.join(ctype.split())}\n\n".encode("ascii", "replace")
        try:
            reread = _children(parse_bytes(header + decoded))
        except Exception:
            reread = []  # kept as it came, nothing lost
    return b"".join(_serialized(b) or b"" for b in reread or blocks)


class _Splitter:
    def __init__(self, root: Message) -> None:
        self.root = root
        self.body = Body()

    def leaf(self, part: Message, ctype: str) -> None:
        filename = _filename(part, self.root)
        if ctype.startswith("multipart/"):  # boundary never found: keep the text
            ctype = "text/plain"
        if ctype in _BODY_TYPES and filename is None and _disposition(part) != "attachment":
            texts = self.body.plain if ctype == "text/plain" else self.body.html
            texts.append(_text(part, ctype))
            return
        self.body.attachments.append(Attachment(_payload_bytes(part), filename, ctype))

    def nested(self, part: Message) -> None:
        inner = _inner_message(part)
        filename = _filename(part, self.root)
        if filename is None:
            subject = None if inner is None else header_text(inner, "Subject")
            filename = f"{(subject or 'message')[:200]}.eml".replace("/", "_")
        data = None if inner is None else _serialized(inner)
        if data is None:
            data = _payload_bytes(part)
        self.body.attachments.append(Attachment(data, filename, "message/rfc822"))

    def report(self, part: Message, ctype: str) -> None:
        data = _report_bytes(part, ctype)
        self.body.attachments.append(Attachment(data, _filename(part, self.root), ctype))

    def alternative(self, part: Message, depth: int) -> None:
        """Keep the last (richest) plain and html version; other kinds as attachments."""
        best: dict[str, Body] = {}
        for child in _children(part):
            sub = _Splitter(self.root)
            sub.walk(child, depth + 1)
            self.body.attachments.extend(sub.body.attachments)
            self.body.problems.extend(sub.body.problems)
            if sub.body.plain:
                best["plain"] = sub.body
            if sub.body.html:
                best["html"] = sub.body
        if "plain" in best:
            self.body.plain.extend(best["plain"].plain)
        if "html" in best:
            self.body.html.extend(best["html"].html)

    def walk(self, part: Message, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            self.body.problems.append("MIME structure nested too deeply; inner parts dropped")
            return
        ctype = _content_type(part)
        try:
            if ctype in _MESSAGE_TYPES:
                self.nested(part)
            elif ctype.startswith("message/") and part.is_multipart():
                self.report(part, ctype)
            elif part.is_multipart():
                if ctype == "multipart/alternative":
                    self.alternative(part, depth)
                else:
                    for child in _children(part):
                        self.walk(child, depth + 1)
            else:
                self.leaf(part, ctype)
        except Exception as exc:
            self.body.problems.append(f"unreadable {ctype} part ({type(exc).__name__})")


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    return []


def split_body(msg: Message) -> Body:
    """Text, HTML and attachments of ``msg``; a broken part is noted in ``problems``."""
    splitter = _Splitter(msg)
    splitter.walk(msg)
    return splitter.body
