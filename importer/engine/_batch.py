"""Collects records into batches bounded by count, bytes and age."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..model import Checkpoint, Edge, FilePayload, Item, Record, Update

EdgeKey = tuple[str, str, str]
"""(source id, edge name, target id)."""

SkipCallback = Callable[[str, str], None]
"""Records a record that could not be imported: ``(ref, reason)``, as ``ctx.skip``."""

log = logging.getLogger("importer.engine")


class _Unsendable(Exception):
    """A record the Pod API cannot be sent (not JSON: text that is not UTF-8...)."""

    def __init__(self, ref: str, reason: str) -> None:
        super().__init__(ref, reason)
        self.ref = ref
        self.reason = reason


def _text(value: str) -> str:
    """``value`` made printable and encodable (a lone surrogate as ``\\udcNN``)."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _item_ref(item: Item) -> str:
    """An item as a skip's ref: its id, else its natural key."""
    ident = item.id
    if ident is None and item.key_fields:
        ident = "/".join(str(getattr(item, name)) for name in item.key_fields)
    return _text(f"{item.item_type} {ident or '(no id)'}")


def _why_not(exc: Exception) -> str:
    if isinstance(exc, UnicodeEncodeError):  # orjson says it the same way
        return f"str is not valid UTF-8: {exc.reason}"
    return _text(str(exc))


def _unsendable(item: Item, data: dict[str, Any] | None, exc: Exception) -> _Unsendable:
    """Why ``item`` cannot be sent, naming the fields at fault."""
    bad = []
    for name, value in (data or item.model_dump(exclude_none=True)).items():
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError:
            bad.append(name)
    where = f"{', '.join(bad)}: " if bad else ""
    return _Unsendable(_item_ref(item), f"cannot be sent to the Pod: {where}{_why_not(exc)}")


def _check_id(end: str, name: str) -> None:
    try:
        end.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Unsendable(
            f"edge {_text(name)} end {_text(end)}",
            f"cannot be sent to the Pod: the id: {_why_not(exc)}",
        ) from exc


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
        skip: SkipCallback | None = None,
    ) -> None:
        self.connector = connector
        self.skip = skip
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
        """Add one record; True when the batch is now full (time to ``take`` it).

        A record that cannot be sent to the Pod is recorded as skipped instead
        (one bad record must not fail every run at the same place).  One body,
        no call per record: this runs for every record of every source.
        """
        batch = self.current
        batch.records += 1
        try:
            if isinstance(record, Item):
                self._add_item(record, update_only=False)
            elif isinstance(record, Edge):
                # An end given as an item is created with the edge.  Ids are
                # nearly always ASCII, which str.isascii() tells at once.
                source, target = record.source, record.target
                if isinstance(source, str):
                    if not source.isascii():
                        _check_id(source, record.name)
                else:
                    source = self._add_item(source, update_only=False)
                if isinstance(target, str):
                    if not target.isascii():
                        _check_id(target, record.name)
                else:
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
        except _Unsendable as exc:
            if self.skip is None:
                log.warning("skipped %s: %s", exc.ref, exc.reason)
            else:
                self.skip(exc.ref, exc.reason)
        return (
            len(batch.items) + len(batch.edges) >= self.max_records
            or batch.nbytes >= self.max_bytes
        )

    def _add_item(self, item: Item, *, update_only: bool) -> str:
        batch = self.current
        data: dict[str, Any] | None = None
        try:
            data = item.to_pod()
            nbytes = _estimate_bytes(data)
        except (UnicodeError, orjson.JSONEncodeError) as exc:
            raise _unsendable(item, data, exc) from exc
        item_id: str = data["id"]
        mutable = item.mutable_values(erasing=not update_only)
        seen = batch.items.get(item_id)
        if seen is None:
            batch.items[item_id] = BatchItem(data, mutable, type(item), update_only)
            batch.nbytes += nbytes
            return item_id
        # The same thing twice in one batch (one message in two folders, or two
        # messages sharing a Message-ID): the first full sighting's fields stay,
        # as they do when the second comes in a later batch (the item exists by
        # then), and mutable fields take the latest values.  Later values for
        # all fields would splice two different things into one item.
        if seen.update_only and not update_only:
            seen.data.update(data)
        else:
            seen.data.update({k: v for k, v in data.items() if k in item.mutable_fields})
        seen.mutable.update(mutable)
        for name in (name for name, value in mutable.items() if value is None):
            seen.data.pop(name, None)  # erased by the later sighting (``clears_missing``)
        seen.update_only = seen.update_only and update_only
        return item_id
