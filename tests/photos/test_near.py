"""The near-duplicate index: nearest first, bounded, and growing between questions."""

from __future__ import annotations

from connectors.photos._near import NearIndex


def test_nearest_first_then_oldest_within_the_distance() -> None:
    index = NearIndex(max_distance=4)
    index.add("far", 0xFFFF)  # 16 bits from 0
    index.add("three", 0b111)
    index.add("one", 0b1)
    index.add("also-one", 0b10)
    assert index.near(0) == ["one", "also-one", "three"]
    assert index.near(0, exclude="one") == ["also-one", "three"]
    assert NearIndex(max_distance=0).near(0) == []


def test_the_index_grows_after_being_asked_and_caps_its_answers() -> None:
    index = NearIndex(max_distance=64, max_links=3)
    for number in range(5):
        index.add(f"p{number}", number)
        # near() views the hashes with numpy; the next add() must still grow them.
        assert len(index.near(number)) == min(number + 1, 3)
    index.add("p0", 12345)  # already present: not added again
    assert len(index) == 5
    assert index.near(2**64 - 1, exclude="p4")[0] == "p3"  # 62 bits away; p4 excluded
