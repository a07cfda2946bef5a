"""Maildir / Maildir++ reader, incremental per folder without re-reading old mail.

Folders: the root is ``INBOX``; every ``.Name`` sub-directory (Maildir++) is
the folder ``Name`` (modified UTF-7 decoded, dots kept as the hierarchy
separator, as Dovecot shows them over IMAP).  Messages are the files in
``new/`` and ``cur/``; flags come from the ``:2,`` info (S = seen, F = flagged);
the file's mtime is the received date (Dovecot's INTERNALDATE).

Incremental rule, per folder (checkpoint stream ``maildir:<folder directory>``),
state ``{"watermark_ns", "new_mtime_ns", "cur_mtime_ns"}``:

* if the ``new/`` and ``cur/`` directory mtimes equal the stored ones, nothing
  was added, renamed or removed: the folder is skipped without listing it;
* otherwise the directories are listed and only files whose ctime (changed by
  delivery *and* by rename) is at or after ``watermark_ns`` are read;
* the watermark is the scan's start time minus a safety margin (coarse file
  system clocks), so a file landing during a scan is read on the next run;
  a few files are read twice and the engine's dedup drops them.

Flag changes and moves are renames, so they bump the ctime: such a file whose
content (mtime) predates the watermark is read again and also yields an
``Update`` with its current seen/flagged state.  Not detected: deletions, and
flag changes on file systems where rename does not update ctime.

A file that cannot be read (permissions, I/O error) is recorded as skipped
and its name kept in the state (``"unreadable"``, relative to the folder):
every later run tries it again, even when the folder did not change, since
fixing permissions does not touch the directories.  A file that vanished
(moved by a mail client while listing) is no error: its new name is listed.
"""

from __future__ import annotations

import base64
import fnmatch
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from importer.context import RunContext
from importer.model import Checkpoint, Record, Update
from importer.schema import EmailMessage, Label

from ._local import CHECKPOINT_EVERY, LocalSourceError, map_message, source_path
from .mapping import folder_label
from .options import EmailOptions

__all__ = ["MaildirFolder", "folder_role", "iter_maildir", "list_folders", "message_flags"]

MARGIN_NS = 2_000_000_000
"""How far before the scan start the next watermark is put (clock granularity, races)."""
INBOX = "INBOX"

_ROLES = {
    "inbox": "inbox",
    "sent": "sent",
    "sent items": "sent",
    "sent messages": "sent",
    "sent mail": "sent",
    "drafts": "drafts",
    "trash": "trash",
    "deleted items": "trash",
    "deleted messages": "trash",
    "junk": "junk",
    "spam": "junk",
    "archive": "archive",
    "archives": "archive",
}
_FLAG_LETTERS = {
    "S": "\\Seen",
    "F": "\\Flagged",
    "R": "\\Answered",
    "T": "\\Deleted",
    "D": "\\Draft",
}


@dataclass(frozen=True, slots=True)
class MaildirFolder:
    name: str
    path: Path

    @property
    def stream(self) -> str:
        return f"maildir:{self.path}"


@dataclass(frozen=True, slots=True)
class _File:
    path: Path
    ctime_ns: int
    mtime_ns: int


def _decode_mutf7(name: str) -> str:
    """IMAP modified UTF-7 (``&AOk-`` -> ``é``); undecodable names are kept as they are."""
    if "&" not in name:
        return name
    out: list[str] = []
    i = 0
    while i < len(name):
        amp = name.find("&", i)
        if amp < 0:
            out.append(name[i:])
            break
        out.append(name[i:amp])
        dash = name.find("-", amp)
        if dash < 0:
            return name
        chunk = name[amp + 1 : dash]
        if not chunk:
            out.append("&")
        else:
            data = chunk.replace(",", "/")
            data += "=" * (-len(data) % 4)
            try:
                out.append(base64.b64decode(data, validate=True).decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError):
                return name
        i = dash + 1
    return "".join(out)


def folder_role(name: str) -> str | None:
    """The usual role of a folder by its name (``Sent``, ``Trash``, ...), if any."""
    return _ROLES.get(name.rsplit(".", 1)[-1].strip().lower())


def _is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() or (path / "new").is_dir()


def _wanted(name: str, options: EmailOptions) -> bool:
    if options.folders is not None and name not in options.folders:
        return False
    if options.include and not any(fnmatch.fnmatchcase(name, g) for g in options.include):
        return False
    return not any(fnmatch.fnmatchcase(name, g) for g in options.exclude)


def list_folders(root: Path, options: EmailOptions) -> list[MaildirFolder]:
    """INBOX and the Maildir++ sub-folders of ``root`` the options select, sorted."""
    folders = [MaildirFolder(INBOX, root)] if _is_maildir(root) else []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(".") and entry.name not in (".", "..") and entry.is_dir():
                path = Path(entry.path)
                if _is_maildir(path):
                    folders.append(MaildirFolder(_decode_mutf7(entry.name[1:]), path))
    folders.sort(key=lambda f: (f.name != INBOX, f.name))
    return [f for f in folders if _wanted(f.name, options)]


def message_flags(filename: str) -> set[str]:
    """IMAP flags from a Maildir file name's ``:2,`` info."""
    for sep in (":2,", "!2,"):
        _, found, info = filename.rpartition(sep)
        if found:
            return {_FLAG_LETTERS[c] for c in info if c in _FLAG_LETTERS}
    return set()


def _dir_mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _files(
    folder: MaildirFolder, watermark: int | None
) -> tuple[list[_File], list[tuple[Path, OSError]]]:
    """Message files changed at or after ``watermark`` (all if None), and those not stat-able."""
    found = []
    failed: list[tuple[Path, OSError]] = []
    for sub in ("new", "cur"):
        try:
            entries = list(os.scandir(folder.path / sub))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if not entry.is_file():
                    continue
                st = entry.stat()
            except FileNotFoundError:
                continue  # renamed or removed meanwhile; its new name is seen next run
            except OSError as exc:
                failed.append((Path(entry.path), exc))
                continue
            if watermark is None or st.st_ctime_ns >= watermark:
                found.append(_File(Path(entry.path), st.st_ctime_ns, st.st_mtime_ns))
    return found, failed


def _state(
    watermark: int | None,
    new: int | None,
    cur: int | None,
    unreadable: Iterable[str] = (),
) -> dict[str, Any]:
    state: dict[str, Any] = {"watermark_ns": watermark, "new_mtime_ns": new, "cur_mtime_ns": cur}
    retry = sorted(set(unreadable))
    if retry:
        state["unreadable"] = retry
    return state


def _why(exc: OSError) -> str:
    return f"{type(exc).__name__}: {exc.strerror or exc}"


@dataclass(slots=True)
class _Plan:
    folder: MaildirFolder
    label: Label
    watermark: int | None
    files: list[_File]
    scan_ns: int
    dir_mtimes: tuple[int | None, int | None]
    retry: list[str]
    """Files the last run could not read (relative to the folder), tried again."""
    unreadable: list[str]
    """Files this run could not read (relative to the folder)."""

    def cannot_read(self, ctx: RunContext[EmailOptions], path: Path, error: OSError) -> None:
        """Record ``path`` as skipped and keep it to be tried again next run."""
        ctx.skip(f"maildir:{path}", f"cannot be read ({_why(error)}); tried again next run")
        self.unreadable.append(path.relative_to(self.folder.path).as_posix())


def _plan(ctx: RunContext[EmailOptions], folder: MaildirFolder) -> _Plan | None:
    """What to read in ``folder``; None when its directories did not change."""
    scan_ns = time.time_ns()
    mtimes = (_dir_mtime(folder.path / "new"), _dir_mtime(folder.path / "cur"))
    state = ctx.checkpoint(folder.stream)
    watermark = None
    unchanged = False
    retry: list[str] = []
    if isinstance(state, dict):
        stored = (state.get("new_mtime_ns"), state.get("cur_mtime_ns"))
        unchanged = stored == mtimes and any(m is not None for m in stored)
        listed = state.get("unreadable")
        retry = [r for r in listed if isinstance(r, str)] if isinstance(listed, list) else []
        if unchanged and not retry:
            return None
        value = state.get("watermark_ns")
        watermark = value if isinstance(value, int) else None
    label = folder_label(ctx.account, folder.name, folder_role(folder.name))
    files, failed = ([], []) if unchanged else _files(folder, watermark)
    plan = _Plan(folder, label, watermark, files, scan_ns, mtimes, retry, [])
    seen = {f.path for f in files} | {path for path, _ in failed}
    for name in retry:
        path = folder.path / name
        if path in seen or path.parent not in (folder.path / "new", folder.path / "cur"):
            continue
        try:
            st = path.stat()
        except FileNotFoundError:
            continue  # moved or removed; a new name is listed
        except OSError as exc:
            failed.append((path, exc))
            continue
        files.append(_File(path, st.st_ctime_ns, st.st_mtime_ns))
    for path, error in failed:
        plan.cannot_read(ctx, path, error)
    files.sort(key=lambda f: (f.ctime_ns, f.path.name))
    return plan


def _read(ctx: RunContext[EmailOptions], plan: _Plan, item: _File) -> Iterator[Record]:
    ref = f"maildir:{item.path}"
    try:
        raw = item.path.read_bytes()
    except FileNotFoundError:
        ctx.log.debug("maildir file vanished while reading: %s", ref)
        return
    except OSError as exc:
        plan.cannot_read(ctx, item.path, exc)
        return
    flags = message_flags(item.path.name)
    received = datetime.fromtimestamp(item.mtime_ns / 1e9, tz=UTC)
    records = list(
        map_message(ctx, raw, ref=ref, folder=plan.label, flags=flags, internal_date=received)
    )
    yield from records
    renamed = plan.watermark is not None and item.mtime_ns < plan.watermark
    if renamed and records and isinstance(records[0], EmailMessage):
        message = records[0]
        yield Update(
            EmailMessage(
                id=message.id,
                externalId=message.externalId,
                starred=message.starred,
                isRead=message.isRead,
            )
        )


def iter_maildir(ctx: RunContext[EmailOptions]) -> Iterator[Record]:
    """New and changed messages of every selected folder, checkpointed per folder."""
    root = source_path(ctx.options)
    if not root.is_dir():
        raise LocalSourceError(f"Maildir {root} does not exist or is not a directory")
    plans = [p for f in list_folders(root, ctx.options) if (p := _plan(ctx, f)) is not None]
    ctx.progress(total=sum(len(p.files) for p in plans))
    count = 0
    for plan in plans:
        done_all = True
        last_ctime = plan.watermark
        for n, item in enumerate(plan.files, 1):
            if ctx.limit is not None and count >= ctx.limit:
                done_all = False
                break
            yield from _read(ctx, plan, item)
            count += 1
            last_ctime = max(last_ctime or 0, item.ctime_ns)
            ctx.progress(advance=1)
            if n % CHECKPOINT_EVERY == 0 and n < len(plan.files):
                # Retries not reached yet stay listed, as do this run's failures.
                pending = [*plan.retry, *plan.unreadable]
                yield Checkpoint(_state(last_ctime, None, None, pending), stream=plan.folder.stream)
        if not done_all:
            if last_ctime != plan.watermark or plan.unreadable:
                pending = [*plan.retry, *plan.unreadable]
                yield Checkpoint(_state(last_ctime, None, None, pending), stream=plan.folder.stream)
            return
        watermark = plan.scan_ns - MARGIN_NS
        new, cur = (m if m is not None and m < watermark else None for m in plan.dir_mtimes)
        state = _state(watermark, new, cur, plan.unreadable)
        yield Checkpoint(state, stream=plan.folder.stream)
