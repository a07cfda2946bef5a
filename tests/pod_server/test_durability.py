"""A SIGKILLed server loses no acknowledged bulk and never keeps part of one."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from importer.pod.local import running_pod

from .conftest import PodCaller

_BULK = 400


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    code = (
        "import sys; from pathlib import Path; from importer.pod.local import serve; "
        "serve(Path(sys.argv[1]), port=int(sys.argv[2]), log_level='error')"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(data_dir), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("the server did not start")


def test_sigkill_during_bulks(tmp_path: Path) -> None:
    owner, key = secrets.token_hex(32), secrets.token_hex(32)
    port = _free_port()
    server = _start_server(tmp_path, port)
    acknowledged: list[int] = []
    sent: list[int] = []

    def write_bulks() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            pod = PodCaller(http, owner, key)
            number = 0
            while True:
                items = [
                    {"type": "Label", "id": f"b{number}-{n}", "name": "x" * 200}
                    for n in range(_BULK)
                ]
                edges = [
                    {"_source": f"b{number}-{n}", "_target": f"b{number}-0", "_name": "first"}
                    for n in range(1, _BULK)
                ]
                sent.append(number)
                try:
                    response = pod.call("bulk", {"createItems": items, "createEdges": edges})
                except httpx.HTTPError:
                    return
                assert response.status_code == 200, response.text
                acknowledged.append(number)
                number += 1

    writer = threading.Thread(target=write_bulks)
    writer.start()
    try:
        deadline = time.monotonic() + 20
        while len(acknowledged) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # most likely in the middle of a bulk now
        os.kill(server.pid, signal.SIGKILL)
    finally:
        server.wait(timeout=10)
        writer.join(timeout=30)
    assert len(acknowledged) >= 3

    with running_pod(tmp_path) as url, httpx.Client(base_url=url, timeout=30) as http:
        pod = PodCaller(http, owner, key)
        labels = pod.search({"type": "Label"})
        by_bulk: dict[str, int] = {}
        for item in labels:
            prefix = item["id"].split("-")[0]
            by_bulk[prefix] = by_bulk.get(prefix, 0) + 1
        # Every bulk is there whole or not at all, every acknowledged one is there.
        assert set(by_bulk.values()) == {_BULK}
        assert {f"b{n}" for n in acknowledged} <= set(by_bulk)
        assert set(by_bulk) <= {f"b{n}" for n in sent}
        for prefix in by_bulk:
            edges = pod.ok("get_edges", {"item": f"{prefix}-0", "direction": "Incoming"})
            assert len(edges) == _BULK - 1
        # And the store takes writes again.
        assert pod.ok("create_item", {"type": "Label", "id": "after"}) == "after"
