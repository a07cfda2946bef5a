"""The local Pod as an ASGI app: routes, request parsing, limits and error answers.

Every client mistake becomes a 4xx with a JSON body ``{"error": ...}`` (never
a key in it); the app keeps serving and writes nothing for a rejected request.
Database work runs in worker threads.  No lifespan event is needed: stores
open lazily on first use, so the app works under uvicorn and in-process
through ``httpx.ASGITransport`` alike.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus, unquote_to_bytes

import anyio
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ._errors import PodHTTPError, bad_request, not_found
from ._files import BlobWriter, TooLarge
from ._owners import Owners, check_owner_key
from ._plugins import PluginLauncher
from ._store import Store

__all__ = ["create_app"]

_log = logging.getLogger(__name__)

MiB = 1 << 20
GiB = 1 << 30
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_ENDPOINT_NAME = re.compile(r"[a-z_]{1,40}")
_WHOLE_BODY = 4 * MiB
"""An upload body up to this size is read whole, then stored in one worker-thread hop."""
_WRITE_CHUNK = MiB
"""A bigger body is buffered and written this much per hop: memory stays small."""
_PARSE_IN_THREAD = 256 * 1024

_OPERATIONS: dict[str, Callable[[Store, Any], Any]] = {
    "create_item": Store.create_item,
    "get_item": Store.get_item,
    "update_item": Store.update_item,
    "delete_item": Store.delete_item,
    "search": Store.search,
    "bulk": Store.bulk,
    "create_edge": Store.create_edge,
    "get_edges": Store.get_edges,
    "delete_edge_by_source_target": Store.delete_edge,
}


_PLUGIN_TRIGGERS = frozenset({"create_item", "create_edge", "bulk"})
"""Writes that can create a run item (ImporterRun, PluginRun) or its ``importer`` edge."""


def _parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no lone surrogates, bounded nesting."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise bad_request(f"malformed JSON: {error}") from None


def _unwrap(body: Any) -> tuple[Any, Any]:
    """``auth`` and ``payload`` of a parsed data call body."""
    if not isinstance(body, dict):
        raise bad_request('the body must be a JSON object {"auth": ..., "payload": ...}')
    if "payload" not in body:
        raise bad_request("the body has no 'payload'")
    return body.get("auth"), body["payload"]


def _check_sha256(value: object) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise bad_request("sha256 must be 64 hexadecimal characters")
    return value.lower()


def _error_response(error: PodHTTPError) -> Response:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


def _json_response(content: bytes) -> Response:
    return Response(content, media_type="application/json")


class _LocalPod:
    """Per-app state and the route handlers."""

    def __init__(
        self,
        owners: Owners,
        max_request_bytes: int,
        max_file_bytes: int,
        plugins: PluginLauncher | None = None,
    ) -> None:
        self.owners = owners
        self.plugins = plugins
        self.max_request_bytes = max_request_bytes
        self.max_file_bytes = max_file_bytes

    # -- request plumbing -------------------------------------------------------

    @staticmethod
    def _length(request: Request) -> int | None:
        header = request.headers.get("content-length")
        if header is None:
            return None
        if not header.isdigit():
            raise bad_request("malformed Content-Length")
        return int(header)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.max_request_bytes
        length = self._length(request)
        if length is not None and length > limit:
            raise PodHTTPError(413, f"request body larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PodHTTPError(413, f"request body larger than {limit} bytes")
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _read_json(self, request: Request) -> Any:
        body = await self._read_body(request)
        if len(body) > _PARSE_IN_THREAD:
            return await anyio.to_thread.run_sync(_parse_json, body)
        return _parse_json(body)

    async def _envelope(self, request: Request) -> tuple[Any, Any]:
        return _unwrap(await self._read_json(request))

    async def _store(self, owner: str, auth: object) -> Store:
        key = self.owners.database_key(owner, auth)
        store = self.owners.open_store(owner, key)
        if store is not None:
            return store
        return await anyio.to_thread.run_sync(partial(self.owners.store, owner, key, create=True))

    # -- routes -----------------------------------------------------------------

    async def root(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def version(self, request: Request) -> Response:
        try:
            version = metadata.version("importer")
        except metadata.PackageNotFoundError:
            version = "unknown"
        return JSONResponse({"name": "importer-local-pod", "version": version, "api": ["v4", "v5"]})

    async def account(self, request: Request) -> Response:
        body = await self._read_json(request)
        if not isinstance(body, dict):
            raise bad_request('the body must be {"ownerKey": ..., "databaseKey": ...}')
        owner = body.get("ownerKey")
        if not isinstance(owner, str):
            raise bad_request("ownerKey must be 64 hexadecimal characters")
        owner = check_owner_key(owner)
        auth = {"type": "ClientAuth", "databaseKey": body.get("databaseKey")}
        await self._store(owner, auth)
        return JSONResponse({})

    async def data_call(self, request: Request) -> Response:
        owner = check_owner_key(request.path_params["owner"])
        endpoint = request.path_params["endpoint"]
        if endpoint != "get_file" and endpoint not in _OPERATIONS:
            # Named back only if it looks like an endpoint (never echo a key).
            named = f" {endpoint!r}" if _ENDPOINT_NAME.fullmatch(endpoint) else ""
            raise not_found(f"unknown endpoint{named}")
        if endpoint == "get_file":
            auth, payload = await self._envelope(request)
            store = await self._store(owner, auth)
            return await self._get_file(store, payload)
        operation = _OPERATIONS[endpoint]
        body = await self._read_body(request)

        def call() -> tuple[str, Any, Any, bytes]:
            # One worker-thread hop per call: parsing, opening, the operation
            # and encoding its answer all block, none needs the event loop.
            auth, payload = _unwrap(_parse_json(body))
            key = self.owners.database_key(owner, auth)
            store = self.owners.store(owner, key, create=True)
            result = operation(store, payload)
            return key, payload, result, orjson.dumps(result)

        key, payload, result, content = await anyio.to_thread.run_sync(call)
        if self.plugins is not None and endpoint in _PLUGIN_TRIGGERS:
            # Committed: the launcher may start an importer for a new run item.
            self.plugins.after_write(owner, key, endpoint, payload, result)
        return _json_response(content)

    async def schema_v5(self, request: Request) -> Response:
        owner = check_owner_key(request.path_params["owner"])
        auth, payload = await self._envelope(request)
        store = await self._store(owner, auth)
        await anyio.to_thread.run_sync(store.add_schema, payload)
        return JSONResponse({})

    async def _get_file(self, store: Store, payload: object) -> Response:
        if not isinstance(payload, dict):
            raise bad_request('get_file takes {"sha256": ...}')
        sha256 = _check_sha256(payload.get("sha256"))
        found = await anyio.to_thread.run_sync(store.blob_key, sha256)
        if found is None:
            raise not_found("no content with this sha256")
        key, nonce, size = found
        try:
            chunks = await anyio.to_thread.run_sync(store.files.open, sha256, key, nonce)
        except FileNotFoundError:
            raise PodHTTPError(500, "stored content is missing") from None
        return StreamingResponse(
            chunks,
            media_type="application/octet-stream",
            headers={"Content-Length": str(size)},
        )

    async def upload_file(self, request: Request) -> Response:
        owner = check_owner_key(request.path_params["owner"])
        auth = {"type": "ClientAuth", "databaseKey": request.path_params["key"]}
        sha256 = _check_sha256(request.path_params["sha256"])
        return await self._upload(request, owner, auth, sha256)

    async def upload_file_b(self, request: Request) -> Response:
        owner = check_owner_key(request.path_params["owner"])
        # Split the raw path: the url-encoded AUTH may hold an encoded "/".
        raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
        parts = raw_path.split(b"/")
        if len(parts) != 6 or parts[3] != b"upload_file_b":
            raise bad_request("expected /v4/{owner}/upload_file_b/{url-encoded AUTH}/{sha256}")
        sha256 = _check_sha256(unquote(parts[5].decode("latin-1")))
        try:
            text = unquote_to_bytes(parts[4]).decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request("the AUTH path segment is not UTF-8") from None
        try:
            auth = _parse_json(text.encode())
        except PodHTTPError:
            auth = _parse_json(unquote_plus(parts[4].decode("latin-1")).encode())
        return await self._upload(request, owner, auth, sha256)

    async def _drain(self, request: Request) -> None:
        """Read (and drop) the body, so the client gets to see the answer."""
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.max_file_bytes:
                    return
        except ClientDisconnect:
            return

    async def _upload(self, request: Request, owner: str, auth: object, sha256: str) -> Response:
        """Stream the body into an encrypted blob; answer once it is on disk and recorded.

        Few worker-thread hops: one to check and open, one per ``_WRITE_CHUNK``
        of body, one to seal, verify, place and record.  A body of at most
        ``_WHOLE_BODY`` (by its Content-Length) is read first, then handled in
        a single hop.
        """
        store = await self._store(owner, auth)
        length = self._length(request)
        if length is not None and length > self.max_file_bytes:
            raise self._too_large()
        limit = self.max_file_bytes

        def begin() -> BlobWriter:
            store.check_upload(sha256)
            return store.files.writer(limit)

        def end(writer: BlobWriter, rest: list[bytes]) -> None:
            try:
                writer.write_all(rest)
                if writer.finish() != sha256:
                    raise bad_request("the uploaded bytes do not hash to the sha256 in the URL")
                writer.place(sha256)
                store.store_blob(sha256, writer)
            finally:
                writer.discard()

        def whole(body: list[bytes]) -> None:
            end(begin(), body)

        try:
            if length is not None and length <= _WHOLE_BODY:
                await anyio.to_thread.run_sync(whole, await self._small_body(request, length))
                return JSONResponse({})
            try:
                writer = await anyio.to_thread.run_sync(begin)
            except PodHTTPError:
                await self._drain(request)
                raise
            ended = False
            try:
                pending: list[bytes] = []
                size = 0
                async for chunk in request.stream():
                    pending.append(chunk)
                    size += len(chunk)
                    if size >= _WRITE_CHUNK:
                        await anyio.to_thread.run_sync(writer.write_all, pending)
                        pending, size = [], 0
                ended = True
                await anyio.to_thread.run_sync(end, writer, pending)
            finally:
                if not ended:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(writer.discard)
        except TooLarge:
            raise self._too_large() from None
        return JSONResponse({})

    def _too_large(self) -> PodHTTPError:
        return PodHTTPError(413, f"file larger than {self.max_file_bytes} bytes")

    @staticmethod
    async def _small_body(request: Request, length: int) -> list[bytes]:
        """A body of at most ``_WHOLE_BODY`` bytes, whole; a 400 if longer than announced."""
        body: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > length:
                raise bad_request("the body is longer than its Content-Length")
            body.append(chunk)
        return body


def _endpoint(
    handler: Callable[[Request], Any],
) -> Callable[[Request], Any]:
    """Turn errors into JSON answers: PodHTTPError as is, anything else a 500."""

    async def wrapped(request: Request) -> Response:
        try:
            response: Response = await handler(request)
            return response
        except PodHTTPError as error:
            return _error_response(error)
        except ClientDisconnect:
            return _error_response(bad_request("the client went away"))
        except Exception:
            _log.exception("local Pod: internal error in %s", request.url.path.split("/")[-1])
            return _error_response(PodHTTPError(500, "internal error in the Pod"))

    return wrapped


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = {404: "no such endpoint", 405: "method not allowed"}.get(status, "bad request")
    return JSONResponse({"error": message}, status_code=status)


def create_app(
    data_dir: Path,
    *,
    max_request_bytes: int = 64 * MiB,
    max_file_bytes: int = 4 * GiB,
    accept_any_owner: bool = True,
    plugins: bool = False,
    plugin_address: str | None = None,
) -> Starlette:
    """The local Pod serving the owners' stores under ``data_dir``.

    ``plugins``: start ``importer run`` for new ImporterRun or PluginRun items (see
    :mod:`._plugins`) while a server runs the app; the children call back at
    ``plugin_address`` (``app.state.plugins.address``, settable later).

    ``app.state.issue_plugin_token(owner_key, database_key)`` mints the
    ``PluginAuth`` data for a plugin; ``app.state.close()`` closes all stores
    (done by the lifespan shutdown when a server runs the app).
    """
    owners = Owners(Path(data_dir), accept_any_owner=accept_any_owner)
    launcher = PluginLauncher(owners, address=plugin_address) if plugins else None
    pod = _LocalPod(owners, max_request_bytes, max_file_bytes, launcher)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            if launcher is None:
                yield
            else:
                async with launcher.running():  # on exit: children stopped, runs recorded
                    yield
        finally:
            await anyio.to_thread.run_sync(owners.close)

    routes = [
        Route("/", _endpoint(pod.root), methods=["GET"]),
        Route("/version", _endpoint(pod.version), methods=["GET"]),
        Route("/v4/account", _endpoint(pod.account), methods=["POST"]),
        Route(
            "/v4/{owner}/upload_file/{key}/{sha256}", _endpoint(pod.upload_file), methods=["POST"]
        ),
        Route(
            "/v4/{owner}/upload_file_b/{rest:path}", _endpoint(pod.upload_file_b), methods=["POST"]
        ),
        Route("/v4/{owner}/{endpoint}", _endpoint(pod.data_call), methods=["POST"]),
        Route("/v5/{owner}/schema", _endpoint(pod.schema_v5), methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    app.state.issue_plugin_token = owners.issue_plugin_token
    app.state.revoke_plugin_token = owners.revoke_plugin_token
    app.state.close = owners.close
    app.state.plugins = launcher
    return app
