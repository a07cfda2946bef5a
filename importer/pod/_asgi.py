"""An httpx transport that calls an ASGI app in-process and streams its answers.

httpx's own ``ASGITransport`` runs the app to completion and keeps the whole
response body in memory, so a large file read through the embedded Pod would
be held whole.  This transport runs each request's app call in a task of its
own and hands body chunks over through a small bounded stream, so memory stays
at a few chunks.  Those tasks need a task group, which exists only between
``__aenter__`` and ``__aexit__`` (``async with`` on the client); a transport
that was never entered falls back to buffering like ``ASGITransport``.

Requests the owner marks as answered whole (``answered_whole``: small JSON
answers, like all of the local Pod's but ``get_file``) skip the task and the
stream: the app runs in the caller's task and its answer is kept whole.  The
task, its stream and events cost ~0.1 ms of event-loop time per request.

Like a real server, an app failure becomes a 500 if no answer was started and
a broken response (``RemoteProtocolError``) otherwise; it is logged, not raised
through the client.  A request body that fails (a file that changed while it
was read) is the client's own error: the app sees the client go away, and the
error is raised to the caller, as a socket transport does, not answered as a
failure of the Pod (a 500 that is retried).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

__all__ = ["ASGIApp", "StreamingASGITransport"]

logger = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]

_BUFFERED_CHUNKS = 1
_APP_FAILED = b'{"error": "internal error of the embedded Pod"}'
"""The answer for an app that failed before answering, as a server gives it."""


class _ResponseBody(httpx.AsyncByteStream):
    """Body chunks as the app sends them; closing it stops the app's task."""

    def __init__(
        self,
        chunks: MemoryObjectReceiveStream[bytes],
        is_complete: Callable[[], bool],
        stop: Callable[[], None],
    ) -> None:
        self._chunks = chunks
        self._is_complete = is_complete
        self._stop = stop

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async with self._chunks:
            async for chunk in self._chunks:
                yield chunk
        if not self._is_complete():
            raise httpx.RemoteProtocolError("the app ended the response before it was complete")

    async def aclose(self) -> None:
        self._stop()
        await self._chunks.aclose()


class _Receiver:
    """The app's ``receive``: the request body's chunks, then a disconnect.

    The disconnect waits for ``answered`` (a real client stays connected
    until it has the answer).
    """

    def __init__(self, body: httpx.AsyncByteStream, answered: anyio.Event) -> None:
        self._chunks = body.__aiter__()
        self._complete = False
        self._answered = answered
        self.failed: Exception | None = None
        """The request body's own error: raised to the caller once the app has ended."""

    async def __call__(self) -> Message:
        if self._complete:
            await self._answered.wait()
            return {"type": "http.disconnect"}
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._complete = True
            return {"type": "http.request", "body": b"", "more_body": False}
        except Exception as exc:
            self.failed = exc
            self._complete = True
            self._answered.set()
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunk, "more_body": True}


class StreamingASGITransport(httpx.AsyncBaseTransport):
    """Send requests to ``app`` in-process, streaming both request and response bodies."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        client: tuple[str, int] = ("127.0.0.1", 123),
        on_close: Callable[[], None] | None = None,
        answered_whole: Callable[[httpx.Request], bool] | None = None,
    ) -> None:
        """``on_close`` (sync, run in a worker thread) releases the app's resources.

        It stands in for the lifespan shutdown, which no ASGI transport sends.
        ``answered_whole(request)`` is true for requests whose answers are small
        enough to keep in memory (see the module docstring).
        """
        self.app = app
        self.client = client
        self._on_close = on_close
        self._answered_whole = answered_whole
        self._group: TaskGroup | None = None
        self._fallback = httpx.ASGITransport(app=app, client=client)

    async def _release(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(on_close)

    async def aclose(self) -> None:
        await self._release()

    async def __aenter__(self) -> StreamingASGITransport:
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        group, self._group = self._group, None
        try:
            if group is not None:
                group.cancel_scope.cancel()
                await group.__aexit__(None, None, None)
        finally:
            await self._release()

    def _scope(self, request: httpx.Request) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for (k, v) in request.headers.raw],
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "server": (request.url.host, request.url.port),
            "client": self.client,
            "root_path": "",
        }

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        group = self._group
        if group is None:
            return await self._fallback.handle_async_request(request)
        assert isinstance(request.stream, httpx.AsyncByteStream)
        if self._answered_whole is not None and self._answered_whole(request):
            return await self._call_inline(request, request.stream)
        scope = self._scope(request)
        send_chunks, receive_chunks = anyio.create_memory_object_stream[bytes](_BUFFERED_CHUNKS)
        started = anyio.Event()
        finished = anyio.Event()
        app_scope = anyio.CancelScope()
        state: dict[str, Any] = {"status": None, "headers": [], "complete": False}
        receive = _Receiver(request.stream, finished)

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["headers"] = message.get("headers", [])
                started.set()
            elif message["type"] == "http.response.body" and not state["complete"]:
                body = message.get("body", b"")
                if body and request.method != "HEAD":
                    try:
                        await send_chunks.send(body if type(body) is bytes else bytes(body))
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        finished.set()  # the reader went away: a client disconnect
                        return
                if not message.get("more_body", False):
                    state["complete"] = True
                    finished.set()
                    await send_chunks.aclose()

        async def run_app() -> None:
            with app_scope:
                try:
                    await self.app(scope, receive, send)
                except Exception:
                    logger.exception("embedded Pod failed on a %s request", request.method)
                    if not started.is_set():
                        state["status"] = 500
                        state["headers"] = [(b"content-type", b"application/json")]
                        state["complete"] = True
                        started.set()
                        await send_chunks.send(_APP_FAILED)
                finally:
                    finished.set()
                    started.set()
                    send_chunks.close()

        group.start_soon(run_app)
        try:
            await started.wait()
        except BaseException:
            app_scope.cancel()
            receive_chunks.close()
            raise
        if receive.failed is not None:
            app_scope.cancel()
            receive_chunks.close()
            raise receive.failed
        if state["status"] is None:
            receive_chunks.close()
            raise httpx.RemoteProtocolError("the app ended without answering")

        def stop() -> None:
            # Only an app still running needs stopping; cancelling a finished
            # scope costs a task repr (~40 µs) on every request.
            if not finished.is_set():
                app_scope.cancel()

        body = _ResponseBody(receive_chunks, lambda: bool(state["complete"]), stop)
        return httpx.Response(state["status"], headers=state["headers"], stream=body)

    async def _call_inline(
        self, request: httpx.Request, stream: httpx.AsyncByteStream
    ) -> httpx.Response:
        """Run the app in this task and keep its whole answer (failures as in streaming)."""
        status: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        body: list[bytes] = []
        complete = False
        answered = anyio.Event()

        async def send(message: Message) -> None:
            nonlocal status, headers, complete
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", [])
            elif message["type"] == "http.response.body" and not complete:
                chunk = message.get("body", b"")
                if chunk and request.method != "HEAD":
                    body.append(chunk if type(chunk) is bytes else bytes(chunk))
                if not message.get("more_body", False):
                    complete = True
                    answered.set()

        receive = _Receiver(stream, answered)
        try:
            await self.app(self._scope(request), receive, send)
        except Exception:
            logger.exception("embedded Pod failed on a %s request", request.method)
            if status is None:
                status, complete = 500, True
                headers = [(b"content-type", b"application/json")]
                body = [_APP_FAILED]
            elif not complete:
                raise httpx.RemoteProtocolError("the app failed while answering") from None
        if receive.failed is not None:
            raise receive.failed
        if status is None:
            raise httpx.RemoteProtocolError("the app ended without answering")
        if not complete:
            raise httpx.RemoteProtocolError("the app ended the response before it was complete")
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(b"".join(body)))
