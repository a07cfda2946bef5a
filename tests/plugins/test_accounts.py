"""``importer account add|list|remove`` then ``importer run --account NAME``, end to end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import anyio

from importer.pod import open_embedded_client
from tests.cli.test_cli import config_file, importer, search
from tests.email.dovecot import PASSWORD, DovecotServer

from .conftest import SAMPLE, assert_absent

PW_ENV = "IMPORTER_TEST_ACCOUNT_SECRET"


def test_add_list_run_remove_an_mbox_account(tmp_path: Path) -> None:
    added = importer(
        "account", "add", "email", "box", "-o", "source=mbox", "-o", f"path={SAMPLE}",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "added account 'box'" in added.stdout
    listed = importer("account", "list", tmp_path=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "box  email  mbox:" in listed.stdout and "never run" in listed.stdout
    [importer_item] = search(tmp_path, "--type", "Importer")
    assert importer_item["name"] == "box" and json.loads(str(importer_item["config"]))["path"]

    ran = importer("run", "email", "--account", "box", tmp_path=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "box: imported" in ran.stdout
    messages = search(tmp_path, "--type", "EmailMessage")
    assert len(messages) >= 10
    assert "last run: done" in importer("account", "list", tmp_path=tmp_path).stdout
    # No config file: `run email` runs the Pod's email accounts.
    again = importer("run", "email", tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "box: imported 0 created" in again.stdout
    # The runs used the stored Importer: still one Importer, one owner Account.
    assert len(search(tmp_path, "--type", "Importer")) == 1

    removed = importer("account", "remove", "box", tmp_path=tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert "removed account 'box'" in removed.stdout and "stay in the Pod" in removed.stdout
    assert "box" not in importer("account", "list", tmp_path=tmp_path).stdout
    assert len(search(tmp_path, "--type", "EmailMessage")) == len(messages)
    gone = importer("run", "email", "--account", "box", tmp_path=tmp_path)
    assert gone.returncode == 2 and "no account 'box'" in gone.stderr


def test_imap_account_with_its_secret_in_the_pod(tmp_path: Path, dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    dovecot.append(
        user, "INBOX",
        [f"Message-ID: <acct-{n}@t>\r\nSubject: account {n}\r\n\r\nhi\r\n".encode()
         for n in range(3)],
    )  # fmt: skip
    options = [
        "-o", "source=imap", "-o", f"host={dovecot.host}", "-o", f"port={dovecot.port}",
        "-o", "security=none", "-o", f"username={user}",
    ]  # fmt: skip
    no_tty = importer("account", "add", "email", "mail", *options, tmp_path=tmp_path)
    assert no_tty.returncode == 2 and "Traceback" not in no_tty.stderr
    assert "--secret-env" in no_tty.stderr and "terminal" in no_tty.stderr
    assert not search(tmp_path, "--type", "Importer")

    env = {PW_ENV: PASSWORD}
    added = importer(
        "account", "add", "email", "mail", *options, "--secret-env", PW_ENV,
        tmp_path=tmp_path, env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    ran = importer("run", "email", "--account", "mail", tmp_path=tmp_path)
    assert ran.returncode == 0, ran.stderr
    subjects = {m["subject"] for m in search(tmp_path, "--type", "EmailMessage")}
    assert subjects == {"account 0", "account 1", "account 2"}
    listed = importer("account", "list", tmp_path=tmp_path)
    items = search(tmp_path)
    [owner] = [i for i in items if i.get("secret")]
    assert owner["type"] == "Account" and owner["secret"] == PASSWORD
    others = json.dumps([i for i in items if i["id"] != owner["id"]])
    for text in (added.stdout, added.stderr, ran.stdout, ran.stderr, listed.stdout, others):
        assert PASSWORD not in text

    removed = importer("account", "remove", "mail", tmp_path=tmp_path)
    assert "credentials are erased" in removed.stdout
    assert not [i for i in search(tmp_path) if i.get("secret")]


def test_unknown_account_names_the_known_ones(tmp_path: Path) -> None:
    importer(
        "account", "add", "email", "box", "-o", "source=mbox", "-o", f"path={SAMPLE}",
        tmp_path=tmp_path,
    )  # fmt: skip
    done = importer("run", "email", "--account", "nope", tmp_path=tmp_path)
    assert done.returncode == 2
    assert "no account 'nope'" in done.stderr and "box" in done.stderr
    clash = importer(
        "account", "add", "email", "box", "-o", "source=mbox", "-o", "path=/tmp/other.mbox",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert clash.returncode == 2 and "exists already" in clash.stderr


def test_a_second_account_of_one_address_does_not_replace_the_first(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    personal, work = dovecot.add_user(), dovecot.add_user()
    for user in (personal, work):
        dovecot.append(
            user, "INBOX", [f"Message-ID: <{user}@t>\r\nSubject: {user}\r\n\r\nhi\r\n".encode()]
        )

    def add(name: str, user: str, secret: str) -> subprocess.CompletedProcess[str]:
        return importer(
            "account", "add", "email", name, "-o", "source=imap", "-o", f"host={dovecot.host}",
            "-o", f"port={dovecot.port}", "-o", "security=none", "-o", f"username={user}",
            "-o", "address=sam@shared.test", "--secret-env", PW_ENV,
            tmp_path=tmp_path, env={PW_ENV: secret},
        )  # fmt: skip

    assert add("personal", personal, PASSWORD).returncode == 0
    clash = add("work", work, "the-work-password")
    assert clash.returncode == 2 and "Traceback" not in clash.stderr
    assert "account 'personal' already imports sam@shared.test" in clash.stderr
    assert "the-work-password" not in clash.stderr + clash.stdout
    [stored] = search(tmp_path, "--type", "Importer")
    assert stored["name"] == "personal"
    assert json.loads(str(stored["config"]))["username"] == personal
    [owner] = [i for i in search(tmp_path, "--type", "Account") if i.get("secret")]
    assert owner["secret"] == PASSWORD
    ran = importer("run", "email", "--account", "personal", tmp_path=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert [m["subject"] for m in search(tmp_path, "--type", "EmailMessage")] == [personal]

    # Once the first is removed, the second may take the address.
    assert importer("account", "remove", "personal", tmp_path=tmp_path).returncode == 0
    assert add("work", work, PASSWORD).returncode == 0
    ran = importer("run", "email", "--account", "work", tmp_path=tmp_path)
    assert ran.returncode == 0, ran.stderr
    subjects = sorted(str(m["subject"]) for m in search(tmp_path, "--type", "EmailMessage"))
    assert subjects == sorted([personal, work])


def test_a_stored_password_never_goes_to_another_login_of_the_address(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    home, work = dovecot.add_user(), dovecot.add_user()
    for user in (home, work):
        dovecot.append(
            user, "INBOX", [f"Message-ID: <{user}@t>\r\nSubject: {user}\r\n\r\nhi\r\n".encode()]
        )
    added = importer(
        "account", "add", "email", "home", "-o", "source=imap", "-o", f"host={dovecot.host}",
        "-o", f"port={dovecot.port}", "-o", "security=none", "-o", f"username={home}",
        "-o", "address=sam@shared.test", "--secret-env", PW_ENV,
        tmp_path=tmp_path, env={PW_ENV: PASSWORD},
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    # Another login of the same address in the config file, with no password
    # source of its own: the password stored for 'home' is not its to send.
    work_section = (
        f'[accounts.work]\nconnector = "email"\nsource = "imap"\nhost = "{dovecot.host}"\n'
        f'port = {dovecot.port}\nsecurity = "none"\nusername = "{work}"\n'
        'address = "sam@shared.test"\n'
    )
    config_file(tmp_path).write_text(work_section)
    log_before = dovecot.log_text()

    refused = importer("run", "email", "--account", "work", tmp_path=tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"account work: no password for {work} at {dovecot.host}:{dovecot.port}" in (
        refused.stdout
    )
    assert "set password_env, password_command or password_keyring" in refused.stdout
    assert f"user=<{work}>" not in dovecot.log_text()[len(log_before) :]
    assert not search(tmp_path, "--type", "EmailMessage")
    [failed] = search(tmp_path, "--type", "ImporterRun")
    assert failed["status"] == "failed" and "another mailbox" in str(failed["error"])

    ran = importer("run", "email", "--account", "home", tmp_path=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert [m["subject"] for m in search(tmp_path, "--type", "EmailMessage")] == [home]
    [owner] = [i for i in search(tmp_path, "--type", "Account") if i.get("secret")]
    assert owner["credentialsFor"] == f"imap://{home}@{dovecot.host}:{dovecot.port}"

    # Given its own password source, the work login imports as before.
    config_file(tmp_path).write_text(work_section + f'password_env = "{PW_ENV}"\n')
    own = importer("run", "email", "--account", "work", tmp_path=tmp_path, env={PW_ENV: PASSWORD})
    assert own.returncode == 0, own.stderr
    assert f"user=<{work}>" in dovecot.log_text()[len(log_before) :]  # logins are logged
    subjects = sorted(str(m["subject"]) for m in search(tmp_path, "--type", "EmailMessage"))
    assert subjects == sorted([home, work])
    others = json.dumps([i for i in search(tmp_path) if i["id"] != owner["id"]])
    outputs = [p.stdout + p.stderr for p in (added, refused, ran, own)]
    assert_absent([PASSWORD], others, *outputs)


def test_a_stored_account_with_several_bad_options_gets_a_line_for_each(tmp_path: Path) -> None:
    """A Pod-stored account's config is validated like a file's: one
    ``importer:`` line per problem, not one line with the breaks escaped."""
    added = importer(
        "account", "add", "email", "box", "-o", "source=mbox", "-o", f"path={SAMPLE}",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr

    async def spoil() -> None:
        async with open_embedded_client(tmp_path / "data") as client:
            [item] = await client.search({"type": "Importer", "name": "box"})
            bad = {"source": "mbox", "path": str(SAMPLE), "chunk_size": "many", "colour": "blue"}
            await client.update_item({"id": item["id"], "config": json.dumps(bad)})

    anyio.run(spoil)
    ran = importer("run", "email", "--account", "box", tmp_path=tmp_path)
    assert ran.returncode == 2, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 2, ran.stderr
    assert all(line.startswith("importer: Pod: importer 'box': config.") for line in lines)
    assert any("colour" in line for line in lines) and any("chunk_size" in line for line in lines)
