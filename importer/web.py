"""For connectors that fetch over HTTP: polite retries, bounded bodies, conditional GETs, feeds.

Every web connector needs these, and each is easy to get subtly wrong (a
``Retry-After`` date, a password logged with its URL, an ETag that cannot be
sent back, an answer that never ends or trickles, a feed body taken for a
file name), so the SDK has them once: see docs/connectors.md.
"""

from __future__ import annotations

import io
from calendar import timegm
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from itertools import islice
from typing import Annotated, Any, TypeVar
from urllib.parse import urljoin
from xml.parsers.expat import errors
from xml.sax import SAXParseException

import anyio
import feedparser  # type: ignore[import-untyped]  # feedparser ships no type hints
import httpx
from pydantic import AfterValidator

from .pod._retry import parse_retry_after

__all__ = [
    "DEADLINE",
    "MAX_BYTES",
    "HttpURL",
    "TooLarge",
    "TooSlow",
    "absolute",
    "conditions",
    "cut_off",
    "feed_date",
    "gathered",
    "get_capped",
    "parse_feed",
    "polite",
    "skip_reason",
    "split_credentials",
    "validators",
]


class TooLarge(Exception):
    """An answer's body is larger than the caller takes."""


class TooSlow(TimeoutError):
    """An answer took longer, headers to last byte, than the caller waits."""


MAX_BYTES = 50 * 2**20
"""The default cap of :func:`get_capped`: far over any feed or page a person subscribes to."""

DEADLINE = 300.0
"""The default deadline of :func:`get_capped`, in seconds: a big podcast feed on a slow link."""


async def get_capped(
    http: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int = MAX_BYTES,
    deadline: float | None = DEADLINE,
    **kwargs: Any,
) -> httpx.Response:
    """``http.get(url, **kwargs)``, its body read up to ``max_bytes`` (more: :class:`TooLarge`).

    A URL that is no document (a podcast's audio, a live stream that never
    ends) would be read whole into memory, or for ever.  The bytes counted are
    the decoded ones: a small gzip of a huge body is stopped as well.  The
    whole answer, headers to last byte, gets ``deadline`` seconds (None: no
    limit; past it, :class:`TooSlow`): a server sending a byte now and then
    never trips a per-read timeout, and would hold the caller for hours.
    """
    with anyio.move_on_after(deadline) as scope:
        async with http.stream("GET", url, **kwargs) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise TooLarge(f"the answer is over {max_bytes} bytes")
    if scope.cancelled_caught:
        raise TooSlow(f"the answer took more than {deadline:g} s")
    encoded = (b"content-encoding", b"content-length")  # of the bytes before decoding
    headers = [(k, v) for k, v in response.headers.raw if k.lower() not in encoded]  # as sent
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=bytes(body),
        request=response.request,
        history=response.history,
        extensions=response.extensions,
    )


async def polite(
    send: Callable[[], Awaitable[httpx.Response]], *, max_wait: float = 60.0, tries: int = 3
) -> httpx.Response:
    """``send()``, again after the wait a 429 or 503 asks for (``max_wait`` at most).

    ``tries`` in all; the last answer is returned whatever it is.  A
    ``Retry-After`` that is missing or unreadable means one second.
    """
    response = await send()
    for _ in range(tries - 1):
        if response.status_code not in (429, 503):
            break
        wait = parse_retry_after(response.headers.get("Retry-After"))
        await anyio.sleep(min(1.0 if wait is None else wait, max_wait))
        response = await send()
    return response


T = TypeVar("T")


async def gathered(calls: Iterable[Callable[[], Awaitable[T]]], at_once: int) -> AsyncIterator[T]:
    """Each call's result, in order; the calls run ``at_once`` at a time.

    Several sources are fetched in the time of the slowest, and only ``at_once``
    results are held.  The calls of a group run in a task group that is closed
    before any result is handed out: a task group must not stay open across a
    generator's ``yield`` (the consumer may be cancelled there).
    """

    async def run(call: Callable[[], Awaitable[T]], results: list[Any], index: int) -> None:
        results[index] = await call()

    if at_once < 1:
        raise ValueError(f"at_once must be 1 or more, not {at_once}")
    pending = iter(calls)
    while group := list(islice(pending, at_once)):
        results: list[Any] = [None] * len(group)
        async with anyio.create_task_group() as tasks:
            for index, call in enumerate(group):
                tasks.start_soon(run, call, results, index)
        for result in results:
            yield result


def skip_reason(exc: Exception) -> str:
    """Why a fetch that raised ``exc`` is skipped: unreachable (network, HTTP) or failed."""
    kind = "unreachable" if isinstance(exc, httpx.HTTPError | httpx.InvalidURL) else "failed"
    return f"{kind}: {type(exc).__name__}: {exc}".removesuffix(": ")


def check_http_url(url: str) -> str:
    """``url`` if it is an http(s) address with a host; a config error names the key."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise ValueError("not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("must be an http:// or https:// URL with a host")
    return url


HttpURL = Annotated[str, AfterValidator(check_http_url)]
"""An option holding a web address: checked when the config is read, not at the first fetch."""


def split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """``url`` without ``user:password@``, and those as auth: a header, never logged.

    The URL without them is the one to store and show.  An unparsable URL is
    returned as it is (the request reports it).
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return url, None
    auth = httpx.BasicAuth(parsed.username, parsed.password) if parsed.username else None
    return str(parsed.copy_with(username=None, password=None)), auth


def validators(response: httpx.Response) -> dict[str, str]:
    """The headers of a conditional GET for what ``response`` served: a checkpoint's state."""
    etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
    found = {"If-None-Match": etag, "If-Modified-Since": modified}
    return {name: value for name, value in found.items() if value}


def conditions(state: Any) -> dict[str, str]:
    """The headers of :func:`validators` that can be sent back.

    RFC 7232 allows a non-ASCII ETag, which an HTTP header cannot carry: it
    is left out (the GET is then a plain one).
    """
    return {name: value for name, value in (state or {}).items() if value.isascii()}


def absolute(base: str, link: str | None) -> str | None:
    """``link`` resolved against ``base`` (the final URL); unparsable, it is kept as it is."""
    try:
        return urljoin(base, link) if link else link
    except ValueError:
        return link


_ENDED_EARLY = frozenset(
    {
        errors.XML_ERROR_NO_ELEMENTS,
        errors.XML_ERROR_UNCLOSED_TOKEN,
        errors.XML_ERROR_PARTIAL_CHAR,
        errors.XML_ERROR_UNCLOSED_CDATA_SECTION,
    }
)


def cut_off(error: object) -> bool:
    """Whether an XML parser's ``error`` says the document ends early.

    A body cut off (by its generator, a proxy) leaves its last element
    incomplete: what it lacks was not removed.  Other errors (a stray ``&``)
    are no sign of that.
    """
    return isinstance(error, SAXParseException) and error.getMessage() in _ENDED_EARLY


def parse_feed(response: httpx.Response) -> Any:
    """The RSS or Atom feed in ``response``, parsed by feedparser (CPU work: run it in a thread).

    The body is given as a file object: given bytes, feedparser first tries
    them as a local file's name, and a server could make it read one.
    """
    return feedparser.parse(io.BytesIO(response.content), response_headers=dict(response.headers))


def feed_date(entry: Any, key: str) -> int | None:
    """A feedparser entry's date ``key`` (``"updated_parsed"``) in milliseconds; None: it has none.

    feedparser gives UTC ``struct_time``s, and its ``get`` falls back from an
    "updated" date the entry lacks to the "published" one: ``dict.get`` does not.
    """
    parsed = dict.get(entry, key)
    return timegm(parsed) * 1000 if parsed else None
