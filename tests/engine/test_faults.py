"""The engine against a Pod that fails: 503/429, stalls, answers lost after applying."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from importer.engine import EngineSettings
from importer.pod import ClientAuth, PodClient, PodUnavailable, RetryPolicy, load_keys
from importer.pod.local import running_pod
from importer.testing import local_pod, run_connector, snapshot

from .connectors import Note, SyncNotes, note_id

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPTIONS = {"count": 150, "parent_offset": 2, "with_files": True, "checkpoint_every": 9}
SETTINGS = EngineSettings(batch_records=40, max_in_flight=3, flush_interval=0.2)


class FaultyPod:
    """Wraps the local Pod's ASGI app and misbehaves on a seeded share of data calls.

    * ``503``/``429`` with ``Retry-After: 0`` — the request is not applied;
    * ``lost``: the request IS applied, then the answer stalls past the
      client's timeout — the client retries a bulk that already committed.
    """

    def __init__(self, app: Any, *, seed: int, rate: float, stall: float) -> None:
        self.app = app
        self.rng = random.Random(seed)
        self.rate = rate
        self.stall = stall
        self.injected: dict[str, int] = {"503": 0, "429": 0, "lost": 0}
        self.always_down = False

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if "/v4/" not in path or path.endswith("/v4/account"):
            await self.app(scope, receive, send)
            return
        roll = self.rng.random()
        if self.always_down or roll < self.rate * 0.4:
            await self._refuse(send, 503)
        elif roll < self.rate * 0.7:
            await self._refuse(send, 429)
        elif roll < self.rate:
            await self._apply_then_stall(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _refuse(self, send: Send, status: int) -> None:
        self.injected[str(status)] += 1
        await _refusal(send, status, b'{"error": "injected fault"}')

    async def _apply_then_stall(self, scope: Message, receive: Receive, send: Send) -> None:
        self.injected["lost"] += 1
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        await anyio.sleep(self.stall)
        for message in held:
            await send(message)


class DiesAfterDeleting:
    """Once armed, applies the first bulk that deletes items, then is down for good.

    The bulk's answer is lost and every later data call gets a 503: the run
    that sent it fails right there, as if the Pod had died after committing.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.armed = False
        self.down = False
        self.applied: list[bytes] = []

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not self.armed or "/v4/" not in path:
            await self.app(scope, receive, send)
            return
        if self.down:
            await _unavailable(send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        if not (path.endswith("/bulk") and b'"deleteItems"' in body):
            await self.app(scope, replay, send)
            return

        async def lost(message: Message) -> None:
            pass

        await self.app(scope, replay, lost)
        self.applied.append(body)
        self.down = True
        await _unavailable(send)


async def _unavailable(send: Send) -> None:
    await _refusal(send, 503, b'{"error": "the Pod died"}')


async def _refusal(send: Send, status: int, body: bytes) -> None:
    """An answer of ``status`` asking to retry at once; the request is not applied."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"retry-after", b"0"), (b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _client(url: str, data_dir: Path, retry: RetryPolicy, timeout: float) -> PodClient:
    keys = load_keys(data_dir)
    return PodClient(
        url, keys.owner_key, ClientAuth(keys.database_key), retry=retry, timeout=timeout
    )


async def _reference(tmp_path: Path) -> Any:
    async with local_pod(tmp_path / "reference") as client:
        await run_connector(
            SyncNotes(), OPTIONS, client=client, data_dir=tmp_path / "reference", settings=SETTINGS
        )
        return (await snapshot(client)).comparable()


@pytest.mark.slow
async def test_import_is_exact_through_a_flaky_pod(tmp_path: Path) -> None:
    reference = await _reference(tmp_path)
    data_dir = tmp_path / "flaky"
    async with local_pod(data_dir):
        pass  # keys and owner store
    faults: list[FaultyPod] = []

    def wrap(app: Any) -> Any:
        faults.append(FaultyPod(app, seed=7, rate=0.2, stall=1.0))
        return faults[0]

    retry = RetryPolicy(max_attempts=12, max_elapsed=60, initial_backoff=0.01, max_backoff=0.1)
    with running_pod(data_dir, wrap=wrap) as url:
        async with _client(url, data_dir, retry, timeout=0.5) as client:
            result = await run_connector(
                SyncNotes(), OPTIONS, client=client, data_dir=data_dir, settings=SETTINGS
            )
            # Faults injected into the run's own requests; the reads below meet more.
            injected = dict(faults[0].injected)
            assert result.error is None
            landed = (await snapshot(client)).comparable()
            assert result.run_id is not None
            run = await client.get_item(result.run_id)
    assert run is not None
    assert injected["503"] >= 3 and injected["429"] >= 3 and injected["lost"] >= 3, injected
    assert landed == reference
    assert result.retries >= sum(injected.values()) - 3  # the last few may hit the run record
    assert run["status"] == "done" and run["retryCount"] >= 1


async def test_a_pod_that_never_recovers_ends_the_run_within_its_budget(tmp_path: Path) -> None:
    data_dir = tmp_path / "down"
    async with local_pod(data_dir):
        pass
    faults: list[FaultyPod] = []

    def wrap(app: Any) -> Any:
        faults.append(FaultyPod(app, seed=1, rate=0.0, stall=0.0))
        return faults[0]

    retry = RetryPolicy(max_attempts=50, max_elapsed=2.0, initial_backoff=0.05, max_backoff=0.2)
    with running_pod(data_dir, wrap=wrap) as url:
        async with _client(url, data_dir, retry, timeout=1.0) as client:
            # The Pod goes down mid-run, after the first notes were committed.
            async def outage() -> None:
                await anyio.sleep(0.8)
                faults[0].always_down = True

            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                tg.start_soon(outage)
                result = await run_connector(
                    SyncNotes(),
                    {"count": 400, "delay": 0.005},
                    client=client,
                    data_dir=data_dir,
                    settings=EngineSettings(batch_records=20, flush_interval=0.1),
                )
            elapsed = time.monotonic() - started
            faults[0].always_down = False
            committed = await client.search({"type": "Note"})
    assert result.status == "failed"
    assert "failed after" in (result.error or "")
    assert elapsed < 2.0 + 2.0 + 0.8 + 5  # outage start + retry budget + timeout + slack
    assert 0 < len(committed) < 400  # what was acknowledged before the outage stays


async def test_unreachable_pod_raises_a_clear_error(tmp_path: Path) -> None:
    retry = RetryPolicy(max_attempts=3, max_elapsed=1.0, initial_backoff=0.01)
    async with PodClient(
        "http://127.0.0.1:9", "a" * 64, ClientAuth("b" * 64), retry=retry
    ) as client:
        with pytest.raises(PodUnavailable) as caught:
            await run_connector(SyncNotes(), {"count": 3}, client=client, data_dir=tmp_path)
    assert "b" * 64 not in str(caught.value)


async def test_settling_pending_edges_loses_none_when_the_pod_dies_after_one_bulk(
    tmp_path: Path,
) -> None:
    """A run's start links pending edges whose targets arrived elsewhere; the
    Pod dies right after the first bulk that deletes PendingEdge items.
    Whatever that bulk held, every edge is in the Pod after the next run."""
    data_dir = tmp_path / "dies"
    options = {"count": 10, "parent_offset": 1}
    settings = EngineSettings(batch_records=40, flush_interval=0.2)
    async with local_pod(data_dir):
        pass
    pods: list[DiesAfterDeleting] = []

    def wrap(app: Any) -> Any:
        pods.append(DiesAfterDeleting(app))
        return pods[0]

    retry = RetryPolicy(max_attempts=3, max_elapsed=1.0, initial_backoff=0.01, max_backoff=0.05)
    with running_pod(data_dir, wrap=wrap) as url:
        async with _client(url, data_dir, retry, timeout=2.0) as client:

            async def run() -> Any:
                return await run_connector(
                    SyncNotes(), options, client=client, data_dir=data_dir, settings=settings
                )

            first = await run()
            assert first.error is None and first.stats.edges_pending == 1
            # The edge's target arrives from elsewhere; the next run's start links it.
            await client.create_item(Note(externalId="note-10", title="from elsewhere").to_pod())
            pods[0].armed = True
            dying = await run()
            assert dying.status == "failed"
            assert pods[0].applied, "the Pod never died: no bulk deleted items"
            pods[0].armed = False
            again = await run()
            assert again.error is None
            snap = await snapshot(client)
            pending = await client.search({"type": "PendingEdge", "deleted": False})
    assert (note_id(9), "answers", note_id(10)) in snap.edges
    assert pending == []
