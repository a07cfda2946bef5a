"""One import run: Account and run record, then source -> batches -> Pod."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel

from .._credentials import BINDING, CREDENTIALS, grant, place_of_config
from ..connector import Connector
from ..context import RunContext, SkippedRecord
from ..model import Item
from ..pod.errors import PodConflict, PodError
from ..schema import CENTRAL_TYPES, Account, Importer, ImporterRun, PendingEdge
from ._batch import Batch, BatchBuilder
from ._lock import RunLock
from ._resolve import Resolver
from ._skipped_uploads import SkippedUploads
from ._source import Chunk, pump
from ._stats import RunStats
from ._writer import Writer

log = logging.getLogger("importer.engine")

_SKIP_LOG_LIMIT = 200
INTERRUPTED_RECORD_SECONDS = 3.0
"""How long a cancelled run may take to mark its run item ``interrupted``: short,
because the Pod may be what hangs (the next run marks it then), and below the
grace a service manager or the local Pod gives after SIGTERM."""


@dataclass(frozen=True)
class EngineSettings:
    """Batching and concurrency; defaults chosen by ``benchmarks/engine.py``."""

    batch_records: int = 1000
    batch_bytes: int = 8 * 2**20
    flush_interval: float = 1.0
    max_in_flight: int = 2
    upload_concurrency: int = 4
    cache_size: int = 50_000
    source_chunk: int = 256
    source_buffer: int = 8
    run_update_interval: float = 5.0
    checkpoint_delay: float = 0.25
    """A checkpoint no bulk has taken along after this long is written on its own."""


class ImportFailed(Exception):
    """The run could not finish; the message says why (never a secret)."""


@dataclass
class RunResult:
    account_name: str
    account_id: str
    run_id: str | None
    stats: RunStats
    skipped: list[SkippedRecord] = field(default_factory=list)
    skip_count: int = 0
    status: str = "done"
    error: str | None = None
    retries: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        line = f"{self.account_name}: {verb} {self.stats.summary()}"
        if self.skip_count:
            line += f", {self.skip_count} skipped"
        if self.error:
            line += f" — failed: {self.error}"
        return line


ProgressCallback = Callable[[RunStats, RunContext[Any]], None]


def _first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that made a task group fail (cancellations are its echoes)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if not isinstance(exc, anyio.get_cancelled_exc_class()):
            return exc
    return leaves[0]


async def create_missing(
    client: Any,
    items: list[dict[str, Any]],
    edges: list[dict[str, str]],
    *,
    delete_items: list[str] | None = None,
    tries: int = 3,
) -> None:
    """Create ``items`` then ``edges`` in one bulk, minus what the Pod already has.

    A bulk retried after its answer was lost conflicts (409) although it was
    applied; asking the Pod what exists and sending only the rest makes these
    set-up writes idempotent.  ``delete_items`` go in the same bulk, resent
    as they are (deleting a deleted item changes nothing).
    """
    for attempt in range(tries):
        if not items and not edges and not delete_items:
            return
        try:
            await client.bulk(
                create_items=items or None,
                delete_items=delete_items or None,
                create_edges=edges or None,
            )
            return
        except PodConflict:
            if attempt == tries - 1:
                raise
        sources = sorted({edge["_source"] for edge in edges})
        found = await client.bulk(
            search=[{"id": item["id"]} for item in items]
            + [{"id": source, "[[edges]]": {}} for source in sources]
        )
        results = found.search_results
        items = [item for item, hits in zip(items, results, strict=False) if not hits]
        present = {
            (hit["id"], edge.get("_edge"), (edge.get("_item") or {}).get("id"))
            for hits in results[len(results) - len(sources) :]
            for hit in hits
            for edge in hit.get("[[edges]]", [])
        }
        edges = [e for e in edges if (e["_source"], e["_name"], e["_target"]) not in present]


def _describe(exc: BaseException) -> str:
    """A connector's own errors speak for themselves; builtin ones get their name."""
    text = str(exc).strip()
    if type(exc).__module__ == "builtins" or not text:
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _declare_schema(client: Any, types: list[type[Item]]) -> None:
    nodes = {t.item_type: {"properties": t.pod_schema()} for t in types}
    await client.add_schema(nodes)


def _type_name(item_type: type[Item]) -> str:
    return item_type.item_type


def _check_property_types(types: list[type[Item]]) -> None:
    """One property name has one type in the Pod: a clash is named here, both sides shown
    (the Pod's refusal says neither the connector's field nor the type it clashes with)."""
    first: dict[str, tuple[str, str]] = {}  # lowercased name -> ("Type.name", value type)
    for item_type in types:
        for name, value_type in item_type.pod_schema().items():
            here = f"{item_type.item_type}.{name}"
            there, known = first.setdefault(name.lower(), (here, value_type))
            if known != value_type:
                raise TypeError(
                    f"{here} is {value_type}, but {there} is {known}: a property name has one "
                    f"type across all item types (compared case-insensitively); rename {here}"
                )


async def run_import(
    client: Any,
    connector: Connector[Any],
    options: BaseModel,
    account_name: str,
    *,
    lock_dir: Path,
    settings: EngineSettings | None = None,
    full_refresh: bool = False,
    limit: int | None = None,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
    logger: logging.Logger | None = None,
    account: Account | None = None,
    importer_id: str | None = None,
    run_id: str | None = None,
    cancel_reason: Callable[[], str | None] | None = None,
) -> RunResult:
    """Import one account: everything new in the source lands in the Pod once.

    By default the Account (from ``connector.account``), its Importer and a
    new ImporterRun are created as needed.  A Pod that starts the importer
    as a plugin passes the ``account`` and ``importer_id`` it holds and the
    ``run_id`` of the run item that started it: those are used as they are.

    A cancelled run marks its run item ``interrupted`` before the
    cancellation goes on; ``cancel_reason`` says why (the command line
    knows which signal stopped it), recorded as the run's error.
    """
    settings = settings or EngineSettings()
    if account is None:
        account = connector.account(options, account_name)
        account.isMe = True if account.isMe is None else account.isMe
    account_id = account.ensure_id()
    with RunLock(lock_dir, f"{connector.name}-{account_id}"):
        run = _Run(
            client,
            connector,
            options,
            account_name,
            account,
            settings=settings,
            full_refresh=full_refresh,
            limit=limit,
            dry_run=dry_run,
            on_progress=on_progress,
            logger=logger or logging.getLogger(f"importer.connector.{connector.name}"),
            importer_id=importer_id,
            run_id=run_id,
            cancel_reason=cancel_reason,
        )
        return await run.execute()


class _Run:
    def __init__(
        self,
        client: Any,
        connector: Connector[Any],
        options: BaseModel,
        account_name: str,
        account: Account,
        *,
        settings: EngineSettings,
        full_refresh: bool,
        limit: int | None,
        dry_run: bool,
        on_progress: ProgressCallback | None,
        logger: logging.Logger,
        importer_id: str | None = None,
        run_id: str | None = None,
        cancel_reason: Callable[[], str | None] | None = None,
    ) -> None:
        self.client = client
        self.connector = connector
        self.options = options
        self.account_name = account_name
        self.account = account
        self.account_id = account.ensure_id()
        self.settings = settings
        self.full_refresh = full_refresh
        self.limit = limit
        self.dry_run = dry_run
        self.on_progress = on_progress
        self.logger = logger
        self.stats = RunStats()
        self.run_id: str | None = run_id
        self.given_run = run_id is not None
        self.given_importer = importer_id
        self.importer_config: Any = None
        """The ``config`` of the Account's Importer item, when it has one."""
        self.place = connector.credentials_for(options)
        self.may_store_credentials = True
        self.declared: set[type[Item]] = set()
        self.cancel_reason = cancel_reason

    # -- set-up --------------------------------------------------------------

    async def _ensure_account(self) -> dict[str, Any]:
        """Create Account and Importer (linked) if missing; return the Account."""
        if self.given_importer is not None:
            self.importer_id = self.given_importer
            found_account = await self.client.get_item(self.account_id)
            if found_account is None:
                raise ImportFailed(f"account item {self.account_id} is not in the Pod")
            return dict(found_account)
        importer = Importer(
            name=f"{self.connector.name}:{self.account_name}",
            connector=self.connector.name,
            externalId=self.account_id,
        )
        importer_id = importer.ensure_id()
        found = await self.client.bulk(search=[{"id": self.account_id}, {"id": importer_id}])
        acc_found, imp_found = found.search_results
        if imp_found and not imp_found[0].get("deleted"):
            self.importer_config = imp_found[0].get("config")
        create: list[dict[str, Any]] = []
        if not acc_found:
            create.append(self.account.to_pod())
        if not imp_found:
            create.append(importer.to_pod())
        if create and not self.dry_run:
            edges = []
            if not imp_found:
                edges.append(
                    {"_source": importer_id, "_name": "account", "_target": self.account_id}
                )
            await create_missing(self.client, create, edges)
        self.importer_id = importer_id
        return acc_found[0] if acc_found else self.account.to_pod()

    async def _close_interrupted_runs(self) -> None:
        """Runs still 'running' while we hold the lock died mid-way: say so."""
        edges = await self.client.get_edges(
            self.importer_id, direction="Incoming", expand_items=True
        )
        stale = [
            edge["item"]["id"]
            for edge in edges
            if edge.get("name") == "importer"
            and edge["item"].get("status") == "running"
            and edge["item"]["id"] != self.run_id
        ]
        if stale:
            await self.client.bulk(
                update_items=[
                    {"id": run_id, "status": "interrupted", "error": "the process ended mid-run"}
                    for run_id in stale
                ]
            )

    async def _start_run_item(self) -> None:
        if self.dry_run:
            return
        await self._close_interrupted_runs()
        if self.given_run:
            await self.client.update_item(
                {"id": self.run_id, "status": "running", "startDate": _now_ms(), "progress": 0.0}
            )
            return
        run = ImporterRun(
            status="running",
            connector=self.connector.name,
            startDate=_now_ms(),
            progress=0.0,
        )
        self.run_id = run.ensure_id()
        await create_missing(
            self.client,
            [run.to_pod()],
            [{"_source": self.run_id, "_name": "importer", "_target": self.importer_id}],
        )

    def _run_update(self, ctx: RunContext[Any]) -> dict[str, Any]:
        update: dict[str, Any] = {
            "id": self.run_id,
            "createdCount": self.stats.created,
            "updatedCount": self.stats.updated,
            "unchangedCount": self.stats.unchanged,
            "skippedCount": ctx.skip_count,
            "retryCount": int(getattr(self.client, "retry_count", 0)),
        }
        fraction = ctx.progress_fraction()
        if fraction is not None:
            update["progress"] = fraction
        return update

    async def _load_pending(self, resolver: Resolver) -> None:
        pages = self.client.search_pages({"type": PendingEdge.item_type, "deleted": False})
        async for page in pages:
            resolver.load_pending(page)

    async def _settle_pending(self, resolver: Resolver) -> None:
        """Create the loaded pending edges whose ends both exist now; drop their items."""
        settle = await resolver.settle_pending()
        if settle.has_writes() and not self.dry_run:
            # One bulk: a PendingEdge item goes only together with its edge.
            await create_missing(
                self.client,
                [],
                [{"_source": s, "_name": n, "_target": t} for s, n, t in settle.create_edges],
                delete_items=settle.delete_items,
            )
            self.stats.edges_created += len(settle.create_edges)

    async def _sweep_pending(self) -> int:
        """Settle what the Pod holds as pending once more, at the end of a run.

        Bulks refused and resent after an interrupted run (its items landed,
        its checkpoint did not) can leave a PendingEdge whose edge another
        bulk of this run created after all; read afresh from the Pod, such an
        item goes now instead of at the start of the next run.  Called only
        when this run stored or settled pending edges (a run that found
        nothing new pays nothing); returns how many remain.
        """
        resolver = Resolver(self._bulk_search, cache_size=self.settings.cache_size)
        await self._load_pending(resolver)
        await self._settle_pending(resolver)
        return resolver.pending_count()

    # -- the run -------------------------------------------------------------

    async def execute(self) -> RunResult:
        _check_property_types([*CENTRAL_TYPES, *self.connector.item_types])
        await _declare_schema(self.client, [*CENTRAL_TYPES, *self.connector.item_types])
        self.declared.update(CENTRAL_TYPES)
        self.declared.update(self.connector.item_types)
        account_item = await self._credentials(await self._ensure_account())
        state_json = account_item.get("importerState") or "{}"
        try:
            state = json.loads(state_json)
        except ValueError:
            self.logger.warning(
                "account %s: unreadable checkpoint state, starting over", self.account_name
            )
            state = {}
        skipped_uploads = SkippedUploads(state)
        ctx: RunContext[Any] = RunContext(
            options=self.options,
            account=Account.model_validate(
                {k: v for k, v in account_item.items() if k in Account.model_fields}
            ),
            account_name=self.account_name,
            connector_name=self.connector.name,
            checkpoints=dict(state.get(self.connector.name, {})),
            files_to_read_again=dict(skipped_uploads.earlier),
            full_refresh=self.full_refresh,
            limit=self.limit,
            log=self.logger,
            _last_added=self._last_added,
            _store_account=self._store_account,
        )
        try:
            await self._start_run_item()
            error = await self._outcome(ctx, state, skipped_uploads)
            await self._finish_run_item(ctx, error)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._record_interruption(ctx)
            raise
        return RunResult(
            account_name=self.account_name,
            account_id=self.account_id,
            run_id=self.run_id,
            stats=self.stats,
            skipped=ctx.skipped,
            skip_count=ctx.skip_count,
            status="failed" if error else "done",
            error=error,
            retries=int(getattr(self.client, "retry_count", 0)),
            dry_run=self.dry_run,
        )

    async def _outcome(
        self, ctx: RunContext[Any], state: dict[str, Any], skipped_uploads: SkippedUploads
    ) -> str | None:
        """Run the pipeline; the error that ended it, recorded on the run (None: done)."""
        try:
            try:
                await self._pipeline(ctx, state, skipped_uploads)
            except BaseExceptionGroup as group:
                raise _first_cause(group) from None
        except PodError as exc:
            return str(exc)
        except ImportFailed as exc:
            return str(exc)
        except Exception as exc:
            # The connector's own failure (bad credentials, unreachable
            # source): recorded on the run, reported in one line.
            self.logger.debug("run failed", exc_info=True)
            return _describe(exc)
        return None

    async def _credentials(self, account_item: dict[str, Any]) -> dict[str, Any]:
        """The Account with only the credentials stored for where this run sends them."""
        if self.given_importer is not None:
            legacy_place = self.place  # the options are that Importer's config
        else:
            legacy_place = place_of_config(self.connector, self.importer_config)
        granted = grant(account_item, self.place, legacy_place)
        self.may_store_credentials = granted.granted
        if granted.record is not None and not self.dry_run:
            await self.client.update_item({"id": self.account_id, BINDING: granted.record})
        return granted.account

    async def _store_account(self, props: dict[str, Any]) -> None:
        """A connector keeps refreshed tokens on its Account (``ctx.store_account``).

        They are bound to where this run sends them; an Account that keeps
        another place's credentials is left alone (one set per Account item).
        """
        if self.place is not None and any(key in props for key in CREDENTIALS):
            if not self.may_store_credentials:
                raise ImportFailed(
                    f"account {self.account_name}: the Account item keeps the credentials of "
                    "another account of this address (one set per Account), so these were not "
                    "stored; remove that account first ('importer account remove')"
                )
            props = {**props, BINDING: self.place}
        if not self.dry_run:
            await self.client.update_item({"id": self.account_id, **props})

    async def _last_added(self, item_type: str, filters: dict[str, Any]) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.client.last_added(item_type, **filters)
        return result

    def _end_update(self, ctx: RunContext[Any], status: str) -> dict[str, Any]:
        update = self._run_update(ctx)
        update.update(
            status=status,
            endDate=_now_ms(),
            skipLog=json.dumps(
                [{"ref": s.ref, "reason": s.reason} for s in ctx.skipped[:_SKIP_LOG_LIMIT]]
            ),
        )
        return update

    async def _record_interruption(self, ctx: RunContext[Any]) -> None:
        """A cancelled run (Ctrl-C, SIGTERM) says so now, not at the next run.

        Within a short bound: if the Pod does not answer in time the process
        ends anyway, and the next run's sweep marks the run item.  What was
        written stays; the checkpoints let the next run resume.
        """
        if self.run_id is None:
            return
        reason = self.cancel_reason() if self.cancel_reason is not None else None
        update = self._end_update(ctx, "interrupted")
        update["error"] = reason or "the run was cancelled"
        with anyio.move_on_after(INTERRUPTED_RECORD_SECONDS) as scope:
            try:
                await self.client.update_item(update)
            except PodError as exc:
                self.logger.warning("could not record the interruption in the Pod: %s", exc)
        if scope.cancelled_caught:
            self.logger.warning("could not record the interruption in the Pod: no answer in time")

    async def _finish_run_item(self, ctx: RunContext[Any], error: str | None) -> None:
        if self.run_id is None:
            return
        update = self._end_update(ctx, "failed" if error else "done")
        if error:
            update["error"] = error[:2000]
        elif ctx.progress_fraction() is not None:
            update["progress"] = 1.0
        try:
            with anyio.fail_after(30):
                await self.client.update_item(update)
        except (PodError, TimeoutError) as exc:
            self.logger.warning("could not record the run's outcome in the Pod: %s", exc)

    async def _pipeline(
        self, ctx: RunContext[Any], state: dict[str, Any], skipped_uploads: SkippedUploads
    ) -> None:
        # A dry run asks the Pod about every item: with nothing sent, no
        # refused bulk would ever correct an optimistic guess.
        resolver = Resolver(
            self._bulk_search, cache_size=self.settings.cache_size, optimistic=not self.dry_run
        )
        resolver.know(self.account_id, ctx.account.mutable_values())
        await self._load_pending(resolver)
        self.stats.edges_pending = resolver.pending_count()
        builder = BatchBuilder(
            self.connector.name,
            state,
            max_records=self.settings.batch_records,
            max_bytes=self.settings.batch_bytes,
            skip=ctx.skip,
        )
        send, receive = anyio.create_memory_object_stream[Chunk](self.settings.source_buffer)
        async with anyio.create_task_group() as tg:
            writer = Writer(
                self.client,
                resolver,
                self.stats,
                tg,
                account_id=self.account_id,
                max_in_flight=self.settings.max_in_flight,
                upload_concurrency=self.settings.upload_concurrency,
                checkpoint_delay=min(self.settings.checkpoint_delay, self.settings.flush_interval),
                dry_run=self.dry_run,
                skip=ctx.skip,
                skipped_uploads=skipped_uploads,
            )
            await self._settle_pending(resolver)
            source_errors: list[Exception] = []

            async def run_source() -> None:
                # A failing source ends the stream like a finished one, so
                # what it yielded before failing is still written; the
                # failure is raised once that is done.
                try:
                    await pump(self.connector.fetch(ctx), send, self.settings.source_chunk)
                except Exception as exc:
                    source_errors.append(exc)

            tg.start_soon(run_source)
            reporter = anyio.CancelScope()
            tg.start_soon(self._report_progress, ctx, reporter)
            async with receive:
                await self._plan_and_write(receive, builder, writer, ctx)
            await writer.finish()
            reporter.cancel()
        final = skipped_uploads.final_state(complete=not source_errors)
        if final is not None and not self.dry_run:
            await self.client.update_item({"id": self.account_id, "importerState": final})
        if resolver.pending_changed and not (source_errors or self.dry_run):
            self.stats.edges_pending = await self._sweep_pending()
        else:
            self.stats.edges_pending = resolver.pending_count()
        if source_errors:
            raise source_errors[0]

    async def _plan_and_write(
        self,
        receive: Any,
        builder: BatchBuilder,
        writer: Writer,
        ctx: RunContext[Any],
    ) -> None:
        interval = self.settings.flush_interval
        while True:
            deadline = builder.current.started + interval
            chunk: Chunk | None = None
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                try:
                    chunk = await receive.receive()
                except anyio.EndOfStream:
                    break
            if chunk is None:
                if not builder.current.is_empty() or writer.plans_owed():
                    await self._flush(builder.take(), writer)
                else:
                    builder.current.started = time.monotonic()
                continue
            self.stats.records += len(chunk)
            for record in chunk:
                if builder.add(record):
                    await self._flush(builder.take(), writer)
            if self.on_progress is not None:
                self.on_progress(self.stats, ctx)
        if not builder.current.is_empty():
            await self._flush(builder.take(), writer)
        while writer.plans_owed():
            # Edges are still held back, or the last checkpoint covers plans
            # to come: plans of no records carry them (at most HOLD_PLANS).
            await self._flush(builder.take(), writer)

    async def _flush(self, batch: Batch, writer: Writer) -> None:
        await self._declare_new_types(batch)
        plan = await writer.resolve(batch)
        await writer.submit(plan)

    async def _declare_new_types(self, batch: Batch) -> None:
        new = {entry.model for entry in batch.items.values()} - self.declared
        if new:
            _check_property_types(
                sorted(self.declared, key=_type_name) + sorted(new, key=_type_name)
            )
        if new and not self.dry_run:
            await _declare_schema(self.client, sorted(new, key=_type_name))
        self.declared.update(new)

    async def _bulk_search(self, filters: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        result = await self.client.bulk(search=filters)
        found: list[list[dict[str, Any]]] = result.search_results
        return found

    async def _report_progress(self, ctx: RunContext[Any], scope: anyio.CancelScope) -> None:
        with scope:
            await self._report_progress_forever(ctx)

    async def _report_progress_forever(self, ctx: RunContext[Any]) -> None:
        while True:
            await anyio.sleep(self.settings.run_update_interval)
            if self.on_progress is not None:
                self.on_progress(self.stats, ctx)
            if self.run_id is not None:
                try:
                    await self.client.update_item(self._run_update(ctx))
                except PodError as exc:
                    self.logger.debug("run progress not recorded: %s", exc)


__all__ = ["EngineSettings", "ImportFailed", "RunResult", "run_import"]
