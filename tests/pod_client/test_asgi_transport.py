"""The in-process streaming transport, against a small ASGI app of its own."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

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
