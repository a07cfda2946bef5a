"""A bounded LRU set/map: the engine's in-run memory never grows with the source."""

from __future__ import annotations

import hashlib
from typing import Generic, TypeVar

V = TypeVar("V")

Key = str | tuple[str, ...]

_MISSING = object()


def _digest(key: Key) -> bytes:
    """16 bytes standing for the key: ids and edge triples cost the same, little, memory.

    The engine's own ids are 32 hex digits: those are their own exact digest.
    """
    if isinstance(key, str):
        if len(key) == 32:
            try:
                return bytes.fromhex(key)
            except ValueError:
                pass
        text = key
    else:
        text = "\x00".join(key)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class LRU(Generic[V]):
    """A map of at most ``capacity`` entries, keyed by digest; the oldest put goes first.

    A miss only costs a question to the Pod, so forgetting is always safe;
    keys are kept as 16-byte digests, whose collisions are not a concern.
    A plain dict (insertion ordered, refreshed on ``put``) costs less memory
    per entry than an OrderedDict, which matters more here than exact
    least-recently-used order.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._data: dict[bytes, V] = {}

    def __contains__(self, key: Key) -> bool:
        return _digest(key) in self._data

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Key, default: V | None = None) -> V | None:
        value = self._data.get(_digest(key), _MISSING)
        return default if value is _MISSING else value  # type: ignore[return-value]

    def put(self, key: Key, value: V) -> None:
        digest = _digest(key)
        data = self._data
        data.pop(digest, None)
        data[digest] = value
        if len(data) > self.capacity:
            del data[next(iter(data))]

    def discard(self, key: Key) -> None:
        self._data.pop(_digest(key), None)
