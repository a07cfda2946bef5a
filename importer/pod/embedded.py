"""The embedded default: the local Pod reached in-process, no socket.

The client talks to :func:`importer.pod.local.create_app` through an ASGI
transport, so it runs exactly the same code as against a Pod over HTTP.  Use
it as ``async with open_embedded_client(data_dir) as client:`` — inside
``async with`` file downloads are streamed (every other answer is one small
JSON body, run and kept whole in the caller's task); a client that is never
entered still works but holds each response body in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from ._asgi import StreamingASGITransport
from .auth import ClientAuth
from .client import PodClient
from .keys import load_keys

__all__ = ["EMBEDDED_BASE_URL", "open_embedded_client"]

EMBEDDED_BASE_URL = "http://embedded-pod"


def _answered_whole(request: httpx.Request) -> bool:
    """Every answer of the local Pod is one small JSON body, but ``get_file``'s."""
    return not request.url.path.endswith("/get_file")


def open_embedded_client(data_dir: Path, **client_kwargs: Any) -> PodClient:
    """A client for the local Pod stored in ``data_dir``, keys generated on first use.

    Call :meth:`PodClient.create_account` once before other calls (it is idempotent).
    """
    from .local import create_app  # the local Pod is only needed in embedded mode

    keys = load_keys(data_dir)
    if "transport" in client_kwargs:
        raise TypeError("open_embedded_client chooses its own transport")
    app = create_app(data_dir)
    transport = StreamingASGITransport(
        app, on_close=getattr(app.state, "close", None), answered_whole=_answered_whole
    )
    return PodClient(
        EMBEDDED_BASE_URL,
        keys.owner_key,
        ClientAuth(keys.database_key),
        transport=transport,
        **client_kwargs,
    )
