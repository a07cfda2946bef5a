"""For connectors that fetch over HTTP: polite retries, and passwords kept out of URLs.

Every web connector needs both, and both are easy to get subtly wrong (a
``Retry-After`` date, a password logged with its URL), so the SDK has them
once: see docs/connectors.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import httpx

from .pod._retry import parse_retry_after

__all__ = ["polite", "split_credentials"]


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
