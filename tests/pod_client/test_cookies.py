"""The Pod API has no cookies: the client neither keeps nor sends any."""

from __future__ import annotations

import asyncio

from importer.pod import ClientAuth, PodClient

OWNER = "e" * 64
KEY = "f" * 64
REPLY = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    b"set-cookie: session=abc; Path=/\r\ncontent-length: 2\r\n\r\n[]"
)


async def test_cookies_set_by_a_server_are_never_sent_back() -> None:
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                heads.append(head.lower())
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":")[1]))
                writer.write(REPLY)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with PodClient(f"http://127.0.0.1:{port}", OWNER, ClientAuth(KEY)) as client:
            assert await client.search({"type": "Person"}) == []
            assert await client.search({"type": "Person"}) == []
            await client.upload_file(b"content")
    finally:
        server.close()
        await server.wait_closed()
    assert len(heads) == 3
    assert all(b"\r\ncookie:" not in head for head in heads)
