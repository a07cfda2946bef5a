"""The Maildir reader: folders, flags and the per-folder incremental rule."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.email import connector, maildir
from connectors.email.maildir import folder_role, message_flags
from connectors.email.mapping import folder_label
from connectors.email.options import EmailOptions
from importer.context import RunContext
from importer.model import Checkpoint, Edge, Record, Update
from importer.schema import EmailMessage, Label

from .corpus import OWNER, deliver_maildir, make_message, message_id

SETTLE = 0.12
"""Longer than the test margin, so the directories count as settled."""


@pytest.fixture(autouse=True)
def short_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maildir, "MARGIN_NS", 50_000_000)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every message file the reader opens."""
    opened: list[Path] = []
    original = Path.read_bytes

    def spy(self: Path) -> bytes:
        opened.append(self)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", spy)
    return opened


def run(
    root: Path, checkpoints: dict[str, Any] | None = None, **options: Any
) -> tuple[list[Record], RunContext[EmailOptions]]:
    limit = options.pop("limit", None)
    opts = EmailOptions(source="maildir", path=root, address=OWNER, **options)
    ctx = RunContext(
        options=opts,
        account=connector.account(opts, "t"),
        account_name="t",
        connector_name="email",
        checkpoints=dict(checkpoints or {}),
        limit=limit,
    )
    return list(connector.fetch(ctx)), ctx


def ids(recs: list[Record]) -> list[str]:
    return sorted(r.externalId or "" for r in recs if isinstance(r, EmailMessage))


def committed(previous: dict[str, Any], recs: list[Record]) -> dict[str, Any]:
    state = dict(previous)
    state.update({r.stream: r.state for r in recs if isinstance(r, Checkpoint)})
    return state


def test_message_flags() -> None:
    assert message_flags("123.M1P2.host:2,FS") == {"\\Flagged", "\\Seen"}
    assert message_flags("123.M1P2.host:2,") == set()
    assert message_flags("123.M1P2.host") == set()
    assert message_flags("123.M1P2.host!2,RT") == {"\\Answered", "\\Deleted"}


def test_folder_roles() -> None:
    assert folder_role("INBOX") == "inbox"
    assert folder_role("Sent") == "sent"
    assert folder_role("Archive.Deleted Items") == "trash"
    assert folder_role("Projects") is None


def test_folders_flags_and_dates(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    when = datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)
    deliver_maildir(root, make_message(0), mtime=when)
    deliver_maildir(root, make_message(1), flags="FS")
    deliver_maildir(root, make_message(2), folder="Sent", flags="S")
    deliver_maildir(root, make_message(3), folder="Projects.2024", flags="")
    deliver_maildir(root, make_message(4), folder="&AMk-t&AOk-")  # "Été"
    (root / ".NotAMaildir").mkdir()
    recs, ctx = run(root)
    msgs = {r.externalId or "": r for r in recs if isinstance(r, EmailMessage)}
    assert sorted(msgs) == sorted(message_id(i) for i in range(5))
    assert msgs[message_id(0)].dateReceived == int(when.timestamp() * 1000)
    assert (msgs[message_id(0)].isRead, msgs[message_id(0)].starred) == (False, False)
    assert (msgs[message_id(1)].isRead, msgs[message_id(1)].starred) == (True, True)
    labels = {r.name: r for r in recs if isinstance(r, Label)}
    assert set(labels) == {"INBOX", "Sent", "Projects.2024", "Été"}
    assert labels["INBOX"] == folder_label(ctx.account, "INBOX", "inbox")
    assert labels["Sent"].role == "sent"
    in_folder = {
        e.source.externalId: e.target.name
        for e in recs
        if isinstance(e, Edge) and e.name == "label"
        if isinstance(e.source, EmailMessage) and isinstance(e.target, Label)
    }
    assert in_folder[message_id(3)] == "Projects.2024"
    streams = {r.stream for r in recs if isinstance(r, Checkpoint)}
    assert streams == {
        f"maildir:{root}",
        *(f"maildir:{p}" for p in root.glob(".*") if (p / "cur").is_dir()),
    }


def test_folder_selection(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    deliver_maildir(root, make_message(0))
    deliver_maildir(root, make_message(1), folder="Sent")
    deliver_maildir(root, make_message(2), folder="Junk")
    deliver_maildir(root, make_message(3), folder="Lists.python")
    assert ids(run(root, exclude=["Junk", "Lists.*"])[0]) == [message_id(0), message_id(1)]
    assert ids(run(root, include=["Lists.*"])[0]) == [message_id(3)]
    assert ids(run(root, folders=["INBOX", "Junk"])[0]) == [message_id(0), message_id(2)]


def test_incremental_runs(tmp_path: Path, reads: list[Path]) -> None:
    root = tmp_path / "Maildir"
    old = datetime(2024, 1, 1, tzinfo=UTC)
    first = [deliver_maildir(root, make_message(i), flags="", mtime=old) for i in range(3)]
    deliver_maildir(root, make_message(3), folder="Sent", flags="S", mtime=old)
    time.sleep(SETTLE)

    recs, _ = run(root)
    assert ids(recs) == [message_id(i) for i in range(4)]
    state = committed({}, recs)
    assert all(set(s) == {"watermark_ns", "new_mtime_ns", "cur_mtime_ns"} for s in state.values())

    # unchanged: no listing needed, no message file read, nothing yielded
    reads.clear()
    recs, _ = run(root, state)
    assert recs == []
    assert reads == []

    # new mail in one folder: read alone
    time.sleep(SETTLE)
    deliver_maildir(root, make_message(4))
    time.sleep(SETTLE)
    reads.clear()
    recs, _ = run(root, state)
    assert ids(recs) == [message_id(4)]
    assert [p.name for p in reads] == [p.name for p in reads if "corpus" in p.name]
    assert len(reads) == 1
    assert not [r for r in recs if isinstance(r, Update)]
    state = committed(state, recs)

    # a flag change (rename) yields the message again plus an Update
    time.sleep(SETTLE)
    target = first[1]
    os.rename(target, target.with_name(target.name.split(":2,")[0] + ":2,FS"))
    time.sleep(SETTLE)
    reads.clear()
    recs, _ = run(root, state)
    assert len(reads) == 1
    updates = [r.item for r in recs if isinstance(r, Update)]
    assert len(updates) == 1
    assert isinstance(updates[0], EmailMessage)
    assert updates[0].externalId == message_id(1)
    assert (updates[0].isRead, updates[0].starred) == (True, True)
    assert updates[0].ensure_id() == EmailMessage(externalId=message_id(1)).ensure_id()
    state = committed(state, recs)

    # and then it is quiet again
    reads.clear()
    assert run(root, state)[0] == []
    assert reads == []


def test_limit_and_resume(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    for i in range(7):
        deliver_maildir(root, make_message(i), flags="S")
    time.sleep(SETTLE)
    recs, _ = run(root, limit=4)
    before = ids(recs)
    assert len(before) == 4
    state = committed({}, recs)
    recs, _ = run(root, state)
    after = ids(recs)
    # the rest arrive; files changed in the same clock tick as the last one read are
    # read again (the engine's dedup drops them)
    assert set(before) | set(after) == {message_id(i) for i in range(7)}
    assert len(after) >= 3


def test_unusable_file_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    deliver_maildir(root, make_message(0))
    bad = deliver_maildir(root, b"")
    recs, ctx = run(root)
    assert ids(recs) == [message_id(0)]
    assert [(s.ref, s.reason) for s in ctx.skipped] == [(f"maildir:{bad}", "empty message")]


@pytest.fixture
def unreadable(monkeypatch: pytest.MonkeyPatch) -> set[Path]:
    """Files whose reading fails as a file of another user, mode 0600, does.

    Root reads any file, so the refusal is simulated at the read.
    """
    locked: set[Path] = set()
    original = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self in locked:
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    return locked


def test_unreadable_file_is_skipped_and_read_once_readable(
    tmp_path: Path, unreadable: set[Path]
) -> None:
    root = tmp_path / "Maildir"
    deliver_maildir(root, make_message(0), flags="S")
    locked = deliver_maildir(root, make_message(1), flags="S")
    deliver_maildir(root, make_message(2), flags="S")
    time.sleep(SETTLE)
    unreadable.add(locked)

    recs, ctx = run(root)
    assert ids(recs) == [message_id(0), message_id(2)]
    assert [(s.ref, s.reason) for s in ctx.skipped] == [
        (
            f"maildir:{locked}",
            "cannot be read (PermissionError: Permission denied); tried again next run",
        )
    ]
    state = committed({}, recs)
    assert state[f"maildir:{root}"]["unreadable"] == [f"cur/{locked.name}"]

    # Still unreadable: said again; the folder's other mail is not read again.
    recs, ctx = run(root, state)
    assert ids(recs) == []
    assert [s.ref for s in ctx.skipped] == [f"maildir:{locked}"]
    state = committed(state, recs)

    # Permissions fixed (which changes neither new/ nor cur/): read on the next run.
    unreadable.clear()
    recs, ctx = run(root, state)
    assert ids(recs) == [message_id(1)]
    assert ctx.skipped == []
    state = committed(state, recs)
    assert "unreadable" not in state[f"maildir:{root}"]
    assert run(root, state)[0] == []


def test_unreadable_file_renamed_meanwhile_is_read_under_its_new_name(
    tmp_path: Path, unreadable: set[Path]
) -> None:
    root = tmp_path / "Maildir"
    locked = deliver_maildir(root, make_message(0), flags="")
    time.sleep(SETTLE)
    unreadable.add(locked)
    recs, _ = run(root)
    state = committed({}, recs)
    unreadable.clear()
    locked.rename(locked.with_name(locked.name + "S"))  # the mail client marks it read

    recs, ctx = run(root, state)
    assert ids(recs) == [message_id(0)]
    assert ctx.skipped == []
    assert "unreadable" not in committed(state, recs)[f"maildir:{root}"]


def test_file_moved_away_while_reading_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "Maildir"
    deliver_maildir(root, make_message(0), flags="S")
    moved = deliver_maildir(root, make_message(1), flags="S")
    original = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == moved:  # the mail client moves it between listing and reading
            self.rename(root / "tmp" / self.name)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    recs, ctx = run(root)
    assert ids(recs) == [message_id(0)]
    assert ctx.skipped == []
    assert "unreadable" not in committed({}, recs)[f"maildir:{root}"]


def test_not_a_maildir(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="does not exist"):
        run(tmp_path / "missing")
