"""create/get/update/delete_item over a socket: shapes, defaults and strict types."""

from __future__ import annotations

import time

import pytest

from .conftest import PodCaller


def test_create_and_get_item_round_trip(pod: PodCaller) -> None:
    before = int(time.time() * 1000)
    item_id = pod.ok("create_item", {"type": "Person", "id": "ann", "displayName": "Ann"})
    assert item_id == "ann"
    (item,) = pod.ok("get_item", "ann")
    assert item["id"] == "ann"
    assert item["type"] == "Person"
    assert item["displayName"] == "Ann"
    assert item["deleted"] is False
    # dateCreated/dateModified default to now; dateServerModified is the Pod's.
    for field in ("dateCreated", "dateModified", "dateServerModified"):
        assert before - 5 <= item[field] <= int(time.time() * 1000) + 5


def test_get_item_of_unknown_id_is_empty_list(pod: PodCaller) -> None:
    assert pod.ok("get_item", "nobody") == []


def test_create_item_generates_an_id(pod: PodCaller) -> None:
    item_id = pod.ok("create_item", {"type": "Label", "name": "inbox"})
    assert isinstance(item_id, str) and len(item_id) == 32
    assert pod.ok("get_item", item_id)[0]["name"] == "inbox"


def test_client_dates_are_kept_and_server_date_is_not(pod: PodCaller) -> None:
    pod.ok(
        "create_item",
        {
            "type": "Label",
            "id": "l1",
            "dateCreated": 1000,
            "dateModified": 2000,
            "dateServerModified": 3,
        },
    )
    (item,) = pod.ok("get_item", "l1")
    assert (item["dateCreated"], item["dateModified"]) == (1000, 2000)
    assert item["dateServerModified"] > 3


def test_existing_id_is_a_conflict_and_changes_nothing(pod: PodCaller) -> None:
    pod.ok("create_item", {"type": "Person", "id": "p", "displayName": "first"})
    pod.fails("create_item", {"type": "Person", "id": "p", "displayName": "second"}, 409)
    assert pod.ok("get_item", "p")[0]["displayName"] == "first"


def test_update_sets_erases_and_ignores_type_and_date_created(pod: PodCaller) -> None:
    pod.ok(
        "create_item",
        {"type": "Person", "id": "p", "displayName": "A", "email": "a@x", "dateCreated": 5},
    )
    (before,) = pod.ok("get_item", "p")
    result = pod.ok(
        "update_item",
        {"id": "p", "displayName": "B", "email": None, "type": "Label", "dateCreated": 99},
    )
    assert result == {}
    (after,) = pod.ok("get_item", "p")
    assert after["displayName"] == "B"
    assert "email" not in after
    assert after["type"] == "Person"
    assert after["dateCreated"] == 5
    assert after["dateServerModified"] > before["dateServerModified"]


def test_update_of_unknown_item_is_404(pod: PodCaller) -> None:
    pod.fails("update_item", {"id": "ghost", "displayName": "x"}, 404)


def test_update_is_checked_against_the_schema(pod: PodCaller) -> None:
    pod.ok("create_item", {"type": "Person", "id": "p"})
    pod.fails("update_item", {"id": "p", "undeclared": "x"}, 400)
    pod.fails("update_item", {"id": "p", "displayName": 5}, 400)
    assert "undeclared" not in pod.ok("get_item", "p")[0]


def test_delete_is_soft(pod: PodCaller) -> None:
    pod.ok("create_item", {"type": "Person", "id": "p"})
    assert pod.ok("delete_item", "p") == {}
    (item,) = pod.ok("get_item", "p")
    assert item["deleted"] is True
    pod.fails("delete_item", "ghost", 404)


def test_undeclared_property_is_rejected(pod: PodCaller) -> None:
    message = pod.fails("create_item", {"type": "Person", "age": 3}, 400)
    assert "age" in message
    assert pod.search({"type": "Person"}) == []


@pytest.mark.parametrize("endpoint", ["create_item", "update_item", "bulk"])
def test_undeclared_or_invalid_property_with_null_is_rejected(
    pod: PodCaller, endpoint: str
) -> None:
    """A null does not make an undeclared (or invalid) property name acceptable."""
    pod.ok("create_item", {"type": "Label", "id": "l", "name": "inbox"})
    for key in ("neverDeclared", "bad name!", "handle"):  # handle: an Account property
        if endpoint == "create_item":
            message = pod.fails(endpoint, {"type": "Label", key: None}, 400)
        elif endpoint == "update_item":
            message = pod.fails(endpoint, {"id": "l", key: None}, 400)
        else:
            items = [{"type": "Label", "name": str(n), key: None} for n in range(3)]
            message = pod.fails(endpoint, {"createItems": items}, 400)
        assert repr(key) in message
    assert [item["id"] for item in pod.search({"type": "Label"})] == ["l"]
    # A declared property may be null: absent on create, erased on update.
    created = pod.ok("create_item", {"type": "Label", "name": None})
    assert "name" not in pod.ok("get_item", created)[0]
    pod.ok("update_item", {"id": "l", "name": None})
    assert "name" not in pod.ok("get_item", "l")[0]


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("isMe", 1),  # an int is not a Bool
        ("handle", 5),  # a number is not Text
        ("handle", True),
        ("isMe", "true"),
    ],
)
def test_account_values_are_strictly_typed(pod: PodCaller, prop: str, value: object) -> None:
    pod.fails("create_item", {"type": "Account", prop: value}, 400)


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("size", True),  # a bool is not an Integer
        ("size", 1.5),
        ("size", 2**63),  # out of signed 64-bit range
        ("size", "12"),
    ],
)
def test_file_integer_is_strict(pod: PodCaller, prop: str, value: object) -> None:
    pod.fails("create_item", {"type": "File", prop: value}, 400)


def test_value_types_are_stored_faithfully(pod: PodCaller) -> None:
    pod.schema({"Reading": {"value": "Real", "count": "Integer", "at": "DateTime", "ok": "Bool"}})
    pod.ok(
        "create_item",
        {"type": "Reading", "id": "r", "value": 2, "count": -(2**63), "at": 1700, "ok": False},
    )
    (item,) = pod.ok("get_item", "r")
    assert item["value"] == 2.0 and isinstance(item["value"], float)
    assert item["count"] == -(2**63)
    assert item["at"] == 1700
    assert item["ok"] is False
    pod.fails("create_item", {"type": "Reading", "at": 1.5}, 400)
    pod.fails("create_item", {"type": "Reading", "ok": 0}, 400)


@pytest.mark.parametrize("number", [2**53 + 1, 2**62, -(2**63), 2**64 - 1, 10**20])
def test_a_real_takes_any_json_integer(pod: PodCaller, number: int) -> None:
    """JSON does not tell 2**62 from 2.0**62: a Real is the nearest 64-bit float, any size."""
    pod.schema({"Reading": {"value": "Real"}})
    pod.ok("create_item", {"type": "Reading", "id": "big", "value": number})
    (item,) = pod.ok("get_item", "big")
    assert item["value"] == float(number) and isinstance(item["value"], float)
    found = pod.search({"type": "Reading", "value": number})
    assert [i["id"] for i in found] == ["big"]
    pod.ok("update_item", {"id": "big", "value": -number})
    assert pod.ok("get_item", "big")[0]["value"] == -float(number)


@pytest.mark.parametrize(
    "item",
    [
        {"displayName": "no type"},
        {"type": "9Bad"},
        {"type": "with space"},
        {"type": ""},
        {"type": 5},
        {"type": "Person", "id": 5},
        {"type": "Person", "id": ""},
        {"type": "Person", "deleted": "yes"},
        {"type": "Person", "dateCreated": "yesterday"},
        {"type": "Person", "bad-name": "x"},
        ["not", "an", "object"],
    ],
)
def test_malformed_items_are_400(pod: PodCaller, item: object) -> None:
    pod.fails("create_item", item, 400)


def test_unknown_type_without_properties_is_allowed(pod: PodCaller) -> None:
    pod.ok("create_item", {"type": "Whatever", "id": "w"})
    assert pod.ok("get_item", "w")[0]["type"] == "Whatever"
    pod.fails("create_item", {"type": "Whatever", "name": "x"}, 400)


def test_unicode_text_round_trips(pod: PodCaller) -> None:
    text = "Grüße, 你好, 😀"
    pod.ok("create_item", {"type": "Person", "id": "u", "displayName": text})
    assert pod.ok("get_item", "u")[0]["displayName"] == text
    assert pod.search({"displayName": text})[0]["id"] == "u"
