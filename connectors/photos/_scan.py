"""Walk a root folder: the image files to consider, in a stable order.

A file is a candidate by its extension; whether it really is an image is
found out when it is read.  Entries are visited sorted by name, depth first,
so every run sees the same order.  A directory reached twice (through a
link) is walked once.  Folders that cannot be listed are reported, so that
what the checkpoint knows below them is kept rather than forgotten.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from .options import PhotosOptions

__all__ = ["IMAGE_SUFFIXES", "Candidate", "Scan", "as_text", "scan"]

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


@dataclass(slots=True)
class Scan:
    """What walking a root found."""

    candidates: list[Candidate] = field(default_factory=list)
    unlisted: dict[str, str] = field(default_factory=dict)
    """Folders that could not be listed, by relative prefix (``""`` the root, ``"a/b/"``): why."""
    empty: bool = False
    """The root was listed and holds nothing at all (the mount point of an unplugged disk?)."""


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
        self.unlisted: dict[str, str] = {}
        self.empty = False

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

    def _entries(self, directory: Path, prefix: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(directory) as listing:
                return sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            self.log.warning("cannot list %s: %s", directory, exc.strerror or exc)
            self.unlisted[prefix] = str(exc.strerror or exc)
            return []

    def walk(self) -> Iterator[Candidate]:
        try:
            top = self.root.stat()
        except OSError as exc:  # gone since it was found to be a folder
            self.unlisted[""] = str(exc.strerror or exc)
            return
        self.seen_dirs.add((top.st_dev, top.st_ino))
        entries = self._entries(self.root, "")
        self.empty = not entries and not self.unlisted
        yield from self._walk(self.root, "", entries)

    def _walk(
        self, directory: Path, prefix: str, entries: list[os.DirEntry[str]] | None = None
    ) -> Iterator[Candidate]:
        options = self.options
        if entries is None:
            entries = self._entries(directory, prefix)
        for entry in entries:
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


def scan(root: Path, options: PhotosOptions, log: logging.Logger) -> Scan:
    """Every candidate image under the folder ``root``, and the folders that failed."""
    walker = _Walker(root, options, log)
    candidates = list(walker.walk())
    return Scan(candidates, walker.unlisted, walker.empty)
