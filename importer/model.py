"""What a connector yields: items, edges, file payloads and checkpoints.

Items are pydantic models whose field annotations double as the Pod schema
(``str`` -> Text, ``int`` -> Integer, ``float`` -> Real, ``bool`` -> Bool,
:data:`DateTime` -> DateTime).  Every item gets a deterministic id from its
type and natural key, so the same thing seen twice is one item.
"""

from __future__ import annotations

import hashlib
import secrets
import types
import typing
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict

__all__ = [
    "Checkpoint",
    "DateTime",
    "Edge",
    "FilePayload",
    "Item",
    "Record",
    "Update",
    "derive_id",
    "pod_value_type",
]

_ID_NAMESPACE = "importer/v1"


class _DateTimeMarker:
    """Marks an ``int`` field as a Pod ``DateTime`` (milliseconds since the epoch)."""


def _to_millis(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    return value


DateTime = Annotated[int, BeforeValidator(_to_millis), _DateTimeMarker()]
"""Integer milliseconds since the Unix epoch; a ``datetime`` is converted."""


def derive_id(item_type: str, *key: str) -> str:
    """Stable 32-hex id for an item of ``item_type`` with natural key ``key``."""
    # Each part followed by a NUL, hashed in one call (ids are stored: the
    # bytes hashed must never change).
    text = "\x00".join((_ID_NAMESPACE, item_type, *key)) + "\x00"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _unwrap_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def pod_value_type(annotation: Any) -> str | None:
    """The Pod value type for a field annotation, or None if it has none."""
    annotation = _unwrap_optional(annotation)
    if typing.get_origin(annotation) is Annotated:
        base, *meta = typing.get_args(annotation)
        if any(isinstance(m, _DateTimeMarker) for m in meta):
            return "DateTime"
        return pod_value_type(base)
    return {str: "Text", int: "Integer", float: "Real", bool: "Bool"}.get(annotation)


_BASE_FIELDS = frozenset({"id", "dateCreated", "dateModified", "deleted"})


class Item(BaseModel):
    """A Pod item.  Subclass it per item type; the class name is the type.

    ``key_fields`` names the properties that identify the thing in the world
    (its natural key); ``mutable_fields`` the ones a re-import may change.
    ``clears_missing``: a sighting gives all of the mutable fields, so one left
    None is erased in the Pod (else None means "not known here" and is kept).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    item_type: ClassVar[str] = "Item"
    key_fields: ClassVar[tuple[str, ...]] = ()
    mutable_fields: ClassVar[frozenset[str]] = frozenset()
    clears_missing: ClassVar[bool] = False

    id: str | None = None
    dateCreated: DateTime | None = None
    dateModified: DateTime | None = None
    deleted: bool | None = None

    _plain_dump: ClassVar[bool] = False
    """Every field holds a JSON scalar and nothing customises serialisation:
    ``to_pod`` may read the instance dict instead of calling ``model_dump``."""
    _sorted_mutable: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "item_type" not in cls.__dict__:
            cls.item_type = cls.__name__
        cls._sorted_mutable = tuple(sorted(cls.mutable_fields))
        decorators = cls.__pydantic_decorators__
        cls._plain_dump = (
            not decorators.field_serializers
            and not decorators.model_serializers
            and not decorators.computed_fields
            and all(
                info.alias is None
                and info.serialization_alias is None
                and not info.exclude
                and (name in _BASE_FIELDS or pod_value_type(info.annotation) is not None)
                for name, info in cls.model_fields.items()
            )
        )

    @classmethod
    def pod_schema(cls) -> dict[str, str]:
        """Property name -> Pod value type, for every declared property."""
        schema: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            if name in _BASE_FIELDS:
                continue
            value_type = pod_value_type(info.annotation)
            if value_type is None:
                # Annotated metadata is kept on FieldInfo, not the annotation.
                if any(isinstance(m, _DateTimeMarker) for m in info.metadata):
                    value_type = "DateTime"
                else:
                    raise TypeError(f"{cls.__name__}.{name}: unsupported type {info.annotation!r}")
            schema[name] = value_type
        return schema

    def key_values(self) -> tuple[str, ...]:
        """The natural key as text; override to normalise (e.g. lowercase)."""
        values = []
        for name in self.key_fields:
            value = getattr(self, name)
            if value is None or value == "":
                raise ValueError(f"{self.item_type} has no value for key field {name!r}")
            values.append(str(value))
        return tuple(values)

    def ensure_id(self) -> str:
        """The item's id: explicit, derived from its natural key, or random."""
        item_id = self.id
        if item_id is None:
            if self.key_fields:
                item_id = derive_id(self.item_type, *self.key_values())
            else:
                item_id = secrets.token_hex(16)
            # A str made here needs no validation: set it the cheap way
            # (this runs once per record the engine sees).
            self.__dict__["id"] = item_id
            self.__pydantic_fields_set__.add("id")
        return item_id

    def to_pod(self) -> dict[str, Any]:
        """The flat JSON object the Pod API takes (None-valued properties left out)."""
        self.ensure_id()
        if self._plain_dump and not self.__pydantic_extra__:
            data = {k: v for k, v in self.__dict__.items() if v is not None}
        else:
            data = self.model_dump(exclude_none=True)
        data["type"] = self.item_type
        return data

    def mutable_values(self, *, erasing: bool = False) -> dict[str, Any]:
        """The mutable properties that are set, for update comparison.

        ``erasing`` (a full sighting, not an ``Update``), of a type that
        ``clears_missing``: the unset ones too, as None.
        """
        if not self._sorted_mutable:
            return {}
        values = self.__dict__
        if erasing and self.clears_missing:
            return {name: values.get(name) for name in self._sorted_mutable}
        return {name: values[name] for name in self._sorted_mutable if values.get(name) is not None}


@dataclass(frozen=True, slots=True)
class Edge:
    """A directed, named edge; ends are items (created if needed) or ids."""

    source: Item | str
    name: str
    target: Item | str

    @staticmethod
    def _end_id(end: Item | str) -> str:
        return end if isinstance(end, str) else end.ensure_id()

    @property
    def source_id(self) -> str:
        return self._end_id(self.source)

    @property
    def target_id(self) -> str:
        return self._end_id(self.target)

    def items(self) -> Iterator[Item]:
        """The ends given as items, which must exist before the edge does."""
        for end in (self.source, self.target):
            if isinstance(end, Item):
                yield end


FileContent = bytes | Path | AsyncIterable[bytes]


@dataclass(slots=True)
class FilePayload:
    """The bytes of a ``File`` item; yielding it yields the item as well."""

    file: Item
    content: FileContent = field(repr=False)

    @property
    def sha256(self) -> str:
        value = getattr(self.file, "sha256", None)
        if not value:
            raise ValueError("a FilePayload's File item needs its sha256")
        return str(value)

    @property
    def size(self) -> int | None:
        if isinstance(self.content, bytes):
            return len(self.content)
        if isinstance(self.content, Path):
            return self.content.stat().st_size
        return None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """ "Everything yielded before this is covered": JSON-able state per stream."""

    state: Any
    stream: str = "default"


@dataclass(frozen=True, slots=True)
class Update:
    """Change the mutable properties of an item *if it exists*; never creates it.

    For sources that report changes (IMAP flag changes) without the whole record.
    """

    item: Item


Record = Item | Edge | FilePayload | Checkpoint | Update
