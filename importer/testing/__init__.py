"""Helpers for testing connectors against a real local Pod.

::

    async with local_pod(tmp_path) as client:
        result = await run_connector(MyConnector(), {"url": ...}, client=client, data_dir=tmp_path)
        snap = await snapshot(client)
        assert len(snap.of_type("RSSEntry")) == 3

    await check_connector(MyConnector(), options, tmp_path)   # the conformance suite
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..connector import Connector, validate_options
from ..engine import EngineSettings, RunResult, run_import
from ..pod import ClientAuth, PodClient, RetryPolicy, load_keys, open_embedded_client

__all__ = [
    "ConformanceError",
    "PodSnapshot",
    "check_connector",
    "local_pod",
    "run_connector",
    "snapshot",
    "wait_until_serving",
]

BOOKKEEPING_TYPES = frozenset({"ImporterRun", "Importer", "PendingEdge", "ItemPropertySchema"})
_VOLATILE = frozenset({"dateServerModified", "dateModified", "importerState", "keystr", "nonce"})


def wait_until_serving(
    url: str,
    alive: Callable[[], bool],
    *,
    timeout: float = 30.0,
    output: Callable[[], str] = lambda: "",
) -> None:
    """Block until the Pod at ``url`` answers ``GET /`` (a ``pod serve`` just started).

    Fails at once if ``alive()`` says its process ended, with ``output()``
    (e.g. its log) in the message, and after ``timeout`` seconds otherwise.
    """
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if not alive():
            raise RuntimeError(f"the Pod at {url} exited before serving:\n{output()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Pod at {url} did not answer within {timeout:.0f} s")
        time.sleep(0.05)


@asynccontextmanager
async def local_pod(
    data_dir: Path, *, over_socket: bool = False, retry: RetryPolicy | None = None
) -> AsyncIterator[PodClient]:
    """A client of a fresh local Pod in ``data_dir``: in-process, or served on loopback."""
    retry = retry or RetryPolicy(max_attempts=3, max_elapsed=10)
    if not over_socket:
        async with open_embedded_client(data_dir, retry=retry) as client:
            await client.create_account()
            yield client
        return
    from ..pod.local import running_pod

    keys = load_keys(data_dir)
    with running_pod(data_dir) as url:
        async with PodClient(
            url, keys.owner_key, ClientAuth(keys.database_key), retry=retry
        ) as client:
            await client.create_account()
            yield client


async def run_connector(
    connector: Connector[Any],
    options: BaseModel | dict[str, Any],
    *,
    client: Any,
    data_dir: Path,
    account_name: str = "test",
    settings: EngineSettings | None = None,
    **kwargs: Any,
) -> RunResult:
    """Run ``connector`` once for one account, as ``importer run`` would."""
    if not isinstance(options, BaseModel):
        options = validate_options(connector, options)
    return await run_import(
        client,
        connector,
        options,
        account_name,
        lock_dir=data_dir / "locks",
        settings=settings,
        **kwargs,
    )


@dataclass
class PodSnapshot:
    """What landed in the Pod: items by id, edges, and stored file hashes."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def of_type(self, item_type: str) -> list[dict[str, Any]]:
        return [item for item in self.items.values() if item.get("type") == item_type]

    def edges_named(self, name: str) -> list[tuple[str, str, str]]:
        return sorted(edge for edge in self.edges if edge[1] == name)

    def comparable(self) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str, str], int]]:
        """Items without server-set fields, and edges: equal for equal imports."""
        items = {
            item_id: {k: v for k, v in item.items() if k not in _VOLATILE and k != "dateCreated"}
            for item_id, item in self.items.items()
        }
        return items, dict(self.edges)


async def snapshot(client: Any, *, include_bookkeeping: bool = False) -> PodSnapshot:
    """Read every (non-deleted) item and its outgoing edges from the Pod."""
    snap = PodSnapshot()
    async for page in client.search_pages({"deleted": False, "[[edges]]": {}}):
        for item in page:
            if not include_bookkeeping and item.get("type") in BOOKKEEPING_TYPES:
                continue
            edges = item.pop("[[edges]]", [])
            snap.items[item["id"]] = item
            for edge in edges:
                target = str((edge.get("_item") or {}).get("id"))
                snap.edges[(item["id"], str(edge.get("_edge")), target)] += 1
    return snap


class ConformanceError(AssertionError):
    pass


class _Crash(BaseException):
    """Stands in for the process dying right after a bulk was acknowledged."""


class _CrashingClient:
    """Forwards to a real client and 'dies' after ``after`` write bulks."""

    def __init__(self, client: Any, after: int) -> None:
        self._client = client
        self._after = after
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def bulk(self, **sections: Any) -> Any:
        if self.writes >= self._after:
            raise _Crash()
        result = await self._client.bulk(**sections)
        if any(
            sections.get(k)
            for k in ("create_items", "update_items", "delete_items", "create_edges")
        ):
            self.writes += 1
        return result


async def check_connector(
    connector: Connector[Any],
    options: BaseModel | dict[str, Any],
    tmp_path: Path,
    *,
    crash_points: int = 6,
    settings: EngineSettings | None = None,
) -> None:
    """The conformance suite every connector must pass.

    1. A second run imports nothing new.
    2. A run that dies after any of its first ``crash_points`` write bulks,
       then is restarted, ends with exactly the same data as a clean run —
       which also shows that checkpoints are never ahead of the data.
    """
    settings = settings or EngineSettings(batch_records=50, max_in_flight=2)
    reference_dir = tmp_path / "reference"
    async with local_pod(reference_dir) as client:
        first = await run_connector(
            connector, options, client=client, data_dir=reference_dir, settings=settings
        )
        if first.error:
            raise ConformanceError(f"first run failed: {first.error}")
        again = await run_connector(
            connector, options, client=client, data_dir=reference_dir, settings=settings
        )
        if again.stats.created or again.stats.edges_created:
            raise ConformanceError(
                f"a second run created {again.stats.created} items and "
                f"{again.stats.edges_created} edges; expected none"
            )
        reference = (await snapshot(client)).comparable()

    for point in range(crash_points):
        crash_dir = tmp_path / f"crash-{point}"
        async with local_pod(crash_dir) as client:
            crashing = _CrashingClient(client, after=point)
            with suppress(_Crash):
                await run_connector(
                    connector, options, client=crashing, data_dir=crash_dir, settings=settings
                )
            resumed = await run_connector(
                connector, options, client=client, data_dir=crash_dir, settings=settings
            )
            if resumed.error:
                raise ConformanceError(f"restart after crash point {point} failed: {resumed.error}")
            landed = (await snapshot(client)).comparable()
        if landed != reference:
            missing = set(reference[0]) - set(landed[0])
            extra = set(landed[0]) - set(reference[0])
            raise ConformanceError(
                f"after a crash at write bulk {point} and a restart the Pod differs from a clean "
                f"run: {len(missing)} items missing, {len(extra)} extra, edges equal: "
                f"{landed[1] == reference[1]}"
            )
