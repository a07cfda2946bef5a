"""``importer status``: each importer the Pod knows — last run, outcome, counts, checkpoint age."""

from __future__ import annotations

import json
import time
from typing import Any

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


def importer_id(connector: str, account_id: str) -> str:
    """The engine's Importer id for a connector and an Account."""
    return derive_id(Importer.item_type, connector, account_id)


async def _linked(client: Any, item_id: str, name: str, direction: str) -> list[dict[str, Any]]:
    edges = await client.get_edges(item_id, direction=direction, expand_items=True)
    return [edge["item"] for edge in edges if edge.get("name") == name]


async def importer_status(client: Any, importer: dict[str, Any]) -> str:
    """One line for one Importer item."""
    label = str(importer.get("name") or importer["id"])
    connector = str(importer.get("connector") or "")
    accounts = await _linked(client, importer["id"], "account", "Outgoing")
    runs = await _linked(client, importer["id"], "importer", "Incoming")
    checkpoint = "none"
    if accounts:
        state = json.loads(accounts[0].get("importerState") or "{}").get(connector)
        if state:
            checkpoint = _age(accounts[0].get("dateServerModified"))
    if not runs:
        return f"{label}: no runs recorded; checkpoint {checkpoint}"
    last = max(runs, key=lambda run: run.get("startDate") or 0)
    counts = ", ".join(
        f"{last.get(key) or 0} {what}"
        for key, what in (
            ("createdCount", "created"),
            ("updatedCount", "updated"),
            ("skippedCount", "skipped"),
        )
    )
    outcome = str(last.get("status", "?"))
    if last.get("error"):
        outcome += f" ({last['error']})"
    return (
        f"{label}: last run {_age(last.get('startDate'))}, {outcome}; {counts}; "
        f"{len(runs)} run{'' if len(runs) == 1 else 's'}; checkpoint {checkpoint}"
    )


async def all_importers(client: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async for page in client.search_pages({"type": Importer.item_type, "deleted": False}):
        found.extend(page)
    return sorted(found, key=lambda item: str(item.get("name") or item["id"]))
