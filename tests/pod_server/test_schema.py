"""Schema declarations: built-ins, v4 ItemPropertySchema items, v5 schema, conflicts."""

from __future__ import annotations

import pytest

from importer.schema import CENTRAL_TYPES

from .conftest import PodCaller


def _declare(pod: PodCaller, item_type: str, prop: str, value_type: str) -> str:
    item = {
        "type": "ItemPropertySchema",
        "itemType": item_type,
        "propertyName": prop,
        "valueType": value_type,
    }
    result: str = pod.ok("create_item", item)
    return result


def test_central_types_are_declared_from_importer_schema(pod: PodCaller) -> None:
    for item_type in CENTRAL_TYPES:
        schema = item_type.pod_schema()
        sample = {"Text": "x", "Integer": 1, "Real": 1.5, "Bool": True, "DateTime": 1}
        item = {"type": item_type.item_type, **{p: sample[v] for p, v in schema.items()}}
        item_id = pod.ok("create_item", item)
        (stored,) = pod.ok("get_item", item_id)
        for prop in schema:
            if prop not in ("keystr", "nonce"):
                assert stored[prop] == item[prop], (item_type.item_type, prop)


def test_v4_declaration_then_use_in_a_later_request(pod: PodCaller) -> None:
    pod.fails("create_item", {"type": "Dog", "age": 3}, 400)
    _declare(pod, "Dog", "age", "Integer")
    dog = pod.ok("create_item", {"type": "Dog", "age": 3})
    assert pod.ok("get_item", dog)[0]["age"] == 3
    pod.fails("create_item", {"type": "Dog", "age": "three"}, 400)
    # The declaration is itself an item.
    (declaration,) = pod.search({"type": "ItemPropertySchema", "itemType": "Dog"})
    assert declaration["propertyName"] == "age"


def test_duplicate_declaration_is_ignored(pod: PodCaller) -> None:
    _declare(pod, "Dog", "name", "Text")
    _declare(pod, "Dog", "name", "Text")
    pod.schema({"Dog": {"name": "Text"}})
    assert pod.ok("create_item", {"type": "Dog", "name": "Rex"})


def test_one_type_per_property_name_case_insensitively(pod: PodCaller) -> None:
    _declare(pod, "Dog", "weight", "Real")
    # The same name on another type must have the same type...
    _declare(pod, "Cat", "weight", "Real")
    message = pod.fails(
        "create_item",
        {
            "type": "ItemPropertySchema",
            "itemType": "Cat",
            "propertyName": "Weight",
            "valueType": "Integer",
        },
        400,
    )
    assert "Weight" in message
    # ...also through v5, and a built-in name counts as well.
    response = pod.http.post(
        f"/v5/{pod.owner}/schema",
        json={"auth": pod.auth, "payload": {"nodes": {"Cat": {"properties": {"SHA256": "Bool"}}}}},
    )
    assert response.status_code == 400
    pod.fails("create_item", {"type": "Cat", "SHA256": True}, 400)


def test_declaration_and_its_use_cannot_share_a_bulk(pod: PodCaller) -> None:
    bulk = {
        "createItems": [
            {
                "type": "ItemPropertySchema",
                "itemType": "Fish",
                "propertyName": "fins",
                "valueType": "Integer",
            },
            {"type": "Fish", "fins": 2},
        ]
    }
    message = pod.fails("bulk", bulk, 400)
    assert "separate requests" in message
    # Nothing of the bulk was applied: the property is still undeclared.
    pod.fails("create_item", {"type": "Fish", "fins": 2}, 400)
    assert pod.search({"type": "ItemPropertySchema", "itemType": "Fish"}) == []


def test_v5_schema_declares_all_or_nothing(pod: PodCaller) -> None:
    payload = {
        "nodes": {
            "Bird": {"properties": {"wingspan": "Real", "song": "Text"}},
            "Nest": {"properties": {"elevation": "Nope"}},
        },
        "edges": {"nest": [{"source": "Bird", "target": "Nest"}]},
        "meta": {"name": "birds", "url": "https://example.org", "version": "1"},
    }
    response = pod.http.post(f"/v5/{pod.owner}/schema", json={"auth": pod.auth, "payload": payload})
    assert response.status_code == 400, response.text
    assert "Nest" in response.json()["error"]
    pod.fails("create_item", {"type": "Bird", "song": "tweet"}, 400)
    payload["nodes"]["Nest"] = {"properties": {"elevation": "Real"}}  # type: ignore[index]
    response = pod.http.post(f"/v5/{pod.owner}/schema", json={"auth": pod.auth, "payload": payload})
    assert response.status_code == 200, response.text
    assert response.json() == {}
    bird = pod.ok("create_item", {"type": "Bird", "song": "tweet", "wingspan": 0.3})
    nest = pod.ok("create_item", {"type": "Nest", "elevation": 2})
    assert pod.ok("create_edge", {"_source": bird, "_target": nest, "_name": "nest"})


def test_invalid_declarations_are_400(pod: PodCaller) -> None:
    for declaration in (
        {"itemType": "Dog", "propertyName": "bad name", "valueType": "Text"},
        {"itemType": "Dog", "propertyName": "x", "valueType": "Blob"},
        {"itemType": "1Dog", "propertyName": "x", "valueType": "Text"},
        {"itemType": "Dog", "propertyName": "x"},
        {"itemType": "Dog", "propertyName": "deleted", "valueType": "Text"},
    ):
        pod.fails("create_item", {"type": "ItemPropertySchema", **declaration}, 400)


@pytest.mark.parametrize("value_type", [["Integer"], {"type": "Integer"}, 5, None])
def test_v5_value_type_that_is_not_a_string_is_400(pod: PodCaller, value_type: object) -> None:
    payload = {"nodes": {"Dog": {"properties": {"name": "Text", "age": value_type}}}}
    response = pod.http.post(f"/v5/{pod.owner}/schema", json={"auth": pod.auth, "payload": payload})
    assert response.status_code == 400, response.text
    assert "'age'" in response.json()["error"]
    pod.fails("create_item", {"type": "Dog", "name": "Rex"}, 400)  # nothing declared


def test_declarations_cannot_be_changed_by_update(pod: PodCaller) -> None:
    declaration = _declare(pod, "Dog", "legs", "Integer")
    pod.fails("update_item", {"id": declaration, "valueType": "Text"}, 400)
    pod.fails("create_item", {"type": "Dog", "legs": "four"}, 400)
