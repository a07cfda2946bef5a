"""Walk a root folder: the image files to consider, in a stable order.

A file is a candidate by its extension; whether it really is an image is
found out when it is read.  Entries are visited sorted by name, depth first,
so every run sees the same order.  A directory reached twice (through a
link) is walked once.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from .options import PhotosOptions

__all__ = ["IMAGE_SUFFIXES", "Candidate", "as_text", "scan"]

IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".gif",
        ".webp",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".hif",
    }
)


def as_text(path: str | Path) -> str:
    """A file name or path as valid text, for the Pod: bytes that are not UTF-8 as ``\\xNN``.

    Names copied from old FAT or Windows disks are often Latin-1; Python
    decodes them with surrogate escapes, which no JSON can carry.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class Candidate:
    """An image file found under a root, with what the checkpoint compares."""

    path: Path
    relative: str
    """Path below the root, ``/``-separated: the checkpoint's key."""
    size: int
    mtime_ns: int


def _matches(globs: list[str], relative: str, name: str) -> bool:
    """fnmatch, case-insensitive: on the name, or on the relative path if the glob has a ``/``."""
    rel, base = relative.lower(), name.lower()
    return any(fnmatchcase(rel if "/" in glob else base, glob.lower()) for glob in globs)


class _Walker:
    def __init__(self, root: Path, options: PhotosOptions, log: logging.Logger) -> None:
        self.root = root
        self.real_root = root.resolve()
        self.options = options
        self.log = log
        self.seen_dirs: set[tuple[int, int]] = set()

    def _inside(self, path: Path) -> bool:
        try:
            return path.resolve().is_relative_to(self.real_root)
        except (OSError, RuntimeError):  # a loop of links
            return False

    def _follow(self, entry: os.DirEntry[str], relative: str) -> bool:
        """Whether a symbolic link may be followed under the ``symlinks`` policy."""
        policy = self.options.symlinks
        if policy == "follow":
            return True
        if policy == "inside" and self._inside(Path(entry.path)):
            return True
        self.log.info("not following link %s (symlinks = %s)", relative, policy)
        return False

    def _stat(self, entry: os.DirEntry[str]) -> os.stat_result | None:
        try:
            return entry.stat(follow_symlinks=True)
        except OSError as exc:
            self.log.warning("cannot read %s: %s", entry.path, exc.strerror or exc)
            return None

    def _entries(self, directory: Path) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(directory) as listing:
                return sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            self.log.warning("cannot list %s: %s", directory, exc.strerror or exc)
            return []

    def walk(self) -> Iterator[Candidate]:
        top = self.root.stat()
        self.seen_dirs.add((top.st_dev, top.st_ino))
        yield from self._walk(self.root, "")

    def _walk(self, directory: Path, prefix: str) -> Iterator[Candidate]:
        options = self.options
        for entry in self._entries(directory):
            name = entry.name
            relative = prefix + name
            if name.startswith(".") and not options.hidden:
                continue
            if entry.is_symlink() and not self._follow(entry, relative):
                continue
            info = self._stat(entry)
            if info is None:
                continue
            if stat.S_ISDIR(info.st_mode):
                if _matches(options.exclude, relative, name):
                    continue
                key = (info.st_dev, info.st_ino)
                if key in self.seen_dirs:
                    continue
                self.seen_dirs.add(key)
                yield from self._walk(Path(entry.path), relative + "/")
            elif stat.S_ISREG(info.st_mode):
                if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                    continue
                if options.include and not _matches(options.include, relative, name):
                    continue
                if _matches(options.exclude, relative, name):
                    continue
                yield Candidate(Path(entry.path), relative, info.st_size, info.st_mtime_ns)


def scan(root: Path, options: PhotosOptions, log: logging.Logger) -> list[Candidate]:
    """Every candidate image under ``root`` (which must be a readable directory)."""
    return list(_Walker(root, options, log).walk())
