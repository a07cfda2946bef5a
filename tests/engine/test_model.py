"""The SDK's item model: stable ids and the Pod form of an item."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from pydantic import ValidationError, field_serializer

from importer import Item
from importer.model import DateTime, derive_id


class Note(Item):
    key_fields: ClassVar[tuple[str, ...]] = ("externalId",)
    mutable_fields: ClassVar[frozenset[str]] = frozenset({"starred", "title"})

    externalId: str | None = None
    title: str | None = None
    starred: bool | None = None
    written: DateTime | None = None


class ShoutingNote(Note):
    @field_serializer("title")
    def _shout(self, value: str | None) -> str | None:
        return value.upper() if value else value


def test_ids_are_stable_across_releases() -> None:
    # Ids are stored in Pods: these values must never change.
    assert derive_id("EmailMessage", "<m1@example.com>") == "1366058e53e54f8bf17bc450c2f623ea"
    assert derive_id("Account", "email", "alice@example.com") == (
        "5d7c7de2c812827949df1b1e40435e43"
    )


def test_ensure_id_derives_once_and_marks_the_field_set() -> None:
    note = Note(externalId="n-1", title="hello")
    item_id = note.ensure_id()
    assert item_id == derive_id("Note", "n-1")
    assert note.id == item_id
    assert "id" in note.model_fields_set
    assert note.model_dump(exclude_unset=True)["id"] == item_id


def test_to_pod_matches_model_dump() -> None:
    note = Note(externalId="n-2", title="hello", written=1_700_000_000_000)
    note.ensure_id()
    expected: dict[str, Any] = note.model_dump(exclude_none=True)
    expected["type"] = "Note"
    assert note.to_pod() == expected
    assert "starred" not in note.to_pod()


def test_to_pod_honours_custom_serialisers() -> None:
    note = ShoutingNote(externalId="n-3", title="quiet")
    assert note.to_pod()["title"] == "QUIET"


def test_assignment_is_still_validated() -> None:
    note = Note(externalId="n-4")
    with pytest.raises(ValidationError):
        note.starred = "not a bool"  # type: ignore[assignment]


def test_mutable_values_are_the_set_mutable_fields_in_order() -> None:
    note = Note(externalId="n-5", starred=False, title="t")
    assert list(note.mutable_values().items()) == [("starred", False), ("title", "t")]
    assert Note(externalId="n-6").mutable_values() == {}


def test_mutable_values_of_a_type_that_clears_missing_name_the_unset_ones() -> None:
    class Page(Note):
        clears_missing: ClassVar[bool] = True

    assert Page(externalId="p", title="t").mutable_values(erasing=True) == {
        "starred": None,
        "title": "t",
    }
    assert Page(externalId="p", title="t").mutable_values() == {"title": "t"}
    assert Note(externalId="n", title="t").mutable_values(erasing=True) == {"title": "t"}
