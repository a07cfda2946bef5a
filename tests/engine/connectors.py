"""Small connectors used by the engine tests: sync and async, with a cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

import anyio
from pydantic import BaseModel

from importer import Checkpoint, Connector, Edge, File, Item, Record, RunContext, Update


class Note(Item):
    """A custom item type: the engine declares its schema before first use."""

    key_fields: ClassVar[tuple[str, ...]] = ("externalId",)
    mutable_fields: ClassVar[frozenset[str]] = frozenset({"starred"})

    externalId: str | None = None
    title: str | None = None
    body: str | None = None
    starred: bool | None = None


class Tag(Item):
    key_fields: ClassVar[tuple[str, ...]] = ("name",)

    name: str | None = None


class NotesOptions(BaseModel):
    count: int = 100
    tags: int = 5
    checkpoint_every: int = 10
    starred_every: int = 0
    """Mark every n-th note starred (0: none) — to test mutable updates."""
    with_files: bool = False
    parent_offset: int = 0
    """Link note i to note i+offset ('answers') — a target that comes later."""
    quoted_by_offset: int = 0
    """Link note i+offset to note i ('quotes') — a source that comes later."""
    start: int = 0
    delay: float = 0.0


def note_id(i: int) -> str:
    return Note(externalId=f"note-{i}").ensure_id()


def _records(options: NotesOptions, start: int) -> Iterator[Record]:
    for i in range(start, options.count):
        note = Note(
            externalId=f"note-{i}",
            title=f"Note {i}",
            body="x" * (i % 50),
            starred=bool(options.starred_every and i % options.starred_every == 0),
        )
        yield note
        yield Edge(note, "tag", Tag(name=f"tag-{i % options.tags}"))
        if options.parent_offset:
            yield Edge(note, "answers", note_id(i + options.parent_offset))
        if options.quoted_by_offset:
            yield Edge(note_id(i + options.quoted_by_offset), "quotes", note)
        if options.with_files:
            payload = File.payload(f"attachment of note {i % 7}".encode(), filename=f"n{i % 7}.txt")
            yield payload
            yield Edge(note, "attachment", payload.file)
        if (i + 1) % options.checkpoint_every == 0 or i + 1 == options.count:
            yield Checkpoint({"next": i + 1})


class SyncNotes(Connector[NotesOptions]):
    """Notes from a sync generator (runs in a worker thread)."""

    name = "notes"
    options_model = NotesOptions
    item_types = (Note, Tag)

    def fetch(self, ctx: RunContext[NotesOptions]) -> Iterator[Record]:
        state = ctx.checkpoint() or {}
        for record in _records(ctx.options, max(ctx.options.start, state.get("next", 0))):
            if ctx.options.delay and isinstance(record, Note):
                import time

                time.sleep(ctx.options.delay)
            yield record


class AsyncNotes(Connector[NotesOptions]):
    """Notes from an async generator; declares no types (the engine finds them)."""

    name = "anotes"
    options_model = NotesOptions

    async def fetch(self, ctx: RunContext[NotesOptions]) -> AsyncIterator[Record]:
        state = ctx.checkpoint() or {}
        for record in _records(ctx.options, max(ctx.options.start, state.get("next", 0))):
            if ctx.options.delay and isinstance(record, Note):
                await anyio.sleep(ctx.options.delay)
            yield record


class Flagger(Connector[NotesOptions]):
    """Reports flag changes only (Update records), like IMAP CONDSTORE."""

    name = "notes"
    options_model = NotesOptions

    def fetch(self, ctx: RunContext[NotesOptions]) -> Iterator[Record]:
        for i in range(ctx.options.start, ctx.options.count):
            yield Update(Note(externalId=f"note-{i}", starred=True))


class _WithOtherWriter(Connector[NotesOptions]):
    """Notes whose source works beside another writer of the same Pod."""

    name = "notes"
    options_model = NotesOptions
    item_types = (Note, Tag)

    def __init__(self, other_writer: Any) -> None:
        self.other_writer = other_writer


class LinkedElsewhere(_WithOtherWriter):
    """Note 0 answering note 1; once the engine has stored that edge as
    pending, another writer adds note 1 and the edge itself."""

    async def fetch(self, ctx: RunContext[NotesOptions]) -> AsyncIterator[Record]:
        yield Note(externalId="note-0", title="Note 0")
        yield Edge(note_id(0), "answers", note_id(1))
        other = self.other_writer
        for _ in range(200):  # the Pod is asked: no event to wait for
            if await other.search({"type": "PendingEdge", "deleted": False}):
                break
            await anyio.sleep(0.05)
        else:
            raise TimeoutError("the engine stored no PendingEdge within 10 s")
        await other.create_item(Note(externalId="note-1", title="from elsewhere").to_pod())
        await other.create_edge(note_id(0), note_id(1), "answers")


class LinkedThenSeen(_WithOtherWriter):
    """First run: note 0 answering note 1, which is missing.  Next run: another
    writer adds note 1 and that edge, then the source yields note 1 too."""

    async def fetch(self, ctx: RunContext[NotesOptions]) -> AsyncIterator[Record]:
        if ctx.checkpoint() is None:
            yield Note(externalId="note-0", title="Note 0")
            yield Edge(note_id(0), "answers", note_id(1))
            yield Checkpoint({"next": 1})
            return
        other = self.other_writer
        await other.create_item(Note(externalId="note-1", title="from elsewhere").to_pod())
        await other.create_edge(note_id(0), note_id(1), "answers")
        yield Note(externalId="note-1", title="Note 1")


class Page(Item):
    """A type whose sightings give all its mutable fields: None erases."""

    key_fields: ClassVar[tuple[str, ...]] = ("externalId",)
    mutable_fields: ClassVar[frozenset[str]] = frozenset({"title", "body"})
    clears_missing: ClassVar[bool] = True

    externalId: str | None = None
    title: str | None = None
    body: str | None = None


class NoOptions(BaseModel):
    pass


class Replay(Connector[NoOptions]):
    """Yields the records it was given."""

    name = "replay"
    options_model = NoOptions
    item_types = (Page,)

    def __init__(self, records: Sequence[Record]) -> None:
        self.records = records

    async def fetch(self, ctx: RunContext[NoOptions]) -> AsyncIterator[Record]:
        for record in self.records:
            yield record
