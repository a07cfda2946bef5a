"""Collects records into batches bounded by count, bytes and age."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..model import Checkpoint, Edge, FilePayload, Item, Record, Update

EdgeKey = tuple[str, str, str]
"""(source id, edge name, target id)."""


@dataclass(slots=True)
class BatchItem:
    data: dict[str, Any]
    mutable: dict[str, Any]
    model: type[Item]
    update_only: bool


@dataclass
class Batch:
    """What the source yielded since the previous batch, in order."""

    seq: int
    items: dict[str, BatchItem] = field(default_factory=dict)
    edges: dict[EdgeKey, None] = field(default_factory=dict)
    files: dict[str, FilePayload] = field(default_factory=dict)
    checkpoint: str | None = None
    """JSON of the whole ``importerState`` as of the last checkpoint in this batch."""
    nbytes: int = 0
    records: int = 0
    started: float = field(default_factory=time.monotonic)

    def is_empty(self) -> bool:
        return not (self.items or self.edges or self.files or self.checkpoint is not None)


def _estimate_bytes(data: dict[str, Any]) -> int:
    """An item's JSON size (orjson encodes a small dict in about a microsecond)."""
    return len(orjson.dumps(data))


class BatchBuilder:
    """Turns a stream of records into :class:`Batch` objects.

    Holds the merged checkpoint state so every batch's checkpoint is the full
    ``importerState`` JSON as of that point (the Account keeps one document).
    """

    def __init__(
        self,
        connector: str,
        state: dict[str, Any],
        *,
        max_records: int,
        max_bytes: int,
    ) -> None:
        self.connector = connector
        self.state = state
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._seq = 0
        self.current = self._new()

    def _new(self) -> Batch:
        self._seq += 1
        return Batch(seq=self._seq)

    def take(self) -> Batch:
        """Hand over the current batch and start a new one."""
        batch, self.current = self.current, self._new()
        return batch

    def add(self, record: Record) -> bool:
        """Add one record; True when the batch is now full (time to ``take`` it)."""
        batch = self.current
        batch.records += 1
        if isinstance(record, Item):
            self._add_item(record, update_only=False)
        elif isinstance(record, Edge):
            # An end given as an item is created with the edge (inlined: this
            # runs for most records of most sources).
            source, target = record.source, record.target
            if not isinstance(source, str):
                source = self._add_item(source, update_only=False)
            if not isinstance(target, str):
                target = self._add_item(target, update_only=False)
            key = (source, record.name, target)
            if key not in batch.edges:
                batch.edges[key] = None
                batch.nbytes += 120
        elif isinstance(record, FilePayload):
            file_id = self._add_item(record.file, update_only=False)
            if file_id not in batch.files:
                batch.files[file_id] = record
                # Only bytes held in memory count: paths and streams are read
                # while uploading, never whole.
                if isinstance(record.content, bytes):
                    batch.nbytes += len(record.content)
        elif isinstance(record, Update):
            self._add_item(record.item, update_only=True)
        elif isinstance(record, Checkpoint):
            self.state.setdefault(self.connector, {})[record.stream] = record.state
            batch.checkpoint = json.dumps(self.state, sort_keys=True, separators=(",", ":"))
        else:
            raise TypeError(
                f"fetch() yielded {type(record).__name__}; expected an Item, Edge, "
                "FilePayload, Update or Checkpoint"
            )
        return (
            len(batch.items) + len(batch.edges) >= self.max_records
            or batch.nbytes >= self.max_bytes
        )

    def _add_item(self, item: Item, *, update_only: bool) -> str:
        batch = self.current
        data = item.to_pod()
        item_id: str = data["id"]
        mutable = item.mutable_values()
        seen = batch.items.get(item_id)
        if seen is None:
            batch.items[item_id] = BatchItem(data, mutable, type(item), update_only)
            batch.nbytes += _estimate_bytes(data)
            return item_id
        # The same thing twice in one batch (e.g. one message in two folders):
        # later values win, a full sighting beats an update-only one.
        if update_only and not seen.update_only:
            seen.data.update({k: v for k, v in data.items() if k in item.mutable_fields})
        else:
            seen.data.update(data)
        seen.mutable.update(mutable)
        seen.update_only = seen.update_only and update_only
        return item_id
