"""search: equality, ranges, order, the _limit tie rule, _offset, edges."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from .conftest import PodCaller


def _labels(pod: PodCaller, *names: str) -> list[str]:
    """Labels created in ONE transaction (they share a dateServerModified)."""
    items = [{"type": "Label", "id": name, "name": name} for name in names]
    ids: list[str] = pod.ok("bulk", {"createItems": items})["createItems"]
    return ids


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def test_equality_filters(pod: PodCaller) -> None:
    pod.ok("create_item", {"type": "Person", "id": "a", "displayName": "Ann", "email": "a@x"})
    pod.ok("create_item", {"type": "Person", "id": "b", "displayName": "Bob"})
    pod.ok("create_item", {"type": "Account", "id": "c", "displayName": "Ann", "isMe": True})
    pod.ok("delete_item", "b")
    assert _ids(pod.search({"displayName": "Ann"})) == ["a", "c"]
    assert _ids(pod.search({"type": "Person", "displayName": "Ann"})) == ["a"]
    assert _ids(pod.search({"type": "Person", "deleted": False})) == ["a"]
    assert _ids(pod.search({"type": "Person", "deleted": True})) == ["b"]
    assert _ids(pod.search({"id": "c"})) == ["c"]
    assert _ids(pod.search({"isMe": True})) == ["c"]
    assert _ids(pod.search({"type": "Person", "email": None})) == ["b"]
    assert pod.search({"displayName": "Nobody"}) == []
    # Deleting is a write: b moved to the end.
    assert _ids(pod.search({})) == ["a", "c", "b"]


def test_filters_are_typed_and_known(pod: PodCaller) -> None:
    pod.fails("search", {"displayName": 5}, 400)
    pod.fails("search", {"isMe": 1}, 400)
    pod.fails("search", {"neverDeclared": "x"}, 400)
    pod.fails("search", {"dateServerModified>": 5}, 400)
    pod.fails("search", {"_limit": -1}, 400)
    pod.fails("search", {"_limit": True}, 400)
    pod.fails("search", {"_offset": "1"}, 400)
    pod.fails("search", {"_sortOrder": "Up"}, 400)
    pod.fails("search", {"[[edges]]": {"friend": {}}}, 400)
    pod.fails("search", ["not", "a", "filter"], 400)


def test_date_server_modified_strictly_increases_per_transaction(pod: PodCaller) -> None:
    for number in range(15):
        pod.ok("create_item", {"type": "Label", "id": f"l{number}"})
    pod.ok("update_item", {"id": "l0", "name": "changed"})
    pod.ok("bulk", {"createItems": [{"type": "Label", "id": f"m{n}"} for n in range(3)]})
    items = pod.search({"type": "Label"})
    assert _ids(items) == [f"l{n}" for n in range(1, 15)] + ["l0", "m0", "m1", "m2"]
    stamps = [item["dateServerModified"] for item in items]
    assert all(a < b for a, b in itertools.pairwise(stamps[:15]))
    assert stamps[15] == stamps[16] == stamps[17] > stamps[14]


def test_ranges_and_descending_order(pod: PodCaller) -> None:
    _labels(pod, "a1", "a2")
    _labels(pod, "b1")
    _labels(pod, "c1", "c2")
    stamps = {item["id"]: item["dateServerModified"] for item in pod.search({"type": "Label"})}
    middle = stamps["b1"]
    assert _ids(pod.search({"dateServerModified>=": middle})) == ["b1", "c1", "c2"]
    assert _ids(pod.search({"dateServerModified<": middle})) == ["a1", "a2"]
    assert _ids(pod.search({"dateServerModified>=": middle, "dateServerModified<": middle + 1}))
    assert _ids(pod.search({"type": "Label", "_sortOrder": "Desc"})) == [
        "c2",
        "c1",
        "b1",
        "a2",
        "a1",
    ]


def test_limit_extends_over_a_shared_timestamp(pod: PodCaller) -> None:
    _labels(pod, "a1", "a2", "a3")
    _labels(pod, "b1")
    _labels(pod, "c1", "c2")
    # Asc: the first item's transaction comes whole.
    assert _ids(pod.search({"type": "Label", "_limit": 1})) == ["a1", "a2", "a3"]
    assert _ids(pod.search({"type": "Label", "_limit": 3})) == ["a1", "a2", "a3"]
    assert _ids(pod.search({"type": "Label", "_limit": 4})) == ["a1", "a2", "a3", "b1"]
    assert _ids(pod.search({"type": "Label", "_limit": 5})) == ["a1", "a2", "a3", "b1", "c1", "c2"]
    assert pod.search({"type": "Label", "_limit": 0}) == []
    # Desc: "last added" brings the newest transaction whole.
    assert _ids(pod.search({"type": "Label", "_sortOrder": "Desc", "_limit": 1})) == ["c2", "c1"]
    last = pod.search({"type": "Label", "name": "b1", "_sortOrder": "Desc", "_limit": 1})
    assert _ids(last) == ["b1"]


def test_offset(pod: PodCaller) -> None:
    _labels(pod, "a1", "a2", "a3")
    _labels(pod, "b1")
    assert _ids(pod.search({"type": "Label", "_offset": 2})) == ["a3", "b1"]
    # The tie rule applies from the page's last item onward.
    assert _ids(pod.search({"type": "Label", "_offset": 1, "_limit": 1})) == ["a2", "a3"]
    assert pod.search({"type": "Label", "_offset": 10}) == []


@pytest.mark.parametrize("order", ["Asc", "Desc"])
def test_cursor_paging_sees_every_item_once(pod: PodCaller, order: str) -> None:
    expected: list[str] = []
    for batch in range(6):
        expected += _labels(pod, *(f"x{batch}-{n}" for n in range(batch % 3 + 1)))
    seen: list[str] = []
    cursor: dict[str, int] = {}
    while True:
        page = pod.search({"type": "Label", "_sortOrder": order, "_limit": 2, **cursor})
        if not page:
            break
        seen += _ids(page)
        last = page[-1]["dateServerModified"]
        cursor = (
            {"dateServerModified>=": last + 1} if order == "Asc" else {"dateServerModified<": last}
        )
    assert sorted(seen) == sorted(expected)
    assert len(seen) == len(set(seen))


def test_edges_in_search_results(pod: PodCaller) -> None:
    pod.ok(
        "bulk",
        {
            "createItems": [
                {"type": "EmailMessage", "id": "m", "subject": "hi"},
                {"type": "Account", "id": "from", "handle": "a@x"},
                {"type": "Label", "id": "inbox", "name": "INBOX"},
            ],
            "createEdges": [
                {"_source": "m", "_target": "from", "_name": "sender"},
                {"_source": "m", "_target": "inbox", "_name": "label"},
            ],
        },
    )
    (message,) = pod.search({"type": "EmailMessage", "[[edges]]": {}})
    assert [(e["_edge"], e["_item"]["id"]) for e in message["[[edges]]"]] == [
        ("sender", "from"),
        ("label", "inbox"),
    ]
    assert message["[[edges]]"][0]["_item"]["handle"] == "a@x"
    (label,) = pod.search({"type": "Label", "~[[edges]]": {}, "[[edges]]": {}})
    assert [(e["_edge"], e["_item"]["id"]) for e in label["~[[edges]]"]] == [("label", "m")]
    assert label["[[edges]]"] == []
    # Without the keys, no edges are added.
    assert "[[edges]]" not in pod.search({"type": "EmailMessage"})[0]


@pytest.mark.parametrize("key", ["_limit", "_offset"])
def test_limit_and_offset_beyond_64_bits_are_400(pod: PodCaller, key: str) -> None:
    """SQLite takes signed 64-bit counts: a bigger one is the client's mistake, not a 500."""
    _labels(pod, "a1")
    largest = pod.search({"type": "Label", key: 2**63 - 1})
    assert _ids(largest) == (["a1"] if key == "_limit" else [])
    assert key in pod.fails("search", {"type": "Label", key: 2**63}, 400)
    pod.fails("search", {key: 2**70}, 400)
    response = pod.call("bulk", {"search": [{"type": "Label"}, {key: 2**63}]})
    assert response.status_code == 400, response.text
    assert response.json()["section"] == "search" and response.json()["index"] == 1
