"""The central item types importers share (names from the Pod's central schema).

Connectors reuse these so that other Pod clients understand what they import;
a connector adds its own types by subclassing :class:`~importer.Item`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

from .model import DateTime, FilePayload, Item

__all__ = [
    "CENTRAL_TYPES",
    "Account",
    "EmailMessage",
    "File",
    "Importer",
    "ImporterRun",
    "Label",
    "Location",
    "Message",
    "PendingEdge",
    "Person",
    "Photo",
    "PluginRun",
]


class Account(Item):
    """An account at a service; the importer keeps its checkpoints here."""

    key_fields: ClassVar[tuple[str, ...]] = ("service", "handle")

    handle: str | None = None
    service: str | None = None
    displayName: str | None = None
    externalId: str | None = None
    isMe: bool | None = None
    secret: str | None = None
    accessToken: str | None = None
    refreshToken: str | None = None
    credentialsFor: str | None = None
    """Where ``secret`` and the tokens may be sent: the connector's name for the server
    and login they were stored for (email: ``imap://<login>@<host>:<port>``)."""
    importerState: str | None = None
    """JSON: ``{connector: {stream: state}}``, written by the engine only."""

    def key_values(self) -> tuple[str, ...]:
        service, handle = super().key_values()
        return service.lower(), handle.strip().lower()


class Person(Item):
    displayName: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    email: str | None = None
    externalId: str | None = None


class Message(Item):
    key_fields: ClassVar[tuple[str, ...]] = ("service", "externalId")

    subject: str | None = None
    content: str | None = None
    dateSent: DateTime | None = None
    dateReceived: DateTime | None = None
    externalId: str | None = None
    service: str | None = None
    starred: bool | None = None
    isRead: bool | None = None


class EmailMessage(Message):
    """One email, however many folders it sits in (folders are Label edges)."""

    key_fields: ClassVar[tuple[str, ...]] = ("externalId",)
    mutable_fields: ClassVar[frozenset[str]] = frozenset({"starred", "isRead"})

    htmlContent: str | None = None
    inReplyTo: str | None = None


class File(Item):
    """Stored bytes, content-addressed by sha256 (keystr/nonce are the Pod's)."""

    key_fields: ClassVar[tuple[str, ...]] = ("sha256",)

    filename: str | None = None
    sha256: str | None = None
    keystr: str | None = None
    nonce: str | None = None
    externalId: str | None = None
    mimeType: str | None = None
    size: int | None = None

    @classmethod
    def payload(
        cls, data: bytes, *, filename: str | None = None, mime_type: str | None = None
    ) -> FilePayload:
        """A File item for ``data`` together with the bytes to upload."""
        sha = hashlib.sha256(data).hexdigest()
        item = cls(sha256=sha, filename=filename, mimeType=mime_type, size=len(data))
        return FilePayload(item, data)

    @classmethod
    def payload_from_path(
        cls, path: Path, *, filename: str | None = None, mime_type: str | None = None
    ) -> FilePayload:
        """Hash ``path`` in chunks (never whole in memory) and describe it."""
        digest = hashlib.sha256()
        size = 0
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        item = cls(
            sha256=digest.hexdigest(),
            filename=filename or path.name,
            mimeType=mime_type,
            size=size,
        )
        return FilePayload(item, path)


class Photo(Item):
    name: str | None = None
    caption: str | None = None
    width: int | None = None
    height: int | None = None
    channels: int | None = None
    encoding: str | None = None
    mode: str | None = None
    exifData: str | None = None
    dateTaken: DateTime | None = None


class Label(Item):
    """A folder, tag or label an item is filed under (``label`` edges)."""

    key_fields: ClassVar[tuple[str, ...]] = ("service", "externalId")

    name: str | None = None
    service: str | None = None
    externalId: str | None = None
    role: str | None = None


class Location(Item):
    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None


class Importer(Item):
    """One configured importer (connector + account): ``-account-> Account``."""

    key_fields: ClassVar[tuple[str, ...]] = ("connector", "externalId")

    name: str | None = None
    connector: str | None = None
    externalId: str | None = None
    """The Account item's id this importer imports for."""
    config: str | None = None


class ImporterRun(Item):
    """One run of an importer: ``-importer-> Importer``."""

    status: str | None = None
    progress: float | None = None
    error: str | None = None
    connector: str | None = None
    startDate: DateTime | None = None
    endDate: DateTime | None = None
    createdCount: int | None = None
    updatedCount: int | None = None
    skippedCount: int | None = None
    unchangedCount: int | None = None
    failedCount: int | None = None
    retryCount: int | None = None
    skipLog: str | None = None
    """JSON list of {ref, reason} for records that could not be imported."""
    outputTail: str | None = None
    """The last few KiB of the importer's output, when a Pod started it as a plugin."""


class PendingEdge(Item):
    """An edge whose target is not in the Pod yet; created when the target arrives."""

    key_fields: ClassVar[tuple[str, ...]] = ("edgeSource", "edgeName", "edgeTarget")

    edgeSource: str | None = None
    edgeName: str | None = None
    edgeTarget: str | None = None


class PluginRun(ImporterRun):
    containerImage: str | None = None
    targetItemId: str | None = None


CENTRAL_TYPES: tuple[type[Item], ...] = (
    Account,
    Person,
    Message,
    EmailMessage,
    File,
    Photo,
    Label,
    Location,
    Importer,
    ImporterRun,
    PluginRun,
    PendingEdge,
)
