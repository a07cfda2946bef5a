"""How a picture is read: once from disk, decoded at the least scale covering the thumbnail."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, JpegImagePlugin

from connectors.photos import _reader
from connectors.photos._image import read_image
from connectors.photos._reader import Reader, examine
from connectors.photos._scan import Candidate
from importer.testing import local_pod, snapshot

from .images import exif_bytes, write_image
from .test_photos import run, sha_id


def _candidate(path: Path) -> Candidate:
    stat = path.stat()
    return Candidate(path, path.name, stat.st_size, stat.st_mtime_ns)


class DraftSpy:
    """Records what JPEG decoders are asked for and the scale they settle on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.asked: list[tuple[int, int]] = []
        self.decoded: list[tuple[int, int]] = []
        draft = JpegImagePlugin.JpegImageFile.draft

        def spying(image: Any, mode: Any, size: Any) -> Any:
            if image.tile:  # not loaded yet: this choice sets the decoding scale
                self.asked.append(tuple(size))
            result = draft(image, mode, size)
            if image.tile:
                self.decoded.append(image.size)
            return result

        monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spying)


@pytest.mark.parametrize(
    ("size", "asked", "decoded", "thumbnail"),
    [
        # Landscape 4:3: an eighth covers 256 x 192 (a 256 x 256 square would need a quarter).
        ((2600, 1950), (256, 192), (325, 244), (256, 192)),
        ((1950, 2600), (192, 256), (244, 325), (192, 256)),
        ((800, 600), (256, 192), (400, 300), (256, 192)),
        ((200, 150), (200, 150), (200, 150), (200, 150)),
    ],
)
def test_jpegs_are_decoded_at_the_smallest_scale_covering_the_thumbnail(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: tuple[int, int],
    asked: tuple[int, int],
    decoded: tuple[int, int],
    thumbnail: tuple[int, int],
) -> None:
    path = write_image(tmp_path / "p.jpg", 5, size, quality=85)
    spy = DraftSpy(monkeypatch)
    info = read_image(path, 256, path.read_bytes())
    assert spy.asked == [asked] and spy.decoded == [decoded]
    with Image.open(io.BytesIO(info.thumbnail)) as small:
        assert small.size == thumbnail
    assert (info.width, info.height) == size


def test_a_turned_photo_is_reduced_then_turned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_image(tmp_path / "t.jpg", 6, (2600, 1950), exif=exif_bytes(orientation=6))
    spy = DraftSpy(monkeypatch)
    info = read_image(path, 256, path.read_bytes())
    assert spy.asked == [(256, 192)]  # the stored (landscape) pixels are what is decoded
    assert (info.width, info.height) == (1950, 2600)
    with Image.open(io.BytesIO(info.thumbnail)) as small:
        assert small.size == (192, 256)


def test_a_file_is_read_once_for_hash_and_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_image(tmp_path / "once.jpg", 7, (640, 480))
    opened: list[Path] = []
    real_open = Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(self)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    outcome = examine(_candidate(path), 256, set())
    assert opened == [path]
    assert outcome.payload is not None and outcome.info is not None
    assert outcome.payload.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert outcome.payload.content == path  # uploaded from the file, not held in memory


async def test_big_files_are_hashed_in_chunks_and_decoded_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "pictures"
    files = [write_image(root / f"b{i}.jpg", 40 + i, (900, 700)) for i in range(3)]
    monkeypatch.setattr(_reader, "_READ_WHOLE_UP_TO", 0)
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, [root])
        assert result.stats.created == 3 * 4
        snap = await snapshot(pod)
        for path in files:
            assert snap.items[sha_id(path)]["width"] == 900


def test_the_threads_work_ahead_of_a_slow_consumer(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / f"a{i}.jpg", 60 + i, (64, 48)) for i in range(40)]
    examined = 0
    lock = threading.Lock()
    real = _reader.examine

    def counting(*args: Any) -> Any:
        nonlocal examined
        with lock:
            examined += 1
        return real(*args)

    with pytest.MonkeyPatch.context() as patch, Reader(2, 64, set()) as reader:
        patch.setattr(_reader, "examine", counting)
        results = reader.read(_candidate(p) for p in paths)
        first, _ = next(results)
        deadline = time.monotonic() + 10
        while examined < 2 * _reader._QUEUED_PER_WORKER - 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        # One result taken, yet the threads went on with the files queued behind it.
        assert examined >= 2 * _reader._QUEUED_PER_WORKER - 1
        assert first.path == paths[0]
        assert [c.path for c, _ in results] == paths[1:]
