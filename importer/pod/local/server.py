"""Running the local Pod under uvicorn: blocking, or in a background thread.

uvicorn's access log is off: an ``upload_file`` URL carries the database key.
uvicorn (and the click it imports) is loaded only when a server starts: the
embedded Pod, in every ``importer run``, never needs it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .app import create_app

if TYPE_CHECKING:
    import uvicorn

    from ._plugins import PluginLauncher

__all__ = ["ListenError", "running_pod", "serve"]


class ListenError(OSError):
    """The server's address could not be bound: the port is taken, the host not ours."""


def _server(
    app: Any,
    host: str,
    port: int,
    log_level: str,
    *,
    announce: bool = False,
    launcher: PluginLauncher | None = None,
) -> uvicorn.Server:
    """``announce``: log where it serves once it does, as uvicorn does only
    for a socket it bound itself.  ``launcher``: the importers it started are
    stopped once the server is told to stop, while it still answers them, so
    each one records its run ``interrupted`` itself."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if announce and self.started:
                logging.getLogger("uvicorn.error").info(
                    "Uvicorn running on %s (Press CTRL+C to quit)", _url(host, port)
                )

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            if launcher is not None:
                await launcher.stop()
            await super().shutdown(sockets)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return Server(config)


def serve(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 3030,
    *,
    log_level: str = "info",
    plugins: bool = True,
    **app_options: Any,
) -> None:
    """Serve the local Pod until interrupted; ``app_options`` go to :func:`create_app`.

    ``plugins``: start importers for new run items (``pod serve --no-plugins``
    turns it off); they call back at this server's address.  An address
    that cannot be bound raises :class:`ListenError` before anything is
    opened.
    """
    sock = _bind(host, port)
    try:
        app = create_app(
            Path(data_dir), plugins=plugins, plugin_address=_own_address(host, port), **app_options
        )
        server = _server(app, host, port, log_level, announce=True, launcher=app.state.plugins)
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn re-raises Ctrl-C after its graceful shutdown (stores closed).
        return
    finally:
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, as uvicorn would bind it.

    Bound here rather than by uvicorn, which logs a failure (a port out of
    range with a traceback) and exits the process with code 3.  The protocol
    is named (TCP), as ``getaddrinfo`` names it for uvicorn: asyncio turns off
    Nagle's algorithm only on connections of such a socket, and with it on,
    a request sent in two writes (headers, then body) waits ~40 ms for the
    delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        why = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        where = _url(host, port).removeprefix("http://")
        raise ListenError(f"cannot listen on {where}: {why}") from None
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _own_address(host: str, port: int) -> str:
    """Where a child process on this machine reaches the server."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return _url(host, port)


@contextmanager
def running_pod(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    log_level: str = "warning",
    wrap: Callable[[Any], Any] | None = None,
    **app_options: Any,
) -> Iterator[str]:
    """Serve the local Pod in a background thread; yields its base URL.

    ``port=0`` picks a free port.  ``wrap`` may put ASGI middleware around the
    app (tests inject faults that way).  The server is stopped (stores closed)
    on exit; ``app_options`` go to :func:`create_app`.
    """
    app: Any = create_app(Path(data_dir), **app_options)
    launcher = app.state.plugins
    if wrap is not None:
        app = wrap(app)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    if launcher is not None and launcher.address is None:
        launcher.address = _own_address(host, bound_port)
    server = _server(app, host, bound_port, log_level, launcher=launcher)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as error:  # reported to the starting thread
            failure.append(error)

    thread = threading.Thread(target=run, name="local-pod", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if failure or not thread.is_alive():
                raise RuntimeError("the local Pod failed to start") from (
                    failure[0] if failure else None
                )
            if time.monotonic() > deadline:
                raise RuntimeError("the local Pod did not start within 30 s")
            time.sleep(0.01)
        yield _url(host, bound_port)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
