"""A bounded LRU set/map: the engine's in-run memory never grows with the source."""

from __future__ import annotations

import hashlib
from typing import Generic, TypeVar

V = TypeVar("V")

Key = str | tuple[str, ...]

_MISSING = object()


def key_digest(key: Key) -> bytes:
    """16 bytes standing for the key: ids and edge triples cost the same, little, memory.

    The engine's own ids are 32 hex digits: those are their own exact 16-byte
    digest.  Anything else, edges included, is hashed to 16 bytes: an edge's
    exact bytes (its ends' 32 and its name) took 71 bytes a key instead of 49
    and saved 0.07 us of hashing, and edges are most of what a run remembers.
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
    """A map of about ``capacity`` recently used entries, keyed by digest.

    Two generations of plain dicts: new entries go to the young one; when it
    holds half the capacity, the old one is dropped and the young one ages.
    Every operation is O(1), an entry costs no more than a dict slot, and an
    entry used since the last turn survives it.  A miss only costs a question
    to the Pod, so forgetting is always safe; keys are 16-byte digests, whose
    collisions are not a concern.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(2, capacity)
        self._young: dict[bytes, V] = {}
        self._old: dict[bytes, V] = {}

    def __contains__(self, key: Key) -> bool:
        return self.has_digest(key_digest(key))

    def has_digest(self, digest: bytes) -> bool:
        return digest in self._young or digest in self._old

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def get(self, key: Key, default: V | None = None) -> V | None:
        return self.get_digest(key_digest(key), default)

    def get_digest(self, digest: bytes, default: V | None = None) -> V | None:
        value = self._young.get(digest, _MISSING)
        if value is _MISSING:
            value = self._old.get(digest, _MISSING)
            if value is _MISSING:
                return default
            self._store(digest, value)  # type: ignore[arg-type]
        return value  # type: ignore[return-value]

    def put(self, key: Key, value: V) -> None:
        self._store(key_digest(key), value)

    def put_digest(self, digest: bytes, value: V) -> None:
        """``put`` for a key whose :func:`key_digest` the caller already has."""
        self._store(digest, value)

    def _store(self, digest: bytes, value: V) -> None:
        self._young[digest] = value
        if len(self._young) >= self.capacity // 2:
            self._old, self._young = self._young, {}

    def discard(self, key: Key) -> None:
        digest = key_digest(key)
        self._young.pop(digest, None)
        self._old.pop(digest, None)
