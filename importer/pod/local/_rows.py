"""Many rows into one table with a few multi-row INSERTs instead of one per row.

``executemany`` steps its statement once per row, and every step lets go of
the interpreter lock and takes it back: about a microsecond a row when the
store is alone, and a wait for the lock at every row while the event loop or
a connector's thread is busy in Python (in-process, they always are).  One
``INSERT ... VALUES (...), (...), ...`` per power-of-two chunk binds the
chunk's rows at once and steps once.  A table sees at most a dozen statement
shapes; each is prepared once and then served from the connection's
statement cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import chain
from typing import Any

__all__ = ["insert_rows"]

MAX_PARAMETERS = 8192
"""Values bound to one statement: well under SQLite's limit (32766)."""


@lru_cache(maxsize=64)
def _statement(insert: str, width: int, count: int) -> str:
    row = "(" + ",".join("?" * width) + ")"
    return f"{insert} VALUES {','.join([row] * count)}"


def insert_rows(conn: Any, insert: str, width: int, rows: Sequence[Sequence[Any]]) -> None:
    """Run ``insert`` (``INSERT INTO t (c1, ..., cN)``, no VALUES) for every row.

    Every row must hold exactly ``width`` values.  Rows go in in order, in
    chunks of a power of two rows (the largest that fits, at most
    :data:`MAX_PARAMETERS` values); an error (a constraint) stops at the
    failing chunk, as ``executemany`` stops at the failing row, and leaves the
    rollback to the caller's transaction.
    """
    largest = 1 << ((MAX_PARAMETERS // width).bit_length() - 1)
    start, total = 0, len(rows)
    while start < total:
        count = min(largest, 1 << ((total - start).bit_length() - 1))
        values = tuple(chain.from_iterable(rows[start : start + count]))
        conn.execute(_statement(insert, width, count), values)
        start += count
