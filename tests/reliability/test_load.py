"""Four importers write into one served Pod at once while a reader pages through it.

Each importer has its own account (its own mbox of distinct messages, but the
same correspondents, so the runs race to create the same Account items). The
reader paginates ``EmailMessage`` with ``search_pages`` over and over: within
one pass no item may repeat, and every item that existed when the pass began
must be in it. At the end the Pod must equal the four mailboxes imported one
after the other into a fresh Pod.
"""

from __future__ import annotations

import random
import secrets
import time
from pathlib import Path

import anyio
import pytest

from importer.pod import PodClient
from tests.email.corpus import make_mbox

from ._harness import (
    SEED,
    Corpus,
    RemoteOwner,
    assert_files_exact,
    assert_messages_once,
    assert_same_data,
    base_env,
    checkpoints,
    make_corpus,
    merge,
    pod_server,
    read_embedded,
    read_remote,
    report,
    scaled,
    start,
)

ACCOUNTS = 4
PAGE_SIZE = 100


def write_mboxes(root: Path, per_account: int, rng: random.Random) -> list[tuple[Path, Corpus]]:
    boxes = []
    for k in range(ACCOUNTS):
        corpus = make_corpus(k * per_account, per_account, rng)
        path = root / f"account{k}.mbox"
        path.write_bytes(make_mbox(corpus.raw))
        boxes.append((path, corpus))
    return boxes


class Reader:
    """Pages through every EmailMessage again and again until told to stop."""

    def __init__(self, client: PodClient) -> None:
        self.client = client
        self.passes = 0
        self.pages = 0
        self.items_seen = 0
        self.last_pass_pages = 0

    async def run(self, stop: anyio.Event) -> None:
        while not stop.is_set():
            await self.one_pass()

    async def one_pass(self) -> None:
        # One request is one read transaction: what existed before the pass began.
        before = {m["id"] for m in await self.client.search({"type": "EmailMessage"})}
        seen: list[str] = []
        pages = 0
        async for page in self.client.search_pages({"type": "EmailMessage"}, PAGE_SIZE):
            pages += 1
            seen.extend(m["id"] for m in page)
        repeated = len(seen) - len(set(seen))
        assert not repeated, f"pass {self.passes}: {repeated} items repeated across pages"
        missing = before - set(seen)
        assert not missing, f"pass {self.passes}: {len(missing)} existing items missing"
        self.passes += 1
        self.pages += pages
        self.last_pass_pages = pages
        self.items_seen += len(seen)


async def _import_concurrently(
    boxes: list[tuple[Path, Corpus]], env: dict[str, str], client: PodClient, logs: Path
) -> tuple[float, Reader]:
    reader = Reader(client)
    stop = anyio.Event()
    began = time.monotonic()
    procs = [
        start(["run", "email", "--mbox", str(path)], env, logs / f"account{k}.log")
        for k, (path, _) in enumerate(boxes)
    ]

    async def wait_all() -> None:
        try:
            for proc in procs:
                code = await anyio.to_thread.run_sync(proc.wait)
                assert code == 0, (logs / f"account{procs.index(proc)}.log").read_text()[-3000:]
        finally:
            stop.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_all)
        tg.start_soon(reader.run, stop)
    elapsed = time.monotonic() - began
    await reader.one_pass()  # and a last one over the finished Pod
    return elapsed, reader


def _sequential_reference(boxes: list[tuple[Path, Corpus]], home: Path) -> None:
    env = base_env(home)
    for k, (path, _) in enumerate(boxes):
        proc = start(["run", "email", "--mbox", str(path)], env, home / f"account{k}.log")
        assert proc.wait(timeout=600) == 0, (home / f"account{k}.log").read_text()[-3000:]


@pytest.mark.slow
async def test_four_concurrent_importers_and_a_paging_reader(tmp_path: Path) -> None:
    rng = random.Random(SEED + 2)
    per_account = scaled(500, minimum=20)
    boxes = write_mboxes(tmp_path, per_account, rng)
    await anyio.to_thread.run_sync(_sequential_reference, boxes, tmp_path / "reference")
    reference = await read_embedded(tmp_path / "reference" / "data")

    owner = RemoteOwner(secrets.token_hex(32), secrets.token_hex(32))
    home = tmp_path / "served"
    with pod_server(home / "pod", home / "pod.log") as server:
        env = base_env(home, **owner.env(server.url))
        async with owner.client(server.url) as client:
            await client.create_account()
            elapsed, reader = await _import_concurrently(boxes, env, client, home)
            landed = await read_remote(client)
            expected = set().union(*(corpus.item_ids for _, corpus in boxes))
            assert_messages_once(landed, expected)
            await assert_files_exact(client, landed, merge(corpus for _, corpus in boxes))
    assert_same_data(landed, reference)
    streams = checkpoints(landed)
    assert len(streams) == ACCOUNTS, f"one checkpoint per mbox expected, got {sorted(streams)}"
    # A page never splits one bulk (one timestamp), so pages may exceed PAGE_SIZE;
    # the last pass still crosses many of them.
    assert reader.passes >= 2 and reader.last_pass_pages >= 4
    total = per_account * ACCOUNTS
    report(
        f"load: {ACCOUNTS} importers x {per_account} messages in {elapsed:.1f}s "
        f"({total / elapsed:.0f} messages/s); reader {reader.passes} passes, "
        f"{reader.pages} pages (asked {PAGE_SIZE} a page), {reader.items_seen} items read, "
        f"last pass {reader.last_pass_pages} pages"
    )
