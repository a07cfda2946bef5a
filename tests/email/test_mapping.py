"""message_records: every field, edges, attachments, broken input, fuzzing."""

from __future__ import annotations

import base64
import hashlib
import os
import quopri
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors.email._body import parse_bytes, split_body
from connectors.email.mapping import (
    UnusableMessage,
    folder_label,
    message_item_id,
    message_records,
    normalize_message_id,
)
from connectors.email.options import EmailOptions
from importer.model import Edge, FilePayload, Record, derive_id
from importer.schema import Account, EmailMessage, File, Label

from .corpus import OWNER, make_message, message_id

OWNER_ACCOUNT = Account(service="email", handle=OWNER, isMe=True)


def records(raw: bytes, **kwargs: object) -> list[Record]:
    return message_records(raw, owner=OWNER_ACCOUNT, source_ref="test:1", **kwargs)  # type: ignore[arg-type]


def the_message(recs: list[Record]) -> EmailMessage:
    first = recs[0]
    assert isinstance(first, EmailMessage)
    return first


def edges(recs: list[Record], name: str) -> list[Edge]:
    return [r for r in recs if isinstance(r, Edge) and r.name == name]


def files(recs: list[Record]) -> list[FilePayload]:
    return [r for r in recs if isinstance(r, FilePayload)]


def meta(payload: FilePayload) -> File:
    assert isinstance(payload.file, File)
    return payload.file


def lf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


# --- ids and labels -------------------------------------------------------


def test_normalize_message_id() -> None:
    assert normalize_message_id("  <abc@def>  ") == "<abc@def>"
    assert normalize_message_id("abc@def") == "<abc@def>"
    assert normalize_message_id("<abc@def> (a comment)") == "<abc@def>"
    assert normalize_message_id("<abc\r\n @def>") == "<abc@def>"
    assert normalize_message_id("") is None
    assert normalize_message_id("   ") is None
    assert normalize_message_id("<>") is None


def test_message_item_id_matches_the_item_id() -> None:
    assert message_item_id("abc@def") == derive_id("EmailMessage", "<abc@def>")
    assert message_item_id(" <abc@def> ") == EmailMessage(externalId="<abc@def>").ensure_id()
    with pytest.raises(ValueError):
        message_item_id("  ")


def test_folder_label() -> None:
    label = folder_label(OWNER_ACCOUNT, "Archive/2024", "archive")
    assert label == Label(
        service="email", externalId=f"{OWNER}/Archive/2024", name="Archive/2024", role="archive"
    )


# --- fields ---------------------------------------------------------------


def test_plain_message_fields() -> None:
    recs = records(make_message(0), flags=["\\Seen"])
    msg = the_message(recs)
    assert msg.subject == "Quarterly report #0"
    assert msg.content == "Hello,\n\nthis is message 0. Café, naïve. ☕\n"
    assert msg.htmlContent is None
    assert msg.externalId == message_id(0)
    assert msg.id == message_item_id(message_id(0))
    assert msg.service == "email"
    assert msg.isRead is True
    assert msg.starred is False
    # Date: Fri, 01 Mar 2024 07:30:00 -0200 == 09:30 UTC
    assert msg.dateSent == int(datetime(2024, 3, 1, 9, 30, tzinfo=UTC).timestamp() * 1000)
    assert msg.dateReceived is None
    assert msg.inReplyTo is None
    assert not edges(recs, "message")


def test_flags_case_insensitive_and_flagged() -> None:
    msg = the_message(records(make_message(0), flags=["\\flagged"]))
    assert (msg.starred, msg.isRead) == (True, False)


def test_latin1_body_and_encoded_subject() -> None:
    raw = make_message(1)
    assert b"iso-8859-1" in raw
    msg = the_message(records(raw))
    assert msg.subject == "Grüße aus München #1"
    assert msg.content == "Hello,\n\nthis is message 1. Café, naïve.\n"


def test_alternative_has_text_and_html() -> None:
    msg = the_message(records(make_message(2)))
    assert msg.content == "Hello,\n\nthis is message 2. Café, naïve. ☕\n"
    assert msg.htmlContent is not None
    assert "<p>Hello,<br><br>this is message 2." in msg.htmlContent


def test_html_only_is_rendered_to_text() -> None:
    raw = make_message(
        3,
        body="x",
        html_only=True,
        extra_headers={},
    )
    msg = the_message(records(raw))
    assert msg.htmlContent is not None and "<html>" in msg.htmlContent
    assert msg.content == "x"
    html = (
        "<html><head><title>T</title><style>p {color: red}</style></head><body>"
        "<h1>Deals</h1><p>Up to <b>30%</b> off on <a href='https://x.example/g'>tools</a>."
        "</p><ul><li>One</li><li>Two &amp; three</li></ul><script>alert(1)</script>"
        "line<br>break</body></html>"
    )
    raw = lf(
        "From: a@b.example\nSubject: h\nMessage-ID: <h@b>\n"
        "Content-Type: text/html; charset=utf-8\n\n" + html + "\n"
    )
    msg = the_message(records(raw))
    assert msg.content == (
        "Deals\n\nUp to 30% off on tools <https://x.example/g>.\n\n- One\n- Two & three\n\n"
        "line\nbreak"
    )


def test_dates_timezone_and_received() -> None:
    raw = lf(
        "Received: from b by c; Tue, 02 Jan 2024 10:00:07 +0100\n"
        "Received: from a by b; Tue, 02 Jan 2024 10:00:05 +0100\n"
        "From: a@b.example\nDate: Tue, 2 Jan 2024 01:00:00 -0800\nMessage-ID: <d@b>\n\nhi\n"
    )
    msg = the_message(records(raw))
    assert msg.dateSent == int(datetime(2024, 1, 2, 9, 0, tzinfo=UTC).timestamp()) * 1000
    assert msg.dateReceived == int(datetime(2024, 1, 2, 9, 0, 7, tzinfo=UTC).timestamp()) * 1000
    internal = datetime(2024, 1, 3, 12, 0, 0, 123456, tzinfo=UTC)
    msg = the_message(records(raw, internal_date=internal))
    assert msg.dateReceived == int(datetime(2024, 1, 3, 12, tzinfo=UTC).timestamp()) * 1000 + 123


def test_bad_date_is_left_out() -> None:
    raw = lf("From: a@b.example\nDate: not a date at all\nMessage-ID: <d@b>\n\nhi\n")
    msg = the_message(records(raw))
    assert msg.dateSent is None
    assert msg.content == "hi\n"


def test_addresses_accounts_and_edges() -> None:
    raw = make_message(
        4,
        sender=("Chloé Durand", "Chloe@Corpus.Example"),
        to=[("Owner", OWNER.upper()), ("Bob", "bob@x.example")],
        cc=[("", "bob@x.example"), ("Carol", "carol@x.example")],
        extra_headers={"Reply-To": "List <list@x.example>", "Bcc": "hidden@x.example"},
    )
    recs = records(raw)
    msg = the_message(recs)
    accounts = {r.handle: r for r in recs if isinstance(r, Account)}
    assert set(accounts) == {
        "chloe@corpus.example",
        OWNER,
        "bob@x.example",
        "carol@x.example",
        "list@x.example",
        "hidden@x.example",
    }
    assert accounts["chloe@corpus.example"].displayName == "Chloé Durand"
    assert accounts[OWNER] is OWNER_ACCOUNT  # the owner's own address is the owner
    assert all(a.service == "email" for a in accounts.values())

    def targets(name: str) -> list[str]:
        found = []
        for e in edges(recs, name):
            assert e.source is msg
            assert isinstance(e.target, Account)
            assert e.target.handle is not None
            found.append(e.target.handle)
        return found

    assert targets("sender") == ["chloe@corpus.example"]
    assert targets("receiver") == [OWNER, "bob@x.example"]
    assert targets("cc") == ["bob@x.example", "carol@x.example"]
    assert targets("bcc") == ["hidden@x.example"]
    assert targets("replyTo") == ["list@x.example"]
    # each Account once, before the edges that use it
    handles = [r.handle for r in recs if isinstance(r, Account)]
    assert len(handles) == len(set(handles))


def test_record_order() -> None:
    label = folder_label(OWNER_ACCOUNT, "INBOX", "inbox")
    raw = make_message(5, reply_to=4, attachment=b"%PDF-1.4 x", attachment_name="a.pdf")
    recs = records(raw, folder=label)
    kinds = [type(r).__name__ if not isinstance(r, Edge) else f"Edge:{r.name}" for r in recs]
    assert kinds[0] == "EmailMessage"
    assert kinds.index("Label") > max(i for i, k in enumerate(kinds) if k == "Edge:receiver")
    assert kinds[kinds.index("Label") + 1] == "Edge:label"
    assert kinds.index("Edge:message") > kinds.index("Edge:label")
    assert kinds[-2:] == ["FilePayload", "Edge:attachment"]
    label_edges = edges(recs, "label")
    assert len(label_edges) == 1 and label_edges[0].target is label


def test_reply_edge_and_in_reply_to() -> None:
    recs = records(make_message(7, reply_to=3))
    msg = the_message(recs)
    assert msg.inReplyTo == message_id(3)
    (edge,) = edges(recs, "message")
    assert edge.source is msg
    assert edge.target == message_item_id(message_id(3))


def test_reply_from_references_only() -> None:
    raw = lf(
        "From: a@b.example\nMessage-ID: <c@b>\nReferences: <root@b>\n <mid@b>\n <parent@b>\n\nhi\n"
    )
    recs = records(raw)
    assert the_message(recs).inReplyTo == "<parent@b>"
    assert [e.target for e in edges(recs, "message")] == [message_item_id("<parent@b>")]


def test_in_reply_to_with_junk() -> None:
    raw = lf(
        "From: a@b.example\nMessage-ID: <c@b>\n"
        'In-Reply-To: Your message of "Mon, 1 Jan" <p@b> (comment)\n\nhi\n'
    )
    assert the_message(records(raw)).inReplyTo == "<p@b>"


def test_attachments_same_data_same_file() -> None:
    data = bytes(range(256)) * 10
    a = records(make_message(8, attachment=data, attachment_name="x.bin"))
    b = records(make_message(9, attachment=data, attachment_name="x.bin"))
    (fa,), (fb,) = files(a), files(b)
    assert fa.content == data
    assert meta(fa).filename == "x.bin"
    assert meta(fa).mimeType == "application/octet-stream"
    assert meta(fa).size == len(data)
    assert fa.file.ensure_id() == fb.file.ensure_id()
    (edge,) = edges(a, "attachment")
    assert edge.target is fa.file and edge.source is a[0]


def test_same_attachment_twice_in_one_message_is_one_file() -> None:
    boundary = "BOUNDARY"
    att = base64.b64encode(b"same bytes").decode()
    part = (
        f"--{boundary}\nContent-Type: application/pdf; name=a.pdf\n"
        f"Content-Disposition: attachment; filename=a.pdf\n"
        f"Content-Transfer-Encoding: base64\n\n{att}\n"
    )
    raw = lf(
        f"From: a@b.example\nMessage-ID: <t@b>\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
        f"--{boundary}\nContent-Type: text/plain\n\nsee attached\n"
        + part
        + part
        + f"--{boundary}--\n"
    )
    recs = records(raw)
    assert the_message(recs).content == "see attached"
    assert [f.content for f in files(recs)] == [b"same bytes"]
    assert len(edges(recs, "attachment")) == 1


def pct(text: str, codec: str) -> bytes:
    return "".join(f"%{b:02X}" for b in text.encode(codec)).encode("ascii")


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        (b'attachment; filename="=?utf-8?q?R=C3=A9sum=C3=A9.pdf?="', "R\u00e9sum\u00e9.pdf"),
        (b"attachment; filename*=utf-8''R%C3%A9sum%C3%A9.pdf", "R\u00e9sum\u00e9.pdf"),
        (b'attachment; filename="plain name.pdf"', "plain name.pdf"),
        (b"attachment; filename*0*=utf-8''%E2%82%AC; filename*1*=%20rates; filename*2=.pdf",
         "\u20ac rates.pdf"),
        # 8-bit bytes, unencoded (RFC 6532 allows UTF-8; older clients sent their charset)
        ('attachment; filename="Pr\u00e4sentation \u5831\u544a.pdf"'.encode(),
         "Pr\u00e4sentation \u5831\u544a.pdf"),
        ('attachment; filename="Pr\u00e4sentation.pdf"'.encode("latin-1"), "Pr\u00e4sentation.pdf"),
        # RFC 2231 charsets read like a body's: mislabelled, unknown, missing
        (b"attachment; filename*=gb2312''" + pct("\u9555\u57fa.pdf", "gbk"), "\u9555\u57fa.pdf"),
        (b"attachment; filename*=ks_c_5601-1987''" + pct("\ub620\ubc29.pdf", "cp949"),
         "\ub620\ubc29.pdf"),
        (b"attachment; filename*=utf-8''R%E9sum%E9.pdf", "R\u00e9sum\u00e9.pdf"),
        (b"attachment; filename*=x-unknown''R%C3%A9sum%C3%A9.pdf", "R\u00e9sum\u00e9.pdf"),
        (b"attachment; filename*=''%E2%82%AC.pdf", "\u20ac.pdf"),
    ],
)  # fmt: skip
def test_attachment_filenames_are_decoded(disposition: bytes, expected: str) -> None:
    raw = (
        lf(
            "From: a@b.example\nMessage-ID: <f@b>\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="B"\n\n'
            "--B\nContent-Type: text/plain\n\nsee attached\n"
            "--B\nContent-Type: application/pdf\nContent-Disposition: "
        )
        + disposition
        + lf("\nContent-Transfer-Encoding: base64\n\nJVBERi0=\n--B--\n")
    )
    (payload,) = files(records(raw))
    assert meta(payload).filename == expected
    assert payload.content == b"%PDF-"


def test_an_8bit_name_in_the_content_type_is_decoded() -> None:
    raw = lf(
        "From: a@b.example\nMessage-ID: <n8@b>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nsee attached\n"
        '--B\nContent-Type: application/pdf; name="\u5831\u544a.pdf"\n\n%PDF-\n--B--\n'
    )
    (payload,) = files(records(raw))
    assert meta(payload).filename == "\u5831\u544a.pdf"
    assert meta(payload).mimeType == "application/pdf"


@pytest.mark.parametrize(
    "value",
    [
        '"Alice Example" <alice@example.com>, =?utf-8?q?J=C3=B6rg?= <jorg@example.org>',
        '"Smith, John" <js@example.org>, bob@example.com',
        "=?utf-8?Q?M=C3=BCller=2C_Hans?= <hm@example.de>",
        '"quoted \\"name\\"" <q@example.org>',
        "a@example.com (a comment)",
        "friends: a@example.com, B <b@example.com>;",
        '"alice@example.com" <alice@example.com>',
        "José <jose@example.com>",
    ],
)
def test_address_lists_read_as_the_full_parser_reads_them(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.email import _headers

    quick = _headers._parse_addresses("To", value)
    monkeypatch.setattr(_headers, "_plain_pairs", lambda raw: None)  # the full parser only
    assert quick == _headers._parse_addresses("To", value)
    assert quick and all("@" in m.address for m in quick)


def test_inline_image_in_related_and_nested_message() -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    raw = lf(
        "From: a@b.example\nMessage-ID: <n@b>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="M"\n\n'
        '--M\nContent-Type: multipart/related; boundary="R"\n\n'
        '--R\nContent-Type: text/html; charset="utf-8"\n\n<p>look <img src="cid:i1"></p>\n'
        "--R\nContent-Type: image/png\nContent-ID: <i1>\nContent-Transfer-Encoding: base64\n\n"
        f"{png}\n--R--\n"
        "--M\nContent-Type: message/rfc822\n\n"
        "From: inner@b.example\nSubject: Forwarded one\nMessage-ID: <inner@b>\n\ninner body\n"
        "--M\nContent-Type: application/ms-tnef; name=winmail.dat\n"
        "Content-Transfer-Encoding: base64\n\neJ8+IgEAAA==\n--M--\n"
    )
    recs = records(raw)
    msg = the_message(recs)
    assert msg.content == "look"
    by_type = {meta(f).mimeType: f for f in files(recs)}
    assert set(by_type) == {"image/png", "message/rfc822", "application/ms-tnef"}
    assert by_type["image/png"].content == b"\x89PNG\r\n\x1a\nfake"
    assert meta(by_type["message/rfc822"]).filename == "Forwarded one.eml"
    assert b"inner body" in bytes(by_type["message/rfc822"].content)  # type: ignore[arg-type]
    assert meta(by_type["application/ms-tnef"]).filename == "winmail.dat"
    # the forwarded message's own id is not this message's
    assert msg.externalId == "<n@b>"


DELIVERY_REPORT = lf(
    "Reporting-MTA: dns; mx.example.org\n\n"
    "Final-Recipient: rfc822; nobody@example.com\nAction: failed\nStatus: 5.1.1\n"
    "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n\n"
    "Final-Recipient: rfc822; other@example.com\nAction: delayed\nStatus: 4.2.2\n\n"
)


def bounce(part_headers: str, report: bytes) -> bytes:
    return (
        lf(
            "Message-ID: <dsn@b>\nFrom: MAILER-DAEMON@mx.example.org\nSubject: Undelivered\n"
            "MIME-Version: 1.0\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n'
            "\n--b\nContent-Type: text/plain\n\nYour message could not be delivered.\n"
            f"--b\nContent-Type: message/delivery-status\n{part_headers}\n"
        )
        + report
        + b"--b--\r\n"
    )


def test_bounce_keeps_its_whole_delivery_report() -> None:
    recs = records(bounce("", DELIVERY_REPORT))
    assert the_message(recs).content == "Your message could not be delivered."
    (report,) = files(recs)
    assert (meta(report).mimeType, meta(report).filename) == ("message/delivery-status", None)
    assert report.content == DELIVERY_REPORT.replace(b"\r\n", b"\n")


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [("base64", b64), ("quoted-printable", lambda data: quopri.encodestring(data))],
)
def test_transfer_encoded_delivery_report_is_read_decoded(
    encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    """Some MTAs encode the report; its field groups are those of the decoded text.

    A diagnostic longer than a quoted-printable line is split by a soft line break.
    """
    long_diagnostic = DELIVERY_REPORT.replace(
        b"User unknown", b"<nobody@example.com>: Recipient address rejected: User unknown"
    )
    raw = bounce(f"Content-Transfer-Encoding: {encoding}\n", encode(long_diagnostic))
    (report,) = files(records(raw))
    (unencoded,) = files(records(bounce("", long_diagnostic)))
    assert meta(report).mimeType == "message/delivery-status"
    assert report.content == unencoded.content
    assert b"rejected: User unknown" in bytes(report.content)  # type: ignore[arg-type]
    assert bytes(report.content).count(b"Final-Recipient:") == 2  # type: ignore[arg-type]


def test_read_receipt_keeps_its_report_and_its_type() -> None:
    raw = lf(
        "Message-ID: <mdn@b>\nFrom: b@b.example\nMIME-Version: 1.0\nContent-Type: multipart/report;"
        ' report-type=disposition-notification; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nYour message was displayed.\n"
        "--b\nContent-Type: message/disposition-notification\n\n"
        "Final-Recipient: rfc822; b@b.example\nDisposition: manual-action/MDN-sent-manually;"
        " displayed\n\n--b--\n"
    )
    (report,) = files(records(raw))
    assert meta(report).mimeType == "message/disposition-notification"
    assert report.content == (
        b"Final-Recipient: rfc822; b@b.example\n"
        b"Disposition: manual-action/MDN-sent-manually; displayed\n\n"
    )


def forwarded(part_headers: str, body: bytes) -> bytes:
    return (
        lf(
            "From: a@b.example\nMessage-ID: <fw@b>\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="M"\n\n'
            "--M\nContent-Type: text/plain\n\nsee forwarded\n"
            f"--M\nContent-Type: message/rfc822\n{part_headers}\n"
        )
        + body
        + b"--M--\r\n"
    )


def test_base64_forwarded_message_is_stored_decoded() -> None:
    inner = lf("From: inner@b.example\nSubject: Forwarded one\nMessage-ID: <in@b>\n\ninner body\n")
    (payload,) = files(records(forwarded("Content-Transfer-Encoding: base64\n", b64(inner))))
    assert meta(payload).filename == "Forwarded one.eml"
    assert payload.content == inner.replace(b"\r\n", b"\n")


def test_forwarded_message_that_is_not_base64_after_all_is_kept_as_it_came() -> None:
    raw = forwarded("Content-Transfer-Encoding: base64\n", b"not base64: @@@ !!!\r\n")
    (payload,) = files(records(raw))
    assert meta(payload).mimeType == "message/rfc822"
    assert b"not base64: @@@ !!!" in bytes(payload.content)  # type: ignore[arg-type]


def test_quoted_printable_forwarded_message_is_stored_decoded() -> None:
    """Stored as the same message sent unencoded would be (one File), though a soft
    line break splits a header field and the body has escapes."""
    inner = lf(
        "From: inner@b.example\nSubject: =?utf-8?q?Caf=C3=A9?= " + "and more " * 8 + "\n"
        'Message-ID: <in@b>\nContent-Type: text/plain; charset="utf-8"\n\n'
        "caf\u00e9 = 1 \u20ac\n"
    )
    encoded = quopri.encodestring(inner)
    assert b"=\r\n" in encoded.split(b"\r\n\r\n")[0]  # a soft break in the header
    (payload,) = files(records(forwarded("Content-Transfer-Encoding: quoted-printable\n", encoded)))
    (plain,) = files(records(forwarded("", inner)))
    assert meta(payload).filename == "Caf\u00e9" + " and more" * 8 + ".eml"
    assert payload.content == plain.content
    assert "caf\u00e9 = 1 \u20ac".encode() in bytes(payload.content)  # type: ignore[arg-type]


def test_forwarded_message_that_is_not_quoted_printable_after_all_is_kept_as_it_came() -> None:
    inner = lf('From: i@b.example\nContent-Type: text/plain; charset="utf-8"\n\nx=3D1\n')
    (payload,) = files(records(forwarded("Content-Transfer-Encoding: quoted-printable\n", inner)))
    (plain,) = files(records(forwarded("", inner)))
    assert payload.content == plain.content
    assert b"x=3D1" in bytes(payload.content)  # type: ignore[arg-type]


def test_attachment_over_limit_is_skipped_and_reported() -> None:
    skipped: list[tuple[str, str]] = []
    recs = records(
        make_message(10, attachment=b"x" * 2000, attachment_name="big.bin"),
        max_attachment_bytes=1000,
        skip=lambda ref, reason: skipped.append((ref, reason)),
    )
    assert files(recs) == []
    assert not edges(recs, "attachment")
    assert skipped == [
        ("test:1 attachment big.bin", "attachment of 2000 bytes exceeds max_attachment_bytes")
    ]


def test_parts_that_cannot_be_read_are_reported_not_dropped_silently() -> None:
    skipped: list[tuple[str, str]] = []
    inner = b"Content-Type: text/plain\r\n\r\ndeepest text\r\n"
    for level in range(45):  # deeper than any real mail: the inner parts are dropped
        inner = (
            f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'.encode()
            + inner
            + f"\r\n--b{level}--\r\n".encode()
        )
    raw = b"Message-ID: <deep@x>\r\nSubject: nested\r\n" + inner
    recs = records(raw, skip=lambda ref, reason: skipped.append((ref, reason)))
    assert the_message(recs).subject == "nested"
    assert skipped == [
        ("test:1", "imported without a part: MIME structure nested too deeply; inner parts dropped")
    ]


def test_missing_message_id_uses_a_content_hash() -> None:
    raw = make_message(11, with_message_id=False)
    msg = the_message(records(raw))
    assert msg.externalId is None
    assert msg.id is not None and len(msg.id) == 32
    # stable across line endings and the trailing blank line an mbox adds
    again = the_message(records(raw.replace(b"\r\n", b"\n") + b"\n"))
    assert again.id == msg.id
    other = the_message(records(make_message(12, with_message_id=False)))
    assert other.id != msg.id


# --- large messages -------------------------------------------------------


def _with_attachment(body: bytes, encoding: str, *, message_id: bool = True) -> bytes:
    head = "Message-ID: <big@x>\r\n" if message_id else ""
    return (
        (
            f'{head}Subject: big\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n'
            "--B\r\nContent-Type: text/plain\r\n\r\nsee the file\r\n"
            "--B\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n"
            "Content-Disposition: attachment; filename=big.bin\r\n\r\n"
        ).encode()
        + body
        + b"\r\n--B--\r\n"
    )


@pytest.mark.parametrize("message_id", [True, False], ids=["message-id", "content hash"])
def test_a_large_message_is_mapped_in_under_three_times_its_size(message_id: bool) -> None:
    """Parsing decoded the whole message into one string, copied that into a
    StringIO at 4 bytes a character, and base64 went through a list of lines:
    about 7.7 times the message at its peak."""
    data = os.urandom(4 * 2**20)
    raw = _with_attachment(b64(data), "base64", message_id=message_id)
    tracemalloc.start()
    try:
        recs = records(raw, max_attachment_bytes=2 * len(data))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    [payload] = files(recs)
    assert payload.content == data
    assert peak < 3 * len(raw), f"{peak / len(raw):.1f} times the message"


_BASE64ISH = st.text(alphabet="QUJDRA+/=\r\n *-", max_size=40)


@settings(max_examples=400, deadline=None)
@given(_BASE64ISH)
def test_base64_reads_as_the_stdlib_reads_it(text: str) -> None:
    """Decoded without the stdlib's copies: the same bytes."""
    raw = _with_attachment(text.encode(), "base64")
    expected = BytesParser(policy=policy.compat32).parsebytes(raw).get_payload(1)
    assert isinstance(expected, Message)
    expected_data = expected.get_payload(decode=True)
    assert isinstance(expected_data, bytes)
    msg = parse_bytes(raw)
    [attachment] = split_body(msg).attachments
    assert attachment.data == expected_data


def _documented_content_hash(raw: bytes) -> str:
    """The id docs/email.md gives a message without Message-ID (only a Subject here)."""
    _, sep, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    digest = hashlib.sha256(b"Date:\nFrom:\nTo:\nSubject:s\n\n" + (body.rstrip() if sep else b""))
    return derive_id(EmailMessage.item_type, "sha256:" + digest.hexdigest())


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([b"\n", b"\r\n"]),
    st.sampled_from([b"", b"\n", b"\r\n", b"\n\r\n", b"\r\n\n", b"\r\n\r\n"]),
    st.binary(max_size=60).map(lambda b: b.replace(b"\x00", b"\r")),
    st.integers(0, 9000),
)
def test_the_content_hash_reads_the_body_as_documented(
    eol: bytes, blank: bytes, body: bytes, trailing: int
) -> None:
    raw = b"Subject: s" + eol + b"X-A: 1" + blank + body + b" \r\n\t" * (trailing // 3)
    assert the_message(records(raw)).id == _documented_content_hash(raw)


# --- messy input ----------------------------------------------------------


def test_unknown_and_wrong_charsets() -> None:
    raw = (
        b"From: =?x-bogus?q?J=F6rg?= <j@b.example>\r\nSubject: =?unknown-8bit?q?caf=E9?=\r\n"
        b"Message-ID: <cs@b>\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        b"gr\xc3\xbc\xc3\x9fe\r\n"
    )
    recs = records(raw)
    msg = the_message(recs)
    assert msg.content == "grüße\n"  # declared us-ascii, really UTF-8
    assert msg.subject is not None and msg.subject.startswith("caf")
    sender = edges(recs, "sender")[0].target
    assert isinstance(sender, Account) and sender.handle == "j@b.example"


def test_eight_bit_headers() -> None:
    raw = "From: Jörg Müller <j@b.example>\nSubject: Grüße\nMessage-ID: <8@b>\n\nx\n"
    recs = records(raw.encode("utf-8"))
    assert the_message(recs).subject == "Grüße"
    sender = edges(recs, "sender")[0].target
    assert isinstance(sender, Account) and sender.displayName == "Jörg Müller"
    recs = records(raw.encode("latin-1"))
    assert the_message(recs).subject == "Grüße"


def test_duplicated_headers_use_the_first() -> None:
    raw = lf(
        "From: a@b.example\nSubject: first\nSubject: second\n"
        "Message-ID: <one@b>\nMessage-ID: <two@b>\n\nx\n"
    )
    msg = the_message(records(raw))
    assert (msg.subject, msg.externalId) == ("first", "<one@b>")


def test_broken_boundary_keeps_the_text() -> None:
    raw = lf(
        "From: a@b.example\nMessage-ID: <bb@b>\n"
        'Content-Type: multipart/mixed; boundary="NOPE"\n\n--OTHER\n\nsome text\n'
    )
    msg = the_message(records(raw))
    assert msg.content is not None and "some text" in msg.content


def test_huge_header_and_garbage_addresses() -> None:
    raw = lf(
        'From: <<<@@@>>>, "unterminated <x@\nTo: undisclosed-recipients:;\n'
        f"Subject: {'x' * 200_000}\nMessage-ID: <hh@b>\n\nbody\n"
    )
    recs = records(raw)
    msg = the_message(recs)
    assert msg.subject is not None and 1000 < len(msg.subject) <= 70_000
    assert not edges(recs, "receiver")


def test_nul_bytes_are_removed() -> None:
    msg = the_message(records(b"From: a@b.example\r\nSubject: a\x00b\r\n\r\nx\x00y\r\n"))
    assert (msg.subject, msg.content) == ("ab", "xy\n")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty message"),
        (b"  \r\n\r\n", "empty message"),
        (b"\x00\x01\x02 binary junk \xff\xfe", "not an RFC 822 message"),
        (b"just some words\nand more\n", "not an RFC 822 message"),
    ],
)
def test_unusable(raw: bytes, reason: str) -> None:
    with pytest.raises(UnusableMessage, match=reason):
        records(raw)


def test_header_only_message_is_usable() -> None:
    msg = the_message(records(b"Subject: only a subject\r\n"))
    assert msg.subject == "only a subject"
    assert msg.content is None


# --- options --------------------------------------------------------------


def test_options_defaults_and_validation(tmp_path: Path) -> None:
    opts = EmailOptions(source="imap", host="mail.example", username="me@example")
    assert (opts.port, opts.address, opts.chunk_size) == (993, "me@example", 500)
    assert EmailOptions(source="imap", host="h", username="u", security="starttls").port == 143
    mbox = EmailOptions(source="mbox", path=tmp_path / "x.mbox")
    assert mbox.address == f"mbox:{tmp_path / 'x.mbox'}"
    home = EmailOptions(source="maildir", path=Path("~/Maildir"))
    assert home.path is not None and home.path.is_absolute() and "~" not in str(home.path)
    with pytest.raises(ValidationError, match="source 'imap' needs host and username"):
        EmailOptions(source="imap")
    with pytest.raises(ValidationError, match="needs path"):
        EmailOptions(source="maildir")
    with pytest.raises(ValidationError, match="only one password source"):
        EmailOptions(source="imap", host="h", username="u", password_env="A", password_command="b")
    with pytest.raises(ValidationError, match="Extra inputs"):
        EmailOptions.model_validate({"source": "mbox", "path": "/x", "colour": 1})


def test_options_refuse_a_password_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as info:
        EmailOptions.model_validate(
            {"source": "imap", "host": "h", "username": "u", "password": "hunter2-secret"}
        )
    assert "passwords never go in the config" in str(info.value)
    assert "hunter2-secret" not in str(info.value)
    assert "hunter2-secret" not in repr(info.value)


# --- robustness -----------------------------------------------------------


def _stdlib_email_messages() -> list[Path]:
    try:
        import test.test_email as stdlib_tests  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return []
    data = Path(stdlib_tests.__file__).parent / "data"
    return sorted(data.glob("msg_*.txt"))


STDLIB_MESSAGES = _stdlib_email_messages()


@pytest.mark.skipif(not STDLIB_MESSAGES, reason="the stdlib email test data is not installed")
def test_stdlib_email_corpus() -> None:
    mapped = 0
    for path in STDLIB_MESSAGES:
        try:
            recs = records(path.read_bytes())
        except UnusableMessage as exc:
            assert str(exc), path
            continue
        assert isinstance(recs[0], EmailMessage), path
        for rec in recs:
            if isinstance(rec, EmailMessage | Account | Label):
                rec.to_pod()  # valid for the Pod (ids derive, values serialize)
        mapped += 1
    assert mapped >= len(STDLIB_MESSAGES) - 2


_header_names = st.sampled_from(
    ["From", "To", "Cc", "Bcc", "Reply-To", "Subject", "Date", "Message-ID", "In-Reply-To",
     "References", "Received", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
     "MIME-Version", "X-Whatever"]
)  # fmt: skip
_charsets = st.sampled_from(["utf-8", "iso-8859-1", "koi8-r", "bogus", "us-ascii", "gb2312", ""])
_ctypes = st.sampled_from(
    ["text/plain", "text/html", "image/png", "application/pdf", "message/rfc822",
     "multipart/mixed", "multipart/alternative", "text/calendar"]
)  # fmt: skip
_encodings = st.sampled_from(["base64", "quoted-printable", "8bit", "7bit", "x-uuencode", "junk"])
_text = st.text(max_size=60)


@st.composite
def _header_value(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 3))
    text = draw(_text)
    if kind == 0:
        return text.encode("utf-8", "surrogatepass")
    if kind == 1:
        cs = draw(_charsets) or "utf-8"
        payload = base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()
        return f"=?{cs}?b?{payload}?= {text[:5]}".encode("utf-8", "surrogatepass")
    if kind == 2:
        return draw(st.binary(max_size=40)).replace(b"\n", b" ").replace(b"\r", b" ")
    addrs = draw(st.lists(st.tuples(_text, st.from_regex(r"[a-z.]{0,6}@?[a-z.]{0,6}")), max_size=3))
    return ", ".join(f'"{n}" <{a}>' for n, a in addrs).encode("utf-8", "surrogatepass")


@st.composite
def _part(draw: st.DrawFn, depth: int = 0) -> bytes:
    ctype = draw(_ctypes)
    lines = [f"Content-Type: {ctype}; charset={draw(_charsets)}".encode()]
    if draw(st.booleans()):
        lines.append(f"Content-Transfer-Encoding: {draw(_encodings)}".encode())
    if draw(st.booleans()):
        lines.append(b"Content-Disposition: attachment; filename=" + draw(_header_value()))
    if ctype.startswith("multipart/") and depth < 3:
        boundary = draw(st.sampled_from(["b1", "b2", "=_x", ""]))
        lines[0] = f'Content-Type: {ctype}; boundary="{boundary}"'.encode()
        children = draw(st.lists(_part(depth + 1), max_size=3))
        body = b"".join(b"--" + boundary.encode() + b"\n" + c + b"\n" for c in children)
        if draw(st.booleans()):
            body += b"--" + boundary.encode() + b"--\n"
    elif ctype == "message/rfc822" and depth < 3:
        body = draw(_message(depth + 1))
    else:
        body = draw(st.binary(max_size=200)) if draw(st.booleans()) else draw(_text).encode()
    return b"\n".join(lines) + b"\n\n" + body


@st.composite
def _message(draw: st.DrawFn, depth: int = 0) -> bytes:
    headers = draw(st.lists(st.tuples(_header_names, _header_value()), min_size=1, max_size=8))
    head = b"\n".join(name.encode() + b": " + value for name, value in headers)
    return head + b"\n" + draw(_part(depth))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_message())
def test_fuzz_only_unusable_message_escapes(raw: bytes) -> None:
    try:
        recs = records(raw, max_attachment_bytes=100)
    except UnusableMessage as exc:
        assert str(exc)
        return
    msg = the_message(recs)
    assert msg.id is not None
    msg.to_pod()
    for rec in recs:
        if isinstance(rec, FilePayload):
            assert rec.size is not None and rec.size <= 100


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    try:
        recs = records(raw)
    except UnusableMessage:
        return
    assert isinstance(recs[0], EmailMessage)


def _shape(msg: object) -> object:
    if not isinstance(msg, Message):
        return msg
    payload = msg.get_payload()
    inner = [_shape(p) for p in payload] if isinstance(payload, list) else payload
    defects = [type(d).__name__ for d in msg.defects]
    return list(msg.raw_items()), msg.preamble, msg.epilogue, defects, inner


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_message(), st.binary(max_size=300)))
def test_messages_parse_as_the_stdlib_parses_them(raw: bytes) -> None:
    expected = BytesParser(policy=policy.compat32).parsebytes(raw)
    assert _shape(parse_bytes(raw)) == _shape(expected)
