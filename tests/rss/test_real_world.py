"""Feeds as they come in the wild."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.rss import RSSFeed, connector
from importer.testing import local_pod, run_connector, snapshot

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
