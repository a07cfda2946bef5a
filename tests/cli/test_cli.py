"""The command line as a user runs it: real processes, real files, the local Pod."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from importer.testing.feedserver import Resource, feed_server, rss

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "connectors" / "email" / "samples" / "sample.mbox"


def config_file(tmp_path: Path) -> Path:
    """Where the user's config file is for these runs (XDG_CONFIG_HOME points here)."""
    path = tmp_path / "xdg" / "importer" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def importer(
    *args: str,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    python_args: tuple[str, ...] = ("-m", "importer"),
) -> subprocess.CompletedProcess[str]:
    """``python -m importer ARGS`` (or ``python PYTHON_ARGS ARGS``) with its
    data, config and home under ``tmp_path``."""
    full_env = {
        **os.environ,
        "IMPORTER_DATA_DIR": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "HOME": str(tmp_path / "home"),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, *python_args, *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=tmp_path,
        timeout=timeout,
    )


def search(tmp_path: Path, *args: str) -> list[dict[str, object]]:
    done = importer("pod", "search", *args, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_run_email_mbox_then_nothing_new(tmp_path: Path) -> None:
    first = importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    messages = search(tmp_path, "--type", "EmailMessage")
    assert len(messages) >= 10
    assert all(m["service"] == "email" for m in messages)
    assert "created" in first.stdout
    second = importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path)
    assert second.returncode == 0, second.stderr
    assert " 0 created" in second.stdout
    assert len(search(tmp_path, "--type", "EmailMessage")) == len(messages)
    # The key file is the owner's alone.
    assert (tmp_path / "data" / "keys.json").stat().st_mode & 0o777 == 0o600


_NOT_NEEDED_TO_RUN = ("click", "uvicorn", "httpx._main")
"""Modules an embedded run must not load: httpx's own command-line client and
the ASGI server (each costs start-up time a cron run pays every time)."""

_PROBE = (
    "import importlib, sys\n"
    "from importer.cli import main\n"
    "code = main(sys.argv[1:])\n"
    f"print('LOADED', sorted(m for m in {_NOT_NEEDED_TO_RUN!r} if m in sys.modules))\n"
    "print('CLI MODULE', callable(importlib.import_module('httpx._main').main))\n"
    "raise SystemExit(code)\n"
)


def test_an_embedded_run_loads_no_server_and_no_http_command_line(tmp_path: Path) -> None:
    for run in range(2):
        done = importer(
            "run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path, python_args=("-c", _PROBE)
        )
        assert done.returncode == 0, done.stderr
        assert "LOADED []" in done.stdout, (run, done.stdout)
        # Hidden only while httpx was first imported: still importable after.
        assert "CLI MODULE True" in done.stdout
    assert len(search(tmp_path, "--type", "EmailMessage")) >= 10


def test_pod_search_filters_and_limits(tmp_path: Path) -> None:
    assert importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path).returncode == 0
    one = search(tmp_path, "--type", "EmailMessage", "--limit", "1")
    assert len(one) == 1
    same = search(tmp_path, "--type", "EmailMessage", "--where", f"id={one[0]['id']}")
    assert [m["id"] for m in same] == [one[0]["id"]]


def test_json_summary_and_status(tmp_path: Path) -> None:
    config_file(tmp_path).write_text(
        f'[accounts.archive]\nconnector = "email"\nsource = "mbox"\npath = "{SAMPLE}"\n'
    )
    done = importer("run", "email", "--log-format", "json", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["account"] == "archive" and summary["status"] == "done"
    assert summary["created"] > 10
    status = importer("status", tmp_path=tmp_path)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("email:archive: last run") and "done" in status.stdout
    assert "checkpoint" in status.stdout and "checkpoint none" not in status.stdout


def test_status_without_config_shows_what_was_imported(tmp_path: Path) -> None:
    assert importer("status", tmp_path=tmp_path).stdout.startswith("nothing imported yet")
    assert importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path).returncode == 0
    status = importer("status", tmp_path=tmp_path)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("email:mbox:sample.mbox: last run")
    assert ", done; " in status.stdout and "; 1 run; " in status.stdout
    assert importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path).returncode == 0
    assert "; 2 runs; " in importer("status", tmp_path=tmp_path).stdout


def test_summary_and_status_lines_stay_one_line_with_a_line_break_in_a_name(
    tmp_path: Path,
) -> None:
    """The summary and `status` print names and errors the Pod holds: a line
    break in them (here a file name's) is shown escaped, not as a new line."""
    missing = tmp_path / "gone\nforged.mbox"
    done = importer("run", "email", "--mbox", str(missing), tmp_path=tmp_path)
    assert done.returncode == 1, done.stderr
    (summary,) = done.stdout.splitlines()
    assert summary.startswith("mbox:gone\\nforged.mbox: imported 0 created")
    assert "failed: mbox file" in summary and "gone\\nforged.mbox does not exist" in summary
    status = importer("status", tmp_path=tmp_path)
    assert status.returncode == 0, status.stderr
    (line,) = status.stdout.splitlines()
    assert line.startswith("email:mbox:gone\\nforged.mbox: last run") and "failed (" in line


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    done = importer("run", "email", "--mbox", str(SAMPLE), "--dry-run", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "would import" in done.stdout
    assert search(tmp_path, "--type", "EmailMessage") == []


def _summary(done: subprocess.CompletedProcess[str], verb: str) -> str:
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert f": {verb} " in line, line
    return line.split(f": {verb} ", 1)[1]


def test_dry_run_of_a_mailbox_with_its_owner_says_what_the_run_then_does(
    tmp_path: Path,
) -> None:
    """The owner's Account, made before any message is read, is no new item to
    a dry run either: its summary is the one of the run that follows."""
    run = ("run", "email", "--mbox", str(SAMPLE), "-o", "address=sam@example.org")
    for _ in range(2):  # into an empty Pod, then with nothing new
        would = _summary(importer(*run, "--dry-run", tmp_path=tmp_path), "would import")
        did = _summary(importer(*run, tmp_path=tmp_path), "imported")
        assert would == did
    [sam] = search(tmp_path, "--type", "Account", "--where", "handle=sam@example.org")
    assert sam["isMe"] is True
    assert len(search(tmp_path, "--type", "EmailMessage")) == 12


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ('[pod]\nurl = "ftp://x"\n', 'pod.url: Value error, must be "embedded" or start with http'),
        ('[pod]\ntimeout = "soon"\n', "pod.timeout: Input should be a valid number"),
        ("[engine]\nbatch_recordz = 5\n", "engine.batch_recordz: unknown key"),
        ('[accounts.a]\nconnector = "email"\nsource = "imap"\n', "accounts.a"),
        (
            '[accounts.a]\nconnector = "email"\nsource = "mbox"\npath = "/x"\nport = "abc"\n',
            "accounts.a.port",
        ),
        ("[pod\n", "not valid TOML"),
    ],
)
def test_bad_config_names_file_key_and_problem(tmp_path: Path, config: str, expected: str) -> None:
    path = config_file(tmp_path)
    path.write_text(config)
    done = importer("run", "email", tmp_path=tmp_path)
    assert done.returncode == 2
    assert str(path) in done.stderr and expected in done.stderr
    assert "Traceback" not in done.stderr


def test_an_error_naming_a_path_with_a_line_break_stays_one_line(tmp_path: Path) -> None:
    """The path is shown escaped, as log lines show it: a crafted name cannot add a line."""
    odd = tmp_path / "odd\nimporter: all good\x1b[2J"
    odd.mkdir()
    config = odd / "config.toml"
    config.write_text("[pod\n")
    bad_config = importer("run", "email", "--config", str(config), tmp_path=tmp_path)
    assert bad_config.returncode == 2
    shown = str(odd).replace("\n", "\\n").replace("\x1b", "\\x1b")
    (line,) = bad_config.stderr.splitlines()
    assert line.startswith(f"importer: {shown}/config.toml: not valid TOML: ")
    assert "\x1b" not in bad_config.stderr
    # Several problems: still a line each, and nothing more.
    config.write_text("[engine]\nbatch_recordz = 5\nmax_in_flight = 0\n")
    problems = importer("run", "email", "--config", str(config), tmp_path=tmp_path)
    assert problems.returncode == 2
    assert problems.stderr.splitlines() == [
        f"importer: {shown}/config.toml: engine.max_in_flight: Input should be greater than or "
        "equal to 1 (got 0)",
        f"importer: {shown}/config.toml: engine.batch_recordz: unknown key",
    ]
    # A Pod error naming the data directory: the key file there does not open it.
    data = {"IMPORTER_DATA_DIR": str(odd / "data")}
    assert (
        importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path, env=data).returncode == 0
    )
    keys = json.loads((odd / "data" / "keys.json").read_text())
    (odd / "data" / "keys.json").write_text(
        json.dumps({**keys, "database_key": secrets.token_hex(32)})
    )
    refused = importer("pod", "search", tmp_path=tmp_path, env=data)
    assert refused.returncode == 1
    (line,) = refused.stderr.splitlines()
    assert line.startswith(f"importer: the database key in {shown}/data/keys.json does not open")


def test_a_feed_that_is_not_a_web_address_is_a_config_error(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    path.write_text(
        '[accounts.news]\nconnector = "rss"\n'
        'feeds = ["https://example.org/feed.xml", "notaurl", "ftp://ann:hunter2@example.org/f"]\n'
    )
    done = importer("run", "rss", tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{path}: accounts.news.feeds.1: Value error, must be an http" in done.stderr
    assert f"{path}: accounts.news.feeds.2: Value error, must be an http" in done.stderr
    assert "ftp://ann:***@example.org/f" in done.stderr and "hunter2" not in done.stderr
    assert "feeds.0" not in done.stderr and "Traceback" not in done.stderr


def test_a_misspelt_option_is_a_config_error_and_nothing_is_imported(tmp_path: Path) -> None:
    """An options model that does not say what to do with unknown keys refuses them:
    ``timout`` would otherwise be dropped without a word, and the run go on without it."""
    with feed_server() as server:
        server.resources["/blog.xml"] = Resource(rss("Blog", [{"guid": "1", "title": "Hi"}]))
        path = config_file(tmp_path)
        path.write_text(
            f'[accounts.news]\nconnector = "rss"\nfeeds = ["{server.url("/blog.xml")}"]\n'
            "timout = 5\n"
        )
        done = importer("run", "rss", tmp_path=tmp_path)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.splitlines() == [f"importer: {path}: accounts.news.timout: unknown key"]
        assert server.seen("/blog.xml") == []
    assert search(tmp_path, "--type", "RSSEntry") == []


def test_a_connector_registered_under_another_name_than_its_own_is_refused(
    tmp_path: Path,
) -> None:
    """The feeds connector copied as ``myfeeds`` but still named ``rss`` would share the
    rss connector's Importer items, checkpoints and lock: it is refused, saying what to set."""
    site = tmp_path / "site"  # an installed package of a connector author's, entry point and all
    (site / "myfeeds").mkdir(parents=True)
    (site / "myfeeds" / "__init__.py").write_text(
        "from connectors.rss import FeedsConnector\n\nconnector = FeedsConnector()\n"
    )
    dist = site / "myfeeds-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myfeeds\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[importer.connectors]\nmyfeeds = myfeeds:connector\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    refusal = (
        "connector 'myfeeds' could not be loaded: it is named 'rss': set name = 'myfeeds' "
        "in its class, the name it is registered under"
    )
    with feed_server() as server:
        server.resources["/blog.xml"] = Resource(rss("Blog", [{"guid": "1", "title": "Hi"}]))
        config_file(tmp_path).write_text(
            f'[accounts.news]\nconnector = "myfeeds"\nfeeds = ["{server.url("/blog.xml")}"]\n'
        )
        done = importer("run", "myfeeds", tmp_path=tmp_path, env=env)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.splitlines() == [f"importer: {refusal}"]
        assert server.seen("/blog.xml") == []
    assert search(tmp_path, "--type", "RSSEntry") == []
    listed = importer("connectors", tmp_path=tmp_path, env=env)
    assert listed.returncode == 0 and "rss:" in listed.stdout
    assert "myfeeds" not in listed.stdout and refusal in listed.stderr


def test_unknown_connector_and_account(tmp_path: Path) -> None:
    done = importer("run", "nosuch", tmp_path=tmp_path)
    assert done.returncode == 2 and "no connector named 'nosuch'" in done.stderr
    config_file(tmp_path).write_text(
        '[accounts.a]\nconnector = "email"\nsource = "mbox"\npath = "/x"\n'
    )
    done = importer("run", "email", "--account", "b", tmp_path=tmp_path)
    assert done.returncode == 2 and "no account 'b'" in done.stderr


def test_connectors_lists_email_options(tmp_path: Path) -> None:
    done = importer("connectors", tmp_path=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("email:") and "password_command" in done.stdout


def test_missing_mbox_fails_in_one_line(tmp_path: Path) -> None:
    done = importer("run", "email", "--mbox", str(tmp_path / "nope.mbox"), tmp_path=tmp_path)
    assert done.returncode == 1
    assert "nope.mbox" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_a_full_refresh_logs_nothing_that_reads_like_a_failure(tmp_path: Path) -> None:
    """Records already in the Pod are the designed path of a re-scan (the first
    optimistic bulk is refused, then every batch is checked): not news at the
    default level, only with --verbose."""
    assert importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path).returncode == 0
    messages = search(tmp_path, "--type", "EmailMessage")
    again = importer("run", "email", "--mbox", str(SAMPLE), "--full-refresh", tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "imported 0 created, 0 updated, " in again.stdout
    assert " unchanged, 0 edges, 0 files" in again.stdout
    alarming = ("conflict", "fail", "error", "refused", "resend", "retry", "warning")
    assert [
        line for line in again.stderr.splitlines() if any(w in line.lower() for w in alarming)
    ] == []
    assert search(tmp_path, "--type", "EmailMessage") == messages
    verbose = importer(
        "run", "email", "--mbox", str(SAMPLE), "--full-refresh", "-v", tmp_path=tmp_path
    )
    assert verbose.returncode == 0, verbose.stderr
    assert " DEBUG bulk 1: some records are already in the Pod" in verbose.stderr


def test_a_failing_password_command_says_whose_password(tmp_path: Path) -> None:
    """The run fails before connecting, naming the account's password, not the command."""
    marker = "hunter2-" + secrets.token_hex(8)
    config_file(tmp_path).write_text(
        '[accounts.p]\nconnector = "email"\nsource = "imap"\nhost = "127.0.0.1"\nport = 9\n'
        f'security = "none"\nusername = "u"\npassword_command = "sh -c \'echo {marker}; exit 4\'"\n'
    )
    done = importer("run", "email", tmp_path=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "failed: account p: password: command exited with status 4" in done.stdout
    assert marker not in done.stdout + done.stderr
    (run,) = search(tmp_path, "--type", "ImporterRun")
    assert run["status"] == "failed"
    assert "account p: password: command exited with status 4" in str(run)


def test_second_run_while_one_holds_the_lock_exits_75(tmp_path: Path) -> None:
    import fcntl

    # Import once so the account id is known, then hold its lock as a running import would.
    assert importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path).returncode == 0
    locks = list((tmp_path / "data" / "locks").glob("email-*.lock"))
    assert len(locks) == 1
    before = search(tmp_path, "--type", "ImporterRun")
    with locks[0].open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path)
    assert done.returncode == 75
    assert "another run is in progress" in done.stderr
    assert len(search(tmp_path, "--type", "ImporterRun")) == len(before)


def test_check_reports_per_account(tmp_path: Path) -> None:
    ok = importer("check", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path)
    assert ok.returncode == 0 and ok.stdout.strip().endswith(": ok")
    bad = importer("check", "email", "--mbox", str(tmp_path / "missing.mbox"), tmp_path=tmp_path)
    assert bad.returncode == 1 and "FAILED" in bad.stdout and "missing.mbox" in bad.stdout


def test_bad_account_options_create_nothing(tmp_path: Path) -> None:
    config_file(tmp_path).write_text(
        '[accounts.a]\nconnector = "email"\nsource = "imap"\n'
        'host = "h"\nusername = "u"\nport = "abc"\n'
    )
    done = importer("run", "email", "--account", "a", tmp_path=tmp_path)
    assert done.returncode == 2 and "accounts.a.port" in done.stderr
    assert not (tmp_path / "data").exists()
