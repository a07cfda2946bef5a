"""A 50 MB file through the client and the local Pod without holding it in memory."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import psutil

from .conftest import PodFactory

SIZE = 50 * 1024 * 1024
BLOCK = 1024 * 1024


class PeakRss:
    """Sample this process's resident memory in a thread; report the growth."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.baseline: int = self._process.memory_info().rss
        self.peak: int = self.baseline
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss: int = self._process.memory_info().rss
            self.peak = max(self.peak, rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def write_big_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        for index in range(SIZE // BLOCK):
            block = hashlib.sha256(str(index).encode()).digest() * (BLOCK // 32)
            digest.update(block)
            handle.write(block)
    return digest.hexdigest()


async def test_50mb_round_trip_with_bounded_memory(pod: PodFactory, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    digest = write_big_file(source)
    dest = tmp_path / "back.bin"
    async with pod() as client:
        await client.create_account()
        # Warm up both paths so one-time allocations don't count.
        warm = b"warm-up" * 1000
        await client.create_item({"type": "File", "sha256": hashlib.sha256(warm).hexdigest()})
        await client.upload_file(warm)
        await client.get_file(hashlib.sha256(warm).hexdigest(), tmp_path / "warm.bin")

        await client.create_item({"type": "File", "sha256": digest, "filename": "big.bin"})
        with PeakRss() as memory:
            assert await client.upload_file(source) is True
            assert await client.get_file(digest, dest) is None
    assert dest.stat().st_size == SIZE
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest
    assert memory.growth < SIZE // 4, f"peak RSS grew by {memory.growth / 2**20:.1f} MiB"
