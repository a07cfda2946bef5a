"""Opening and creating one owner's SQLCipher database.

The database key is passed as a raw 256-bit key (``x'<hex>'``), so SQLCipher
skips its PBKDF2 step: the key is already random, and opening stays cheap.
Settings: WAL journal, ``synchronous=FULL`` (every commit is fsynced: a commit
the client saw survives even a power loss; a killed process never leaves a
half-applied transaction in either mode), temporary tables in memory (so no
plaintext temp files), no shared cache.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlcipher3

__all__ = ["DB_NAME", "WrongKey", "connect", "create_database", "database_exists"]

DB_NAME = "pod.db"
_FORMAT_VERSION = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")

# Core columns hold what every item has; all other properties are one JSON
# object per item (``props``), so a bulk insert is one row per item.
_DDL = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE items (
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    dateCreated INTEGER NOT NULL,
    dateModified INTEGER NOT NULL,
    dateServerModified INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    props TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX items_type_dsm ON items (type, dateServerModified);
CREATE INDEX items_dsm ON items (dateServerModified);
-- Edge ids are random 128-bit values, never looked up: no index on them.
CREATE TABLE edges (
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    source INTEGER NOT NULL,
    name TEXT NOT NULL,
    target INTEGER NOT NULL,
    UNIQUE (source, name, target)
);
CREATE INDEX edges_target ON edges (target, name);
CREATE TABLE schema (
    item_type TEXT NOT NULL,
    property TEXT NOT NULL,
    value_type TEXT NOT NULL,
    PRIMARY KEY (item_type, property)
) WITHOUT ROWID;
CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    keystr TEXT NOT NULL,
    nonce TEXT NOT NULL,
    size INTEGER NOT NULL
) WITHOUT ROWID;
"""


INDEXED_PROPERTIES = ("externalId", "sha256", "handle")
"""Properties with a (partial) expression index.  Queries must spell the
expression exactly as here, ``json_extract(props, '$.<name>')``, to use it."""

_DDL += "".join(
    f"CREATE INDEX items_{name} ON items (json_extract(props, '$.{name}'))"
    f" WHERE json_extract(props, '$.{name}') IS NOT NULL;"
    for name in INDEXED_PROPERTIES
)


class WrongKey(Exception):
    """The key does not open the database."""


def _configure(conn: Any, database_key: str) -> None:
    if not _HEX64.fullmatch(database_key):
        raise WrongKey
    conn.execute(f"PRAGMA key = \"x'{database_key}'\"")
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError:
        raise WrongKey from None
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA cache_size = -8000")


def connect(path: Path, database_key: str) -> Any:
    """An open, keyed connection to the existing database at ``path``."""
    # mode=rw: never create a file here, whatever the key.
    uri = "file:" + quote(str(path.resolve())) + "?mode=rw"
    conn = sqlcipher3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        _configure(conn, database_key)
    except BaseException:
        conn.close()
        raise
    return conn


def database_exists(owner_dir: Path) -> bool:
    return (owner_dir / DB_NAME).is_file()


def create_database(owner_dir: Path, database_key: str) -> None:
    """Create an empty, keyed store at ``owner_dir`` atomically.

    It is built in a sibling temporary directory and renamed into place, so a
    crash never leaves a half-initialised store.  If another creator won the
    race, its store is kept and this one dropped.
    """
    parent = owner_dir.parent
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = parent / f".new-{owner_dir.name}-{secrets.token_hex(8)}"
    tmp.mkdir(mode=0o700)
    try:
        # Owner-only permissions; SQLite gives its -wal/-shm files the same.
        os.close(os.open(tmp / DB_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        conn = sqlcipher3.connect(str(tmp / DB_NAME), isolation_level=None)
        try:
            _configure(conn, database_key)
            conn.executescript(
                "BEGIN IMMEDIATE;"
                + _DDL
                + "INSERT INTO meta (key, value) VALUES ('last_ts', 0);"
                + f"PRAGMA user_version = {_FORMAT_VERSION};"
                + "COMMIT;"
            )
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        (tmp / "files").mkdir(mode=0o700)
        try:
            os.rename(tmp, owner_dir)
        except OSError:
            if not database_exists(owner_dir):
                raise
        else:
            fd = os.open(parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
