"""State of one write transaction: its timestamp, edge counter and schema changes."""

from __future__ import annotations

import time
from typing import Any

from ._schema import Schema

__all__ = ["Transaction", "now_ms"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Transaction:
    """What a write transaction knows besides its connection.

    ``schema`` is the committed schema, which items are checked against;
    declarations made in the transaction go to ``pending`` and replace the
    committed schema only when the transaction commits.
    """

    def __init__(self, conn: Any, schema: Schema, last_ts: int, edge_seq: int) -> None:
        self.conn = conn
        self.schema = schema
        self.pending: Schema | None = None
        self.now = now_ms()
        self._last_ts = last_ts
        self.stamp: int | None = None
        self.learned: dict[str, int] = {}
        """Item id -> rid pairs to remember once the transaction commits."""
        self.edge_seq = edge_seq
        """The last edge creation number handed out (committed ones, then this
        transaction's)."""
        self.edge_names: dict[str, int] = {}
        """Edge names numbered in this transaction (known to all once it commits)."""

    def ts(self) -> int:
        """This transaction's ``dateServerModified``: ``max(now, last + 1)``, allocated once."""
        if self.stamp is None:
            self.stamp = max(self.now, self._last_ts + 1)
        return self.stamp

    def edge_seqs(self, count: int) -> int:
        """Allocate ``count`` edge creation numbers; the first of them."""
        first = self.edge_seq + 1
        self.edge_seq += count
        return first

    def declare(self, item_type: str, prop: str, value_type: str) -> None:
        """Declare a property (a no-op if declared, a 400 if it conflicts)."""
        if self.pending is None:
            self.pending = self.schema.copy()
        if self.pending.declare(item_type, prop, value_type):
            self.conn.execute(
                "INSERT INTO schema (item_type, property, value_type) VALUES (?, ?, ?)",
                (item_type, prop, value_type),
            )
