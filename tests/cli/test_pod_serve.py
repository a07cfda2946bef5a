"""`importer pod serve`: the embedded Pod's data, served over HTTP to any client."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from importer.pod.local import running_pod
from importer.testing import wait_until_serving

from .test_cli import SAMPLE, importer, search


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def pod_serve(data_dir: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "importer",
            "pod",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, lambda: proc.poll() is None)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_served_pod_holds_what_the_embedded_default_wrote(tmp_path: Path) -> None:
    assert importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path).returncode == 0
    embedded = search(tmp_path, "--type", "EmailMessage")
    data_dir = tmp_path / "data"
    keys = json.loads((data_dir / "keys.json").read_text())
    owner, database = keys["owner_key"], keys["database_key"]
    with pod_serve(data_dir) as url:
        # Any Pod client: plain HTTP with the documented JSON body.
        answer = httpx.post(
            f"{url}/v4/{owner}/search",
            json={
                "auth": {"type": "ClientAuth", "databaseKey": database},
                "payload": {"type": "EmailMessage"},
            },
        )
        assert answer.status_code == 200
        assert sorted(m["id"] for m in answer.json()) == sorted(str(m["id"]) for m in embedded)
        wrong = httpx.post(
            f"{url}/v4/{owner}/search",
            json={"auth": {"type": "ClientAuth", "databaseKey": "0" * 64}, "payload": {}},
        )
        assert wrong.status_code in (401, 403)
        assert database not in wrong.text


def test_import_into_a_remote_pod_by_url(tmp_path: Path) -> None:
    owner, database = secrets.token_hex(32), secrets.token_hex(32)
    env = {
        "IMPORTER_POD_URL": "",
        "IMPORTER_POD_OWNER_KEY": owner,
        "IMPORTER_POD_DATABASE_KEY": database,
    }
    with pod_serve(tmp_path / "served") as url:
        env["IMPORTER_POD_URL"] = url
        done = importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        listed = importer("pod", "search", "--type", "EmailMessage", tmp_path=tmp_path, env=env)
        assert listed.returncode == 0, listed.stderr
        assert len(listed.stdout.splitlines()) >= 10
        assert database not in done.stdout + done.stderr + listed.stderr
    # Nothing went to the embedded Pod.
    assert not (tmp_path / "data" / "keys.json").exists()
    assert os.listdir(tmp_path / "served")


def test_remote_pod_without_database_key_is_a_config_error(tmp_path: Path) -> None:
    env = {"IMPORTER_POD_URL": "http://127.0.0.1:9", "IMPORTER_POD_OWNER_KEY": "a" * 64}
    done = importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path, env=env)
    assert done.returncode == 2
    assert "IMPORTER_POD_DATABASE_KEY" in done.stderr and "Traceback" not in done.stderr


def test_a_port_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    for port in ("99999", "0", "-1"):
        done = importer("pod", "serve", "--port", port, tmp_path=tmp_path, timeout=30)
        assert done.returncode == 2, (port, done.stderr)
        assert "--port" in done.stderr and "1 to 65535" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_port_in_use_fails_with_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = importer("pod", "serve", "--port", str(port), tmp_path=tmp_path, timeout=30)
    assert done.returncode == 1, done.stderr
    assert f"importer: cannot listen on 127.0.0.1:{port}: " in done.stderr
    assert "in use" in done.stderr
    assert "Traceback" not in done.stderr and "Started server" not in done.stderr


def test_a_database_key_that_is_not_64_hex_is_a_config_error(tmp_path: Path) -> None:
    """Named by where it came from, never shown."""
    malformed = "hunter2-not-a-key-" + secrets.token_hex(8)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[pod]\nurl = "http://127.0.0.1:9"\nowner_key = "{"a" * 64}"\n'
        f'database_key_command = "echo {malformed}"\n'
    )
    by_env = {"IMPORTER_POD_URL": "http://127.0.0.1:9", "IMPORTER_POD_OWNER_KEY": "a" * 64}
    for source, env in (
        ("IMPORTER_POD_DATABASE_KEY", {**by_env, "IMPORTER_POD_DATABASE_KEY": malformed}),
        ("pod.database_key_command", {"IMPORTER_CONFIG": str(config)}),
    ):
        done = importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path, env=env)
        assert done.returncode == 2, done.stderr
        assert source in done.stderr and "64 hexadecimal characters" in done.stderr
        assert malformed not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr


def test_a_wrong_database_key_is_one_clear_line(tmp_path: Path) -> None:
    """What it means and what to do, no SQLCipher diagnostics around it, the key in
    neither, and nothing touched."""
    assert importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path).returncode == 0
    messages = search(tmp_path, "--type", "EmailMessage")
    key_file = tmp_path / "data" / "keys.json"
    keys = json.loads(key_file.read_text())
    wrong = secrets.token_hex(32)
    key_file.write_text(json.dumps({**keys, "database_key": wrong}))
    for command in (
        ("pod", "search", "--type", "EmailMessage"),
        ("run", "email", "--mbox", str(SAMPLE)),
    ):
        done = importer(*command, tmp_path=tmp_path)
        assert done.returncode == 1
        assert done.stdout == ""
        (line,) = done.stderr.splitlines()
        assert line == (
            f"importer: the database key in {key_file} does not open the local Pod's "
            f"database in {key_file.parent}. Restore {key_file} from a backup: the data "
            "there cannot be read without the key it held."
        )
        assert wrong not in done.stderr and keys["database_key"] not in done.stderr
    key_file.write_text(json.dumps(keys))
    assert search(tmp_path, "--type", "EmailMessage") == messages


def test_a_failing_database_key_command_is_named_as_such(tmp_path: Path) -> None:
    """Not a "password command", and neither the command's output nor the command
    line (which may hold a secret) is shown."""
    marker = "hunter2-" + secrets.token_hex(8)
    config = tmp_path / "config.toml"
    for command, problem in (
        ("false", "command exited with status 1"),
        (f"sh -c 'echo {marker}; echo {marker} >&2; exit 3'", "command exited with status 3"),
        ("true", "command printed nothing"),
        (f"/nonexistent/{marker}", "command could not run (FileNotFoundError)"),
    ):
        config.write_text(
            f'[pod]\nurl = "http://127.0.0.1:9"\nowner_key = "{"a" * 64}"\n'
            f'database_key_command = "{command}"\n'
        )
        env = {"IMPORTER_CONFIG": str(config)}
        done = importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path, env=env)
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [f"importer: {config}: pod database key: {problem}"], (
            command
        )
        assert "password" not in done.stderr and marker not in done.stdout + done.stderr


def test_a_remote_pod_refusing_the_database_key_names_url_and_config_key(tmp_path: Path) -> None:
    """Its URL without the password in it, and the config key the database key came
    from; never a key, and no word of a key file the user does not have."""
    owner, database, wrong = secrets.token_hex(32), secrets.token_hex(32), secrets.token_hex(32)
    password = "pw-" + secrets.token_hex(8)
    config = tmp_path / "config.toml"
    with pod_serve(tmp_path / "served") as url:
        with_password = url.replace("http://", f"http://alice:{password}@")
        config.write_text(
            f'[pod]\nurl = "{with_password}"\nowner_key = "{owner}"\n'
            'database_key_env = "MY_POD_KEY"\n'
        )
        env = {"IMPORTER_CONFIG": str(config), "MY_POD_KEY": database}
        first = importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path, env=env)
        assert first.returncode == 0, first.stderr
        messages = search_remote(tmp_path, env)
        assert len(messages) >= 10
        done = importer("pod", "search", tmp_path=tmp_path, env={**env, "MY_POD_KEY": wrong})
        assert search_remote(tmp_path, env) == messages
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"importer: {config}: the Pod at {url} does not accept the database key")
    assert "pod.database_key_env ($MY_POD_KEY)" in line and "pod.owner_key" in line
    assert "keys.json" not in line
    assert password not in line and wrong not in line and database not in line


def test_a_remote_pod_refusing_the_owner_names_url_and_owner_key(tmp_path: Path) -> None:
    """A Pod that does not create owners on first use answers 403: the line says
    which Pod (no password) and which setting, never a key; nothing is imported."""
    owner, database = secrets.token_hex(32), secrets.token_hex(32)
    password = "pw-" + secrets.token_hex(8)
    config = tmp_path / "config.toml"
    with running_pod(tmp_path / "served", accept_any_owner=False) as url:
        with_password = url.replace("http://", f"http://alice:{password}@")
        config.write_text(f'[pod]\nurl = "{with_password}"\nowner_key = "{owner}"\n')
        env = {"IMPORTER_CONFIG": str(config), "IMPORTER_POD_DATABASE_KEY": database}
        done = importer("run", "email", "--mbox", str(SAMPLE), tmp_path=tmp_path, env=env)
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"importer: {config}: the Pod at {url} does not accept pod.owner_key")
    assert "HTTP 403" in line
    assert password not in line and owner not in line and database not in line
    assert not list((tmp_path / "served").glob("*"))  # no owner store was made


def search_remote(tmp_path: Path, env: dict[str, str]) -> list[str]:
    done = importer("pod", "search", "--type", "EmailMessage", tmp_path=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    return sorted(done.stdout.splitlines())
