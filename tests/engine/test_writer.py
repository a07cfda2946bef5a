"""The writer's checkpoint rule, with bulks acknowledged in an order the test controls."""

from __future__ import annotations

import json
from typing import Any

import anyio
from anyio.abc import TaskGroup

from importer import Checkpoint, Edge
from importer.engine._batch import BatchBuilder
from importer.engine._resolve import Resolver
from importer.engine._stats import RunStats
from importer.engine._writer import Writer

from .connectors import Note


class HeldPod:
    """Records each bulk and acknowledges it only when the test says so."""

    def __init__(self) -> None:
        self.bulks: list[dict[str, Any]] = []
        self.release: list[anyio.Event] = []

    async def bulk(self, **sections: Any) -> None:
        self.bulks.append(sections)
        event = anyio.Event()
        self.release.append(event)
        await event.wait()

    async def release_all(self) -> None:
        """Acknowledge every bulk, now and as they come (until cancelled)."""
        while True:
            for event in self.release:
                event.set()
            await anyio.sleep(0.01)


def _checkpoint_of(bulk: dict[str, Any]) -> int | None:
    for update in bulk.get("update_items") or []:
        if "importerState" in update:
            return int(json.loads(update["importerState"])["t"]["default"]["next"])
    return None


async def _nothing_exists(filters: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [[] for _ in filters]


class _NotePlans:
    """``await plan(n)``: the plan of one Note and the checkpoint ``{"next": n}``."""

    def __init__(self) -> None:
        self.builder = BatchBuilder("t", {}, max_records=10, max_bytes=1 << 20)
        self.resolver = Resolver(_nothing_exists, cache_size=100)

    async def __call__(self, n: int) -> Any:
        self.builder.add(Note(externalId=f"n{n}"))
        self.builder.add(Checkpoint({"next": n}))
        return await self.resolver.resolve(self.builder.take())

    def writer(self, pod: HeldPod, tg: TaskGroup, **settings: Any) -> Writer:
        """A writer of these plans: up to four bulks in flight."""
        return Writer(
            pod,
            self.resolver,
            RunStats(),
            tg,
            account_id="acc",
            max_in_flight=4,
            upload_concurrency=1,
            **settings,
        )


async def test_a_checkpoint_lands_once_its_bulk_is_acknowledged_although_newer_ones_wait() -> None:
    pod = HeldPod()
    plan = _NotePlans()

    async with anyio.create_task_group() as tg:
        writer = plan.writer(pod, tg)
        await writer.submit(await plan(1))
        await writer.submit(await plan(2))
        await anyio.sleep(0.05)
        assert [_checkpoint_of(b) for b in pod.bulks] == [None, None]
        pod.release[0].set()  # bulk 1 acknowledged; bulk 2 still in flight
        await anyio.sleep(0.05)
        await writer.submit(await plan(3))
        await anyio.sleep(0.05)
        # Checkpoint 1 covers only acknowledged data: it rides with bulk 3.
        assert _checkpoint_of(pod.bulks[2]) == 1
        for event in pod.release[1:]:
            event.set()
        await anyio.sleep(0.05)
        finish = anyio.Event()

        async def finishing() -> None:
            await writer.finish()
            finish.set()

        tg.start_soon(finishing)
        while not finish.is_set():
            for event in pod.release:
                event.set()
            await anyio.sleep(0.01)
    # Nothing in flight at the end: the last checkpoint is written on its own.
    assert _checkpoint_of(pod.bulks[-1]) == 3


async def test_edges_from_items_this_run_created_need_no_question_to_the_pod() -> None:
    asked: list[list[dict[str, Any]]] = []

    async def search(filters: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        asked.append(filters)
        return [[] for _ in filters]

    resolver = Resolver(search, cache_size=100)
    builder = BatchBuilder("t", {}, max_records=100, max_bytes=1 << 20)
    first, second = Note(externalId="a"), Note(externalId="b")
    builder.add(first)
    resolver.acknowledged(await resolver.resolve(builder.take()))
    builder.add(second)
    builder.add(Edge(first, "next", second))
    plan = await resolver.resolve(builder.take())
    # The source was created by an earlier bulk of this run: its edges are
    # all known here, so the Pod is not asked about them.
    assert plan.create_edges == [(first.ensure_id(), "next", second.ensure_id())]
    assert asked == []

    # After a conflict the resolver trusts nothing it did not ask the Pod.
    resolver.optimistic = False
    builder.add(Edge(first, "again", second))
    plan = await resolver.resolve(builder.take())
    assert plan.create_edges == [(first.ensure_id(), "again", second.ensure_id())]
    assert any("[[edges]]" in flt for filters in asked for flt in filters)


async def test_edges_to_an_unacknowledged_bulk_are_held_back_not_waited_for() -> None:
    pod = HeldPod()
    builder = BatchBuilder("t", {}, max_records=10, max_bytes=1 << 20)
    resolver = Resolver(_nothing_exists, cache_size=100)
    notes = [Note(externalId=f"n{n}") for n in range(5)]
    ids = [note.ensure_id() for note in notes]

    async def plan(n: int) -> Any:
        builder.add(notes[n])
        if n > 1:
            builder.add(Edge(notes[n], "follows", notes[n - 1]))
        builder.add(Checkpoint({"next": n}))
        return await resolver.resolve(builder.take())

    def edges_of(bulk: dict[str, Any]) -> list[tuple[str, str]]:
        return [(e["_source"], e["_target"]) for e in bulk.get("create_edges") or []]

    async with anyio.create_task_group() as tg:
        writer = Writer(
            pod, resolver, RunStats(), tg, account_id="acc", max_in_flight=2, upload_concurrency=1
        )
        await writer.submit(await plan(1))
        with anyio.fail_after(1):
            # Bulk 1 is unacknowledged: bulk 2 goes anyway, without its edge to note 1.
            await writer.submit(await plan(2))
        await anyio.sleep(0.05)
        assert len(pod.bulks) == 2
        assert edges_of(pod.bulks[1]) == []
        pod.release[0].set()
        await anyio.sleep(0.05)
        await writer.submit(await plan(3))  # note 2 is still in flight: both edges held
        await anyio.sleep(0.05)
        assert edges_of(pod.bulks[2]) == []
        assert _checkpoint_of(pod.bulks[2]) == 1  # plan 1 held nothing back
        pod.release[1].set()
        await anyio.sleep(0.05)
        await writer.submit(await plan(4))
        await anyio.sleep(0.05)
        # Notes 1 and 2 are acknowledged: the edge between them goes now;
        # checkpoint 2 waits for the bulk that carries it to be acknowledged.
        assert edges_of(pod.bulks[3]) == [(ids[2], ids[1])]
        assert _checkpoint_of(pod.bulks[3]) is None

        tg.start_soon(pod.release_all)
        while writer.plans_owed():  # as the engine does once the source ends
            await writer.submit(await resolver.resolve(builder.take()))
        await writer.finish()
        tg.cancel_scope.cancel()

    sent = [edge for bulk in pod.bulks for edge in edges_of(bulk)]
    assert sorted(sent) == sorted((ids[n], ids[n - 1]) for n in (2, 3, 4))
    # Every checkpoint comes after the edges of the notes it covers.
    for index, bulk in enumerate(pod.bulks):
        covered = _checkpoint_of(bulk)
        if covered is not None:
            earlier = {edge for b in pod.bulks[: index + 1] for edge in edges_of(b)}
            assert {(ids[n], ids[n - 1]) for n in range(2, covered + 1)} <= earlier
    assert _checkpoint_of(pod.bulks[-1]) == 4


async def test_the_last_checkpoint_lands_when_its_held_edges_went_with_the_next_plan() -> None:
    pod = HeldPod()
    builder = BatchBuilder("t", {}, max_records=10, max_bytes=1 << 20)
    resolver = Resolver(_nothing_exists, cache_size=100)
    first, second = Note(externalId="a"), Note(externalId="b")

    async with anyio.create_task_group() as tg:
        writer = Writer(
            pod, resolver, RunStats(), tg, account_id="acc", max_in_flight=2, upload_concurrency=1
        )
        builder.add(first)
        await writer.submit(await resolver.resolve(builder.take()))
        builder.add(second)
        builder.add(Edge(second, "follows", first))
        builder.add(Checkpoint({"next": 2}))
        await writer.submit(await resolver.resolve(builder.take()))  # the edge is held back
        assert resolver.deferred

        tg.start_soon(pod.release_all)
        await anyio.sleep(0.05)  # both acknowledged: the next plan carries the edge
        while writer.plans_owed():
            await writer.submit(await resolver.resolve(builder.take()))
        with anyio.fail_after(5):
            await writer.finish()
        tg.cancel_scope.cancel()

    edges = [e for bulk in pod.bulks for e in bulk.get("create_edges") or []]
    assert [(e["_source"], e["_target"]) for e in edges] == [
        (second.ensure_id(), first.ensure_id())
    ]
    # Its checkpoint covered the plan after the one that carried the edge:
    # with nothing more to come, that plan is made (empty) and it lands.
    assert _checkpoint_of(pod.bulks[-1]) == 2


async def test_checkpoints_never_go_back_when_a_newer_one_is_due_first() -> None:
    pod = HeldPod()
    builder = BatchBuilder("t", {}, max_records=10, max_bytes=1 << 20)
    resolver = Resolver(_nothing_exists, cache_size=100)
    notes = [Note(externalId=f"n{n}") for n in range(3)]

    async with anyio.create_task_group() as tg:
        writer = Writer(
            pod,
            resolver,
            RunStats(),
            tg,
            account_id="acc",
            max_in_flight=2,
            upload_concurrency=1,
            checkpoint_delay=0.01,
        )
        builder.add(notes[0])
        await writer.submit(await resolver.resolve(builder.take()))
        builder.add(notes[1])
        builder.add(Edge(notes[1], "follows", notes[0]))  # held: note 0 is in flight
        builder.add(Checkpoint({"next": 1}))
        await writer.submit(await resolver.resolve(builder.take()))

        tg.start_soon(pod.release_all)
        await anyio.sleep(0.05)
        # The next plan carries the held edge and holds nothing back: its
        # checkpoint is due before the older one (which covers two more plans).
        builder.add(notes[2])
        builder.add(Checkpoint({"next": 2}))
        await writer.submit(await resolver.resolve(builder.take()))
        await anyio.sleep(0.1)
        while writer.plans_owed():
            await writer.submit(await resolver.resolve(builder.take()))
        with anyio.fail_after(5):
            await writer.finish()
        tg.cancel_scope.cancel()

    written = [c for c in map(_checkpoint_of, pod.bulks) if c is not None]
    assert written == sorted(written)
    assert written[-1] == 2


async def test_only_one_unacknowledged_bulk_carries_a_checkpoint() -> None:
    # Two bulks with checkpoints in flight together could commit in either
    # order and leave the older checkpoint on the Account.
    pod = HeldPod()
    plan = _NotePlans()

    async with anyio.create_task_group() as tg:
        writer = plan.writer(pod, tg, checkpoint_delay=60)
        await writer.submit(await plan(1))
        await writer.submit(await plan(2))
        await anyio.sleep(0.05)
        pod.release[0].set()  # checkpoint 1 is due
        await anyio.sleep(0.05)
        await writer.submit(await plan(3))
        await anyio.sleep(0.05)
        assert _checkpoint_of(pod.bulks[2]) == 1  # and stays unacknowledged
        pod.release[1].set()  # checkpoint 2 is due too
        await anyio.sleep(0.05)
        await writer.submit(await plan(4))
        await anyio.sleep(0.05)
        assert _checkpoint_of(pod.bulks[3]) is None
        pod.release[2].set()  # checkpoint 1 acknowledged: the next bulk may carry one
        await anyio.sleep(0.05)
        await writer.submit(await plan(5))
        await anyio.sleep(0.05)
        assert _checkpoint_of(pod.bulks[4]) == 3  # the newest due
        tg.start_soon(pod.release_all)
        with anyio.fail_after(5):
            await writer.finish()
        tg.cancel_scope.cancel()

    written = [c for c in map(_checkpoint_of, pod.bulks) if c is not None]
    assert written == sorted(written) and written[-1] == 5


async def test_a_refused_plan_that_settled_a_pending_edge_settles_it_again_when_resent() -> None:
    """Whichever end was missing, resolving the refused batch again creates the edge."""
    for missing_end in ("source", "target"):
        resolver = Resolver(_nothing_exists, cache_size=100)
        builder = BatchBuilder("t", {}, max_records=100, max_bytes=1 << 20)
        present, late = Note(externalId="present"), Note(externalId="late")
        # Ends given as ids: an item end would be created with the edge.
        ends = [late.ensure_id(), present.ensure_id()]
        if missing_end == "target":
            ends.reverse()
        key = (ends[0], "quotes", ends[1])
        edge = Edge(*key)
        builder.add(present)
        builder.add(edge)
        first = await resolver.resolve(builder.take())
        assert first.pending_added == [key] and first.create_edges == []
        resolver.acknowledged(first)

        builder.add(late)
        settling = await resolver.resolve(builder.take())
        assert settling.create_edges == [key], missing_end
        assert settling.pending_resolved == [key]
        # The Pod refused the bulk: nothing of it was stored, the
        # PendingEdge item included.  The writer resolves the batch again.
        resolver.forget(settling)
        resent = await resolver.resolve(settling.batch, settling.carried)
        assert resent.create_edges == [key], missing_end
        assert resent.delete_items == settling.delete_items
        assert resolver.pending_count() == 0
