"""create_edge, get_edges, delete_edge_by_source_target."""

from __future__ import annotations

from .conftest import PodCaller


def _people(pod: PodCaller, *ids: str) -> None:
    for item_id in ids:
        pod.ok("create_item", {"type": "Person", "id": item_id, "displayName": item_id.upper()})


def test_edges_both_directions(pod: PodCaller) -> None:
    _people(pod, "a", "b", "c")
    edge_id = pod.ok("create_edge", {"_source": "a", "_target": "b", "_name": "friend"})
    assert isinstance(edge_id, str) and edge_id
    pod.ok("create_edge", {"_source": "a", "_target": "c", "_name": "friend"})
    pod.ok("create_edge", {"_source": "c", "_target": "a", "_name": "follows"})

    outgoing = pod.ok("get_edges", {"item": "a", "direction": "Outgoing", "expandItems": True})
    assert [(e["name"], e["item"]["id"]) for e in outgoing] == [("friend", "b"), ("friend", "c")]
    assert outgoing[0]["item"]["displayName"] == "B"

    incoming = pod.ok("get_edges", {"item": "a", "direction": "Incoming", "expandItems": True})
    assert [(e["name"], e["item"]["id"]) for e in incoming] == [("follows", "c")]

    bare = pod.ok("get_edges", {"item": "a", "direction": "Outgoing", "expandItems": False})
    assert [e["item"] for e in bare] == [{"id": "b"}, {"id": "c"}]


def test_duplicate_edge_is_conflict(pod: PodCaller) -> None:
    _people(pod, "a", "b")
    edge = {"_source": "a", "_target": "b", "_name": "friend"}
    pod.ok("create_edge", edge)
    pod.fails("create_edge", edge, 409)
    # Another name or the other direction is another edge.
    pod.ok("create_edge", {**edge, "_name": "colleague"})
    pod.ok("create_edge", {"_source": "b", "_target": "a", "_name": "friend"})
    assert len(pod.ok("get_edges", {"item": "a", "direction": "Outgoing"})) == 2


def test_edge_to_missing_item_is_404(pod: PodCaller) -> None:
    _people(pod, "a")
    message = pod.fails("create_edge", {"_source": "a", "_target": "nope", "_name": "x"}, 404)
    assert "target" in message
    pod.fails("create_edge", {"_source": "nope", "_target": "a", "_name": "x"}, 404)
    assert pod.ok("get_edges", {"item": "a"}) == []
    pod.fails("get_edges", {"item": "nope"}, 404)


def test_delete_edge(pod: PodCaller) -> None:
    _people(pod, "a", "b")
    edge = {"_source": "a", "_target": "b", "_name": "friend"}
    pod.ok("create_edge", edge)
    assert pod.ok("delete_edge_by_source_target", edge) == {}
    assert pod.ok("get_edges", {"item": "a"}) == []
    pod.fails("delete_edge_by_source_target", edge, 404)
    pod.ok("create_edge", edge)  # may be created again


def test_malformed_edges_are_400(pod: PodCaller) -> None:
    _people(pod, "a", "b")
    for edge in (
        {"_source": "a", "_target": "b"},
        {"_source": "a", "_target": "b", "_name": "bad name"},
        {"_source": 1, "_target": "b", "_name": "x"},
        ["a", "b", "x"],
    ):
        pod.fails("create_edge", edge, 400)
    pod.fails("get_edges", {"item": "a", "direction": "Sideways"}, 400)
    pod.fails("get_edges", {"item": "a", "expandItems": "yes"}, 400)
