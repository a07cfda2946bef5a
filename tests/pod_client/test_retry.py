"""Exact retry sequences (respx): what is retried, how long it waits, and when it stops."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import anyio
import httpx
import pytest
import respx

from importer.pod import (
    ClientAuth,
    PodAuthError,
    PodBadRequest,
    PodClient,
    PodConflict,
    PodError,
    PodNotFound,
    PodTooLarge,
    PodUnavailable,
    RetryPolicy,
)

BASE = "http://pod.test"
OWNER = "0" * 63 + "1"
KEY = "ab" * 32
SEARCH_URL = f"{BASE}/v4/{OWNER}/search"
FAST = RetryPolicy(max_attempts=5, max_elapsed=5.0, initial_backoff=0.001, max_backoff=0.01)


def make_client(policy: RetryPolicy = FAST) -> PodClient:
    return PodClient(BASE, OWNER, ClientAuth(KEY), retry=policy)


async def failed_search(policy: RetryPolicy) -> tuple[PodUnavailable, int]:
    """A search that ends in PodUnavailable under ``policy``: the error, the retries made."""
    async with make_client(policy) as client:
        with pytest.raises(PodUnavailable) as caught:
            await client.search({})
        return caught.value, client.retry_count


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock


async def test_503_then_success_is_retried(router: respx.MockRouter) -> None:
    route = router.post(SEARCH_URL).mock(
        side_effect=[
            httpx.Response(503, json={"error": "busy"}),
            httpx.Response(503, text="still busy"),
            httpx.Response(200, json=[{"id": "a"}]),
        ]
    )
    async with make_client() as client:
        assert await client.search({"type": "Person"}) == [{"id": "a"}]
        assert client.retry_count == 2
    assert route.call_count == 3


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retryable_statuses(router: respx.MockRouter, status: int) -> None:
    route = router.post(SEARCH_URL).mock(
        side_effect=[httpx.Response(status), httpx.Response(200, json=[])]
    )
    async with make_client() as client:
        assert await client.search({}) == []
    assert route.call_count == 2


async def test_retry_after_seconds_is_honoured(router: respx.MockRouter) -> None:
    route = router.post(SEARCH_URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "0.4"}),
            httpx.Response(200, json=[{"id": "x"}]),
        ]
    )
    async with make_client() as client:
        started = time.monotonic()
        assert await client.search({}) == [{"id": "x"}]
        elapsed = time.monotonic() - started
    assert route.call_count == 2
    assert 0.4 <= elapsed < 2.0


async def test_retry_after_http_date_is_honoured(router: respx.MockRouter) -> None:
    # An HTTP date has one-second resolution: a whole second three seconds
    # ahead of the current one is between two and three seconds away.
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    route = router.post(SEARCH_URL).mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": format_datetime(when, usegmt=True)}),
            httpx.Response(200, json=[]),
        ]
    )
    async with make_client() as client:
        started = time.monotonic()
        await client.search({})
        elapsed = time.monotonic() - started
    assert route.call_count == 2
    assert 1.5 <= elapsed < 4.5


async def test_retry_after_is_capped_by_remaining_budget(router: respx.MockRouter) -> None:
    route = router.post(SEARCH_URL).mock(
        return_value=httpx.Response(503, headers={"Retry-After": "30"}, json={"error": "later"})
    )
    policy = RetryPolicy(max_attempts=10, max_elapsed=0.5, initial_backoff=0.001)
    async with make_client(policy) as client:
        started = time.monotonic()
        with pytest.raises(PodUnavailable) as caught:
            await client.search({})
        elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert route.call_count == 2  # first try, then one more at the end of the budget
    assert caught.value.status == 503
    assert caught.value.attempts == 2
    assert "later" in str(caught.value)


async def test_attempts_are_bounded(router: respx.MockRouter) -> None:
    route = router.post(SEARCH_URL).mock(return_value=httpx.Response(502, text="bad gateway"))
    error, retries = await failed_search(
        RetryPolicy(max_attempts=3, max_elapsed=10, initial_backoff=0.001)
    )
    assert retries == 2
    assert route.call_count == 3
    assert error.attempts == 3
    assert "3 attempt" in str(error)
    assert "bad gateway" in str(error)


async def test_total_time_is_bounded(router: respx.MockRouter) -> None:
    route = router.post(SEARCH_URL).mock(return_value=httpx.Response(503))
    policy = RetryPolicy(max_attempts=1000, max_elapsed=0.6, initial_backoff=0.05, max_backoff=0.1)
    async with make_client(policy) as client:
        started = time.monotonic()
        with pytest.raises(PodUnavailable):
            await client.search({})
        elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 1.2
    assert 3 <= route.call_count < 1000


async def test_time_budget_counts_the_first_attempt(router: respx.MockRouter) -> None:
    # The first attempt runs before any retry machinery is set up; its time
    # still counts: one slow failure that uses the whole budget ends the call.
    async def slow_503(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.4)
        return httpx.Response(503, json={"error": "slow and busy"})

    route = router.post(SEARCH_URL).mock(side_effect=slow_503)
    error, retries = await failed_search(
        RetryPolicy(max_attempts=10, max_elapsed=0.3, initial_backoff=0.001)
    )
    assert retries == 0
    assert route.call_count == 1
    assert error.attempts == 1
    assert "slow and busy" in str(error)


async def test_connection_errors_are_retried(router: respx.MockRouter) -> None:
    route = router.post(SEARCH_URL).mock(
        side_effect=[
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("slow"),
            httpx.RemoteProtocolError("dropped"),
            httpx.ReadError("reset"),
            httpx.Response(200, json=[{"id": "ok"}]),
        ]
    )
    async with make_client() as client:
        assert await client.search({}) == [{"id": "ok"}]
        assert client.retry_count == 4
    assert route.call_count == 5


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, PodBadRequest),
        (401, PodAuthError),
        (403, PodAuthError),
        (404, PodNotFound),
        (409, PodConflict),
        (413, PodTooLarge),
        (422, PodError),
    ],
)
async def test_other_4xx_are_not_retried(
    router: respx.MockRouter, status: int, error: type[PodError]
) -> None:
    route = router.post(SEARCH_URL).mock(
        return_value=httpx.Response(status, json={"error": f"reason {status}"})
    )
    async with make_client() as client:
        with pytest.raises(error) as caught:
            await client.search({})
        assert client.retry_count == 0
    assert route.call_count == 1
    assert caught.value.status == status
    assert caught.value.message == f"reason {status}"


async def test_long_error_messages_are_truncated(router: respx.MockRouter) -> None:
    router.post(SEARCH_URL).mock(return_value=httpx.Response(400, text="x" * 100_000))
    async with make_client() as client:
        with pytest.raises(PodBadRequest) as caught:
            await client.search({})
    assert 100 < len(caught.value.message) <= 500


async def test_key_echoed_by_the_pod_is_redacted(router: respx.MockRouter) -> None:
    router.post(SEARCH_URL).mock(
        return_value=httpx.Response(401, json={"error": f"bad key {KEY} for {OWNER}"})
    )
    async with make_client() as client:
        with pytest.raises(PodAuthError) as caught:
            await client.search({})
    text = str(caught.value) + repr(caught.value)
    assert KEY not in text
    assert OWNER not in text
    assert "bad key ***" in text


async def test_upload_from_path_is_replayed_on_retry(
    router: respx.MockRouter, tmp_path: Path
) -> None:
    content = bytes(range(256)) * 3000
    source = tmp_path / "blob.bin"
    source.write_bytes(content)
    bodies: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        return httpx.Response(503 if len(bodies) < 3 else 200, json={})

    route = router.post(url__regex=rf"{BASE}/v4/{OWNER}/upload_file/.*").mock(side_effect=answer)
    async with make_client() as client:
        assert await client.upload_file(source) is True
    assert route.call_count == 3
    assert bodies == [content, content, content]
    assert route.calls.last.request.headers["content-length"] == str(len(content))


async def test_upload_from_stream_with_hash_is_sent_once(router: respx.MockRouter) -> None:
    route = router.post(url__regex=rf"{BASE}/v4/{OWNER}/upload_file/.*").mock(
        return_value=httpx.Response(503)
    )

    async def chunks() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    async with make_client() as client:
        with pytest.raises(PodUnavailable) as caught:
            await client.upload_file(chunks(), sha256="a" * 64)
    assert route.call_count == 1
    assert caught.value.attempts == 1


async def test_upload_409_means_already_stored(router: respx.MockRouter) -> None:
    router.post(url__regex=rf"{BASE}/v4/{OWNER}/upload_file/.*").mock(
        return_value=httpx.Response(409, json={"error": "already stored"})
    )
    async with make_client() as client:
        assert await client.upload_file(b"data") is False


async def test_concurrency_is_bounded(router: respx.MockRouter) -> None:
    in_flight = 0
    most = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await anyio.sleep(0.02)
        in_flight -= 1
        return httpx.Response(200, json=[])

    router.post(SEARCH_URL).mock(side_effect=answer)
    client = PodClient(BASE, OWNER, ClientAuth(KEY), max_concurrency=3)
    async with client, anyio.create_task_group() as group:
        for _ in range(12):
            group.start_soon(client.search, {})
    assert most == 3


async def test_search_pages_narrows_the_callers_range(router: respx.MockRouter) -> None:
    sent: list[dict[str, object]] = []
    pages = [
        [{"id": "a", "dateServerModified": 10}, {"id": "b", "dateServerModified": 11}],
        [{"id": "c", "dateServerModified": 12}],
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content)["payload"])
        return httpx.Response(200, json=pages[len(sent) - 1])

    router.post(SEARCH_URL).mock(side_effect=answer)
    async with make_client() as client:
        got = [
            page
            async for page in client.search_pages(
                {"type": "X", "dateServerModified>=": 5, "dateServerModified<": 100}, 2
            )
        ]
        with pytest.raises(ValueError):
            async for _ in client.search_pages({"_limit": 3}):
                pass
    assert got == pages
    assert sent == [
        {"type": "X", "dateServerModified>=": 5, "dateServerModified<": 100, "_limit": 2},
        {"type": "X", "dateServerModified>=": 12, "dateServerModified<": 100, "_limit": 2},
    ]
