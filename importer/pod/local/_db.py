"""Opening and creating one owner's SQLCipher database.

The database key is passed as a raw 256-bit key (``x'<hex>'``), so SQLCipher
skips its PBKDF2 step: the key is already random, and opening stays cheap.
Settings: WAL journal, ``synchronous=FULL`` (every commit is fsynced: a commit
the client saw survives even a power loss; a killed process never leaves a
half-applied transaction in either mode), temporary tables in memory (so no
plaintext temp files), no shared cache.

The layout has a format number (``PRAGMA user_version``); :func:`connect`
brings an older database up to date in one transaction, so an interrupted
migration leaves the old layout intact.
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

__all__ = [
    "DB_NAME",
    "FORMAT_VERSION",
    "UnknownFormat",
    "WrongKey",
    "connect",
    "create_database",
    "database_exists",
]

DB_NAME = "pod.db"
FORMAT_VERSION = 2
"""1: edges with a rowid, a stored random id and their name as text;
2: edges WITHOUT ROWID, names numbered in ``edge_names``, ids derived from a
per-owner creation counter (``meta``)."""
_HEX64 = re.compile(r"[0-9a-f]{64}")

# Edges are keyed by their ends (``source``/``target`` are item rids) and the
# number of their name: no rowid and no stored id, small integer-only rows, so
# an insert writes little to the table and its one index.  ``seq`` is the
# edge's place in creation order, from the ``edge_seq`` counter in ``meta``;
# the edge's id is derived from it (see ``Store.edge_ids``).
_EDGES_DDL = """
CREATE TABLE edge_names (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE edges (
    source INTEGER NOT NULL,
    name_id INTEGER NOT NULL,
    target INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (source, name_id, target)
) WITHOUT ROWID;
CREATE INDEX edges_target ON edges (target, name_id);
"""

# Core columns hold what every item has; all other properties are one JSON
# object per item (``props``), so a bulk insert is one row per item.
_DDL = (
    """
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
    + _EDGES_DDL
)


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


class UnknownFormat(Exception):
    """The database has a layout this code does not know (a newer Pod wrote it)."""


def _new_meta(conn: Any, edge_seq: int) -> None:
    """The ``meta`` rows of format 2 besides ``last_ts``.

    ``edge_id_prefix``: 63 random bits that start every edge id of this
    store, so ids look alike across stores without being shared.
    """
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("edge_seq", edge_seq), ("edge_id_prefix", secrets.randbits(63))],
    )


def _v1_to_v2(conn: Any) -> None:
    """Edges without rowid or stored id, names numbered; creation order kept
    as ``seq`` (the old rid).

    The old random edge ids are dropped: no endpoint returns or takes an
    edge's id once it is created, so no client can have depended on them.
    """
    conn.execute("DROP INDEX edges_target")
    conn.execute("ALTER TABLE edges RENAME TO edges_v1")
    for statement in _EDGES_DDL.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("INSERT INTO edge_names (name) SELECT DISTINCT name FROM edges_v1 ORDER BY name")
    # By source (the old unique index's order, no sort): mostly appending.
    conn.execute(
        "INSERT INTO edges (source, name_id, target, seq)"
        " SELECT e.source, n.id, e.target, e.rid FROM edges_v1 e"
        " JOIN edge_names n ON n.name = e.name ORDER BY e.source"
    )
    conn.execute("DROP TABLE edges_v1")
    (last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM edges").fetchone()
    _new_meta(conn, last)


_MIGRATIONS = {1: _v1_to_v2}
"""Format n -> the step that turns it into format n + 1."""


def _migrate(conn: Any) -> None:
    """Bring the database to :data:`FORMAT_VERSION`, all steps in one transaction."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version == FORMAT_VERSION:
        return
    if version not in _MIGRATIONS:
        raise UnknownFormat(f"unknown store format {version} (this Pod knows {FORMAT_VERSION})")
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have migrated it.
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        while version != FORMAT_VERSION:
            if version not in _MIGRATIONS:
                raise UnknownFormat(f"unknown store format {version}")
            _MIGRATIONS[version](conn)
            version += 1
        conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _configure(conn: Any, database_key: str) -> None:
    if not _HEX64.fullmatch(database_key):
        raise WrongKey
    # SQLCipher writes its own lines to stderr when a key fails ("hmac check
    # failed for pgno=1"); the caller answers a wrong key with a 401, and the
    # command line says so in one line.
    conn.execute("PRAGMA cipher_log_level = NONE")
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
    """An open, keyed connection to the existing database at ``path``, migrated
    to the current format (:class:`UnknownFormat` if it is newer)."""
    # mode=rw: never create a file here, whatever the key.
    uri = "file:" + quote(str(path.resolve())) + "?mode=rw"
    conn = sqlcipher3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        _configure(conn, database_key)
        _migrate(conn)
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
                + f"PRAGMA user_version = {FORMAT_VERSION};"
            )
            _new_meta(conn, 0)
            conn.execute("COMMIT")
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
