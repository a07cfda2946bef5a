"""Bad input of every kind gets a readable 4xx, writes nothing, and the Pod keeps serving."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from importer.pod.local import create_app, running_pod

from .conftest import PodCaller


def _raw_request(url: str, path: str, body: bytes = b"{}", method: str = "POST") -> int:
    """Send ``path`` byte for byte (no client-side normalisation); the status code."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: pod\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    status_line = response.split(b"\r\n", 1)[0]
    return int(status_line.split()[1])


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"not json",
        b"[]",
        b'"just a string"',
        b'{"auth": {}}',
        b"\xff\xfe{}",
        b'{"auth": null, "payload": NaN}',
        b'{"payload": {"a": Infinity}}',
        b"[" * 5000 + b"]" * 5000,
    ],
)
def test_malformed_bodies_are_400(pod: PodCaller, body: bytes) -> None:
    response = pod.http.post(
        f"/v4/{pod.owner}/search", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 401), response.text
    assert response.json()["error"]
    assert pod.http.get("/").status_code == 200


def test_values_out_of_range_are_400(pod: PodCaller) -> None:
    for body in (
        b'{"type": "File", "size": 123456789012345678901234567890}',
        b'{"type": "File", "size": 9223372036854775808}',
        b'{"type": "Location", "latitude": 1e999}',
        b'{"type": "Person", "displayName": "\\ud800"}',
    ):
        envelope = b'{"auth": {"type": "ClientAuth", "databaseKey": "%s"}, "payload": %s}' % (
            pod.key.encode(),
            body,
        )
        response = pod.http.post(f"/v4/{pod.owner}/create_item", content=envelope)
        assert response.status_code == 400, (body, response.text)
    assert pod.search({}) == []


def test_unknown_endpoints_and_methods(pod: PodCaller) -> None:
    assert pod.call("drop_everything", {}).status_code == 404
    # A key sent where the endpoint belongs is not echoed back.
    response = pod.call(pod.key, {})
    assert response.status_code == 404 and pod.key[:16] not in response.text
    assert pod.http.get(f"/v4/{pod.owner}/search").status_code == 405
    assert pod.http.post(f"/v4/{pod.owner}/search/").status_code == 404
    assert pod.http.post("/v3/whatever").status_code == 404
    assert pod.http.get("/nothing").json() == {"error": "no such endpoint"}
    version = pod.http.get("/version")
    assert version.status_code == 200 and version.json()["version"]


def test_path_traversal_in_any_segment(pod_dir: Path, pod: PodCaller) -> None:
    url = str(pod.http.base_url)
    sha = "a" * 64
    before = _files(pod_dir)
    paths = [
        "/v4/../../etc/create_item",
        "/v4/%2e%2e/create_item",
        "/v4/%2E%2E%2F%2E%2E/create_item",
        f"/v4/{pod.owner}/..%2Fcreate_item",
        f"/v4/{pod.owner}/%2e%2e",
        f"/v4/{pod.owner}/../{pod.owner}/search",
        f"/v4/..%2F{pod.owner}/search",
        f"/v4/{pod.owner}/upload_file/..%2F..%2F{pod.key}/{sha}",
        f"/v4/{pod.owner}/upload_file/{pod.key}/..%2F..%2Fpod.db",
        f"/v4/{pod.owner}/upload_file/{pod.key}/../../{sha}",
        f"/v4/{pod.owner}/upload_file_b/..%2F..%2F/{sha}",
        f"/v4/{pod.owner}/upload_file_b/x/../{sha}",
        f"/v4/{pod.owner}/upload_file_b/%7B%7D/..%2F{sha}",
        f"/v5/{pod.owner}/../schema",
        "/v5/..%2F..%2Fetc/schema",
    ]
    for path in paths:
        status = _raw_request(url, path)
        assert 400 <= status < 500, (path, status)
    assert _files(pod_dir) == before
    assert pod.search({}) == []
    assert pod.http.get("/").status_code == 200


def test_request_size_limit(tmp_path: Path) -> None:
    with running_pod(tmp_path, max_request_bytes=20_000) as url, httpx.Client(base_url=url) as http:
        pod = PodCaller(http)
        big = {"type": "Person", "displayName": "x" * 30_000}
        assert pod.call("create_item", big).status_code == 413
        # Without a Content-Length the body is counted while it is read.
        body = b'{"auth": {}, "payload": "' + b"y" * 30_000 + b'"}'
        chunks = iter([body[:10_000], body[10_000:]])
        response = http.post(f"/v4/{pod.owner}/search", content=chunks)
        assert response.status_code == 413
        assert pod.search({}) == []
        assert pod.ok("create_item", {"type": "Person", "displayName": "small"})


async def test_in_process_app_without_lifespan(tmp_path: Path) -> None:
    app = create_app(tmp_path)
    owner, key = secrets.token_hex(32), secrets.token_hex(32)
    auth = {"type": "ClientAuth", "databaseKey": key}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as http:
        assert (await http.get("/")).status_code == 200
        # No /v4/account first: with accept_any_owner the store is made on first use.
        response = await http.post(
            f"/v4/{owner}/bulk",
            json={
                "auth": auth,
                "payload": {
                    "createItems": [{"type": "Person", "id": "p"}, {"type": "Label", "id": "l"}],
                    "createEdges": [{"_source": "p", "_target": "l", "_name": "label"}],
                    "search": [{"[[edges]]": {}}],
                },
            },
        )
        assert response.status_code == 200, response.text
        found = response.json()["search"][0]
        assert [item["id"] for item in found] == ["p", "l"]
        assert found[0]["[[edges]]"][0]["_item"]["id"] == "l"
        response = await http.post(f"/v4/{owner}/nope", json={})
        assert response.status_code == 404
    app.state.close()
    response_after_close = None
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as http:
        response_after_close = await http.post(
            f"/v4/{owner}/search", json={"auth": auth, "payload": {}}
        )
    assert response_after_close.status_code == 503


async def test_a_stopping_pod_answers_503_with_retry_after(tmp_path: Path) -> None:
    """Clients take a 503 with Retry-After as "try again later" (a restart is quick)."""
    app = create_app(tmp_path)
    owner, key = secrets.token_hex(32), secrets.token_hex(32)
    body = {"auth": {"type": "ClientAuth", "databaseKey": key}, "payload": {}}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as http:
        assert (await http.post(f"/v4/{owner}/search", json=body)).status_code == 200
        app.state.close()
        for path in (f"/v4/{owner}/search", f"/v5/{owner}/schema"):
            response = await http.post(path, json=body)
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "1"
            assert "shutting down" in response.json()["error"]


def test_nothing_stored_in_plaintext(tmp_path: Path) -> None:
    marker = "PLAINTEXT-MARKER-" + secrets.token_hex(8)
    with running_pod(tmp_path) as url, httpx.Client(base_url=url) as http:
        pod = PodCaller(http)
        pod.ok(
            "create_item",
            {"type": "Person", "id": marker, "displayName": marker, "email": marker},
        )
        pod.ok("create_edge", {"_source": marker, "_target": marker, "_name": "self"})
        content = (marker + "\n").encode() * 10_000
        import hashlib

        sha = hashlib.sha256(content).hexdigest()
        pod.ok("create_item", {"type": "File", "sha256": sha, "filename": marker})
        response = http.post(f"/v4/{pod.owner}/upload_file/{pod.key}/{sha}", content=content)
        assert response.status_code == 200
        assert marker in pod.search({"displayName": marker})[0]["email"]
        # Checked while the server runs, so the WAL still holds the recent writes.
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert any(p.name.endswith("-wal") and p.stat().st_size > 0 for p in files)
        needles = (marker.encode(), marker.encode("utf-16-le"), pod.key.encode())
        for path in files:
            raw = path.read_bytes()
            for needle in needles:
                assert needle not in raw, path
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):
        assert marker.encode() not in path.read_bytes(), path
