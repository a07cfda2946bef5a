"""Charsets of real mail: mislabelled encoded words, stray bytes in UTF-8 text."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.email._text import charset_codec, clean_text, decode_bytes
from connectors.email.mapping import message_records
from importer.model import Edge, FilePayload
from importer.schema import Account, EmailMessage, File

OWNER = Account(service="email", handle="owner@x.example", isMe=True)

MISLABELLED = [
    ("gb2312", "gbk", "朱镕基访问"),  # 镕 is GBK, not GB2312: the usual mislabel
    ("iso-8859-8-i", "iso-8859-8", "שלום עולם"),  # Outlook's Hebrew label
    ("windows-874", "cp874", "สวัสดี"),  # Thai
    ("ks_c_5601-1987", "cp949", "똠방각하"),  # Korean Outlook (cp949 really)
]


def the_message(raw: bytes) -> EmailMessage:
    first = message_records(raw, owner=OWNER, source_ref="t:1")[0]
    assert isinstance(first, EmailMessage)
    return first


@pytest.mark.parametrize(("label", "codec", "text"), MISLABELLED)
def test_encoded_subject_decodes_like_the_body(label: str, codec: str, text: str) -> None:
    word = base64.b64encode(text.encode(codec)).decode()
    raw = (
        f"Message-ID: <cs@x>\r\nSubject: Re: =?{label}?B?{word}?=\r\n"
        f"Content-Type: text/plain; charset={label}\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        f"{word}\r\n"
    ).encode()
    msg = the_message(raw)
    assert msg.content == text  # the body, same bytes and label
    assert msg.subject == f"Re: {text}"


@pytest.mark.parametrize(("label", "codec", "text"), MISLABELLED)
@pytest.mark.parametrize("group", [False, True], ids=["list", "group"])
def test_encoded_display_names_decode_like_the_body(
    label: str, codec: str, text: str, group: bool
) -> None:
    """Both address readers: the quick one, and the full parser (taken for groups)."""
    word = base64.b64encode(text.encode(codec)).decode()
    value = f"=?{label}?B?{word}?= <a@x.example>, b@x.example"
    raw = f"Message-ID: <dn@x>\r\nTo: {'team: ' + value + ';' if group else value}\r\n\r\nx\r\n"
    recs = message_records(raw.encode(), owner=OWNER, source_ref="t:1")
    names = [
        (e.target.handle, e.target.displayName)
        for e in recs
        if isinstance(e, Edge) and e.name == "receiver" and isinstance(e.target, Account)
    ]
    assert names == [("a@x.example", text), ("b@x.example", None)]


def test_encoded_word_in_utf8_with_latin1_bytes_reads_as_latin1() -> None:
    raw = b"Message-ID: <l1@x>\r\nSubject: =?utf-8?q?caf=E9?= ok\r\n\r\nx\r\n"
    assert the_message(raw).subject == "café ok"


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
        ("Grüße €".encode("cp1252"), "us-ascii", "Grüße €"),
        # a U+FFFD that was in the text already is not a bad byte
        ("ééé\ufffd\ufffd\ufffd".encode() + b"\xe9\xe8", None, "ééé" + "\ufffd" * 5),
        ("éé\ufffd\ufffd\ufffd".encode() + b"\xe9\xe8", None, "Ã©Ã©ï¿½ï¿½ï¿½éè"),
        (b"\x81\x8d", None, "\x81\x8d"),  # not cp1252 either: latin-1
        # another declared charset with one bad byte: only that byte is lost
        ("朱镕基访问".encode("gb18030") + b"\xff", "gb18030", "朱镕基访问\ufffd"),
        ("こんにちは".encode("shift_jis") + b"\xa0\xff", "shift_jis", "こんにちは\ufffd\ufffd"),
    ],
)
def test_decode_bytes(data: bytes, charset: str | None, expected: str) -> None:
    assert decode_bytes(data, charset) == expected


_CONTROLS = "".join(map(chr, [*range(9), 11, 12, *range(14, 32), 127]))


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from([*"aé€\U0001f600\t\n\r\ufffd", *_CONTROLS]), max_size=30))
def test_clean_text_drops_the_controls_and_nothing_else(text: str) -> None:
    assert clean_text(text) == "".join(c for c in text if c not in _CONTROLS)


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from([*"aé\n\x00\x7f", "\ud800", "\udc80", "\udcff"])))
def test_clean_text_leaves_no_surrogate_and_no_control(text: str) -> None:
    cleaned = clean_text(text)
    assert isinstance(cleaned.encode("utf-8"), bytes)  # no surrogate left
    assert not set(cleaned) & set(_CONTROLS)


def _split_words(text: str, codec: str, label: str, cut: int) -> str:
    """``text`` as two B-encoded words, cut ``cut`` bytes in: inside a character."""
    data = text.encode(codec)
    halves = (data[:cut], data[cut:])
    return " ".join(f"=?{label}?B?{base64.b64encode(h).decode()}?=" for h in halves)


SPLIT = [
    ("Grüße aus Köln", "utf-8", "utf-8", 3),  # ü cut in two
    ("朱镕基访问", "gbk", "gb2312", 3),  # a mislabelled charset, 镕 cut in two
]


@pytest.mark.parametrize(("text", "codec", "label", "cut"), SPLIT)
def test_a_character_split_between_encoded_words_is_kept(
    text: str, codec: str, label: str, cut: int
) -> None:
    """Mailers that cut encoded words by length split characters; RFC 2047 says
    the words are adjacent, so their bytes are read together."""
    raw = f"Message-ID: <sp@x>\r\nSubject: Re: {_split_words(text, codec, label, cut)}\r\n\r\nx\r\n"
    assert the_message(raw.encode()).subject == f"Re: {text}"


def test_a_character_split_between_q_encoded_words_is_kept() -> None:
    raw = (
        b"Message-ID: <sq@x>\r\n"
        b"Subject: =?utf-8?Q?caf=C3?=\r\n =?UTF-8?q?=A9_cr=C3=A8me?=\r\n\r\nx\r\n"
    )
    assert the_message(raw).subject == "café crème"


@pytest.mark.parametrize(("text", "codec", "label", "cut"), SPLIT)
@pytest.mark.parametrize("group", [False, True], ids=["list", "group"])
def test_a_display_name_split_between_encoded_words_is_kept(
    text: str, codec: str, label: str, cut: int, group: bool
) -> None:
    value = f"{_split_words(text, codec, label, cut)} <a@x.example>"
    raw = f"Message-ID: <sd@x>\r\nTo: {'team: ' + value + ';' if group else value}\r\n\r\nx\r\n"
    recs = message_records(raw.encode(), owner=OWNER, source_ref="t:1")
    names = [
        e.target.displayName
        for e in recs
        if isinstance(e, Edge) and e.name == "receiver" and isinstance(e.target, Account)
    ]
    assert names == [text]


# --- ISO-2022-JP: 7-bit Japanese mail with escape sequences -------------------------

MEETING = "会議の件、了解しました"  # its JIS bytes hold a '"'
WINDOWS_JIS = b"\x1b$B-!-j|b\x1b(B \x1b(I6@6E\x1b(B"
"""NEC row 13 (circled one, (株)), an IBM extension kanji and half-width katakana:
what Windows sends as ISO-2022-JP (CP50220-2); Python's iso2022_jp knows none."""
WINDOWS_TEXT = "①㈱髙 ｶﾀｶﾅ"


@pytest.mark.parametrize(
    "content_type",
    ["", "text/plain", "text/plain; charset=us-ascii", "text/plain; charset=iso-8859-1",
     "text/plain; charset=utf-8", "text/plain; charset=iso-2022-jp"],
)  # fmt: skip
def test_iso_2022_jp_body_is_decoded_whatever_it_is_declared_as(content_type: str) -> None:
    header = f"Content-Type: {content_type}\r\n" if content_type else ""
    raw = f"Message-ID: <jp@x>\r\n{header}\r\n".encode() + MEETING.encode("iso-2022-jp") + b"\r\n"
    assert the_message(raw).content == MEETING + "\n"


def test_raw_iso_2022_jp_in_headers_and_filenames_is_decoded() -> None:
    jis = MEETING.encode("iso-2022-jp")
    raw = (
        b"Message-ID: <jph@x>\r\nSubject: Re: " + jis + b"\r\n"
        b"From: " + "山田太郎".encode("iso-2022-jp") + b" <yamada@x.example>\r\n"
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b'--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="'
        + "見積書".encode("iso-2022-jp")
        + b'.pdf"\r\n\r\n%PDF\r\n--B--\r\n'
    )
    recs = message_records(raw, owner=OWNER, source_ref="t:1")
    msg = recs[0]
    assert isinstance(msg, EmailMessage) and msg.subject == f"Re: {MEETING}"
    [sender] = [e.target for e in recs if isinstance(e, Edge) and e.name == "sender"]
    assert isinstance(sender, Account) and sender.displayName == "山田太郎"
    [file] = [r.file for r in recs if isinstance(r, FilePayload)]
    assert isinstance(file, File) and file.filename == "見積書.pdf"


@pytest.mark.parametrize("label", ["iso-2022-jp", "cp50220", "CP50221", "iso-2022-jp-ms", ""])
def test_iso_2022_jp_with_windows_characters_is_decoded(label: str) -> None:
    word = base64.b64encode(WINDOWS_JIS).decode()
    subject = f"=?{label}?B?{word}?=" if label else WINDOWS_JIS.decode("ascii")
    charset = f"; charset={label}" if label else ""
    head = f"Message-ID: <ms@x>\r\nSubject: {subject}\r\nContent-Type: text/plain{charset}\r\n"
    raw = head.encode() + b"\r\n" + WINDOWS_JIS + b"\r\n"
    msg = the_message(raw)
    assert (msg.subject, msg.content) == (WINDOWS_TEXT, WINDOWS_TEXT + "\n")


@pytest.mark.parametrize(
    ("data", "charset", "expected"),
    [
        (MEETING.encode("iso-2022-jp"), None, MEETING),
        (MEETING.encode("iso-2022-jp"), "utf-8", MEETING),
        (MEETING.encode("iso-2022-jp"), "shift_jis", MEETING),
        (WINDOWS_JIS, "cp50222", WINDOWS_TEXT),
        (b"\x1b)I\x0e6@6E\x0f", "cp50222", "ｶﾀｶﾅ"),  # katakana shifted in with SO
        ("한국어".encode("iso-2022-kr"), None, "한국어"),
        ("这个".encode("iso-2022-jp-2"), None, "这个"),  # GB2312 in ISO-2022-JP-2
        # a broken escape loses only what it breaks
        (b"\x1b$B8+@Q=q\x7f\x7f\x1b(B", "iso-2022-jp", "見積書\ufffd"),
        # escapes that are not ISO-2022 are left for clean_text
        (b"\x1b[31mred\x1b[0m", None, "\x1b[31mred\x1b[0m"),
        (b"\x1b(B\x1b[m plain", None, "\x1b(B\x1b[m plain"),
    ],
)
def test_decode_bytes_reads_iso_2022(data: bytes, charset: str | None, expected: str) -> None:
    assert decode_bytes(data, charset) == expected


@pytest.mark.parametrize(
    ("label", "codec"),
    [("windows-31j", "cp932"), ("x-sjis", "cp932"), ("cp50220", "iso2022_jp_ms")],
)
def test_windows_japanese_labels(label: str, codec: str) -> None:
    assert charset_codec(label) == codec


# --- raw 8-bit header fields in the body's charset ---------------------------------------

BODY_CHARSETS = [
    ("koi8-r", "koi8-r", "Привет от коллег"),
    ("windows-1251", "cp1251", "Отчёт за март"),
    ("iso-8859-2", "iso-8859-2", "Zażółć gęślą jaźń"),
    ("iso-8859-7", "iso-8859-7", "Καλημέρα σας"),
    ("shift_jis", "shift_jis", "会議の件"),
    ("gb2312", "gbk", "朱镕基访问"),  # a mislabel read as GB18030, like the body
]


def _raw_header_message(label: str, codec: str, text: str) -> bytes:
    raw = text.encode(codec)
    return (
        b"Message-ID: <rh@x>\r\nSubject: Re: " + raw + b"\r\n"
        b"From: " + raw + b" <a@x.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain; charset=" + label.encode() + b"\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + raw + b"\r\n"
        b"--B\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="' + raw + b'.pdf"\r\n\r\n%PDF\r\n--B--\r\n'
    )


@pytest.mark.parametrize(("label", "codec", "text"), BODY_CHARSETS)
def test_raw_8bit_header_fields_are_read_in_the_body_charset(
    label: str, codec: str, text: str
) -> None:
    """Mailers that write raw 8-bit header fields write them in the body's charset."""
    recs = message_records(_raw_header_message(label, codec, text), owner=OWNER, source_ref="t")
    msg = recs[0]
    assert isinstance(msg, EmailMessage)
    assert (msg.subject, msg.content) == (f"Re: {text}", text)
    [sender] = [e.target for e in recs if isinstance(e, Edge) and e.name == "sender"]
    assert isinstance(sender, Account) and sender.displayName == text
    [file] = [r.file for r in recs if isinstance(r, FilePayload)]
    assert isinstance(file, File) and file.filename == f"{text}.pdf"


@pytest.mark.parametrize(
    ("label", "raw", "expected"),
    [
        ("koi8-r", "Grüße".encode(), "Grüße"),  # UTF-8 comes first
        ("iso-8859-1", "“Grüße”".encode("cp1252"), "“Grüße”"),  # C1 controls in Latin-1
        ("koi8-r", "½ €".encode("cp1252"), "½ €"),  # no letter in KOI8-R: box drawing
        ("us-ascii", "Grüße".encode("cp1252"), "Grüße"),
        ("shift_jis", "Grüße".encode("cp1252"), "Grüße"),  # not Shift_JIS at all
    ],
)
def test_a_body_charset_that_does_not_fit_leaves_the_fallback(
    label: str, raw: bytes, expected: str
) -> None:
    data = (
        b"Message-ID: <nf@x>\r\nSubject: " + raw + b"\r\n"
        b"Content-Type: text/plain; charset=" + label.encode() + b"\r\n\r\nx\r\n"
    )
    assert the_message(data).subject == expected


# --- HTML whose charset is only in a <meta> tag --------------------------------------------


def _html_message(html: bytes, content_type: str = "text/html") -> bytes:
    head = f"Message-ID: <h@x>\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n"
    return head.encode() + html


META_HTML = [
    ('<meta charset="windows-1251">', "cp1251", "Отчёт за март"),
    ("<META HTTP-EQUIV=Content-Type CONTENT='text/html; charset=koi8-r'>", "koi8-r", "Привет"),
    ('<meta http-equiv="Content-Type" content="text/html;charset=Shift_JIS" />', "cp932", "会議"),
    ('<meta content="text/html; charset=iso-8859-2" http-equiv="content-type">', "iso-8859-2",
     "Zażółć gęślą jaźń"),
]  # fmt: skip


@pytest.mark.parametrize(("meta", "codec", "text"), META_HTML)
def test_html_is_read_in_the_charset_of_its_meta_tag(meta: str, codec: str, text: str) -> None:
    html = f"<html><head>{meta}<title>t</title></head><body><p>{text}</p></body></html>"
    msg = the_message(_html_message(html.encode(codec)))
    assert msg.htmlContent == html
    assert msg.content == text


@pytest.mark.parametrize(
    ("html", "content_type", "expected"),
    [
        # UTF-8 comes first: a mail client converted the text and kept the tag
        ('<meta charset="iso-8859-1"><p>Grüße</p>'.encode(), "text/html", "Grüße"),
        # the MIME charset wins, as the HTTP one does in a browser
        ('<meta charset="koi8-r"><p>Grüße</p>'.encode("latin-1"),
         "text/html; charset=iso-8859-1", "Grüße"),
        # only the first 1024 bytes are looked at, as browsers do
        (b"<!--" + b"x" * 1024 + b'--><meta charset="koi8-r"><p>Gr\xfc\xdfe</p>', "text/html",
         "Grüße"),
        # UTF-16 in a tag is a lie: the bytes were read in an ASCII-compatible charset
        ('<meta charset="utf-16"> <p>Grüße</p>'.encode("cp1252"), "text/html", "Grüße"),
        # a text/plain part has no meta tag to believe
        ('<meta charset="koi8-r"> Grüße'.encode("cp1252"), "text/plain",
         '<meta charset="koi8-r"> Grüße'),
    ],
)  # fmt: skip
def test_a_meta_tag_that_does_not_apply_is_ignored(
    html: bytes, content_type: str, expected: str
) -> None:
    msg = the_message(_html_message(html, content_type))
    assert msg.content is not None and msg.content.endswith(expected)
