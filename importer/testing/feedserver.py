"""A real HTTP server on 127.0.0.1 that serves feeds whose content a test controls.

It answers conditional GETs with 304, can be told to answer 429/503 first, to
be slow (or to wait until the test lets it answer), to redirect every request,
to stream without end or to trickle its body a byte at a time, and records
every request it saw (headers included).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

RSS_TYPE = "application/rss+xml; charset=utf-8"
ATOM_TYPE = "application/atom+xml; charset=utf-8"


@dataclass
class Resource:
    """What the server answers at one path."""

    body: bytes
    content_type: str = RSS_TYPE
    etag: str | None = None
    last_modified: str | None = None
    before: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    """Answers used up, one per request, before the body is served: ``[(503, headers)]``."""
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    """More headers for the body's answer: ``{"Content-Encoding": "gzip"}``."""
    moved: tuple[int, str] | None = None
    """Every request answered with this redirect and no body: ``(301, "/new.xml")``."""
    endless: bool = False
    """The body is sent again and again until the client hangs up (a live audio stream)."""
    trickle: float = 0.0
    """Seconds between the body's bytes, sent one at a time after the headers (a stalling host)."""
    hold: threading.Event | None = None
    """The answer waits until this is set (or the server stops): a test decides when it comes."""


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    status: int
    at: float


class FeedServer:
    """Serves ``resources`` by path; ``requests`` lists what it was asked, in order."""

    def __init__(self) -> None:
        self.port = 0
        self.resources: dict[str, Resource] = {}
        self.requests: list[Request] = []
        self.stopping = threading.Event()
        """Set when the server stops: a trickling answer ends at once."""
        self.trickling: list[threading.Thread] = []
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def seen(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            resource = self.resources.get(path)
            out: dict[str, str] = {}
            if resource is None:
                status, body = 404, b"not found"
            elif resource.moved:
                status, body = resource.moved[0], b""
                out = {"Location": resource.moved[1]}
            elif resource.before:
                status, out = resource.before.pop(0)
                body = b""
            elif _unchanged(resource, headers):
                status, body = 304, b""
            else:
                status, body = 200, resource.body
                out = {"Content-Type": resource.content_type, **resource.headers}
                if resource.etag:
                    out["ETag"] = resource.etag
                if resource.last_modified:
                    out["Last-Modified"] = resource.last_modified
            self.requests.append(Request(path, headers, status, time.monotonic()))
            delay = resource.delay if resource else 0.0
            hold = resource.hold if resource else None
        time.sleep(delay)
        while hold is not None and not hold.is_set() and not self.stopping.wait(0.05):
            pass
        return status, out, body


def _unchanged(resource: Resource, headers: dict[str, str]) -> bool:
    if resource.etag and headers.get("if-none-match") == resource.etag:
        return True
    return bool(
        resource.last_modified and headers.get("if-modified-since") == resource.last_modified
    )


def _handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, out, body = server.answer(self.path, headers)
            resource = server.resources.get(self.path)
            endless = status == 200 and resource is not None and resource.endless
            trickle = resource.trickle if status == 200 and resource is not None else 0.0
            try:
                self.send_response(status)
                for name, value in out.items():
                    self.send_header(name, value)
                if not endless:  # else the body ends when the connection does (HTTP/1.0)
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if trickle:
                    self._trickle(body, trickle)
                else:
                    self.wfile.write(body)
                while endless:
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def _trickle(self, body: bytes, interval: float) -> None:
            with server._lock:
                server.trickling.append(threading.current_thread())
            for byte in body:
                if server.stopping.wait(interval):
                    return
                self.wfile.write(bytes([byte]))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def feed_server() -> Iterator[FeedServer]:
    """A running server on a free loopback port, stopped on exit."""
    server = FeedServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    server.port = httpd.server_address[1]
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()
        for handler in server.trickling:  # not left writing to a test that is over
            handler.join()


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/feed.xml"


def rss(title: str, items: list[dict[str, str]], *, link: str = "https://blog.example/") -> bytes:
    """An RSS 2.0 document; item keys are the element names (guid, title, link, ...)."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">',
        f"<channel><title>{escape(title)}</title><link>{link}</link>",
        f"<description>About {escape(title)}</description>",
    ]
    for item in items:
        parts.append("<item>")
        for name, value in item.items():
            parts.append(f"<{name}>{escape(value)}</{name}>")
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "\n".join(parts).encode()


def atom(title: str, entries: list[dict[str, str]]) -> bytes:
    """An Atom 1.0 document; entry keys: id, title, link, summary, content, author, dates."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<title>{escape(title)}</title><subtitle>Notes on {escape(title)}</subtitle>",
        '<link href="https://notes.example/"/><id>urn:notes</id>',
        "<updated>2024-05-02T00:00:00Z</updated>",
    ]
    for entry in entries:
        parts.append("<entry>")
        for name, value in entry.items():
            if name == "link":
                parts.append(f'<link href="{escape(value)}"/>')
            elif name == "author":
                parts.append(f"<author><name>{escape(value)}</name></author>")
            elif name == "content":
                parts.append(f'<content type="html">{escape(value)}</content>')
            else:
                parts.append(f"<{name}>{escape(value)}</{name}>")
        parts.append("</entry>")
    parts.append("</feed>")
    return "\n".join(parts).encode()
