"""Feeds as they come in the wild: podcasts, compressed, moved, or no feed at all."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import anyio

from connectors.rss import RSSFeed, connector
from importer.testing import local_pod, run_connector, snapshot
from importer.testing.feedserver import Resource, feed_server, rss
from importer.web import MAX_BYTES


def _entries(snap: Any, feed_url: str) -> dict[str, dict[str, Any]]:
    feed_id = RSSFeed(url=feed_url).ensure_id()
    linked = {source for source, _, target in snap.edges_named("feed") if target == feed_id}
    return {e["externalId"]: e for e in snap.of_type("RSSEntry") if e["id"] in linked}


def _podcast(audio: str) -> bytes:
    episode = {"guid": "ep-1", "title": "Episode 1", "link": "https://pod.example/1"}
    enclosure = f'<enclosure url="{audio}" length="1234" type="audio/mpeg"/>'
    return rss("Podcast", [episode]).replace(b"</item>", enclosure.encode() + b"</item>")


async def test_a_podcast_episode_keeps_the_url_of_its_audio(tmp_path: Path) -> None:
    with feed_server() as server:
        server.resources["/pod.xml"] = Resource(_podcast("/audio/1.mp3"))
        url = server.url("/pod.xml")
        async with local_pod(tmp_path / "pod") as pod:
            await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            first = _entries(await snapshot(pod), url)["ep-1"]
            # The host moves the file: the episode follows, and is not doubled.
            server.resources["/pod.xml"] = Resource(_podcast("https://cdn.example/1.mp3"))
            again = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            assert (again.stats.created, again.stats.updated) == (0, 1)
            moved = _entries(await snapshot(pod), url)["ep-1"]

    assert first["enclosure"] == server.url("/audio/1.mp3")  # relative: made absolute
    assert moved["enclosure"] == "https://cdn.example/1.mp3"


async def test_an_answer_without_end_is_given_up_and_the_other_feeds_import(
    tmp_path: Path,
) -> None:
    # A "feed" that is a live audio stream: read whole, it would never end.
    with feed_server() as server:
        server.resources["/live.mp3"] = Resource(b"\xff\xfb" * 8192, "audio/mpeg", endless=True)
        server.resources["/fine.xml"] = Resource(rss("Fine", [{"guid": "1", "title": "One"}]))
        live, fine = server.url("/live.mp3"), server.url("/fine.xml")
        async with local_pod(tmp_path / "pod") as pod:
            with anyio.fail_after(20):
                result = await run_connector(
                    connector, {"feeds": [live, fine]}, client=pod, data_dir=tmp_path
                )
            snap = await snapshot(pod)

    assert result.error is None
    assert [(s.ref, s.reason) for s in result.skipped] == [
        (live, f"failed: TooLarge: the answer is over {MAX_BYTES} bytes")
    ]
    assert [e["title"] for e in _entries(snap, fine).values()] == ["One"]


async def test_a_feed_that_trickles_is_cut_off_at_its_deadline_and_the_others_import(
    tmp_path: Path,
) -> None:
    # Headers at once, then a byte every 0.3 s: each read comes before the per-read timeout,
    # and the body would take minutes, holding up every feed after it.
    with feed_server() as server:
        trickling = rss("Trickle", [{"guid": "t", "title": "T"}])
        server.resources["/trickle.xml"] = Resource(trickling, trickle=0.3)
        server.resources["/fine.xml"] = Resource(rss("Fine", [{"guid": "1", "title": "One"}]))
        slow, fine = server.url("/trickle.xml"), server.url("/fine.xml")
        options = {"feeds": [slow, fine], "deadline": 1.0, "timeout": 5.0}
        async with local_pod(tmp_path / "pod") as pod:
            with anyio.fail_after(20):
                result = await run_connector(connector, options, client=pod, data_dir=tmp_path)
            snap = await snapshot(pod)
        assert [r.status for r in server.seen("/trickle.xml")] == [200]

    assert result.error is None
    assert [(s.ref, s.reason) for s in result.skipped] == [
        (slow, "failed: TooSlow: the answer took more than 1 s")
    ]
    assert [f["url"] for f in snap.of_type("RSSFeed")] == [fine]
    assert [e["title"] for e in _entries(snap, fine).values()] == ["One"]


async def test_compressed_and_permanently_moved_feeds_import_every_run(tmp_path: Path) -> None:
    items = [{"guid": "1", "title": "One"}]
    with feed_server() as server:
        zipped = gzip.compress(rss("Zipped", items))
        gzipped = {"Content-Encoding": "gzip"}
        server.resources["/zipped.xml"] = Resource(zipped, headers=gzipped, etag='"z1"')
        server.resources["/old.xml"] = Resource(b"", moved=(301, "/new.xml"))
        server.resources["/older.xml"] = Resource(b"", moved=(308, "/new.xml"))
        server.resources["/new.xml"] = Resource(rss("Moved", items), etag='"m1"')
        feeds = [server.url(path) for path in ("/zipped.xml", "/old.xml", "/older.xml")]
        async with local_pod(tmp_path / "pod") as pod:
            first = await run_connector(connector, {"feeds": feeds}, client=pod, data_dir=tmp_path)
            assert first.error is None and first.skip_count == 0
            items.append({"guid": "2", "title": "Two"})
            zipped = gzip.compress(rss("Zipped", items))
            server.resources["/zipped.xml"] = Resource(zipped, headers=gzipped, etag='"z2"')
            server.resources["/new.xml"] = Resource(rss("Moved", items), etag='"m2"')
            again = await run_connector(connector, {"feeds": feeds}, client=pod, data_dir=tmp_path)
            assert again.error is None and again.skip_count == 0
            same = await run_connector(connector, {"feeds": feeds}, client=pod, data_dir=tmp_path)
            snap = await snapshot(pod)
        moved = [(r.status, r.headers.get("if-none-match")) for r in server.seen("/new.xml")]

    assert (first.stats.created, again.stats.created, same.stats.created) == (6, 3, 0)
    # Each run follows the redirect, conditionally: the configured URL stays the feed's id.
    assert moved == [(200, None)] * 2 + [(200, '"m1"')] * 2 + [(304, '"m2"')] * 2
    for url in feeds:
        assert sorted(e["title"] for e in _entries(snap, url).values()) == ["One", "Two"]
