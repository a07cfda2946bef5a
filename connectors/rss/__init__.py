"""RSS and Atom feeds: one ``RSSFeed`` per URL, its posts as ``RSSEntry`` items."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import anyio
import httpx
from pydantic import BaseModel, PositiveInt

from importer import Checkpoint, Connector, DateTime, Edge, Item, Record, RunContext, web


class RSSFeed(Item):
    """A feed, identified by its URL."""

    key_fields = ("url",)
    mutable_fields = frozenset({"title", "link", "description"})
    clears_missing = True  # the Pod mirrors the feed: what it no longer says is erased

    url: str | None = None
    title: str | None = None
    link: str | None = None
    description: str | None = None


class RSSEntry(Item):
    """A post: the same entry id in the same feed is one item, however often fetched."""

    key_fields = ("feedUrl", "externalId")
    mutable_fields = frozenset(
        {"title", "link", "summary", "content", "author", "dateUpdated", "enclosure"}
    )
    clears_missing = True

    feedUrl: str | None = None
    externalId: str | None = None
    title: str | None = None
    link: str | None = None
    summary: str | None = None
    content: str | None = None
    author: str | None = None
    datePublished: DateTime | None = None
    dateUpdated: DateTime | None = None
    enclosure: str | None = None  # the URL of its (first) media file: a podcast's audio


class Options(BaseModel):
    feeds: list[web.HttpURL]
    concurrency: PositiveInt = 4  # feeds fetched at once
    timeout: float = 30.0
    user_agent: str = "importer-rss/0.1"
    max_retry_wait: float = 60.0  # seconds: the longest pause a Retry-After can impose
    deadline: float = web.DEADLINE  # seconds for one answer, headers to last byte


class FeedsConnector(Connector[Options]):
    """RSS and Atom feeds, fetched politely and imported incrementally."""

    name = "rss"
    options_model = Options
    item_types = (RSSFeed, RSSEntry)

    async def fetch(self, ctx: RunContext[Options]) -> AsyncIterator[Record]:
        ctx.progress(total=len(ctx.options.feeds))
        agent, timeout = {"User-Agent": ctx.options.user_agent}, ctx.options.timeout
        async with httpx.AsyncClient(headers=agent, timeout=timeout, follow_redirects=True) as http:
            fetches = (partial(_get, ctx, http, url) for url in ctx.options.feeds)
            async for answer in web.gathered(fetches, ctx.options.concurrency):  # a few at once
                if answer is not None:  # None: failed, unchanged or no feed (skipped)
                    async for record in _feed(ctx, answer):
                        yield record
                ctx.progress(advance=1)


async def _get(ctx: RunContext[Options], http: httpx.AsyncClient, url: str) -> Any:
    """A feed's URL, answer and parsed content; None if there is nothing to import."""
    shown, auth = web.split_credentials(url)  # the feed's URL in the Pod and logs: no password
    try:  # the checkpoint is the headers of a conditional GET: unchanged, a feed answers 304
        sent = web.conditions(ctx.checkpoint(shown))
        deadline = ctx.options.deadline  # a feed that trickles must not hold up the others
        get = partial(web.get_capped, http, shown, headers=sent, auth=auth, deadline=deadline)
        response = await web.polite(get, max_wait=ctx.options.max_retry_wait)
        ok = response.status_code == 200  # parsing is CPU work: off the event loop
        parsed = await anyio.to_thread.run_sync(web.parse_feed, response) if ok else None
    except Exception as exc:  # whatever breaks one feed is that feed's error alone
        ctx.skip(shown, web.skip_reason(exc))
        return None
    if response.status_code == 304 and sent:  # unchanged since the last run
        return None
    if parsed is None:  # a 304 to a plain GET is unchanged from nothing we have
        why = ", but no ETag or Last-Modified was sent" if response.status_code == 304 else ""
        ctx.skip(shown, f"HTTP {response.status_code} {response.reason_phrase}{why}")
    elif not parsed.entries and (parsed.bozo or not parsed.get("version")):
        ctx.skip(shown, f"malformed feed: {parsed.get('bozo_exception') or 'not RSS or Atom'}")
    else:
        return shown, response, parsed
    return None


async def _feed(ctx: RunContext[Options], answer: tuple[str, Any, Any]) -> AsyncIterator[Record]:
    """One feed's records: the feed, its entries, then its checkpoint."""
    shown, response, parsed = answer
    info, base = parsed.feed, str(response.url)  # not feedparser's: it would rewrite guids
    link = web.absolute(base, info.get("link"))
    feed = RSSFeed(url=shown, title=info.get("title"), link=link, description=info.get("subtitle"))
    yield feed
    entries, error = parsed.entries, parsed.get("bozo_exception")
    if web.cut_off(error):  # the last entry is incomplete: left out, not imported in part
        entries = entries[:-1]
        ctx.skip(shown, f"cut off: {error}: its last entry is left out")
    links = Counter(e.get("link") for e in entries if e.get("link") and not e.get("id"))
    for entry in entries:
        item = await _entry(ctx, shown, base, entry, alone=links[entry.get("link")] < 2)
        yield item
        yield Edge(item, "feed", feed)
    yield Checkpoint(web.validators(response), stream=shown)


async def _entry(ctx: RunContext[Any], feed: str, base: str, entry: Any, alone: bool) -> RSSEntry:
    """The entry, known by its id (an RSS guid), else its link, else a hash of what it says."""
    item = RSSEntry(
        feedUrl=feed,
        title=entry.get("title"),
        link=web.absolute(base, entry.get("link")),
        summary=entry.get("summary"),
        content=(entry.get("content") or [{}])[0].get("value"),
        author=entry.get("author"),
        datePublished=web.feed_date(entry, "published_parsed"),
        dateUpdated=web.feed_date(entry, "updated_parsed"),
        enclosure=web.absolute(base, (entry.get("enclosures") or [{}])[0].get("href")),
    )
    # Id-less entries sharing a link are hashed with it; the Pod says which id an entry had.
    link, known = entry.get("link"), partial(ctx.last_added, "RSSEntry", feedUrl=feed)
    said = "\x00".join(str(entry.get(key)) for key in ("title", "summary", "published"))
    hashed = hashlib.sha256((f"{link}\x00{said}" if link else said).encode()).hexdigest()
    if entry.get("id") or not link:
        item.externalId = entry.get("id") or hashed
    elif alone:  # known by its link, unless first imported while the link was shared
        item.externalId = hashed if await known(externalId=hashed) else link
    else:  # hashed, but the one first imported alone keeps its link if it says the same
        first = await known(externalId=link) or {}
        same = all(first.get(k) == getattr(item, k) for k in ("title", "summary", "datePublished"))
        item.externalId = link if first and same else hashed
    return item


connector = FeedsConnector()
