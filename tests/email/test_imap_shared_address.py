"""Two IMAP accounts of one address: each mailbox keeps its own place in its folders.

Both accounts import for the same Account item (the owner's address), so
their checkpoints live side by side on it; the UIDs of one mailbox must never
stand for those of the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connectors.email import connector
from connectors.email._imap_streams import folder_stream, take_over_legacy
from connectors.email.options import EmailOptions
from importer import Checkpoint
from importer.model import derive_id
from importer.pod import PodClient
from importer.schema import Account
from importer.testing import local_pod, run_connector, snapshot

from .dovecot import PASSWORD, DovecotServer
from .test_imap_e2e import OWNER, SMALL, _password, message, options, run

__all__ = ["_password"]  # the autouse fixture that sets the accounts' password

OWNER_ID = derive_id(Account.item_type, "email", OWNER)


async def imported(pod: PodClient) -> list[str]:
    snap = await snapshot(pod)
    return sorted(m["externalId"] for m in snap.of_type("EmailMessage"))


def ids(tag: str, count: int) -> list[str]:
    return [f"<{tag}-{n}@imap.test>" for n in range(count)]


async def email_state(pod: PodClient) -> dict[str, Any]:
    account = await pod.get_item(OWNER_ID)
    assert account is not None
    state: dict[str, Any] = json.loads(account["importerState"])["email"]
    return state


async def set_email_state(pod: PodClient, state: dict[str, Any]) -> None:
    await pod.update_item({"id": OWNER_ID, "importerState": json.dumps({"email": state})})


def stream(opts: dict[str, Any], folder: str) -> str:
    return folder_stream(EmailOptions.model_validate(opts), folder)


async def test_one_login_on_two_servers_with_one_uidvalidity_loses_nothing(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    login = dovecot.add_user()
    with DovecotServer.start() as new_server:
        # A mailbox moving to a new host: the same login, the same UIDVALIDITY
        # on purpose, different messages under the same UIDs.
        dovecot.append(login, "INBOX", [message("old", n) for n in range(3)])
        new_server.append(login, "INBOX", [message("new", n) for n in range(2)])
        new_server.set_uidvalidity(login, "INBOX", dovecot.uidvalidity(login, "INBOX"))
        old_opts, new_opts = options(dovecot, login), options(new_server, login)
        async with local_pod(tmp_path / "pod") as pod:
            await run(pod, tmp_path, old_opts)
            await run(pod, tmp_path, new_opts)
            assert await imported(pod) == sorted(ids("old", 3) + ids("new", 2))

            dovecot.append(login, "INBOX", [message("old", 3)])
            new_server.append(login, "INBOX", [message("new", n) for n in (2, 3)])
            again_old = await run(pod, tmp_path, old_opts)
            again_new = await run(pod, tmp_path, new_opts)
            assert (again_old.stats.created, again_new.stats.created) == (1, 2)
            assert await imported(pod) == sorted(ids("old", 4) + ids("new", 4))

            state = await email_state(pod)
            assert state[stream(old_opts, "INBOX")]["last_uid"] == 4
            assert state[stream(new_opts, "INBOX")]["last_uid"] == 4
            for opts in (old_opts, new_opts):
                idle = await run(pod, tmp_path, opts)
                assert (idle.stats.records, idle.stats.unchanged) == (0, 0)


async def test_two_logins_of_one_address_do_not_reread_each_other(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    personal, work = dovecot.add_user(), dovecot.add_user()
    dovecot.append(personal, "INBOX", [message("home", n) for n in range(3)])
    dovecot.append(work, "INBOX", [message("work", n) for n in range(2)])
    validity = dovecot.uidvalidity(personal, "INBOX")
    dovecot.set_uidvalidity(work, "INBOX", validity + 7)
    accounts = options(dovecot, personal), options(dovecot, work)
    async with local_pod(tmp_path / "pod") as pod:
        for opts in accounts:
            await run(pod, tmp_path, opts)
        for _ in range(2):
            for opts in accounts:
                idle = await run(pod, tmp_path, opts)
                # Nothing read again: each found its own UIDVALIDITY and last UID.
                assert (idle.stats.records, idle.stats.unchanged) == (0, 0)
        assert await imported(pod) == sorted(ids("home", 3) + ids("work", 2))
        state = await email_state(pod)
        assert state[stream(accounts[0], "INBOX")]["uidvalidity"] == validity
        assert state[stream(accounts[1], "INBOX")]["uidvalidity"] == validity + 7
        assert PASSWORD not in json.dumps(state)


async def test_a_checkpoint_from_before_the_upgrade_goes_on_being_used(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    first, second = dovecot.add_user(), dovecot.add_user()
    dovecot.append(first, "INBOX", [message("first", n) for n in range(4)])
    dovecot.append(second, "INBOX", [message("second", n) for n in range(2)])
    dovecot.set_uidvalidity(second, "INBOX", dovecot.uidvalidity(first, "INBOX"))
    first_opts, second_opts = options(dovecot, first), options(dovecot, second)
    async with local_pod(tmp_path / "pod") as pod:

        async def one_message(opts: dict[str, Any]) -> None:
            result = await run_connector(
                connector, opts, client=pod, data_dir=tmp_path, settings=SMALL, limit=1
            )
            assert result.error is None, result.error

        await one_message(first_opts)
        await one_message(first_opts)
        # The state as an earlier version kept it: "imap:<folder>", no mailbox.
        [inbox] = (await email_state(pod)).values()
        await set_email_state(pod, {"imap:INBOX": inbox})

        # The next message after the legacy checkpoint, not UID 1 again.
        await one_message(first_opts)
        assert await imported(pod) == ids("first", 3)
        state = await email_state(pod)
        assert state["imap:INBOX"] is None
        assert state[stream(first_opts, "INBOX")]["last_uid"] == 3
        await run(pod, tmp_path, first_opts)
        assert await imported(pod) == ids("first", 4)

        # The legacy state was the first account's: the second starts afresh.
        await run(pod, tmp_path, second_opts)
        assert await imported(pod) == sorted(ids("first", 4) + ids("second", 2))
        for opts in (first_opts, second_opts):
            idle = await run(pod, tmp_path, opts)
            assert (idle.stats.records, idle.stats.unchanged) == (0, 0)


def test_legacy_streams_are_taken_over_once_and_never_over_a_newer_state() -> None:
    opts = EmailOptions(source="imap", host="IMAP.Example.org", username="me@example.org")
    mine = "imap://me%40example.org@imap.example.org:993"
    old = {"uidvalidity": 1, "last_uid": 9, "highestmodseq": None}
    newer = {"uidvalidity": 1, "last_uid": 12, "highestmodseq": None}
    legacy = {"imap:INBOX": old, "imap:Sent": old, "imap:Gone": None, "mbox:/x": {"n": 1}}

    def moves(checkpoints: dict[str, Any]) -> list[tuple[str, Any]]:
        return [(c.stream, c.state) for c in take_over_legacy(checkpoints, opts)]

    assert folder_stream(opts, "a/b c") == f"{mine}/a/b c"
    assert moves(legacy) == [
        (f"{mine}/INBOX", old),
        ("imap:INBOX", None),
        (f"{mine}/Sent", old),
        ("imap:Sent", None),
    ]
    # This mailbox's own state of a folder wins over the legacy one.
    assert moves({**legacy, f"{mine}/INBOX": newer}) == [
        ("imap:INBOX", None),
        (f"{mine}/Sent", old),
        ("imap:Sent", None),
    ]
    # Another mailbox has streams already: the legacy ones may be its own.
    other = {**legacy, "imap://you@imap.example.org:993/INBOX": newer}
    assert moves(other) == [("imap:INBOX", None), ("imap:Sent", None)]
    assert moves({f"{mine}/INBOX": newer}) == []
    assert all(isinstance(c, Checkpoint) for c in take_over_legacy(legacy, opts))
