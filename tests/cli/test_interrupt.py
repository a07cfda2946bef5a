"""Ctrl-C or SIGTERM during ``importer run``: the run item says so before the process exits."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from importer.pod import ClientAuth, PodClient
from importer.pod.local import running_pod
from importer.testing import snapshot
from importer.testing.feedserver import Resource, feed_server, rss
from tests.cli.test_cli import importer

SLOW = 40.0
"""The second feed's answer waits this long: the signal lands while the run waits for it."""

RUN_ITEM_DEADLINE = 60.0


def _entries(name: str, count: int) -> list[dict[str, str]]:
    return [
        {"guid": f"{name}-{i}", "title": f"{name} {i}", "link": f"https://blog.example/{name}/{i}"}
        for i in range(count)
    ]


def _config(path: Path, quick: str, slow: str) -> Path:
    # One feed at a time: the quick feed lands while the slow one is awaited.
    feeds = f'feeds = ["{quick}", "{slow}"]\nconcurrency = 1\n'
    path.write_text(f'[accounts.news]\nconnector = "rss"\n{feeds}')
    return path


def _env(url: str, owner: str, database: str, config: Path) -> dict[str, str]:
    return {
        "IMPORTER_POD_URL": url,
        "IMPORTER_POD_OWNER_KEY": owner,
        "IMPORTER_POD_DATABASE_KEY": database,
        "IMPORTER_CONFIG": str(config),
    }


IGNORING_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)
"""Runs its arguments with SIGINT ignored, as a shell starts a background job (``cmd &``)."""


def _start(
    tmp_path: Path, env: dict[str, str], *, ignore_sigint: bool = False
) -> subprocess.Popen[str]:
    wrapper = ["-c", IGNORING_SIGINT] if ignore_sigint else []
    full_env = {
        **os.environ,
        "IMPORTER_DATA_DIR": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "HOME": str(tmp_path / "home"),
        **env,
    }
    return subprocess.Popen(
        [sys.executable, *wrapper, "-m", "importer", "run", "rss"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=tmp_path,
    )


async def _runs(client: PodClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await client.search({"type": "ImporterRun"})
    return sorted(found, key=lambda run: run.get("startDate") or 0)


async def _counted_run(client: PodClient, proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The run item once its progress counts something (the first feed is in)."""
    deadline = time.monotonic() + RUN_ITEM_DEADLINE
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        runs = await _runs(client)
        if runs and (runs[-1].get("createdCount") or 0) > 0:
            return runs[-1]
        await anyio.sleep(0.1)
    pytest.fail("no run item with progress appeared")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "error"),
    [
        (signal.SIGINT, 130, "interrupted by the user (SIGINT)"),
        (signal.SIGTERM, 143, "stopped by SIGTERM"),
    ],
)
async def test_a_signalled_run_records_itself_interrupted_and_the_next_one_completes(
    tmp_path: Path, signum: signal.Signals, code: int, error: str
) -> None:
    owner, reference_owner, database = (secrets.token_hex(32) for _ in range(3))
    with feed_server() as feeds, running_pod(tmp_path / "served") as url:
        feeds.resources["/quick.xml"] = Resource(rss("Quick", _entries("quick", 30)))
        slow = Resource(rss("Slow", _entries("slow", 5)), delay=SLOW)
        feeds.resources["/slow.xml"] = slow
        config = _config(tmp_path / "config.toml", feeds.url("/quick.xml"), feeds.url("/slow.xml"))
        env = _env(url, owner, database, config)
        async with PodClient(url, owner, ClientAuth(database)) as client:
            proc = _start(tmp_path, env)
            try:
                seen = await _counted_run(client, proc)
                assert seen["status"] == "running" and feeds.seen("/slow.xml")
                proc.send_signal(signum)
                _, stderr = proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            assert proc.returncode == code, stderr
            assert "importer: interrupted" in stderr and "Traceback" not in stderr
            [run] = await _runs(client)
            assert run["status"] == "interrupted"
            assert run["error"] == error
            assert run["endDate"] >= run["startDate"]
            assert run["createdCount"] >= seen["createdCount"]
            shown = importer("status", tmp_path=tmp_path, env=env)
            assert f"interrupted ({error})" in shown.stdout, shown.stdout + shown.stderr

            slow.delay = 0
            done = importer("run", "rss", tmp_path=tmp_path, env=env)
            assert done.returncode == 0, done.stderr
            first, last = await _runs(client)
            assert first["status"] == "interrupted" and first["error"] == error
            assert last["status"] == "done"
            landed = (await snapshot(client)).comparable()
        (tmp_path / "clean").mkdir()
        clean = importer(
            "run",
            "rss",
            tmp_path=tmp_path / "clean",
            env={**env, "IMPORTER_POD_OWNER_KEY": reference_owner},
        )
        assert clean.returncode == 0, clean.stderr
        async with PodClient(url, reference_owner, ClientAuth(database)) as client:
            assert landed == (await snapshot(client)).comparable()


@pytest.mark.slow
async def test_a_run_started_with_sigint_ignored_goes_on_when_one_comes(tmp_path: Path) -> None:
    """A signal ignored when the run starts (SIGINT in a script's background job,
    which a Ctrl-C in that terminal also reaches) stays ignored: the run is not
    stopped by it and completes."""
    owner, database = secrets.token_hex(32), secrets.token_hex(32)
    released = threading.Event()
    with feed_server() as feeds, running_pod(tmp_path / "served") as url:
        feeds.resources["/quick.xml"] = Resource(rss("Quick", _entries("quick", 30)))
        feeds.resources["/slow.xml"] = Resource(rss("Slow", _entries("slow", 5)), hold=released)
        config = _config(tmp_path / "config.toml", feeds.url("/quick.xml"), feeds.url("/slow.xml"))
        env = _env(url, owner, database, config)
        async with PodClient(url, owner, ClientAuth(database)) as client:
            proc = _start(tmp_path, env, ignore_sigint=True)
            try:
                seen = await _counted_run(client, proc)
                assert seen["status"] == "running" and feeds.seen("/slow.xml")
                proc.send_signal(signal.SIGINT)
                try:  # handled, the signal would end the run while the slow feed is held
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    pass
                else:
                    pytest.fail(f"SIGINT stopped the run (exit status {proc.returncode})")
                released.set()
                _, stderr = proc.communicate(timeout=60)
            finally:
                released.set()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            assert proc.returncode == 0, stderr
            [run] = await _runs(client)
            assert run["status"] == "done", run
            assert run["createdCount"] > seen["createdCount"]
            entries = await client.search({"type": "RSSEntry"})
            assert sorted(e["title"] for e in entries) == sorted(
                [f"quick {i}" for i in range(30)] + [f"slow {i}" for i in range(5)]
            )


async def test_a_signal_the_finished_work_no_longer_heeds_does_not_turn_success_into_failure() -> (
    None
):
    """A signal that lands while the last, shielded step (the run item's final
    update) is in flight comes too late to stop anything: the run ends with the
    work's own exit code, not 130, so cron does not report a completed import
    as failed."""
    from importer.cli import _Stop, _until_signalled

    async def work(stop: _Stop) -> int:
        os.kill(os.getpid(), signal.SIGINT)
        with anyio.CancelScope(shield=True):  # as the final "done" update is
            await anyio.sleep(1)
        assert stop.signum == signal.SIGINT  # the signal was taken while shielded
        return 0

    assert await _until_signalled(work) == 0


async def test_a_signal_during_the_work_still_interrupts_it() -> None:
    from importer.cli import Interrupted, _Stop, _until_signalled

    async def work(stop: _Stop) -> int:
        os.kill(os.getpid(), signal.SIGINT)
        await anyio.sleep(10)
        return 0

    with pytest.raises(Interrupted) as raised:
        await _until_signalled(work)
    assert raised.value.signum == signal.SIGINT
