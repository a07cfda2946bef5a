"""The engine's planner and writer against a real local Pod store, one bulk at a time.

Each write bulk waits until the test applies it, in the order the test
picks; applying can lose the answer (the Pod committed, then died), and the
client's retry of the same bulk, applied later, then meets what the Pod
holds by then. Searches and file uploads are answered at once. Everything runs in one thread
on one event loop, so a schedule replays exactly.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from importer import Item, Record
from importer.engine._batch import BatchBuilder
from importer.engine._resolve import Resolver
from importer.engine._stats import RunStats
from importer.engine._writer import Writer
from importer.pod.errors import PodConflict, PodError, error_for_status
from importer.pod.local._db import create_database
from importer.pod.local._errors import PodHTTPError
from importer.pod.local._store import Store
from importer.schema import CENTRAL_TYPES, PendingEdge

from .connectors import Note, Tag

_SECTIONS = {
    "create_items": "createItems",
    "update_items": "updateItems",
    "delete_items": "deleteItems",
    "create_edges": "createEdges",
}
_TURNS = 50
"""Event-loop turns the engine gets before each bulk is applied: enough to plan
several batches (nothing here waits for I/O or a clock)."""
_IDLE_ROUNDS = 1000


@contextmanager
def open_store(path: Path) -> Iterator[Store]:
    """A new owner's store that knows the notes connector's types."""
    key = secrets.token_hex(32)
    create_database(path, key)
    store = Store.open(path, key)
    try:
        store.conn.execute("PRAGMA synchronous = OFF")  # a test's Pod need not survive power loss
        types: list[type[Item]] = [*CENTRAL_TYPES, Note, Tag]
        store.add_schema({"nodes": {t.item_type: {"properties": t.pod_schema()} for t in types}})
        yield store
    finally:
        store.close()


@dataclass
class SentBulk:
    body: dict[str, Any]
    answered: anyio.Event = field(default_factory=anyio.Event)
    error: PodError | None = None
    answer_lost: bool = False


class SteppedPod:
    """A client of ``store`` whose write bulks wait to be applied by :meth:`apply`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sent: list[SentBulk] = []
        """Bulks waiting to be applied, oldest first."""

    async def search(self, filters: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        found: list[list[dict[str, Any]]] = self.store.bulk({"search": filters})["search"]
        return found

    async def bulk(self, **sections: Any) -> None:
        sent = SentBulk({_SECTIONS[name]: value for name, value in sections.items() if value})
        self.sent.append(sent)
        await sent.answered.wait()
        if sent.error is not None:
            raise sent.error

    async def upload_file(self, content: bytes | Path, sha256: str) -> bool:
        """Store ``content`` at once, as the Pod's upload does; False if it was stored (409)."""
        data = content if isinstance(content, bytes) else await anyio.Path(content).read_bytes()
        writer = None
        try:
            self.store.check_upload(sha256)
            writer = self.store.files.writer(len(data))
            writer.write_all([data])
            assert writer.finish() == sha256
            writer.place(sha256)
            self.store.store_blob(sha256, writer)
        except PodHTTPError as exc:
            error = error_for_status(exc.status, exc.message)
            if isinstance(error, PodConflict):
                return False
            raise error from None
        finally:
            if writer is not None:
                writer.discard()
        return True

    def has_content(self, sha256: str) -> bool:
        return self.store.blob_key(sha256) is not None

    def apply(self, index: int = 0, *, lose_answer: bool = False) -> PodError | None:
        """Apply waiting bulk ``index``; with ``lose_answer`` its retry stays waiting."""
        sent = self.sent[index]
        try:
            self.store.bulk(sent.body)
            error = None
        except PodHTTPError as exc:
            error = error_for_status(exc.status, exc.message)
        if lose_answer and error is None and not sent.answer_lost:
            sent.answer_lost = True
            return None
        del self.sent[index]
        sent.error = error
        sent.answered.set()
        return error

    def pending_edges(self) -> set[tuple[str, str, str]]:
        """The edges the Pod holds as (not deleted) PendingEdge items."""
        found = self.store.bulk({"search": [{"type": PendingEdge.item_type, "deleted": False}]})
        return {(i["edgeSource"], i["edgeName"], i["edgeTarget"]) for i in found["search"][0]}

    def has_edge(self, source: str, name: str, target: str) -> bool:
        found = self.store.bulk({"search": [{"id": source, "[[edges]]": {}}]})["search"][0]
        return any(
            edge.get("_edge") == name and (edge.get("_item") or {}).get("id") == target
            for item in found
            for edge in item.get("[[edges]]", [])
        )


Scheduler = Callable[[SteppedPod], None]
"""Applies one or more of the waiting bulks (the engine waits for the Pod)."""


def oldest_first(pod: SteppedPod) -> None:
    pod.apply(0)


async def run_batches(
    pod: SteppedPod,
    batches: Sequence[Sequence[Record]],
    schedule: Scheduler = oldest_first,
    *,
    max_in_flight: int = 3,
) -> None:
    """One run of ``batches`` as the engine makes it, bulks applied by ``schedule``.

    Like a run, it first settles the pending edges the Pod holds whose ends
    both exist; unlike one, it has no second pass at its end: what the
    plans leave is what the test sees.
    """
    resolver = Resolver(pod.search, cache_size=1000)
    live = pod.store.bulk({"search": [{"type": PendingEdge.item_type, "deleted": False}]})
    resolver.load_pending(live["search"][0])
    settle = await resolver.settle_pending()
    edges = [{"_source": s, "_name": n, "_target": t} for s, n, t in settle.create_edges]
    if edges or settle.delete_items:
        pod.store.bulk({"deleteItems": settle.delete_items, "createEdges": edges})
    builder = BatchBuilder("notes", {}, max_records=10_000, max_bytes=1 << 30)
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        writer = Writer(
            pod,
            resolver,
            RunStats(),
            tg,
            account_id="unused",  # the batches carry no checkpoints
            max_in_flight=max_in_flight,
            upload_concurrency=1,
        )

        async def plan_and_write() -> None:
            for records in batches:
                for record in records:
                    builder.add(record)
                await writer.submit(await writer.resolve(builder.take()))
            while writer.plans_owed():
                await writer.submit(await writer.resolve(builder.take()))
            await writer.finish()
            done.set()

        tg.start_soon(plan_and_write)
        idle = 0
        while not done.is_set():
            for _ in range(_TURNS):
                await anyio.lowlevel.checkpoint()
            if pod.sent:
                schedule(pod)
                idle = 0
            else:
                idle += 1
                assert idle < _IDLE_ROUNDS, "the run neither ends nor sends a bulk"


class Replay:
    """Applies the bulks as ``choices`` say, then always the first option.

    An option is a waiting bulk, applied with its answer or (with
    ``lose_answers``, once per bulk) without. ``options`` records how many
    there were at each step: the schedules not taken.
    """

    def __init__(self, choices: list[int], *, lose_answers: bool) -> None:
        self.choices = choices
        self.lose_answers = lose_answers
        self.taken: list[int] = []
        self.options: list[int] = []

    def __repr__(self) -> str:
        return f"schedule {self.taken}"

    def __call__(self, pod: SteppedPod) -> None:
        options = [(index, False) for index in range(len(pod.sent))]
        if self.lose_answers:
            options += [(i, True) for i, sent in enumerate(pod.sent) if not sent.answer_lost]
        step = len(self.taken)
        choice = self.choices[step] if step < len(self.choices) else 0
        self.taken.append(choice)
        self.options.append(len(options))
        index, lose = options[choice]
        pod.apply(index, lose_answer=lose)


async def every_schedule(
    attempt: Callable[[Scheduler], Awaitable[None]], *, lose_answers: bool
) -> int:
    """Calls ``attempt`` once with each schedule of the bulks it sends; how many there were.

    ``attempt`` must start from the same state each time: its bulks, and so
    the choices, are then the same up to where a schedule differs.
    """
    unexplored: list[list[int]] = [[]]
    count = 0
    while unexplored:
        replay = Replay(unexplored.pop(), lose_answers=lose_answers)
        await attempt(replay)
        count += 1
        for step in range(len(replay.choices), len(replay.taken)):
            taken = replay.taken[:step]
            unexplored += [[*taken, other] for other in range(1, replay.options[step])]
    return count
