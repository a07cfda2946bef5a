"""Which IMAP folders to import, and what each one is for (special-use roles)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ImapFolder", "select_folders"]

_ROLES = {
    "\\sent": "sent",
    "\\trash": "trash",
    "\\junk": "junk",
    "\\drafts": "drafts",
    "\\archive": "archive",
    "\\all": "all",
    "\\flagged": "flagged",
    "\\important": "important",
}
"""RFC 6154 special-use attributes (plus Gmail's \\Important) -> Label role."""

_UNSELECTABLE = frozenset({"\\noselect", "\\nonexistent"})


@dataclass(frozen=True, slots=True)
class ImapFolder:
    name: str
    role: str | None = None


def _flag_text(flag: Any) -> str:
    return (flag.decode("ascii", "replace") if isinstance(flag, bytes) else str(flag)).lower()


def _name_text(name: Any) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def select_folders(
    listing: Sequence[tuple[Sequence[Any], Any, Any]],
    *,
    configured: Sequence[str] | None,
    include: Sequence[str],
    exclude: Sequence[str],
) -> tuple[list[ImapFolder], list[str]]:
    """The folders to import (INBOX first, then by name) and configured ones not found.

    ``listing`` is the IMAP LIST answer as imapclient gives it: (flags,
    delimiter, name).  Folders that cannot be selected are left out; globs
    apply to the full folder name, and ``exclude`` wins over ``include``.
    """
    found: dict[str, ImapFolder] = {}
    for flags, _delimiter, raw_name in listing:
        name = _name_text(raw_name)
        lowered = {_flag_text(f) for f in flags}
        if lowered & _UNSELECTABLE:
            continue
        role = next((_ROLES[f] for f in sorted(lowered) if f in _ROLES), None)
        if role is None and name.upper() == "INBOX":
            role = "inbox"
        found[name] = ImapFolder(name, role)

    missing: list[str] = []
    if configured is not None:
        chosen = []
        for name in configured:
            folder = found.get(name) or (found.get("INBOX") if name.upper() == "INBOX" else None)
            if folder is None:
                missing.append(name)
            elif folder not in chosen:
                chosen.append(folder)
    else:
        chosen = sorted(found.values(), key=lambda f: (f.name.upper() != "INBOX", f.name))

    def wanted(folder: ImapFolder) -> bool:
        if include and not any(fnmatch.fnmatchcase(folder.name, g) for g in include):
            return False
        return not any(fnmatch.fnmatchcase(folder.name, g) for g in exclude)

    return [f for f in chosen if wanted(f)], missing
