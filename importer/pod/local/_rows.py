"""Many rows into one table with a few multi-row INSERTs instead of one per row.

``executemany`` steps its statement once per row, and every step lets go of
the interpreter lock and takes it back: about a microsecond a row when the
store is alone, and a wait for the lock at every row while the event loop or
a connector's thread is busy in Python (in-process, they always are).  One
``INSERT ... VALUES (...), (...), ...`` per chunk binds the chunk's rows at
once and steps once.  Chunks have five sizes (256, 64, 16, 4 and 1 rows): a
bulk of 1000 rows takes ten statements, and a table has five statement
shapes, each prepared once and then served from the connection's statement
cache (a prepared statement's memory grows with its rows: five small shapes
keep the cache to a few hundred KiB).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import chain
from typing import Any

__all__ = ["CHUNK_ROWS", "insert_rows"]

CHUNK_ROWS = (256, 64, 16, 4, 1)
"""Rows per statement, largest first (256 rows of 8 values: well under
SQLite's limit of 32766 bound values)."""


@lru_cache(maxsize=32)
def _statement(insert: str, width: int, count: int) -> str:
    row = "(" + ",".join("?" * width) + ")"
    return f"{insert} VALUES {','.join([row] * count)}"


def insert_rows(conn: Any, insert: str, width: int, rows: Sequence[Sequence[Any]]) -> None:
    """Run ``insert`` (``INSERT INTO t (c1, ..., cN)``, no VALUES) for every row.

    Every row must hold exactly ``width`` values.  Rows go in in order, as
    many of the largest chunks as fit, then the smaller ones; an error (a
    constraint) stops at the failing chunk, as ``executemany`` stops at the
    failing row, and leaves the rollback to the caller's transaction.
    """
    start, total = 0, len(rows)
    for count in CHUNK_ROWS:
        statement = _statement(insert, width, count)
        while total - start >= count:
            conn.execute(statement, tuple(chain.from_iterable(rows[start : start + count])))
            start += count
