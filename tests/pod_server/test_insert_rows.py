"""Rows go in with a few multi-row INSERTs: every row, in order, few statements,
and a bulk's conflict is still named and still leaves nothing behind."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from importer.pod.local._db import DB_NAME, connect, create_database
from importer.pod.local._errors import PodHTTPError
from importer.pod.local._rows import CHUNK_ROWS, insert_rows
from importer.pod.local._store import Store


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[Any]:
    key = secrets.token_hex(32)
    create_database(tmp_path / "owner", key)
    connection = connect(tmp_path / "owner" / DB_NAME, key)
    connection.execute("CREATE TABLE t (a, b, c, d)")
    yield connection
    connection.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A new owner's store holding 1000 people, ``person-0`` to ``person-999``."""
    key = secrets.token_hex(32)
    create_database(tmp_path / "store", key)
    opened = Store.open(tmp_path / "store", key)
    opened.bulk({"createItems": [{"type": "Person", "id": i} for i in _PEOPLE]})
    yield opened
    opened.close()


_PEOPLE = [f"person-{n}" for n in range(1000)]


def _inserts(conn: Any) -> list[str]:
    """Collects every INSERT the connection runs from now on."""
    seen: list[str] = []
    conn.set_trace_callback(lambda sql: seen.append(sql) if sql.startswith("INSERT") else None)
    return seen


@pytest.mark.parametrize(
    ("count", "statements"), [(0, 0), (1, 1), (7, 4), (21, 3), (1000, 10), (2049, 9)]
)
def test_every_row_lands_in_order_with_one_statement_per_chunk(
    conn: Any, count: int, statements: int
) -> None:
    rows = [(n, f"text {n} 'quoted' é", None if n % 3 else n / 7, b"\x00raw") for n in range(count)]
    seen = _inserts(conn)
    insert_rows(conn, "INSERT INTO t (a, b, c, d)", 4, rows)
    assert len(seen) == statements
    assert conn.execute("SELECT a, b, c, d FROM t ORDER BY rowid").fetchall() == rows


def test_chunks_are_the_largest_that_fit(conn: Any) -> None:
    conn.execute("CREATE TABLE wide (a, b, c, d, e, f, g, h)")
    rows = [tuple(range(n, n + 8)) for n in range(2 * 256 + 64 + 3 * 16 + 5)]
    seen = _inserts(conn)
    insert_rows(conn, "INSERT INTO wide (a, b, c, d, e, f, g, h)", 8, rows)
    # The trace shows each statement with its values in place: count its rows.
    per_statement = [sql.count("),(") + 1 for sql in seen]
    assert per_statement == [256, 256, 64, 16, 16, 16, 4, 1]
    assert max(CHUNK_ROWS) * 8 <= 32766  # SQLite's limit on bound values
    assert conn.execute("SELECT * FROM wide ORDER BY rowid").fetchall() == rows


def test_a_bulk_stores_items_and_edges_with_few_statements(store: Store) -> None:
    ids = [f"other-{n}" for n in range(1000)]
    seen = _inserts(store.conn)
    store.bulk({"createItems": [{"type": "Person", "id": i, "displayName": i} for i in ids]})
    edges = [
        {"_source": ids[n], "_target": _PEOPLE[(n * 7 + 1) % 1000], "_name": "knows"}
        for n in range(1000)
    ]
    store.bulk({"createEdges": edges})
    # 1000 = 3 x 256 + 3 x 64 + 2 x 16 + 2 x 4: ten statements each, not 1000.
    assert sum(sql.startswith("INSERT INTO items") for sql in seen) == 10
    assert sum(sql.startswith("INSERT INTO edges") for sql in seen) == 10
    assert store.conn.execute("SELECT count(*) FROM edges").fetchone() == (1000,)
    found = store.get_edges({"item": ids[5], "direction": "Outgoing", "expandItems": False})
    assert [e["item"]["id"] for e in found] == [_PEOPLE[36]]


def test_a_duplicate_in_a_later_chunk_is_named_and_nothing_is_kept(store: Store) -> None:
    edges = [
        {"_source": _PEOPLE[n], "_target": _PEOPLE[n - 1], "_name": "after"} for n in range(1000)
    ]
    # The chunks are rows 0-255, 256-511, 512-767, 768-831, 832-895,
    # 896-959, ...: five chunks are in before the one holding row 900 fails.
    edges[900] = dict(edges[3])
    with pytest.raises(PodHTTPError) as caught:
        store.bulk({"createEdges": edges})
    error = caught.value
    assert (error.status, error.section, error.index) == (409, "createEdges", 900)
    assert "appears twice in this request" in error.message
    assert store.conn.execute("SELECT count(*) FROM edges").fetchone() == (0,)
