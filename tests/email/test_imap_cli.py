"""``importer run email --imap-*`` as a user runs it, against a real Dovecot."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import importer, search

from .dovecot import PASSWORD, DovecotServer
from .test_imap_e2e import message


def _run_args(dovecot: DovecotServer, user: str, *extra: str) -> list[str]:
    return [
        "run",
        "email",
        "--imap-host",
        dovecot.host,
        "--imap-port",
        str(dovecot.port),
        "--imap-user",
        user,
        "--imap-security",
        "none",
        *extra,
    ]


def _loggers(stderr: str) -> set[str]:
    return {json.loads(line)["logger"] for line in stderr.splitlines()}


def test_imap_library_chatter_shows_with_verbose_only(
    dovecot: DovecotServer, imap_user: str, tmp_path: Path
) -> None:
    """imapclient's INFO lines ("Connection closed" after a refused login) are
    --verbose detail, like httpx's: a normal run logs only its own lines."""
    dovecot.append(imap_user, "INBOX", [message("log", n) for n in range(3)])
    wrong = {"IMPORTER_IMAP_PASSWORD": "wrong-pw"}
    refused = importer(*_run_args(dovecot, imap_user), tmp_path=tmp_path, env=wrong)
    assert refused.returncode == 1 and "IMAP login failed" in refused.stdout
    assert "Connection closed" not in refused.stderr
    for env in (wrong, {"IMPORTER_IMAP_PASSWORD": PASSWORD}):
        quiet = importer(
            *_run_args(dovecot, imap_user, "--log-format", "json"), tmp_path=tmp_path, env=env
        )
        assert {name.split(".")[0] for name in _loggers(quiet.stderr)} <= {"importer"}
    assert len(search(tmp_path, "--type", "EmailMessage")) == 3
    verbose = importer(
        *_run_args(dovecot, imap_user, "--log-format", "json", "--verbose"),
        tmp_path=tmp_path,
        env=wrong,
    )
    assert verbose.returncode == 1, verbose.stderr
    assert "imapclient.imapclient" in _loggers(verbose.stderr)
    assert "Connection closed" in verbose.stderr
    assert "wrong-pw" not in verbose.stdout + verbose.stderr
