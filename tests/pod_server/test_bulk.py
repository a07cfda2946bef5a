"""bulk: section order, results, and all-or-nothing."""

from __future__ import annotations

from .conftest import PodCaller


def test_all_sections_in_order(pod: PodCaller) -> None:
    pod.ok("create_item", {"type": "Person", "id": "old", "displayName": "Old"})
    result = pod.ok(
        "bulk",
        {
            "createItems": [
                {"type": "Person", "id": "a", "displayName": "A"},
                {"type": "Person", "id": "b"},
            ],
            # Updates and deletes see the items created before them.
            "updateItems": [{"id": "b", "displayName": "B"}, {"id": "old", "email": "o@x"}],
            "deleteItems": ["a"],
            "createEdges": [{"_source": "a", "_target": "b", "_name": "friend"}],
            "search": [{"type": "Person", "deleted": False}, {"id": "a", "[[edges]]": {}}],
        },
    )
    assert result["createItems"] == ["a", "b"]
    assert len(result["createEdges"]) == 1
    first, second = result["search"]
    assert [(i["id"], i.get("displayName"), i.get("email")) for i in first] == [
        ("old", "Old", "o@x"),
        ("b", "B", None),
    ]
    assert second[0]["deleted"] is True
    assert second[0]["[[edges]]"][0]["_item"]["id"] == "b"
    assert set(result) == {"createItems", "createEdges", "search"}


def test_empty_and_partial_bulks(pod: PodCaller) -> None:
    assert pod.ok("bulk", {}) == {}
    assert pod.ok("bulk", {"createItems": []}) == {"createItems": []}
    assert pod.ok("bulk", {"search": [{"type": "Person"}]}) == {"search": [[]]}


def _state(pod: PodCaller) -> list[tuple[str, bool, str | None]]:
    return [
        (item["id"], item["deleted"], item.get("displayName"))
        for item in pod.search({"type": "Person"})
    ] + [(e["name"], False, e["item"]["id"]) for e in pod.ok("get_edges", {"item": "keep"})]


def test_any_error_applies_nothing(pod: PodCaller) -> None:
    pod.ok("create_item", {"type": "Person", "id": "keep", "displayName": "Keep"})
    before = _state(pod)
    good: dict[str, list[object]] = {
        "createItems": [{"type": "Person", "id": f"n{n}", "displayName": "new"} for n in range(50)],
        "updateItems": [{"id": "keep", "displayName": "changed"}],
        "deleteItems": ["keep"],
        "createEdges": [{"_source": "keep", "_target": "n1", "_name": "knows"}],
    }
    failures = [
        ("createItems", 37, 400, {"type": "Person", "id": "bad", "age": 1}),
        ("createItems", 10, 409, {"type": "Person", "id": "keep"}),
        ("createItems", 20, 409, {"type": "Person", "id": "n3"}),
        ("updateItems", 1, 404, {"id": "ghost", "displayName": "x"}),
        ("updateItems", 1, 400, {"id": "n2", "displayName": 7}),
        ("deleteItems", 1, 404, "ghost"),
        ("createEdges", 1, 404, {"_source": "keep", "_target": "ghost", "_name": "x"}),
        ("createEdges", 1, 409, {"_source": "keep", "_target": "n1", "_name": "knows"}),
        ("search", 0, 400, {"nope": 1}),
    ]
    for section, index, status, bad in failures:
        bulk = {key: list(value) for key, value in good.items()}
        bulk.setdefault(section, [])
        bulk[section].insert(index, bad)
        response = pod.call("bulk", bulk)
        assert response.status_code == status, (section, response.text)
        body = response.json()
        assert body["section"] == section
        assert body["index"] == index
        assert body["error"].startswith(f"{section}[{index}]")
        assert _state(pod) == before, section
    # The good bulk itself applies.
    pod.ok("bulk", good)
    assert len(pod.search({"type": "Person"})) == 51


def test_bulk_shape_errors(pod: PodCaller) -> None:
    pod.fails("bulk", [], 400)
    pod.fails("bulk", {"createItems": {}}, 400)
    pod.fails("bulk", {"frobnicate": []}, 400)
    pod.fails("bulk", {"deleteItems": [5]}, 400)


def test_many_items_and_edges_in_one_bulk(pod: PodCaller) -> None:
    count = 3000
    items = [
        {"type": "Label", "id": f"l{n}", "name": f"label {n}", "externalId": str(n)}
        for n in range(count)
    ]
    edges = [
        {"_source": f"l{n}", "_target": f"l{(n + 1) % count}", "_name": "next"}
        for n in range(count)
    ]
    result = pod.ok("bulk", {"createItems": items, "createEdges": edges})
    assert len(result["createItems"]) == count == len(set(result["createEdges"]))
    assert pod.search({"externalId": "1234"})[0]["id"] == "l1234"
    (item,) = pod.search({"id": "l2999", "[[edges]]": {}})
    assert item["[[edges]]"][0]["_item"]["id"] == "l0"
