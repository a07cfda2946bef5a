"""What the mbox and Maildir readers share: path checks and mapping one message."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime
from pathlib import Path

from importer.context import RunContext
from importer.model import Record
from importer.schema import Label

from .mapping import UnusableMessage, message_records
from .options import EmailOptions

__all__ = ["CHECKPOINT_EVERY", "LocalSourceError", "check_path", "map_message", "source_path"]

CHECKPOINT_EVERY = 200
"""Messages between checkpoints."""


class LocalSourceError(Exception):
    """The mbox file or Maildir directory is missing or of the wrong kind."""


def source_path(options: EmailOptions) -> Path:
    if options.path is None:  # pragma: no cover - the options validator requires it
        raise LocalSourceError(f"source {options.source!r} needs path")
    return options.path


def check_path(options: EmailOptions) -> None:
    """Raise :class:`LocalSourceError` unless the path is a readable mbox file / Maildir."""
    path = source_path(options)
    if options.source == "mbox":
        if not path.is_file():
            raise LocalSourceError(f"mbox file {path} does not exist or is not a file")
        with path.open("rb") as fh:
            head = fh.read(5)
        if head and head != b"From ":
            raise LocalSourceError(f"{path} is not an mbox file (it does not start with 'From ')")
        return
    if not path.is_dir():
        raise LocalSourceError(f"Maildir {path} does not exist or is not a directory")
    if not ((path / "cur").is_dir() or (path / "new").is_dir()):
        raise LocalSourceError(f"{path} is not a Maildir (it has neither cur/ nor new/)")


def map_message(
    ctx: RunContext[EmailOptions],
    raw: bytes,
    *,
    ref: str,
    folder: Label | None,
    flags: Collection[str],
    internal_date: datetime | None,
) -> Iterator[Record]:
    """The records of one message, or nothing (and a skip entry) if it is unusable."""
    try:
        records = message_records(
            raw,
            owner=ctx.account,
            source_ref=ref,
            folder=folder,
            flags=flags,
            internal_date=internal_date,
            max_attachment_bytes=ctx.options.max_attachment_bytes,
            skip=ctx.skip,
        )
    except UnusableMessage as exc:
        ctx.skip(ref, str(exc))
        return
    yield from records
