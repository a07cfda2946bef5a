"""The engine against a real local Pod: exactly once, in order, incrementally."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from pydantic import BaseModel

from importer import Checkpoint, Connector, Item, Record, Update
from importer.context import RunContext
from importer.engine import EngineSettings, RunLocked
from importer.model import derive_id
from importer.schema import Account
from importer.testing import check_connector, local_pod, run_connector, snapshot

from .connectors import (
    AsyncNotes,
    Flagger,
    LinkedElsewhere,
    NoOptions,
    Note,
    Page,
    Replay,
    SyncNotes,
    Tag,
    note_id,
)

SMALL = EngineSettings(batch_records=40, max_in_flight=3, flush_interval=0.2)


@pytest.fixture(params=["embedded", "socket"])
def over_socket(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "socket")


def pod_for(tmp_path: Path, over_socket: bool) -> Any:
    # Entered inside each test: the client's task group must open and close
    # in the same task, which async fixtures do not guarantee.
    return local_pod(tmp_path / "pod", over_socket=over_socket)


async def import_notes(pod: Any, tmp_path: Path, options: dict[str, Any], **kwargs: Any) -> Any:
    """A run of the notes connector into ``pod`` with the small test settings."""
    return await run_connector(
        SyncNotes(), options, client=pod, data_dir=tmp_path, settings=SMALL, **kwargs
    )


@pytest.mark.parametrize("connector", [SyncNotes(), AsyncNotes()], ids=["sync", "async"])
async def test_first_run_lands_everything_and_second_run_nothing(
    over_socket: bool, tmp_path: Path, connector: Any
) -> None:
    async with pod_for(tmp_path, over_socket) as pod:
        options = {"count": 120, "tags": 4, "with_files": True}
        first = await run_connector(
            connector, options, client=pod, data_dir=tmp_path, settings=SMALL
        )
        assert first.error is None
        snap = await snapshot(pod)
        notes = snap.of_type("Note")
        assert sorted(n["externalId"] for n in notes) == sorted(f"note-{i}" for i in range(120))
        assert {n["id"] for n in notes} == {note_id(i) for i in range(120)}
        assert len(snap.of_type("Tag")) == 4
        assert len(snap.edges_named("tag")) == 120
        assert len(snap.edges_named("attachment")) == 120
        files = snap.of_type("File")
        assert len(files) == 7  # the same bytes in many notes are one File
        for item in files:  # content really stored in the Pod
            data = await pod.get_file(item["sha256"])
            assert data is not None and data.startswith(b"attachment of note")
        assert first.stats.created == 120 + 4 + 7

        second = await run_connector(
            connector, options, client=pod, data_dir=tmp_path, settings=SMALL
        )
        assert second.error is None
        assert second.stats.created == 0 and second.stats.edges_created == 0
        assert (await snapshot(pod)).comparable() == snap.comparable()


async def test_full_refresh_rescans_without_duplicating(over_socket: bool, tmp_path: Path) -> None:
    async with pod_for(tmp_path, over_socket) as pod:
        options = {"count": 60}
        await import_notes(pod, tmp_path, options)
        before = await snapshot(pod)
        again = await import_notes(pod, tmp_path, options, full_refresh=True)
        assert again.stats.created == 0
        assert again.stats.unchanged >= 60
        assert (await snapshot(pod)).comparable() == before.comparable()


async def test_checkpoint_lives_on_the_account_and_resumes(
    over_socket: bool, tmp_path: Path
) -> None:
    async with pod_for(tmp_path, over_socket) as pod:
        await import_notes(pod, tmp_path, {"count": 30})
        account = await pod.get_item(derive_id("Account", "notes", "test"))
        assert account is not None and account["isMe"] is True
        assert json.loads(account["importerState"]) == {"notes": {"default": {"next": 30}}}
        # More data at the source: only the new notes are fetched and created.
        result = await import_notes(pod, tmp_path, {"count": 45})
        assert result.stats.created == 15
        account = await pod.get_item(derive_id("Account", "notes", "test"))
        assert json.loads(account["importerState"])["notes"]["default"] == {"next": 45}


async def test_changed_mutable_properties_update_existing_items(
    over_socket: bool, tmp_path: Path
) -> None:
    async with pod_for(tmp_path, over_socket) as pod:
        await import_notes(pod, tmp_path, {"count": 20})
        result = await import_notes(
            pod, tmp_path, {"count": 20, "starred_every": 5}, full_refresh=True
        )
        assert result.stats.updated == 4 and result.stats.created == 0
        starred = await pod.search({"type": "Note", "starred": True})
        assert sorted(n["externalId"] for n in starred) == sorted(
            f"note-{i}" for i in (0, 5, 10, 15)
        )


async def test_update_records_never_create_items(over_socket: bool, tmp_path: Path) -> None:
    async with pod_for(tmp_path, over_socket) as pod:
        await import_notes(pod, tmp_path, {"count": 5})
        result = await run_connector(
            Flagger(), {"count": 8}, client=pod, data_dir=tmp_path, settings=SMALL
        )
        assert result.stats.updated == 5 and result.stats.created == 0
        notes = await pod.search({"type": "Note"})
        assert len(notes) == 5 and all(n["starred"] is True for n in notes)


async def test_a_type_that_clears_missing_fields_erases_them_but_updates_do_not(
    over_socket: bool, tmp_path: Path
) -> None:
    first = [Page(externalId=n, title=n.upper(), body=f"about {n}") for n in ("a", "b")]
    later: list[Record] = [
        Page(externalId="a", title="A"),  # the body is gone at the source
        Update(Page(externalId="b", title="B, retitled")),  # says nothing of the body
        Page(externalId="c", title="C", body="about c"),
        Page(externalId="c", title="C"),  # seen again in the same run, without a body
    ]
    async with pod_for(tmp_path, over_socket) as pod:
        await run_connector(Replay(first), {}, client=pod, data_dir=tmp_path, settings=SMALL)
        again = await run_connector(Replay(later), {}, client=pod, data_dir=tmp_path)
        assert (again.stats.created, again.stats.updated) == (1, 2)
        pages = {p["externalId"]: p for p in await pod.search({"type": "Page"})}
        same = await run_connector(Replay(later), {}, client=pod, data_dir=tmp_path)
        assert same.stats.created == same.stats.updated == 0

    assert "body" not in pages["a"] and pages["a"]["title"] == "A"
    assert pages["b"]["body"] == "about b" and pages["b"]["title"] == "B, retitled"
    assert "body" not in pages["c"] and pages["c"]["title"] == "C"


async def test_edges_to_items_that_come_later_wait_and_land(
    over_socket: bool, tmp_path: Path
) -> None:
    async with pod_for(tmp_path, over_socket) as pod:
        # note i answers note i+3: for the last three the target never comes in run 1.
        options = {"count": 30, "parent_offset": 3}
        first = await import_notes(pod, tmp_path, options)
        assert first.error is None
        snap = await snapshot(pod)
        answers = snap.edges_named("answers")
        assert len(answers) == 27
        assert all(snap.items.get(target) for _, _, target in answers)
        pending = await pod.search({"type": "PendingEdge", "deleted": False})
        assert sorted(p["edgeTarget"] for p in pending) == sorted(note_id(i) for i in (30, 31, 32))
        # The targets arrive in a later run: the waiting edges are created then.
        await import_notes(pod, tmp_path, {"count": 40, "parent_offset": 3})
        snap = await snapshot(pod)
        assert len(snap.edges_named("answers")) == 37
        assert (note_id(29), "answers", note_id(32)) in snap.edges
        pending = await pod.search({"type": "PendingEdge", "deleted": False})
        assert sorted(p["edgeTarget"] for p in pending) == sorted(note_id(i) for i in (40, 41, 42))
        assert max(snap.edges.values()) == 1


async def test_pending_edge_is_created_when_another_source_adds_the_target(
    over_socket: bool, tmp_path: Path
) -> None:
    async with pod_for(tmp_path, over_socket) as pod:
        await import_notes(pod, tmp_path, {"count": 10, "parent_offset": 1})
        await pod.create_item(Note(externalId="note-10", title="from elsewhere").to_pod())
        # Nothing new at the source, but the run settles what now can be linked.
        await import_notes(pod, tmp_path, {"count": 10, "parent_offset": 1})
        snap = await snapshot(pod)
        assert (note_id(9), "answers", note_id(10)) in snap.edges
        assert await pod.search({"type": "PendingEdge", "deleted": False}) == []


async def test_a_pending_edge_whose_source_comes_in_a_later_run_lands_in_that_run(
    over_socket: bool, tmp_path: Path
) -> None:
    async with pod_for(tmp_path, over_socket) as pod:
        # Note 5 quotes note 4: the edge's source is not in the Pod yet.
        first = await import_notes(pod, tmp_path, {"count": 5, "quoted_by_offset": 1})
        assert first.stats.edges_pending == 1
        # The next run brings note 5 and nothing else that is pending.
        second = await import_notes(pod, tmp_path, {"count": 6})
        assert second.error is None
        snap = await snapshot(pod)
        assert (note_id(5), "quotes", note_id(4)) in snap.edges
        assert await pod.search({"type": "PendingEdge", "deleted": False}) == []
        assert second.stats.edges_pending == 0


async def test_a_pending_edge_linked_elsewhere_during_the_run_is_settled_at_its_end(
    over_socket: bool, tmp_path: Path
) -> None:
    async with pod_for(tmp_path, over_socket) as pod:
        # Records shipped one by one: the source waits after its first two.
        settings = EngineSettings(batch_records=40, flush_interval=0.2, source_chunk=1)
        result = await run_connector(
            LinkedElsewhere(pod), {}, client=pod, data_dir=tmp_path, settings=settings
        )
        assert result.error is None
        snap = await snapshot(pod)
        assert snap.edges[(note_id(0), "answers", note_id(1))] == 1
        assert await pod.search({"type": "PendingEdge", "deleted": False}) == []
        assert result.stats.edges_pending == 0


async def test_run_is_recorded_in_the_pod(over_socket: bool, tmp_path: Path) -> None:
    async with pod_for(tmp_path, over_socket) as pod:
        result = await import_notes(pod, tmp_path, {"count": 12})
        run = await pod.get_item(result.run_id)
        assert run["status"] == "done" and run["createdCount"] == result.stats.created
        assert run["startDate"] <= run["endDate"]
        importers = await pod.get_edges(result.run_id, direction="Outgoing", expand_items=True)
        assert [e["name"] for e in importers] == ["importer"]
        account_edges = await pod.get_edges(importers[0]["item"]["id"], expand_items=True)
        assert account_edges[0]["name"] == "account"
        assert account_edges[0]["item"]["id"] == result.account_id


async def test_connector_failure_is_recorded_and_reported(
    over_socket: bool, tmp_path: Path
) -> None:
    async with pod_for(tmp_path, over_socket) as pod:

        class Broken(SyncNotes):
            def fetch(self, ctx: Any) -> Any:
                yield Note(externalId="note-ok")
                yield Checkpoint({"next": 1})
                raise ConnectionError("source went away")

        result = await run_connector(Broken(), {}, client=pod, data_dir=tmp_path, settings=SMALL)
        assert result.status == "failed" and result.error == "ConnectionError: source went away"
        run = await pod.get_item(result.run_id)
        assert run["status"] == "failed" and run["error"] == "ConnectionError: source went away"
        # What was yielded before the failure is committed, with its checkpoint.
        assert [n["externalId"] for n in await pod.search({"type": "Note"})] == ["note-ok"]


async def test_second_concurrent_run_for_an_account_is_refused(
    over_socket: bool, tmp_path: Path
) -> None:
    async with pod_for(tmp_path, over_socket) as pod:
        outcome: dict[str, Any] = {}

        async def slow() -> None:
            outcome["slow"] = await import_notes(pod, tmp_path, {"count": 20, "delay": 0.05})

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            await anyio.sleep(0.3)
            with pytest.raises(RunLocked, match="another run is in progress"):
                await run_connector(SyncNotes(), {"count": 20}, client=pod, data_dir=tmp_path)
        assert outcome["slow"].stats.created == 20 + 5
        assert len(await pod.search({"type": "Note"})) == 20


async def test_slow_source_is_flushed_within_the_interval(tmp_path: Path) -> None:
    async with local_pod(tmp_path / "pod") as client:
        seen: list[int] = []

        async def watch() -> None:
            for _ in range(40):
                await anyio.sleep(0.1)
                seen.append(len(await client.search({"type": "Note"})))

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await run_connector(
                SyncNotes(),
                {"count": 6, "delay": 0.6, "checkpoint_every": 100},
                client=client,
                data_dir=tmp_path,
                settings=EngineSettings(flush_interval=0.5),
            )
        # Notes appeared one by one while the source was still producing.
        assert any(0 < n < 6 for n in seen)


@pytest.mark.parametrize("connector", [SyncNotes(), AsyncNotes()], ids=["sync", "async"])
async def test_conformance_kit(tmp_path: Path, connector: Any) -> None:
    await check_connector(
        connector, {"count": 80, "parent_offset": 2, "with_files": True}, tmp_path, crash_points=8
    )


def test_custom_types_are_declared_by_the_engine() -> None:
    assert Note.pod_schema() == {
        "externalId": "Text",
        "title": "Text",
        "body": "Text",
        "starred": "Bool",
    }
    assert Tag.pod_schema() == {"name": "Text"}


class Clip(Item):
    """Its ``size`` is text, where the central ``File.size`` is an Integer."""

    key_fields: ClassVar[tuple[str, ...]] = ("externalId",)

    externalId: str | None = None
    size: str | None = None


CLASH = (
    "Clip.size is Text, but File.size is Integer: a property name has one type across "
    "all item types (compared case-insensitively); rename Clip.size"
)


async def test_a_property_typed_unlike_a_central_one_is_refused_naming_both(
    tmp_path: Path,
) -> None:
    """Listed in ``item_types``: refused before the run starts; not listed: when first met."""

    class Unlisted(Connector[NoOptions]):
        name = "clips"
        options_model = NoOptions

        async def fetch(self, ctx: RunContext[NoOptions]) -> AsyncIterator[Record]:
            yield Clip(externalId="c1", size="big")
            yield Checkpoint({"done": True})

    class Listed(Unlisted):
        item_types = (Clip,)

    async with local_pod(tmp_path / "pod") as pod:
        with pytest.raises(TypeError) as raised:
            await run_connector(Listed(), {}, client=pod, data_dir=tmp_path)
        assert str(raised.value) == CLASH
        result = await run_connector(Unlisted(), {}, client=pod, data_dir=tmp_path)
        assert result.status == "failed" and result.error == f"TypeError: {CLASH}"
        assert await pod.search({"type": "Clip"}) == []


async def test_connector_stores_refreshed_tokens_on_its_account(tmp_path: Path) -> None:
    class Refreshing(SyncNotes):
        def fetch(self, ctx: Any) -> Any:
            ctx.store_account_blocking(accessToken="fresh-token", refreshToken="next-refresh")
            yield Note(externalId="note-0")

    async with local_pod(tmp_path / "pod") as pod:
        result = await run_connector(Refreshing(), {}, client=pod, data_dir=tmp_path)
        assert result.error is None
        account = await pod.get_item(result.account_id)
    assert account is not None
    assert account["accessToken"] == "fresh-token"
    assert account["refreshToken"] == "next-refresh"
    assert "fresh-token" not in result.summary()


class ServerOptions(BaseModel):
    server: str


class TokenKeeper(Connector[ServerOptions]):
    """Every server's account shares one Account item, as logins of one address do."""

    name = "tokens"
    options_model = ServerOptions
    item_types = (Note,)

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def account(self, options: ServerOptions, account_name: str) -> Account:
        return Account(service="tokens", handle="me@example.test")

    def credentials_for(self, options: ServerOptions) -> str | None:
        return f"tokens://{options.server}"

    def fetch(self, ctx: RunContext[ServerOptions]) -> Any:
        self.seen.append(ctx.account.accessToken)
        ctx.store_account_blocking(accessToken=f"token-of-{ctx.options.server}")
        yield Note(externalId=ctx.options.server)


async def test_stored_tokens_are_bound_to_the_place_they_were_stored_for(tmp_path: Path) -> None:
    keeper = TokenKeeper()
    async with local_pod(tmp_path / "pod") as pod:

        async def run(server: str) -> Any:
            opts = {"server": server}
            return await run_connector(keeper, opts, client=pod, data_dir=tmp_path)

        first = await run("a")
        assert first.error is None, first.error
        account = await pod.get_item(first.account_id)
        assert account is not None
        assert (account["accessToken"], account["credentialsFor"]) == ("token-of-a", "tokens://a")

        other = await run("b")
        assert other.error is not None and "credentials of another account" in other.error
        assert "token-of-a" not in other.error
        again = await run("a")
        assert again.error is None, again.error
        # Server b was never handed a's token, and could not replace it.
        assert keeper.seen == [None, None, "token-of-a"]
        account = await pod.get_item(first.account_id)
        assert account is not None and account["accessToken"] == "token-of-a"
        with pytest.raises(ValueError, match="credentialsFor"):
            await RunContext(
                options=ServerOptions(server="a"), account=Account(), account_name="a",
                connector_name="tokens",
            ).store_account(credentialsFor="tokens://b")  # fmt: skip


async def test_checkpoints_are_written_while_a_source_streams(tmp_path: Path) -> None:
    """With bulks always in flight, older checkpoints still land as their data does."""
    states: list[int] = []

    class Watched(SyncNotes):
        def fetch(self, ctx: Any) -> Any:
            for record in super().fetch(ctx):
                if isinstance(record, Checkpoint) and record.state["next"] % 100 == 0:
                    account = ctx.last_added_blocking("Account", handle="test")
                    state = json.loads((account or {}).get("importerState") or "{}")
                    states.append(state.get("notes", {}).get("default", {}).get("next", 0))
                yield record

    async with local_pod(tmp_path / "pod") as pod:
        result = await run_connector(
            Watched(),
            {"count": 3000, "checkpoint_every": 10},
            client=pod,
            data_dir=tmp_path,
            settings=EngineSettings(batch_records=40, max_in_flight=3, flush_interval=0.2),
        )
    assert result.error is None
    # The checkpoint in the Pod kept up with the stream, not only at the end.
    assert states[-1] >= 1500, states
    assert states == sorted(states)
