"""The streaming mbox reader and its offset + fingerprint checkpoints."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from connectors.email import connector
from connectors.email.mapping import folder_label
from connectors.email.mbox import split_mbox
from connectors.email.options import EmailOptions
from importer.context import RunContext
from importer.model import Checkpoint, Edge, FilePayload, Record
from importer.schema import EmailMessage

from .corpus import OWNER, make_mbox, make_message, message_id

SAMPLE = Path(__file__).parents[2] / "connectors" / "email" / "samples" / "sample.mbox"


def run(
    path: Path, checkpoints: dict[str, Any] | None = None, *, limit: int | None = None
) -> tuple[list[Record], RunContext[EmailOptions]]:
    options = EmailOptions(source="mbox", path=path, address=OWNER)
    ctx = RunContext(
        options=options,
        account=connector.account(options, "t"),
        account_name="t",
        connector_name="email",
        checkpoints=dict(checkpoints or {}),
        limit=limit,
    )
    return list(connector.fetch(ctx)), ctx


def messages(recs: list[Record]) -> list[EmailMessage]:
    return [r for r in recs if isinstance(r, EmailMessage)]


def last_checkpoints(recs: list[Record]) -> dict[str, Any]:
    """What the engine would commit: the last state per stream."""
    return {r.stream: r.state for r in recs if isinstance(r, Checkpoint)}


def test_splitter_unescapes_and_ignores_unescaped_body_from_lines() -> None:
    data = (
        b"From a@b Mon Jan  1 00:00:00 2024\n"
        b"Subject: one\n\n"
        b">From the start\n"
        b">>From quoted\n"
        b"From here on, an unescaped line (no blank before it is required)\n"
        b"\n"
        b"From b@c Mon Jan  1 00:01:00 2024\n"
        b"Subject: two\n\nsecond\n"
    )
    found = list(split_mbox(io.BytesIO(data)))
    assert [m.start for m in found] == [0, data.index(b"From b@c")]
    assert found[0].raw == (
        b"Subject: one\n\nFrom the start\n>From quoted\n"
        b"From here on, an unescaped line (no blank before it is required)\n"
    )
    assert found[1].raw == b"Subject: two\n\nsecond\n"
    assert found[1].end == len(data)


def test_sample_mailbox(tmp_path: Path) -> None:
    recs, ctx = run(SAMPLE)
    msgs = messages(recs)
    assert len(msgs) == 12
    assert ctx.skipped == []
    by_subject = {m.subject: m for m in msgs}
    assert "会議の件について" in by_subject
    assert by_subject["Réunion à Paris — ordre du jour"].starred is True
    assert by_subject["Your May deals are here"].isRead is False  # Status: O
    assert by_subject["Your May deals are here"].content is not None
    assert "30% off" in (by_subject["Your May deals are here"].content or "")
    assert "From the tower" in (by_subject["Grüße aus Köln"].content or "")
    no_id = by_subject["Nightly backup finished"]
    assert no_id.externalId is None and no_id.id is not None
    names = sorted(getattr(r.file, "filename", "") for r in recs if isinstance(r, FilePayload))
    assert names == ["invite.ics", "kickoff-slides.pdf", "kickoff-slides.pdf", "lake.png"]
    label = folder_label(ctx.account, "sample")
    assert sum(1 for r in recs if isinstance(r, Edge) and r.name == "label") == 12
    assert all(r.target == label for r in recs if isinstance(r, Edge) and r.name == "label")
    replies = [r for r in recs if isinstance(r, Edge) and r.name == "message"]
    assert len(replies) == 4
    assert ctx.progress_fraction() == 1.0


def test_received_date_from_the_from_line(tmp_path: Path) -> None:
    path = tmp_path / "a.mbox"
    path.write_bytes(make_mbox([make_message(0)]))
    (msg,) = messages(run(path)[0])
    # make_mbox stamps message 0 with 2024-03-01 09:30:00 (UTC, asctime)
    assert msg.dateReceived == 1709285400000


def test_status_flags(tmp_path: Path) -> None:
    path = tmp_path / "a.mbox"
    raws = [make_message(i) for i in range(3)]
    raw_flagged = b"X-Status: F\r\n" + raws[2]
    path.write_bytes(make_mbox([raws[0], raws[1], raw_flagged], statuses=["RO", "O", ""]))
    msgs = messages(run(path)[0])
    assert [(m.isRead, m.starred) for m in msgs] == [(True, False), (False, False), (False, True)]


def test_incremental_append_reads_only_new_mail(tmp_path: Path) -> None:
    path = tmp_path / "inbox.mbox"
    first = [make_message(i) for i in range(5)]
    path.write_bytes(make_mbox(first))
    recs, _ = run(path)
    assert [m.externalId for m in messages(recs)] == [message_id(i) for i in range(5)]
    state = last_checkpoints(recs)
    assert list(state) == [f"mbox:{path}"]
    assert state[f"mbox:{path}"]["offset"] == path.stat().st_size

    # nothing new: nothing read, same checkpoint
    recs, _ = run(path, state)
    assert messages(recs) == []
    assert last_checkpoints(recs) == state

    # appended mail imports alone
    with path.open("ab") as fh:
        fh.write(make_mbox([make_message(i) for i in range(5, 8)]))
    recs, ctx = run(path, state)
    assert [m.externalId for m in messages(recs)] == [message_id(i) for i in range(5, 8)]
    assert ctx.progress_fraction() == 1.0
    assert last_checkpoints(recs)[f"mbox:{path}"]["offset"] == path.stat().st_size


def test_small_file_grows_past_the_head_size(tmp_path: Path) -> None:
    path = tmp_path / "tiny.mbox"
    path.write_bytes(make_mbox([make_message(0, body="short")]))
    assert path.stat().st_size < 4096
    recs, _ = run(path)
    state = last_checkpoints(recs)
    with path.open("ab") as fh:
        fh.write(make_mbox([make_message(i, body="x" * 3000) for i in range(1, 4)]))
    recs, _ = run(path, state)
    assert [m.externalId for m in messages(recs)] == [message_id(i) for i in range(1, 4)]


@pytest.mark.parametrize("change", ["rewritten", "last_message_edited", "truncated"])
def test_changed_file_is_rescanned(tmp_path: Path, change: str) -> None:
    path = tmp_path / "inbox.mbox"
    path.write_bytes(make_mbox([make_message(i) for i in range(4)]))
    state = last_checkpoints(run(path)[0])
    if change == "rewritten":  # e.g. compacted: first message deleted
        path.write_bytes(make_mbox([make_message(i) for i in range(1, 6)]))
        expected = list(range(1, 6))
    elif change == "last_message_edited":
        path.write_bytes(make_mbox([make_message(i) for i in range(3)] + [make_message(9)]))
        expected = [0, 1, 2, 9]
    else:
        path.write_bytes(make_mbox([make_message(i) for i in range(2)]))
        expected = [0, 1]
    recs, _ = run(path, state)
    assert [m.externalId for m in messages(recs)] == [message_id(i) for i in expected]


def test_checkpoints_every_200_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.mbox"
    path.write_bytes(make_mbox([make_message(i, body=f"m{i}") for i in range(450)]))
    recs, _ = run(path)
    points = [r for r in recs if isinstance(r, Checkpoint)]
    assert len(points) == 3  # after 200, after 400, at the end
    # a checkpoint comes after the records it covers
    first_cp = recs.index(points[0])
    assert len(messages(recs[:first_cp])) == 200

    recs, _ = run(path, limit=120)
    assert len(messages(recs)) == 120
    state = last_checkpoints(recs)
    recs, _ = run(path, state)
    assert [m.externalId for m in messages(recs)] == [message_id(i) for i in range(120, 450)]


def test_unusable_and_junk_are_skipped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "junk.mbox"
    path.write_bytes(
        b"leading junk before any From line\n\n"
        + make_mbox([make_message(0)])
        + b"From x Mon Jan  1 00:00:00 2024\n\x00\x01 not a message\n\n"
        + make_mbox([make_message(1)])
    )
    recs, ctx = run(path)
    assert [m.externalId for m in messages(recs)] == [message_id(0), message_id(1)]
    assert len(ctx.skipped) == 1
    assert ctx.skipped[0].ref.startswith(f"mbox:{path}@")
    assert "not an RFC 822 message" in ctx.skipped[0].reason


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="does not exist"):
        run(tmp_path / "nope.mbox")


def _cut_delivery(path: Path) -> bytes:
    """Write an mbox whose second message is half appended; return the whole file."""
    body = "".join(f"line {n}\n" for n in range(40)) + "THE END\n"
    full = make_mbox([make_message(0), make_message(1, body=body)])
    path.write_bytes(full[: full.index(b"line 20")])
    return full


def test_message_still_being_appended_is_left_for_the_next_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "inbox.mbox"
    full = _cut_delivery(path)
    with caplog.at_level(logging.INFO, logger="importer.connector"):
        recs, ctx = run(path)
    assert [m.externalId for m in messages(recs)] == [message_id(0)]
    assert ctx.skipped == []
    assert "is still being written; it is read on the next run" in caplog.text

    path.write_bytes(full)  # the delivery finishes
    recs, _ = run(path, last_checkpoints(recs))
    [second] = messages(recs)
    assert second.externalId == message_id(1)
    assert "THE END" in (second.content or "")


def test_unterminated_last_message_of_a_settled_file_is_read(tmp_path: Path) -> None:
    """A writer that left no closing blank line long ago is not waited for."""
    path = tmp_path / "old.mbox"
    _cut_delivery(path)
    old = time.time() - 3600
    os.utime(path, (old, old))
    recs, _ = run(path)
    assert [m.externalId for m in messages(recs)] == [message_id(0), message_id(1)]


@contextmanager
def _locked_by_mail_program(path: Path, kind: str) -> Iterator[None]:
    """Hold the lock a mail program takes while appending to ``path``."""
    if kind == "dotlock":
        lock = path.with_name(path.name + ".lock")
        lock.write_bytes(b"")
        yield
        lock.unlink()
    elif kind == "flock":
        with path.open("ab") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield
    else:  # fcntl locks never conflict within one process: another one holds it
        code = (
            "import fcntl, sys; f = open(sys.argv[1], 'ab'); fcntl.lockf(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); sys.stdin.read()"
        )
        with subprocess.Popen(
            [sys.executable, "-c", code, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        ) as holder:
            assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
            try:
                yield
            finally:
                assert holder.stdin is not None
                holder.stdin.close()
                holder.wait(timeout=10)


@pytest.mark.parametrize("kind", ["dotlock", "flock", "fcntl"])
def test_mailbox_locked_by_a_mail_program_is_left_for_the_next_run(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "inbox.mbox"
    path.write_bytes(make_mbox([make_message(i) for i in range(3)]))
    started = time.monotonic()
    with _locked_by_mail_program(path, kind), caplog.at_level(logging.WARNING):
        recs, ctx = run(path)
    assert time.monotonic() - started < 5  # never waits for the lock
    assert recs == []  # no message, and no checkpoint moved
    assert ctx.skipped == []
    assert f"mbox {path} is locked by a mail program" in caplog.text
    assert "it is read on the next run" in caplog.text

    recs, _ = run(path)
    assert [m.externalId for m in messages(recs)] == [message_id(i) for i in range(3)]


def test_stale_dotlock_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "inbox.mbox"
    path.write_bytes(make_mbox([make_message(0)]))
    lock = tmp_path / "inbox.mbox.lock"
    lock.write_bytes(b"")
    old = time.time() - 3600  # left behind by a crashed mail program
    os.utime(lock, (old, old))
    recs, _ = run(path)
    assert [m.externalId for m in messages(recs)] == [message_id(0)]
