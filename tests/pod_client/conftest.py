"""A real local Pod for the client tests: over a socket, and in-process (embedded)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from importer.pod import EMBEDDED_BASE_URL, ClientAuth, PodClient, load_keys, open_embedded_client

PodFactory = Callable[..., PodClient]


@pytest.fixture(scope="module")
def socket_pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One uvicorn-served local Pod per test module: (base URL, data dir)."""
    from importer.pod.local import running_pod

    data_dir = tmp_path_factory.mktemp("socket-pod")
    with running_pod(data_dir) as url:
        yield url, data_dir


@pytest.fixture(params=["socket", "embedded"])
def pod(request: pytest.FixtureRequest, tmp_path: Path, socket_pod: tuple[str, Path]) -> PodFactory:
    """Make a client of a fresh owner (not yet entered: enter it inside the test).

    ``database_key`` overrides the owner's key, to play an intruder.
    """
    if request.param == "socket":
        url, _ = socket_pod
        keys = load_keys(tmp_path / "client-keys")  # a new owner for every test

        def over_socket(database_key: str | None = None, **kwargs: Any) -> PodClient:
            auth = ClientAuth(database_key or keys.database_key)
            return PodClient(url, keys.owner_key, auth, **kwargs)

        return over_socket

    def embedded(database_key: str | None = None, **kwargs: Any) -> PodClient:
        data_dir = tmp_path / "embedded"
        if database_key is None:
            return open_embedded_client(data_dir, **kwargs)
        # Someone else's app instance on the same data, holding the wrong key.
        from importer.pod._asgi import StreamingASGITransport
        from importer.pod.local import create_app

        transport = StreamingASGITransport(create_app(data_dir))
        owner = load_keys(data_dir).owner_key
        auth = ClientAuth(database_key)
        return PodClient(EMBEDDED_BASE_URL, owner, auth, transport=transport, **kwargs)

    return embedded
