"""Dedup: decides, per batch, what the Pod must create, update or link.

Existence is asked of the Pod in one bulk search per batch and remembered in
bounded caches.  Edges whose target is not in the Pod yet are kept as
``PendingEdge`` items and created when the target arrives — in this run or a
later one.

An edge with an end in a bulk that is still unacknowledged is held back and
carried by a later plan instead of making its whole bulk wait: with a steady
stream most batches link a few records to the batch before, and waiting for
every acknowledgement kept only one bulk in flight.  A held edge goes with the
first plan resolved once its ends are acknowledged, and at the latest with the
second plan after its own (``HOLD_PLANS``), which then waits as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..model import FilePayload, derive_id
from ..schema import PendingEdge
from ._batch import Batch, BatchItem, EdgeKey
from ._cache import LRU, key_digest


class BulkSearcher(Protocol):
    async def __call__(self, filters: list[dict[str, Any]]) -> list[list[dict[str, Any]]]: ...


def mutable_digest(values: dict[str, Any]) -> str:
    """A short, stable fingerprint of an item's mutable properties.

    A None value (to be erased) counts as absent: an erased property is one the
    Pod does not have.
    """
    if None in values.values():
        values = {name: value for name, value in values.items() if value is not None}
    if not values:
        return ""
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


_SHARED_STRINGS = 4096
HOLD_PLANS = 2
"""An edge held back from plan ``n`` is carried by plan ``n + HOLD_PLANS`` at the latest."""

CREATED_HERE = "+"
"""Marks a ``known`` entry as created by this run (digests are hex: never "+")."""
NOT_COUNTED = "="
"""Marks a ``known`` entry of an item in the Pod that no plan has counted yet."""


def pending_edge_id(key: EdgeKey) -> str:
    return derive_id(PendingEdge.item_type, *key)


@dataclass
class Plan:
    """One bulk request, plus what to do after it is acknowledged."""

    batch: Batch
    create_items: list[dict[str, Any]] = field(default_factory=list)
    update_items: list[dict[str, Any]] = field(default_factory=list)
    delete_items: list[str] = field(default_factory=list)
    create_edges: list[EdgeKey] = field(default_factory=list)
    uploads: list[FilePayload] = field(default_factory=list)
    depends_on: int = 0
    """Highest earlier bulk seq this one needs acknowledged first (0: none)."""
    carried: list[EdgeKey] = field(default_factory=list)
    """Edges an earlier plan held back, created by this one."""
    defers: bool = False
    """Edges of this plan or an earlier one are still held back: the data
    before this plan is all in only once plan ``seq + HOLD_PLANS`` is."""
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    counted: list[tuple[str, str]] = field(default_factory=list)
    """Items (id, mutable digest in the Pod) this plan counted as unchanged for the run."""
    pending_added: list[EdgeKey] = field(default_factory=list)
    pending_resolved: list[EdgeKey] = field(default_factory=list)

    @property
    def seq(self) -> int:
        return self.batch.seq

    @property
    def checkpoint(self) -> str | None:
        return self.batch.checkpoint

    def has_writes(self) -> bool:
        return bool(
            self.create_items or self.update_items or self.delete_items or self.create_edges
        )


class Resolver:
    """Turns batches into plans; the only owner of the dedup caches."""

    def __init__(self, search: BulkSearcher, *, cache_size: int, optimistic: bool = True) -> None:
        self._search = search
        self.optimistic = optimistic
        """Skip asking the Pod about unknown items until a bulk conflicts."""
        self.known: LRU[str] = LRU(cache_size)
        """id -> mutable digest, for items that exist or are on their way;
        prefixed with ``CREATED_HERE`` for items this run created (their only
        edges are the ones it planned)."""
        self.in_flight: dict[str, int] = {}
        """id -> seq of the unacknowledged bulk that creates it."""
        self.edges_known: LRU[None] = LRU(cache_size)
        self.stored_files: LRU[None] = LRU(cache_size)
        self.pending_keys: set[EdgeKey] = set()
        """Edges stored as PendingEdge items in the Pod."""
        self._recreate: list[EdgeKey] = []
        self.waiting: dict[str, set[EdgeKey]] = {}
        """missing item id -> pending edges that wait for it."""
        self._strings: dict[str, str] = {}
        self.deferred: list[tuple[EdgeKey, int]] = []
        """Edges held back for a later plan, with the seq of the plan they came from."""
        self.pending_changed = False
        """This run's plans stored or settled PendingEdge items."""

    # -- pending edges -------------------------------------------------------

    def load_pending(self, items: Iterable[dict[str, Any]]) -> None:
        """Remember the PendingEdge items a previous run left in the Pod."""
        for item in items:
            if item.get("deleted"):
                continue
            key = (item.get("edgeSource"), item.get("edgeName"), item.get("edgeTarget"))
            if all(isinstance(part, str) for part in key):
                self._file_pending(key)  # type: ignore[arg-type]

    def pending_count(self) -> int:
        return len(self.pending_keys)

    async def settle_pending(self) -> Plan:
        """A plan creating the loaded pending edges whose ends now both exist."""
        plan = Plan(batch=Batch(seq=0))
        ends = sorted({end for key in self.pending_keys for end in (key[0], key[2])})
        existing = await self._lookup(ends, with_edges=False) if ends else {}
        self.waiting.clear()
        candidates = sorted(self.pending_keys)
        await self._plan_edges(plan, candidates, lambda i: i in existing, set())
        return plan

    # -- resolution ----------------------------------------------------------

    async def _lookup(self, ids: list[str], *, with_edges: bool) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            filters: list[dict[str, Any]] = []
            for item_id in chunk:
                flt: dict[str, Any] = {"id": item_id}
                if with_edges:
                    flt["[[edges]]"] = {}
                filters.append(flt)
            for item_id, results in zip(chunk, await self._search(filters), strict=True):
                if results:
                    found[item_id] = results[0]
        return found

    async def resolve(self, batch: Batch, carried: list[EdgeKey] | None = None) -> Plan:
        """The plan for ``batch``; ``carried`` when a refused plan is resolved again."""
        plan = Plan(batch=batch)
        items = batch.items
        waiting = [key for item_id in items for key in sorted(self.waiting.get(item_id, ()))]
        # Resolved again, a plan checks the held edges it carries like its own:
        # their ends are asked about too (one this run never cached is not missing).
        resolving = [*batch.edges, *waiting, *(carried or ())]
        referenced = {end for key in resolving for end in (key[0], key[2])}
        # Optimistic: items the caches don't know are taken to be new; if one
        # exists after all, the Pod refuses the whole bulk (409) and the
        # writer resolves it again with optimism off for the rest of the run.
        unknown = [
            i
            for i, entry in items.items()
            if (not self.optimistic or entry.update_only) and i not in self.known
        ]
        unknown += [i for i in referenced if i not in items and i not in self.known]
        existing = await self._lookup(unknown, with_edges=False) if unknown else {}

        creating: set[str] = set()
        for item_id, entry in items.items():
            self._plan_item(plan, item_id, entry, existing.get(item_id), creating)

        def exists(item_id: str) -> bool:
            return item_id in creating or item_id in existing or item_id in self.known

        candidates = list(batch.edges)
        if carried:
            # Resolved again after a refusal: the Pod is asked about these too.
            candidates += carried
        for item_id in items:
            if item_id in self.waiting and exists(item_id):
                candidates.extend(sorted(self.waiting.pop(item_id)))
        await self._plan_edges(plan, candidates, exists, creating)
        for key in self._recreate:
            self._store_pending(plan, key)
        self._recreate.clear()
        if plan.pending_added:
            await self._drop_stored_pending(plan)
        if carried is None:
            carried = self._take_held(batch.seq)
            if self.optimistic and self.in_flight:
                self._defer_edges(plan, creating)
            plan.create_edges += carried
        plan.carried = carried
        plan.defers = bool(self.deferred)

        touched = [key[0] for key in plan.create_edges] + [key[2] for key in plan.create_edges]
        touched += [update["id"] for update in plan.update_items]
        touched += plan.delete_items
        plan.depends_on = max(
            (self.in_flight.get(i, 0) for i in touched if i not in creating), default=0
        )
        for item_id in creating:
            self.in_flight[item_id] = plan.seq
        for data in plan.create_items:
            self.in_flight.setdefault(data["id"], plan.seq)
        return plan

    def _take_held(self, seq: int) -> list[EdgeKey]:
        """The held edges plan ``seq`` carries: those now free to go, and the overdue."""
        in_flight = self.in_flight
        taken: list[EdgeKey] = []
        still: list[tuple[EdgeKey, int]] = []
        for key, origin in self.deferred:
            if origin <= seq - HOLD_PLANS or not (key[0] in in_flight or key[2] in in_flight):
                taken.append(key)
            else:
                still.append((key, origin))
        self.deferred = still
        return taken

    def _defer_edges(self, plan: Plan, creating: set[str]) -> None:
        """Hold back the edges that would make this plan wait for an acknowledgement.

        Edges that settle a stored PendingEdge stay: their bulk deletes it.
        """
        in_flight = self.in_flight
        settling = set(plan.pending_resolved)
        kept: list[EdgeKey] = []
        for key in plan.create_edges:
            source, _, target = key
            if key not in settling and (
                (source in in_flight and source not in creating)
                or (target in in_flight and target not in creating)
            ):
                self.deferred.append((key, plan.seq))
            else:
                kept.append(key)
        plan.create_edges = kept

    async def _plan_edges(
        self,
        plan: Plan,
        candidates: list[EdgeKey],
        exists: Callable[[str], bool],
        creating: set[str],
    ) -> None:
        """Create what can be created, keep the rest pending, skip what exists."""
        to_check: list[EdgeKey] = []
        seen: set[EdgeKey] = set()
        for key in candidates:
            if key in seen:
                continue
            seen.add(key)
            source, _, target = key
            # Consulted even for new sources: when a refused plan is resolved
            # again, edges that later plans already took over are known here.
            digest = key_digest(key)
            if self.edges_known.has_digest(digest):
                continue
            source_new = source in creating
            if not (source_new or exists(source)):
                self._wait(plan, key, source)
                continue
            if not exists(target):
                self._wait(plan, key, target)
                continue
            if key in self.pending_keys:
                self.pending_changed = True
                self.pending_keys.discard(key)
                plan.pending_resolved.append(key)
                plan.delete_items.append(pending_edge_id(key))
            # An item this run created has no edges but the ones it planned
            # (all in edges_known): no need to ask the Pod.  Only while
            # optimistic: after a conflict, the Pod is asked about everything.
            if source_new or (self.optimistic and self._created_here(source)):
                self._plan_edge(plan, key, digest)
            else:
                to_check.append(key)
        if not to_check:
            return
        sources = sorted({key[0] for key in to_check})
        with_edges = await self._lookup(sources, with_edges=True)
        present = {
            (src, edge.get("_edge"), (edge.get("_item") or {}).get("id"))
            for src, item in with_edges.items()
            for edge in item.get("[[edges]]", [])
        }
        for key in to_check:
            if key in present:
                self.edges_known.put(key, None)
            else:
                self._plan_edge(plan, key)

    async def _drop_stored_pending(self, plan: Plan) -> None:
        """Don't create PendingEdge items the Pod has (a resent bulk may have stored them)."""
        ids = {pending_edge_id(key) for key in plan.pending_added}
        stored = await self._lookup(sorted(ids), with_edges=False)
        if stored:
            plan.create_items = [item for item in plan.create_items if item["id"] not in stored]

    def _wait(self, plan: Plan, key: EdgeKey, missing: str) -> None:
        self.waiting.setdefault(missing, set()).add(key)
        if key in self.pending_keys:
            return
        self.pending_keys.add(key)
        self._store_pending(plan, key)

    def _store_pending(self, plan: Plan, key: EdgeKey) -> None:
        self.pending_changed = True
        plan.pending_added.append(key)
        pending = PendingEdge(edgeSource=key[0], edgeName=key[1], edgeTarget=key[2])
        plan.create_items.append(pending.to_pod())

    def _plan_item(
        self,
        plan: Plan,
        item_id: str,
        entry: BatchItem,
        in_pod: dict[str, Any] | None,
        creating: set[str],
    ) -> None:
        digest = mutable_digest(entry.mutable)
        payload = plan.batch.files.get(item_id)
        created_here = False
        counted = False
        if in_pod is not None:
            known_digest = mutable_digest({k: in_pod.get(k) for k in entry.mutable})
            if (
                payload is not None
                and not in_pod.get("keystr")
                and item_id not in self.stored_files
            ):
                plan.uploads.append(payload)
        else:
            key = key_digest(item_id)
            cached = self.known.get_digest(key)
            if cached is None:
                if entry.update_only:
                    return
                plan.create_items.append(entry.data)
                plan.created += 1
                creating.add(item_id)
                self.known.put_digest(key, self._shared(CREATED_HERE + digest))
                if payload is not None:
                    plan.uploads.append(payload)
                return
            if cached.startswith(NOT_COUNTED):
                known_digest = cached.removeprefix(NOT_COUNTED)
            else:
                # Seen earlier in this run, and counted then: counting every
                # sighting made the summary depend on how records fell into
                # batches (one sighting per batch), and so on timing.
                counted = True
                known_digest = cached.removeprefix(CREATED_HERE)
                created_here = cached.startswith(CREATED_HERE)
        if entry.mutable and digest != known_digest:
            plan.update_items.append({"id": item_id, **entry.mutable})
            plan.updated += 1
        elif not counted:
            plan.unchanged += 1
            plan.counted.append((item_id, known_digest))
        self.known.put(item_id, self._shared(CREATED_HERE + digest if created_here else digest))

    def know(self, item_id: str, mutable: dict[str, Any]) -> None:
        """An item in the Pod before the first plan, with these mutable values.

        The owner's Account is made before any record is read: unknown, it
        would cost a refused bulk (and a checked run), and a dry run, which
        does not make it, would count it as created.
        """
        self.known.put(item_id, self._shared(NOT_COUNTED + mutable_digest(mutable)))

    def _shared(self, value: str) -> str:
        """One string object per distinct digest (bounded).

        Most items share a few mutable values (no flags, "seen"), so ``known``
        then holds no string of its own per item: ~1 MiB per 20,000 messages.
        """
        shared = self._strings.setdefault(value, value)
        if len(self._strings) > _SHARED_STRINGS:
            self._strings.clear()
        return shared

    def _created_here(self, item_id: str) -> bool:
        cached = self.known.get(item_id)
        return cached is not None and cached.startswith(CREATED_HERE)

    def _plan_edge(self, plan: Plan, key: EdgeKey, digest: bytes | None = None) -> None:
        plan.create_edges.append(key)
        self.edges_known.put_digest(key_digest(key) if digest is None else digest, None)

    # -- outcome -------------------------------------------------------------

    def acknowledged(self, plan: Plan) -> None:
        for data in plan.create_items:
            if self.in_flight.get(data["id"]) == plan.seq:
                del self.in_flight[data["id"]]
        for payload in plan.uploads:
            self.stored_files.put(payload.file.ensure_id(), None)

    def forget(self, plan: Plan) -> None:
        """Undo a plan's effect on the caches after its bulk was refused."""
        for data in plan.create_items:
            self.known.discard(data["id"])
            if self.in_flight.get(data["id"]) == plan.seq:
                del self.in_flight[data["id"]]
        for update in plan.update_items:
            self.known.discard(update["id"])
        for item_id, digest in plan.counted:
            self.known.put(item_id, self._shared(NOT_COUNTED + digest))
        for payload in plan.uploads:
            # A File item found in the Pod without content: known, it would
            # be planned without its upload, and nothing would upload it later.
            self.known.discard(payload.file.ensure_id())
        for key in plan.create_edges:
            self.edges_known.discard(key)
        for key in plan.pending_added:
            if key in self.pending_keys:
                # Not stored after all; resolving the batch again decides anew.
                self.pending_keys.discard(key)
                for end in (key[0], key[2]):
                    waiting = self.waiting.get(end)
                    if waiting is not None:
                        waiting.discard(key)
            else:
                # A later plan already resolved it and deletes the PendingEdge
                # item after this one: the resent plan must still store it.
                self._recreate.append(key)
        for key in plan.pending_resolved:
            # Settled against the edge found in the Pod, it is known without
            # being in create_edges: kept known, the resent plan would skip it
            # before seeing it pending again, and keep its PendingEdge.
            self.edges_known.discard(key)
            self._file_pending(key)

    def _file_pending(self, key: EdgeKey) -> None:
        """A stored pending edge, waiting for either end: which one is missing is not known.

        Filed under its target only, an edge whose source was the missing
        end stayed pending when a refused plan's batch was resolved again
        (its source, in that batch, found nothing waiting for it).  A stale
        entry under the end that exists costs one more look when that item
        comes again: the edge is then known, or asked about.
        """
        self.pending_keys.add(key)
        for end in (key[0], key[2]):
            self.waiting.setdefault(end, set()).add(key)
