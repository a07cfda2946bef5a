"""The photos connector against a real local Pod: mapping, identity, dedup, skips."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from connectors.photos import connector
from importer import derive_id
from importer.engine import EngineSettings, RunResult
from importer.testing import local_pod, run_connector, snapshot

from .images import exif_bytes, scene, write_image

SMALL = EngineSettings(batch_records=40, flush_interval=0.2)


async def run(pod: Any, tmp_path: Path, roots: list[Path], **options: Any) -> RunResult:
    result = await run_connector(
        connector,
        {"roots": [str(r) for r in roots], **options},
        client=pod,
        data_dir=tmp_path,
        settings=SMALL,
    )
    assert result.error is None, result.error
    return result


def sha_id(path: Path) -> str:
    import hashlib

    return derive_id("Photo", hashlib.sha256(path.read_bytes()).hexdigest())


async def content(pod: Any, sha256: str) -> bytes:
    data = await pod.get_file(sha256)
    assert isinstance(data, bytes)
    return data


async def item(pod: Any, item_id: str | None) -> dict[str, Any]:
    assert item_id is not None
    found = await pod.get_item(item_id)
    assert isinstance(found, dict)
    return found


def outgoing(snap: Any, source: str, name: str) -> list[dict[str, Any]]:
    return [snap.items[t] for s, n, t in snap.edges if s == source and n == name]


async def test_each_format_becomes_a_photo_with_file_thumbnail_and_path(tmp_path: Path) -> None:
    root = tmp_path / "pictures"
    files = {
        "a.jpg": write_image(root / "a.jpg", 1, (400, 300), quality=90),
        "b.png": write_image(root / "b.png", 2, (300, 200), mode="RGBA"),
        "c.gif": write_image(root / "sub" / "c.gif", 3, (120, 90), mode="P"),
        "d.webp": write_image(root / "sub" / "d.webp", 4, (640, 480)),
        "e.tiff": write_image(root / "deep" / "er" / "e.tiff", 5, (1000, 600)),
    }
    deep = root / "f16.png"
    Image.fromarray(np.linspace(0, 65535, 64 * 48).astype(np.uint16).reshape(48, 64)).save(deep)
    files["f16.png"] = deep
    (root / "notes.txt").write_text("not a picture, not a candidate")
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, [root])
        assert result.skip_count == 0
        snap = await snapshot(pod)
        photos = {p["name"]: p for p in snap.of_type("Photo")}
        assert set(photos) == set(files)
        expected = {
            "a.jpg": ("JPEG", 400, 300, "RGB", 3),
            "b.png": ("PNG", 300, 200, "RGBA", 4),
            "c.gif": ("GIF", 120, 90, "P", 1),
            "d.webp": ("WEBP", 640, 480, "RGB", 3),
            "e.tiff": ("TIFF", 1000, 600, "RGB", 3),
            "f16.png": ("PNG", 64, 48, Image.open(deep).mode, 1),
        }
        for name, (fmt, width, height, mode, channels) in expected.items():
            photo = photos[name]
            assert photo["id"] == sha_id(files[name])
            assert (photo["encoding"], photo["width"], photo["height"]) == (fmt, width, height)
            assert (photo["mode"], photo["channels"]) == (mode, channels)
            assert len(photo["perceptualHash"]) == 16
            (original,) = outgoing(snap, photo["id"], "file")
            assert await pod.get_file(original["sha256"]) == files[name].read_bytes()
            assert original["mimeType"] == Image.MIME[fmt]
            (thumb,) = outgoing(snap, photo["id"], "thumbnail")
            with Image.open(io.BytesIO(await content(pod, thumb["sha256"]))) as small:
                assert small.format == "JPEG"
                assert max(small.size) == min(256, max(width, height))
                # The thumbnail keeps the aspect ratio.
                assert abs(small.size[0] / small.size[1] - width / height) < 0.02
            (path,) = outgoing(snap, photo["id"], "path")
            assert path["type"] == "PhotoPath" and path["path"] == str(files[name])
        assert len(snap.of_type("File")) == 12
        assert not snap.of_type("Location")


async def test_exif_orientation_date_and_gps(tmp_path: Path) -> None:
    root = tmp_path / "pictures"
    exif = exif_bytes(
        orientation=6,
        taken="2021:07:04 15:30:45",
        offset="+02:00",
        gps=(52.375, -4.89, 12.5),
        make="TestCam",
    )
    jpeg = write_image(root / "turned.jpg", 7, (640, 480), exif=exif)
    plain = write_image(
        root / "local.jpg", 8, (64, 48), exif=exif_bytes(taken="2020:01:02 03:04:05")
    )
    async with local_pod(tmp_path / "pod") as pod:
        await run(pod, tmp_path, [root])
        snap = await snapshot(pod)
        photo = snap.items[sha_id(jpeg)]
        # Orientation 6: stored landscape, shown portrait.
        assert (photo["width"], photo["height"]) == (480, 640)
        taken = datetime(2021, 7, 4, 15, 30, 45, tzinfo=timezone(timedelta(hours=2)))
        assert photo["dateTaken"] == int(taken.timestamp() * 1000)
        tags = json.loads(photo["exifData"])
        assert tags["Make"] == "TestCam" and tags["Orientation"] == 6
        assert tags["DateTimeOriginal"] == "2021:07:04 15:30:45"
        assert tags["OffsetTimeOriginal"] == "+02:00"
        assert tags["GPSLatitudeRef"] == "N" and tags["GPSLongitudeRef"] == "W"
        (place,) = outgoing(snap, photo["id"], "location")
        assert place["type"] == "Location"
        assert abs(place["latitude"] - 52.375) < 1e-6
        assert abs(place["longitude"] + 4.89) < 1e-6
        assert place["altitude"] == 12.5
        (thumb,) = outgoing(snap, photo["id"], "thumbnail")
        with Image.open(io.BytesIO(await content(pod, thumb["sha256"]))) as small:
            assert small.size == (192, 256)  # turned upright
        # No offset: the wall-clock time is taken as UTC.
        local = snap.items[sha_id(plain)]
        naive = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert local["dateTaken"] == int(naive.timestamp() * 1000)
        assert not outgoing(snap, local["id"], "location")


async def test_turned_photos_of_every_format_are_upright_once(tmp_path: Path) -> None:
    """Size and thumbnail are upright whether or not Pillow turns a format itself.

    Pillow (since 11) turns TIFF images upright while loading them, and reports
    the upright size as soon as they are opened; turning them again would
    show them upside down.
    """
    root = tmp_path / "pictures"
    stored = (320, 200)
    turns = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_270,
        8: Image.Transpose.ROTATE_90,
    }
    files: dict[Path, tuple[int, int]] = {}
    cases = [(suffix, turn) for suffix in ("jpg", "png", "webp", "tiff") for turn in turns]
    for seed, (suffix, orientation) in enumerate(cases, start=30):
        exif = exif_bytes(orientation=orientation)
        path = write_image(root / f"o{orientation}.{suffix}", seed, stored, exif=exif)
        files[path] = (orientation, seed)
    async with local_pod(tmp_path / "pod") as pod:
        await run(pod, tmp_path, [root])
        snap = await snapshot(pod)
        for path, (orientation, seed) in files.items():
            photo = snap.items[sha_id(path)]
            upright = stored if orientation == 3 else stored[::-1]
            assert (photo["width"], photo["height"]) == upright, path.name
            (thumb,) = outgoing(snap, photo["id"], "thumbnail")
            with Image.open(io.BytesIO(await content(pod, thumb["sha256"]))) as small:
                assert small.size == (upright[0] * 256 // 320, upright[1] * 256 // 320), path.name
                got = np.asarray(small.convert("RGB"), dtype=np.float32)
                expected = scene(seed, stored).transpose(turns[orientation]).resize(small.size)
            # A picture turned the wrong way differs by several times this on average.
            assert np.abs(got - np.asarray(expected, dtype=np.float32)).mean() < 12, path.name


async def test_same_file_in_two_folders_is_one_photo_with_both_paths(tmp_path: Path) -> None:
    first = write_image(tmp_path / "one" / "x.jpg", 11)
    second = tmp_path / "two" / "nested" / "copy.jpg"
    second.parent.mkdir(parents=True)
    second.write_bytes(first.read_bytes())
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, [tmp_path / "one", tmp_path / "two"])
        snap = await snapshot(pod)
        (photo,) = snap.of_type("Photo")
        assert photo["name"] == "x.jpg"
        paths = sorted(p["path"] for p in outgoing(snap, photo["id"], "path"))
        assert paths == sorted([str(first), str(second)])
        assert len(outgoing(snap, photo["id"], "file")) == 1
        assert len(snap.of_type("File")) == 2  # original + thumbnail
        assert not snap.edges_named("nearDuplicate")
        assert result.stats.created == 1 + 2 + 2 + 0  # Photo, Files, PhotoPaths


async def test_resized_copy_is_a_near_duplicate_not_a_new_identity(tmp_path: Path) -> None:
    root = tmp_path / "pictures"
    original = write_image(root / "a-original.jpg", 21, (1200, 900), quality=92)
    resized = root / "b-resized.jpg"
    scene(21, (1200, 900)).resize((400, 300), Image.Resampling.LANCZOS).save(resized, quality=70)
    other = write_image(root / "c-other.jpg", 22, (1200, 900))
    async with local_pod(tmp_path / "pod") as pod:
        await run(pod, tmp_path, [root])
        snap = await snapshot(pod)
        assert len(snap.of_type("Photo")) == 3
        assert snap.edges_named("nearDuplicate") == [
            (sha_id(resized), "nearDuplicate", sha_id(original))
        ]
        assert sha_id(other) not in {e[0] for e in snap.edges_named("nearDuplicate")}


async def test_near_duplicates_are_found_across_runs_and_can_be_turned_off(
    tmp_path: Path,
) -> None:
    root = tmp_path / "pictures"
    original = write_image(root / "a.jpg", 31, (800, 600))
    async with local_pod(tmp_path / "pod") as pod:
        await run(pod, tmp_path, [root])
        later = root / "later" / "small.png"
        later.parent.mkdir()
        scene(31, (800, 600)).resize((200, 150)).save(later)
        await run(pod, tmp_path, [root])
        snap = await snapshot(pod)
        assert snap.edges_named("nearDuplicate") == [
            (sha_id(later), "nearDuplicate", sha_id(original))
        ]
    async with local_pod(tmp_path / "pod2") as pod:
        await run_connector(
            connector,
            {"roots": [str(root)], "near_duplicates": False},
            client=pod,
            data_dir=tmp_path / "pod2",
        )
        assert not (await snapshot(pod)).edges_named("nearDuplicate")


async def test_bad_files_are_skipped_with_reasons_and_the_run_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "pictures"
    good = write_image(root / "good.jpg", 41)
    whole = write_image(tmp_path / "whole.jpg", 42, (800, 600)).read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "fake.gif").write_text("this is text, not a GIF\n" * 10)
    (root / "noise.webp").write_bytes(bytes(range(256)) * 8)
    scene(44, (40, 30)).save(root / "bitmap.png", format="BMP")
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, [root])
        reasons = {Path(s.ref).name: s.reason for s in result.skipped}
        assert set(reasons) == {
            "truncated.jpg",
            "empty.png",
            "fake.gif",
            "noise.webp",
            "bitmap.png",
        }
        assert reasons["bitmap.png"] == "BMP images are not imported"
        assert reasons["empty.png"] == "empty file"
        assert reasons["fake.gif"].startswith("not an image")
        assert "truncated" in reasons["truncated.jpg"]
        assert result.status == "done"
        snap = await snapshot(pod)
        assert [p["id"] for p in snap.of_type("Photo")] == [sha_id(good)]
        run_item = await item(pod, result.run_id)
        assert run_item["skippedCount"] == 5
        assert {Path(s["ref"]).name for s in json.loads(run_item["skipLog"])} == set(reasons)
        # Skipped for good: not read again until they change.
        again = await run(pod, tmp_path, [root])
        assert again.skip_count == 0 and again.stats.created == 0
        (root / "empty.png").write_bytes(write_image(tmp_path / "now.png", 43).read_bytes())
        fixed = await run(pod, tmp_path, [root])
        assert fixed.skip_count == 0
        assert len((await snapshot(pod)).of_type("Photo")) == 2
