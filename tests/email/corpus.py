"""Varied, deterministic test messages for the email tests and benchmarks.

``make_message(i)`` gives message number ``i``; its shape (plain, HTML-only,
alternative, non-ASCII subject, Latin-1 body, ...) rotates with ``i`` so a
range of numbers exercises the mapping broadly.  Mailbox writers build mbox
files and Maildirs from such messages.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.policy import SMTP, default
from pathlib import Path

__all__ = [
    "DOMAIN",
    "OWNER",
    "address_of",
    "deliver_maildir",
    "make_mbox",
    "make_message",
    "message_id",
    "sent_date",
]

DOMAIN = "corpus.example"
OWNER = f"owner@{DOMAIN}"
_NAMES = ["Alice Martin", "Bob Okafor", "Chloé Durand", "Dmitri Иванов", "Eve 陳", "Frank O'Neil"]
_SUBJECTS = [
    "Quarterly report",
    "Grüße aus München",
    "Re: lunch?",
    "Über die Planung 🚀",
    "Résumé attached",
    "Meeting notes",
]
_BASE_DATE = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
_counter = itertools.count()


def message_id(i: int) -> str:
    """The Message-ID of message ``i`` (with angle brackets)."""
    return f"<msg{i}@{DOMAIN}>"


def address_of(i: int) -> tuple[str, str]:
    """(display name, address) of correspondent ``i``."""
    name = _NAMES[i % len(_NAMES)]
    return name, f"user{i % len(_NAMES)}@{DOMAIN}"


def sent_date(i: int) -> datetime:
    """The Date of message ``i``: one hour apart, in varying time zones."""
    offset = timedelta(hours=(i % 5) - 2)
    return (_BASE_DATE + timedelta(hours=i)).astimezone(timezone(offset))


def make_message(
    i: int,
    *,
    reply_to: int | None = None,
    attachment: bytes | None = None,
    attachment_name: str = "data.bin",
    attachment_type: str = "application/octet-stream",
    html_only: bool | None = None,
    alternative: bool | None = None,
    subject: str | None = None,
    body: str | None = None,
    with_message_id: bool = True,
    sender: tuple[str, str] | None = None,
    to: list[tuple[str, str]] | None = None,
    cc: list[tuple[str, str]] | None = None,
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """Message number ``i`` as RFC 822 bytes (CRLF line ends, as IMAP serves them).

    Unless overridden, ``i % 4`` picks the shape: 0 plain UTF-8, 1 Latin-1
    plain, 2 multipart/alternative, 3 HTML only.
    """
    shape = i % 4
    if html_only is None:
        html_only = shape == 3 and alternative is not True
    if alternative is None:
        alternative = shape == 2
    name, addr = sender or address_of(i)
    msg = EmailMessage(policy=default)
    msg["From"] = f"{name} <{addr}>" if name else addr
    recipients = to if to is not None else [("Owner", OWNER)]
    msg["To"] = ", ".join(f"{n} <{a}>" if n else a for n, a in recipients)
    if cc:
        msg["Cc"] = ", ".join(f"{n} <{a}>" if n else a for n, a in cc)
    the_subject = subject if subject is not None else f"{_SUBJECTS[i % len(_SUBJECTS)]} #{i}"
    if reply_to is not None and subject is None:
        the_subject = f"Re: {the_subject}"
    msg["Subject"] = the_subject
    msg["Date"] = sent_date(i)
    if with_message_id:
        msg["Message-ID"] = message_id(i)
    if reply_to is not None:
        msg["In-Reply-To"] = message_id(reply_to)
        msg["References"] = f"<root@{DOMAIN}> {message_id(reply_to)}"
    for key, value in (extra_headers or {}).items():
        msg[key] = value
    sign = "" if shape == 1 else " ☕"
    text = body if body is not None else f"Hello,\n\nthis is message {i}. Café, naïve.{sign}\n"
    html = f"<html><body><p>{text.replace(chr(10), '<br>')}</p></body></html>"
    if html_only:
        msg.set_content(html, subtype="html")
    elif shape == 1 and not alternative:
        msg.set_content(text, charset="iso-8859-1" if _latin1(text) else "utf-8")
    else:
        msg.set_content(text)
        if alternative:
            msg.add_alternative(html, subtype="html")
    if attachment is not None:
        maintype, _, subtype = attachment_type.partition("/")
        msg.add_attachment(attachment, maintype=maintype, subtype=subtype, filename=attachment_name)
    return msg.as_bytes(policy=SMTP)


def _latin1(text: str) -> bool:
    try:
        text.encode("iso-8859-1")
    except UnicodeEncodeError:
        return False
    return True


def make_mbox(messages: list[bytes], *, statuses: list[str] | None = None) -> bytes:
    """An mboxrd file of ``messages`` (LF line ends, ``From `` lines escaped).

    ``statuses`` gives each message a ``Status:`` header value (e.g. ``"RO"``).
    """
    out = bytearray()
    for n, raw in enumerate(messages):
        data = raw.replace(b"\r\n", b"\n")
        if statuses and statuses[n]:
            data = f"Status: {statuses[n]}\n".encode() + data
        lines = []
        for line in data.split(b"\n"):
            if line.lstrip(b">").startswith(b"From "):
                line = b">" + line
            lines.append(line)
        when = (_BASE_DATE + timedelta(minutes=n)).strftime("%a %b %d %H:%M:%S %Y")
        out += f"From sender{n}@{DOMAIN} {when}\n".encode()
        out += b"\n".join(lines).rstrip(b"\n") + b"\n\n"
    return bytes(out)


def deliver_maildir(
    root: Path,
    raw: bytes,
    *,
    folder: str | None = None,
    flags: str | None = None,
    mtime: datetime | None = None,
) -> Path:
    """Put ``raw`` into Maildir ``root`` (``folder`` = Maildir++ name without the dot).

    ``flags`` None delivers to ``new/``; a string (``"S"``, ``"FS"``, ``""``)
    puts it in ``cur/`` with that ``:2,`` info.
    """
    base = root if folder is None else root / f".{folder}"
    for sub in ("cur", "new", "tmp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    unique = f"{1700000000 + next(_counter)}.M{next(_counter)}P{os.getpid()}.corpus"
    tmp = base / "tmp" / unique
    tmp.write_bytes(raw)
    if mtime is not None:
        stamp = mtime.timestamp()
        os.utime(tmp, (stamp, stamp))
    target = base / "new" / unique if flags is None else base / "cur" / f"{unique}:2,{flags}"
    tmp.rename(target)
    return target
