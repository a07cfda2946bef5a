"""What the Pod stores: names, value types, declarations and strict value checks.

A property must be declared for an item's type before an item may carry it,
and one property name has one value type across all types (compared
case-insensitively), so a search by property means the same thing everywhere.
The central item types of :mod:`importer.schema` are the built-in declarations.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from ._errors import bad_request, shown

__all__ = [
    "CORE_FIELDS",
    "INT_MAX",
    "INT_MIN",
    "NAME_RE",
    "SCHEMA_ITEM_TYPE",
    "VALUE_TYPES",
    "Schema",
    "builtin_declarations",
    "check_name",
    "check_value",
]

NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
"""Type, property and edge names (use with ``fullmatch``)."""

_MAX_NAME = 128

VALUE_TYPES = frozenset({"Text", "Integer", "Real", "Bool", "DateTime"})

CORE_FIELDS: dict[str, str] = {
    "id": "Text",
    "type": "Text",
    "dateCreated": "DateTime",
    "dateModified": "DateTime",
    "dateServerModified": "DateTime",
    "deleted": "Bool",
}
"""Fields every item has; always allowed, never declared."""

_CORE_LOWER = {name.lower(): name for name in CORE_FIELDS}

SCHEMA_ITEM_TYPE = "ItemPropertySchema"
_SCHEMA_ITEM_PROPS = {"itemType": "Text", "propertyName": "Text", "valueType": "Text"}

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

_SURROGATE = re.compile("[\ud800-\udfff]")


def builtin_declarations() -> dict[str, dict[str, str]]:
    """Type -> {property: value type} every store starts with."""
    from importer.schema import CENTRAL_TYPES

    declarations = {t.item_type: t.pod_schema() for t in CENTRAL_TYPES}
    declarations[SCHEMA_ITEM_TYPE] = dict(_SCHEMA_ITEM_PROPS)
    return declarations


def check_name(value: object, what: str) -> str:
    """``value`` if it is a valid type/property/edge name, else a 400."""
    if not isinstance(value, str) or len(value) > _MAX_NAME or not NAME_RE.fullmatch(value):
        raise bad_request(f"{what} {shown(value)} is not a valid name ([A-Za-z][A-Za-z0-9_]*)")
    return value


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _normal_sha256(value: Any) -> Any:
    """A ``sha256`` property as stored: hex in lower case, like the upload URLs the Pod matches.

    Anything that is not 64 hex digits is kept as given.
    """
    if type(value) is str and not value.islower() and _HEX64.fullmatch(value):
        return value.lower()
    return value


def _is_text(value: object) -> bool:
    return type(value) is str and (value.isascii() or _SURROGATE.search(value) is None)


def _text(value: Any) -> Any:
    return value if _is_text(value) else _INVALID


def _integer(value: Any) -> Any:
    return value if type(value) is int and INT_MIN <= value <= INT_MAX else _INVALID


def _real(value: Any) -> Any:
    if type(value) is float:
        return value if math.isfinite(value) else _INVALID
    if type(value) is int:
        # JSON has one kind of number: an integer of any size is a Real, held
        # as the nearest 64-bit float (as orjson already does beyond 64 bits).
        try:
            return float(value)
        except OverflowError:
            return _INVALID
    return _INVALID


def _bool(value: Any) -> Any:
    return value if type(value) is bool else _INVALID


_INVALID = object()

_CHECKERS: dict[str, Callable[[Any], Any]] = {
    "Text": _text,
    "Integer": _integer,
    "DateTime": _integer,
    "Real": _real,
    "Bool": _bool,
}


def check_value(name: str, value_type: str, value: object) -> Any:
    """``value`` as stored for a property of ``value_type``; a 400 if it is not one.

    Strict: a bool is not an Integer, a string is not a number.  An integer is
    accepted for a Real (JSON does not tell 1 from 1.0) and stored as a float.
    A ``sha256`` is stored (and so searched) in lower case.
    """
    checked = _CHECKERS[value_type](value)
    if checked is _INVALID:
        raise bad_request(
            f"property {name!r} is {value_type}; got {type(value).__name__} {shown(value, 40)}"
        )
    return _normal_sha256(checked) if name == "sha256" else checked


class Schema:
    """Declared properties, per type and by name; cheap to copy for a transaction."""

    def __init__(self) -> None:
        self.types: dict[str, dict[str, str]] = {}
        self.by_name: dict[str, str] = {}
        self._by_lower: dict[str, str] = {}

    @classmethod
    def of(cls, declarations: Iterable[tuple[str, str, str]]) -> Schema:
        schema = cls()
        for item_type, prop, value_type in declarations:
            schema._add(item_type, prop, value_type)
        return schema

    def copy(self) -> Schema:
        other = Schema()
        other.types = {t: dict(props) for t, props in self.types.items()}
        other.by_name = dict(self.by_name)
        other._by_lower = dict(self._by_lower)
        return other

    def _add(self, item_type: str, prop: str, value_type: str) -> None:
        self.types.setdefault(item_type, {})[prop] = value_type
        self.by_name[prop] = value_type
        self._by_lower[prop.lower()] = value_type

    def property_type(self, item_type: str, prop: str) -> str | None:
        props = self.types.get(item_type)
        return None if props is None else props.get(prop)

    def declare(self, item_type: str, prop: str, value_type: str) -> bool:
        """Add a declaration; False if it exists already, a 400 if it conflicts."""
        check_name(item_type, "item type")
        check_name(prop, "property name")
        if not isinstance(value_type, str) or value_type not in VALUE_TYPES:
            raise bad_request(
                f"property {prop!r}: value type {shown(value_type)} is not one of "
                f"{', '.join(sorted(VALUE_TYPES))}"
            )
        core = _CORE_LOWER.get(prop.lower())
        if core is not None:
            if core == prop and CORE_FIELDS[core] == value_type:
                return False
            raise bad_request(f"property {prop!r} clashes with the core field {core!r}")
        known = self._by_lower.get(prop.lower())
        if known is not None and known != value_type:
            raise bad_request(
                f"property {prop!r} can't be {value_type}: a property of that name "
                f"(case-insensitively) is already {known}"
            )
        if self.property_type(item_type, prop) is not None:
            return False
        self._add(item_type, prop, value_type)
        return True
