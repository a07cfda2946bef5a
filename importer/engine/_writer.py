"""Sends plans as atomic bulks: several in flight, in dependency order.

Rules that keep a crash harmless:

* a bulk whose edges (or updates) touch items created by an earlier bulk is
  sent only after that bulk is acknowledged (the resolver holds most such
  edges back for a later bulk, so that this one need not wait);
* a checkpoint is attached to a bulk only when every earlier bulk is
  acknowledged and every upload they carried has finished; until then it is
  carried forward (to a later bulk, or a bulk of its own once all is quiet).
  It therefore commits together with, or after, all the data it covers —
  including held-back edges: while any are held, a plan's checkpoint also
  covers the ``HOLD_PLANS`` plans after it, one of which carries them.

At most one unacknowledged bulk carries a checkpoint: two could commit in
either order (the Pod takes concurrent requests in no set order) and leave
the older checkpoint on the Account.

A checkpoint goes in a bulk of its own only if no plan takes it within
``checkpoint_delay`` seconds: with a steady stream the next bulk carries it,
and the Pod is spared a transaction (and an fsync) per bulk.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..model import FilePayload
from ..pod._upload import FileChangedError, hash_bytes, hash_file
from ..pod.errors import PodBadRequest, PodConflict, PodError
from ._batch import SkipCallback
from ._resolve import HOLD_PLANS, Plan, Resolver
from ._skipped_uploads import SkippedUploads
from ._stats import RunStats

log = logging.getLogger("importer.engine")

_MAX_CONFLICT_RETRIES = 3


def _lost_content(payload: FilePayload, exc: Exception) -> str | None:
    """Why ``payload`` cannot be uploaded at all, or None if ``exc`` is not its fault.

    A file given by path can vanish or be rewritten between the connector
    hashing it and the upload reading it; bytes can come with a wrong sha256.
    Only then is the upload skipped: a Pod failure with sound content
    (``None`` here) still fails the run.  Runs in a worker thread.
    """
    content = payload.content
    if isinstance(content, Path):
        try:
            found = hash_file(content)
        except OSError as err:
            return f"file could not be read for upload: {err.strerror or err}"
        if found != payload.sha256.lower():
            return "file changed after it was read: its content no longer matches its sha256"
        return None
    if (
        isinstance(content, bytes)
        and isinstance(exc, PodBadRequest)
        and hash_bytes(content) != payload.sha256.lower()
    ):
        return "content does not match the sha256 of its File item"
    return None


def _payload_ref(payload: FilePayload) -> str:
    """The path as valid text (bytes of a name that are not UTF-8 as ``\\xNN``), or the id."""
    if isinstance(payload.content, Path):
        return os.fsencode(payload.content).decode("utf-8", "backslashreplace")
    return f"File {payload.file.ensure_id()}"


@dataclass(slots=True)
class _Carried:
    state_json: str
    covers: int
    """The checkpoint covers everything in bulks up to and including this seq."""


class Writer:
    def __init__(
        self,
        client: Any,
        resolver: Resolver,
        stats: RunStats,
        tg: TaskGroup,
        *,
        account_id: str,
        max_in_flight: int,
        upload_concurrency: int,
        checkpoint_delay: float = 0.25,
        dry_run: bool = False,
        skip: SkipCallback | None = None,
        skipped_uploads: SkippedUploads | None = None,
    ) -> None:
        self.client = client
        self.skip = skip
        self.skipped_uploads = skipped_uploads or SkippedUploads({})
        self.resolver = resolver
        self.stats = stats
        self.tg = tg
        self.account_id = account_id
        self.dry_run = dry_run
        self.checkpoint_delay = checkpoint_delay
        self._delayed: anyio.CancelScope | None = None
        self.resolve_lock = anyio.Lock()
        self._slots = anyio.Semaphore(max_in_flight)
        self._uploads = anyio.Semaphore(upload_concurrency)
        self._acked: dict[int, anyio.Event] = {}
        self._completed: set[int] = set()
        self._watermark = 0
        """Every bulk with seq <= watermark is acknowledged with its uploads done."""
        self._submitted: list[int] = []
        self._carried: list[_Carried] = []
        self._idle = anyio.Event()
        self._in_flight = 0
        self._last_seq = 0
        self.checkpoints_written = 0
        self._checkpoint_unacked = False
        """A bulk carrying a checkpoint is on its way to the Pod."""

    async def resolve(self, batch: Any) -> Plan:
        async with self.resolve_lock:
            plan: Plan = await self.resolver.resolve(batch)
            return plan

    async def submit(self, plan: Plan) -> None:
        """Queue ``plan``; returns once it is in flight (backpressure)."""
        self._last_seq = max(self._last_seq, plan.seq)
        if plan.checkpoint is not None:
            covers = plan.seq + HOLD_PLANS if plan.defers else plan.seq
            self._carried.append(_Carried(plan.checkpoint, covers))
        if not plan.has_writes() and not plan.uploads:
            self._count(plan)
            self._mark_acked(plan.seq)
            self._mark_completed(plan.seq)
            self._flush_checkpoint_soon()
            return
        if plan.depends_on:
            await self._wait_acked(plan.depends_on)
        await self._slots.acquire()
        self._acked.setdefault(plan.seq, anyio.Event())
        self._submitted.append(plan.seq)
        self._in_flight += 1
        self.tg.start_soon(self._run_plan, plan)

    def plans_owed(self) -> bool:
        """Whether more plans are needed for what was submitted to be all in.

        True while edges are held back, or while a checkpoint covers plans
        not made yet (those after a plan that held edges back): once the
        source pauses or ends, plans of no records carry the one and let the
        other become due.
        """
        return bool(self.resolver.deferred) or any(
            carried.covers > self._last_seq for carried in self._carried
        )

    async def finish(self) -> None:
        """Wait for everything in flight, then write the last checkpoint."""
        while self._in_flight:
            self._idle = anyio.Event()
            await self._idle.wait()
        if self._delayed is not None:
            self._delayed.cancel()
            self._delayed = None
        await self._maybe_flush_checkpoint()

    # -- internals -----------------------------------------------------------

    def _take_checkpoint(self) -> str | None:
        """The checkpoint for the bulk about to be sent, unless one is unacknowledged.

        The caller calls :meth:`_checkpoint_done` once that bulk is answered.
        """
        if self.dry_run or self._checkpoint_unacked:
            return None
        state = self._eligible_checkpoint()
        self._checkpoint_unacked = state is not None
        return state

    def _checkpoint_done(self, state: str | None) -> None:
        if state is not None:
            self._checkpoint_unacked = False

    def _eligible_checkpoint(self) -> str | None:
        """The newest checkpoint whose data is all in; it supersedes every older one.

        "Newest" is by order of the plans (``_carried`` is in that order), not
        by ``covers``: a checkpoint whose plan held edges back covers two more
        plans, so a newer one can be due first — and then makes it obsolete.
        Newer checkpoints stay carried: with a steady stream the newest one
        always belongs to a bulk still in flight, so keeping only that one
        would delay every checkpoint to the end of the run.
        """
        due = [i for i, c in enumerate(self._carried) if c.covers <= self._watermark]
        if not due:
            return None
        newest = self._carried[due[-1]]
        del self._carried[: due[-1] + 1]
        return newest.state_json

    async def _wait_acked(self, seq: int) -> None:
        for earlier in list(self._submitted):
            event = self._acked.get(earlier)  # gone: already completed
            if earlier <= seq and event is not None:
                await event.wait()

    def _mark_acked(self, seq: int) -> None:
        self._acked.setdefault(seq, anyio.Event()).set()

    def _mark_completed(self, seq: int) -> None:
        self._completed.add(seq)
        # The watermark only advances over seqs that are all completed; seqs
        # with no writes are marked completed too, so there are no gaps.
        while self._watermark + 1 in self._completed:
            self._watermark += 1
            self._completed.discard(self._watermark)
            self._acked.pop(self._watermark, None)
            if self._watermark in self._submitted:
                self._submitted.remove(self._watermark)

    def _flush_checkpoint_soon(self) -> None:
        """Send the eligible checkpoint alone after a while, unless a plan takes it first."""
        if self._delayed is not None or self.dry_run or not self._carried:
            return
        scope = anyio.CancelScope()
        self._delayed = scope
        self.tg.start_soon(self._delayed_flush, scope)

    async def _delayed_flush(self, scope: anyio.CancelScope) -> None:
        with scope:
            await anyio.sleep(self.checkpoint_delay)
        if self._delayed is scope:
            self._delayed = None
        if not scope.cancel_called:
            await self._maybe_flush_checkpoint()

    async def _maybe_flush_checkpoint(self) -> None:
        if self._in_flight or self.dry_run:
            return
        state = self._take_checkpoint()
        if state is None:
            return
        try:
            await self._send_bulk({"updateItems": [self._checkpoint_update(state)]})
            self.skipped_uploads.sent()
        finally:
            self._checkpoint_done(state)
        self.checkpoints_written += 1

    def _checkpoint_update(self, state: str) -> dict[str, Any]:
        return {"id": self.account_id, "importerState": self.skipped_uploads.importer_state(state)}

    async def _run_plan(self, plan: Plan) -> None:
        try:
            plan = await self._send_plan(plan)
            self._mark_acked(plan.seq)
            self.resolver.acknowledged(plan)
            self._count(plan)
            self.stats.bulks += 1
            if self.dry_run:
                self.stats.files_uploaded += len(plan.uploads)  # what would be uploaded
            elif plan.uploads:
                async with anyio.create_task_group() as uploads:
                    for payload in plan.uploads:
                        uploads.start_soon(self._upload, payload)
            self._mark_completed(plan.seq)
        finally:
            self._in_flight -= 1
            self._slots.release()
            if not self._in_flight:
                self._idle.set()
        self._flush_checkpoint_soon()

    def _count(self, plan: Plan) -> None:
        self.stats.created += plan.created
        self.stats.updated += plan.updated
        self.stats.unchanged += plan.unchanged
        self.stats.edges_created += len(plan.create_edges)

    async def _send_plan(self, plan: Plan) -> Plan:
        for attempt in range(_MAX_CONFLICT_RETRIES + 1):
            body: dict[str, Any] = {}
            if plan.create_items:
                body["createItems"] = plan.create_items
            updates = list(plan.update_items)
            state = self._take_checkpoint()
            if state is not None:
                updates.append(self._checkpoint_update(state))
            if updates:
                body["updateItems"] = updates
            if plan.delete_items:
                body["deleteItems"] = plan.delete_items
            if plan.create_edges:
                body["createEdges"] = [
                    {"_source": s, "_name": n, "_target": t} for s, n, t in plan.create_edges
                ]
            try:
                try:
                    if body and not self.dry_run:
                        await self._send_bulk(body)
                finally:
                    self._checkpoint_done(state)
                if state is not None:
                    self.skipped_uploads.sent()
                    self.checkpoints_written += 1
                return plan
            except PodConflict:
                # The bulk was refused whole (or an earlier try of it was
                # applied and its answer lost): ask the Pod again and resend
                # only what is still missing.
                if state is not None:
                    # Older than every checkpoint still carried: first in line.
                    self._carried.insert(0, _Carried(state, self._watermark))
                if attempt == _MAX_CONFLICT_RETRIES:
                    raise
                # The designed path of every re-scan, not a problem: DEBUG only.
                log.debug(
                    "bulk %d: some records are already in the Pod (409); "
                    "checking each batch from now on",
                    plan.seq,
                )
                async with self.resolve_lock:
                    self.resolver.optimistic = False
                    self.resolver.forget(plan)
                    plan = await self.resolver.resolve(plan.batch, plan.carried)
        raise AssertionError("unreachable")

    async def _send_bulk(self, body: dict[str, Any]) -> None:
        await self.client.bulk(
            create_items=body.get("createItems"),
            update_items=body.get("updateItems"),
            delete_items=body.get("deleteItems"),
            create_edges=body.get("createEdges"),
        )

    async def _upload(self, payload: FilePayload) -> None:
        for attempt in range(2):
            try:
                async with self._uploads:
                    stored = await self.client.upload_file(payload.content, payload.sha256)
            except (OSError, PodError) as exc:
                # The File item is in the Pod already; without content it is
                # uploaded by a later run that yields its payload again.  A
                # path is kept for the next run to read again.
                reason = await anyio.to_thread.run_sync(_lost_content, payload, exc)
                if reason is None and isinstance(exc, FileChangedError) and not attempt:
                    continue  # written over with the same bytes while it was sent
                if reason is None:
                    raise
                ref = _payload_ref(payload)
                if isinstance(payload.content, Path):
                    self.skipped_uploads.skipped(ref, payload.sha256.lower())
                if self.skip is not None:
                    self.skip(ref, reason)
                else:
                    log.warning("upload skipped %s: %s", ref, reason)
                return
            if isinstance(payload.content, Path):
                self.skipped_uploads.uploaded(_payload_ref(payload))
            if stored:
                self.stats.files_uploaded += 1
            return
