"""Exactly once across SIGKILLs of the importing process."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from importer.pod.local import running_pod
from importer.testing import local_pod, snapshot

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = {
    "count": 400,
    "parent_offset": 2,
    "with_files": True,
    "checkpoint_every": 7,
    "delay": 0.02,
}
"""8 s of source in all: the kills, 0.3-1.6 s into each run, must land mid-run
however fast the engine and the Pod get (the runs resume from checkpoints)."""


def _start(url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine._run_notes", url, str(data_dir), json.dumps(OPTIONS)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def _reference(tmp_path: Path) -> object:
    from importer.testing import run_connector

    from .connectors import SyncNotes

    async with local_pod(tmp_path / "reference") as client:
        quick = {**OPTIONS, "delay": 0}  # the same records, without the wait
        await run_connector(SyncNotes(), quick, client=client, data_dir=tmp_path / "reference")
        return (await snapshot(client)).comparable()


@pytest.mark.slow
async def test_sigkilled_runs_end_with_exactly_the_source(tmp_path: Path) -> None:
    reference = await _reference(tmp_path)
    data_dir = tmp_path / "crashy"
    rng = random.Random(20261127)
    kills = 0
    async with local_pod(data_dir):  # creates keys and the owner store
        pass
    with running_pod(data_dir) as url:
        for _ in range(12):
            proc = _start(url, data_dir)
            await anyio.sleep(rng.uniform(0.3, 1.6))
            if proc.poll() is None:
                proc.kill()
                kills += 1
            proc.wait()
        final = _start(url, data_dir)
        out, _ = final.communicate(timeout=120)
        assert final.returncode == 0, out.decode()
        from importer.pod import ClientAuth, PodClient, load_keys

        keys = load_keys(data_dir)
        async with PodClient(url, keys.owner_key, ClientAuth(keys.database_key)) as client:
            landed = (await snapshot(client)).comparable()
            runs = await client.search({"type": "ImporterRun", "_sortOrder": "Desc", "_limit": 1})
    assert kills >= 6, "the source finished too fast for the kills to land mid-run"
    assert landed == reference
    assert runs[0]["status"] == "done"
