"""Security: authentication, owner isolation, encryption at rest, limits, secrets in output."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from importer.pod import ClientAuth, PodAuthError, PodClient, RetryPolicy
from importer.pod.local import running_pod
from tests.cli.test_cli import config_file, importer
from tests.cli.test_pod_serve import pod_serve
from tests.email.corpus import make_mbox, make_message
from tests.email.dovecot import PASSWORD, DovecotServer

DATA_ENDPOINTS: dict[str, Any] = {
    "create_item": {"type": "Person", "displayName": "intruder"},
    "get_item": "p0",
    "update_item": {"id": "p0", "displayName": "intruder"},
    "delete_item": "p0",
    "search": {},
    "bulk": {"createItems": [{"type": "Person"}], "deleteItems": ["p0"], "search": [{}]},
    "create_edge": {"_source": "p0", "_target": "p1", "_name": "x"},
    "get_edges": {"item": "p0", "direction": "Outgoing", "expandItems": True},
    "delete_edge_by_source_target": {"_source": "p0", "_target": "p1", "_name": "knows"},
    "get_file": {"sha256": "0" * 64},
}
FILE_CONTENT = b"owner file content " * 100
FILE_SHA = hashlib.sha256(FILE_CONTENT).hexdigest()


class Owner:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.owner, self.key = secrets.token_hex(32), secrets.token_hex(32)
        answer = http.post("/v4/account", json={"ownerKey": self.owner, "databaseKey": self.key})
        assert answer.status_code == 200, answer.text
        self.post(
            "bulk",
            {
                "createItems": [
                    {"id": "p0", "type": "Person", "displayName": "Zed"},
                    {"id": "p1", "type": "Person", "displayName": "Yan"},
                    {"id": "f0", "type": "File", "sha256": FILE_SHA, "filename": "f"},
                ],
                "createEdges": [{"_source": "p0", "_target": "p1", "_name": "knows"}],
            },
        )
        up = http.post(f"/v4/{self.owner}/upload_file/{self.key}/{FILE_SHA}", content=FILE_CONTENT)
        assert up.status_code == 200, up.text

    def post(self, endpoint: str, payload: Any, *, key: str | None = None) -> Any:
        auth = {"type": "ClientAuth", "databaseKey": key or self.key}
        answer = self.http.post(
            f"/v4/{self.owner}/{endpoint}", json={"auth": auth, "payload": payload}
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    def state(self) -> Any:
        return self.post("search", {"[[edges]]": {}})


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("pod")
    with running_pod(data) as url:
        yield url, data


@pytest.fixture
def http(pod: tuple[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pod[0], timeout=30) as client:
        yield client


def _denied(answer: httpx.Response, *secrets_: str) -> None:
    assert answer.status_code in (401, 403), (answer.status_code, answer.text)
    for secret in secrets_:
        assert secret not in answer.text
    assert "Zed" not in answer.text and "Yan" not in answer.text


def test_other_owner_key_and_wrong_key_get_nothing_on_every_endpoint(http: httpx.Client) -> None:
    a, b = Owner(http), Owner(http)
    before = b.state()
    wrong = secrets.token_hex(32)
    for endpoint, payload in DATA_ENDPOINTS.items():
        for key in (a.key, wrong, b.key[:-1] + "x", b.key[:32], "", "0" * 64):
            body = {"auth": {"type": "ClientAuth", "databaseKey": key}, "payload": payload}
            _denied(http.post(f"/v4/{b.owner}/{endpoint}", json=body), b.key, key or "-")
    for key in (a.key, wrong):
        _denied(
            http.post(f"/v4/{b.owner}/upload_file/{key}/{FILE_SHA}", content=FILE_CONTENT), b.key
        )
        auth = json.dumps({"type": "ClientAuth", "databaseKey": key})
        _denied(http.post(f"/v4/{b.owner}/upload_file_b/{auth}/{FILE_SHA}", content=b"x"), b.key)
        schema = {"nodes": {"Dog": {"properties": {"age": "Integer"}}}}
        body = {"auth": {"type": "ClientAuth", "databaseKey": key}, "payload": schema}
        _denied(http.post(f"/v5/{b.owner}/schema", json=body), b.key)
    # B's data is unchanged, and A (with its own key) still sees only its own.
    assert b.state() == before
    assert {i["id"] for i in a.state()} == {"p0", "p1", "f0"}
    assert all(i["displayName"] != "intruder" for i in b.state() if i["type"] == "Person")


async def test_client_with_wrong_key_or_owner_raises_auth_error(pod: tuple[str, Path]) -> None:
    url = pod[0]
    with httpx.Client(base_url=url, timeout=30) as http:
        victim = Owner(http)
    retry = RetryPolicy(max_attempts=1)
    for owner, key in ((victim.owner, secrets.token_hex(32)),):
        async with PodClient(url, owner, ClientAuth(key), retry=retry) as client:
            for call in (
                client.search({}),
                client.get_item("p0"),
                client.create_item({"type": "Person"}),
                client.get_file(FILE_SHA),
            ):
                with pytest.raises(PodAuthError) as caught:
                    await call
                assert key not in str(caught.value) and victim.key not in str(caught.value)


@pytest.mark.parametrize("segment", [0, 1, 2])
@pytest.mark.parametrize("bad", ["..", "%2e%2e", "a%2Fb", "..%2F..%2Fetc", "x" * 64, "%00"])
def test_traversal_in_every_upload_segment(
    http: httpx.Client, pod: tuple[str, Path], segment: int, bad: str
) -> None:
    a = Owner(http)
    parts = [a.owner, a.key, FILE_SHA]
    parts[segment] = bad
    answer = http.post(f"/v4/{parts[0]}/upload_file/{parts[1]}/{parts[2]}", content=b"x")
    assert 400 <= answer.status_code < 500, answer.status_code
    owners = {p.name for p in pod[1].iterdir()}
    assert all(len(name) == 64 or name == "keys.json" for name in owners), owners


def test_request_size_limits_are_413(tmp_path: Path) -> None:
    with (
        running_pod(tmp_path, max_request_bytes=4096, max_file_bytes=8192) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        a = Owner.__new__(Owner)
        a.http, a.owner, a.key = http, secrets.token_hex(32), secrets.token_hex(32)
        assert http.post("/v4/account", json={"ownerKey": a.owner, "databaseKey": a.key}).is_success
        big = {"type": "Person", "displayName": "x" * 10_000}
        body = json.dumps({"auth": {"type": "ClientAuth", "databaseKey": a.key}, "payload": big})
        assert http.post(f"/v4/{a.owner}/create_item", content=body).status_code == 413
        # Without a Content-Length (chunked): counted while reading.
        chunks = iter([body.encode()[i : i + 1000] for i in range(0, len(body), 1000)])
        assert http.post(f"/v4/{a.owner}/create_item", content=chunks).status_code == 413
        content = b"z" * 20_000
        sha = hashlib.sha256(content).hexdigest()
        a.post("create_item", {"type": "File", "sha256": sha, "filename": "big"})
        up = http.post(f"/v4/{a.owner}/upload_file/{a.key}/{sha}", content=content)
        assert up.status_code == 413
        assert a.post("search", {"type": "Person"}) == []
    assert not list(tmp_path.glob(f"*/files/{sha}"))
    assert not [p for p in tmp_path.glob("*/files/.tmp/*") if p.is_file()]


def _listening(port: int) -> list[str]:
    """Local addresses listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if int(port_hex, 16) == port and fields[3] == "0A":
                found.append(address)
    return found


def test_pod_serve_binds_loopback_by_default(tmp_path: Path) -> None:
    with pod_serve(tmp_path / "served") as url:
        port = int(url.rsplit(":", 1)[1])
        assert _listening(port) == ["0100007F"]  # 127.0.0.1, nothing else


def _markers() -> list[str]:
    return [f"MARKER{n}-{secrets.token_hex(6)}" for n in range(3)]


def test_no_plaintext_of_content_or_keys_at_rest(tmp_path: Path) -> None:
    subject, body, attachment = _markers()
    messages = [
        make_message(
            i,
            subject=f"{subject} {i}",
            body=f"{body} line {i}\n" * 20,
            attachment=(attachment.encode() + b"\n") * 50,
            attachment_name=f"{attachment}.txt",
            attachment_type="text/plain",
        )
        for i in range(5)
    ]
    mbox = tmp_path / "mail.mbox"
    mbox.write_bytes(make_mbox(messages))
    done = importer("run", "email", "--mbox", str(mbox), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    data = tmp_path / "data"
    keys = json.loads((data / "keys.json").read_text())
    key_hex = keys["database_key"]
    # The import really holds the markers (read back through the Pod).
    listed = importer("pod", "search", "--type", "EmailMessage", tmp_path=tmp_path)
    assert subject in listed.stdout and body in listed.stdout
    files = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.name == "pod.db" for p in files) and any(p.parent.name == "files" for p in files)
    needles = [m.encode() for m in (subject, body, attachment)]
    needles += [m.encode("utf-16-le") for m in (subject, body)]
    needles += [bytes.fromhex(key_hex), key_hex.encode(), key_hex.upper().encode()]
    for path in files:
        raw = path.read_bytes()
        for needle in needles:
            if path.name == "keys.json" and needle in (key_hex.encode(),):
                continue  # the key file is where the key lives (0600)
            assert needle not in raw, (path, needle[:12])
    key_file = data / "keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.stat().st_uid == os.getuid()


def test_imap_password_never_leaks(tmp_path: Path, dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    dovecot.append(user, "INBOX", [make_message(i) for i in range(3)])
    config_file(tmp_path).write_text(
        "[accounts.mail]\n"
        'connector = "email"\nsource = "imap"\nsecurity = "none"\n'
        f'host = "{dovecot.host}"\nport = {dovecot.port}\nusername = "{user}"\n'
        'password_env = "MAIL_PW"\n'
    )
    env = {"MAIL_PW": PASSWORD}
    run = importer("run", "email", "-v", tmp_path=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    again = importer("run", "email", "-v", "--log-format", "json", tmp_path=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    listed = importer("pod", "search", tmp_path=tmp_path)
    assert listed.returncode == 0, listed.stderr
    items = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sum(i["type"] == "EmailMessage" for i in items) == 3
    assert sum(i["type"] == "ImporterRun" for i in items) == 2
    assert "DEBUG" in run.stderr or "INFO" in run.stderr  # verbose output was captured
    for text in (run.stdout, run.stderr, again.stdout, again.stderr, listed.stdout):
        assert PASSWORD not in text
    # And not at rest either.
    for path in (p for p in (tmp_path / "data").rglob("*") if p.is_file()):
        assert PASSWORD.encode() not in path.read_bytes(), path
