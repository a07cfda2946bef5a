"""The local Pod: the Pod HTTP API served from SQLCipher-encrypted SQLite.

Use :func:`create_app` for an ASGI app (in-process via ``httpx.ASGITransport``
or under any ASGI server), :func:`serve` to run it, or :func:`running_pod` for
a server in a background thread.  See ``docs/local-pod.md`` for the design.
"""

from .app import create_app
from .server import ListenError, running_pod, serve

__all__ = ["ListenError", "create_app", "running_pod", "serve"]
