"""The async client for the Pod HTTP API (``/work``'s ``pod-api.md`` contract).

One :class:`PodClient` per (base URL, owner key, auth).  It keeps a single
``httpx.AsyncClient`` (pooled keep-alive connections), bounds concurrent
requests with a semaphore, retries what may be retried (see
:mod:`importer.pod._retry`) and maps failures onto :mod:`importer.pod.errors`.
Keys never reach logs or exceptions: messages are scrubbed of every secret the
client holds, and httpx's request log has the key segment of upload URLs
replaced by ``***``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import httpx
import orjson
from tenacity import RetryCallState, RetryError

from ._retry import (
    RETRY_STATUSES,
    RetryableStatus,
    RetryPolicy,
    is_retryable,
    make_retrying,
    parse_retry_after,
)
from ._upload import Body, UploadContent, check_sha256, prepare_upload
from .auth import ClientAuth, PluginAuth
from .errors import PodConflict, PodError, PodUnavailable, error_for_status

__all__ = ["BulkResult", "PodClient"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Item = dict[str, Any]

_MAX_ERROR_BODY = 16 * 1024
_DEFAULT_RETRY = RetryPolicy()  # frozen, so sharing it is safe


class _NoCookies(httpx.Cookies):
    """A cookie store that keeps nothing: the Pod API has no cookies."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _CookielessClient(httpx.AsyncClient):
    """httpx's client without cookie handling.

    httpx reads every response's headers for cookies through ``urllib``'s
    request model (~25 µs a request); uploads of small files are thousands
    of requests whose cost is mostly such overhead.
    """

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("the Pod client sends no cookies")


_NO_COOKIES = _NoCookies()
_UPLOAD_SEGMENT = re.compile(r"(/upload_file(?:_b)?/)[^/?#]+")


class _RedactUploadSecrets(logging.Filter):
    """Hide the auth segment of upload URLs in httpx's "HTTP Request: ..." log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(arg, httpx.URL) for arg in record.args
        ):
            record.args = tuple(
                _UPLOAD_SEGMENT.sub(r"\1***", str(arg)) if isinstance(arg, httpx.URL) else arg
                for arg in record.args
            )
        if isinstance(record.msg, str) and "upload_file" in record.msg:
            record.msg = _UPLOAD_SEGMENT.sub(r"\1***", record.msg)
        return True


def _install_log_redaction() -> None:
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactUploadSecrets) for f in httpx_logger.filters):
        httpx_logger.addFilter(_RedactUploadSecrets())


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What a bulk returned, per section (empty when the section was not sent)."""

    created_ids: list[str] = field(default_factory=list)
    edge_ids: list[str] = field(default_factory=list)
    search_results: list[list[Item]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Any) -> BulkResult:
        """Read the Pod's bulk answer."""
        if not isinstance(data, dict):
            raise PodError(200, "bulk answer is not a JSON object")
        return cls(
            created_ids=list(map(str, data.get("createItems") or [])),
            edge_ids=list(map(str, data.get("createEdges") or [])),
            search_results=list(data.get("search") or []),
        )


async def _read_json(response: httpx.Response) -> Any:
    raw = await response.aread()
    try:
        return orjson.loads(raw)
    except ValueError:
        raise PodError(response.status_code, "the Pod answered with invalid JSON") from None


async def _discard(response: httpx.Response) -> None:
    async for _ in response.aiter_raw():
        pass


async def _read_error_text(response: httpx.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _MAX_ERROR_BODY:
            break
    text = b"".join(chunks)[:_MAX_ERROR_BODY].decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text or response.reason_phrase
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])
    return text


class PodClient:
    """Async client for one owner's data in one Pod."""

    def __init__(
        self,
        base_url: str,
        owner_key: str,
        auth: ClientAuth | PluginAuth,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30,
        retry: RetryPolicy = _DEFAULT_RETRY,
        max_concurrency: int = 8,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.owner_key = owner_key
        self.auth = auth
        self.retry_policy = retry
        self.retry_count = 0
        """Retries performed so far (for run records)."""
        self._secrets = tuple(s for s in (*auth.secret_strings(), owner_key) if s)
        self._slots = anyio.Semaphore(max_concurrency)
        self._data_urls: dict[str, httpx.URL] = {}
        self._http = _CookielessClient(
            base_url=self.base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_concurrency, max_keepalive_connections=max_concurrency
            ),
            follow_redirects=False,
        )
        _install_log_redaction()

    def __repr__(self) -> str:
        return f"PodClient({self.base_url!r}, auth={type(self.auth).__name__})"

    async def __aenter__(self) -> Self:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Close pooled connections; the client can't be used afterwards."""
        await self._http.aclose()

    # -- plumbing -------------------------------------------------------------

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, RetryableStatus):
            return self._redact(str(exc))
        detail = str(exc)
        name = type(exc).__name__
        return self._redact(f"{name}: {detail}" if detail else name)

    def _before_sleep(self, what: str) -> Callable[[RetryCallState], None]:
        def note(state: RetryCallState) -> None:
            self.retry_count += 1
            outcome = state.outcome
            cause = outcome.exception() if outcome is not None else None
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            logger.warning(
                "Pod call %s failed (attempt %d: %s); retrying in %.2fs",
                what,
                state.attempt_number,
                self._describe(cause) if cause is not None else "unknown",
                wait,
            )

        return note

    def _data_url(self, endpoint: str) -> httpx.URL:
        """The absolute URL of a data call, parsed once per endpoint.

        httpx would otherwise parse the path and join it to the base URL on
        every request (~60 µs, a measurable share of a small bulk).
        """
        url = self._data_urls.get(endpoint)
        if url is None:
            url = httpx.URL(f"{self.base_url}/v4/{self.owner_key}/{endpoint}")
            self._data_urls[endpoint] = url
        return url

    async def _attempt(
        self,
        method: str,
        path: str | httpx.URL,
        body: Callable[[], Body] | None,
        headers: dict[str, str] | None,
        on_ok: Callable[[httpx.Response], Awaitable[T]],
    ) -> T:
        async with self._slots:
            request = self._http.build_request(
                method, path, content=body() if body is not None else None, headers=headers
            )
            response = await self._http.send(request, stream=True)
            try:
                if 200 <= response.status_code < 300:
                    return await on_ok(response)
                message = self._redact(await _read_error_text(response))
            finally:
                await response.aclose()
        status = response.status_code
        if status in RETRY_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise RetryableStatus(status, message, retry_after)
        raise error_for_status(status, message)

    async def _request(
        self,
        method: str,
        path: str | httpx.URL,
        *,
        what: str,
        on_ok: Callable[[httpx.Response], Awaitable[T]],
        body: Callable[[], Body] | None = None,
        headers: dict[str, str] | None = None,
        replayable: bool = True,
    ) -> T:
        started = time.monotonic()
        attempt = partial(self._attempt, method, path, body, headers, on_ok)
        try:
            # The first attempt goes without tenacity: setting up its
            # controller cost ~0.1 ms a call, a fifth of a small in-process
            # request, and most calls succeed first time.
            try:
                return await attempt()
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                failed = exc
            return await self._retry(what, attempt, failed, started, replayable)
        except httpx.HTTPError as exc:
            raise PodError(None, f"Pod call {what} failed: {self._describe(exc)}") from exc

    async def _retry(
        self,
        what: str,
        attempt: Callable[[], Awaitable[T]],
        failed: Exception,
        started: float,
        replayable: bool,
    ) -> T:
        """Retry ``attempt`` after its first run ``failed``, under the policy, counting it."""
        retrying = make_retrying(
            self.retry_policy,
            replayable=replayable,
            before_sleep=self._before_sleep(what),
            started=started,
        )
        first: Exception | None = failed
        try:
            async for state in retrying:
                with state:
                    if first is not None:
                        # Tenacity's first attempt is the one already made:
                        # its failure, raised again, starts the waits and the count.
                        exc, first = first, None
                        raise exc
                    return await attempt()
        except RetryError as err:
            last = err.last_attempt
            cause = last.exception()
            assert cause is not None
            status = cause.status if isinstance(cause, RetryableStatus) else None
            raise PodUnavailable(
                status,
                f"Pod call {what} failed after {last.attempt_number} attempt(s) in "
                f"{time.monotonic() - started:.1f}s; last cause: {self._describe(cause)}",
                attempts=last.attempt_number,
            ) from cause
        raise AssertionError("retry loop ended without an outcome")  # pragma: no cover

    async def _call(self, endpoint: str, payload: Any) -> Any:
        """``POST /v4/{owner}/{endpoint}`` with auth and payload; the JSON answer."""
        body = orjson.dumps({"auth": self.auth.to_json(), "payload": payload})
        return await self._request(
            "POST",
            self._data_url(endpoint),
            what=endpoint,
            on_ok=_read_json,
            body=lambda: body,
            headers={"Content-Type": "application/json"},
        )

    # -- service --------------------------------------------------------------

    async def version(self) -> dict[str, Any]:
        """The Pod's version info."""
        result = await self._request("GET", "/version", what="version", on_ok=_read_json)
        return result if isinstance(result, dict) else {"version": result}

    async def is_alive(self) -> bool:
        """One quick probe of ``GET /``; ``False`` instead of raising."""
        try:
            response = await self._http.get("/")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def create_account(self) -> None:
        """Create the owner's store (idempotent).

        Only a :class:`ClientAuth` holder can do this; with :class:`PluginAuth`
        the store exists already (the Pod started the plugin), so it is a no-op.
        """
        if not isinstance(self.auth, ClientAuth):
            return
        body = json.dumps(
            {"ownerKey": self.owner_key, "databaseKey": self.auth.database_key}
        ).encode()
        await self._request(
            "POST",
            "/v4/account",
            what="account",
            on_ok=_discard,
            body=lambda: body,
            headers={"Content-Type": "application/json"},
        )

    # -- items ----------------------------------------------------------------

    async def create_item(self, item: Item) -> str:
        """Create one item; its id (the given one or the Pod's)."""
        return str(await self._call("create_item", item))

    async def get_item(self, id: str) -> Item | None:
        """The item with ``id``, or ``None``."""
        result = await self._call("get_item", id)
        if isinstance(result, list):
            return result[0] if result else None
        return result if isinstance(result, dict) else None

    async def update_item(self, item: Item) -> None:
        """Set the given properties of item ``item["id"]`` (``None`` erases one)."""
        if "id" not in item:
            raise ValueError("update_item needs the item's id")
        await self._call("update_item", item)

    async def delete_item(self, id: str) -> None:
        """Soft-delete (``deleted: true``)."""
        await self._call("delete_item", id)

    async def search(self, filter: dict[str, Any]) -> list[Item]:
        """Items matching ``filter`` (see the API contract for its keys)."""
        result = await self._call("search", filter)
        if not isinstance(result, list):
            raise PodError(200, "search answer is not a list")
        return result

    async def search_pages(
        self, filter: dict[str, Any], page_size: int = 500
    ) -> AsyncIterator[list[Item]]:
        """All items matching ``filter``, page by page, each exactly once.

        Pages follow ``dateServerModified``: ``_limit`` never splits a
        timestamp, so the next page starts just past the last one seen
        (``>=`` last+1 ascending, ``<`` last descending).
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if "_limit" in filter or "_offset" in filter:
            raise ValueError("search_pages sets _limit itself and can't combine with _offset")
        order = filter.get("_sortOrder", "Asc")
        if order not in ("Asc", "Desc"):
            raise ValueError("_sortOrder must be 'Asc' or 'Desc'")
        query = dict(filter)
        while True:
            page = await self.search({**query, "_limit": page_size})
            if not page:
                return
            yield page
            if len(page) < page_size:
                return
            try:
                stamps = [int(item["dateServerModified"]) for item in page]
            except (KeyError, TypeError, ValueError):
                raise PodError(200, "search result without dateServerModified") from None
            if order == "Asc":
                low = max(stamps) + 1
                current = query.get("dateServerModified>=")
                query["dateServerModified>="] = low if current is None else max(current, low)
            else:
                high = min(stamps)
                current = query.get("dateServerModified<")
                query["dateServerModified<"] = high if current is None else min(current, high)

    async def last_added(self, item_type: str, **filters: Any) -> Item | None:
        """The newest item of ``item_type`` (by ``dateServerModified``) matching ``filters``."""
        result = await self.search(
            {**filters, "type": item_type, "_sortOrder": "Desc", "_limit": 1}
        )
        return result[0] if result else None

    async def bulk(
        self,
        *,
        create_items: list[Item] | None = None,
        update_items: list[Item] | None = None,
        delete_items: list[str] | None = None,
        create_edges: list[dict[str, Any]] | None = None,
        search: list[dict[str, Any]] | None = None,
    ) -> BulkResult:
        """Apply all sections in one transaction (all or nothing)."""
        sections = {
            "createItems": create_items,
            "updateItems": update_items,
            "deleteItems": delete_items,
            "createEdges": create_edges,
            "search": search,
        }
        payload = {key: value for key, value in sections.items() if value is not None}
        return BulkResult.from_json(await self._call("bulk", payload))

    # -- edges ----------------------------------------------------------------

    async def create_edge(self, source: str, target: str, name: str) -> str:
        """Create the edge ``source -name-> target``; its id."""
        result = await self._call(
            "create_edge", {"_source": source, "_target": target, "_name": name}
        )
        return str(result)

    async def get_edges(
        self, item_id: str, *, direction: str = "Outgoing", expand_items: bool = True
    ) -> list[dict[str, Any]]:
        """Edges of an item as ``[{"name": ..., "item": {...}}]``."""
        if direction not in ("Outgoing", "Incoming"):
            raise ValueError("direction must be 'Outgoing' or 'Incoming'")
        result = await self._call(
            "get_edges", {"item": item_id, "direction": direction, "expandItems": expand_items}
        )
        if not isinstance(result, list):
            raise PodError(200, "get_edges answer is not a list")
        return result

    async def delete_edge(self, source: str, target: str, name: str) -> None:
        """Delete the edge ``source -name-> target``."""
        await self._call(
            "delete_edge_by_source_target", {"_source": source, "_target": target, "_name": name}
        )

    # -- schema ---------------------------------------------------------------

    async def add_schema_v4(self, item_type: str, properties: dict[str, str]) -> None:
        """Declare properties (name -> value type) of ``item_type`` as ItemPropertySchema items."""
        if not properties:
            return
        await self.bulk(
            create_items=[
                {
                    "type": "ItemPropertySchema",
                    "itemType": item_type,
                    "propertyName": name,
                    "valueType": value_type,
                }
                for name, value_type in properties.items()
            ]
        )

    async def add_schema(
        self,
        nodes: dict[str, Any],
        edges: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Declare types with the v5 schema endpoint."""
        payload: dict[str, Any] = {"nodes": nodes}
        if edges is not None:
            payload["edges"] = edges
        if meta is not None:
            payload["meta"] = meta
        body = orjson.dumps({"auth": self.auth.to_json(), "payload": payload})
        await self._request(
            "POST",
            f"/v5/{self.owner_key}/schema",
            what="schema",
            on_ok=_discard,
            body=lambda: body,
            headers={"Content-Type": "application/json"},
        )

    # -- files ----------------------------------------------------------------

    async def upload_file(self, content: UploadContent, sha256: str | None = None) -> bool:
        """Upload file content; ``True`` if stored now, ``False`` if already stored.

        A ``File`` item with this sha256 must exist first.  Bytes and paths are
        retried like any call; an async stream given with its sha256 is sent
        once (it can't be replayed), one without is spooled to a temporary
        file to hash it and is then retried like a path.
        """
        async with prepare_upload(content, sha256) as source:
            headers = {"Content-Type": "application/octet-stream"}
            if source.size is not None:
                headers["Content-Length"] = str(source.size)
            try:
                await self._request(
                    "POST",
                    httpx.URL(
                        f"{self.base_url}/v4/{self.owner_key}/{self.auth.upload_path(source.sha256)}"
                    ),
                    what="upload_file",
                    on_ok=_discard,
                    body=source.body,
                    headers=headers,
                    replayable=source.replayable,
                )
            except PodConflict:
                return False
        return True

    async def get_file(self, sha256: str, dest: Path | None = None) -> bytes | None:
        """The file's bytes, or ``None`` after streaming them into ``dest``.

        The content is checked against ``sha256``; ``dest`` is written through a
        ``.part`` sibling and only appears once complete.
        """
        digest_hex = check_sha256(sha256)
        body = json.dumps({"auth": self.auth.to_json(), "payload": {"sha256": digest_hex}}).encode()

        def verify(digest: Any) -> None:
            if digest.hexdigest() != digest_hex:
                raise PodError(200, f"content of file {digest_hex} does not match its sha256")

        async def to_memory(response: httpx.Response) -> bytes:
            data = await response.aread()
            verify(hashlib.sha256(data))
            return data

        async def to_dest(response: httpx.Response) -> None:
            assert dest is not None
            part = dest.with_name(dest.name + ".part")
            digest = hashlib.sha256()
            try:
                async with await anyio.open_file(part, "wb") as handle:
                    async for chunk in response.aiter_bytes():
                        digest.update(chunk)
                        await handle.write(chunk)
                verify(digest)
                await anyio.Path(part).replace(dest)
            finally:
                await anyio.Path(part).unlink(missing_ok=True)

        common: dict[str, Any] = {
            "what": "get_file",
            "body": lambda: body,
            "headers": {"Content-Type": "application/json"},
        }
        path = f"/v4/{self.owner_key}/get_file"
        if dest is None:
            return await self._request("POST", path, on_ok=to_memory, **common)
        await self._request("POST", path, on_ok=to_dest, **common)
        return None
