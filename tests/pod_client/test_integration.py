"""Every client call against the real local Pod, over a socket and in-process."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from importer.pod import (
    EMBEDDED_BASE_URL,
    BulkResult,
    ClientAuth,
    PluginAuth,
    PodAuthError,
    PodBadRequest,
    PodClient,
    PodConflict,
    PodError,
    PodNotFound,
    PodTooLarge,
    load_keys,
    open_embedded_client,
)
from importer.pod._asgi import StreamingASGITransport
from importer.pod._retry import RetryPolicy
from importer.pod.local import create_app, running_pod

from .conftest import PodFactory


def new_id() -> str:
    return secrets.token_hex(16)


async def test_version_and_liveness(pod: PodFactory) -> None:
    async with pod() as client:
        assert await client.is_alive()
        version = await client.version()
        assert isinstance(version, dict) and version


async def test_item_lifecycle(pod: PodFactory) -> None:
    async with pod() as client:
        await client.create_account()
        await client.create_account()  # idempotent
        item_id = await client.create_item(
            {"id": new_id(), "type": "Person", "displayName": "Ada", "firstName": "Ada"}
        )
        item = await client.get_item(item_id)
        assert item is not None
        assert item["displayName"] == "Ada" and item["type"] == "Person"
        assert isinstance(item["dateServerModified"], int)

        await client.update_item({"id": item_id, "displayName": "Ada L.", "firstName": None})
        item = await client.get_item(item_id)
        assert item is not None
        assert item["displayName"] == "Ada L."
        assert "firstName" not in item or item["firstName"] is None

        with pytest.raises(PodConflict):
            await client.create_item({"id": item_id, "type": "Person"})

        await client.delete_item(item_id)
        item = await client.get_item(item_id)
        assert item is not None and item["deleted"] is True

        generated = await client.create_item({"type": "Person", "displayName": "Bob"})
        assert generated and generated != item_id
        assert await client.get_item(new_id()) is None
        with pytest.raises(PodNotFound):
            await client.update_item({"id": new_id(), "displayName": "nobody"})


async def test_search_and_last_added(pod: PodFactory) -> None:
    async with pod() as client:
        await client.create_account()
        first = await client.create_item({"type": "Person", "displayName": "A", "email": "a@x"})
        second = await client.create_item({"type": "Person", "displayName": "B", "email": "b@x"})
        await client.create_item({"type": "Label", "name": "inbox"})

        people = await client.search({"type": "Person"})
        assert [p["id"] for p in people] == [first, second]
        assert [p["id"] for p in await client.search({"type": "Person", "email": "b@x"})] == [
            second
        ]
        desc = await client.search({"type": "Person", "_sortOrder": "Desc"})
        assert [p["id"] for p in desc] == [second, first]

        newest = await client.last_added("Person")
        assert newest is not None and newest["id"] == second
        newest_a = await client.last_added("Person", email="a@x")
        assert newest_a is not None and newest_a["id"] == first
        assert await client.last_added("EmailMessage") is None


async def test_out_of_range_limit_is_a_bad_request_at_once(pod: PodFactory) -> None:
    """Such a search used to end in a 500, retried until the budget ran out."""
    retry = RetryPolicy(max_attempts=3, max_elapsed=5, initial_backoff=0.01)
    async with pod(retry=retry) as client:
        await client.create_account()
        with pytest.raises(PodBadRequest, match="_limit"):
            await client.search({"_limit": 2**63})
        assert client.retry_count == 0


async def test_bulk_and_its_atomicity(pod: PodFactory) -> None:
    async with pod() as client:
        await client.create_account()
        a, b = new_id(), new_id()
        result = await client.bulk(
            create_items=[
                {"id": a, "type": "Person", "displayName": "A"},
                {"id": b, "type": "Account", "handle": "a@example.org", "service": "imap"},
            ],
            create_edges=[{"_source": b, "_target": a, "_name": "owner"}],
            search=[{"type": "Account"}],
        )
        assert isinstance(result, BulkResult)
        assert result.created_ids == [a, b]
        assert len(result.edge_ids) == 1
        assert [item["id"] for item in result.search_results[0]] == [b]

        result = await client.bulk(update_items=[{"id": a, "displayName": "A2"}], delete_items=[b])
        assert result == BulkResult()
        assert (await client.get_item(a) or {})["displayName"] == "A2"
        assert (await client.get_item(b) or {})["deleted"] is True

        # One invalid element: nothing of the bulk is applied.
        c = new_id()
        with pytest.raises(PodBadRequest):
            await client.bulk(
                create_items=[
                    {"id": c, "type": "Person", "displayName": "C"},
                    {"id": new_id(), "type": "Person", "noSuchProperty": 1},
                ]
            )
        assert await client.get_item(c) is None

        # A bulk sent again after it was applied: 409, nothing changes.
        d = new_id()
        bulk = [{"id": d, "type": "Person", "displayName": "D"}]
        await client.bulk(create_items=bulk)
        before = await client.search({"type": "Person"})
        with pytest.raises(PodConflict):
            await client.bulk(create_items=bulk)
        assert await client.search({"type": "Person"}) == before


async def test_edges(pod: PodFactory) -> None:
    async with pod() as client:
        await client.create_account()
        message = await client.create_item({"type": "EmailMessage", "subject": "hi"})
        sender = await client.create_item({"type": "Account", "handle": "me@example.org"})
        edge_id = await client.create_edge(message, sender, "sender")
        assert edge_id

        outgoing = await client.get_edges(message)
        assert [(e["name"], e["item"]["id"]) for e in outgoing] == [("sender", sender)]
        assert outgoing[0]["item"]["handle"] == "me@example.org"
        incoming = await client.get_edges(sender, direction="Incoming")
        assert [(e["name"], e["item"]["id"]) for e in incoming] == [("sender", message)]

        with pytest.raises(PodConflict):
            await client.create_edge(message, sender, "sender")
        with pytest.raises((PodNotFound, PodBadRequest)):
            await client.create_edge(message, new_id(), "sender")

        found = await client.search({"id": message, "[[edges]]": {}})
        assert found[0]["[[edges]]"][0]["_edge"] == "sender"
        assert found[0]["[[edges]]"][0]["_item"]["id"] == sender

        await client.delete_edge(message, sender, "sender")
        assert await client.get_edges(message) == []


async def test_schema_v4_and_v5(pod: PodFactory) -> None:
    async with pod() as client:
        await client.create_account()
        with pytest.raises(PodBadRequest):
            await client.create_item({"type": "Dog", "name": "Rex", "age": 3})

        await client.add_schema_v4("Dog", {"name": "Text", "age": "Integer"})
        await client.add_schema_v4("Dog", {"name": "Text"})  # a duplicate is ignored
        dog = await client.create_item({"type": "Dog", "name": "Rex", "age": 3})
        assert (await client.get_item(dog) or {})["age"] == 3
        with pytest.raises(PodBadRequest):
            await client.create_item({"type": "Dog", "age": "three"})

        await client.add_schema(
            {"Cat": {"properties": {"name": "Text", "lives": "Integer"}}},
            {"owner": [{"source": "Cat", "target": "Person"}]},
            {"name": "pets", "url": "https://example.org", "version": "1"},
        )
        cat = await client.create_item({"type": "Cat", "name": "Tom", "lives": 9})
        assert (await client.get_item(cat) or {})["lives"] == 9
        with pytest.raises(PodBadRequest):
            await client.add_schema_v4("Bird", {"age": "Text"})  # age is Integer already


async def test_file_round_trip_small(pod: PodFactory, tmp_path: Path) -> None:
    content = b"the bytes of a small attachment\n" * 100
    async with pod() as client:
        await client.create_account()
        digest = hashlib.sha256(content).hexdigest()
        with pytest.raises(PodError):
            await client.upload_file(content)  # no File item yet
        await client.create_item({"type": "File", "sha256": digest, "filename": "a.txt"})
        assert await client.upload_file(content) is True
        assert await client.upload_file(content) is False
        assert await client.get_file(digest) == content

        dest = tmp_path / "copy.txt"
        assert await client.get_file(digest, dest) is None
        assert dest.read_bytes() == content

        with pytest.raises(PodNotFound):
            await client.get_file("0" * 64)

        # A stream with and without a known digest.
        other = b"streamed content " * 1000
        other_digest = hashlib.sha256(other).hexdigest()
        await client.create_item({"type": "File", "sha256": other_digest})

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(other), 4096):
                yield other[start : start + 4096]

        assert await client.upload_file(chunks()) is True
        assert await client.upload_file(chunks(), sha256=other_digest) is False
        assert await client.get_file(other_digest) == other


async def test_search_pages_with_shared_timestamps(pod: PodFactory) -> None:
    async with pod() as client:
        await client.create_account()
        expected: list[str] = []
        for size in (7, 1, 12, 3, 9, 5):  # each bulk shares one dateServerModified
            ids = [new_id() for _ in range(size)]
            await client.bulk(
                create_items=[{"id": i, "type": "Label", "name": f"l{i}"} for i in ids]
            )
            expected.extend(ids)
        await client.create_item({"type": "Person", "displayName": "not a label"})

        for page_size in (1, 4, 10, 500):
            seen = [
                item["id"]
                async for page in client.search_pages({"type": "Label"}, page_size)
                for item in page
            ]
            assert sorted(seen) == sorted(expected)
            assert len(seen) == len(set(seen)) == 37

            down = [
                item["id"]
                async for page in client.search_pages(
                    {"type": "Label", "_sortOrder": "Desc"}, page_size
                )
                for item in page
            ]
            assert sorted(down) == sorted(expected) and len(down) == 37

        pages = [page async for page in client.search_pages({"type": "Label"}, 4)]
        # A page never splits a bulk's timestamp: sizes are whole bulks merged.
        assert [len(p) for p in pages] == [7, 13, 12, 5]


async def test_wrong_key_is_refused_without_leaking_it(pod: PodFactory) -> None:
    async with pod() as client:
        await client.create_account()
        secret_item = await client.create_item({"type": "Person", "displayName": "private"})
        wrong_key = secrets.token_hex(32)
        async with pod(database_key=wrong_key) as intruder:
            with pytest.raises(PodAuthError) as caught:
                await intruder.get_item(secret_item)
            with pytest.raises(PodAuthError):
                await intruder.search({})
        assert wrong_key not in str(caught.value) + repr(caught.value)
        assert isinstance(client.auth, ClientAuth)
        assert client.auth.database_key not in str(caught.value)


async def test_embedded_keys_persist_across_clients(tmp_path: Path) -> None:
    data_dir = tmp_path / "pod"
    async with open_embedded_client(data_dir) as first:
        await first.create_account()
        item_id = await first.create_item({"type": "Person", "displayName": "kept"})
    assert (data_dir / "keys.json").stat().st_mode & 0o777 == 0o600
    async with open_embedded_client(data_dir) as second:
        assert second.owner_key == first.owner_key
        assert (await second.get_item(item_id) or {})["displayName"] == "kept"
    assert load_keys(data_dir).owner_key == first.owner_key


async def test_plugin_auth_round_trip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    keys = load_keys(tmp_path / "keys")
    app = create_app(tmp_path / "pod")
    token_data = app.state.issue_plugin_token(keys.owner_key, keys.database_key)
    async with PodClient(
        EMBEDDED_BASE_URL,
        keys.owner_key,
        ClientAuth(keys.database_key),
        transport=StreamingASGITransport(app),
    ) as owner:
        await owner.create_account()
    plugin_auth = PluginAuth(token_data)
    content = b"uploaded by a plugin"
    digest = hashlib.sha256(content).hexdigest()
    async with PodClient(
        EMBEDDED_BASE_URL, keys.owner_key, plugin_auth, transport=StreamingASGITransport(app)
    ) as plugin:
        await plugin.create_account()  # a no-op for plugins
        run_id = await plugin.create_item({"type": "ImporterRun", "status": "running"})
        await plugin.create_item({"type": "File", "sha256": digest})
        assert await plugin.upload_file(content) is True
        assert await plugin.get_file(digest) == content
        assert (await plugin.get_item(run_id) or {})["status"] == "running"
    async with PodClient(
        EMBEDDED_BASE_URL,
        keys.owner_key,
        PluginAuth({"token": "forged-token-value"}),
        transport=StreamingASGITransport(app),
    ) as forger:
        with pytest.raises(PodAuthError) as caught:
            await forger.search({})
    assert "forged-token-value" not in str(caught.value)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert token_data["token"] not in logged
    assert "upload_file_b/***/" in logged


async def test_unentered_embedded_client_still_works(tmp_path: Path) -> None:
    client = open_embedded_client(tmp_path / "pod")
    try:
        await client.create_account()
        item_id = await client.create_item({"type": "Label", "name": "plain"})
        assert (await client.get_item(item_id) or {})["name"] == "plain"
    finally:
        await client.aclose()


@pytest.mark.parametrize("mode", ["socket", "embedded"])
async def test_too_large_is_not_retried(tmp_path: Path, mode: str) -> None:
    keys = load_keys(tmp_path / "keys")
    limit = 64 * 1024
    big = bytes(200 * 1024)

    async def check(client: PodClient) -> None:
        async with client:
            await client.create_account()
            await client.create_item({"type": "File", "sha256": hashlib.sha256(big).hexdigest()})
            with pytest.raises(PodTooLarge):
                await client.upload_file(big)
            with pytest.raises(PodTooLarge):
                await client.create_item({"type": "Person", "displayName": "x" * 100_000})
            assert client.retry_count == 0

    auth = ClientAuth(keys.database_key)
    if mode == "socket":
        with running_pod(tmp_path / "pod", max_request_bytes=limit, max_file_bytes=limit) as url:
            await check(PodClient(url, keys.owner_key, auth))
    else:
        transport = StreamingASGITransport(
            create_app(tmp_path / "pod", max_request_bytes=limit, max_file_bytes=limit)
        )
        await check(PodClient(EMBEDDED_BASE_URL, keys.owner_key, auth, transport=transport))
