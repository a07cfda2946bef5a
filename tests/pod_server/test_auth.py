"""Keys and owners: wrong keys change nothing, owners are apart, plugin tokens."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import httpx
import pytest

from importer.pod.local import create_app, running_pod

from .conftest import PodCaller


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_wrong_key_is_401_and_reveals_nothing(pod: PodCaller) -> None:
    pod.ok("create_item", {"type": "Person", "id": "p", "displayName": "Secret Name"})
    wrong = secrets.token_hex(32)
    for endpoint, payload in [
        ("get_item", "p"),
        ("search", {}),
        ("create_item", {"type": "Person", "id": "q"}),
        ("update_item", {"id": "p", "displayName": "hacked"}),
        ("delete_item", "p"),
        ("bulk", {"deleteItems": ["p"]}),
    ]:
        response = pod.call(endpoint, payload, auth={"type": "ClientAuth", "databaseKey": wrong})
        assert response.status_code == 401, endpoint
        assert "Secret" not in response.text
        assert wrong not in response.text and pod.key not in response.text
    response = pod.http.post("/v4/account", json={"ownerKey": pod.owner, "databaseKey": wrong})
    assert response.status_code == 401
    (item,) = pod.ok("get_item", "p")
    assert item["displayName"] == "Secret Name" and item["deleted"] is False
    assert pod.ok("get_item", "q") == []


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "key",
        {"type": "ClientAuth"},
        {"type": "ClientAuth", "databaseKey": "abc"},
        {"type": "ClientAuth", "databaseKey": "g" * 64},
        {"type": "PluginAuth", "data": {"token": "made-up"}},
        {"type": "PluginAuth"},
        {"type": "Other", "databaseKey": "a" * 64},
    ],
)
def test_malformed_or_unknown_auth_is_401(pod: PodCaller, auth: object) -> None:
    response = pod.http.post(f"/v4/{pod.owner}/search", json={"auth": auth, "payload": {}})
    assert response.status_code == 401, response.text
    assert "error" in response.json()


def test_wrong_key_on_first_open_creates_and_changes_nothing(tmp_path: Path) -> None:
    owner, key = secrets.token_hex(32), secrets.token_hex(32)
    with running_pod(tmp_path) as url, httpx.Client(base_url=url) as http:
        pod = PodCaller(http, owner, key)
        pod.ok("create_item", {"type": "Person", "id": "p", "displayName": "Ann"})
    before = _snapshot(tmp_path)
    assert any(name.endswith("pod.db") for name in before)
    # A new process: the store is not open yet, so the wrong key meets the file.
    with running_pod(tmp_path) as url, httpx.Client(base_url=url) as http:
        intruder = PodCaller(http, owner, secrets.token_hex(32), create=False)
        assert intruder.call("search", {}).status_code == 401
        assert intruder.call("create_item", {"type": "Person"}).status_code == 401
        response = http.post("/v4/account", json={"ownerKey": owner, "databaseKey": intruder.key})
        assert response.status_code == 401
        assert _snapshot(tmp_path) == before
        # The right key still opens it, with the data intact.
        assert PodCaller(http, owner, key).ok("get_item", "p")[0]["displayName"] == "Ann"


def test_owners_are_isolated(http: httpx.Client) -> None:
    one, two = PodCaller(http), PodCaller(http)
    one.ok("create_item", {"type": "Person", "id": "same", "displayName": "one"})
    two.ok("create_item", {"type": "Person", "id": "same", "displayName": "two"})
    assert one.ok("get_item", "same")[0]["displayName"] == "one"
    assert two.ok("get_item", "same")[0]["displayName"] == "two"
    # Each owner's key opens only its own store.
    crossed = one.call("search", {}, auth=two.auth)
    assert crossed.status_code == 401
    one.schema({"Dog": {"age": "Integer"}})
    two.fails("create_item", {"type": "Dog", "age": 1}, 400)


def test_account_is_idempotent_and_owner_key_is_checked(http: httpx.Client) -> None:
    owner, key = secrets.token_hex(32), secrets.token_hex(32)
    for _ in range(2):
        response = http.post("/v4/account", json={"ownerKey": owner, "databaseKey": key})
        assert response.status_code == 200 and response.json() == {}
    for bad_owner in ("abc", "z" * 64, owner + "0"):
        response = http.post("/v4/account", json={"ownerKey": bad_owner, "databaseKey": key})
        assert response.status_code == 400
        response = http.post(
            f"/v4/{bad_owner}/search",
            json={"auth": {"type": "ClientAuth", "databaseKey": key}, "payload": {}},
        )
        assert response.status_code == 400
    response = http.post("/v4/account", json={"ownerKey": owner})
    assert response.status_code == 401


def test_only_known_owners_when_not_accepting_any(tmp_path: Path) -> None:
    owner, key = secrets.token_hex(32), secrets.token_hex(32)
    with running_pod(tmp_path) as url, httpx.Client(base_url=url) as http:
        PodCaller(http, owner, key).ok("create_item", {"type": "Person", "id": "p"})
    with running_pod(tmp_path, accept_any_owner=False) as url, httpx.Client(base_url=url) as http:
        assert PodCaller(http, owner, key).ok("get_item", "p")[0]["id"] == "p"
        stranger = secrets.token_hex(32)
        response = http.post("/v4/account", json={"ownerKey": stranger, "databaseKey": key})
        assert response.status_code == 403
        assert not (tmp_path / stranger).exists()


async def test_plugin_tokens_in_process(tmp_path: Path) -> None:
    app = create_app(tmp_path)
    owner, key = secrets.token_hex(32), secrets.token_hex(32)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as http:
        response = await http.post("/v4/account", json={"ownerKey": owner, "databaseKey": key})
        assert response.status_code == 200
        data = app.state.issue_plugin_token(owner, key)
        assert key not in str(data)
        auth = {"type": "PluginAuth", "data": data}
        response = await http.post(
            f"/v4/{owner}/create_item",
            json={"auth": auth, "payload": {"type": "PluginRun", "id": "run", "status": "ok"}},
        )
        assert response.status_code == 200, response.text
        client_auth = {"type": "ClientAuth", "databaseKey": key}
        response = await http.post(
            f"/v4/{owner}/get_item", json={"auth": client_auth, "payload": "run"}
        )
        assert response.json()[0]["status"] == "ok"
        # A token is bound to its owner.
        other = secrets.token_hex(32)
        response = await http.post(f"/v4/{other}/search", json={"auth": auth, "payload": {}})
        assert response.status_code == 401
        app.state.revoke_plugin_token(data)
        response = await http.post(f"/v4/{owner}/search", json={"auth": auth, "payload": {}})
        assert response.status_code == 401
    app.state.close()
    assert os.listdir(tmp_path) == [owner]


def test_store_files_are_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running_pod(data_dir) as url, httpx.Client(base_url=url) as http:
        pod = PodCaller(http)
        pod.ok("create_item", {"type": "Person", "id": "p"})
        paths = [data_dir, *data_dir.rglob("*")]
        assert any(p.name == "pod.db-wal" for p in paths)
        for path in paths:
            mode = path.stat().st_mode & 0o777
            assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
