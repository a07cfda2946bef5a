"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, run in a thread.

Unlike an ASGI wrapper, it sits on real sockets between a client and a Pod, so
the client meets real connection resets, stalls and cut-off bodies. Each
request gets one seeded decision (:class:`Fault`); it parses just enough HTTP
(request line, headers, Content-Length or chunked bodies, keep-alive).
"""

from __future__ import annotations

import asyncio
import enum
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["Fault", "FaultPlan", "FaultProxy", "fault_proxy"]


class Fault(enum.Enum):
    FORWARD = "forward"
    STATUS_500 = "500"
    STATUS_503 = "503"
    STATUS_429 = "429"
    RESET_BEFORE = "reset-before"  # connection reset, request never reaches the Pod
    RESET_AFTER = "reset-after"  # the Pod applied it, then the connection is reset
    STALL = "stall"  # the Pod applied it, the answer never comes in time
    TRUNCATE = "truncate"  # the Pod applied it, the body is cut short


_FAULTS = [f for f in Fault if f is not Fault.FORWARD]


@dataclass
class FaultPlan:
    """Which requests to fault: a seeded ``rate`` of them, or all (``always``)."""

    seed: int = 0
    rate: float = 0.2
    always: Fault | None = None
    only_path: str = "/v4/"  # requests whose path holds this may be faulted
    retry_after: int = 0  # seconds, on injected 429/500/503 answers
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def decide(self, path: str) -> Fault:
        if self.always is not None:
            return self.always
        if self.only_path not in path:
            return Fault.FORWARD
        if self._rng.random() >= self.rate:
            return Fault.FORWARD
        return self._rng.choice(_FAULTS)


class _Closed(Exception):
    """The peer closed the connection between requests."""


async def _read_head(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise _Closed() from exc
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return head, headers


async def _read_body(
    reader: asyncio.StreamReader, headers: dict[str, str], *, until_close: bool
) -> bytes:
    """The raw body bytes as sent (chunked framing kept)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts: list[bytes] = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            parts.append(size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = await reader.readuntil(b"\r\n")
                    parts.append(trailer)
                    if trailer == b"\r\n":
                        return b"".join(parts)
            parts.append(await reader.readexactly(size + 2))
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    return await reader.read() if until_close else b""


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Listens on 127.0.0.1:``port``, forwards to ``upstream``, faults per :class:`FaultPlan`."""

    def __init__(self, upstream: str, plan: FaultPlan, *, stall_seconds: float = 5.0) -> None:
        parts = urlsplit(upstream)
        self._up_host = parts.hostname or "127.0.0.1"
        self._up_port = parts.port or 80
        self.plan = plan
        self.stall_seconds = stall_seconds
        self.counts: Counter[Fault] = Counter()
        self.port = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def faults(self) -> int:
        with self._lock:
            return sum(n for f, n in self.counts.items() if f is not Fault.FORWARD)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._connection(reader, writer)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, _Closed):
                pass
            finally:
                tasks.discard(task)
                writer.transport.abort()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _decide(self, path: str) -> Fault:
        with self._lock:
            fault = self.plan.decide(path)
            self.counts[fault] += 1
            return fault

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                head, headers = await _read_head(reader)
                body = await _read_body(reader, headers, until_close=False)
                path = head.split(b" ", 2)[1].decode("latin-1")
                fault = self._decide(path)
                if fault in (Fault.STATUS_500, Fault.STATUS_503, Fault.STATUS_429):
                    await self._answer(writer, int(fault.value), self.plan.retry_after)
                    continue
                if fault is Fault.RESET_BEFORE:
                    _reset(writer)
                    return
                if upstream is None:
                    upstream = await asyncio.open_connection(self._up_host, self._up_port)
                up_reader, up_writer = upstream
                up_writer.write(head + body)
                await up_writer.drain()
                resp_head, resp_headers = await _read_head(up_reader)
                closes = resp_headers.get("connection", "").lower() == "close"
                resp_body = await _read_body(up_reader, resp_headers, until_close=closes)
                if fault is Fault.RESET_AFTER:
                    _reset(writer)
                    return
                if fault is Fault.STALL:
                    await asyncio.sleep(self.stall_seconds)
                    _reset(writer)
                    return
                if fault is Fault.TRUNCATE:
                    writer.write(resp_head + resp_body[: len(resp_body) // 2])
                    await writer.drain()
                    _reset(writer)
                    return
                writer.write(resp_head + resp_body)
                await writer.drain()
                if closes:
                    return
        finally:
            if upstream is not None:
                upstream[1].transport.abort()

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status: int, retry_after: int) -> None:
        body = b'{"error": "injected fault"}'
        reason = {500: "Internal Server Error", 503: "Service Unavailable"}.get(
            status, "Too Many Requests"
        )
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"retry-after: {retry_after}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()


@contextmanager
def fault_proxy(
    upstream: str, plan: FaultPlan, *, stall_seconds: float = 5.0
) -> Iterator[FaultProxy]:
    """A started :class:`FaultProxy`, stopped on exit."""
    proxy = FaultProxy(upstream, plan, stall_seconds=stall_seconds)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
