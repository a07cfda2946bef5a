"""The object a connector's ``fetch(ctx)`` receives: options, account, state, hooks."""

from __future__ import annotations

import getpass
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio.from_thread
from pydantic import BaseModel

from .schema import Account
from .secrets import resolve_secret

__all__ = ["InteractionRequired", "RunContext", "SkippedRecord"]

OptionsT = TypeVar("OptionsT", bound=BaseModel)


_NOT_STORABLE = frozenset(
    {"id", "type", "importerState", "credentialsFor", "dateCreated", "dateServerModified"}
)


class InteractionRequired(Exception):
    """A step needs a person (OAuth consent, a 2FA code) and no terminal is attached."""


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
    files_to_read_again: dict[str, str] = field(default_factory=dict)
    """Files an earlier run hashed but could not upload (gone or changed by then):
    path (as text, bytes that are not UTF-8 as ``\\xNN``) -> the sha256 it had.
    Their File items have no content; a checkpoint may still count them as
    done.  Read them again: a payload of that sha256 gets its content in."""
    _last_added: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any] | None]] | None = None
    _store_account: Callable[[dict[str, Any]], Awaitable[None]] | None = None
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

    async def store_account(self, **props: Any) -> None:
        """Write properties of this run's Account item, e.g. refreshed session tokens.

        ``await ctx.store_account(accessToken=..., refreshToken=...)``; sync
        ``fetch`` generators call :meth:`store_account_blocking`.  The values
        also replace those of ``ctx.account`` at once.  ``importerState`` and
        ``credentialsFor`` are the engine's and can't be written here; the
        engine binds stored credentials to where this run sends them.
        """
        update = self._account_update(props)
        if self._store_account is None:
            raise RuntimeError("this run can't store account properties (no Pod to write to)")
        await self._store_account(update)

    def store_account_blocking(self, **props: Any) -> None:
        """:meth:`store_account` for sync ``fetch`` generators (they run in a worker thread)."""
        anyio.from_thread.run(lambda: self.store_account(**props))

    def _account_update(self, props: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(props) - set(Account.model_fields))
        if unknown:
            raise ValueError(f"Account has no property {unknown[0]!r}")
        refused = sorted(set(props) & _NOT_STORABLE)
        if refused:
            raise ValueError(f"the Account's {refused[0]!r} can't be stored by a connector")
        with self._lock:
            for name, value in props.items():
                setattr(self.account, name, value)
        return {name: getattr(self.account, name) for name in props}

    def prompt(self, message: str, *, secret: bool = False) -> str:
        """Ask the person at the terminal (a 2FA code, an OAuth redirect URL).

        ``secret``: read without echo.  Without a terminal (cron, a Pod
        starting the importer) this raises :class:`InteractionRequired` at
        once instead of waiting for an answer that never comes.
        """
        stdin = sys.stdin
        if stdin is None or stdin.closed or not stdin.isatty():
            raise InteractionRequired(
                f"account {self.account_name}: {message.strip().rstrip(':')}: this needs a "
                "person at a terminal and the run has none; run "
                f"'importer run {self.connector_name} --account {self.account_name}' by hand once"
            )
        if secret:
            return getpass.getpass(message)
        return input(message)
