"""``importer pod serve`` starts ``importer run`` when an ImporterRun item is created."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from importer.pod.local._plugins import REFUSED_ERROR, runs_touched
from importer.testing import wait_until_serving

from .conftest import SAMPLE, Owner, assert_absent, base_env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``importer pod serve`` as a user starts it; its URL and its log file."""
    home = tmp_path_factory.mktemp("serve-home")
    port = _free_port()
    log = home / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "importer", "pod", "serve", "--port", str(port),
             "--data-dir", str(home / "pod")],
            env=base_env(home), stdout=out, stderr=subprocess.STDOUT, cwd=home,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, lambda: proc.poll() is None, output=log.read_text)
        yield url, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def owner(served: tuple[str, Path]) -> Owner:
    return Owner(served[0], app=None)


def test_creating_a_run_item_starts_the_importer(owner: Owner, served: tuple[str, Path]) -> None:
    account_id, importer_id, run_id = owner.make_importer(
        {"source": "mbox", "path": str(SAMPLE)}, run_status="requested"
    )
    run = owner.wait_for_run(run_id)
    assert run["status"] == "done", run
    messages = owner.search({"type": "EmailMessage"})
    assert len(messages) >= 10 and run["createdCount"] >= len(messages)
    assert json.loads(owner.item(account_id)["importerState"])["email"]
    assert "imported" in run["outputTail"] and "created" in run["outputTail"]
    assert len(run["outputTail"].encode()) <= 4096
    log = served[1].read_text()
    assert_absent([owner.key], run["outputTail"], json.dumps(owner.all_items()), log)

    # The edge may come after the item, in a request of its own.
    later = secrets.token_hex(16)
    owner.call("create_item", {"id": later, "type": "ImporterRun"})
    time.sleep(0.5)
    assert "status" not in owner.item(later)  # nothing to start without its Importer
    owner.call("create_edge", {"_source": later, "_name": "importer", "_target": importer_id})
    again = owner.wait_for_run(later)
    assert again["status"] == "done" and again["createdCount"] == 0


def test_creating_a_plugin_run_starts_the_importer(tmp_path: Path) -> None:
    """The API starts a plugin when a PluginRun is created; the local Pod does too."""
    from importer.pod.local import running_pod

    with running_pod(tmp_path / "pod", plugins=True) as url:
        pod = Owner(url, app=None)
        account_id, _, run_id = pod.make_importer(
            {"source": "mbox", "path": str(SAMPLE)}, run_type="PluginRun"
        )
        run = pod.wait_for_run(run_id)
        assert run["type"] == "PluginRun"
        assert run["status"] == "done" and run["createdCount"] > 0, run
        assert "imported" in run["outputTail"]
        assert json.loads(pod.item(account_id)["importerState"])["email"]


def test_a_second_run_for_the_same_account_is_refused(owner: Owner) -> None:
    _, importer_id, first = owner.make_importer(
        {"source": "mbox", "path": str(SAMPLE)}, handle="twice@plugin.test", link_importer=False
    )
    second = secrets.token_hex(16)
    owner.call(
        "bulk",
        {
            "createItems": [{"id": second, "type": "ImporterRun"}],
            "createEdges": [
                {"_source": second, "_name": "importer", "_target": importer_id},
                {"_source": first, "_name": "importer", "_target": importer_id},
            ],
        },
    )
    assert owner.wait_for_run(second)["status"] == "done"
    refused = owner.item(first)
    assert refused["status"] == "refused" and refused["error"] == REFUSED_ERROR


def test_stopping_the_pod_stops_its_importers(tmp_path: Path) -> None:
    import psutil

    from importer.pod.local import running_pod

    silent = socket.socket()  # accepts connections, never greets: the IMAP login waits
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    config = {
        "source": "imap", "host": "127.0.0.1", "port": silent.getsockname()[1],
        "security": "none", "username": "u", "address": "slow@plugin.test",
    }  # fmt: skip
    with silent, running_pod(tmp_path / "pod", plugins=True) as url:
        pod = Owner(url, app=None)
        _, _, run_id = pod.make_importer(config, handle="slow@plugin.test", secret="pw-123456")
        deadline = time.monotonic() + 30
        while pod.item(run_id).get("status") != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        children = [
            child
            for child in psutil.Process().children(recursive=True)
            if "importer run email" in " ".join(child.cmdline())
        ]
        assert children
        started = time.monotonic()
    assert time.monotonic() - started < 20
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    with running_pod(tmp_path / "pod", plugins=False) as url:
        run = Owner(url, app=None, owner=pod.owner, key=pod.key).item(run_id)
    assert run["status"] == "failed" and "shut down" in run["error"]
    assert "outputTail" in run


def test_a_run_whose_importer_fails_keeps_its_output(owner: Owner) -> None:
    _, _, run_id = owner.make_importer({"source": "mbox", "path": "/nonexistent/box.mbox"})
    run = owner.wait_for_run(run_id)
    assert run["status"] == "failed" and run["error"]
    assert "Traceback" not in run["outputTail"] and run["outputTail"].strip()


def test_runs_already_running_are_left_alone(owner: Owner) -> None:
    _, _, run_id = owner.make_importer(
        {"source": "mbox", "path": str(SAMPLE)}, run_status="running", handle="cli@plugin.test"
    )
    time.sleep(1.0)
    assert owner.item(run_id)["status"] == "running"
    assert "outputTail" not in owner.item(run_id)
    assert not owner.search({"type": "EmailMessage"})


def test_no_plugins_turns_the_launcher_off(tmp_path: Path) -> None:
    from importer.pod.local import running_pod

    with running_pod(tmp_path / "pod", plugins=False) as url:
        pod = Owner(url, app=None)
        _, _, run_id = pod.make_importer({"source": "mbox", "path": str(SAMPLE)})
        time.sleep(1.0)
        assert "status" not in pod.item(run_id)


def test_which_writes_touch_runs() -> None:
    run: dict[str, Any] = {"type": "ImporterRun", "id": "r1"}
    assert runs_touched("create_item", run, "r1") == ["r1"]
    assert runs_touched("create_item", {"type": "PluginRun"}, "p1") == ["p1"]
    assert runs_touched("create_item", {"type": "Importer"}, "x") == []
    edge = {"_source": "r2", "_name": "importer", "_target": "i"}
    assert runs_touched("create_edge", edge, "e") == ["r2"]
    bulk = {"createItems": [{"type": "Account"}, run], "createEdges": [edge]}
    assert runs_touched("bulk", bulk, {"createItems": ["a", "r1"]}) == ["r1", "r2"]
    plugin_bulk = {"createItems": [{"type": "PluginRun"}]}
    assert runs_touched("bulk", plugin_bulk, {"createItems": ["p2"]}) == ["p2"]


def test_an_importer_stopped_with_the_pod_records_its_run_interrupted(tmp_path: Path) -> None:
    """The server keeps answering while it stops its importers, so an importer
    told to stop (SIGTERM) records its own run ``interrupted``, counts and all,
    instead of the launcher marking it ``failed``; what it imported stays."""
    from importer.pod.local import running_pod
    from importer.testing.feedserver import Resource, feed_server, rss

    entries = [{"guid": f"q-{i}", "title": f"quick {i}"} for i in range(20)]
    with feed_server() as feeds, running_pod(tmp_path / "pod", plugins=True) as url:
        feeds.resources["/quick.xml"] = Resource(rss("Quick", entries))
        feeds.resources["/slow.xml"] = Resource(rss("Slow", []), delay=60)
        pod = Owner(url, app=None)
        quick_then_slow = [feeds.url("/quick.xml"), feeds.url("/slow.xml")]
        config = {"feeds": quick_then_slow, "concurrency": 1}  # the quick one lands first
        _, _, run_id = pod.make_importer(config, connector="rss", handle="news@plugin.test")
        deadline = time.monotonic() + 30
        while not feeds.seen("/slow.xml") or not pod.item(run_id).get("createdCount"):
            assert time.monotonic() < deadline, pod.item(run_id)
            time.sleep(0.1)
    with running_pod(tmp_path / "pod", plugins=False) as url:
        stopped = Owner(url, app=None, owner=pod.owner, key=pod.key)
        run = stopped.item(run_id)
        titles = {item["title"] for item in stopped.search({"type": "RSSEntry"})}
    assert run["status"] == "interrupted", run
    assert run["error"] == "stopped by SIGTERM"
    assert run["createdCount"] >= 20 and "outputTail" in run
    assert titles == {f"quick {i}" for i in range(20)}
