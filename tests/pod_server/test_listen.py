"""The socket the local Pod listens on: its connections send small writes at once."""

from __future__ import annotations

import asyncio
import socket

from importer.pod.local import server


async def test_connections_of_the_bound_socket_have_nagle_off() -> None:
    """The client sends a request's headers and body in two writes; with Nagle's
    algorithm on, the answer's small writes wait for a delayed ACK (~40 ms a
    request over loopback). asyncio turns it off only on a socket whose protocol
    is named, as uvicorn's own ``getaddrinfo`` socket is: the Pod's must be too."""
    accepted: asyncio.Future[asyncio.BaseTransport] = asyncio.get_running_loop().create_future()

    class Accept(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.set_result(transport)

    sock = server._bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    # What uvicorn does with the sockets it is given.
    listening = await asyncio.get_running_loop().create_server(Accept, sock=sock)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        transport = await asyncio.wait_for(accepted, 10)
        conn: socket.socket = transport.get_extra_info("socket")
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        transport.close()
        writer.close()
    finally:
        listening.close()
        await listening.wait_closed()
