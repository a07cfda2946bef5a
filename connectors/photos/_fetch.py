"""The photos connector's ``fetch``: folders -> Photo, File, Location, PhotoPath records.

Per root: scan, compare every file's size and mtime with the root's
checkpoint, read only what is new or changed (in a small thread pool), and
checkpoint as it goes.  The checkpoint holds every imported photo's
perceptual hash and id, so near duplicates are found across runs too.
What it knows below a folder that could not be listed is kept: the files
are most likely still there.  A file whose upload an earlier run had to
skip (``ctx.files_to_read_again``), and any copy of the content it had, is
read again whatever its checkpoint entry says; the original of such a
photo is yielded again although the photo is known.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

from importer import Checkpoint, Edge, File, Location, Record, RunContext, derive_id

from . import _state
from ._near import NearIndex
from ._reader import Outcome, Reader
from ._scan import Candidate, Scan, as_text, scan
from .items import Photo, PhotoPath
from .options import PhotosOptions

__all__ = ["NoRootFound", "fetch_photos"]

_CHECKPOINT_EVERY = 200
"""Files read between checkpoints (more for big roots, so writing them stays cheap)."""


class NoRootFound(Exception):
    """None of the configured roots is a readable folder."""


def usable_roots(ctx: RunContext[PhotosOptions]) -> list[Path]:
    """The roots that are folders; the others are listed as skipped."""
    roots = []
    for root in ctx.options.roots:
        if root.is_dir():
            roots.append(root)
        else:
            ctx.skip(as_text(root), "root folder not found (or not a folder)")
    if not roots:
        listed = ", ".join(as_text(root) for root in ctx.options.roots)
        raise NoRootFound(f"no photo folder to scan: {listed}")
    return roots


class _Import:
    """State shared by the roots of one run."""

    def __init__(self, ctx: RunContext[PhotosOptions]) -> None:
        self.ctx = ctx
        self.options = ctx.options
        self.known: dict[str, str] = {}
        """Photo id -> perceptual hash (hex) of every photo in the Pod by checkpoint or run."""
        self.index = NearIndex(self.options.near_duplicate_distance)
        self.remaining = ctx.limit
        self.again = frozenset(ctx.files_to_read_again)
        """Paths (as text) of files whose upload an earlier run skipped."""
        self.without_original = frozenset(
            derive_id("Photo", sha256) for sha256 in ctx.files_to_read_again.values()
        )
        """Photos whose original may have no content in the Pod."""

    def seed(self, entries: dict[str, _state.Entry]) -> None:
        for entry in entries.values():
            if not _state.is_photo(entry):
                continue
            phash, photo_id = entry[2], entry[3]
            try:
                value = int(phash, 16)
            except ValueError:
                continue
            self.known.setdefault(photo_id, phash)
            self.index.add(photo_id, value)

    def _unlisted(self, root: Path, found: Scan, old: dict[str, _state.Entry]) -> bool:
        """Record the folders that could not be listed; True if that is the whole root.

        So is an empty root that held files (the mount point of an unplugged
        disk, most likely): forgetting them would read every file again, and
        lose their near-duplicate history, once the disk is back.
        """
        if "" in found.unlisted:
            why = found.unlisted[""]
            self.ctx.skip(as_text(root), f"root folder could not be listed: {why}; nothing read")
            return True
        if found.empty and old:
            self.ctx.skip(as_text(root), "root folder is empty (a disk not mounted?); nothing read")
            return True
        for prefix, why in found.unlisted.items():
            folder = as_text(root / prefix)
            self.ctx.skip(folder, f"folder could not be listed: {why}; its files not read")
        return False

    def _forget_again(self, root: Path, old: dict[str, _state.Entry]) -> dict[str, _state.Entry]:
        """``old`` without the files to read again: until they are, they count as new."""
        if not self.again:
            return old
        return {
            rel: entry
            for rel, entry in old.items()
            if as_text(root / rel) not in self.again
            and not (_state.is_photo(entry) and entry[3] in self.without_original)
        }

    def root(
        self, root: Path, found: Scan, checkpoint: dict[str, _state.Entry], reader: Reader
    ) -> Iterator[Record]:
        stream = str(root)
        old = self._forget_again(root, checkpoint)
        if self._unlisted(root, found, checkpoint):
            if old != checkpoint:  # otherwise it stays as it is
                yield Checkpoint(_state.encode(old), stream=stream)
            return
        candidates = found.candidates
        unlisted = tuple(found.unlisted)  # below them, the checkpoint's entries stay
        files: dict[str, _state.Entry] = (
            {rel: entry for rel, entry in old.items() if rel.startswith(unlisted)}
            if unlisted
            else {}
        )
        todo: list[Candidate] = []
        for candidate in candidates:
            entry = old.get(candidate.relative)
            if entry is not None and _state.unchanged(entry, candidate.size, candidate.mtime_ns):
                files[candidate.relative] = entry
            else:
                todo.append(candidate)
        self.ctx.progress(advance=len(candidates) - len(todo))
        complete = True
        if self.remaining is not None and len(todo) > self.remaining:
            todo, complete = todo[: self.remaining], False
        since = 0
        for candidate, outcome in reader.read(todo):
            yield from self._records(candidate, outcome, files)
            self.ctx.progress(advance=1)
            since += 1
            if since >= max(_CHECKPOINT_EVERY, (len(old) + len(files)) // 4):
                yield Checkpoint(_state.encode({**old, **files}), stream=stream)
                since = 0
        if self.remaining is not None:
            self.remaining -= len(todo)
        final = files if complete else {**old, **files}
        if final != checkpoint:
            yield Checkpoint(_state.encode(final), stream=stream)

    def _records(
        self, candidate: Candidate, outcome: Outcome, files: dict[str, _state.Entry]
    ) -> Iterator[Record]:
        stamp: _state.Entry = [candidate.size, candidate.mtime_ns]
        if outcome.skip is not None or outcome.photo_id is None or outcome.payload is None:
            self.ctx.skip(as_text(candidate.path), outcome.skip or "unreadable")
            if outcome.lasting:
                files[candidate.relative] = stamp
            return
        photo_id = outcome.photo_id
        phash = self.known.get(photo_id)
        if phash is None:
            if outcome.info is None:  # pragma: no cover - known ids are never forgotten
                raise RuntimeError(f"{candidate.path}: read as known, but unknown")
            phash = yield from self._new_photo(candidate, outcome, photo_id)
        elif photo_id in self.without_original:
            yield outcome.payload  # its File item may have no content yet
        path = PhotoPath(path=as_text(candidate.path))
        yield path
        yield Edge(photo_id, "path", path.ensure_id())
        files[candidate.relative] = [*stamp, phash, photo_id]

    def _new_photo(
        self, candidate: Candidate, outcome: Outcome, photo_id: str
    ) -> Generator[Record, None, str]:
        info, original = outcome.info, outcome.payload
        assert info is not None and original is not None
        phash = f"{info.perceptual_hash:016x}"
        exif = info.exif
        photo = Photo(
            id=photo_id,
            name=as_text(candidate.path.name),
            width=info.width,
            height=info.height,
            channels=info.channels,
            mode=info.mode,
            encoding=info.format,
            exifData=exif.json,
            dateTaken=exif.taken,
            perceptualHash=phash,
        )
        yield original
        yield photo
        yield Edge(photo_id, "file", original.file.ensure_id())
        thumbnail = File.payload(
            info.thumbnail,
            filename=f"{as_text(candidate.path.stem)}.thumbnail.jpg",
            mime_type="image/jpeg",
        )
        yield thumbnail
        yield Edge(photo_id, "thumbnail", thumbnail.file.ensure_id())
        if exif.has_location:
            place = Location(
                id=derive_id("Location", photo_id),
                latitude=exif.latitude,
                longitude=exif.longitude,
                altitude=exif.altitude,
            )
            yield place
            yield Edge(photo_id, "location", place.ensure_id())
        if self.options.near_duplicates:
            for other in self.index.near(info.perceptual_hash, exclude=photo_id):
                yield Edge(photo_id, "nearDuplicate", other)
        self.index.add(photo_id, info.perceptual_hash)
        self.known[photo_id] = phash
        return phash


def fetch_photos(ctx: RunContext[PhotosOptions]) -> Iterator[Record]:
    """Everything new or changed under the roots since their last checkpoints."""
    options = ctx.options
    run = _Import(ctx)
    roots = usable_roots(ctx)
    previous = {root: _state.decode(ctx.checkpoint(str(root))) for root in roots}
    for entries in previous.values():
        run.seed(entries)
    scans = [(root, scan(root, options, ctx.log)) for root in roots]
    ctx.progress(total=sum(len(found.candidates) for _, found in scans))
    with Reader(options.workers, options.thumbnail_size, run.known) as reader:
        for root, found in scans:
            yield from run.root(root, found, previous[root], reader)
            if run.remaining is not None and run.remaining <= 0:
                break
