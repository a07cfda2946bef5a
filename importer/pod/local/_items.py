"""Checking items against the schema and shaping them into rows.

Bulk imports send many items of the same shape (same type, same keys, same
JSON value types), so the checks that depend only on that shape are made once
per shape (:class:`_Plan`) and each item then costs a few dict operations;
anything unusual takes the full, item-by-item path, which also produces the
error message.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson

from ._errors import PodHTTPError, bad_request, shown
from ._schema import (
    CORE_FIELDS,
    INT_MAX,
    INT_MIN,
    NAME_RE,
    SCHEMA_ITEM_TYPE,
    check_name,
    check_value,
)
from ._tx import Transaction

__all__ = ["NewItem", "check_id", "dumps", "prepare_new_items", "undeclared"]

MAX_ID = 256


def dumps(props: dict[str, Any]) -> str:
    """Properties as stored: compact JSON text (orjson: ~6x the stdlib's speed here)."""
    return orjson.dumps(props).decode()


NewItem = tuple[str, str, int, int, bool, dict[str, Any], str]
"""id, type, dateCreated, dateModified, deleted, properties, properties as JSON."""

_PY_TYPES: dict[str, type] = {
    "Text": str,
    "Integer": int,
    "DateTime": int,
    "Real": float,
    "Bool": bool,
}
_CORE_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str, type(None)),
    "type": (str,),
    "dateCreated": (int, type(None)),
    "dateModified": (int, type(None)),
    "deleted": (bool, type(None)),
}


def check_id(value: object, what: str = "id") -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_ID or not value.isprintable():
        raise bad_request(f"{what} must be a non-empty printable string, got {shown(value, 60)}")
    return value


def undeclared(tx: Transaction, item_type: str, key: str) -> PodHTTPError:
    """The error for a property ``key`` that ``item_type`` may not carry."""
    if not NAME_RE.fullmatch(key):
        return bad_request(f"{shown(key, 60)} is not a valid property name")
    if tx.pending is not None and tx.pending.property_type(item_type, key) is not None:
        return bad_request(
            f"property {key!r} of {item_type!r} is declared in this same request; "
            "send schema declarations and items using them in separate requests"
        )
    return bad_request(f"property {key!r} is not declared for type {item_type!r}")


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the fast path does with items of one shape."""

    item_type: str
    pick: Callable[[dict[str, Any]], dict[str, Any]]
    """The item's properties (no core fields, no nulls)."""
    numbers: tuple[str, ...]
    """Integer/DateTime properties and dates, whose range is checked per item."""
    reals: tuple[str, ...]
    sha256: bool
    """Items carry ``sha256``: one in upper case takes the full path to be lowered."""


def _picker(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    if not keys:
        return lambda item: {}
    if len(keys) == 1:
        (key,) = keys
        return lambda item: {key: item[key]}
    values = itemgetter(*keys)
    return lambda item: dict(zip(keys, values(item), strict=True))


def _plan(
    tx: Transaction, item_type: object, keys: tuple[str, ...], types: tuple[type, ...]
) -> _Plan | None:
    """A plan for items of this shape, or None if they need the full path."""
    if type(item_type) is not str or item_type == SCHEMA_ITEM_TYPE:
        return None
    if not NAME_RE.fullmatch(item_type) or len(item_type) > 128:
        return None
    declared = tx.schema.types.get(item_type, {})
    props: list[str] = []
    numbers: list[str] = []
    reals: list[str] = []
    for key, value_type in zip(keys, types, strict=True):
        if key in CORE_FIELDS:
            if key == "dateServerModified":
                continue
            if value_type not in _CORE_TYPES[key]:
                return None
            if value_type is int:
                numbers.append(key)
            continue
        declared_type = declared.get(key)
        if value_type is type(None):
            if declared_type is None:  # undeclared even if null: the full path says so
                return None
            continue
        if declared_type is None or _PY_TYPES[declared_type] is not value_type:
            return None
        props.append(key)
        if value_type is int:
            numbers.append(key)
        elif value_type is float:
            reals.append(key)
    sha256 = "sha256" in props
    return _Plan(item_type, _picker(tuple(props)), tuple(numbers), tuple(reals), sha256)


def _prepare_one(tx: Transaction, raw: object) -> NewItem:
    """The full check of one new item (and the error message if it is invalid)."""
    if not isinstance(raw, dict):
        raise bad_request("an item must be a JSON object")
    if "type" not in raw:
        raise bad_request("an item needs a 'type'")
    item_type = check_name(raw["type"], "item type")
    item_id = raw.get("id")
    item_id = secrets.token_hex(16) if item_id is None else check_id(item_id)
    created = raw.get("dateCreated")
    created = tx.now if created is None else check_value("dateCreated", "DateTime", created)
    modified = raw.get("dateModified")
    modified = tx.now if modified is None else check_value("dateModified", "DateTime", modified)
    deleted = raw.get("deleted")
    deleted = False if deleted is None else check_value("deleted", "Bool", deleted)
    declared = tx.schema.types.get(item_type, {})
    props: dict[str, Any] = {}
    for key, value in raw.items():
        if key in CORE_FIELDS:
            continue
        value_type = declared.get(key)
        if value_type is None:  # whatever the value: update_item says the same
            raise undeclared(tx, item_type, key)
        if value is not None:
            props[key] = check_value(key, value_type, value)
    if item_type == SCHEMA_ITEM_TYPE:
        missing = [k for k in ("itemType", "propertyName", "valueType") if k not in props]
        if missing:
            raise bad_request(f"an {SCHEMA_ITEM_TYPE} item needs {', '.join(missing)}")
        tx.declare(props["itemType"], props["propertyName"], props["valueType"])
    return item_id, item_type, created, modified, deleted, props, dumps(props)


def _fast(plan: _Plan, item: dict[str, Any], now: int) -> NewItem | None:
    """The item as checked by its shape's plan; None if it needs the full path."""
    for key in plan.numbers:
        if not INT_MIN <= item[key] <= INT_MAX:
            return None
    for key in plan.reals:
        if item[key] - item[key] != 0.0:  # inf or nan
            return None
    if plan.sha256 and not item["sha256"].islower():
        return None
    item_id = item.get("id")
    if item_id is None:
        item_id = secrets.token_hex(16)
    elif not (0 < len(item_id) <= MAX_ID and item_id.isprintable()):
        return None
    props = plan.pick(item)
    try:
        encoded = orjson.dumps(props).decode()
    except orjson.JSONEncodeError:  # e.g. a lone surrogate: let the full check say so
        return None
    created = item.get("dateCreated")
    modified = item.get("dateModified")
    return (
        item_id,
        plan.item_type,
        now if created is None else created,
        now if modified is None else modified,
        item.get("deleted") or False,
        props,
        encoded,
    )


def prepare_new_items(
    tx: Transaction, raw_items: list[Any], locate: Callable[[PodHTTPError, int], PodHTTPError]
) -> list[NewItem]:
    """Check new items; ItemPropertySchema items declare their property in ``tx``."""
    plans: dict[tuple[Any, ...], _Plan | None] = {}
    prepared: list[NewItem] = []
    now = tx.now
    last: tuple[Any, ...] = (None, None, None)
    plan: _Plan | None = None
    for index, raw in enumerate(raw_items):
        new: NewItem | None = None
        if type(raw) is dict:
            keys = tuple(raw)
            types = tuple(map(type, raw.values()))
            item_type = raw.get("type")
            # Consecutive items mostly share a shape: compare before hashing.
            if types != last[2] or keys != last[1] or item_type != last[0]:
                last = (item_type, keys, types)
                try:
                    if last in plans:
                        plan = plans[last]
                    else:
                        plan = plans[last] = _plan(tx, item_type, keys, types)
                except TypeError:  # an unhashable "type" value
                    plan = None
            if plan is not None:
                new = _fast(plan, raw, now)
        if new is None:
            try:
                new = _prepare_one(tx, raw)
            except PodHTTPError as error:
                raise locate(error, index) from None
        prepared.append(new)
    return prepared
