"""The hand-over from a connector's generator to the engine: order and bounds."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from importer.engine._source import pump


async def _collect(produced: object, chunk_size: int) -> list[list[int]]:
    send, receive = anyio.create_memory_object_stream[list[int]](2)
    chunks: list[list[int]] = []

    async def consume() -> None:
        async with receive:
            async for chunk in receive:
                chunks.append(chunk)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await pump(produced, send, chunk_size)  # type: ignore[arg-type]
    return chunks


async def test_a_fast_sync_source_arrives_whole_and_in_order() -> None:
    def numbers() -> Iterator[int]:
        for n in range(200_000):
            if n % 20_000 == 0:
                time.sleep(0.06)  # the timer ships partial chunks meanwhile
            yield n

    chunks = await _collect(numbers(), chunk_size=256)
    assert [n for chunk in chunks for n in chunk] == list(range(200_000))
    assert all(0 < len(chunk) <= 256 for chunk in chunks)
    # Partial chunks came from the timer while the source slept.
    assert any(len(chunk) < 256 for chunk in chunks[:-1])


async def test_a_slow_consumer_holds_the_source_back() -> None:
    produced = 0
    most_ahead = 0
    consumed = 0
    lock = threading.Lock()

    def numbers() -> Iterator[int]:
        nonlocal produced, most_ahead
        for n in range(5_000):
            with lock:
                produced += 1
                most_ahead = max(most_ahead, produced - consumed)
            yield n

    send, receive = anyio.create_memory_object_stream[list[int]](1)
    seen: list[int] = []

    async def consume() -> None:
        nonlocal consumed
        async with receive:
            async for chunk in receive:
                await anyio.sleep(0.002)
                seen.extend(chunk)
                with lock:
                    consumed += len(chunk)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await pump(numbers(), send, 100)  # type: ignore[arg-type]
    assert seen == list(range(5_000))
    # One chunk being consumed, one in the stream, one being filled, plus
    # what the timer took: never the whole source.
    assert most_ahead <= 5 * 100, most_ahead


async def test_an_async_source_arrives_in_order() -> None:
    async def numbers() -> AsyncIterator[int]:
        for n in range(3_000):
            if n % 1_000 == 0:
                await anyio.sleep(0.06)
            yield n

    chunks = await _collect(numbers(), chunk_size=128)
    assert [n for chunk in chunks for n in chunk] == list(range(3_000))


async def test_an_async_source_that_waits_has_its_records_shipped_meanwhile() -> None:
    """flush_interval holds for async sources: records don't wait for the next one."""
    send, receive = anyio.create_memory_object_stream[list[int]](10)
    first_arrived = anyio.Event()

    async def numbers() -> AsyncIterator[int]:
        yield 1
        yield 2
        await first_arrived.wait()  # only the pump's timer can ship 1 and 2 now
        yield 3

    got: list[int] = []

    async def consume() -> None:
        async with receive:
            async for chunk in receive:
                got.extend(chunk)
                first_arrived.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await pump(numbers(), send, 256)  # type: ignore[arg-type]
    assert got == [1, 2, 3]


def _failing_sync() -> Iterator[int]:
    yield from range(700)
    raise ValueError("source broke")


async def _failing_async() -> AsyncIterator[int]:
    for n in range(700):
        yield n
    raise ValueError("source broke")


@pytest.mark.parametrize("numbers", [_failing_sync, _failing_async], ids=["sync", "async"])
async def test_a_failing_source_ships_what_came_before_the_failure(numbers: Any) -> None:
    send, receive = anyio.create_memory_object_stream[list[int]](100)
    with pytest.raises(ValueError, match="source broke"):
        await pump(numbers(), send, 256)  # type: ignore[arg-type]
    got: list[int] = []
    async with receive:
        async for chunk in receive:
            got.extend(chunk)
    assert got == list(range(700))
