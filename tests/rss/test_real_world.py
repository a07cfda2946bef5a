"""Feeds as they come in the wild."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from connectors.rss import RSSFeed, connector
from importer.testing import local_pod, run_connector, snapshot
from importer.web import MAX_BYTES

from .feedserver import Resource, feed_server, rss


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
