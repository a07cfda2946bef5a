"""Options of the email connector (one account section of the config).

Passwords never live in the options: they come from a command, an environment
variable or the OS keyring, so a config file can be shared and logged safely.
With none of those given, the password is the Account item's ``secret``
(where a Pod, or ``importer account add``, keeps it), if it was stored for
this very server and login.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["KEYRING_SERVICE", "EmailOptions"]

KEYRING_SERVICE = "importer-email"
"""Keyring service name for ``password_keyring`` (the keyring user is ``username``)."""

_SECRET_KEYS = frozenset({"password", "pass", "passwd", "secret"})


class EmailOptions(BaseModel):
    """Where the mailbox is (IMAP server, mbox file or Maildir) and how to read it."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    source: Literal["imap", "mbox", "maildir"]

    # IMAP
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    """Default 993 for ``security = "tls"``, 143 otherwise."""
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str | None = None
    password_command: str | None = None
    password_env: str | None = None
    password_keyring: bool = False
    """Read the password from the OS keyring (service ``importer-email``, user ``username``)."""
    auth: Literal["password", "xoauth2"] = "password"
    """``xoauth2`` takes the access token from the Account item's ``accessToken``."""
    ca_file: Path | None = None
    verify_tls: bool = True
    folders: list[str] | None = None
    """Folders to import; None means every selectable folder (IMAP LIST)."""
    include: list[str] = Field(default_factory=list)
    """fnmatch globs on folder names; when given, only matching folders are imported."""
    exclude: list[str] = Field(default_factory=list)
    """fnmatch globs on folder names that are never imported."""
    chunk_size: int = Field(default=500, ge=1, le=100_000)
    """UIDs per IMAP FETCH."""

    # mbox / Maildir
    path: Path | None = None
    """The mbox file or Maildir directory (``~`` is expanded, made absolute)."""

    # all sources
    address: str | None = None
    """The owner's address; default ``username``, else ``"<source>:<absolute path>"``."""
    max_attachment_bytes: int = Field(default=25 * 2**20, ge=0)
    connect_timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _no_password(cls, data: Any) -> Any:
        if isinstance(data, dict):
            found = sorted(k for k in data if isinstance(k, str) and k.lower() in _SECRET_KEYS)
            if found:
                raise ValueError(
                    f"option {found[0]!r} is not allowed: passwords never go in the config; "
                    "use password_env, password_command or password_keyring"
                )
        return data

    @field_validator("path", "ca_file")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()

    @field_validator("host", "username", "address", "password_command", "password_env")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        return value or None

    @model_validator(mode="after")
    def _check(self) -> EmailOptions:
        if self.source == "imap":
            missing = [n for n in ("host", "username") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"source 'imap' needs {' and '.join(missing)}")
        elif self.path is None:
            raise ValueError(
                f"source {self.source!r} needs path (the mbox file or Maildir directory)"
            )
        sources = [
            name
            for name, on in (
                ("password_command", self.password_command is not None),
                ("password_env", self.password_env is not None),
                ("password_keyring", self.password_keyring),
            )
            if on
        ]
        if len(sources) > 1:
            raise ValueError(f"give only one password source, not {', '.join(sources)}")
        if self.password_keyring and self.username is None:
            raise ValueError("password_keyring needs username (the keyring user)")
        if self.port is None:
            self.port = 993 if self.security == "tls" else 143
        if self.address is None:
            if self.username is not None:
                self.address = self.username
            elif self.path is not None:
                self.address = f"{self.source}:{self.path}"
        return self

    def has_password_source(self) -> bool:
        """A password command, variable or keyring entry is configured."""
        return bool(self.password_command or self.password_env or self.password_keyring)

    def needs_password(self) -> bool:
        """IMAP with password login and no configured source: the Account's secret is used."""
        return self.source == "imap" and self.auth == "password" and not self.has_password_source()

    def owner_address(self) -> str:
        """The mailbox owner's address (always set after validation)."""
        if self.address is None:  # pragma: no cover - the validator always sets it
            raise ValueError("email options have no address")
        return self.address
