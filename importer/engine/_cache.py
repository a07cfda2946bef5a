"""A bounded LRU set/map: the engine's in-run memory never grows with the source."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
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
    """Least-recently-used map of at most ``capacity`` entries, keyed by digest.

    A miss only costs a question to the Pod, so forgetting is always safe;
    keys are kept as 128-bit digests, whose collisions are not a concern.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._data: OrderedDict[bytes, V] = OrderedDict()

    def __contains__(self, key: Key) -> bool:
        return _digest(key) in self._data

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Key, default: V | None = None) -> V | None:
        digest = _digest(key)
        value = self._data.get(digest, _MISSING)
        if value is _MISSING:
            return default
        self._data.move_to_end(digest)
        return value  # type: ignore[return-value]

    def put(self, key: Key, value: V) -> None:
        digest = _digest(key)
        self._data[digest] = value
        self._data.move_to_end(digest)
        if len(self._data) > self.capacity:
            self._data.popitem(last=False)

    def discard(self, key: Key) -> None:
        self._data.pop(_digest(key), None)
