"""The in-process streaming transport, against a small ASGI app of its own."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from importer.pod import EMBEDDED_BASE_URL, open_embedded_client
from importer.pod._asgi import StreamingASGITransport

CHUNK = 64 * 1024
TOTAL_CHUNKS = 320  # 20 MiB
stopped = anyio.Event()


async def big(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(TOTAL_CHUNKS):
            yield b"z" * CHUNK

    return StreamingResponse(chunks())


async def echo_size(request: Request) -> Response:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return JSONResponse({"size": size})


async def endless(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw ASGI app that would stream forever unless stopped."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        while True:
            await send({"type": "http.response.body", "body": b"e" * CHUNK, "more_body": True})
    finally:
        stopped.set()


async def boom(request: Request) -> Response:
    raise RuntimeError("app bug")


app = Starlette(
    routes=[
        Route("/big", big),
        Route("/echo", echo_size, methods=["POST"]),
        Route("/boom", boom),
        Mount("/endless", endless),
    ]
)


async def test_large_response_is_streamed_not_buffered() -> None:
    tracemalloc.start()
    try:
        async with (
            httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://t") as client,
            client.stream("GET", "/big") as response,
        ):
            tracemalloc.reset_peak()
            total = 0
            async for chunk in response.aiter_raw():
                total += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200
    assert total == CHUNK * TOTAL_CHUNKS
    assert peak < 4 * 1024 * 1024, peak


async def test_request_body_is_streamed_to_the_app() -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"q" * 1000

    async with httpx.AsyncClient(
        transport=StreamingASGITransport(app), base_url="http://t"
    ) as client:
        response = await client.post("/echo", content=body())
    assert response.json() == {"size": 100_000}


async def test_closing_a_response_early_stops_the_app() -> None:
    global stopped
    stopped = anyio.Event()
    async with httpx.AsyncClient(
        transport=StreamingASGITransport(app), base_url="http://t"
    ) as client:
        async with client.stream("GET", "/endless/") as response:
            async for _ in response.aiter_raw():
                break
        with anyio.fail_after(5):
            await stopped.wait()
        # The transport keeps working afterwards.
        assert (await client.post("/echo", content=b"abc")).json() == {"size": 3}


async def test_app_failure_becomes_500() -> None:
    async with httpx.AsyncClient(
        transport=StreamingASGITransport(app), base_url="http://t"
    ) as client:
        response = await client.get("/boom")
    assert response.status_code == 500


async def test_not_entered_falls_back_to_buffering() -> None:
    client = httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://t")
    try:
        response = await client.post("/echo", content=b"12345")
        assert response.json() == {"size": 5}
    finally:
        await client.aclose()


# -- requests answered whole: the app runs in the caller's task ---------------


async def which_task(request: Request) -> Response:
    return JSONResponse({"task": anyio.get_current_task().id})


async def half_answer(scope: Scope, receive: Receive, send: Send) -> None:
    """Starts an answer, then fails."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{", "more_body": True})
    raise RuntimeError("app bug mid-answer")


async def answer_then_wait_for_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the request, answers, then waits for the client to go, as some apps do."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"answered"})
    assert (await receive())["type"] == "http.disconnect"


async def no_answer(scope: Scope, receive: Receive, send: Send) -> None:
    return None


async def raw_boom(scope: Scope, receive: Receive, send: Send) -> None:
    """Fails before answering, with no framework to answer for it."""
    raise RuntimeError("app bug before answering")


whole_app = Starlette(
    routes=[
        Route("/task", which_task),
        Mount("/linger", answer_then_wait_for_disconnect),
        Route("/echo", echo_size, methods=["POST"]),
        Route("/boom", boom),
        Mount("/half", half_answer),
        Mount("/none", no_answer),
    ]
)


def whole_client(app: Any = whole_app) -> httpx.AsyncClient:
    transport = StreamingASGITransport(app, answered_whole=lambda r: r.url.path != "/big")
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_answered_whole_runs_the_app_in_the_callers_task() -> None:
    async with whole_client() as client:
        inline = (await client.get("/task")).json()["task"]
        assert inline == anyio.get_current_task().id
    async with httpx.AsyncClient(
        transport=StreamingASGITransport(whole_app), base_url="http://t"
    ) as client:
        streamed = (await client.get("/task")).json()["task"]
    assert streamed != anyio.get_current_task().id


async def test_answered_whole_lets_the_app_see_the_disconnect_once_answered() -> None:
    async with whole_client() as client:
        with anyio.fail_after(5):
            response = await client.get("/linger/")
    assert response.content == b"answered"


async def test_answered_whole_still_streams_the_request_body() -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"q" * 1000

    async with whole_client() as client:
        response = await client.post("/echo", content=body())
    assert response.json() == {"size": 100_000}


async def test_answered_whole_failures_are_answered_like_a_server() -> None:
    async with whole_client() as client:
        assert (await client.get("/boom")).status_code == 500  # answered by Starlette
        with pytest.raises(httpx.RemoteProtocolError, match="failed while answering"):
            await client.get("/half/")
        with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
            await client.get("/none/")
        # The transport keeps working afterwards.
        assert (await client.post("/echo", content=b"abc")).json() == {"size": 3}
    async with whole_client(raw_boom) as client:  # no framework to answer for the app
        response = await client.get("/")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error of the embedded Pod"}


async def test_embedded_client_keeps_only_file_downloads_streamed(tmp_path: Path) -> None:
    async with open_embedded_client(tmp_path) as client:
        await client.create_account()
        transport = client._http._transport
        assert isinstance(transport, StreamingASGITransport)
        answered_whole = transport._answered_whole
        assert answered_whole is not None
        owner = client.owner_key
        for endpoint in ("bulk", "search", "get_item", "upload_file/k/s", "upload_file_b/x"):
            request = httpx.Request("POST", f"{EMBEDDED_BASE_URL}/v4/{owner}/{endpoint}")
            assert answered_whole(request), endpoint
        download = httpx.Request("POST", f"{EMBEDDED_BASE_URL}/v4/{owner}/get_file")
        assert not answered_whole(download)


@pytest.mark.parametrize("whole", [False, True], ids=["streamed", "answered whole"])
async def test_a_failing_request_body_is_raised_and_the_app_sees_the_client_go(
    whole: bool,
) -> None:
    """As over a socket: the body's error reaches the caller, not a 500 it would retry."""
    received: list[str] = []

    async def reader(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            received.append(message["type"])
            if message["type"] == "http.disconnect":
                break
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"the client went away"})

    async def body() -> AsyncIterator[bytes]:
        yield b"first chunk"
        raise OSError("the file could not be read")

    transport = StreamingASGITransport(reader, answered_whole=lambda request: whole)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with pytest.raises(OSError, match="could not be read"):
            await client.post("/upload", content=body())
    assert received == ["http.request", "http.disconnect"]
