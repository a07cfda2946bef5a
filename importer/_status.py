"""``importer status``: what the Pod knows about each account's runs."""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel

from .connector import Connector
from .model import derive_id
from .schema import Importer


def _age(ms: int | None) -> str:
    if not ms:
        return "never"
    seconds = max(0, time.time() - ms / 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


async def account_status(
    client: Any, connector: Connector[Any], options: BaseModel, name: str
) -> str:
    account = connector.account(options, name)
    account_id = account.ensure_id()
    found = await client.get_item(account_id)
    if found is None:
        return f"{name}: never imported"
    importer_id = derive_id(Importer.item_type, connector.name, account_id)
    runs = [
        edge["item"]
        for edge in await client.get_edges(importer_id, direction="Incoming", expand_items=True)
        if edge.get("name") == "importer"
    ]
    state = json.loads(found.get("importerState") or "{}").get(connector.name, {})
    checkpoint_age = _age(found.get("dateServerModified")) if state else "none"
    if not runs:
        return f"{name}: no runs recorded; checkpoint {checkpoint_age}"
    last = max(runs, key=lambda run: run.get("startDate") or 0)
    counts = ", ".join(
        f"{last.get(key) or 0} {label}"
        for key, label in (
            ("createdCount", "created"),
            ("updatedCount", "updated"),
            ("skippedCount", "skipped"),
        )
    )
    outcome = last.get("status", "?")
    if last.get("error"):
        outcome += f" ({last['error']})"
    return (
        f"{name}: last run {_age(last.get('startDate'))}, {outcome}; {counts}; "
        f"{len(runs)} runs; checkpoint {checkpoint_age}"
    )
