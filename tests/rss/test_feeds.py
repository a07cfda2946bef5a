"""The feeds connector against a real HTTP server on loopback and a real local Pod."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.rss import RSSEntry, RSSFeed, connector
from importer import web
from importer.model import derive_id
from importer.testing import check_connector, local_pod, run_connector, snapshot
from importer.testing.feedserver import ATOM_TYPE, Resource, atom, closed_port_url, feed_server, rss


def _millis(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


BLOG_ITEMS = [
    {
        "title": "First post",
        "link": "https://blog.example/first",
        "guid": "tag:blog.example,2024:1",
        "description": "The first summary",
        "content:encoded": "<p>The <b>first</b> body</p>",
        "author": "ann@blog.example (Ann)",
        "pubDate": "Wed, 01 May 2024 10:00:00 +0200",
    },
    {"title": "Only a link", "link": "https://blog.example/second"},
    {"title": "Neither id nor link", "description": "Just words"},
]

NOTES_ENTRIES = [
    {
        "id": "urn:note:1",
        "title": "Atom one",
        "link": "https://notes.example/1",
        "summary": "one, briefly",
        "content": "<em>one</em> in full",
        "author": "Bo",
        "published": "2024-05-01T00:00:00Z",
        "updated": "2024-05-02T12:30:00Z",
    },
    {"id": "urn:note:2", "title": "Atom two", "updated": "2024-05-03T00:00:00Z"},
]


def _entries(snap: Any, feed_url: str) -> dict[str, dict[str, Any]]:
    feed_id = RSSFeed(url=feed_url).ensure_id()
    linked = {source for source, _, target in snap.edges_named("feed") if target == feed_id}
    return {e["externalId"]: e for e in snap.of_type("RSSEntry") if e["id"] in linked}


async def test_rss_and_atom_feeds_land_with_their_entries(tmp_path: Path) -> None:
    with feed_server() as server:
        server.resources["/blog.xml"] = Resource(rss("Blog", BLOG_ITEMS))
        server.resources["/notes.atom"] = Resource(atom("Notes", NOTES_ENTRIES), ATOM_TYPE)
        blog, notes = server.url("/blog.xml"), server.url("/notes.atom")
        async with local_pod(tmp_path / "pod") as pod:
            options = {"feeds": [blog, notes], "user_agent": "feeds-test/1.0"}
            result = await run_connector(connector, options, client=pod, data_dir=tmp_path)
            assert result.error is None and result.skip_count == 0
            snap = await snapshot(pod)
        assert [r.headers["user-agent"] for r in server.requests] == ["feeds-test/1.0"] * 2

    feeds = {f["url"]: f for f in snap.of_type("RSSFeed")}
    assert set(feeds) == {blog, notes}
    assert feeds[blog]["title"] == "Blog" and feeds[blog]["description"] == "About Blog"
    assert feeds[blog]["link"] == "https://blog.example/"
    assert feeds[notes]["title"] == "Notes" and feeds[notes]["description"] == "Notes on Notes"

    posts = _entries(snap, blog)
    assert len(posts) == 3 and len(snap.of_type("RSSEntry")) == 5
    first = posts["tag:blog.example,2024:1"]
    assert first["title"] == "First post" and first["link"] == "https://blog.example/first"
    assert first["summary"] == "The first summary"
    assert first["content"] == "<p>The <b>first</b> body</p>"
    assert first["author"] == "ann@blog.example (Ann)"
    assert first["datePublished"] == _millis(2024, 5, 1, 8)
    assert "dateUpdated" not in first  # not feedparser's stand-in: the published date
    assert first["feedUrl"] == blog
    # No guid: the link identifies the entry.
    second = posts["https://blog.example/second"]
    assert second["title"] == "Only a link" and second["link"] == "https://blog.example/second"
    # Neither: a hash of what the entry says.
    (hashed,) = (e for e in posts.values() if e["title"] == "Neither id nor link")
    assert len(hashed["externalId"]) == 64 and hashed["summary"] == "Just words"
    assert "link" not in hashed

    one = _entries(snap, notes)["urn:note:1"]
    assert one["title"] == "Atom one" and one["summary"] == "one, briefly"
    assert one["content"] == "<em>one</em> in full" and one["author"] == "Bo"
    assert one["datePublished"] == _millis(2024, 5, 1)
    assert one["dateUpdated"] == _millis(2024, 5, 2, 12, 30)
    assert one["id"] == RSSEntry(feedUrl=notes, externalId="urn:note:1").ensure_id()
    assert len(snap.edges_named("feed")) == 5


async def test_new_entries_are_imported_alone_and_changed_titles_update(tmp_path: Path) -> None:
    items = [{"guid": f"p{i}", "title": f"Post {i}", "description": f"text {i}"} for i in range(3)]
    with feed_server() as server:
        server.resources["/feed.xml"] = Resource(rss("Changing", items))
        url = server.url("/feed.xml")
        async with local_pod(tmp_path / "pod") as pod:
            first = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            assert first.stats.created == 4  # the feed and three entries

            items[0] = {**items[0], "title": "Post 0, corrected"}
            items.append({"guid": "p3", "title": "Post 3", "description": "text 3"})
            server.resources["/feed.xml"] = Resource(rss("Changing", items))
            again = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            assert again.error is None
            assert (again.stats.created, again.stats.updated) == (1, 1)
            assert again.stats.edges_created == 1
            snap = await snapshot(pod)

    titles = {e["externalId"]: e["title"] for e in _entries(snap, url).values()}
    assert titles == {"p0": "Post 0, corrected", "p1": "Post 1", "p2": "Post 2", "p3": "Post 3"}
    assert len(snap.of_type("RSSEntry")) == 4 and len(snap.edges_named("feed")) == 4


async def test_what_the_publisher_removes_from_an_entry_is_removed_in_the_pod(
    tmp_path: Path,
) -> None:
    with feed_server() as server:
        server.resources["/blog.xml"] = Resource(rss("Blog", BLOG_ITEMS[:2]))
        url = server.url("/blog.xml")
        async with local_pod(tmp_path / "pod") as pod:
            first = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            assert first.stats.created == 3

            kept = ("title", "link", "guid", "pubDate")
            stripped = {k: v for k, v in BLOG_ITEMS[0].items() if k in kept}
            blog = rss("Blog", [stripped, BLOG_ITEMS[1]])
            about = b"<description>About Blog</description>"
            server.resources["/blog.xml"] = Resource(blog.replace(about, b""))
            again = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            assert again.error is None and (again.stats.updated, again.stats.unchanged) == (2, 1)
            snap = await snapshot(pod)

            same = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            assert (same.stats.updated, same.stats.unchanged) == (0, 3)

    entry = _entries(snap, url)["tag:blog.example,2024:1"]
    assert not {"summary", "content", "author"} & set(entry)
    assert entry["title"] == "First post" and entry["datePublished"] == _millis(2024, 5, 1, 8)
    (feed,) = snap.of_type("RSSFeed")
    assert "description" not in feed and feed["title"] == "Blog"


async def test_a_document_cut_off_mid_entry_leaves_that_entry_alone_and_says_so(
    tmp_path: Path,
) -> None:
    items = [
        {"guid": "a", "title": "A", "description": "about a"},
        {"guid": "b", "title": "B", "description": "about b", "author": "bo@blog.example"},
    ]
    whole = rss("Blog", items)
    with feed_server() as server:
        server.resources["/blog.xml"] = Resource(whole)
        url = server.url("/blog.xml")
        async with local_pod(tmp_path / "pod") as pod:
            first = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            assert first.stats.created == 3

            items[0]["title"] = "A, retitled"
            cut = rss("Blog", items)[: whole.index(b"<title>B</title>") + 12]  # in b's title
            server.resources["/blog.xml"] = Resource(cut)
            again = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            snap = await snapshot(pod)

    assert again.error is None and again.stats.updated == 1
    ((ref, reason),) = [(s.ref, s.reason) for s in again.skipped]
    assert ref == url and reason.startswith("cut off: ") and "last entry is left out" in reason
    entries = _entries(snap, url)
    assert entries["a"]["title"] == "A, retitled"
    assert {k: entries["b"].get(k) for k in ("title", "summary", "author")} == {
        "title": "B",
        "summary": "about b",
        "author": "bo@blog.example",
    }
    assert len(entries) == 2


async def test_an_unchanged_feed_answers_304_and_nothing_is_written(tmp_path: Path) -> None:
    modified = "Wed, 01 May 2024 10:00:00 GMT"
    with feed_server() as server:
        server.resources["/feed.xml"] = Resource(
            rss("Stable", BLOG_ITEMS), etag='"v1"', last_modified=modified
        )
        url = server.url("/feed.xml")
        async with local_pod(tmp_path / "pod") as pod:
            first = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            assert first.stats.created == 4
            account = await pod.get_item(derive_id("Account", "rss", "test"))
            assert account is not None
            state = json.loads(account["importerState"])["rss"]
            assert state == {url: {"If-None-Match": '"v1"', "If-Modified-Since": modified}}
            before = await snapshot(pod)

            again = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            assert again.error is None and again.skip_count == 0
            assert again.stats.created == again.stats.updated == again.stats.unchanged == 0
            assert again.stats.edges_created == 0
            assert (await snapshot(pod)).comparable() == before.comparable()

            # --full-refresh forgets the validators: a plain GET, and dedup keeps it exact.
            full = await run_connector(
                connector, {"feeds": [url]}, client=pod, data_dir=tmp_path, full_refresh=True
            )
            assert full.stats.created == 0 and full.stats.unchanged == 4
        first_get, conditional, unconditional = server.seen("/feed.xml")

    assert "if-none-match" not in first_get.headers and first_get.status == 200
    assert conditional.headers["if-none-match"] == '"v1"'
    assert conditional.headers["if-modified-since"] == modified
    assert conditional.status == 304
    assert "if-none-match" not in unconditional.headers and unconditional.status == 200


async def test_503_then_200_waits_as_told_and_imports(tmp_path: Path) -> None:
    with feed_server() as server:
        server.resources["/busy.xml"] = Resource(
            rss("Busy", BLOG_ITEMS[:1]), before=[(503, {"Retry-After": "1"})]
        )
        url = server.url("/busy.xml")
        async with local_pod(tmp_path / "pod") as pod:
            result = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            assert result.error is None and result.skip_count == 0
            snap = await snapshot(pod)
        busy, served = server.seen("/busy.xml")

    assert (busy.status, served.status) == (503, 200)
    assert served.at - busy.at >= 0.9  # Retry-After: 1 was honoured
    assert [e["title"] for e in snap.of_type("RSSEntry")] == ["First post"]


async def test_retry_waits_are_bounded_and_tries_are_few(tmp_path: Path) -> None:
    refusing = [(429, {"Retry-After": "3600"})] * 5
    with feed_server() as server:
        server.resources["/limited.xml"] = Resource(rss("Limited", BLOG_ITEMS), before=refusing)
        server.resources["/fine.xml"] = Resource(rss("Fine", BLOG_ITEMS[:1]))
        limited, fine = server.url("/limited.xml"), server.url("/fine.xml")
        async with local_pod(tmp_path / "pod") as pod:
            started = time.monotonic()
            result = await run_connector(
                connector,
                {"feeds": [limited, fine], "max_retry_wait": 0.2},
                client=pod,
                data_dir=tmp_path,
            )
            assert time.monotonic() - started < 10
            snap = await snapshot(pod)
        assert [r.status for r in server.seen("/limited.xml")] == [429, 429, 429]

    assert result.error is None
    assert [(s.ref, s.reason) for s in result.skipped] == [(limited, "HTTP 429 Too Many Requests")]
    assert [f["url"] for f in snap.of_type("RSSFeed")] == [fine]


async def test_broken_feeds_are_recorded_and_the_others_import(tmp_path: Path) -> None:
    unreachable = closed_port_url()
    with feed_server() as server:
        server.resources["/good.xml"] = Resource(rss("Good", BLOG_ITEMS))
        server.resources["/truncated.xml"] = Resource(b"<rss><channel><title>Cut sh")
        server.resources["/page.html"] = Resource(b"<html><body>hi</body></html>", "text/html")
        server.resources["/slow.xml"] = Resource(rss("Slow", BLOG_ITEMS), delay=2.0)
        server.resources["/empty.xml"] = Resource(b"")
        cut = rss("Partial", BLOG_ITEMS[:1]).replace(b"</channel></rss>", b"<item><title>Cu")
        server.resources["/partial.xml"] = Resource(cut)
        paths = ["/truncated.xml", "/page.html", "/empty.xml", "/missing.xml", "/slow.xml"]
        feeds = [unreachable, *(server.url(p) for p in [*paths, "/partial.xml", "/good.xml"])]
        async with local_pod(tmp_path / "pod") as pod:
            result = await run_connector(
                connector, {"feeds": feeds, "timeout": 0.5}, client=pod, data_dir=tmp_path
            )
            assert result.error is None  # each failure is the feed's own, the run goes on
            snap = await snapshot(pod)
            assert result.run_id is not None
            run = await pod.get_item(result.run_id)
            assert run is not None

    reasons = {s.ref: s.reason for s in result.skipped}
    assert set(reasons) == set(feeds[:-1])
    assert reasons[unreachable].startswith("unreachable: ConnectError: ")
    assert reasons[server.url("/truncated.xml")].startswith("malformed feed: ")
    assert "no element found" in reasons[server.url("/truncated.xml")]
    assert reasons[server.url("/page.html")] == (
        "malformed feed: text/html is not an XML media type"
    )
    assert reasons[server.url("/empty.xml")] == "malformed feed: not RSS or Atom"
    assert reasons[server.url("/missing.xml")] == "HTTP 404 Not Found"
    assert reasons[server.url("/slow.xml")] == "unreachable: ReadTimeout"
    good, partial = server.url("/good.xml"), server.url("/partial.xml")
    assert sorted(f["url"] for f in snap.of_type("RSSFeed")) == sorted([good, partial])
    assert len(_entries(snap, good)) == 3
    # A feed that breaks off mid-way still yields the entries that were whole.
    assert list(_entries(snap, partial)) == ["tag:blog.example,2024:1"]
    assert reasons[partial].endswith(": its last entry is left out")
    logged = {entry["ref"]: entry["reason"] for entry in json.loads(run["skipLog"])}
    assert logged == reasons and run["skippedCount"] == 7 and run["status"] == "done"


async def test_a_password_in_a_feed_url_is_used_but_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with feed_server() as server:
        server.resources["/private.xml"] = Resource(rss("Private", BLOG_ITEMS[:1]))
        secret_url = server.url("/private.xml").replace("//", "//reader:s3cret-pw@")
        missing = server.url("/gone.xml").replace("//", "//reader:s3cret-pw@")
        async with local_pod(tmp_path / "pod") as pod:
            result = await run_connector(
                connector, {"feeds": [secret_url, missing]}, client=pod, data_dir=tmp_path
            )
            snap = await snapshot(pod, include_bookkeeping=True)
            account = await pod.get_item(derive_id("Account", "rss", "test"))
        assert server.seen("/private.xml")[0].headers["authorization"].startswith("Basic ")

    assert [f["url"] for f in snap.of_type("RSSFeed")] == [server.url("/private.xml")]
    assert [s.ref for s in result.skipped] == [server.url("/gone.xml")]
    stored = json.dumps([snap.items, account])
    assert "s3cret-pw" not in stored and "s3cret-pw" not in caplog.text


async def test_conformance(tmp_path: Path) -> None:
    items = [{"guid": f"g{i}", "title": f"Post {i}"} for i in range(40)]
    entries = [{"id": f"urn:e{i}", "title": f"Entry {i}"} for i in range(30)]
    with feed_server() as server:
        server.resources["/a.xml"] = Resource(rss("A", items), etag='"a"')
        server.resources["/b.atom"] = Resource(atom("B", entries), ATOM_TYPE)
        options = {"feeds": [server.url("/a.xml"), server.url("/b.atom")]}
        await check_connector(connector, options, tmp_path)


async def test_a_body_naming_a_local_file_is_parsed_as_text_not_read(tmp_path: Path) -> None:
    local = tmp_path / "private" / "feed.xml"
    local.parent.mkdir()
    local.write_bytes(rss("Local only", [{"guid": "x", "title": "read from the disk"}]))
    with feed_server() as server:
        server.resources["/feed.xml"] = Resource(str(local).encode())
        url = server.url("/feed.xml")
        async with local_pod(tmp_path / "pod") as pod:
            result = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            snap = await snapshot(pod)

    assert result.error is None
    assert snap.of_type("RSSFeed") == [] and snap.of_type("RSSEntry") == []
    ((ref, reason),) = [(s.ref, s.reason) for s in result.skipped]
    assert ref == url and reason.startswith("malformed feed: ")  # a path is not XML


async def test_a_non_ascii_etag_is_not_sent_back_and_later_runs_go_on(tmp_path: Path) -> None:
    with feed_server() as server:
        # RFC 7232 allows obs-text in an ETag; httpx cannot send it back in a header.
        server.resources["/a.xml"] = Resource(rss("A", BLOG_ITEMS[:1]), etag='"caf\u00e9"')
        server.resources["/b.xml"] = Resource(rss("B", BLOG_ITEMS[:1]))
        a, b = server.url("/a.xml"), server.url("/b.xml")
        async with local_pod(tmp_path / "pod") as pod:
            first = await run_connector(connector, {"feeds": [a, b]}, client=pod, data_dir=tmp_path)
            assert first.error is None and first.stats.created == 4

            more = [*BLOG_ITEMS[:1], {"guid": "b2", "title": "B two"}]
            server.resources["/b.xml"] = Resource(rss("B", more))
            again = await run_connector(connector, {"feeds": [a, b]}, client=pod, data_dir=tmp_path)
            assert again.error is None and again.skip_count == 0
            assert (again.stats.created, again.stats.unchanged) == (1, 4)
            snap = await snapshot(pod)
        _, unconditional = server.seen("/a.xml")

    assert "if-none-match" not in unconditional.headers and unconditional.status == 200
    assert [e["title"] for e in _entries(snap, b).values()] == ["First post", "B two"]
    assert [e["title"] for e in _entries(snap, a).values()] == ["First post"]


async def test_an_unexpected_failure_in_one_feed_is_its_error_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug met in one feed only (here, parsing one feed's body raises).
    real_parse = web.parse_feed

    def parse(response: Any) -> Any:
        if response.url.path == "/odd.xml":
            raise RuntimeError("no parser for this one")
        return real_parse(response)

    monkeypatch.setattr(web, "parse_feed", parse)
    with feed_server() as server:
        server.resources["/odd.xml"] = Resource(rss("Odd", BLOG_ITEMS[:1]))
        server.resources["/fine.xml"] = Resource(rss("Fine", BLOG_ITEMS[:1]))
        feeds = [server.url("/odd.xml"), server.url("/fine.xml")]
        async with local_pod(tmp_path / "pod") as pod:
            result = await run_connector(connector, {"feeds": feeds}, client=pod, data_dir=tmp_path)
            snap = await snapshot(pod)

    assert result.error is None
    ((ref, reason),) = [(s.ref, s.reason) for s in result.skipped]
    assert (ref, reason) == (feeds[0], "failed: RuntimeError: no parser for this one")
    assert [f["url"] for f in snap.of_type("RSSFeed")] == [feeds[1]]
    assert [e["title"] for e in _entries(snap, feeds[1]).values()] == ["First post"]


async def test_an_unreadable_retry_after_means_one_second(tmp_path: Path) -> None:
    # "\u00b2" is a digit to str.isdigit() but no number to float().
    odd = [(503, {"Retry-After": "\u00b2"})]
    with feed_server() as server:
        server.resources["/odd.xml"] = Resource(rss("Odd", BLOG_ITEMS[:1]), before=odd)
        url = server.url("/odd.xml")
        async with local_pod(tmp_path / "pod") as pod:
            started = time.monotonic()
            result = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            waited = time.monotonic() - started
            snap = await snapshot(pod)

    assert result.error is None and result.skip_count == 0
    assert [e["title"] for e in _entries(snap, url).values()] == ["First post"]
    assert waited >= 1.0


async def test_a_304_to_a_get_without_validators_is_skipped_with_its_reason(
    tmp_path: Path,
) -> None:
    with feed_server() as server:
        # No ETag or Last-Modified: the server never gives validators, yet answers 304 once.
        server.resources["/feed.xml"] = Resource(rss("F", BLOG_ITEMS), before=[(304, {})])
        url = server.url("/feed.xml")
        async with local_pod(tmp_path / "pod") as pod:
            first = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            again = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            snap = await snapshot(pod)
        plain = server.seen("/feed.xml")

    assert [(r.status, "if-none-match" in r.headers) for r in plain] == [(304, False), (200, False)]
    assert first.error is None
    assert [(s.ref, s.reason) for s in first.skipped] == [
        (url, "HTTP 304 Not Modified, but no ETag or Last-Modified was sent")
    ]
    # The next run asks again and imports the feed: the 304 left nothing behind.
    assert again.skip_count == 0 and again.stats.created == 4
    assert len(_entries(snap, url)) == 3


async def test_relative_links_are_made_absolute_against_the_final_url(tmp_path: Path) -> None:
    entries = [{"id": "urn:1", "title": "One", "link": "/posts/1"}, {"title": "Two", "link": "2"}]
    notes = atom("Notes", entries).replace(b"https://notes.example/", b"/")
    with feed_server() as server:
        server.resources["/old.atom"] = Resource(b"", before=[(301, {"Location": "/new/x.atom"})])
        server.resources["/new/x.atom"] = Resource(notes, ATOM_TYPE)
        url = server.url("/old.atom")
        async with local_pod(tmp_path / "pod") as pod:
            result = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            assert result.error is None and result.skip_count == 0
            snap = await snapshot(pod)

    (feed,) = snap.of_type("RSSFeed")
    assert feed["url"] == url and feed["link"] == server.url("/")
    links = {e["externalId"]: e["link"] for e in _entries(snap, url).values()}
    # The identity stays what the feed wrote: entries imported before keep their ids.
    assert links == {"urn:1": server.url("/posts/1"), "2": server.url("/new/2")}


async def test_id_less_entries_sharing_a_link_stay_apart_and_others_keep_their_ids(
    tmp_path: Path,
) -> None:
    home = "https://status.example/"
    items = [
        {"title": "Tuesday: outage", "link": home, "pubDate": "Tue, 07 May 2024 08:00:00 GMT"},
        {"title": "Monday: all good", "link": home, "pubDate": "Mon, 06 May 2024 08:00:00 GMT"},
        {"title": "Post-mortem", "link": "https://status.example/pm"},
        {"title": "Neither id nor link", "description": "Just words"},
    ]
    with feed_server() as server:
        server.resources["/status.xml"] = Resource(rss("Status", items))
        url = server.url("/status.xml")
        async with local_pod(tmp_path / "pod") as pod:
            first = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            assert first.error is None and first.stats.created == 5
            again = await run_connector(connector, {"feeds": [url]}, client=pod, data_dir=tmp_path)
            assert again.stats.created == again.stats.updated == 0  # the same ids every run
            snap = await snapshot(pod)

    entries = {e["title"]: e for e in _entries(snap, url).values()}
    assert sorted(entries) == [
        "Monday: all good",
        "Neither id nor link",
        "Post-mortem",
        "Tuesday: outage",
    ]
    assert entries["Monday: all good"]["link"] == entries["Tuesday: outage"]["link"] == home
    assert len(entries["Monday: all good"]["externalId"]) == 64
    assert entries["Monday: all good"]["externalId"] != entries["Tuesday: outage"]["externalId"]
    # Ids given before stay: a link of its own, or a hash of title, summary and date.
    assert entries["Post-mortem"]["externalId"] == "https://status.example/pm"
    said = "Neither id nor link\x00Just words\x00None"
    assert entries["Neither id nor link"]["externalId"] == hashlib.sha256(said.encode()).hexdigest()


async def test_feeds_are_fetched_several_at_a_time_and_land_in_their_order(
    tmp_path: Path,
) -> None:
    """Three feeds whose answers wait until all three were asked for: fetched one
    after another, the first would wait for ever (the test fails at its deadline);
    fetched together, all three import, and a fourth beyond ``concurrency`` too."""
    import threading

    release = threading.Event()
    with feed_server() as server:
        names = ["a", "b", "c", "d"]
        for name in names[:3]:
            server.resources[f"/{name}.xml"] = Resource(rss(name, BLOG_ITEMS[:1]), hold=release)
        server.resources["/d.xml"] = Resource(rss("d", BLOG_ITEMS[1:2]))
        feeds = [server.url(f"/{name}.xml") for name in names]

        asked_together: list[bool] = []

        def all_asked() -> None:
            deadline = time.monotonic() + 20
            while not all(server.seen(f"/{name}.xml") for name in names[:3]):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            else:
                asked_together.append(True)
            release.set()  # on time, or late: then the run below has waited 20 s for it

        waiter = threading.Thread(target=all_asked)
        waiter.start()
        async with local_pod(tmp_path / "pod") as pod:
            result = await run_connector(
                connector, {"feeds": feeds, "concurrency": 3}, client=pod, data_dir=tmp_path
            )
            snap = await snapshot(pod)
        waiter.join()
    assert result.error is None and not result.skipped
    assert sorted(f["title"] for f in snap.of_type("RSSFeed")) == names
    assert len(snap.of_type("RSSEntry")) == 4
    first_asked = max(server.seen(f"/{name}.xml")[0].at for name in names[:3])
    assert first_asked < server.seen("/d.xml")[0].at  # the fourth waited for a free slot
    assert asked_together, "the three held feeds were not asked for at the same time"
