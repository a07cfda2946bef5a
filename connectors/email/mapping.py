"""One raw RFC 822 message -> the records the engine writes (shared by every source).

IMAP, mbox and Maildir all call :func:`message_records`, so one message gives
the same items and ids whichever way it was read.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from email.message import Message

from importer.model import Edge, Record, derive_id
from importer.schema import Account, EmailMessage, File, Label

from . import _headers
from ._body import Attachment, parse_bytes, split_body
from ._headers import normalize_message_id
from ._html import html_to_text

__all__ = [
    "ADDRESS_EDGES",
    "SERVICE",
    "UnusableMessage",
    "folder_label",
    "message_item_id",
    "message_records",
    "normalize_message_id",
]

SERVICE = "email"

ADDRESS_EDGES: tuple[tuple[str, str], ...] = (
    ("From", "sender"),
    ("To", "receiver"),
    ("Cc", "cc"),
    ("Bcc", "bcc"),
    ("Reply-To", "replyTo"),
)
"""Header -> edge name from the message to each address's Account."""

_HASH_HEADERS = ("Date", "From", "To", "Subject")
_WS = re.compile(r"\s+")
_HEADER_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")
_BLANK_LINE = re.compile(rb"\n\r?\n")
_HASH_SLICE = 1 << 20
_TAIL_BYTES = 4096


class UnusableMessage(Exception):
    """Nothing usable could be read from the bytes; ``str()`` is the reason."""


def folder_label(owner: Account, folder: str, role: str | None = None) -> Label:
    """The Label item for mailbox folder ``folder`` of ``owner``."""
    return Label(
        service=SERVICE,
        externalId=f"{owner.handle or ''}/{folder}",
        name=folder,
        role=role,
    )


def message_item_id(message_id: str) -> str:
    """The EmailMessage id for a Message-ID (any spelling ``normalize_message_id`` accepts)."""
    normalized = normalize_message_id(message_id)
    if normalized is None:
        raise ValueError("empty Message-ID")
    return derive_id(EmailMessage.item_type, normalized)


def _parse(raw: bytes) -> Message:
    if not raw or not raw.strip():
        raise UnusableMessage("empty message")
    first = raw.lstrip(b"\r\n").split(b"\n", 1)[0]
    if not (_HEADER_LINE.match(first) or first.startswith(b"From ")):
        raise UnusableMessage("not an RFC 822 message: it does not start with a header field")
    msg: Message
    # compat32: header fields stay raw strings (this module decodes the few it
    # reads with the modern parsers itself); the default policy would build
    # and parse a header object on every get_content_type(), get_param() and
    # get_filename() call, more than doubling the time spent per message.
    try:
        msg = parse_bytes(raw)
    except Exception as exc:
        raise UnusableMessage(f"unparseable message ({type(exc).__name__})") from None
    if not list(msg.raw_items()):
        raise UnusableMessage("not an RFC 822 message: no header fields")
    return msg


def _content_end(raw: bytes) -> int:
    """``len(raw.rstrip())``, looking at the tail only."""
    end = len(raw)
    while end:
        tail = raw[max(0, end - _TAIL_BYTES) : end]
        kept = len(tail.rstrip())
        if kept:
            return end - len(tail) + kept
        end -= len(tail)
    return 0


def _body_slices(raw: bytes) -> Iterator[bytes]:
    """The body of ``raw`` as hashed: CRLF read as LF, trailing whitespace dropped.

    A slice at a time: normalising a copy of the message, then copying its
    body out, held two more copies of a large message.
    """
    blank = _BLANK_LINE.search(raw)  # a "\n\n" once CRLF is LF
    if blank is None:
        return
    start, end = blank.end(), _content_end(raw)
    while start < end:
        stop = min(start + _HASH_SLICE, end)
        while stop < end and raw[stop - 1] == 0x0D:  # a CRLF stays whole
            stop += 1
        yield raw[start:stop].replace(b"\r\n", b"\n")
        start = stop


def _content_hash_id(msg: Message, raw: bytes) -> str:
    """Id for a message without Message-ID: its stable headers and body, hashed."""
    digest = hashlib.sha256()
    for name in _HASH_HEADERS:
        value = _headers.raw_header(msg, name) or ""
        digest.update(f"{name}:{_WS.sub(' ', value).strip()}\n".encode("utf-8", "replace"))
    digest.update(b"\n")
    for body in _body_slices(raw):
        digest.update(body)
    return derive_id(EmailMessage.item_type, "sha256:" + digest.hexdigest())


def _parent_id(msg: Message) -> str | None:
    """The Message-ID this message answers: In-Reply-To, else the last of References."""
    for name, pick in (("In-Reply-To", 0), ("References", -1)):
        for value in _headers.raw_headers(msg, name):
            ids = _headers.message_ids(value)
            if ids:
                return ids[pick]
    return None


def _has_flag(flags: Collection[str], flag: str) -> bool:
    wanted = flag.lower()
    return any(f.lower() == wanted for f in flags)


def _safe(read: Callable[[], str | None]) -> str | None:
    try:
        return read()
    except Exception:
        return None


def message_records(
    raw: bytes,
    *,
    owner: Account,
    source_ref: str,
    folder: Label | None = None,
    flags: Collection[str] = (),
    internal_date: datetime | None = None,
    max_attachment_bytes: int = 25 * 2**20,
    skip: Callable[[str, str], None] = lambda ref, reason: None,
) -> list[Record]:
    """The records for one message, in write order (see docs/email.md).

    Imports whatever can be read; raises :class:`UnusableMessage` only when
    nothing can (empty input, no header at all).  ``skip(ref, reason)`` is told
    about attachments left out for their size and parts that could not be
    read (the message is imported without them).
    """
    msg = _parse(raw)

    external_id = _safe(lambda: normalize_message_id(_headers.raw_header(msg, "Message-ID") or ""))
    parent = _safe(lambda: _parent_id(msg))
    sent = _safe_date(lambda: _headers.header_date(msg, "Date"))
    received = internal_date or _safe_date(lambda: _headers.received_date(msg))

    body = split_body(msg)
    for problem in body.problems:
        skip(source_ref, f"imported without a part: {problem}")
    html = "\n".join(body.html) if any(h.strip() for h in body.html) else None
    plain = "\n".join(body.plain)
    if plain.strip():
        content: str | None = plain
    elif html is not None:
        content = html_to_text(html)
    else:
        content = None

    message = EmailMessage(
        subject=_safe(lambda: _headers.header_text(msg, "Subject")),
        content=content,
        htmlContent=html,
        dateSent=None if sent is None else _headers.to_millis(sent),
        dateReceived=None if received is None else _headers.to_millis(received),
        externalId=external_id,
        service=SERVICE,
        starred=_has_flag(flags, "\\Flagged"),
        isRead=_has_flag(flags, "\\Seen"),
        inReplyTo=parent,
    )
    if external_id is None:
        message.id = _content_hash_id(msg, raw)
    else:
        message.id = derive_id(EmailMessage.item_type, external_id)

    records: list[Record] = [message]
    records.extend(_address_records(msg, message, owner))
    if folder is not None:
        records.append(folder)
        records.append(Edge(message, "label", folder))
    if parent is not None and parent != external_id:
        records.append(Edge(message, "message", message_item_id(parent)))
    records.extend(
        _attachment_records(body.attachments, message, source_ref, max_attachment_bytes, skip)
    )
    return records


def _safe_date(read: Callable[[], datetime | None]) -> datetime | None:
    try:
        return read()
    except Exception:
        return None


def _address_records(msg: Message, message: EmailMessage, owner: Account) -> list[Record]:
    records: list[Record] = []
    accounts: dict[str, Account] = {}
    owner_handle = (owner.handle or "").strip().lower()
    for header, edge_name in ADDRESS_EDGES:
        try:
            mailboxes = _headers.addresses(msg, header)
        except Exception:
            continue
        for mailbox in mailboxes:
            handle = mailbox.address.lower()
            account = accounts.get(handle)
            if account is None:
                if handle == owner_handle:
                    account = owner
                else:
                    account = Account(service=SERVICE, handle=handle, displayName=mailbox.name)
                accounts[handle] = account
                records.append(account)
            records.append(Edge(message, edge_name, account))
    return records


def _attachment_records(
    attachments: list[Attachment],
    message: EmailMessage,
    source_ref: str,
    max_bytes: int,
    skip: Callable[[str, str], None],
) -> list[Record]:
    records: list[Record] = []
    seen: set[str] = set()
    for attachment in attachments:
        size = len(attachment.data)
        if size > max_bytes:
            skip(
                f"{source_ref} attachment {attachment.filename or attachment.mime_type}",
                f"attachment of {size} bytes exceeds max_attachment_bytes",
            )
            continue
        payload = File.payload(
            attachment.data, filename=attachment.filename, mime_type=attachment.mime_type
        )
        if payload.sha256 in seen:
            continue
        seen.add(payload.sha256)
        records.append(payload)
        records.append(Edge(message, "attachment", payload.file))
    return records
