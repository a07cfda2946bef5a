"""IMAP through the engine into a real local Pod, against a real Dovecot."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from connectors.email import connector, imap
from connectors.email.mapping import message_item_id
from importer.engine import EngineSettings, RunResult
from importer.model import derive_id
from importer.pod import PodClient
from importer.schema import Account
from importer.testing import PodSnapshot, local_pod, run_connector, snapshot

from .dovecot import PASSWORD, DovecotServer, DroppingProxy

PW_ENV = "IMPORTER_TEST_IMAP_E2E_PASSWORD"
OWNER = "owner@imap.test"
SMALL = EngineSettings(batch_records=40, max_in_flight=2, flush_interval=0.2)


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PW_ENV, PASSWORD)


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imap, "RETRY_DELAYS", (0.05, 0.05, 0.05))


def message(tag: str, n: int, *, body_bytes: int = 0) -> bytes:
    """A small message from Ada to the owner; ``body_bytes`` pads its body."""
    lines = [
        f"Message-ID: <{tag}-{n}@imap.test>",
        "From: Ada Example <ada@imap.test>",
        "To: Owner <owner@imap.test>",
        f"Subject: {tag} message {n}",
        f"Date: Mon, 0{1 + n % 9} Jan 2024 10:00:00 +0100",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"Body of {tag} message {n}.",
    ]
    filler = f"padding for {tag} {n} ".ljust(70, ".")
    lines.extend(filler for _ in range(body_bytes // 72))
    return ("\r\n".join(lines) + "\r\n").encode()


def msg_id(tag: str, n: int) -> str:
    return message_item_id(f"<{tag}-{n}@imap.test>")


def options(
    server: DovecotServer, user: str, *, host: str | None = None, port: int | None = None,
    **extra: Any,
) -> dict[str, Any]:  # fmt: skip
    where = {"host": host or server.host, "port": port or server.port}
    return server.imap_options(user, OWNER, password_env=PW_ENV, **where, **extra)


async def run(pod: PodClient, tmp_path: Path, opts: dict[str, Any]) -> RunResult:
    result = await run_connector(connector, opts, client=pod, data_dir=tmp_path, settings=SMALL)
    assert result.error is None, result.error
    return result


async def imap_state(pod: PodClient, folder: str) -> dict[str, Any]:
    """The checkpoint of ``folder``: the only mailbox these tests import has that name."""
    account = await pod.get_item(derive_id(Account.item_type, "email", OWNER))
    assert account is not None
    streams = json.loads(account["importerState"])["email"]
    [state] = [
        v for k, v in streams.items() if k.startswith("imap://") and k.endswith(f"/{folder}")
    ]
    assert isinstance(state, dict)
    return state


def labels_of(snap: PodSnapshot, item_id: str) -> list[str]:
    return sorted(snap.items[t]["name"] for s, _, t in snap.edges_named("label") if s == item_id)


async def test_first_import_one_message_in_two_folders_is_one_item(
    dovecot: DovecotServer, imap_user: str, tmp_path: Path
) -> None:
    shared = message("both", 1)
    dovecot.append(imap_user, "INBOX", [message("in", 1), shared], flags=["\\Seen"])
    dovecot.append(imap_user, "Archive", [shared, message("arch", 2)], flags=["\\Seen"])
    dovecot.append(imap_user, "INBOX", [message("in", 3)], flags=["\\Flagged"])
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, options(dovecot, imap_user))
        snap = await snapshot(pod)

        messages = {m["externalId"]: m for m in snap.of_type("EmailMessage")}
        assert sorted(messages) == sorted(
            f"<{t}@imap.test>" for t in ("in-1", "both-1", "arch-2", "in-3")
        )
        assert labels_of(snap, msg_id("both", 1)) == ["Archive", "INBOX"]
        assert labels_of(snap, msg_id("in", 1)) == ["INBOX"]
        assert labels_of(snap, msg_id("arch", 2)) == ["Archive"]
        assert max(snap.edges.values()) == 1
        assert {lb["name"]: lb.get("role") for lb in snap.of_type("Label")} == {
            "INBOX": "inbox",
            "Archive": "archive",
        }
        flags = {k: (m["isRead"], m["starred"]) for k, m in messages.items()}
        assert flags["<in-1@imap.test>"] == (True, False)
        assert flags["<in-3@imap.test>"] == (False, True)
        assert messages["<in-1@imap.test>"]["content"].strip() == "Body of in message 1."

        ada = derive_id(Account.item_type, "email", "ada@imap.test")
        me = derive_id(Account.item_type, "email", OWNER)
        assert snap.items[me]["isMe"] is True and not snap.items[ada].get("isMe")
        assert snap.edges_named("sender") == sorted(
            (m["id"], "sender", ada) for m in messages.values()
        )
        assert snap.edges_named("receiver") == sorted(
            (m["id"], "receiver", me) for m in messages.values()
        )

        record = await pod.get_item(result.run_id or "")
        assert record is not None and record["status"] == "done"
        # 4 messages, Ada, 2 Labels (the owner's Account existed before the run).
        assert record["createdCount"] == result.stats.created == 4 + 1 + 2
        assert (await imap_state(pod, "INBOX"))["last_uid"] == 3
        assert (await imap_state(pod, "Archive"))["last_uid"] == 2


async def test_append_imports_only_the_new_mail(
    dovecot: DovecotServer, imap_user: str, tmp_path: Path
) -> None:
    dovecot.append(imap_user, "INBOX", [message("a", n) for n in range(3)])
    async with local_pod(tmp_path / "pod") as pod:
        await run(pod, tmp_path, options(dovecot, imap_user))
        before = await snapshot(pod)
        first_state = await imap_state(pod, "INBOX")

        idle = await run(pod, tmp_path, options(dovecot, imap_user))
        assert (idle.stats.created, idle.stats.edges_created, idle.stats.records) == (0, 0, 0)

        dovecot.append(imap_user, "INBOX", [message("b", n) for n in range(2)])
        result = await run(pod, tmp_path, options(dovecot, imap_user))
        after = await snapshot(pod)

        new = set(after.items) - set(before.items)
        assert new == {msg_id("b", 0), msg_id("b", 1)}
        assert result.stats.created == 2
        assert result.stats.edges_created == 2 * 3  # sender, receiver, label each
        old_items, _ = before.comparable()
        now_items, _ = after.comparable()
        assert {k: v for k, v in now_items.items() if k in old_items} == old_items
        state = await imap_state(pod, "INBOX")
        assert state["last_uid"] == 5 > first_state["last_uid"] == 3
        assert state["uidvalidity"] == first_state["uidvalidity"]


async def test_uidvalidity_reset_duplicates_nothing(
    dovecot: DovecotServer, imap_user: str, tmp_path: Path
) -> None:
    dovecot.append(imap_user, "INBOX", [message("v", n) for n in range(3)])
    async with local_pod(tmp_path / "pod") as pod:
        await run(pod, tmp_path, options(dovecot, imap_user))
        before = await snapshot(pod)
        old = (await imap_state(pod, "INBOX"))["uidvalidity"]

        dovecot.set_uidvalidity(imap_user, "INBOX", old + 1000)
        result = await run(pod, tmp_path, options(dovecot, imap_user))

        assert (result.stats.created, result.stats.edges_created) == (0, 0)
        assert result.stats.unchanged >= 3  # the folder was read again, all of it known
        after = await snapshot(pod)
        assert after.comparable() == before.comparable()
        assert len(after.of_type("EmailMessage")) == 3
        assert (await imap_state(pod, "INBOX"))["uidvalidity"] == old + 1000


async def test_condstore_flag_change_updates_the_message_in_the_pod(
    dovecot: DovecotServer, imap_user: str, tmp_path: Path
) -> None:
    uids = dovecot.append(imap_user, "INBOX", [message("f", n) for n in range(4)], flags=["\\Seen"])
    async with local_pod(tmp_path / "pod") as pod:
        await run(pod, tmp_path, options(dovecot, imap_user))
        before = await snapshot(pod)

        dovecot.set_flags(imap_user, "INBOX", [uids[0]], ["\\Flagged"])
        dovecot.clear_flags(imap_user, "INBOX", [uids[2]], ["\\Seen"])
        result = await run(pod, tmp_path, options(dovecot, imap_user))

        assert (result.stats.created, result.stats.edges_created) == (0, 0)
        assert result.stats.updated == 2
        after = await snapshot(pod)
        flags = {
            m["externalId"]: (m["isRead"], m["starred"]) for m in after.of_type("EmailMessage")
        }
        assert flags == {
            "<f-0@imap.test>": (True, True),
            "<f-1@imap.test>": (True, False),
            "<f-2@imap.test>": (False, False),
            "<f-3@imap.test>": (True, False),
        }
        assert set(after.items) == set(before.items) and after.edges == before.edges


async def test_wrong_password_fails_the_run_without_revealing_it(
    dovecot: DovecotServer,
    imap_user: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "Wr0ng-e2e-Pa55word"
    monkeypatch.setenv(PW_ENV, wrong)
    dovecot.append(imap_user, "INBOX", [message("pw", 1)])
    async with local_pod(tmp_path / "pod") as pod:
        with caplog.at_level(logging.DEBUG):
            result = await run_connector(
                connector, options(dovecot, imap_user), client=pod, data_dir=tmp_path
            )
        assert result.status == "failed"
        assert result.error is not None
        assert result.error.startswith(
            f"account test: IMAP login failed for {imap_user} at {dovecot.host}: "
        )
        record = await pod.get_item(result.run_id or "")
        assert record is not None
        assert record["status"] == "failed" and record["error"] == result.error
        assert record["createdCount"] == 0
        everything = await snapshot(pod, include_bookkeeping=True)
        assert everything.of_type("EmailMessage") == []
        stored = json.dumps(everything.items)

    assert "LOGIN" in caplog.text  # the IMAP conversation was logged...
    for secret in (wrong, PASSWORD):
        assert secret not in result.error
        assert secret not in caplog.text
        assert secret not in stored


async def test_connection_dropped_mid_fetch_still_lands_every_message_once(
    dovecot: DovecotServer,
    imap_user: str,
    dropping_proxy: DroppingProxy,
    tmp_path: Path,
) -> None:
    dovecot.append(imap_user, "INBOX", [message("d", n, body_bytes=20_000) for n in range(8)])
    # Login, LIST, EXAMINE and SEARCH take a few KiB: the cut falls inside a
    # FETCH of 2 x 20 KB bodies.
    dropping_proxy.drop_after(70_000)
    opts = options(
        dovecot, imap_user, host=dropping_proxy.host, port=dropping_proxy.port, chunk_size=2
    )
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, opts)
        assert dropping_proxy.drops == 1 and dropping_proxy.connections == 2

        snap = await snapshot(pod)
        counts = Counter(m["externalId"] for m in snap.of_type("EmailMessage"))
        assert counts == Counter(f"<d-{n}@imap.test>" for n in range(8))
        assert len(snap.edges_named("label")) == 8
        assert max(snap.edges.values()) == 1
        record = await pod.get_item(result.run_id or "")
        assert record is not None and record["status"] == "done"
        assert (await imap_state(pod, "INBOX"))["last_uid"] == 8

        again = await run(pod, tmp_path, opts)
        assert (again.stats.created, again.stats.edges_created) == (0, 0)
