"""``importer.web``'s bounded GET against the real feed server on loopback."""

from __future__ import annotations

import anyio
import httpx
import pytest

from importer import web
from importer.testing.feedserver import Resource, feed_server, rss


async def test_get_capped_gives_the_whole_answer_a_deadline_headers_to_last_byte() -> None:
    body = rss("Feed", [{"guid": "1", "title": "One"}])
    with feed_server() as server:
        server.resources["/fine.xml"] = Resource(body)
        server.resources["/late.xml"] = Resource(body, delay=3.0)  # the headers come late
        server.resources["/trickle.xml"] = Resource(body, trickle=0.2)  # the body never ends
        async with httpx.AsyncClient(timeout=5.0) as http:  # no read waits that long
            with anyio.fail_after(10):
                fine = await web.get_capped(http, server.url("/fine.xml"), deadline=0.5)
                with pytest.raises(web.TooSlow) as late:
                    await web.get_capped(http, server.url("/late.xml"), deadline=0.5)
                with pytest.raises(web.TooSlow) as trickled:
                    await web.get_capped(http, server.url("/trickle.xml"), deadline=0.5)
        assert [r.status for r in server.seen("/trickle.xml")] == [200]

    assert fine.status_code == 200 and fine.content == body
    assert str(late.value) == str(trickled.value) == "the answer took more than 0.5 s"
    assert isinstance(trickled.value, TimeoutError)
