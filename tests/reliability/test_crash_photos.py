"""Exactly once for photos when ``importer run photos`` is SIGKILLed and restarted.

Generated JPEGs in two roots (EXIF dates, GPS on some, exact copies in two
folders, near duplicates, a corrupt file) are imported by ``python -m importer
run photos`` into the embedded Pod while the suite kills it at seeded random
moments. After each kill no root's checkpoint may be ahead of the data; at the
end the Pod must equal a clean import of the same folders, and every File must
hold the bytes of its original on disk or of its thumbnail.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image

from connectors.photos import PhotoPath, _state
from connectors.photos._image import read_image
from importer import derive_id
from importer.pod import PodClient, open_embedded_client
from importer.pod.errors import PodNotFound
from importer.testing import PodSnapshot
from tests.photos.images import exif_bytes, scene

from ._harness import (
    SEED,
    KillWindow,
    assert_same_data,
    base_env,
    checkpoints,
    edge_counts,
    read_embedded,
    report,
    run_to_end,
    scaled,
    sigkill,
    start,
)

KILLS = 8
ROOTS = ("camera", "phone")
THUMBNAIL_SIZE = 256  # the connector's default
CONFIG = "[engine]\nbatch_records = 100\n"
"""Bulks of 100 records (1000 by default): a run sends a dozen, so kills meet bulks,
uploads and checkpoint writes, not only one bulk and its uploads."""


@dataclass
class Picture:
    """One file to deliver: where it goes (below a root) and its bytes."""

    relative: str
    content: bytes
    located: bool = False
    corrupt: bool = False
    near: bool = False


@dataclass
class Pictures:
    """Generated picture files, delivered into two roots in waves, and what a clean
    import must make of those delivered so far."""

    roots: list[Path]
    planned: list[tuple[int, Picture]]
    """(root index, picture) in the order they arrive."""
    delivered: int = 0
    originals: dict[str, bytes] = field(default_factory=dict)
    """sha256 -> bytes of every distinct picture."""
    paths: dict[str, str] = field(default_factory=dict)
    """Absolute path of every picture file -> the sha256 of its bytes."""
    located: set[str] = field(default_factory=set)
    """sha256 of the pictures whose EXIF carries a GPS position."""
    corrupt: set[str] = field(default_factory=set)
    """Absolute paths of the files that are no picture (skipped for good)."""
    thumbnails: dict[str, bytes] = field(default_factory=dict)
    """sha256 of a picture -> its thumbnail, as the connector makes it."""

    @property
    def files(self) -> int:
        return len(self.paths) + len(self.corrupt)

    def photo_id(self, sha256: str) -> str:
        return derive_id("Photo", sha256)

    def run_args(self) -> list[str]:
        return ["run", "photos", "-o", "roots=" + json.dumps([str(r) for r in self.roots])]

    def deliver(self, count: int) -> None:
        """Write the next ``count`` files into their roots."""
        for index, picture in self.planned[self.delivered : self.delivered + count]:
            path = self.roots[index] / picture.relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(picture.content)
            if picture.corrupt:
                self.corrupt.add(str(path))
                continue
            digest = hashlib.sha256(picture.content).hexdigest()
            self.originals[digest] = picture.content
            self.paths[str(path)] = digest
            if picture.located:
                self.located.add(digest)
            if digest not in self.thumbnails:
                info = read_image(path, THUMBNAIL_SIZE, picture.content)
                self.thumbnails[digest] = info.thumbnail
        self.delivered = min(len(self.planned), self.delivered + count)

    def contents(self) -> set[str]:
        """sha256 of every original and thumbnail delivered so far."""
        thumbnails = {hashlib.sha256(t).hexdigest() for t in self.thumbnails.values()}
        return set(self.originals) | thumbnails

    def copy(self, base: Path) -> Pictures:
        """The same files, all delivered, into two roots under ``base``."""
        twin = Pictures([base / root.name for root in self.roots], self.planned)
        twin.deliver(len(self.planned))
        return twin


def _jpeg(image: Image.Image, **save: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", **save)
    return out.getvalue()


def plan_pictures(base: Path, count: int, rng: random.Random) -> Pictures:
    """``count`` small JPEGs over two roots, three folders each: most with an EXIF
    date, one in four with GPS; one in ten an exact copy of an earlier picture (in
    the other root or another folder), one in ten a smaller, more compressed version
    of an earlier scene (a near duplicate), and one corrupt file.

    Files arrive in the order a clean import reads them wherever they are related:
    a copy or near duplicate in the first root refers to an earlier picture of that
    root, and one in the second root to any earlier picture.  Unrelated pictures
    arrive in any order; related ones in this order make the Pod of an import in
    several runs the Pod of one clean import of the final folders (the first path
    names a Photo; a near-duplicate edge goes from the later photo to the earlier).
    """
    planned: list[tuple[int, Picture]] = []
    scenes: list[tuple[int, int, tuple[int, int], bytes]] = []
    """(root index, scene seed, size, bytes) of each new picture so far."""
    for n in range(count):
        index = n % 2
        relative = f"{2019 + n * 3 // count}/img{n:04}.jpg"
        taken = f"20{19 + n % 3}:{1 + n % 12:02}:{1 + n % 28:02} 1{n % 10}:{n % 60:02}:00"
        sources = [s for s in scenes if s[0] <= index]
        if n == count // 3:
            content = _jpeg(scene(rng.randrange(1 << 30), (160, 120)), quality=85)[:400]
            planned.append((index, Picture(relative, content, corrupt=True)))
        elif n % 10 == 7 and sources:
            _, _, _, content = rng.choice(sources)
            planned.append((index, Picture(relative, content)))
        elif n % 10 == 4 and sources:
            _, seed, (width, height), _ = rng.choice(sources)
            smaller = scene(seed, (width, height)).resize((width * 3 // 4, height * 3 // 4))
            content = _jpeg(smaller, quality=60, exif=exif_bytes(taken=taken))
            planned.append((index, Picture(relative, content, near=True)))
        else:
            seed = rng.randrange(1 << 30)
            size = rng.choice([(640, 480), (512, 384), (480, 640)])
            gps = None
            if n % 4 == 1:
                gps = (rng.uniform(-60, 60), rng.uniform(-170, 170), rng.uniform(-20, 900))
            content = _jpeg(scene(seed, size), quality=85, exif=exif_bytes(taken=taken, gps=gps))
            planned.append((index, Picture(relative, content, located=gps is not None)))
            scenes.append((index, seed, size, content))
    return Pictures([base / name for name in ROOTS], planned)


def stored_files(data_dir: Path) -> int:
    """How many contents the embedded Pod's file store holds (``<owner>/files/<sha256>``;
    a content gets its name just before its row is committed)."""
    return sum(
        1 for files in data_dir.glob("*/files") for entry in os.scandir(files) if entry.is_file()
    )


async def until_stored(proc: subprocess.Popen[bytes], data_dir: Path, target: int) -> None:
    """Return once the file store holds ``target`` contents or ``proc`` has ended."""
    with anyio.fail_after(120):  # a run that hangs fails the test
        while True:  # polled: the store is another process's folder
            if proc.poll() is not None or stored_files(data_dir) >= target:
                return
            await anyio.sleep(0.002)


def root_entries(pictures: Pictures, snap: PodSnapshot) -> dict[Path, dict[str, _state.Entry]]:
    """Each root's checkpointed files (relative path -> entry)."""
    states = checkpoints(snap, "photos")
    return {root: _state.decode(states.get(str(root))) for root in pictures.roots}


async def has_content(client: PodClient, sha256: str, expected: bytes) -> bool:
    """Whether the Pod holds ``sha256``'s content, and it is ``expected``."""
    try:
        return await client.get_file(sha256) == expected
    except PodNotFound:  # the File item without its upload
        return False


async def assert_checkpoints_not_ahead(
    pictures: Pictures, snap: PodSnapshot, client: PodClient
) -> dict[str, int]:
    """Every file a root's checkpoint holds is in the Pod whole: its Photo, its path,
    its original's and its thumbnail's content; a file held as skipped is a corrupt
    one. Returns how many files each root's checkpoint holds."""
    reached: dict[str, int] = {}
    for root, entries in root_entries(pictures, snap).items():
        reached[root.name] = len(entries)
        for relative, entry in entries.items():
            path = str(root / relative)
            if not _state.is_photo(entry):
                assert path in pictures.corrupt, f"{path} checkpointed as skipped"
                continue
            digest = pictures.paths[path]
            photo = pictures.photo_id(digest)
            assert entry[3] == photo, f"{path} checkpointed as another photo"
            assert photo in snap.items, f"{path} checkpointed, its Photo missing"
            path_id = PhotoPath(path=path).ensure_id()
            assert snap.edges[(photo, "path", path_id)] == 1, f"{path} checkpointed, no path"
            thumbnail = pictures.thumbnails[digest]
            thumbnail_sha = hashlib.sha256(thumbnail).hexdigest()
            for name, sha, content in (
                ("file", digest, pictures.originals[digest]),
                ("thumbnail", thumbnail_sha, thumbnail),
            ):
                target = derive_id("File", sha)
                assert snap.edges[(photo, name, target)] == 1, f"{path}: no {name} edge"
                assert await has_content(client, sha, content), (
                    f"{path}: {name} without content, File {snap.items.get(target)}"
                )
    return reached


async def assert_photos_exact(pictures: Pictures, snap: PodSnapshot, client: PodClient) -> None:
    """One Photo per distinct picture, one PhotoPath per file with one ``path`` edge,
    a Location per picture with GPS, and one File per original and per thumbnail
    holding exactly those bytes."""
    photos = {pictures.photo_id(digest) for digest in pictures.originals}
    assert {p["id"] for p in snap.of_type("Photo")} == photos, "Photos differ from the pictures"
    landed_paths = sorted(p["path"] for p in snap.of_type("PhotoPath"))
    assert landed_paths == sorted(pictures.paths), "PhotoPaths differ from the picture files"
    expected_edges = {
        (pictures.photo_id(digest), "path", PhotoPath(path=path).ensure_id())
        for path, digest in pictures.paths.items()
    }
    assert set(snap.edges_named("path")) == expected_edges
    assert all(snap.edges[edge] == 1 for edge in expected_edges), "a path edge twice"
    located = {derive_id("Location", pictures.photo_id(digest)) for digest in pictures.located}
    assert {p["id"] for p in snap.of_type("Location")} == located
    contents = {**pictures.originals}
    for thumbnail in pictures.thumbnails.values():
        contents[hashlib.sha256(thumbnail).hexdigest()] = thumbnail
    hashes = [f.get("sha256") for f in snap.of_type("File")]
    assert len(hashes) == len(set(hashes)), "a File appears twice"
    assert set(hashes) == set(contents), "the File items differ from originals and thumbnails"
    for digest, content in contents.items():
        assert await has_content(client, digest, content), f"file {digest[:12]} wrong or empty"
    for photo in photos:
        (original,) = [e for e in snap.edges if e[0] == photo and e[1] == "file"]
        assert original[2] in snap.items, f"Photo {photo} without its original"


@pytest.mark.slow
async def test_sigkilled_photo_imports_end_with_exactly_the_folders(tmp_path: Path) -> None:
    rng = random.Random(SEED + 2)
    count = scaled(150, minimum=40)
    pictures = plan_pictures(tmp_path / "pictures", count, rng)
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    near = sum(picture.near for _, picture in pictures.planned)

    # Timed on a copy of all the files; the reference itself is a clean import of
    # the crashed import's folders at the end (a PhotoPath is the absolute path).
    timing = pictures.copy(tmp_path / "timing")
    timing_env = base_env(tmp_path / "timing", IMPORTER_CONFIG=str(config))
    clean = run_to_end(timing.run_args(), timing_env, tmp_path / "timing" / "run.log")
    idle = run_to_end(timing.run_args(), timing_env, tmp_path / "timing" / "run.log")
    report(
        f"photos crash: {timing.files} files, {len(timing.originals)} pictures, {near} near "
        f"duplicates, {len(timing.located)} with GPS; clean run {clean:.1f}s, idle {idle:.1f}s"
    )

    # Half of the files first; whenever all that arrived is checkpointed, a wave of
    # new ones arrives, so every run has work to be killed in.
    wave = max(1, count // 5)
    pictures.deliver(count // 2)
    home = tmp_path / "crashy"
    env = base_env(home, IMPORTER_CONFIG=str(config))
    # Most kills come after a seeded number of the run's uploads (and a few
    # milliseconds more): a run's work is short beside its start-up, so kills at
    # random times would mostly land in start-up. A run with no content left to
    # upload (only checkpoints to write) is killed at a random time instead.
    window = KillWindow(rng, idle, (clean - idle) / count, early=0.7, late=1.0)
    beyond, before = pictures.files, (0, 0)
    kills: Counter[str] = Counter()
    for trial in range(KILLS):
        if not beyond and pictures.delivered < count:
            pictures.deliver(wave)
            beyond = wave
        stored, contents = stored_files(home / "data"), len(pictures.contents())
        proc = start(pictures.run_args(), env, home / "run.log")
        if stored < contents:
            target = rng.randint(stored + 1, contents)
            when = f"{target - stored} of {contents - stored} uploads"
            await until_stored(proc, home / "data", target)
            await anyio.sleep(rng.uniform(0, 0.05))
        else:
            delay = window.delay(beyond)
            when = f"{delay:.2f}s"
            await anyio.sleep(delay)
        killed = sigkill(proc)
        snap = await read_embedded(home / "data")
        async with open_embedded_client(home / "data") as client:
            reached = await assert_checkpoints_not_ahead(pictures, snap, client)
            with_content = sum(
                [await has_content(client, d, c) for d, c in pictures.originals.items()]
            )
        photos, paths = len(snap.of_type("Photo")), len(snap.of_type("PhotoPath"))
        checkpointed = sum(reached.values())
        progress = (photos + paths + with_content, checkpointed)
        beyond = pictures.files - checkpointed
        # Where the kill landed: before the run changed anything, while its data was
        # landing, after it had moved a checkpoint, or after its last one.
        if not killed:
            moment = "ended"
        elif progress == before:
            moment = "in start-up"
        elif checkpointed == before[1]:
            moment = "in data"
        else:
            moment = "past a checkpoint" if beyond else "after its work"
        kills[moment] += 1
        before = progress
        window.observed(0, reached, beyond)  # progress: the checkpoints
        report(
            f"trial {trial}: {moment} after {when}, {photos}/{len(pictures.originals)} "
            f"photos, {with_content} originals with content, {paths}/{len(pictures.paths)} "
            f"paths, checkpointed files {reached} of {pictures.files}"
        )
    pictures.deliver(count)
    run_to_end(pictures.run_args(), env, home / "run.log")

    reference_home = tmp_path / "reference"
    reference_env = base_env(reference_home, IMPORTER_CONFIG=str(config))
    run_to_end(pictures.run_args(), reference_env, reference_home / "run.log")
    reference = await read_embedded(reference_home / "data")
    async with open_embedded_client(reference_home / "data") as client:
        await assert_photos_exact(pictures, reference, client)
    assert len(reference.edges_named("nearDuplicate")) >= near, "near duplicates not found"

    landed = await read_embedded(home / "data")
    assert kills["in data"] + kills["past a checkpoint"] >= 2, f"kills did not land: {kills}"
    async with open_embedded_client(home / "data") as client:
        await assert_photos_exact(pictures, landed, client)
    assert edge_counts(landed) == edge_counts(reference)
    assert_same_data(landed, reference)
    assert not landed.of_type("PendingEdge"), "pending edges left although every photo landed"
    report(f"photos crash: kills {dict(kills)}, Pod exact: {edge_counts(landed)}")
