"""``importer run`` started by a Pod: PluginAuth, the run item's edges, the Account's secret."""

from __future__ import annotations

import json
from pathlib import Path

from tests.email.dovecot import PASSWORD, DovecotServer

from .conftest import SAMPLE, Owner, assert_absent


def _imap_config(server: DovecotServer, user: str) -> dict[str, object]:
    return server.imap_options(user, "owner@imap.plugin.test")


def _message(n: int) -> bytes:
    return (
        f"Message-ID: <plugin-{n}@imap.test>\r\nFrom: Ada <ada@imap.test>\r\n"
        f"To: Owner <owner@imap.plugin.test>\r\nSubject: plugin message {n}\r\n"
        f"Date: Mon, 01 Jan 2024 10:00:0{n} +0100\r\n\r\nBody {n}.\r\n"
    ).encode()


def test_mbox_import_as_a_plugin_then_nothing_new(pod: Owner, home: Path) -> None:
    account_id, _, run_id = pod.make_importer({"source": "mbox", "path": str(SAMPLE)})
    done, given = pod.run_plugin(run_id, home)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    messages = pod.search({"type": "EmailMessage"})
    assert len(messages) >= 10
    run = pod.item(run_id)
    assert run["status"] == "done"
    assert run["createdCount"] >= len(messages)
    assert "error" not in run
    state = json.loads(pod.item(account_id)["importerState"])
    assert state["email"], state  # the checkpoint lives on the Account
    # No new ImporterRun and no other Account or Importer were made for this run.
    assert [r["id"] for r in pod.search({"type": "ImporterRun"})] == [run_id]
    assert len(pod.search({"type": "Importer"})) == 1

    again = pod.new_run(pod.search({"type": "Importer"})[0]["id"])
    second, given2 = pod.run_plugin(again, home)
    assert second.returncode == 0, second.stderr
    assert pod.item(again)["status"] == "done"
    assert pod.item(again)["createdCount"] == 0
    assert len(pod.search({"type": "EmailMessage"})) == len(messages)
    items = json.dumps(pod.all_items())
    assert_absent(given + given2, done.stdout, done.stderr, second.stdout, second.stderr, items)


def test_imap_password_comes_from_the_account_item(
    pod: Owner, home: Path, dovecot: DovecotServer
) -> None:
    user = dovecot.add_user()
    dovecot.append(user, "INBOX", [_message(n) for n in range(1, 6)])
    account_id, _, run_id = pod.make_importer(
        _imap_config(dovecot, user), handle="owner@imap.plugin.test", secret=PASSWORD
    )
    done, given = pod.run_plugin(run_id, home)
    assert done.returncode == 0, done.stderr
    run = pod.item(run_id)
    assert run["status"] == "done", run
    subjects = {m["subject"] for m in pod.search({"type": "EmailMessage"})}
    assert subjects == {f"plugin message {n}" for n in range(1, 6)}
    assert json.loads(pod.item(account_id)["importerState"])["email"]
    # The password is on the Account item (where it belongs) and nowhere else.
    items = [i for i in pod.all_items() if i["id"] != account_id]
    assert_absent([PASSWORD, *given], done.stdout, done.stderr, json.dumps(items), json.dumps(run))
    assert pod.item(account_id)["secret"] == PASSWORD
    # The Pod wrote no binding: the first run recorded the mailbox of its Importer's config.
    assert pod.item(account_id)["credentialsFor"] == f"imap://{user}@{dovecot.host}:{dovecot.port}"


def test_wrong_password_fails_the_run_clearly(
    pod: Owner, home: Path, dovecot: DovecotServer
) -> None:
    wrong = "not-the-password-8317"
    user = dovecot.add_user()
    account_id, _, run_id = pod.make_importer(
        _imap_config(dovecot, user), handle="owner@imap.plugin.test", secret=wrong
    )
    done, given = pod.run_plugin(run_id, home)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    run = pod.item(run_id)
    assert run["status"] == "failed"
    assert "login failed" in run["error"]
    items = [i for i in pod.all_items() if i["id"] != account_id]
    assert_absent([wrong, *given], done.stdout, done.stderr, json.dumps(items))
    assert not pod.search({"type": "EmailMessage"})


def test_no_account_edge_is_a_clear_error_on_the_run(pod: Owner, home: Path) -> None:
    _, _, run_id = pod.make_importer({"source": "mbox", "path": str(SAMPLE)}, link_account=False)
    done, given = pod.run_plugin(run_id, home)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    run = pod.item(run_id)
    assert run["status"] == "failed"
    assert "has no account" in run["error"]
    assert "has no account" in done.stderr
    assert not pod.search({"type": "EmailMessage"})
    assert_absent(given, done.stdout, done.stderr, json.dumps(pod.all_items()))


def test_no_importer_edge_is_a_clear_error_on_the_run(pod: Owner, home: Path) -> None:
    _, _, run_id = pod.make_importer({"source": "mbox", "path": str(SAMPLE)}, link_importer=False)
    done, _ = pod.run_plugin(run_id, home)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    run = pod.item(run_id)
    assert run["status"] == "failed" and "has no importer" in run["error"]


def test_bad_config_is_a_clear_error_on_the_run(pod: Owner, home: Path) -> None:
    _, _, run_id = pod.make_importer('{"source": "mbox", ')
    done, _ = pod.run_plugin(run_id, home)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    run = pod.item(run_id)
    assert run["status"] == "failed" and "config is not valid JSON" in run["error"]

    _, _, run_id = pod.make_importer({"source": "mbox"}, handle="other@plugin.test")
    done, _ = pod.run_plugin(run_id, home)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    error = pod.item(run_id)["error"]
    assert "config" in error and "path" in error


def test_a_plugin_token_the_pod_does_not_know_is_refused(pod: Owner, home: Path) -> None:
    _, _, run_id = pod.make_importer({"source": "mbox", "path": str(SAMPLE)})
    env, _ = pod.plugin_env(run_id, home)
    forged = "forged-token-" + "x" * 30
    env["POD_AUTH_JSON"] = json.dumps({"token": forged})
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "importer", "run", "email"],
        env=env, capture_output=True, text=True, timeout=120, cwd=home,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and forged not in done.stderr
    assert "status" not in pod.item(run_id)
    assert not pod.search({"type": "EmailMessage"})


def test_incomplete_plugin_environment_is_a_usage_error(pod: Owner, home: Path) -> None:
    _, _, run_id = pod.make_importer({"source": "mbox", "path": str(SAMPLE)})
    env, _ = pod.plugin_env(run_id, home)
    del env["POD_AUTH_JSON"]
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "importer", "run", "email"],
        env=env, capture_output=True, text=True, timeout=120, cwd=home,
    )  # fmt: skip
    assert done.returncode == 2
    assert "POD_AUTH_JSON" in done.stderr and "Traceback" not in done.stderr
