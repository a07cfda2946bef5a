"""Plugin mode: a Pod started ``importer run CONNECTOR`` for one of its ImporterRun items.

Everything comes from the environment the Pod sets (``POD_FULL_ADDRESS``,
``POD_OWNER``, ``POD_AUTH_JSON``, ``POD_PLUGINRUN_ID``, ``POD_TARGET_ITEM``)
and from the Pod itself: ``ImporterRun -importer-> Importer -account-> Account``.
No config file and no database key are needed: the client speaks with the
``PluginAuth`` the Pod handed over.  A run that can't start says why on its
run item (status ``failed``, ``error``) and exits non-zero.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .connector import Connector
from .engine import EngineSettings, RunLocked, RunResult, run_import
from .pod import PluginAuth, PodClient, PodError
from .schema import Importer

__all__ = [
    "ENV_ADDRESS",
    "ENV_AUTH",
    "ENV_OWNER",
    "ENV_RUN_ID",
    "ENV_TARGET",
    "PluginEnvironment",
    "PluginSetupError",
    "is_plugin_mode",
    "run_as_plugin",
]

ENV_ADDRESS = "POD_FULL_ADDRESS"
ENV_OWNER = "POD_OWNER"
ENV_AUTH = "POD_AUTH_JSON"
ENV_RUN_ID = "POD_PLUGINRUN_ID"
ENV_TARGET = "POD_TARGET_ITEM"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_LOCKED = 75

log = logging.getLogger("importer")


class PluginSetupError(Exception):
    """The environment a Pod gives a plugin is incomplete; no run item can be told."""


def is_plugin_mode(environ: Mapping[str, str]) -> bool:
    """A Pod started this process (``POD_FULL_ADDRESS`` is set)."""
    return bool(environ.get(ENV_ADDRESS))


@dataclass(frozen=True)
class PluginEnvironment:
    """What the Pod passed; the auth is kept out of the repr."""

    address: str
    owner: str
    run_id: str
    auth: PluginAuth = field(repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PluginEnvironment:
        missing = [n for n in (ENV_ADDRESS, ENV_OWNER, ENV_AUTH) if not environ.get(n)]
        run_id = environ.get(ENV_RUN_ID) or _target_id(environ.get(ENV_TARGET))
        if run_id is None:
            missing.append(ENV_RUN_ID)
        if missing:
            raise PluginSetupError(
                f"started by a Pod ({ENV_ADDRESS} is set) but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} missing"
            )
        address = environ[ENV_ADDRESS]
        if not address.startswith(("http://", "https://")):
            raise PluginSetupError(f"{ENV_ADDRESS} must start with http:// or https://")
        try:
            auth = PluginAuth.from_env_json(environ[ENV_AUTH])
        except ValueError as exc:
            raise PluginSetupError(str(exc)) from None
        assert run_id is not None
        return cls(address.rstrip("/"), environ[ENV_OWNER], run_id, auth)


def _target_id(text: str | None) -> str | None:
    """The run item's id from ``POD_TARGET_ITEM`` when ``POD_PLUGINRUN_ID`` is absent."""
    if not text:
        return None
    try:
        item = json.loads(text)
    except ValueError:
        return None
    found = item.get("id") if isinstance(item, dict) else None
    return found if isinstance(found, str) else None


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _importer_of_run(client: PodClient, run_id: str) -> dict[str, Any]:
    run = await client.get_item(run_id)
    if run is None:
        raise _RunSetupError(f"run item {run_id} is not in the Pod")
    for edge in await client.get_edges(run_id, direction="Outgoing", expand_items=True):
        target = edge.get("item") or {}
        if (
            edge.get("name") == "importer"
            and target.get("type") == Importer.item_type
            and not target.get("deleted")
        ):
            return dict(target)
    raise _RunSetupError(
        f"run item {run_id} has no importer (no 'importer' edge to an Importer item)"
    )


class _RunSetupError(Exception):
    """Why the run can't start; recorded on the run item."""


async def _fail_run(client: PodClient, run_id: str, status: str, error: str) -> None:
    try:
        await client.update_item(
            {"id": run_id, "status": status, "error": error[:2000], "endDate": _now_ms()}
        )
    except PodError as exc:
        log.warning("could not record the outcome on the run item: %s", exc)


async def run_as_plugin(
    connector: Connector[Any],
    environ: Mapping[str, str],
    *,
    lock_dir: Path,
    settings: EngineSettings,
    full_refresh: bool = False,
    limit: int | None = None,
    dry_run: bool = False,
    report: Callable[[RunResult], None] | None = None,
    on_progress: Any = None,
    cancel_reason: Callable[[], str | None] | None = None,
) -> int:
    """Run the import the Pod asked for; the exit code (0 done, 1 failed, 75 locked)."""
    from ._accounts import AccountError, run_target

    env = PluginEnvironment.from_environ(environ)
    async with PodClient(env.address, env.owner, env.auth) as client:
        try:
            importer = await _importer_of_run(client, env.run_id)
            target = await run_target(client, importer, connector)
        except (_RunSetupError, AccountError) as exc:
            log.error("%s", exc)
            await _fail_run(client, env.run_id, "failed", str(exc))
            return EXIT_FAILED
        log.info("run %s: importing %s (%s)", env.run_id, target.name, connector.name)
        try:
            result = await run_import(
                client,
                connector,
                target.options,
                target.name,
                lock_dir=lock_dir,
                settings=settings,
                full_refresh=full_refresh,
                limit=limit,
                dry_run=dry_run,
                on_progress=on_progress,
                account=target.account,
                importer_id=target.importer_id,
                run_id=env.run_id,
                cancel_reason=cancel_reason,
            )
        except RunLocked as exc:
            log.error("account %s: %s", target.name, exc)
            await _fail_run(client, env.run_id, "refused", "a run for this account is in progress")
            return EXIT_LOCKED
    if report is not None:
        report(result)
    return EXIT_FAILED if result.error else EXIT_OK
