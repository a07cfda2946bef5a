"""The object a connector's ``fetch(ctx)`` receives: options, account, state, hooks."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio.from_thread
from pydantic import BaseModel

from .schema import Account
from .secrets import resolve_secret

__all__ = ["RunContext", "SkippedRecord"]

OptionsT = TypeVar("OptionsT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    ref: str
    reason: str


@dataclass
class _Progress:
    total: int | None = None
    done: int = 0


@dataclass
class RunContext(Generic[OptionsT]):
    """Per-run view for a connector.  Safe to use from a sync ``fetch`` thread."""

    options: OptionsT
    account: Account
    account_name: str
    connector_name: str
    checkpoints: dict[str, Any] = field(default_factory=dict)
    full_refresh: bool = False
    limit: int | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("importer.connector"))
    _last_added: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any] | None]] | None = None
    _skipped: list[SkippedRecord] = field(default_factory=list)
    _skip_count: int = 0
    _progress: _Progress = field(default_factory=_Progress)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    max_skip_log: int = 1000

    def checkpoint(self, stream: str = "default") -> Any | None:
        """The state of ``stream`` from the last committed checkpoint (None on a first run)."""
        if self.full_refresh:
            return None
        return self.checkpoints.get(stream)

    def skip(self, ref: str, reason: str) -> None:
        """Record a source record that could not be imported; the run goes on."""
        with self._lock:
            self._skip_count += 1
            if len(self._skipped) < self.max_skip_log:
                self._skipped.append(SkippedRecord(ref, reason))
        self.log.warning("skipped %s: %s", ref, reason)

    @property
    def skipped(self) -> list[SkippedRecord]:
        with self._lock:
            return list(self._skipped)

    @property
    def skip_count(self) -> int:
        with self._lock:
            return self._skip_count

    def progress(self, *, total: int | None = None, advance: int = 0) -> None:
        """A hint for progress bars and the run item: set ``total``, add ``advance`` done."""
        with self._lock:
            if total is not None:
                self._progress.total = total
            self._progress.done += advance

    def progress_fraction(self) -> float | None:
        with self._lock:
            if not self._progress.total:
                return None
            return min(1.0, self._progress.done / self._progress.total)

    async def last_added(self, item_type: str, **filters: Any) -> dict[str, Any] | None:
        """The newest item of ``item_type`` (matching ``filters``) in the Pod."""
        if self._last_added is None:
            return None
        return await self._last_added(item_type, filters)

    def last_added_blocking(self, item_type: str, **filters: Any) -> dict[str, Any] | None:
        """:meth:`last_added` for sync ``fetch`` generators (they run in a worker thread)."""
        return anyio.from_thread.run(lambda: self.last_added(item_type, **filters))

    @staticmethod
    def secret(
        *,
        what: str,
        env: str | None = None,
        command: str | None = None,
        keyring_service: str | None = None,
        keyring_user: str | None = None,
    ) -> str:
        """Resolve a secret from the environment, a command or the keyring."""
        return resolve_secret(
            what=what,
            env=env,
            command=command,
            keyring_service=keyring_service,
            keyring_user=keyring_user,
        )
