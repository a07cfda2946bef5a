"""Which owners the Pod serves, their open stores, and how a request's key is checked.

Trade-off, chosen for speed: an owner's database stays open (decrypted, its
key inside SQLCipher) from the first authenticated request until the Pod
stops, instead of being opened and closed per request.  So while the process
runs, the owner's data is reachable in its memory, and anyone able to read
that memory can read the data.  In return a request costs no database open:
its key is checked against an HMAC of the key under a random secret that
exists only in this process's memory (never the key itself; nothing about a
key is ever written to disk or logged).  A wrong key gets a 401 and touches
nothing: an existing database is only opened, never created, by a key that
cannot decrypt it.

Plugin tokens (``PluginAuth``) are random strings the Pod mints for a plugin
it starts; they map, in memory only, to the owner and key they stand for.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from pathlib import Path
from typing import Any

from ._db import WrongKey, create_database, database_exists
from ._errors import PodHTTPError, bad_request, shutting_down, unauthorized
from ._store import Store

__all__ = ["Owners", "check_owner_key"]

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def check_owner_key(value: str) -> str:
    """The owner key in canonical (lowercase) form; a 400 if it is not 64 hex."""
    if not _HEX64.fullmatch(value):
        raise bad_request("the owner key must be 64 hexadecimal characters")
    return value.lower()


class Owners:
    """Open stores by owner key; thread-safe."""

    def __init__(self, data_dir: Path, *, accept_any_owner: bool) -> None:
        self.data_dir = data_dir
        self.accept_any_owner = accept_any_owner
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._stores: dict[str, tuple[Store, bytes]] = {}
        self._opening: dict[str, threading.Lock] = {}
        self._tokens: dict[str, tuple[str, str]] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"Owners({str(self.data_dir)!r}, open={len(self._stores)})"

    def _digest(self, database_key: str) -> bytes:
        return hmac.new(self._secret, database_key.encode(), hashlib.sha256).digest()

    # -- authentication ---------------------------------------------------------

    def database_key(self, owner: str, auth: object) -> str:
        """The database key an AUTH object stands for; a 401 if it stands for none."""
        if not isinstance(auth, dict):
            raise unauthorized("missing or malformed auth")
        kind = auth.get("type")
        if kind == "ClientAuth":
            key = auth.get("databaseKey")
            if not isinstance(key, str) or not _HEX64.fullmatch(key):
                raise unauthorized("databaseKey must be 64 hexadecimal characters")
            return key.lower()
        if kind == "PluginAuth":
            data = auth.get("data")
            token = data.get("token") if isinstance(data, dict) else None
            entry = self._tokens.get(token) if isinstance(token, str) else None
            if entry is None or not hmac.compare_digest(entry[0], owner):
                raise unauthorized("unknown plugin token")
            return entry[1]
        raise unauthorized("auth type must be 'ClientAuth' or 'PluginAuth'")

    def issue_plugin_token(self, owner_key: str, database_key: str) -> dict[str, Any]:
        """Mint the ``PluginAuth`` data for a plugin acting for this owner."""
        owner = check_owner_key(owner_key)
        if not _HEX64.fullmatch(database_key):
            raise ValueError("database_key must be 64 hexadecimal characters")
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (owner, database_key.lower())
        return {"token": token}

    def revoke_plugin_token(self, data: dict[str, Any]) -> None:
        with self._lock:
            self._tokens.pop(str(data.get("token")), None)

    # -- stores -----------------------------------------------------------------

    def open_store(self, owner: str, database_key: str) -> Store | None:
        """The owner's store if it is open already (cheap, non-blocking), else None.

        A 401 if it is open and ``database_key`` is not its key.
        """
        entry = self._stores.get(owner)
        if entry is None:
            return None
        if not hmac.compare_digest(entry[1], self._digest(database_key)):
            raise unauthorized("wrong database key for this owner")
        return entry[0]

    def store(self, owner: str, database_key: str, *, create: bool = False) -> Store:
        """The owner's open store, if ``database_key`` is its key (blocking).

        ``create``: make the store if the owner has none (only when the Pod
        accepts any owner; otherwise unknown owners get a 403).
        """
        digest = self._digest(database_key)
        with self._lock:
            if self._closed:
                raise shutting_down()
            entry = self._stores.get(owner)
            opening = self._opening.setdefault(owner, threading.Lock())
        if entry is None:
            with opening:
                with self._lock:
                    entry = self._stores.get(owner)
                if entry is None:
                    entry = (self._open(owner, database_key, create=create), digest)
                    with self._lock:
                        self._stores[owner] = entry
                    return entry[0]
        store, known = entry
        if not hmac.compare_digest(known, digest):
            raise unauthorized("wrong database key for this owner")
        return store

    def _open(self, owner: str, database_key: str, *, create: bool) -> Store:
        owner_dir = self.data_dir / owner
        if not database_exists(owner_dir):
            if not (create and self.accept_any_owner):
                raise PodHTTPError(403, "unknown owner")
            create_database(owner_dir, database_key)
        try:
            return Store.open(owner_dir, database_key)
        except WrongKey:
            raise unauthorized("wrong database key for this owner") from None

    def close(self) -> None:
        """Close every open store; later requests get a 503."""
        with self._lock:
            self._closed = True
            stores = [store for store, _ in self._stores.values()]
            self._stores.clear()
            self._tokens.clear()
        for store in stores:
            store.close()
