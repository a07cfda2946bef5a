"""The engine's bounded cache: size stays bounded, recent entries survive."""

from __future__ import annotations

from importer.engine._cache import LRU


def _id(i: int) -> str:
    return f"{i:032x}"


def test_size_is_bounded_and_recent_entries_survive() -> None:
    cache: LRU[str] = LRU(1000)
    for i in range(10_000):
        cache.put(_id(i), str(i))
        assert len(cache) <= 1000
    assert cache.get(_id(9_999)) == "9999"
    assert _id(9_600) in cache and _id(0) not in cache


def test_an_entry_used_since_the_last_turn_survives_it() -> None:
    cache: LRU[str] = LRU(100)
    cache.put(_id(0), "kept")
    for i in range(1, 500):
        assert cache.get(_id(0)) == "kept"  # used all along: never forgotten
        cache.put(_id(i), "")
    assert _id(0) in cache


def test_edge_keys_and_other_ids_are_digested_and_discarded() -> None:
    cache: LRU[None] = LRU(10)
    cache.put(("a" * 32, "label", "b" * 32), None)
    cache.put("not-hex-id", None)
    assert ("a" * 32, "label", "b" * 32) in cache and "not-hex-id" in cache
    assert ("a" * 32, "label", "c" * 32) not in cache
    cache.discard("not-hex-id")
    assert "not-hex-id" not in cache
