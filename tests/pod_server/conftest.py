"""A real local Pod on a free 127.0.0.1 port, and a small synchronous caller for it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from importer.pod.local import running_pod


class PodCaller:
    """One owner's view of a Pod: ``call`` returns the response, ``ok`` its JSON."""

    def __init__(
        self,
        http: httpx.Client,
        owner: str | None = None,
        key: str | None = None,
        *,
        create: bool = True,
    ) -> None:
        self.http = http
        self.owner = owner or secrets.token_hex(32)
        self.key = key or secrets.token_hex(32)
        if create:
            response = self.http.post(
                "/v4/account", json={"ownerKey": self.owner, "databaseKey": self.key}
            )
            assert response.status_code == 200, response.text

    @property
    def auth(self) -> dict[str, str]:
        return {"type": "ClientAuth", "databaseKey": self.key}

    def call(self, endpoint: str, payload: Any, auth: Any = None) -> httpx.Response:
        body = {"auth": self.auth if auth is None else auth, "payload": payload}
        return self.http.post(f"/v4/{self.owner}/{endpoint}", json=body)

    def ok(self, endpoint: str, payload: Any) -> Any:
        response = self.call(endpoint, payload)
        assert response.status_code == 200, response.text
        return response.json()

    def fails(self, endpoint: str, payload: Any, status: int) -> str:
        """Assert the call fails with ``status``; the error message."""
        response = self.call(endpoint, payload)
        assert response.status_code == status, response.text
        message = response.json()["error"]
        assert isinstance(message, str) and message
        return message

    def schema(self, nodes: dict[str, dict[str, str]]) -> None:
        body = {
            "auth": self.auth,
            "payload": {"nodes": {t: {"properties": p} for t, p in nodes.items()}},
        }
        response = self.http.post(f"/v5/{self.owner}/schema", json=body)
        assert response.status_code == 200, response.text

    def search(self, flt: dict[str, Any]) -> list[dict[str, Any]]:
        result = self.ok("search", flt)
        assert isinstance(result, list)
        return result


@pytest.fixture(scope="module")
def pod_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pod")


@pytest.fixture(scope="module")
def pod_url(pod_dir: Path) -> Iterator[str]:
    """One server per test module; tests stay apart by using their own owners."""
    with running_pod(pod_dir) as url:
        yield url


@pytest.fixture
def http(pod_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pod_url, timeout=30) as client:
        yield client


@pytest.fixture
def pod(http: httpx.Client) -> PodCaller:
    """A fresh owner on the module's server."""
    return PodCaller(http)
