"""Which files a scan takes: links, include/exclude globs, hidden entries, HEIF."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from importer.testing import local_pod, snapshot

from .images import write_image
from .test_photos import run, sha_id

ROOT = Path(__file__).resolve().parents[2]


async def imported_paths(tmp_path: Path, roots: list[Path], **options: object) -> set[str]:
    async with local_pod(tmp_path / "pod") as pod:
        await run(pod, tmp_path, roots, **options)
        snap = await snapshot(pod)
        return {p["path"] for p in snap.of_type("PhotoPath")}


def relative(paths: set[str], root: Path) -> set[str]:
    return {Path(p).relative_to(root).as_posix() for p in paths}


@pytest.fixture
def linked(tmp_path: Path) -> tuple[Path, Path]:
    """A root with links: to a file and a folder outside it, and to a file inside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_image(root / "inside.jpg", 1)
    write_image(outside / "secret.jpg", 2)
    write_image(outside / "folder" / "deep.jpg", 3)
    (root / "out-file.jpg").symlink_to(outside / "secret.jpg")
    (root / "out-dir").symlink_to(outside / "folder")
    (root / "in-link.jpg").symlink_to(root / "inside.jpg")
    (root / "loop").symlink_to(root)
    return root, outside


async def test_links_out_of_the_root_are_not_followed(
    tmp_path: Path, linked: tuple[Path, Path]
) -> None:
    root, _ = linked
    found = await imported_paths(tmp_path, [root])
    assert found == {str(root / "inside.jpg"), str(root / "in-link.jpg")}


async def test_links_can_be_ignored_or_followed_anywhere(
    tmp_path: Path, linked: tuple[Path, Path]
) -> None:
    root, _ = linked
    never = await imported_paths(tmp_path / "never", [root], symlinks="never")
    assert never == {str(root / "inside.jpg")}
    follow = await imported_paths(tmp_path / "follow", [root], symlinks="follow")
    assert follow == {
        str(root / "inside.jpg"),
        str(root / "in-link.jpg"),
        str(root / "out-file.jpg"),
        str(root / "out-dir" / "deep.jpg"),
    }


async def test_include_exclude_and_hidden(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for seed, rel in enumerate(
        [
            "a.jpg",
            "B.JPG",
            "c.png",
            "raw/d.jpg",
            "2020/private/e.jpg",
            "2020/f.jpg",
            ".thumbs/g.jpg",
            ".h.jpg",
        ]
    ):
        write_image(root / rel, seed, (32, 24))
    found = await imported_paths(
        tmp_path / "globs", [root], include=["*.jpg"], exclude=["raw", "2020/private"]
    )
    assert relative(found, root) == {"a.jpg", "B.JPG", "2020/f.jpg"}
    hidden = await imported_paths(tmp_path / "hidden", [root], include=["*.jpg"], hidden=True)
    assert relative(hidden, root) >= {".thumbs/g.jpg", ".h.jpg", "raw/d.jpg"}


async def test_heif_is_imported_when_pillow_heif_is_installed(tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    root = tmp_path / "root"
    heic = write_image(root / "phone.heic", 5, (320, 240))
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, [root])
        assert result.skip_count == 0
        (photo,) = (await snapshot(pod)).of_type("Photo")
        assert photo["id"] == sha_id(heic)
        assert (photo["encoding"], photo["width"], photo["height"]) == ("HEIF", 320, 240)


def test_heif_without_pillow_heif_is_skipped_with_a_clear_reason(tmp_path: Path) -> None:
    # A fresh interpreter in which pillow_heif cannot be imported.
    heic = tmp_path / "phone.heic"
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    script = (
        "import sys; sys.modules['pillow_heif'] = None\n"
        "from pathlib import Path\n"
        "from connectors.photos._image import NotAPhoto, heif_available, read_image\n"
        "assert not heif_available()\n"
        "try:\n"
        f"    read_image(Path({str(heic)!r}), 256)\n"
        "except NotAPhoto as exc:\n"
        "    print(exc.lasting, exc.reason)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "False HEIC/HEIF images need pillow-heif (pip install 'importer[heif]')"
    )
