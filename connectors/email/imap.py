"""The IMAP source: every selectable folder, incrementally by UID, flags by CONDSTORE.

Per folder the checkpoint stream ``imap://<login>@<host>:<port>/<folder>`` (one
set per mailbox, see ``_imap_streams``) holds
``{"uidvalidity": int, "last_uid": int, "highestmodseq": int | None}``:

* same UIDVALIDITY -> fetch only UIDs above ``last_uid``;
* new UIDVALIDITY (the server renumbered) -> fetch the folder again from UID 1;
  the engine's dedup by Message-ID keeps that exact;
* with CONDSTORE, messages at or below ``last_uid`` whose MODSEQ is above
  ``highestmodseq`` become ``Update`` records (starred / isRead).

Folders are opened read-only (EXAMINE) and bodies fetched with BODY.PEEK, so
importing never marks mail as read.  Server-side deletions are not propagated.
"""

from __future__ import annotations

from collections.abc import Iterator

from importer import Record, RunContext

from ._imap_session import (
    DROPPED,
    EmailAuthError,
    EmailConnectionError,
    EmailError,
    ImapSession,
    describe_error,
)
from ._imap_sync import ImapImport, list_folders
from .options import EmailOptions

__all__ = [
    "RETRY_DELAYS",
    "EmailAuthError",
    "EmailConnectionError",
    "EmailError",
    "check_imap",
    "iter_imap",
]

RETRY_DELAYS: tuple[float, ...] = (1.0, 3.0, 9.0)
"""Seconds to wait before each reconnect after a dropped connection; then give up."""


def iter_imap(ctx: RunContext[EmailOptions]) -> Iterator[Record]:
    """Records of every message not imported yet, with a checkpoint after each chunk."""
    session = ImapSession(ctx)
    session.connect()
    try:
        yield from ImapImport(ctx, session, retry_delays=RETRY_DELAYS).run()
    finally:
        session.close()


def check_imap(ctx: RunContext[EmailOptions]) -> None:
    """Log in and list the folders that would be imported; raise an EmailError if not."""
    session = ImapSession(ctx)
    session.connect()
    try:
        folders, missing = list_folders(ctx, session)
        if missing:
            raise EmailError(
                f"account {ctx.account_name}: configured folder(s) not on the server: "
                + ", ".join(repr(m) for m in missing)
            )
        ctx.log.info(
            "account %s: IMAP login ok, %d folder(s) to import: %s",
            ctx.account_name,
            len(folders),
            ", ".join(f.name for f in folders),
        )
    except DROPPED as exc:
        raise EmailConnectionError(
            f"account {ctx.account_name}: connection to {session.host}:{session.port} lost: "
            f"{describe_error(exc)}"
        ) from None
    finally:
        session.close()
