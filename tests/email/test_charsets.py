"""Charsets of real mail: stray bytes in UTF-8 text."""

from __future__ import annotations

import pytest

from connectors.email._text import decode_bytes
from connectors.email.mapping import message_records
from importer.schema import Account, EmailMessage

OWNER = Account(service="email", handle="owner@x.example", isMe=True)


def the_message(raw: bytes) -> EmailMessage:
    first = message_records(raw, owner=OWNER, source_ref="t:1")[0]
    assert isinstance(first, EmailMessage)
    return first


def test_one_bad_byte_in_a_utf8_body_loses_only_that_byte() -> None:
    raw = (
        b"Message-ID: <u8@x>\r\nSubject: hi\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + "Grüße aus Köln — bis bald\r\n".encode()
        + b"sig: caf\xe9\r\n"  # one stray Latin-1 byte (e.g. a quoted old mail)
    )
    assert the_message(raw).content == "Grüße aus Köln — bis bald\nsig: caf\ufffd\n"


def test_one_bad_byte_in_an_8bit_utf8_subject_loses_only_that_byte() -> None:
    raw = b"Message-ID: <u8s@x>\r\nSubject: " + "Grüße aus Köln".encode() + b" \xe9\r\n\r\nx\r\n"
    assert the_message(raw).subject == "Grüße aus Köln \ufffd"


@pytest.mark.parametrize(
    ("data", "charset", "expected"),
    [
        ("Grüße €".encode(), None, "Grüße €"),
        ("Grüße €".encode() + b"\xe9", None, "Grüße €\ufffd"),
        ("Grüße €".encode() + b"\xe9", "us-ascii", "Grüße €\ufffd"),
        ("é".encode() + b"\xe9\xe8", "utf-8", "é\ufffd\ufffd"),  # declared: any UTF-8 counts
        # clearly not UTF-8: the documented fallbacks, every byte kept
        ("Grüße €".encode("cp1252"), None, "Grüße €"),
        ("Grüße €".encode("cp1252"), "utf-8", "Grüße €"),
        ("é".encode() + b"\xe9\xe8", None, "Ã©éè"),  # more bad bytes than UTF-8
        (b"\x81\x8d", None, "\x81\x8d"),  # not cp1252 either: latin-1
    ],
)
def test_decode_bytes(data: bytes, charset: str | None, expected: str) -> None:
    assert decode_bytes(data, charset) == expected
