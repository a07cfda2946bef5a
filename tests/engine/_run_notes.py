"""Run the notes connector against a Pod over HTTP — a process tests can SIGKILL."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

from importer.engine import EngineSettings
from importer.pod import ClientAuth, PodClient, RetryPolicy, load_keys
from importer.testing import run_connector
from tests.engine.connectors import SyncNotes


async def main(url: str, data_dir: Path, options: dict[str, object]) -> None:
    keys = load_keys(data_dir)
    retry = RetryPolicy(max_attempts=3, max_elapsed=10)
    async with PodClient(url, keys.owner_key, ClientAuth(keys.database_key), retry=retry) as client:
        result = await run_connector(
            SyncNotes(),
            options,
            client=client,
            data_dir=data_dir,
            settings=EngineSettings(batch_records=30, max_in_flight=3, flush_interval=0.2),
        )
    print(result.summary(), flush=True)
    sys.exit(1 if result.error else 0)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]))
