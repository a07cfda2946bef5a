"""Checkpoint streams of IMAP folders: one set per mailbox (server and login).

Accounts that share an owner address share the Account item and so its
checkpoints, yet the UIDs of one mailbox mean nothing in another.  A folder's
stream therefore names its mailbox, in the form of an IMAP URL (RFC 5092):
``imap://<login>@<host>:<port>/<folder>``, login and host percent-encoded.
A password is never part of it.

Earlier versions named the stream ``imap:<folder>``, whichever the mailbox.
Such a legacy stream says nothing about whose it is, so the first IMAP
account that runs after the upgrade takes all of them over (a single account
goes on where it was) and they are emptied: no other account can take one
for its own later.  Should another mailbox already have streams of its own,
the legacy ones are only emptied; reading a folder again costs time, never
a message.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from importer import Checkpoint

from .options import EmailOptions

__all__ = ["folder_stream", "mailbox_url", "take_over_legacy"]

_SCHEME = "imap://"
_LEGACY = "imap:"


def mailbox_url(options: EmailOptions) -> str:
    """``imap://<login>@<host>:<port>``: the mailbox whose UIDs a checkpoint counts."""
    login = quote(options.username or "", safe="")
    host = quote((options.host or "").lower(), safe="")
    return f"{_SCHEME}{login}@{host}:{options.port}"


def folder_stream(options: EmailOptions, folder: str) -> str:
    """The checkpoint stream of ``folder`` in this account's mailbox."""
    return f"{mailbox_url(options)}/{folder}"


def _legacy_folder(stream: str) -> str | None:
    """The folder of an ``imap:<folder>`` stream written by an earlier version."""
    if stream.startswith(_LEGACY) and not stream.startswith(_SCHEME):
        return stream[len(_LEGACY) :]
    return None


def _mailbox_of(stream: str) -> str | None:
    if not stream.startswith(_SCHEME):
        return None
    return _SCHEME + stream[len(_SCHEME) :].split("/", 1)[0]


def take_over_legacy(checkpoints: Mapping[str, Any], options: EmailOptions) -> Iterator[Checkpoint]:
    """Checkpoints that move every legacy stream with a state to this mailbox's names.

    Each legacy stream is emptied (after its state is moved, so a run that
    stops in between leaves nothing lost).  Its state goes to this mailbox's stream of
    the same folder unless that one has a state already, or another mailbox
    has written streams of its own (then the legacy state may well be that
    one's).  Reads the raw checkpoints: ``--full-refresh`` empties them too.
    """
    mine = mailbox_url(options)
    others = any(
        (box := _mailbox_of(stream)) is not None and box != mine and state is not None
        for stream, state in checkpoints.items()
    )
    for stream, state in checkpoints.items():
        folder = _legacy_folder(stream)
        if folder is None or state is None:
            continue
        target = folder_stream(options, folder)
        if not others and checkpoints.get(target) is None:
            yield Checkpoint(state, stream=target)
        yield Checkpoint(None, stream=stream)
