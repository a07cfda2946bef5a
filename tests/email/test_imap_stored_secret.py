"""A password or token kept on the Account item reaches only the mailbox it was stored for.

Accounts sharing an owner address share the Account item, and with it its one
``secret`` and ``accessToken``; a second login or server of the address must
never be sent what the first one stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connectors.email import connector
from importer._accounts import add_account, pod_account_named, remove_account
from importer.engine import RunResult
from importer.model import derive_id
from importer.pod import PodClient
from importer.schema import Account
from importer.testing import local_pod, run_connector, snapshot
from tests.plugins.conftest import assert_absent

from .dovecot import PASSWORD, DovecotServer
from .test_imap_e2e import SMALL, message

ADDRESS = "sam@shared.test"
OWNER_ID = derive_id(Account.item_type, "email", ADDRESS)


def mailbox(server: DovecotServer, user: str, **extra: Any) -> dict[str, Any]:
    """IMAP options of ``user`` with no password source of their own."""
    return server.imap_options(user, ADDRESS, **extra)


def url(server: DovecotServer, user: str) -> str:
    return f"imap://{user}@{server.host}:{server.port}"


async def run_config_file(pod: PodClient, tmp_path: Path, opts: dict[str, Any]) -> RunResult:
    """A run of a config-file account (the Pod holds no options for it)."""
    return await run_connector(
        connector, opts, client=pod, data_dir=tmp_path, account_name="mail", settings=SMALL
    )


async def run_pod_account(pod: PodClient, tmp_path: Path, name: str) -> RunResult:
    target = await pod_account_named(pod, connector, name)
    assert target is not None
    return await run_connector(
        connector, target.options, client=pod, data_dir=tmp_path, account_name=name,
        settings=SMALL, account=target.account, importer_id=target.importer_id,
    )  # fmt: skip


async def owner(pod: PodClient) -> dict[str, Any]:
    found = await pod.get_item(OWNER_ID)
    assert found is not None
    return dict(found)


async def subjects(pod: PodClient) -> list[str]:
    return sorted(str(m["subject"]) for m in (await snapshot(pod)).of_type("EmailMessage"))


async def assert_no_secret_outside_the_account(pod: PodClient, *texts: str) -> None:
    snap = await snapshot(pod, include_bookkeeping=True)
    others = [item for item in snap.items.values() if item["id"] != OWNER_ID]
    assert_absent([PASSWORD], json.dumps(others), *texts)


async def test_a_password_stored_by_an_earlier_version_stays_with_its_own_mailbox(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    home, work = dovecot.add_user(), dovecot.add_user()
    dovecot.append(home, "INBOX", [message("home", 0)])
    dovecot.append(work, "INBOX", [message("work", 0)])
    async with local_pod(tmp_path / "pod") as pod:
        await add_account(pod, connector, "home", mailbox(dovecot, home), None)
        # As an earlier version left it: the secret, and no word of whose it is.
        await pod.update_item({"id": OWNER_ID, "secret": PASSWORD})

        log_before = dovecot.log_text()
        refused = await run_config_file(pod, tmp_path, mailbox(dovecot, work))
        assert refused.error is not None
        assert f"no password for {work} at {dovecot.host}:{dovecot.port}" in refused.error
        assert f"is for another mailbox ({url(dovecot, home)})" in refused.error
        assert f"user=<{work}>" not in dovecot.log_text()[len(log_before) :]
        assert await subjects(pod) == []
        assert (await owner(pod)).get("credentialsFor") is None

        # The mailbox the Pod account's config names is the secret's own: the
        # first run for it (config-file or Pod account) records that.
        same = await run_config_file(pod, tmp_path, mailbox(dovecot, home))
        assert same.error is None, same.error
        assert (await owner(pod))["credentialsFor"] == url(dovecot, home)
        again = await run_pod_account(pod, tmp_path, "home")
        assert again.error is None, again.error
        assert await subjects(pod) == ["home message 0"]

        still = await run_config_file(pod, tmp_path, mailbox(dovecot, work))
        assert still.error is not None and "another mailbox" in still.error
        assert await subjects(pod) == ["home message 0"]
        assert (await owner(pod))["secret"] == PASSWORD
        await assert_no_secret_outside_the_account(pod, refused.summary(), still.summary())


async def test_a_secret_no_pod_account_names_a_mailbox_for_is_sent_nowhere(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    user = dovecot.add_user()
    dovecot.append(user, "INBOX", [message("lone", 0)])
    async with local_pod(tmp_path / "pod") as pod:
        # A secret written by hand on the Account of a config-file account.
        account = Account(service="email", handle=ADDRESS, isMe=True, secret=PASSWORD)
        await pod.create_item(account.to_pod())
        log_before = dovecot.log_text()
        result = await run_config_file(pod, tmp_path, mailbox(dovecot, user))
        assert result.error is not None
        assert "no password: set password_env, password_command or password_keyring" in (
            result.error
        )
        assert f"user=<{user}>" not in dovecot.log_text()[len(log_before) :]
        assert await subjects(pod) == []
        await assert_no_secret_outside_the_account(pod, result.summary())


async def test_an_access_token_reaches_only_the_mailbox_it_was_stored_for(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    home, work = dovecot.add_user(), dovecot.add_user()
    dovecot.append(home, "INBOX", [message("home", 0)])
    dovecot.append(work, "INBOX", [message("work", 0)])
    oauth = {"auth": "xoauth2"}
    async with local_pod(tmp_path / "pod") as pod:
        await add_account(pod, connector, "home", mailbox(dovecot, home, **oauth), None)
        # A Pod keeps the token it obtained (the test server takes it like a password).
        await pod.update_item({"id": OWNER_ID, "accessToken": PASSWORD})

        refused = await run_config_file(pod, tmp_path, mailbox(dovecot, work, **oauth))
        assert refused.error is not None
        assert f"no access token for {work} at {dovecot.host}" in refused.error
        assert f"is for another mailbox ({url(dovecot, home)})" in refused.error
        ran = await run_pod_account(pod, tmp_path, "home")
        assert ran.error is None, ran.error
        assert await subjects(pod) == ["home message 0"]
        assert (await owner(pod))["credentialsFor"] == url(dovecot, home)
        await assert_no_secret_outside_the_account(pod, refused.summary())

        # Moving the Pod account to another login with a password: the token
        # of the old one goes, the password is bound to the new one.
        await add_account(pod, connector, "home", mailbox(dovecot, work), PASSWORD)
        moved = await owner(pod)
        assert (moved["credentialsFor"], moved.get("accessToken")) == (url(dovecot, work), None)
        assert (await run_pod_account(pod, tmp_path, "home")).error is None
        assert await subjects(pod) == ["home message 0", "work message 0"]

        await remove_account(pod, "home")
        erased = await owner(pod)
        assert [erased.get(k) for k in ("secret", "accessToken", "credentialsFor")] == [None] * 3
