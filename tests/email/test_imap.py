"""The IMAP source against a real Dovecot: incrementality, flags, TLS, failures."""

from __future__ import annotations

import imaplib
import logging
import os
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import pytest
from imapclient import IMAPClient

from connectors.email import _imap_sync, connector, imap
from connectors.email._imap_streams import folder_stream
from connectors.email.imap import (
    EmailAuthError,
    EmailConnectionError,
    EmailError,
    check_imap,
    iter_imap,
)
from connectors.email.mapping import message_item_id
from connectors.email.options import EmailOptions
from importer import Checkpoint, Edge, EmailMessage, Label, Record, RunContext, Update

from .dovecot import PASSWORD, DovecotServer, DroppingProxy, free_port

PW_ENV = "IMPORTER_TEST_IMAP_PASSWORD"


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PW_ENV, PASSWORD)


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imap, "RETRY_DELAYS", (0.05, 0.05, 0.05))


def message(
    tag: str,
    n: int,
    *,
    subject: str | None = None,
    body_bytes: int = 0,
    message_id: str | None = None,
) -> bytes:
    """A small RFC 822 message; ``body_bytes`` pads the body to make it large."""
    lines = [
        f"Message-ID: {message_id or f'<{tag}-{n}@imap.test>'}",
        "From: Ada Example <ada@imap.test>",
        "To: Owner <owner@imap.test>",
        f"Subject: {subject or f'{tag} message {n}'}",
        f"Date: Mon, 0{1 + n % 9} Jan 2024 10:00:00 +0100",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"Body of {tag} message {n}.",
    ]
    filler = f"line of padding for {tag} {n} ".ljust(70, ".")
    lines.extend(filler for _ in range(body_bytes // 72))
    return ("\r\n".join(lines) + "\r\n").encode()


def make_ctx(
    server: DovecotServer,
    user: str,
    checkpoints: dict[str, Any] | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    security: Literal["tls", "starttls", "none"] = "none",
    limit: int | None = None,
    **options: Any,
) -> RunContext[EmailOptions]:
    if options.get("auth") != "xoauth2":
        options.setdefault("password_env", PW_ENV)
    opts = EmailOptions(
        source="imap",
        host=host or server.host,
        port=port or server.port,
        security=security,
        username=user,
        **options,
    )
    return RunContext(
        options=opts,
        account=connector.account(opts, "t"),
        account_name="t",
        connector_name="email",
        checkpoints=dict(checkpoints or {}),
        limit=limit,
    )


@dataclass
class Run:
    """What one run yielded, seen the way the engine sees it."""

    records: list[Record]
    ctx: RunContext[EmailOptions]
    previous: dict[str, Any] = field(default_factory=dict)

    @property
    def messages(self) -> list[EmailMessage]:
        return [r for r in self.records if isinstance(r, EmailMessage)]

    @property
    def subjects(self) -> list[str | None]:
        return [m.subject for m in self.messages]

    @property
    def updates(self) -> list[EmailMessage]:
        items = [r.item for r in self.records if isinstance(r, Update)]
        return [i for i in items if isinstance(i, EmailMessage)]

    @property
    def new_checkpoints(self) -> dict[str, Any]:
        """The last checkpoint of every stream this run yielded."""
        return {r.stream: r.state for r in self.records if isinstance(r, Checkpoint)}

    @property
    def checkpoints(self) -> dict[str, Any]:
        """The committed state after this run, to feed the next one."""
        return {**self.previous, **self.new_checkpoints}

    def stream(self, folder: str) -> str:
        return folder_stream(self.ctx.options, folder)

    def state(self, folder: str) -> Any:
        """The last checkpoint this run yielded for ``folder``."""
        return self.new_checkpoints[self.stream(folder)]

    def saved(self, folder: str) -> Any:
        """The committed checkpoint of ``folder`` after this run."""
        return self.checkpoints[self.stream(folder)]

    def labels_of(self, message_id: str) -> set[str]:
        target = message_item_id(message_id)
        return {
            r.target.name or ""
            for r in self.records
            if isinstance(r, Edge)
            and r.name == "label"
            and r.source_id == target
            and isinstance(r.target, Label)
        }


def run(ctx: RunContext[EmailOptions]) -> Run:
    return Run(list(iter_imap(ctx)), ctx, dict(ctx.checkpoints))


def test_first_import_maps_messages_flags_folders_and_checkpoints(
    dovecot: DovecotServer, imap_user: str
) -> None:
    received = datetime(2024, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    dovecot.append(imap_user, "INBOX", [message("in", 1)], flags=["\\Seen"], internal_date=received)
    dovecot.append(imap_user, "INBOX", [message("in", 2)], flags=["\\Flagged"])
    dovecot.append(imap_user, "Sent", [message("sent", 1)])
    dovecot.create_folder(imap_user, "Parent/Child")  # "Parent" is \Noselect
    dovecot.append(imap_user, "Parent/Child", [message("child", 1)])
    inbox_validity = dovecot.uidvalidity(imap_user, "INBOX")

    result = run(make_ctx(dovecot, imap_user))

    assert result.subjects == ["in message 1", "in message 2", "child message 1", "sent message 1"]
    first, second = result.messages[:2]
    assert first.externalId == "<in-1@imap.test>"
    assert (first.isRead, first.starred) == (True, False)
    assert (second.isRead, second.starred) == (False, True)
    assert first.dateReceived == int(received.timestamp() * 1000)
    labels = {r.name: r.role for r in result.records if isinstance(r, Label)}
    assert labels == {"INBOX": "inbox", "Sent": "sent", "Parent/Child": None}
    assert result.labels_of("<sent-1@imap.test>") == {"Sent"}
    folders = ("INBOX", "Sent", "Parent/Child")
    assert set(result.new_checkpoints) == {result.stream(f) for f in folders}
    inbox = result.state("INBOX")
    assert inbox["uidvalidity"] == inbox_validity
    assert inbox["last_uid"] == 2
    assert isinstance(inbox["highestmodseq"], int) and inbox["highestmodseq"] > 0
    assert result.ctx.progress_fraction() == 1.0
    assert result.ctx.skip_count == 0
    # Importing read the mail with EXAMINE + BODY.PEEK: nothing became \Seen.
    with dovecot.client(imap_user) as client:
        client.select_folder("INBOX", readonly=True)
        flags = client.get_flags([1, 2])
    assert b"\\Seen" not in flags[2]


def test_incremental_runs_fetch_only_new_mail(dovecot: DovecotServer, imap_user: str) -> None:
    dovecot.append(imap_user, "INBOX", [message("a", n) for n in range(3)])
    first = run(make_ctx(dovecot, imap_user))
    assert len(first.messages) == 3

    dovecot.append(imap_user, "INBOX", [message("b", n) for n in range(2)])
    second = run(make_ctx(dovecot, imap_user, first.checkpoints))
    assert second.subjects == ["b message 0", "b message 1"]
    assert second.state("INBOX")["last_uid"] == 5

    # Nothing new: no message, and no checkpoint to write either.
    third = run(make_ctx(dovecot, imap_user, second.checkpoints))
    assert third.records == []
    assert third.ctx.progress_fraction() is None  # total is 0


def test_search_star_quirk_does_not_refetch_the_last_message(
    dovecot: DovecotServer, imap_user: str
) -> None:
    """'UID SEARCH UID 4:*' matches UID 3 when 3 is the highest: it must be ignored."""
    uids = dovecot.append(imap_user, "INBOX", [message("q", n) for n in range(4)])
    first = run(make_ctx(dovecot, imap_user, limit=3))
    assert first.saved("INBOX")["last_uid"] == uids[2]
    # UIDNEXT stays above the highest UID, so the source has to SEARCH.
    dovecot.expunge(imap_user, "INBOX", [uids[3]])
    again = run(make_ctx(dovecot, imap_user, first.checkpoints))
    assert again.messages == []
    assert again.updates == []
    assert again.state("INBOX")["last_uid"] == uids[2]


def test_chunks_checkpoint_as_they_go(dovecot: DovecotServer, imap_user: str) -> None:
    dovecot.append(imap_user, "INBOX", [message("c", n) for n in range(5)])
    result = run(make_ctx(dovecot, imap_user, chunk_size=2))
    last_uids = [r.state["last_uid"] for r in result.records if isinstance(r, Checkpoint)]
    assert last_uids == [2, 4, 5]
    # Each checkpoint comes after the messages it covers.
    positions = [i for i, r in enumerate(result.records) if isinstance(r, Checkpoint)]
    messages_before = [
        sum(isinstance(r, EmailMessage) for r in result.records[:p]) for p in positions
    ]
    assert messages_before == [2, 4, 5]


def test_large_bodies_are_fetched_in_byte_bounded_batches(
    dovecot: DovecotServer, imap_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot.append(imap_user, "INBOX", [message("big", n, body_bytes=20_000) for n in range(5)])
    monkeypatch.setattr(_imap_sync, "_FETCH_BYTES", 45_000)
    body_fetches: list[list[int]] = []
    real_fetch = IMAPClient.fetch

    def counting_fetch(self: IMAPClient, messages: Any, data: Any, modifiers: Any = None) -> Any:
        if "BODY.PEEK[]" in data:
            body_fetches.append(list(messages))
        return real_fetch(self, messages, data, modifiers)

    monkeypatch.setattr(IMAPClient, "fetch", counting_fetch)
    result = run(make_ctx(dovecot, imap_user))
    assert result.subjects == [f"big message {n}" for n in range(5)]
    assert body_fetches == [[1, 2], [3, 4], [5]]  # ~20 KB each, at most 45 KB per FETCH


def test_uidvalidity_change_rescans_the_folder(dovecot: DovecotServer, imap_user: str) -> None:
    dovecot.append(imap_user, "INBOX", [message("v", n) for n in range(3)])
    first = run(make_ctx(dovecot, imap_user))
    old = first.saved("INBOX")["uidvalidity"]

    dovecot.set_uidvalidity(imap_user, "INBOX", old + 1000)
    second = run(make_ctx(dovecot, imap_user, first.checkpoints))

    assert second.subjects == ["v message 0", "v message 1", "v message 2"]
    assert second.state("INBOX")["uidvalidity"] == old + 1000
    assert second.state("INBOX")["last_uid"] == 3
    assert run(make_ctx(dovecot, imap_user, second.checkpoints)).records == []


def test_flag_changes_become_updates_via_condstore(dovecot: DovecotServer, imap_user: str) -> None:
    uids = dovecot.append(imap_user, "INBOX", [message("f", n) for n in range(4)], flags=["\\Seen"])
    first = run(make_ctx(dovecot, imap_user))
    modseq = first.saved("INBOX")["highestmodseq"]

    dovecot.set_flags(imap_user, "INBOX", [uids[0]], ["\\Flagged"])
    dovecot.clear_flags(imap_user, "INBOX", [uids[2]], ["\\Seen"])
    dovecot.append(imap_user, "INBOX", [message("f", 9)])
    second = run(make_ctx(dovecot, imap_user, first.checkpoints))

    updates = {u.externalId: (u.starred, u.isRead) for u in second.updates}
    assert updates == {"<f-0@imap.test>": (True, True), "<f-2@imap.test>": (False, False)}
    assert all(u.id == message_item_id(u.externalId or "") for u in second.updates)
    assert second.subjects == ["f message 9"]  # updates never re-import whole messages
    state = second.state("INBOX")
    assert state["highestmodseq"] > modseq
    assert state["last_uid"] == uids[-1] + 1

    third = run(make_ctx(dovecot, imap_user, second.checkpoints))
    assert third.records == []


def test_message_in_two_folders_is_one_item_with_two_labels(
    dovecot: DovecotServer, imap_user: str
) -> None:
    raw = message("dup", 1)
    dovecot.append(imap_user, "INBOX", [raw])
    dovecot.append(imap_user, "Archive", [raw])
    result = run(make_ctx(dovecot, imap_user))

    ids = {m.id for m in result.messages}
    assert ids == {message_item_id("<dup-1@imap.test>")}
    assert len(result.messages) == 2  # once per folder; the engine dedups the item
    assert result.labels_of("<dup-1@imap.test>") == {"INBOX", "Archive"}
    roles = {r.name: r.role for r in result.records if isinstance(r, Label)}
    assert roles == {"INBOX": "inbox", "Archive": "archive"}


def test_folder_selection_globs_and_missing_folders(dovecot: DovecotServer, imap_user: str) -> None:
    for folder in ("INBOX", "Lists/python", "Lists/rust", "Junk"):
        dovecot.append(imap_user, folder, [message(folder.replace("/", "-"), 1)])

    globbed = run(make_ctx(dovecot, imap_user, include=["Lists/*", "INBOX"], exclude=["*rust"]))
    assert globbed.subjects == ["INBOX message 1", "Lists-python message 1"]

    ctx = make_ctx(dovecot, imap_user, folders=["Junk", "Nope"])
    configured = run(ctx)
    assert configured.subjects == ["Junk message 1"]
    assert [(s.ref, s.reason) for s in ctx.skipped] == [
        ("imap:Nope", "configured folder does not exist on the server")
    ]
    assert {r.role for r in configured.records if isinstance(r, Label)} == {"junk"}


def test_non_ascii_and_spaced_folder_names(dovecot: DovecotServer, imap_user: str) -> None:
    dovecot.append(imap_user, "Société/Reçus 2024", [message("fr", 1)])
    validity = dovecot.uidvalidity(imap_user, "Société/Reçus 2024")
    result = run(make_ctx(dovecot, imap_user))
    assert result.labels_of("<fr-1@imap.test>") == {"Société/Reçus 2024"}
    assert result.state("Société/Reçus 2024") == {
        "uidvalidity": validity,
        "last_uid": 1,
        "highestmodseq": result.state("Société/Reçus 2024")["highestmodseq"],
    }
    again = run(make_ctx(dovecot, imap_user, result.checkpoints))
    assert again.records == []


def test_unusable_message_is_skipped_and_the_run_goes_on(
    dovecot: DovecotServer, imap_user: str
) -> None:
    dovecot.append(imap_user, "INBOX", [message("u", 1)])
    dovecot.append(imap_user, "INBOX", [b"this is not an email at all\r\n"])
    dovecot.append(imap_user, "INBOX", [message("u", 3)])
    ctx = make_ctx(dovecot, imap_user)
    result = run(ctx)
    validity = dovecot.uidvalidity(imap_user, "INBOX")
    assert result.subjects == ["u message 1", "u message 3"]
    assert [s.ref for s in ctx.skipped] == [f"imap:INBOX/{validity}/2"]
    assert result.state("INBOX")["last_uid"] == 3


def _make_unreadable(server: DovecotServer, user: str, text: bytes) -> None:
    """Make the stored file of the message containing ``text`` unreadable for Dovecot."""
    maildir = server.root / "mail" / user / "Maildir"
    [stored] = [
        p for sub in ("cur", "new") for p in (maildir / sub).iterdir() if text in p.read_bytes()
    ]
    os.chmod(stored, 0)


def test_message_the_server_cannot_read_is_skipped_and_the_run_goes_on(
    dovecot: DovecotServer, imap_user: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Dovecot answers such a FETCH with BYE and hangs up: only that message is lost."""
    uids = dovecot.append(imap_user, "INBOX", [message("r", n) for n in range(5)])
    dovecot.append(imap_user, "Sent", [message("s", 1)])
    _make_unreadable(dovecot, imap_user, b"r message 2")
    validity = dovecot.uidvalidity(imap_user, "INBOX")

    ctx = make_ctx(dovecot, imap_user)
    with caplog.at_level(logging.WARNING, logger="importer.connector"):
        result = run(ctx)

    assert result.subjects == [
        "r message 0",
        "r message 1",
        "r message 3",
        "r message 4",
        "s message 1",
    ]
    [skipped] = ctx.skipped
    assert skipped.ref == f"imap:INBOX/{validity}/{uids[2]}"
    assert "the server would not deliver it: " in skipped.reason
    assert "Internal error" in skipped.reason  # the server's own words
    assert "refused to FETCH" in caplog.text
    assert "giving up" not in caplog.text
    # The checkpoint passes the skipped message: the next run does not trip on it.
    assert result.state("INBOX")["last_uid"] == uids[-1]
    again = run(make_ctx(dovecot, imap_user, result.checkpoints))
    assert again.records == []
    assert again.ctx.skipped == []


def test_messages_a_server_answers_no_for_are_skipped_and_the_rest_imported(
    dovecot: DovecotServer, imap_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gmail refuses a whole FETCH with NO when some of its messages cannot be read."""
    uids = dovecot.append(imap_user, "INBOX", [message("g", n) for n in range(4)])
    bad = {uids[1], uids[3]}
    fetch = IMAPClient.fetch

    def gmail_fetch(self: IMAPClient, messages: list[int], data: list[str]) -> Any:
        if "BODY.PEEK[]" in data and bad.intersection(messages):
            raise imaplib.IMAP4.error("fetch failed: Some messages could not be FETCHed (Failure)")
        return fetch(self, messages, data)

    monkeypatch.setattr(IMAPClient, "fetch", gmail_fetch)
    ctx = make_ctx(dovecot, imap_user)
    result = run(ctx)

    assert result.subjects == ["g message 0", "g message 2"]
    validity = dovecot.uidvalidity(imap_user, "INBOX")
    assert [(s.ref, s.reason) for s in ctx.skipped] == [
        (
            f"imap:INBOX/{validity}/{uid}",
            "the server would not deliver it: Some messages could not be FETCHed (Failure)",
        )
        for uid in sorted(bad)
    ]
    assert result.state("INBOX")["last_uid"] == uids[-1]


def test_a_server_hanging_up_once_on_one_message_does_not_cost_it(
    dovecot: DovecotServer, imap_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BYE on one message's own FETCH may be the server shutting down, not the message."""
    dovecot.append(imap_user, "INBOX", [message("s", 0)])  # one new message: fetched alone
    fetch = IMAPClient.fetch
    hung_up: list[list[int]] = []

    def shutting_down(self: IMAPClient, messages: list[int], data: list[str]) -> Any:
        if "BODY.PEEK[]" in data and not hung_up:
            hung_up.append(list(messages))
            self._imap.untagged_responses.setdefault("BYE", []).append(b"Server shutting down.")
            self._imap.shutdown()
            raise imaplib.IMAP4.abort("socket error: EOF")
        return fetch(self, messages, data)

    monkeypatch.setattr(IMAPClient, "fetch", shutting_down)
    ctx = make_ctx(dovecot, imap_user)
    result = run(ctx)

    assert len(hung_up) == 1 and len(hung_up[0]) == 1
    assert result.subjects == ["s message 0"]
    assert ctx.skipped == []


def test_flags_the_server_cannot_read_are_skipped_and_other_updates_land(
    dovecot: DovecotServer, imap_user: str
) -> None:
    uids = dovecot.append(imap_user, "INBOX", [message("h", n) for n in range(3)])
    first = run(make_ctx(dovecot, imap_user))
    _make_unreadable(dovecot, imap_user, b"h message 1")
    dovecot.set_flags(imap_user, "INBOX", uids, ["\\Flagged"])

    ctx = make_ctx(dovecot, imap_user, first.checkpoints)
    second = run(ctx)

    # (a message's update may come twice: the folder resumes after the server hung up)
    assert {u.externalId for u in second.updates} == {"<h-0@imap.test>", "<h-2@imap.test>"}
    assert all(u.starred for u in second.updates)
    validity = dovecot.uidvalidity(imap_user, "INBOX")
    assert [s.ref for s in ctx.skipped] == [f"imap:INBOX/{validity}/{uids[1]}"]
    assert run(make_ctx(dovecot, imap_user, second.checkpoints)).records == []


def test_limit_stops_after_n_messages_and_resumes(dovecot: DovecotServer, imap_user: str) -> None:
    dovecot.append(imap_user, "INBOX", [message("l", n) for n in range(5)])
    first = run(make_ctx(dovecot, imap_user, limit=2))
    assert first.subjects == ["l message 0", "l message 1"]
    assert first.state("INBOX")["last_uid"] == 2
    rest = run(make_ctx(dovecot, imap_user, first.checkpoints))
    assert rest.subjects == ["l message 2", "l message 3", "l message 4"]


def test_wrong_password_raises_auth_error_without_the_password(
    dovecot: DovecotServer, imap_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "Wr0ng-Pa55word-xyz"
    monkeypatch.setenv(PW_ENV, wrong)
    with pytest.raises(EmailAuthError) as info:
        list(iter_imap(make_ctx(dovecot, imap_user)))
    text = str(info.value)
    assert text.startswith(f"account t: IMAP login failed for {imap_user} at {dovecot.host}: ")
    assert "AUTHENTICATIONFAILED" in text or "Authentication failed" in text
    rendered = "".join(traceback.format_exception(info.value))
    for shown in (text, repr(info.value), rendered):
        assert wrong not in shown
        assert PASSWORD not in shown
    assert isinstance(info.value, EmailError)

    with pytest.raises(EmailAuthError):
        check_imap(make_ctx(dovecot, imap_user))


def test_secrets_stay_out_of_debug_logs(
    dovecot: DovecotServer, imap_user: str, caplog: pytest.LogCaptureFixture
) -> None:
    dovecot.append(imap_user, "INBOX", [message("log", 1)])
    with caplog.at_level(logging.DEBUG):
        assert run(make_ctx(dovecot, imap_user)).subjects == ["log message 1"]
        ctx = make_ctx(dovecot, imap_user, auth="xoauth2")
        ctx.account.accessToken = PASSWORD
        assert run(ctx).subjects == ["log message 1"]
    assert "LOGIN" in caplog.text  # the IMAP conversation was logged...
    assert PASSWORD not in caplog.text  # ...without the password or token


def test_check_lists_folders(
    dovecot: DovecotServer, imap_user: str, caplog: pytest.LogCaptureFixture
) -> None:
    dovecot.create_folder(imap_user, "Projects")
    with caplog.at_level(logging.INFO, logger="importer.connector"):
        check_imap(make_ctx(dovecot, imap_user))
    assert "2 folder(s) to import: INBOX, Projects" in caplog.text
    with pytest.raises(EmailError, match="'Gone'"):
        check_imap(make_ctx(dovecot, imap_user, folders=["Gone"]))


def test_connection_dropped_mid_fetch_resumes_exactly_once(
    dovecot: DovecotServer,
    imap_user: str,
    dropping_proxy: DroppingProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dovecot.append(imap_user, "INBOX", [message("d", n, body_bytes=20_000) for n in range(8)])
    # Login, LIST, SELECT and SEARCH take a few KiB; the cut falls inside a
    # later FETCH of 2 x 20 KB bodies.
    dropping_proxy.drop_after(70_000)
    ctx = make_ctx(
        dovecot, imap_user, host=dropping_proxy.host, port=dropping_proxy.port, chunk_size=2
    )
    with caplog.at_level(logging.WARNING, logger="importer.connector"):
        result = run(ctx)

    assert dropping_proxy.drops == 1
    assert dropping_proxy.connections == 2
    assert "connection lost while reading folder 'INBOX'" in caplog.text
    counts = Counter(m.externalId for m in result.messages)
    assert counts == Counter(f"<d-{n}@imap.test>" for n in range(8))
    assert result.state("INBOX")["last_uid"] == 8
    last_uids = [r.state["last_uid"] for r in result.records if isinstance(r, Checkpoint)]
    assert last_uids == sorted(last_uids)


def test_connection_that_keeps_dropping_gives_up_with_a_clear_error(
    dovecot: DovecotServer, imap_user: str, dropping_proxy: DroppingProxy
) -> None:
    dovecot.append(imap_user, "INBOX", [message("x", n, body_bytes=20_000) for n in range(2)])
    dropping_proxy.drop_after(10_000, times=100)
    ctx = make_ctx(dovecot, imap_user, host=dropping_proxy.host, port=dropping_proxy.port)
    yielded: list[Record] = []
    with pytest.raises(EmailConnectionError) as info:
        yielded.extend(iter_imap(ctx))
    assert "lost 4 times in a row while reading folder 'INBOX'; giving up" in str(info.value)
    assert dropping_proxy.connections == 4
    assert not [r for r in yielded if isinstance(r, Checkpoint)]


def test_implicit_tls_verifies_against_the_configured_ca(
    dovecot: DovecotServer, imap_user: str
) -> None:
    dovecot.append(imap_user, "INBOX", [message("tls", 1)])
    ok = run(
        make_ctx(dovecot, imap_user, port=dovecot.tls_port, security="tls", ca_file=dovecot.ca_file)
    )
    assert ok.subjects == ["tls message 1"]

    with pytest.raises(EmailConnectionError) as info:
        list(iter_imap(make_ctx(dovecot, imap_user, port=dovecot.tls_port, security="tls")))
    assert "TLS certificate of 127.0.0.1" in str(info.value)
    assert "could not be verified" in str(info.value)
    assert "ca_file" in str(info.value)

    unverified = run(
        make_ctx(dovecot, imap_user, port=dovecot.tls_port, security="tls", verify_tls=False)
    )
    assert unverified.subjects == ["tls message 1"]


def test_starttls(dovecot: DovecotServer, imap_user: str) -> None:
    dovecot.append(imap_user, "INBOX", [message("st", 1)])
    result = run(make_ctx(dovecot, imap_user, security="starttls", ca_file=dovecot.ca_file))
    assert result.subjects == ["st message 1"]
    with pytest.raises(EmailConnectionError, match="could not be verified"):
        list(iter_imap(make_ctx(dovecot, imap_user, security="starttls")))


def test_tls_on_a_plain_port_is_a_clear_error(dovecot: DovecotServer, imap_user: str) -> None:
    with pytest.raises(EmailConnectionError, match=r"TLS handshake with 127\.0\.0\.1"):
        list(iter_imap(make_ctx(dovecot, imap_user, port=dovecot.port, security="tls")))


def test_xoauth2_uses_the_account_access_token(dovecot: DovecotServer, imap_user: str) -> None:
    dovecot.append(imap_user, "INBOX", [message("oauth", 1)])
    ctx = make_ctx(dovecot, imap_user, auth="xoauth2")
    with pytest.raises(EmailAuthError, match="needs an access token"):
        list(iter_imap(ctx))
    ctx.account.accessToken = PASSWORD  # the test server's passdb checks the token like a password
    assert run(ctx).subjects == ["oauth message 1"]
    ctx.account.accessToken = "expired-token"
    with pytest.raises(EmailAuthError) as info:
        list(iter_imap(ctx))
    assert "expired-token" not in str(info.value)


def test_unreachable_server_is_a_clear_error(dovecot: DovecotServer, imap_user: str) -> None:
    with pytest.raises(EmailConnectionError, match=r"cannot connect to IMAP server 127\.0\.0\.1"):
        list(iter_imap(make_ctx(dovecot, imap_user, port=free_port())))
