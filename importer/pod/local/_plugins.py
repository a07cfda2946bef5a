"""The local Pod starts importers the way a Pod starts plugins: a subprocess per run.

When a write commits a run item (``ImporterRun``, or ``PluginRun``: the API
starts a plugin when a ``PluginRun`` is created) with no status (or
``"requested"``) that is linked ``-importer->`` to an ``Importer`` (the edge
may come in the same request or a later one), the launcher runs
``python -m importer run CONNECTOR`` with the ``POD_*`` environment.  The
child gets a fresh plugin token (``POD_AUTH_JSON``), never the database key;
the token is revoked when the child exits.

* One run per account at a time: a run requested while another run for the
  same account is going is not queued but marked ``status = "refused"``,
  ``error = "a run for this account is in progress"`` (request it again later).
* The last :data:`TAIL_BYTES` of the child's output (stdout and stderr) are
  kept on the run item as ``outputTail``; a child that ended without
  recording an outcome leaves ``status = "failed"`` and its exit status.
* Children run in their own session and are stopped (SIGTERM, then SIGKILL
  after :data:`STOP_GRACE` seconds) when the server stops, before it stops
  answering (:meth:`PluginLauncher.stop`): a child that stops in time records
  its own run ``interrupted``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
from anyio.abc import Process, TaskGroup

from ._owners import Owners

__all__ = ["RUN_TYPES", "STOP_GRACE", "TAIL_BYTES", "PluginLauncher", "runs_touched"]

_log = logging.getLogger(__name__)

TAIL_BYTES = 4096
STOP_GRACE = 5.0
RUN_TYPES = frozenset({"ImporterRun", "PluginRun"})
"""Run item types the launcher starts (``PluginRun`` is an ``ImporterRun``)."""
REFUSED_ERROR = "a run for this account is in progress"
_CONNECTOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_INHERITED_NOT = ("POD_", "IMPORTER_POD_")
"""Environment prefixes the child never inherits (it gets its own ``POD_*``)."""


def runs_touched(endpoint: str, payload: Any, result: Any) -> list[str]:
    """Ids of run items a committed write may have made ready to start."""
    found: list[str] = []
    if endpoint == "create_item" and isinstance(payload, dict):
        if payload.get("type") in RUN_TYPES and isinstance(result, str):
            found.append(result)
    elif endpoint == "create_edge" and isinstance(payload, dict):
        if payload.get("_name") == "importer" and isinstance(payload.get("_source"), str):
            found.append(payload["_source"])
    elif endpoint == "bulk" and isinstance(payload, dict) and isinstance(result, dict):
        items = payload.get("createItems") or []
        ids = result.get("createItems") or []
        for item, item_id in zip(items, ids, strict=False):
            if isinstance(item, dict) and item.get("type") in RUN_TYPES:
                found.append(str(item_id))
        for edge in payload.get("createEdges") or []:
            if isinstance(edge, dict) and edge.get("_name") == "importer":
                source = edge.get("_source")
                if isinstance(source, str):
                    found.append(source)
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class _Request:
    """A run ready to start: its item, its Importer and the account it imports for."""

    owner: str
    run: dict[str, Any]
    importer: dict[str, Any]
    account_id: str

    @property
    def run_id(self) -> str:
        return str(self.run["id"])


class _Tail:
    """The last ``limit`` bytes of a stream, with known secrets blanked out."""

    def __init__(self, limit: int, secrets: Sequence[str]) -> None:
        self.limit = limit
        self.secrets = [s.encode() for s in secrets if s]
        self.slack = max((len(s) for s in self.secrets), default=0)
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        keep = self.limit + self.slack
        if len(self.data) > 2 * keep:
            del self.data[: len(self.data) - keep]

    def text(self) -> str:
        data = bytes(self.data)
        for secret in self.secrets:
            data = data.replace(secret, b"***")
        return data[-self.limit :].decode("utf-8", "replace")


class PluginLauncher:
    """Starts and watches importer subprocesses for one local Pod app."""

    def __init__(
        self,
        owners: Owners,
        *,
        address: str | None = None,
        command: Sequence[str] = (sys.executable, "-m", "importer", "run"),
        tail_bytes: int = TAIL_BYTES,
    ) -> None:
        self.owners = owners
        self.address = address
        """Base URL the children call back; runs fail with a clear error while it is None."""
        self.command = tuple(command)
        self.tail_bytes = tail_bytes
        self._tg: TaskGroup | None = None
        self._claimed: set[tuple[str, str]] = set()
        self._running: dict[tuple[str, str], str] = {}
        self._launches: set[anyio.CancelScope] = set()
        """One per child being started, watched or recorded: :meth:`stop` cancels them."""
        self._all_ended = anyio.Event()
        self._all_ended.set()

    def __repr__(self) -> str:
        return f"PluginLauncher({self.address!r}, running={len(self._running)})"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Launch while inside; on exit stop every child and record how its run ended."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def stop(self) -> None:
        """Start nothing more; stop every child and wait until its run's end is recorded.

        A server calls this while it still answers requests: a child told to
        stop (SIGTERM) then records its run ``interrupted`` itself, with its
        counts, rather than failing to reach the Pod and being marked ``failed``.
        """
        self._tg = None
        for scope in self._launches:
            scope.cancel()
        await self._all_ended.wait()

    def after_write(
        self, owner: str, database_key: str, endpoint: str, payload: Any, result: Any
    ) -> None:
        """Called once a write committed: start what it made ready (never raises)."""
        if self._tg is None:
            return
        try:
            run_ids = runs_touched(endpoint, payload, result)
        except Exception:  # a hook must not break the write that called it
            _log.exception("local Pod: could not inspect a write for importer runs")
            return
        if run_ids:
            self._tg.start_soon(self._consider, owner, database_key, run_ids)

    # -- deciding -----------------------------------------------------------------

    def _read(self, owner: str, database_key: str, run_id: str) -> _Request | None:
        """The run if it waits for a start and has its Importer (blocking: a worker thread)."""
        store = self.owners.store(owner, database_key)
        found = store.get_item(run_id)
        if not found or found[0].get("type") not in RUN_TYPES or found[0].get("deleted"):
            return None
        run = found[0]
        if run.get("status") not in (None, "requested"):
            return None
        importer = next(
            (
                edge["item"]
                for edge in store.get_edges({"item": run_id, "direction": "Outgoing"})
                if edge["name"] == "importer" and edge["item"].get("type") == "Importer"
            ),
            None,
        )
        if importer is None or importer.get("deleted"):
            return None
        account = next(
            (
                edge["item"]["id"]
                for edge in store.get_edges({"item": importer["id"], "direction": "Outgoing"})
                if edge["name"] == "account"
            ),
            str(importer["id"]),
        )
        return _Request(owner, run, importer, str(account))

    async def _consider(self, owner: str, database_key: str, run_ids: list[str]) -> None:
        for run_id in run_ids:
            if (owner, run_id) in self._claimed:
                continue
            try:
                request = await anyio.to_thread.run_sync(self._read, owner, database_key, run_id)
            except Exception as exc:
                _log.warning("local Pod: run %s not started: %s", run_id, type(exc).__name__)
                continue
            # No await between this check and the claim: one event loop, no race.
            if request is None or (owner, run_id) in self._claimed:
                continue
            self._claimed.add((owner, run_id))
            connector = request.importer.get("connector")
            if not isinstance(connector, str) or not _CONNECTOR.fullmatch(connector):
                await self._write(
                    owner, database_key, _ended(run_id, "failed", "the Importer names no connector")
                )
                continue
            account = (owner, request.account_id)
            if account in self._running:
                await self._write(owner, database_key, _ended(run_id, "refused", REFUSED_ERROR))
                continue
            if self._tg is None:  # the server is stopping
                return
            self._running[account] = run_id
            scope = anyio.CancelScope()
            if not self._launches:
                self._all_ended = anyio.Event()
            self._launches.add(scope)
            self._tg.start_soon(self._launch, request, database_key, connector, account, scope)

    # -- running ------------------------------------------------------------------

    def _environment(self, request: _Request, auth: dict[str, Any]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_NOT)}
        env.update(
            POD_FULL_ADDRESS=str(self.address),
            POD_OWNER=request.owner,
            POD_AUTH_JSON=json.dumps(auth),
            POD_PLUGINRUN_ID=request.run_id,
            POD_TARGET_ITEM=json.dumps(request.run),
            PYTHONUNBUFFERED="1",
        )
        return env

    async def _launch(
        self,
        request: _Request,
        database_key: str,
        connector: str,
        account: tuple[str, str],
        scope: anyio.CancelScope,
    ) -> None:
        try:
            with scope:
                await self._run_and_record(request, database_key, connector, account)
        finally:
            self._launches.discard(scope)
            if not self._launches:
                self._all_ended.set()

    async def _run_and_record(
        self, request: _Request, database_key: str, connector: str, account: tuple[str, str]
    ) -> None:
        owner, run_id = request.owner, request.run_id
        code: int | None = None
        problem: str | None = None
        auth = self.owners.issue_plugin_token(owner, database_key)
        tail = _Tail(self.tail_bytes, [*map(str, auth.values()), database_key])
        try:
            if self.address is None:
                problem = "the Pod's own address is unknown, so no importer can call back"
            else:
                code = await self._run_child(request, connector, auth, tail)
        except OSError as exc:
            problem = f"the importer could not be started ({exc.strerror or type(exc).__name__})"
        except anyio.get_cancelled_exc_class():
            problem = "stopped: the Pod shut down"
            raise
        finally:
            self.owners.revoke_plugin_token(auth)
            del self._running[account]
            with anyio.CancelScope(shield=True):
                await self._record_end(owner, database_key, run_id, code, problem, tail.text())

    async def _run_child(
        self, request: _Request, connector: str, auth: dict[str, Any], tail: _Tail
    ) -> int:
        _log.info("local Pod: starting importer %s for run %s", connector, request.run_id)
        process = await anyio.open_process(
            [*self.command, connector],
            env=self._environment(request, auth),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            assert process.stdout is not None
            async for chunk in process.stdout:
                tail.add(chunk)
            return await process.wait()
        finally:
            with anyio.CancelScope(shield=True):
                await _stop(process)
                await process.aclose()

    async def _record_end(
        self,
        owner: str,
        database_key: str,
        run_id: str,
        code: int | None,
        problem: str | None,
        output: str,
    ) -> None:
        """Keep the output tail; fail a run its importer left unfinished."""
        update: dict[str, Any] = {"id": run_id, "outputTail": output}
        try:
            found = await anyio.to_thread.run_sync(
                partial(self.owners.store(owner, database_key).get_item, run_id)
            )
            status = found[0].get("status") if found else None
            if status in (None, "requested", "running"):
                reason = problem or f"the importer exited with status {code}"
                update.update(_ended(run_id, "failed", reason))
            await self._write(owner, database_key, update)
        except Exception as exc:
            _log.warning("local Pod: outcome of run %s not recorded: %s", run_id, exc)
        _log.info("local Pod: importer for run %s ended (exit status %s)", run_id, code)

    async def _write(self, owner: str, database_key: str, update: dict[str, Any]) -> None:
        def write() -> None:
            self.owners.store(owner, database_key).update_item(update)

        try:
            await anyio.to_thread.run_sync(write)
        except Exception as exc:
            _log.warning("local Pod: run %s not updated: %s", update.get("id"), exc)


def _ended(run_id: str, status: str, error: str) -> dict[str, Any]:
    return {"id": run_id, "status": status, "error": error, "endDate": int(time.time() * 1000)}


async def _stop(process: Process) -> None:
    """SIGTERM, then SIGKILL if the child is still there after the grace period."""
    if process.returncode is not None:
        return
    try:
        process.terminate()
        with anyio.move_on_after(STOP_GRACE):
            await process.wait()
            return
        process.kill()
    except ProcessLookupError:
        return
    await process.wait()
