"""mbox and Maildir through the engine into a real local Pod: what lands, and only once."""

from __future__ import annotations

import base64
import hashlib
import json
import mailbox
import os
import quopri
import re
import shutil
import subprocess
import sys
import tracemalloc
from collections import Counter
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage as StdMessage
from email.parser import BytesParser
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import pytest

from connectors.email import connector
from connectors.email.mapping import (
    UnusableMessage,
    folder_label,
    message_item_id,
    message_records,
)
from connectors.email.options import EmailOptions
from importer.engine import EngineSettings, RunResult
from importer.model import Record, derive_id
from importer.pod import PodClient
from importer.schema import Account, EmailMessage
from importer.testing import check_connector, local_pod, run_connector, snapshot

from .corpus import deliver_maildir, make_mbox, make_message, message_id

SAMPLE = Path(__file__).parents[2] / "connectors" / "email" / "samples" / "sample.mbox"
SAM = "sam@example.org"
SMALL = EngineSettings(batch_records=40, max_in_flight=2, flush_interval=0.2)
_OLD = datetime(2024, 1, 1, tzinfo=UTC)
_FROM_LINE = re.compile(rb"^From sender(\d+)@corpus\.example ", re.MULTILINE)


def account_id(address: str) -> str:
    return derive_id(Account.item_type, "email", address.lower())


def mbox_options(path: Path, **extra: Any) -> dict[str, Any]:
    return {"source": "mbox", "path": str(path), "address": SAM, **extra}


def maildir_options(path: Path, **extra: Any) -> dict[str, Any]:
    return {"source": "maildir", "path": str(path), "address": SAM, **extra}


async def run(client: PodClient, tmp_path: Path, options: dict[str, Any]) -> RunResult:
    result = await run_connector(
        connector, options, client=client, data_dir=tmp_path, settings=SMALL
    )
    assert result.error is None, result.error
    return result


async def run_item(client: PodClient, result: RunResult) -> dict[str, Any]:
    assert result.run_id is not None
    item = await client.get_item(result.run_id)
    assert item is not None
    return item


async def checkpoints(client: PodClient) -> dict[str, Any]:
    """The email connector's checkpoint streams on the owner's Account."""
    account = await client.get_item(account_id(SAM))
    assert account is not None and account.get("importerState")
    state: dict[str, Any] = json.loads(account["importerState"])["email"]
    return state


def to_sam(i: int, **kwargs: Any) -> bytes:
    """Generated message ``i`` addressed to the owner of these tests."""
    return make_message(i, to=[("Sam Rivera", SAM)], **kwargs)


def write_mbox(path: Path, messages: list[bytes], *, append: bool = False) -> None:
    data = make_mbox(messages)
    if append:
        with path.open("ab") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def parse(raw: bytes) -> StdMessage:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, StdMessage)
    return msg


# --- 1. the sample mailbox ------------------------------------------------------


async def test_sample_mbox_lands_with_accounts_labels_replies_and_files(tmp_path: Path) -> None:
    source = [parse(bytes(m)) for m in mailbox.mbox(SAMPLE, create=False)]
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, mbox_options(SAMPLE))
        snap = await snapshot(pod)

        # One EmailMessage per message in the file.
        messages = snap.of_type("EmailMessage")
        assert len(messages) == len(source) == 12
        with_id = {str(m["Message-ID"]) for m in source if m["Message-ID"]}
        assert {m.get("externalId") for m in messages} - {None} == with_id
        assert sum(1 for m in messages if "externalId" not in m) == 1  # the backup notice
        by_ext = {m["externalId"]: m for m in messages if "externalId" in m}
        assert by_ext["<paris-4@exemple.fr>"]["subject"] == "Réunion à Paris — ordre du jour"
        assert by_ext["<paris-4@exemple.fr>"]["starred"] is True
        assert by_ext["<news-5@shop.example>"]["isRead"] is False
        news = by_ext["<news-5@shop.example>"]
        assert "<h1>May deals</h1>" in news["htmlContent"]
        assert "May deals" in news["content"] and "<h1>" not in news["content"]

        # An Account per distinct address, linked by sender/receiver/cc edges.
        expected_edges: Counter[tuple[str, str, str]] = Counter()
        handles: set[str] = set()
        for msg, item in zip(source, sorted_like(source, messages), strict=True):
            for header, name in (("From", "sender"), ("To", "receiver"), ("Cc", "cc")):
                for _, addr in getaddresses([str(v) for v in msg.get_all(header, [])]):
                    handles.add(addr.lower())
                    expected_edges[(item["id"], name, account_id(addr))] += 1
        accounts = snap.of_type("Account")
        assert {a["handle"] for a in accounts} == handles
        assert {a["id"] for a in accounts} == {account_id(h) for h in handles}
        address_edges = Counter(
            {e: n for e, n in snap.edges.items() if e[1] in ("sender", "receiver", "cc")}
        )
        assert address_edges == expected_edges
        assert len(snap.edges_named("cc")) == 2

        # The owner's Account is the one marked isMe, and carries the checkpoint.
        me = [a for a in accounts if a.get("isMe")]
        assert [a["handle"] for a in me] == [SAM]
        assert f"mbox:{SAMPLE}" in await checkpoints(pod)
        tom = snap.items[account_id("tom@acme.example")]
        assert tom["displayName"] == "Tom Becker" and not tom.get("isMe")

        # The folder Label, one label edge per message.
        [label] = snap.of_type("Label")
        assert (label["name"], label["service"]) == ("sample", "email")
        assert snap.edges_named("label") == sorted(
            (m["id"], "label", label["id"]) for m in messages
        )

        # Replies resolved to their parents, both ends in the Pod.
        replies = {
            (snap.items[s]["externalId"], snap.items[t]["externalId"])
            for s, _, t in snap.edges_named("message")
        }
        assert replies == {
            ("<reply-2@example.org>", "<kickoff-1@acme.example>"),
            ("<tom-3@acme.example>", "<reply-2@example.org>"),
            ("<reply-7@example.org>", "<jp-6@example.jp>"),
            ("<priya-10@acme.example>", "<tom-3@acme.example>"),
        }

        # Attachments: File items whose stored content equals the attachment.
        attachments: dict[str | None, bytes] = {}
        for msg in source:
            for part in msg.iter_attachments():
                content = part.get_content()
                attachments[part.get_filename()] = (
                    content.encode() if isinstance(content, str) else content
                )
        files = {f.get("filename"): f for f in snap.of_type("File")}
        assert set(files) == {"kickoff-slides.pdf", "lake.png", "invite.ics"}
        for filename, data in attachments.items():
            stored = await pod.get_file(files[filename]["sha256"])
            assert stored == data
            assert files[filename]["sha256"] == hashlib.sha256(data).hexdigest()
            assert files[filename]["size"] == len(data)
        attached = Counter(snap.items[t]["filename"] for _, _, t in snap.edges_named("attachment"))
        assert attached == {"kickoff-slides.pdf": 2, "lake.png": 1, "invite.ics": 1}

        # The run, recorded in the Pod.
        record = await run_item(pod, result)
        assert record["status"] == "done" and record["progress"] == 1.0
        # 12 messages, the Accounts but the owner's (made before the run), a Label, 3 Files.
        assert record["createdCount"] == result.stats.created == 12 + len(handles) - 1 + 1 + 3
        assert record["skippedCount"] == 0 and json.loads(record["skipLog"]) == []
        assert record["startDate"] <= record["endDate"]
        assert result.stats.files_uploaded == 3


def sorted_like(source: list[StdMessage], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Pod's EmailMessage items in ``source`` order (by Message-ID, else Subject)."""
    by_key = {item.get("externalId") or item.get("subject"): item for item in items}
    return [by_key[str(m["Message-ID"] or m["Subject"])] for m in source]


# --- 2. incremental runs ----------------------------------------------------------


async def test_second_run_imports_nothing_and_appended_mail_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "Inbox.mbox"
    shutil.copyfile(SAMPLE, path)
    async with local_pod(tmp_path / "pod") as pod:
        await run(pod, tmp_path, mbox_options(path))
        first_state = (await checkpoints(pod))[f"mbox:{path}"]
        assert first_state["offset"] == path.stat().st_size
        before = await snapshot(pod)

        again = await run(pod, tmp_path, mbox_options(path))
        assert (again.stats.created, again.stats.edges_created, again.stats.updated) == (0, 0, 0)
        assert (await snapshot(pod)).comparable() == before.comparable()

        size = path.stat().st_size
        # Three new messages: a new correspondent, a reply into the sample's
        # thread and an attachment already stored.
        pdf = next(f for f in before.of_type("File") if f["filename"] == "kickoff-slides.pdf")
        pdf_bytes = await pod.get_file(pdf["sha256"])
        assert pdf_bytes is not None
        new = [
            to_sam(500, sender=("Nina New", "nina@new.example")),
            to_sam(501, sender=("Priya Nair", "priya@acme.example"), subject="Re: kickoff",
                   extra_headers={"In-Reply-To": "<kickoff-1@acme.example>"}),
            to_sam(502, sender=("Tom Becker", "tom@acme.example"), attachment=pdf_bytes,
                   attachment_name="again.pdf", attachment_type="application/pdf"),
        ]  # fmt: skip
        write_mbox(path, new, append=True)
        result = await run(pod, tmp_path, mbox_options(path))

        after = await snapshot(pod)
        created = set(after.items) - set(before.items)
        assert {after.items[i]["type"] for i in created} == {"EmailMessage", "Account"}
        assert sorted(after.items[i].get("externalId") or "" for i in created) == sorted(
            ["", message_id(500), message_id(501), message_id(502)]
        )  # "" is nina's Account
        assert result.stats.created == 4
        # Only the appended messages were read: their records and one checkpoint.
        assert result.stats.records == sum(len(records_of(raw, "Inbox")) for raw in new) + 1
        assert result.stats.unchanged < 12
        assert result.stats.files_uploaded == 0
        assert (message_item_id(message_id(501)), "message",
                message_item_id("<kickoff-1@acme.example>")) in after.edges  # fmt: skip
        assert (message_item_id(message_id(502)), "attachment", pdf["id"]) in after.edges
        assert len(after.of_type("File")) == 3

        state = (await checkpoints(pod))[f"mbox:{path}"]
        assert state["offset"] == path.stat().st_size > first_state["offset"] == size
        assert state["last_start"] > size
        assert state["fingerprint"] == first_state["fingerprint"]

        final = await run(pod, tmp_path, mbox_options(path))
        assert (final.stats.created, final.stats.edges_created) == (0, 0)


async def test_summary_counts_do_not_depend_on_how_records_are_batched(tmp_path: Path) -> None:
    """A correspondent or folder seen in many messages is one item, counted once:
    created in a first import, unchanged in a rescan, however the records fell
    into batches (a slow source cuts them by time), and a dry run agrees."""
    counts = {}
    for batch_records in (10_000, 40, 3):
        settings = EngineSettings(batch_records=batch_records, flush_interval=60)
        async with local_pod(tmp_path / f"pod-{batch_records}") as pod:
            for step, full_refresh in enumerate((False, True)):
                for dry_run in (True, False):
                    result = await run_connector(
                        connector,
                        mbox_options(SAMPLE),
                        client=pod,
                        data_dir=tmp_path,
                        settings=settings,
                        full_refresh=full_refresh,
                        dry_run=dry_run,
                    )
                    assert result.error is None, result.error
                    stats = result.stats
                    counts[(batch_records, step, dry_run)] = (
                        stats.created,
                        stats.updated,
                        stats.unchanged,
                        stats.edges_created,
                    )
            items = len((await snapshot(pod)).items)
    for (_, step, _), found in counts.items():
        assert found == counts[(10_000, step, False)]
    created, _, unchanged, _ = counts[(10_000, 0, False)]
    assert (created, unchanged) == (items - 1, 1)  # the owner's Account is made first
    assert counts[(10_000, 1, False)] == (0, 0, items, 0)


async def test_mbox_message_caught_mid_delivery_lands_whole(tmp_path: Path) -> None:
    """The run that finds a message half appended leaves it; the next stores it whole."""
    body = "first line\n" + "".join(f"line {n}\n" for n in range(40)) + "THE END\n"
    full = make_mbox([to_sam(0, body="hello\n"), to_sam(4, body=body)])
    path = tmp_path / "Inbox.mbox"
    path.write_bytes(full[: full.index(b"line 20")])  # the delivery of message 2 is half done
    async with local_pod(tmp_path / "pod") as pod:
        await run(pod, tmp_path, mbox_options(path))
        [first] = (await snapshot(pod)).of_type("EmailMessage")
        assert first["externalId"] == message_id(0)

        path.write_bytes(full)  # the delivery finishes
        await run(pod, tmp_path, mbox_options(path))
        stored = {m["externalId"]: m for m in (await snapshot(pod)).of_type("EmailMessage")}
        assert set(stored) == {message_id(0), message_id(4)}
        assert "line 39\nTHE END" in stored[message_id(4)]["content"]


# --- 3. a reply before its parent ------------------------------------------------


@pytest.mark.parametrize("parent_arrives", ["appended", "other mbox"])
async def test_reply_before_parent_waits_as_pending_edge(
    tmp_path: Path, parent_arrives: str
) -> None:
    first = tmp_path / "Inbox.mbox"
    write_mbox(first, [to_sam(1), to_sam(2, reply_to=900)])
    child, parent = message_item_id(message_id(2)), message_item_id(message_id(900))
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, mbox_options(first))
        assert result.stats.edges_pending == 1
        snap = await snapshot(pod, include_bookkeeping=True)
        assert parent not in snap.items
        assert snap.edges_named("message") == []
        [pending] = snap.of_type("PendingEdge")
        assert (pending["edgeSource"], pending["edgeName"], pending["edgeTarget"]) == (
            child, "message", parent
        )  # fmt: skip

        if parent_arrives == "appended":
            write_mbox(first, [to_sam(900)], append=True)
            second = await run(pod, tmp_path, mbox_options(first))
        else:
            other = tmp_path / "Archive.mbox"
            write_mbox(other, [to_sam(3), to_sam(900)])
            second = await run(pod, tmp_path, mbox_options(other))
        assert second.stats.edges_pending == 0

        snap = await snapshot(pod, include_bookkeeping=True)
        assert snap.edges_named("message") == [(child, "message", parent)]
        assert snap.items[parent]["type"] == snap.items[child]["type"] == "EmailMessage"
        assert snap.of_type("PendingEdge") == []
        assert await pod.search({"type": "PendingEdge", "deleted": False}) == []


# --- 4. one message, two sources ------------------------------------------------------


async def test_same_message_in_mbox_and_maildir_is_one_item_with_two_labels(
    tmp_path: Path,
) -> None:
    shared = to_sam(7, attachment=b"shared bytes", attachment_name="s.bin")
    mbox_path = tmp_path / "Saved.mbox"
    write_mbox(mbox_path, [to_sam(1), shared])
    maildir = tmp_path / "Maildir"
    deliver_maildir(maildir, shared, flags="")
    deliver_maildir(maildir, to_sam(3), folder="Work", flags="")
    deliver_maildir(maildir, shared, folder="Work", flags="")
    async with local_pod(tmp_path / "pod") as pod:
        await run(pod, tmp_path, mbox_options(mbox_path))
        second = await run(pod, tmp_path, maildir_options(maildir))
        snap = await snapshot(pod)

        shared_id = message_item_id(message_id(7))
        assert [m["id"] for m in snap.of_type("EmailMessage")].count(shared_id) == 1
        assert len(snap.of_type("EmailMessage")) == 3
        labels = {
            target: snap.items[target]["name"]
            for source, _, target in snap.edges_named("label")
            if source == shared_id
        }
        assert sorted(labels.values()) == ["INBOX", "Saved", "Work"]
        assert all(snap.edges[(shared_id, "label", t)] == 1 for t in labels)
        assert len(snap.edges_named("attachment")) == 1
        assert len(snap.of_type("File")) == 1
        # The Maildir run created the other message, its sender, two Labels; and
        # its three edges plus the shared message's two new labels.
        assert second.stats.created == 1 + 1 + 2
        assert second.stats.edges_created == 3 + 2
        assert second.stats.files_uploaded == 0


# --- 5. a Maildir flag change --------------------------------------------------------


async def test_maildir_flag_change_updates_the_stored_message(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    files = [deliver_maildir(maildir, to_sam(i), flags="", mtime=_OLD) for i in range(4)]
    async with local_pod(tmp_path / "pod") as pod:
        await run(pod, tmp_path, maildir_options(maildir))
        before = await snapshot(pod)
        assert {(m["isRead"], m["starred"]) for m in before.of_type("EmailMessage")} == {
            (False, False)
        }

        files[1].rename(files[1].with_name(files[1].name + "S"))
        files[2].rename(files[2].with_name(files[2].name + "FS"))
        result = await run(pod, tmp_path, maildir_options(maildir))

        assert result.stats.created == 0 and result.stats.edges_created == 0
        assert result.stats.updated == 2
        after = await snapshot(pod)
        flags = {
            m["externalId"]: (m["isRead"], m["starred"]) for m in after.of_type("EmailMessage")
        }
        assert flags == {
            message_id(0): (False, False),
            message_id(1): (True, False),
            message_id(2): (True, True),
            message_id(3): (False, False),
        }
        assert set(after.items) == set(before.items) and after.edges == before.edges

        # Unflagging is seen too.
        flagged = files[2].with_name(files[2].name + "FS")
        flagged.rename(files[2].with_name(files[2].name + "S"))
        again = await run(pod, tmp_path, maildir_options(maildir))
        assert (again.stats.created, again.stats.updated) == (0, 1)
        item = await pod.get_item(message_item_id(message_id(2)))
        assert item is not None and (item["isRead"], item["starred"]) == (True, False)


async def test_maildir_file_unreadable_for_a_while_lands_once_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    maildir = tmp_path / "Maildir"
    deliver_maildir(maildir, to_sam(0), flags="S", mtime=_OLD)
    locked = deliver_maildir(maildir, to_sam(1), flags="S", mtime=_OLD)
    original = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == locked:  # a file of the delivery agent's user, mode 0600
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    async with local_pod(tmp_path / "pod") as pod:
        monkeypatch.setattr(Path, "read_bytes", read_bytes)
        first = await run(pod, tmp_path, maildir_options(maildir))
        assert [s.ref for s in first.skipped] == [f"maildir:{locked}"]
        stored = {m["externalId"] for m in (await snapshot(pod)).of_type("EmailMessage")}
        assert stored == {message_id(0)}

        monkeypatch.undo()  # permissions fixed: cur/ and new/ do not change
        second = await run(pod, tmp_path, maildir_options(maildir))
        assert second.skipped == []
        stored = {m["externalId"] for m in (await snapshot(pod)).of_type("EmailMessage")}
        assert stored == {message_id(0), message_id(1)}


# --- 6. conformance --------------------------------------------------------------------


def generated_messages(count: int) -> list[bytes]:
    """Replies to earlier and later messages, and attachments (some shared)."""
    messages = []
    for i in range(count):
        reply_to = None
        if i % 7 == 3:
            reply_to = i - 2
        elif i % 11 == 5:
            reply_to = i + 4 if i + 4 < count else 10_000  # later, or never
        attachment = None
        if i % 5 == 0:
            attachment = f"attachment {i % 15}\n".encode() * 40
        messages.append(
            to_sam(i, reply_to=reply_to, attachment=attachment, cc=[address_pair(i + 1)])
        )
    return messages


def address_pair(i: int) -> tuple[str, str]:
    return f"Person {i % 9}", f"person{i % 9}@corpus.example"


CONFORMANCE = EngineSettings(batch_records=50, max_in_flight=2)


async def test_conformance_mbox(tmp_path: Path) -> None:
    path = tmp_path / "All.mbox"
    write_mbox(path, generated_messages(150))
    await check_connector(
        connector, mbox_options(path), tmp_path, crash_points=6, settings=CONFORMANCE
    )


async def test_conformance_maildir(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    for i, raw in enumerate(generated_messages(150)):
        folder = (None, "Work", "Archive")[i % 3]
        deliver_maildir(root, raw, folder=folder, flags="S" if i % 2 else "", mtime=_OLD)
    await check_connector(
        connector, maildir_options(root), tmp_path, crash_points=6, settings=CONFORMANCE
    )


_FAILING_POD_RUN = """
import sys
from pathlib import Path

import anyio

from connectors.email import connector
from importer.engine import EngineSettings
from importer.pod.errors import PodError
from importer.testing import local_pod, run_connector


class FailingPod:
    # Forwards to the Pod; its third write bulk fails as if the Pod went away.

    def __init__(self, client):
        self._client, self.writes = client, 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    async def bulk(self, **sections):
        if sections.get("create_items"):
            self.writes += 1
            if self.writes == 3:
                raise PodError(503, "the Pod went away")
        return await self._client.bulk(**sections)


async def main(data_dir, mbox):
    async with local_pod(data_dir) as client:
        options = {"source": "mbox", "path": mbox, "address": "sam@example.org"}
        settings = EngineSettings(batch_records=50, max_in_flight=2)
        result = await run_connector(
            connector, options, client=FailingPod(client), data_dir=data_dir, settings=settings
        )
        print(result.status, result.error)


anyio.run(main, Path(sys.argv[1]), sys.argv[2])
"""


def test_failed_write_with_a_busy_sync_source_ends_the_run(tmp_path: Path) -> None:
    """A Pod failing mid-import ends the run as failed; it must not hang at full CPU."""
    path = tmp_path / "All.mbox"
    write_mbox(path, generated_messages(150))
    try:
        done = subprocess.run(
            [sys.executable, "-c", _FAILING_POD_RUN, str(tmp_path / "pod"), str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=Path(__file__).parents[2],
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the run did not end within 30 s after a write bulk failed")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "failed HTTP 503: the Pod went away"


# --- 7. skipped records ---------------------------------------------------------------


async def test_oversize_attachment_and_unusable_message_are_logged_and_the_rest_lands(
    tmp_path: Path,
) -> None:
    path = tmp_path / "Mixed.mbox"
    big = b"B" * 5000
    good = [
        to_sam(1, attachment=b"small attachment", attachment_name="small.txt",
               attachment_type="application/octet-stream"),
        to_sam(2, attachment=big, attachment_name="big.bin"),
        to_sam(3),
    ]  # fmt: skip
    data = make_mbox(good[:2])
    junk_at = len(data)
    data += b"From nobody Mon Jan  1 00:00:00 2024\nthis is not an email at all\n\n"
    data += make_mbox(good[2:])
    path.write_bytes(data)
    big_at = data.index(b"From sender1@")
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, mbox_options(path, max_attachment_bytes=1000))
        assert result.status == "done" and result.skip_count == 2
        record = await run_item(pod, result)
        assert record["status"] == "done" and record["skippedCount"] == 2
        assert "error" not in record
        log = json.loads(record["skipLog"])
        assert [entry["ref"] for entry in log] == [
            f"mbox:{path}@{big_at} attachment big.bin",
            f"mbox:{path}@{junk_at}",
        ]
        assert "exceeds max_attachment_bytes" in log[0]["reason"]
        assert "not an RFC 822 message" in log[1]["reason"]

        snap = await snapshot(pod)
        assert sorted(m["externalId"] for m in snap.of_type("EmailMessage")) == [
            message_id(i) for i in (1, 2, 3)
        ]
        assert [f["filename"] for f in snap.of_type("File")] == ["small.txt"]
        assert snap.edges_named("attachment") == [
            (message_item_id(message_id(1)), "attachment", snap.of_type("File")[0]["id"])
        ]
        assert await pod.get_file(snap.of_type("File")[0]["sha256"]) == b"small attachment"


# --- 8. one attachment, two messages ------------------------------------------------------


@pytest.mark.parametrize("batch_records", [1000, 3], ids=["one bulk", "separate bulks"])
async def test_shared_attachment_is_one_file_uploaded_once(
    tmp_path: Path, batch_records: int
) -> None:
    content = os.urandom(3000)
    path = tmp_path / "Inbox.mbox"
    write_mbox(
        path,
        [
            to_sam(1, attachment=content, attachment_name="report.pdf"),
            to_sam(2),
            to_sam(3, attachment=content, attachment_name="report (copy).pdf"),
        ],
    )
    settings = EngineSettings(batch_records=batch_records, max_in_flight=2, flush_interval=0.2)
    async with local_pod(tmp_path / "pod") as pod:
        result = await run_connector(
            connector, mbox_options(path), client=pod, data_dir=tmp_path, settings=settings
        )
        assert result.error is None
        assert result.stats.files_uploaded == 1
        snap = await snapshot(pod)
        [file] = snap.of_type("File")
        assert file["sha256"] == hashlib.sha256(content).hexdigest()
        assert file["size"] == 3000
        assert await pod.get_file(file["sha256"]) == content
        assert snap.edges_named("attachment") == sorted(
            (message_item_id(message_id(i)), "attachment", file["id"]) for i in (1, 3)
        )

        # A later message with the same bytes links to the stored File, uploads nothing.
        write_mbox(path, [to_sam(4, attachment=content)], append=True)
        later = await run(pod, tmp_path, mbox_options(path))
        assert later.stats.files_uploaded == 0
        snap = await snapshot(pod)
        assert len(snap.of_type("File")) == 1
        assert len(snap.edges_named("attachment")) == 3


# --- 9. the stdlib robustness corpus ---------------------------------------------------------


def stdlib_messages() -> list[Path]:
    try:
        import test.test_email as stdlib_tests  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return []
    return sorted((Path(stdlib_tests.__file__).parent / "data").glob("msg_*.txt"))


def records_of(raw: bytes, folder: str | None = None) -> list[Record]:
    """What the mapping makes of one message of the owner's mailbox."""
    owner = connector.account(EmailOptions(source="mbox", path=Path("x"), address=SAM), "t")
    label = None if folder is None else folder_label(owner, folder)
    return message_records(raw, owner=owner, source_ref="x", folder=label)


def expected_id(raw: bytes) -> str | None:
    """The EmailMessage id the mapping gives ``raw``; None if it is unusable."""
    try:
        records = records_of(raw)
    except UnusableMessage:
        return None
    first = records[0]
    assert isinstance(first, EmailMessage) and first.id is not None
    return first.id


@pytest.mark.skipif(not stdlib_messages(), reason="the stdlib email test data is not installed")
async def test_stdlib_corpus_mbox_imports_every_message_or_says_why(tmp_path: Path) -> None:
    raws = [p.read_bytes() for p in stdlib_messages()]
    path = tmp_path / "stdlib.mbox"
    path.write_bytes(make_mbox(raws))
    data = path.read_bytes()
    starts = {int(m.group(1)): m.start() for m in _FROM_LINE.finditer(data)}
    assert sorted(starts) == list(range(len(raws)))
    async with local_pod(tmp_path / "pod") as pod:
        result = await run_connector(
            connector, mbox_options(path), client=pod, data_dir=tmp_path, settings=SMALL
        )
        assert result.status == "done" and result.error is None
        record = await run_item(pod, result)
        assert record["status"] == "done"
        log = json.loads(record["skipLog"])
        assert record["skippedCount"] == len(log) == result.skip_count
        reasons = {entry["ref"]: entry["reason"] for entry in log}
        assert all(reasons.values())
        stored = {m["id"] for m in (await snapshot(pod)).of_type("EmailMessage")}

        unusable = []
        for n, raw in enumerate(raws):
            ref = f"mbox:{path}@{starts[n]}"
            wanted = expected_id(raw.replace(b"\r\n", b"\n"))
            if wanted is None:
                assert ref in reasons, f"msg {n} is neither imported nor in the skip log"
                unusable.append(n)
            else:
                assert wanted in stored, f"msg {n} did not land"
        assert len(unusable) <= 2
        # Nothing else landed (the corpus repeats some Message-IDs: fewer items than files).
        assert stored == {expected_id(raw) for raw in raws} - {None}
        # Every other skip is a part of a message that did land.
        whole = {f"mbox:{path}@{starts[n]}" for n in unusable}
        for ref in set(reasons) - whole:
            assert ref.split(" ", 1)[0] in {f"mbox:{path}@{at}" for at in starts.values()}


async def test_two_messages_sharing_a_message_id_make_one_item_the_first_copy(
    tmp_path: Path,
) -> None:
    """Your HTML original and a list's plain-text copy share a Message-ID: one item,
    the first copy's, whether the two land in one batch or in two."""
    original = to_sam(3, subject="Plans", body="my original text", html_only=True)
    list_copy = to_sam(
        0, subject="[team] Plans", body="my original text\n-- \nteam list footer\n"
    ).replace(b"<msg0@corpus.example>", b"<msg3@corpus.example>")
    path = tmp_path / "All.mbox"
    write_mbox(path, [original, list_copy])
    found = []
    for batch_records in (40, 2):  # together in one batch; one batch each
        settings = EngineSettings(batch_records=batch_records, flush_interval=0.2)
        async with local_pod(tmp_path / f"pod-{batch_records}") as pod:
            result = await run_connector(
                connector, mbox_options(path), client=pod, data_dir=tmp_path, settings=settings
            )
            assert result.error is None, result.error
            [msg] = (await snapshot(pod)).of_type("EmailMessage")
        found.append({k: msg.get(k) for k in ("subject", "content", "htmlContent")})
    first, second = found
    assert first == second
    assert first["subject"] == "Plans"
    assert "footer" not in (first["content"] or "")
    assert "my original text" in (first["htmlContent"] or "")


# --- 10. mail from old and odd mailers ---------------------------------------------------------


def _odd_message(n: int, headers: str, body: bytes) -> bytes:
    head = (
        f"From: Odd Mailer <odd{n}@old.example>\r\nTo: {SAM}\r\n"
        f"Message-ID: <odd{n}@old.example>\r\nDate: Mon, 1 Jun 2009 10:00:00 +0200\r\n"
        f"MIME-Version: 1.0\r\n{headers}\r\n"
    )
    return head.encode() + body


def _with_part(n: int, part_headers: bytes, part_body: bytes, ctype: str = "mixed") -> bytes:
    return _odd_message(
        n,
        f'Subject: message {n}\r\nContent-Type: multipart/{ctype}; boundary="P"\r\n',
        b"--P\r\nContent-Type: text/plain\r\n\r\nsee the part\r\n--P\r\n"
        + part_headers
        + b"\r\n"
        + part_body
        + b"\r\n--P--\r\n",
    )


async def test_mail_from_old_and_odd_mailers_lands_decoded(tmp_path: Path) -> None:
    """Transfer-encoded forwards and bounce reports, split encoded words and 8-bit
    or RFC 2231 filenames: what lands in the Pod is the decoded text."""
    forwarded = (
        "From: inner@old.example\r\nSubject: =?utf-8?q?Caf=C3=A9?= " + "and more " * 8 + "\r\n"
        'Message-ID: <inner@old.example>\r\nContent-Type: text/plain; charset="utf-8"\r\n\r\n'
        "caf\u00e9 = 1 \u20ac\r\n"
    ).encode()
    report = (
        b"Reporting-MTA: dns; mx.old.example\r\n\r\nFinal-Recipient: rfc822; gone@old.example\r\n"
        b"Action: failed\r\nStatus: 5.1.1\r\n\r\n"
    )
    word = "Gr\u00fc\u00dfe aus K\u00f6ln".encode()
    split = " ".join(f"=?utf-8?B?{base64.b64encode(h).decode()}?=" for h in (word[:3], word[3:]))
    gbk_name = "".join(f"%{b:02X}" for b in "\u9555\u57fa.pdf".encode("gbk"))
    messages = [
        _with_part(1, b"Content-Type: message/rfc822\r\n"
                   b"Content-Transfer-Encoding: quoted-printable\r\n",
                   quopri.encodestring(forwarded)),
        _with_part(2, b"Content-Type: message/delivery-status\r\n"
                   b"Content-Transfer-Encoding: base64\r\n",
                   base64.encodebytes(report), "report"),
        _odd_message(3, f"Subject: Re: {split}\r\n", b"hello\r\n"),
        _with_part(4, 'Content-Type: application/pdf\r\nContent-Disposition: attachment; '
                   'filename="Pr\u00e4sentation.pdf"\r\n'.encode(), b"%PDF-4"),
        _with_part(5, b"Content-Type: application/pdf\r\nContent-Disposition: attachment; "
                   b"filename*=gb2312''" + gbk_name.encode() + b"\r\n", b"%PDF-5"),
    ]  # fmt: skip
    path = tmp_path / "Old.mbox"
    write_mbox(path, messages)
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, mbox_options(path))
        assert result.status == "done" and result.skip_count == 0
        snap = await snapshot(pod)
        subjects = {m["externalId"]: m["subject"] for m in snap.of_type("EmailMessage")}
        assert subjects["<odd3@old.example>"] == "Re: Gr\u00fc\u00dfe aus K\u00f6ln"
        files = {f.get("filename"): f for f in snap.of_type("File")}
        assert set(files) == {
            "Caf\u00e9" + " and more" * 8 + ".eml",
            None,
            "Pr\u00e4sentation.pdf",
            "\u9555\u57fa.pdf",
        }
        eml = await pod.get_file(files["Caf\u00e9" + " and more" * 8 + ".eml"]["sha256"])
        assert eml is not None and "caf\u00e9 = 1 \u20ac".encode() in eml
        assert b"Message-ID: <inner@old.example>" in eml
        assert files[None]["mimeType"] == "message/delivery-status"
        dsn = await pod.get_file(files[None]["sha256"])
        assert dsn == report.replace(b"\r\n", b"\n")
        assert await pod.get_file(files["\u9555\u57fa.pdf"]["sha256"]) == b"%PDF-5"


# --- 11. Japanese mail in ISO-2022-JP ----------------------------------------------------------


async def test_japanese_mail_in_iso_2022_jp_lands_decoded(tmp_path: Path) -> None:
    """Old Japanese mail: ISO-2022-JP in raw headers, bodies declared as something
    else or nothing, and the characters Windows adds to it (CP50220)."""
    jis = "会議の件".encode("iso-2022-jp").decode("ascii")
    windows = b"\x1b$B-!2q5D-j\x1b(B"  # circled one, 会議, (株) in NEC row 13
    windows_word = base64.b64encode(windows).decode()
    messages = [
        _odd_message(11, f"Subject: {jis}\r\n", "了解しました\r\n".encode("iso-2022-jp")),
        _odd_message(
            12,
            f"Subject: =?ISO-2022-JP?B?{windows_word}?=\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n",
            windows + b"\r\n",
        ),
        _with_part(13, b"Content-Type: application/pdf\r\nContent-Disposition: attachment; "
                   b'filename="' + "見積書".encode("iso-2022-jp") + b'.pdf"\r\n', b"%PDF-13"),
    ]  # fmt: skip
    path = tmp_path / "Japan.mbox"
    write_mbox(path, messages)
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, mbox_options(path))
        assert result.status == "done" and result.skip_count == 0
        snap = await snapshot(pod)
        stored = {m["externalId"]: m for m in snap.of_type("EmailMessage")}
        assert stored["<odd11@old.example>"]["subject"] == "会議の件"
        assert stored["<odd11@old.example>"]["content"] == "了解しました\n"
        assert stored["<odd12@old.example>"]["subject"] == "①会議㈱"
        assert stored["<odd12@old.example>"]["content"] == "①会議㈱\n"
        [file] = snap.of_type("File")
        assert file["filename"] == "見積書.pdf"
        assert await pod.get_file(file["sha256"]) == b"%PDF-13"


async def test_raw_8bit_header_fields_land_in_the_body_charset(tmp_path: Path) -> None:
    """A mailer that writes raw 8-bit header fields writes them in its body's charset."""
    subject, name = "Отчёт за март".encode("koi8-r"), "Иван Петров".encode("koi8-r")
    message = (
        b"From: " + name + b" <ivan@old.example>\r\nTo: " + SAM.encode() + b"\r\n"
        b"Message-ID: <koi@old.example>\r\nSubject: " + subject + b"\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="P"\r\n\r\n'
        b"--P\r\nContent-Type: text/plain; charset=KOI8-R\r\n\r\n"
        + "Добрый день".encode("koi8-r")
        + b"\r\n--P\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="' + subject + b'.pdf"\r\n\r\n%PDF\r\n--P--\r\n'
    )
    path = tmp_path / "Inbox.mbox"
    write_mbox(path, [message])
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, mbox_options(path))
        assert result.status == "done" and result.skip_count == 0
        snap = await snapshot(pod)
        [stored] = snap.of_type("EmailMessage")
        assert (stored["subject"], stored["content"]) == ("Отчёт за март", "Добрый день")
        sender = await pod.get_item(account_id("ivan@old.example"))
        assert sender is not None and sender["displayName"] == "Иван Петров"
        [file] = snap.of_type("File")
        assert file["filename"] == "Отчёт за март.pdf"


async def test_html_mail_lands_in_the_charset_of_its_meta_tag(tmp_path: Path) -> None:
    """HTML-only mail with no MIME charset names its own in a <meta> tag."""
    html = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
        "</head><body><p>Отчёт за март</p></body></html>"
    )
    message = _odd_message(
        21, "Subject: report\r\nContent-Type: text/html\r\n", html.encode("cp1251")
    )
    path = tmp_path / "Inbox.mbox"
    write_mbox(path, [message])
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, mbox_options(path))
        assert result.status == "done" and result.skip_count == 0
        [stored] = (await snapshot(pod)).of_type("EmailMessage")
        assert (stored["htmlContent"], stored["content"]) == (html + "\n", "Отчёт за март")


# --- 12. large messages ------------------------------------------------------------------------


async def test_large_attachments_land_or_are_skipped_with_their_size(tmp_path: Path) -> None:
    """Importing a large message holds a few times its size in memory, and an
    attachment over max_attachment_bytes is still reported with its exact size."""
    over, under = os.urandom(6 * 2**20), os.urandom(2**20)
    messages = [
        to_sam(1, attachment=over, attachment_name="over.bin"),
        to_sam(2, attachment=under, attachment_name="under.bin"),
    ]
    path = tmp_path / "Big.mbox"
    write_mbox(path, messages)
    async with local_pod(tmp_path / "pod") as pod:
        tracemalloc.start()
        try:
            result = await run(pod, tmp_path, mbox_options(path, max_attachment_bytes=2**21))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert result.status == "done" and result.skip_count == 1
        log = json.loads((await run_item(pod, result))["skipLog"])
        assert [(e["ref"], e["reason"]) for e in log] == [
            (f"mbox:{path}@0 attachment over.bin",
             f"attachment of {len(over)} bytes exceeds max_attachment_bytes"),
        ]  # fmt: skip
        snap = await snapshot(pod)
        [file] = snap.of_type("File")
        assert file["filename"] == "under.bin" and file["size"] == len(under)
        assert await pod.get_file(file["sha256"]) == under
        assert snap.edges_named("attachment") == [
            (message_item_id(message_id(2)), "attachment", file["id"])
        ]
    # About 11 times, then 5 once the mapping parsed in slices, under 4 since
    # the mbox reader keeps neither the lines nor a trimmed copy beside it.
    largest = max(map(len, messages))
    assert peak < 4.5 * largest, f"{peak / largest:.1f} times the largest message"
