"""Runs a connector's ``fetch`` — sync or async — into a bounded stream.

A sync generator runs in a worker thread, an async one in the event loop;
both hand records over in chunks, and the bounded stream gives
backpressure, so a fast source waits for the Pod instead of filling memory.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, TypeVar, cast

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.abc import ObjectSendStream

from ..model import Record

Chunk = list[Record]
Produced = TypeVar("Produced")

_CHUNK_SECONDS = 0.05


async def pump(
    produced: Iterator[Record] | AsyncIterator[Record] | Any,
    send: ObjectSendStream[Chunk],
    chunk_size: int,
) -> None:
    """Drive ``produced`` to exhaustion, sending lists of records; closes ``send``."""
    async with send:
        if inspect.isasyncgen(produced) or hasattr(produced, "__anext__"):
            await _AsyncPump(cast(AsyncIterator[Record], produced), send, chunk_size).run()
        elif hasattr(produced, "__next__"):
            await _SyncPump(produced, send, chunk_size).run()
        else:
            raise TypeError("fetch() must return a generator (sync or async)")


class _Pump(Generic[Produced]):
    """Records queue up; the producer ships full chunks, a timer partial ones.

    The timer in the event loop ships what is queued every ``_CHUNK_SECONDS``,
    so records reach the engine promptly even while the source blocks or
    awaits (and the engine's ``flush_interval`` holds for every source).
    Every shipment takes and sends under one async lock, which keeps records
    in order.  The queue is a deque: its ``append`` and ``popleft`` are
    atomic, so a producing thread takes no lock per record (with one, handing
    300,000 records over took 0.10-0.17 s; without, 0.08 s).  A source that
    fails has what it yielded before shipped first, then its error raised.
    """

    def __init__(self, produced: Produced, send: ObjectSendStream[Chunk], chunk_size: int) -> None:
        self.produced = produced
        self.send = send
        self.chunk_size = chunk_size
        self._queue: deque[Record] = deque()
        self._ship_lock = anyio.Lock()

    async def _ship(self) -> None:
        async with self._ship_lock:
            # Only what is queued now: the producer may append meanwhile.
            take = self._queue.popleft
            chunk = [take() for _ in range(len(self._queue))]
            if chunk:
                await self.send.send(chunk)

    async def _drain(self) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        stop = anyio.Event()

        async def tick() -> None:
            while not stop.is_set():
                with anyio.move_on_after(_CHUNK_SECONDS):
                    await stop.wait()
                await self._ship()

        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            try:
                await self._drain()
            except Exception as exc:
                failure = exc  # ship what came before it first
            finally:
                stop.set()
        await self._ship()
        if failure is not None:
            raise failure


class _SyncPump(_Pump[Iterator[Record]]):
    """A sync generator, run in a worker thread."""

    async def _drain(self) -> None:
        await anyio.to_thread.run_sync(self._drain_in_thread)

    def _drain_in_thread(self) -> None:
        queue, chunk_size = self._queue, self.chunk_size
        try:
            for record in self.produced:
                queue.append(record)
                if len(queue) >= chunk_size:
                    # Stop producing once the run is cancelled (a failed
                    # write): a hand-over would wait on a dead consumer.
                    anyio.from_thread.check_cancelled()
                    anyio.from_thread.run(self._ship)
        finally:
            close = getattr(self.produced, "close", None)
            if close is not None:
                close()


class _AsyncPump(_Pump[AsyncIterator[Record]]):
    """An async generator, run in the event loop."""

    async def _drain(self) -> None:
        queue, chunk_size = self._queue, self.chunk_size
        try:
            async for record in self.produced:
                queue.append(record)
                if len(queue) >= chunk_size:
                    await self._ship()
        finally:
            aclose = getattr(self.produced, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
