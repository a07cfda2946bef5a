"""Streaming mbox reader (mboxo / mboxrd, e.g. Google Takeout), incremental by offset.

``mailbox.mbox`` indexes the whole file first; this reader splits on
``From `` lines while reading, so memory stays at one message.

Incremental rule (checkpoint stream ``mbox:<absolute path>``): the state keeps
the offset after the last message read, a sha256 of the file's first
``head_bytes`` bytes and of the last message's bytes.  If both still match, the
next run continues at the offset, so appended mail is read alone; otherwise
(the file was rewritten, compacted, replaced) it rescans from 0 and the
engine's dedup keeps the result exact.

A message is read only once it is whole, because dedup keeps the first copy
of a Message-ID: a mailbox a mail program has locked (fcntl, flock or a
``.lock`` file) is left for the next run, only the bytes present when the run
started are read, and a last message that does not end with a blank line
while the file changed in the last minute is left for the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, BinaryIO

from importer.context import RunContext
from importer.model import Checkpoint, Record

from ._local import CHECKPOINT_EVERY, LocalSourceError, map_message, source_path
from .mapping import folder_label
from .options import EmailOptions

__all__ = ["MboxMessage", "iter_mbox", "mbox_folder_name", "split_mbox"]

HEAD_BYTES = 4096
MAX_MESSAGE_BYTES = 512 * 2**20
"""Messages larger than this are skipped rather than held in memory."""
_READ_LIMIT = 1 << 20
_STRICT_FROM = re.compile(rb"^From \S+\s+.*\d{1,2}:\d{2}(:\d{2})?.*\d{4}\s*$")
_ESCAPED_FROM = re.compile(rb"^>+From ")
SETTLE_SECONDS = 60.0
"""A last message without its closing blank line, in a file changed this recently,
is taken to be still being appended."""
STALE_DOTLOCK_SECONDS = 500.0
"""A ``.lock`` file older than this is a leftover (Postfix's ``stale_lock_time``)."""
_BLANK_LINE = re.compile(rb"\n\r?\n")
_FLAG_HEADERS = re.compile(rb"^(X-)?Status:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class MboxMessage:
    """One message: where it is, its From_ line, its bytes (None if too large)."""

    start: int
    end: int
    from_line: bytes
    raw: bytes | None
    sha256: str


def _is_separator(line: bytes, previous_blank: bool) -> bool:
    if not line.startswith(b"From "):
        return False
    return previous_blank or bool(_STRICT_FROM.match(line))


def _finish(
    start: int, end: int, from_line: bytes, lines: list[bytes] | None, digest: Any
) -> MboxMessage:
    raw = None
    if lines is not None:
        # The blank line before the next From_ line is not the message's:
        # left out of the join (cutting it off after would copy the message).
        if len(lines) > 1 and lines[-1] in (b"\n", b"\r\n") and lines[-2].endswith(lines[-1]):
            del lines[-1]
        raw = b"".join(lines)
        lines.clear()  # the lines are not kept beside the message while it is mapped
    return MboxMessage(start, end, from_line.rstrip(b"\r\n"), raw, digest.hexdigest())


def split_mbox(fh: BinaryIO, start: int = 0, end: int | None = None) -> Iterator[MboxMessage]:
    """The messages of an mbox from byte ``start`` (which must begin a From_ line) to ``end``.

    ``>From `` lines are unescaped mboxrd-style (one ``>`` removed), which is
    also right for mboxo writers such as Google Takeout.
    """
    fh.seek(start)
    offset = start
    msg_start = -1
    from_line = b""
    lines: list[bytes] | None = []
    size = 0
    digest = hashlib.sha256()
    at_line_start = True
    previous_blank = True
    while True:
        limit = _READ_LIMIT if end is None else min(_READ_LIMIT, end - offset)
        line = fh.readline(limit) if limit > 0 else b""
        if not line:
            break
        if at_line_start and _is_separator(line, previous_blank):
            if msg_start >= 0:
                yield _finish(msg_start, offset, from_line, lines, digest)
            msg_start, from_line, lines, size = offset, line, [], 0
            digest = hashlib.sha256(line)
        elif msg_start >= 0:
            digest.update(line)
            size += len(line)
            if lines is not None:
                if size > MAX_MESSAGE_BYTES:
                    lines = None
                elif at_line_start and _ESCAPED_FROM.match(line):
                    lines.append(line[1:])
                else:
                    lines.append(line)
        # bytes before the first From_ line are not a message; they are skipped
        offset += len(line)
        complete = line.endswith(b"\n")
        if at_line_start:
            previous_blank = line in (b"\n", b"\r\n")
        elif complete:
            previous_blank = False
        at_line_start = complete
    if msg_start >= 0:
        yield _finish(msg_start, offset, from_line, lines, digest)


def _flags(raw: bytes) -> set[str]:
    blank = _BLANK_LINE.search(raw)  # the end of the header, CRLF read as LF
    head = raw[: blank.start() if blank else len(raw)].replace(b"\r\n", b"\n")
    letters = b"".join(m.group(2) for m in _FLAG_HEADERS.finditer(head)).upper()
    flags = set()
    if b"R" in letters:
        flags.add("\\Seen")
    if b"F" in letters:
        flags.add("\\Flagged")
    if b"A" in letters:
        flags.add("\\Answered")
    return flags


def _from_line_date(from_line: bytes) -> datetime | None:
    """The delivery date of a From_ line (``From sender Tue Jan  2 10:00:00 2024``)."""
    parts = from_line.decode("ascii", "replace").split(None, 2)
    if len(parts) < 3:
        return None
    try:
        parsed = parsedate_to_datetime(parts[2])
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def mbox_folder_name(path: Path) -> str:
    """The Label name for an mbox file: its name without ``.mbox``."""
    return path.name.removesuffix(".mbox") or path.name


def _head_hash(fh: BinaryIO, length: int) -> str:
    fh.seek(0)
    return hashlib.sha256(fh.read(length)).hexdigest()


def _resume_offset(fh: BinaryIO, size: int, state: Any) -> int:
    """Where to continue: the stored offset if the file is the one we read, else 0."""
    if not isinstance(state, dict):
        return 0
    try:
        offset = int(state["offset"])
        head_bytes = int(state["head_bytes"])
        last_start = int(state["last_start"])
        fingerprint = str(state["fingerprint"])
        last_hash = state.get("last_message_hash")
    except (KeyError, TypeError, ValueError):
        return 0
    if not 0 <= last_start <= offset <= size or head_bytes > size:
        return 0
    if _head_hash(fh, head_bytes) != fingerprint:
        return 0
    if last_hash is not None:
        fh.seek(last_start)
        digest = hashlib.sha256()
        remaining = offset - last_start
        while remaining > 0:
            chunk = fh.read(min(remaining, _READ_LIMIT))
            if not chunk:
                return 0
            digest.update(chunk)
            remaining -= len(chunk)
        if digest.hexdigest() != last_hash:
            return 0
    fh.seek(offset)
    if offset < size and not fh.read(64).lstrip(b"\r\n").startswith(b"From "):
        return 0  # the last message grew, or the offset is not a boundary any more
    return offset


@contextlib.contextmanager
def _shared_lock(path: Path, fh: BinaryIO) -> Iterator[str | None]:
    """Share the locks mail programs take to append, without ever waiting for them.

    Yields None while holding them, or which lock a mail program holds.
    """
    dotlock = path.with_name(path.name + ".lock")
    with contextlib.suppress(OSError):
        if time.time() - dotlock.stat().st_mtime < STALE_DOTLOCK_SECONDS:
            yield f"lock file {dotlock}"
            return
    kinds: tuple[tuple[str, Callable[[BinaryIO, int], Any]], ...] = (
        ("fcntl", fcntl.lockf),
        ("flock", fcntl.flock),
    )
    held: list[Callable[[BinaryIO, int], Any]] = []
    try:
        for name, lock in kinds:
            try:
                lock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                yield f"an {name} lock"
                return
            except OSError:
                continue  # the file system does not support this kind of lock
            held.append(lock)
        yield None
    finally:
        for unlock in held:
            with contextlib.suppress(OSError):
                unlock(fh, fcntl.LOCK_UN)


def _unfinished(fh: BinaryIO, size: int, mtime: float) -> bool:
    """True when the file's end looks like a message still being appended."""
    if size == 0 or time.time() - mtime >= SETTLE_SECONDS:
        return False
    fh.seek(max(0, size - 4))
    tail = fh.read(4)
    return not (tail.endswith(b"\n\n") or tail.endswith(b"\r\n\r\n"))


def iter_mbox(ctx: RunContext[EmailOptions]) -> Iterator[Record]:
    """Every message of the mbox file (new ones only when the checkpoint still fits)."""
    path = source_path(ctx.options)
    stream = f"mbox:{path}"
    if not path.is_file():
        raise LocalSourceError(f"mbox file {path} does not exist or is not a file")
    folder = folder_label(ctx.account, mbox_folder_name(path))
    with path.open("rb") as fh:
        with _shared_lock(path, fh) as holder:
            if holder is None:
                info = os.fstat(fh.fileno())
        if holder is not None:
            ctx.log.warning(
                "mbox %s is locked by a mail program (%s); it is read on the next run",
                path,
                holder,
            )
            return
        size = info.st_size  # mail appended after this is read on the next run
        unfinished = _unfinished(fh, size, info.st_mtime)
        head_bytes = min(HEAD_BYTES, size)
        fingerprint = _head_hash(fh, head_bytes)
        previous = ctx.checkpoint(stream)
        start = _resume_offset(fh, size, previous)
        ctx.progress(total=size, advance=start)
        state: dict[str, Any] = {
            "offset": start,
            "head_bytes": head_bytes,
            "fingerprint": fingerprint,
            "last_start": start,
            "last_message_hash": None,
        }
        if start and isinstance(previous, dict):
            state["last_start"] = previous["last_start"]
            state["last_message_hash"] = previous["last_message_hash"]
        for count, message in enumerate(split_mbox(fh, start, size), 1):
            ref = f"mbox:{path}@{message.start}"
            if unfinished and message.end == size:
                ctx.log.info(
                    "the last message of %s (at byte %d) is still being written; "
                    "it is read on the next run",
                    path,
                    message.start,
                )
                break
            if message.raw is None:
                ctx.skip(ref, f"message larger than {MAX_MESSAGE_BYTES} bytes")
            else:
                yield from map_message(
                    ctx,
                    message.raw,
                    ref=ref,
                    folder=folder,
                    flags=_flags(message.raw),
                    internal_date=_from_line_date(message.from_line),
                )
            state = {
                **state,
                "offset": message.end,
                "last_start": message.start,
                "last_message_hash": message.sha256,
            }
            ctx.progress(advance=message.end - message.start)
            if ctx.limit is not None and count >= ctx.limit:
                break
            if count % CHECKPOINT_EVERY == 0:
                yield Checkpoint(dict(state), stream=stream)
        yield Checkpoint(dict(state), stream=stream)
