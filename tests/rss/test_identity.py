"""Entries without an id keep the identity they were first imported under, run after run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.rss import RSSFeed, connector
from importer.testing import local_pod, run_connector, snapshot
from importer.testing.feedserver import Resource, feed_server, rss

HOME = "https://status.example/"
MONDAY = {"title": "Monday: all good", "link": HOME, "pubDate": "Mon, 06 May 2024 08:00:00 GMT"}
TUESDAY = {"title": "Tuesday: outage", "link": HOME, "pubDate": "Tue, 07 May 2024 08:00:00 GMT"}
WEDNESDAY = {"title": "Wednesday: fixed", "link": HOME, "pubDate": "Wed, 08 May 2024 08:00:00 GMT"}


def _titles_and_ids(snap: Any, feed_url: str) -> list[tuple[str, str]]:
    feed_id = RSSFeed(url=feed_url).ensure_id()
    linked = {source for source, _, target in snap.edges_named("feed") if target == feed_id}
    entries = (e for e in snap.of_type("RSSEntry") if e["id"] in linked)
    return sorted((e["title"], e["externalId"]) for e in entries)


async def _runs(tmp_path: Path, documents: list[list[dict[str, str]]]) -> list[tuple[str, str]]:
    """Each document served and imported in turn; the feed's entries in the Pod after all."""
    with feed_server() as server:
        url = server.url("/status.xml")
        async with local_pod(tmp_path / "pod") as pod:
            for items in documents:
                server.resources["/status.xml"] = Resource(rss("Status", items))
                result = await run_connector(
                    connector, {"feeds": [url]}, client=pod, data_dir=tmp_path
                )
                assert result.error is None and result.skip_count == 0
            snap = await snapshot(pod)
    return _titles_and_ids(snap, url)


async def test_a_lone_entry_keeps_its_link_when_another_comes_to_share_it(
    tmp_path: Path,
) -> None:
    entries = await _runs(tmp_path, [[MONDAY], [TUESDAY, MONDAY], [WEDNESDAY, TUESDAY, MONDAY]])

    titles = [title for title, _ in entries]
    assert titles == ["Monday: all good", "Tuesday: outage", "Wednesday: fixed"]
    ids = dict(entries)
    assert ids["Monday: all good"] == HOME  # the identity it was first imported under
    assert len(ids["Tuesday: outage"]) == len(ids["Wednesday: fixed"]) == 64


async def test_an_entry_hashed_while_its_link_was_shared_keeps_its_hash_when_alone(
    tmp_path: Path,
) -> None:
    entries = await _runs(tmp_path, [[TUESDAY, MONDAY], [TUESDAY], [WEDNESDAY, TUESDAY]])

    titles = [title for title, _ in entries]
    assert titles == ["Monday: all good", "Tuesday: outage", "Wednesday: fixed"]
    assert all(len(external_id) == 64 for _, external_id in entries)
