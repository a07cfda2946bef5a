"""Reading one account's folders: UID-incremental fetches, CONDSTORE flag updates, resume.

The state per folder is exactly what its checkpoint holds, so resuming after a
dropped connection and continuing in the next run are the same code path.
"""

from __future__ import annotations

import imaplib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, TypeVar

from importer import Checkpoint, EmailMessage, Label, Record, RunContext, Update

from ._imap_folders import ImapFolder, select_folders
from ._imap_session import DROPPED, EmailConnectionError, EmailError, ImapSession, describe_error
from ._imap_streams import folder_stream, take_over_legacy
from .mapping import (
    UnusableMessage,
    folder_label,
    message_item_id,
    message_records,
    normalize_message_id,
)
from .options import EmailOptions

__all__ = ["ImapImport", "list_folders"]

_FETCH_BYTES = 32 * 2**20
"""Bodies fetched per FETCH command at most (by RFC822.SIZE): bounds memory."""

_BODY_ITEMS = ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]

_SYSTEM_FLAGS = {
    f.lower(): f for f in ("\\Seen", "\\Flagged", "\\Answered", "\\Draft", "\\Deleted", "\\Recent")
}

T = TypeVar("T")


@dataclass(slots=True)
class _FolderState:
    """What the checkpoint of one folder says is already imported."""

    uidvalidity: int
    last_uid: int = 0
    highestmodseq: int | None = None

    @classmethod
    def parse(cls, state: Any) -> _FolderState | None:
        if not isinstance(state, dict):
            return None
        try:
            modseq = state.get("highestmodseq")
            return cls(
                uidvalidity=int(state["uidvalidity"]),
                last_uid=int(state["last_uid"]),
                highestmodseq=None if modseq is None else int(modseq),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Selected:
    uidvalidity: int
    uidnext: int | None
    highestmodseq: int | None
    exists: int


class _FolderGone(Exception):
    """SELECT was refused (folder deleted or renamed since LIST)."""


class _HungUp(Exception):
    """The server refused a FETCH with a BYE and closed the connection."""


_Fetched = dict[bytes, Any] | str
"""A message's FETCH data, or the server's reason for not delivering it."""


def list_folders(
    ctx: RunContext[EmailOptions], session: ImapSession
) -> tuple[list[ImapFolder], list[str]]:
    options = ctx.options
    return select_folders(
        session.client.list_folders(),
        configured=options.folders,
        include=options.include,
        exclude=options.exclude,
    )


def _chunks(values: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _flags(entry: dict[bytes, Any]) -> list[str]:
    """FLAGS as text, system flags in their canonical spelling."""
    out = []
    for flag in entry.get(b"FLAGS", ()):
        text = flag.decode("utf-8", "replace") if isinstance(flag, bytes) else str(flag)
        out.append(_SYSTEM_FLAGS.get(text.lower(), text))
    return out


def _section(entry: dict[bytes, Any]) -> bytes | None:
    """The one BODY[...] section of a FETCH answer (the key spelling varies by server)."""
    for key, value in entry.items():
        if isinstance(key, bytes) and key.startswith(b"BODY["):
            if isinstance(value, bytes):
                return value
            return None if value is None else bytes(value)
    return None


def _header_message_id(header: bytes | None) -> str | None:
    if not header:
        return None
    value = BytesHeaderParser(policy=compat32).parsebytes(header).get("Message-ID")
    return None if value is None else normalize_message_id(str(value))


class ImapImport:
    """One run over the account's folders; remembers progress so it can resume."""

    def __init__(
        self,
        ctx: RunContext[EmailOptions],
        session: ImapSession,
        *,
        retry_delays: Sequence[float] = (1.0, 3.0, 9.0),
    ) -> None:
        self._ctx = ctx
        self._retry_delays = tuple(retry_delays)
        self._session = session
        self._options = ctx.options
        self._states: dict[str, _FolderState | None] = {}
        self._committed: dict[str, dict[str, Any] | None] = {}
        self._failures = 0
        self._imported = 0
        self._one_by_one: dict[str, set[int]] = {}
        """Per folder, UIDs whose batch the server refused: fetched one at a time."""
        self._refused: dict[str, set[int]] = {}
        """Per folder, UIDs the server refused to deliver even alone (skipped)."""
        self._hung_up_on: dict[str, set[int]] = {}
        """Per folder, UIDs whose FETCH alone the server answered once with BYE."""

    # -- the run ---------------------------------------------------------------

    def run(self) -> Iterator[Record]:
        taken_over: dict[str, Any] = {}
        for moved in take_over_legacy(self._ctx.checkpoints, self._options):
            if moved.state is not None:
                taken_over[moved.stream] = moved.state
            yield moved
        folders, missing = self._retrying("listing folders", self._list)
        for name in missing:
            self._ctx.skip(f"imap:{name}", "configured folder does not exist on the server")
        for folder in folders:
            stream = self._stream(folder)
            saved = self._ctx.checkpoint(stream)
            if saved is None and not self._ctx.full_refresh:
                saved = taken_over.get(stream)
            state = _FolderState.parse(saved)
            if saved is not None and state is None:
                self._ctx.log.warning("ignoring malformed checkpoint of %s: %r", stream, saved)
            self._states[folder.name] = state
            self._committed[folder.name] = None if state is None else state.as_json()

        total = sum(self._retrying(f"counting {f.name!r}", self._counter(f)) for f in folders)
        if self._ctx.limit is not None:
            total = min(total, self._ctx.limit)
        self._ctx.progress(total=total)

        for folder in folders:
            if self._limit_reached():
                break
            yield from self._folder(folder)

    def _list(self) -> tuple[list[ImapFolder], list[str]]:
        return list_folders(self._ctx, self._session)

    def _limit_reached(self) -> bool:
        return self._ctx.limit is not None and self._imported >= self._ctx.limit

    def _counter(self, folder: ImapFolder) -> Callable[[], int]:
        def count() -> int:
            try:
                selected = self._select(folder)
            except _FolderGone:
                return 0
            state = self._states.get(folder.name)
            if state is None or state.uidvalidity != selected.uidvalidity:
                return selected.exists
            return len(self._new_uids(state, selected))

        return count

    # -- connection handling ----------------------------------------------------

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        while True:
            try:
                result = call()
            except DROPPED as exc:
                self._recover(exc, what)
                continue
            self._failures = 0
            return result

    def _recover(self, exc: BaseException, what: str) -> None:
        """Reconnect after a dropped connection, with backoff; give up after a few tries."""
        while True:
            self._failures += 1
            if self._failures > len(self._retry_delays):
                raise EmailConnectionError(
                    f"account {self._ctx.account_name}: connection to "
                    f"{self._session.host}:{self._session.port} lost {self._failures} times "
                    f"in a row while {what}; giving up ({describe_error(exc)})"
                ) from None
            delay = self._retry_delays[self._failures - 1]
            self._ctx.log.warning(
                "account %s: connection lost while %s (%s); reconnecting in %.1f s",
                self._ctx.account_name,
                what,
                describe_error(exc),
                delay,
            )
            time.sleep(delay)
            try:
                self._session.open()
            except DROPPED as again:
                exc = again
                continue
            return

    # -- one folder ---------------------------------------------------------------

    def _folder(self, folder: ImapFolder) -> Iterator[Record]:
        label = folder_label(self._ctx.account, folder.name, folder.role)
        while True:
            try:
                yield from self._sync_folder(folder, label)
                return
            except _FolderGone as exc:
                self._ctx.skip(f"imap:{folder.name}", f"folder cannot be selected: {exc}")
                return
            except _HungUp as exc:
                self._ctx.log.info(
                    "account %s: the server closed the connection after refusing a FETCH "
                    "in folder %r (%s); reconnecting",
                    self._ctx.account_name,
                    folder.name,
                    exc,
                )
                self._retrying(f"reading folder {folder.name!r}", self._session.open)
            except DROPPED as exc:
                self._recover(exc, f"reading folder {folder.name!r}")
            except imaplib.IMAP4.error as exc:
                raise EmailError(
                    f"account {self._ctx.account_name}: IMAP server error in folder "
                    f"{folder.name!r}: {describe_error(exc)}"
                ) from None

    def _sync_folder(self, folder: ImapFolder, label: Label) -> Iterator[Record]:
        selected = self._select(folder)
        state = self._states.get(folder.name)
        if state is None or state.uidvalidity != selected.uidvalidity:
            if state is not None:
                self._ctx.log.info(
                    "folder %r: UIDVALIDITY changed (%d -> %d); reading it again from the start",
                    folder.name,
                    state.uidvalidity,
                    selected.uidvalidity,
                )
            state = _FolderState(selected.uidvalidity, 0, selected.highestmodseq)
            self._states[folder.name] = state
        else:
            yield from self._flag_updates(folder, state, selected)
        yield from self._new_messages(folder, label, state, selected)
        yield from self._checkpoint(folder)

    def _checkpoint(self, folder: ImapFolder) -> Iterator[Record]:
        """A checkpoint of the folder's state, unless it is what was last committed."""
        state = self._states.get(folder.name)
        if state is None:
            return
        current = state.as_json()
        if current != self._committed.get(folder.name):
            self._committed[folder.name] = current
            yield Checkpoint(current, stream=self._stream(folder))

    def _stream(self, folder: ImapFolder) -> str:
        return folder_stream(self._options, folder.name)

    def _select(self, folder: ImapFolder) -> _Selected:
        try:
            info = self._session.client.select_folder(folder.name, readonly=True)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            raise _FolderGone(describe_error(exc)) from None
        uidvalidity = info.get(b"UIDVALIDITY")
        if uidvalidity is None:
            raise _FolderGone("the server reported no UIDVALIDITY")
        uidnext = info.get(b"UIDNEXT")
        modseq = info.get(b"HIGHESTMODSEQ") if self._session.condstore else None
        return _Selected(
            uidvalidity=int(uidvalidity),
            uidnext=None if uidnext is None else int(uidnext),
            highestmodseq=None if modseq is None else int(modseq),
            exists=int(info.get(b"EXISTS", 0)),
        )

    def _new_uids(self, state: _FolderState, selected: _Selected) -> list[int]:
        if selected.exists == 0:
            return []
        if selected.uidnext is not None and selected.uidnext <= state.last_uid + 1:
            return []
        # "N:*" always matches the highest UID, even when it is below N.
        found = self._session.client.search(["UID", f"{state.last_uid + 1}:*"])
        return sorted(uid for uid in found if uid > state.last_uid)

    def _flag_updates(
        self, folder: ImapFolder, state: _FolderState, selected: _Selected
    ) -> Iterator[Record]:
        """Updates for already imported messages whose flags changed (CONDSTORE)."""
        previous = state.highestmodseq
        if selected.highestmodseq is None or previous is None or state.last_uid == 0:
            state.highestmodseq = selected.highestmodseq
            return
        if selected.highestmodseq == previous:
            return
        # A lower HIGHESTMODSEQ means the server lost its history: look at every message.
        since = previous if selected.highestmodseq > previous else 0
        client = self._session.client
        changed = sorted(
            uid
            for uid in client.search(["UID", f"1:{state.last_uid}", "MODSEQ", str(since + 1)])
            if uid <= state.last_uid
        )
        items = ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]
        for chunk in _chunks(changed, self._options.chunk_size):
            for uid, entry in self._fetch(folder, list(chunk), items):
                if isinstance(entry, str):
                    ref = f"imap:{folder.name}/{state.uidvalidity}/{uid}"
                    self._ctx.skip(ref, f"the server would not deliver its flags: {entry}")
                    continue
                message_id = _header_message_id(_section(entry))
                if message_id is None:
                    # No Message-ID to find the item by.
                    continue
                flags = {f.lower() for f in _flags(entry)}
                yield Update(
                    EmailMessage(
                        id=message_item_id(message_id),
                        externalId=message_id,
                        starred="\\flagged" in flags,
                        isRead="\\seen" in flags,
                    )
                )
            self._failures = 0
        state.highestmodseq = selected.highestmodseq
        yield from self._checkpoint(folder)

    def _new_messages(
        self, folder: ImapFolder, label: Label, state: _FolderState, selected: _Selected
    ) -> Iterator[Record]:
        uids = self._new_uids(state, selected)
        for chunk in _chunks(uids, self._options.chunk_size):
            for uid, entry in self._fetch_bodies(folder, chunk):
                if isinstance(entry, str):
                    ref = f"imap:{folder.name}/{state.uidvalidity}/{uid}"
                    self._ctx.skip(ref, f"the server would not deliver it: {entry}")
                else:
                    yield from self._message(folder, label, state, uid, entry)
                state.last_uid = uid
                self._ctx.progress(advance=1)
                self._imported += 1
                if self._limit_reached():
                    yield from self._checkpoint(folder)
                    return
            # UIDs the server no longer has (expunged meanwhile) are done too.
            state.last_uid = max(state.last_uid, chunk[-1])
            self._failures = 0
            yield from self._checkpoint(folder)

    def _fetch_bodies(
        self, folder: ImapFolder, chunk: Sequence[int]
    ) -> Iterator[tuple[int, _Fetched]]:
        """(uid, FETCH data or refusal) in UID order, a few MiB of bodies in memory at a time."""
        batch: list[int] = []
        batch_bytes = 0
        for uid, sized in self._fetch(folder, list(chunk), ["RFC822.SIZE"]):
            if isinstance(sized, str):
                if batch:
                    yield from self._fetch(folder, batch, _BODY_ITEMS)
                    batch, batch_bytes = [], 0
                yield uid, sized
                continue
            size = int(sized.get(b"RFC822.SIZE", 0))
            if batch and batch_bytes + size > _FETCH_BYTES:
                yield from self._fetch(folder, batch, _BODY_ITEMS)
                batch, batch_bytes = [], 0
            batch.append(uid)
            batch_bytes += size
        if batch:
            yield from self._fetch(folder, batch, _BODY_ITEMS)

    def _fetch(
        self, folder: ImapFolder, uids: list[int], items: list[str]
    ) -> Iterator[tuple[int, _Fetched]]:
        """(uid, FETCH data) in UID order, or (uid, the server's reason) for a refused message.

        A FETCH the server refuses (NO, or Dovecot's BYE and hang-up) is narrowed
        down to single messages, so one unreadable message costs only itself; a
        message is given up after a NO, or after a BYE on its own FETCH twice.
        UIDs the server no longer has are left out.  Raises :class:`_HungUp` when
        the server closed the connection; the folder then resumes after the last
        UID handed out.
        """
        refused = self._refused.setdefault(folder.name, set())
        one_by_one = self._one_by_one.setdefault(folder.name, set())
        uids = [uid for uid in uids if uid not in refused]
        if len(uids) > 1 and one_by_one.isdisjoint(uids):
            try:
                fetched = self._session.client.fetch(uids, items)
            except imaplib.IMAP4.error as exc:
                reason = self._refusal(exc)
                if reason is None:
                    raise
                self._ctx.log.warning(
                    "folder %r: the server refused to FETCH UIDs %d-%d (%s); "
                    "fetching them one at a time",
                    folder.name,
                    uids[0],
                    uids[-1],
                    reason,
                )
                one_by_one.update(uids)
                if isinstance(exc, imaplib.IMAP4.abort):
                    raise _HungUp(reason) from None
            else:
                for uid in uids:
                    entry = fetched.pop(uid, None)
                    if entry is not None:
                        yield uid, entry
                return
        hung_up_on = self._hung_up_on.setdefault(folder.name, set())
        for uid in uids:
            try:
                single = self._session.client.fetch([uid], items)
            except imaplib.IMAP4.error as exc:
                reason = self._refusal(exc)
                if reason is None:
                    raise
                hung_up = isinstance(exc, imaplib.IMAP4.abort)
                if hung_up and uid not in hung_up_on:
                    # One BYE may be a server shutting down, not this message:
                    # it is fetched again after reconnecting; a second one is it.
                    hung_up_on.add(uid)
                    raise _HungUp(reason) from None
                refused.add(uid)
                yield uid, reason
                if hung_up:
                    raise _HungUp(reason) from None
                continue
            entry = single.get(uid)
            if entry is not None:
                yield uid, entry

    def _refusal(self, exc: imaplib.IMAP4.error) -> str | None:
        """The server's reason when it refused a FETCH; None for a broken connection."""
        if isinstance(exc, imaplib.IMAP4.abort):
            return self._session.farewell()
        text = describe_error(exc)
        # imapclient words a tagged NO as "fetch failed: <text>"; BAD (a malformed
        # command) and anything else is not about the messages.
        marker = "fetch failed: "
        at = text.lower().find(marker)
        if at < 0:
            return None
        return text[at + len(marker) :].strip() or "no reason given"

    def _message(
        self,
        folder: ImapFolder,
        label: Label,
        state: _FolderState,
        uid: int,
        entry: dict[bytes, Any],
    ) -> Iterator[Record]:
        ref = f"imap:{folder.name}/{state.uidvalidity}/{uid}"
        raw = _section(entry)
        if raw is None:
            self._ctx.skip(ref, "the server returned no message body")
            return
        internal_date = entry.get(b"INTERNALDATE")
        try:
            records = message_records(
                raw,
                owner=self._ctx.account,
                source_ref=ref,
                folder=label,
                flags=_flags(entry),
                internal_date=internal_date if isinstance(internal_date, datetime) else None,
                max_attachment_bytes=self._options.max_attachment_bytes,
                skip=self._ctx.skip,
            )
        except UnusableMessage as exc:
            self._ctx.skip(ref, str(exc))
            return
        yield from records
