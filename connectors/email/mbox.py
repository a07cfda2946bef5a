"""Streaming mbox reader (mboxo / mboxrd, e.g. Google Takeout), incremental by offset.

``mailbox.mbox`` indexes the whole file first; this reader splits on
``From `` lines while reading, so memory stays at one message.

Incremental rule (checkpoint stream ``mbox:<absolute path>``): the state keeps
the offset after the last message read, a sha256 of the file's first
``head_bytes`` bytes and of the last message's bytes.  If both still match, the
next run continues at the offset, so appended mail is read alone; otherwise
(the file was rewritten, compacted, replaced) it rescans from 0 and the
engine's dedup keeps the result exact.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
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
        raw = b"".join(lines)
        if raw.endswith(b"\n\n"):
            raw = raw[:-1]  # the blank line before the next From_ line
        elif raw.endswith(b"\r\n\r\n"):
            raw = raw[:-2]
    return MboxMessage(start, end, from_line.rstrip(b"\r\n"), raw, digest.hexdigest())


def split_mbox(fh: BinaryIO, start: int = 0) -> Iterator[MboxMessage]:
    """The messages of an mbox from byte ``start`` (which must begin a From_ line).

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
        line = fh.readline(_READ_LIMIT)
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
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
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


def iter_mbox(ctx: RunContext[EmailOptions]) -> Iterator[Record]:
    """Every message of the mbox file (new ones only when the checkpoint still fits)."""
    path = source_path(ctx.options)
    stream = f"mbox:{path}"
    if not path.is_file():
        raise LocalSourceError(f"mbox file {path} does not exist or is not a file")
    folder = folder_label(ctx.account, mbox_folder_name(path))
    with path.open("rb") as fh:
        size = path.stat().st_size
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
        for count, message in enumerate(split_mbox(fh, start), 1):
            ref = f"mbox:{path}@{message.start}"
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
