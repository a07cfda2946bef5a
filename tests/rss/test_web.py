"""``importer.web``'s bounded GET against the real feed server on loopback."""

from __future__ import annotations

from typing import Any

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


async def test_gathered_runs_a_group_at_once_and_hands_out_results_in_order() -> None:
    started: list[int] = []
    first_group_in = anyio.Event()

    def call(index: int, wait: float) -> Any:
        async def run() -> int:
            started.append(index)
            if len(started) == 3:
                first_group_in.set()
            with anyio.fail_after(5):  # a group run one call at a time never gets here
                await first_group_in.wait()
            await anyio.sleep(wait)
            return index

        return run

    waits = [0.2, 0.0, 0.1, 0.0]  # the first call of the group ends last
    with anyio.fail_after(10):
        results = [r async for r in web.gathered((call(i, w) for i, w in enumerate(waits)), 3)]
    assert results == [0, 1, 2, 3]
    assert started[3] == 3  # the fourth began only after the first group ended
    with pytest.raises(ValueError, match="at_once"):
        [r async for r in web.gathered([call(0, 0)], 0)]
