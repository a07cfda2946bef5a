"""Real sockets on 127.0.0.1 that misbehave: the client retries, then gives up cleanly."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from importer.pod import ClientAuth, PodClient, PodUnavailable, RetryPolicy

OWNER = "c" * 64
KEY = "d" * 64
POLICY = RetryPolicy(max_attempts=4, max_elapsed=10, initial_backoff=0.01, max_backoff=0.05)

Behaviour = Callable[[int], bytes | None]
RST_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on with 0 s: close() sends RST

OK_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n[]"


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))


@asynccontextmanager
async def tcp_server(behaviour: Behaviour) -> AsyncIterator[tuple[str, list[int]]]:
    """Serve each connection by ``behaviour(n)``: bytes to send then close, or None to close."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections) + 1)
        reply = behaviour(len(connections))
        try:
            if reply is not None:
                await _read_request(reader)
                writer.write(reply)
                await writer.drain()
            else:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST_ON_CLOSE)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        server.close()
        await server.wait_closed()


async def test_server_that_drops_every_connection() -> None:
    async with (
        tcp_server(lambda n: None) as (url, connections),
        PodClient(url, OWNER, ClientAuth(KEY), retry=POLICY) as client,
    ):
        with pytest.raises(PodUnavailable) as caught:
            await client.search({})
        assert client.retry_count == 3
    assert len(connections) == 4
    assert caught.value.attempts == 4
    assert caught.value.status is None
    assert "last cause" in str(caught.value)
    assert KEY not in str(caught.value)


async def test_server_that_resets_mid_response() -> None:
    partial = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n[{"
    async with (
        tcp_server(lambda n: partial) as (url, connections),
        PodClient(url, OWNER, ClientAuth(KEY), retry=POLICY) as client,
    ):
        with pytest.raises(PodUnavailable) as caught:
            await client.search({})
    assert len(connections) == 4
    assert caught.value.attempts == 4


async def test_recovers_when_the_server_comes_back() -> None:
    async with (
        tcp_server(lambda n: OK_RESPONSE if n >= 3 else None) as (url, connections),
        PodClient(url, OWNER, ClientAuth(KEY), retry=POLICY) as client,
    ):
        assert await client.search({}) == []
        assert client.retry_count == 2
    assert len(connections) == 3


async def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on ``port`` any more.
    policy = RetryPolicy(max_attempts=3, max_elapsed=5, initial_backoff=0.01)
    async with PodClient(
        f"http://127.0.0.1:{port}", OWNER, ClientAuth(KEY), retry=policy
    ) as client:
        with pytest.raises(PodUnavailable) as caught:
            await client.get_item("x")
        assert not await client.is_alive()
    assert caught.value.attempts == 3
    assert "ConnectError" in str(caught.value)


async def test_upload_key_stays_out_of_errors_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
    async with (
        tcp_server(lambda n: None if n == 1 else answer) as (url, _),
        PodClient(url, OWNER, ClientAuth(KEY), retry=POLICY) as client,
    ):
        with pytest.raises(PodUnavailable) as caught:
            await client.upload_file(b"some file content")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "upload_file/***/" in logged  # httpx's request line, redacted
    assert KEY not in logged
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)
