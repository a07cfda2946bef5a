"""File content: upload (both routes), get_file, conflicts, checks and limits."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from importer.pod.local import create_app, running_pod

from .conftest import PodCaller


def _content(size: int) -> tuple[bytes, str]:
    data = os.urandom(size)
    return data, hashlib.sha256(data).hexdigest()


def _upload(pod: PodCaller, sha: str, data: bytes | Iterator[bytes]) -> httpx.Response:
    return pod.http.post(f"/v4/{pod.owner}/upload_file/{pod.key}/{sha}", content=data)


def _stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("files/*") if p.is_file()]


def test_upload_and_get_round_trip(pod: PodCaller) -> None:
    data, sha = _content(3 * 1024 * 1024 + 7)
    file_id = pod.ok("create_item", {"type": "File", "sha256": sha, "filename": "a.bin"})
    response = _upload(pod, sha, data)
    assert response.status_code == 200, response.text
    response = pod.call("get_file", {"sha256": sha})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == data
    # The File item now carries the content's key and nonce...
    (item,) = pod.ok("get_item", file_id)
    assert len(item["keystr"]) == 64 and len(item["nonce"]) == 24
    # ...and so does a File item created later for the same content.
    later = pod.ok("create_item", {"type": "File", "sha256": sha, "filename": "copy.bin"})
    (copy,) = pod.ok("get_item", later)
    assert (copy["keystr"], copy["nonce"]) == (item["keystr"], item["nonce"])


@pytest.mark.parametrize("how", ["create_item", "bulk", "update_item"])
def test_sha256_in_upper_case_matches_its_upload(pod: PodCaller, how: str) -> None:
    """Hex is hex: a File announced in upper case takes the upload of that content."""
    data, sha = _content(2000)
    upper = sha.upper()
    if how == "create_item":
        file_id = pod.ok("create_item", {"type": "File", "sha256": upper})
    elif how == "bulk":
        items = [{"type": "File", "sha256": upper, "filename": f"{n}.bin"} for n in range(3)]
        file_id = pod.ok("bulk", {"createItems": items})["createItems"][0]
    else:
        file_id = pod.ok("create_item", {"type": "File", "sha256": "0" * 64})
        pod.ok("update_item", {"id": file_id, "sha256": upper})
    assert _upload(pod, upper, data).status_code == 200
    assert pod.call("get_file", {"sha256": upper}).content == data
    (item,) = pod.ok("get_item", file_id)
    assert item["sha256"] == sha and len(item["keystr"]) == 64
    assert file_id in [found["id"] for found in pod.search({"sha256": upper})]
    assert file_id in [found["id"] for found in pod.search({"sha256": sha})]
    # Only hex is lowered: other text is kept as given.
    other = pod.ok("create_item", {"type": "File", "sha256": "Not-A-Hash"})
    assert pod.ok("get_item", other)[0]["sha256"] == "Not-A-Hash"


def test_streamed_upload_without_length(pod: PodCaller) -> None:
    chunks = [os.urandom(100_000) for _ in range(25)]
    sha = hashlib.sha256(b"".join(chunks)).hexdigest()
    pod.ok("create_item", {"type": "File", "sha256": sha})
    assert _upload(pod, sha, iter(chunks)).status_code == 200
    assert pod.call("get_file", {"sha256": sha}).content == b"".join(chunks)


def test_second_upload_is_conflict(pod: PodCaller) -> None:
    data, sha = _content(50_000)
    pod.ok("create_item", {"type": "File", "sha256": sha})
    assert _upload(pod, sha, data).status_code == 200
    response = _upload(pod, sha, data)
    assert response.status_code == 409
    assert pod.call("get_file", {"sha256": sha}).content == data


def test_upload_needs_a_file_item(pod: PodCaller) -> None:
    data, sha = _content(1000)
    assert _upload(pod, sha, data).status_code == 404
    pod.ok("create_item", {"type": "Person", "id": "x"})
    assert pod.call("get_file", {"sha256": sha}).status_code == 404


def test_hash_mismatch_is_rejected_and_nothing_kept(pod_dir: Path, pod: PodCaller) -> None:
    data, sha = _content(200_000)
    pod.ok("create_item", {"type": "File", "sha256": sha})
    before = _stored_files(pod_dir / pod.owner)
    response = _upload(pod, sha, data + b"x")
    assert response.status_code == 400
    assert "sha256" in response.json()["error"]
    assert _stored_files(pod_dir / pod.owner) == before
    assert pod.call("get_file", {"sha256": sha}).status_code == 404
    assert "keystr" not in pod.search({"type": "File"})[0]
    assert _upload(pod, sha, data).status_code == 200


def test_upload_file_b_with_client_auth(pod: PodCaller) -> None:
    data, sha = _content(10_000)
    pod.ok("create_item", {"type": "File", "sha256": sha})
    auth = quote(json.dumps(pod.auth), safe="")
    response = pod.http.post(f"/v4/{pod.owner}/upload_file_b/{auth}/{sha}", content=data)
    assert response.status_code == 200, response.text
    assert pod.call("get_file", {"sha256": sha}).content == data
    wrong = quote(json.dumps({"type": "ClientAuth", "databaseKey": "0" * 64}), safe="")
    response = pod.http.post(f"/v4/{pod.owner}/upload_file_b/{wrong}/{sha}", content=data)
    assert response.status_code == 401
    response = pod.http.post(f"/v4/{pod.owner}/upload_file_b/%7Bnot-json/{sha}", content=data)
    assert response.status_code == 400


def test_bad_upload_requests(pod: PodCaller) -> None:
    data, sha = _content(100)
    pod.ok("create_item", {"type": "File", "sha256": sha})
    wrong_key = secrets.token_hex(32)
    response = pod.http.post(f"/v4/{pod.owner}/upload_file/{wrong_key}/{sha}", content=data)
    assert response.status_code == 401
    assert wrong_key not in response.text
    response = pod.http.post(f"/v4/{pod.owner}/upload_file/{pod.key}/notahash", content=data)
    assert response.status_code == 400
    pod.fails("get_file", {"sha256": "xyz"}, 400)
    pod.fails("get_file", sha, 400)


def test_file_size_limit(tmp_path: Path) -> None:
    with running_pod(tmp_path, max_file_bytes=100_000) as url, httpx.Client(base_url=url) as http:
        pod = PodCaller(http)
        small, small_sha = _content(100_000)
        big, big_sha = _content(100_001)
        for sha in (small_sha, big_sha):
            pod.ok("create_item", {"type": "File", "sha256": sha})
        assert _upload(pod, big_sha, big).status_code == 413
        # Without a Content-Length the limit applies while reading.
        chunks = iter([big[:60_000], big[60_000:]])
        assert _upload(pod, big_sha, chunks).status_code == 413
        assert _upload(pod, small_sha, small).status_code == 200
        assert pod.call("get_file", {"sha256": big_sha}).status_code == 404
        leftovers = [p for p in tmp_path.rglob(".tmp/*")]
        assert leftovers == []


def test_tampered_content_fails_the_download(pod_dir: Path, pod: PodCaller) -> None:
    data, sha = _content(3_000_000)
    pod.ok("create_item", {"type": "File", "sha256": sha})
    assert _upload(pod, sha, data).status_code == 200
    stored = pod_dir / pod.owner / "files" / sha
    raw = bytearray(stored.read_bytes())
    raw[-100] ^= 1  # inside the last chunk, so headers are already sent
    stored.write_bytes(bytes(raw))
    with pytest.raises(httpx.HTTPError):
        response = pod.call("get_file", {"sha256": sha})
        assert response.content != data  # pragma: no cover - the read must fail
    assert pod.http.get("/").status_code == 200


async def test_plugin_upload_in_process(tmp_path: Path) -> None:
    app = create_app(tmp_path)
    owner, key = secrets.token_hex(32), secrets.token_hex(32)
    data, sha = _content(70_000)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://pod"
    ) as http:
        await http.post("/v4/account", json={"ownerKey": owner, "databaseKey": key})
        auth = {"type": "PluginAuth", "data": app.state.issue_plugin_token(owner, key)}
        response = await http.post(
            f"/v4/{owner}/create_item",
            json={"auth": auth, "payload": {"type": "File", "sha256": sha}},
        )
        assert response.status_code == 200
        encoded = quote(json.dumps(auth), safe="")
        response = await http.post(f"/v4/{owner}/upload_file_b/{encoded}/{sha}", content=data)
        assert response.status_code == 200, response.text
        response = await http.post(
            f"/v4/{owner}/get_file", json={"auth": auth, "payload": {"sha256": sha}}
        )
        assert response.content == data
    app.state.close()
