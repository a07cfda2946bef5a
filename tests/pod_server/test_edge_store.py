"""How edges are stored: creation order, ids, name numbers, restarts, and the
migration of format-1 stores (edges with a rowid, a random id and a text name)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlcipher3

from importer.pod.local import running_pod
from importer.pod.local._db import DB_NAME, FORMAT_VERSION, connect, create_database
from importer.pod.local._errors import PodHTTPError
from importer.pod.local._store import Store

from .conftest import PodCaller

_EDGE_ID = re.compile(r"[0-9a-f]{32}")


@contextmanager
def _pod(data_dir: Path, owner: str, key: str) -> Iterator[PodCaller]:
    """A server on ``data_dir`` (started afresh: empty caches) and the owner's caller."""
    with running_pod(data_dir) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield PodCaller(http, owner, key)


def _people(pod: PodCaller, *ids: str) -> None:
    items = [{"type": "Person", "id": i, "displayName": i.upper()} for i in ids]
    pod.ok("bulk", {"createItems": items})


def _edge(source: str, target: str, name: str) -> dict[str, str]:
    return {"_source": source, "_target": target, "_name": name}


def _out(pod: PodCaller, item: str) -> list[tuple[str, str]]:
    edges = pod.ok("get_edges", {"item": item, "direction": "Outgoing", "expandItems": False})
    return [(e["name"], e["item"]["id"]) for e in edges]


def _in(pod: PodCaller, item: str) -> list[tuple[str, str]]:
    edges = pod.ok("get_edges", {"item": item, "direction": "Incoming", "expandItems": False})
    return [(e["name"], e["item"]["id"]) for e in edges]


def _searched_edges(pod: PodCaller, item: str, key: str) -> list[tuple[str, str]]:
    (found,) = pod.search({"id": item, key: {}})
    return [(e["_edge"], e["_item"]["id"]) for e in found[key]]


def test_listings_follow_creation_order_not_key_order(pod: PodCaller) -> None:
    _people(pod, "hub", "z", "a", "m")
    # Created z, a, m: a listing ordered by name or row id would say a, m, z.
    for target, name in (("z", "likes"), ("a", "follows"), ("m", "likes")):
        pod.ok("create_edge", _edge("hub", target, name))
        pod.ok("create_edge", _edge(target, "hub", name))
    expected = [("likes", "z"), ("follows", "a"), ("likes", "m")]
    assert _out(pod, "hub") == expected
    assert _in(pod, "hub") == expected
    assert _searched_edges(pod, "hub", "[[edges]]") == expected
    assert _searched_edges(pod, "hub", "~[[edges]]") == expected
    # Deleted and created again: now the newest.
    pod.ok("delete_edge_by_source_target", _edge("hub", "z", "likes"))
    pod.ok("create_edge", _edge("hub", "z", "likes"))
    assert _out(pod, "hub") == [("follows", "a"), ("likes", "m"), ("likes", "z")]


def test_edge_ids_are_distinct_and_never_reused(pod: PodCaller) -> None:
    _people(pod, "a", "b", "c")
    first = pod.ok("bulk", {"createEdges": [_edge("a", "b", "x"), _edge("a", "c", "x")]})
    again = pod.ok("create_edge", _edge("b", "c", "x"))
    pod.ok("delete_edge_by_source_target", _edge("b", "c", "x"))
    recreated = pod.ok("create_edge", _edge("b", "c", "x"))
    ids = [*first["createEdges"], again, recreated]
    assert all(_EDGE_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == 4
    other = PodCaller(pod.http)
    _people(other, "a", "b")
    assert other.ok("create_edge", _edge("a", "b", "x")) not in ids


def test_duplicates_name_the_offending_edge(pod: PodCaller) -> None:
    _people(pod, "a", "b", "c")
    pod.ok("create_edge", _edge("a", "b", "knows"))
    edges = [_edge("a", "c", "knows"), _edge("b", "c", "knows"), _edge("a", "b", "knows")]
    response = pod.call("bulk", {"createEdges": edges})
    assert response.status_code == 409
    body = response.json()
    assert (body["section"], body["index"]) == ("createEdges", 2)
    assert "already exists" in body["error"] and "'knows'" in body["error"]

    twice = [_edge("b", "a", "knows"), _edge("c", "a", "knows"), _edge("b", "a", "knows")]
    response = pod.call("bulk", {"createEdges": twice})
    assert response.status_code == 409
    body = response.json()
    assert body["index"] == 2
    assert "appears twice in this request" in body["error"]
    # Nothing of either request is kept.
    assert _out(pod, "a") == [("knows", "b")]
    assert _in(pod, "a") == []


def test_edges_between_stored_items_and_items_of_the_same_bulk(pod: PodCaller) -> None:
    _people(pod, "old-a", "old-b", "old-z")
    pod.ok("create_edge", _edge("old-z", "old-z", "knows"))  # a name the store has
    # Ends the store knows and ends created by this very bulk, in every mix.
    items = [{"type": "Person", "id": i} for i in ("new-c", "new-d")]
    edges = [
        _edge("old-a", "new-c", "knows"),
        _edge("new-c", "old-b", "knows"),
        _edge("new-d", "new-d", "knows"),
        _edge("old-b", "old-a", "knows"),
    ]
    result = pod.ok("bulk", {"createItems": items, "createEdges": edges})
    assert len(result["createEdges"]) == 4
    # And again with a name new to the store among them.
    items = [{"type": "Person", "id": "new-e"}]
    edges = [_edge("new-e", "old-a", "admires"), _edge("new-d", "new-e", "knows")]
    pod.ok("bulk", {"createItems": items, "createEdges": edges})
    assert _out(pod, "old-a") == [("knows", "new-c")]
    assert _out(pod, "new-c") == [("knows", "old-b")]
    assert _out(pod, "new-d") == [("knows", "new-d"), ("knows", "new-e")]
    assert _in(pod, "old-a") == [("knows", "old-b"), ("admires", "new-e")]


def test_malformed_edge_wins_over_a_missing_item(pod: PodCaller) -> None:
    """The whole request is checked before ends are looked up: a 400 anywhere first."""
    _people(pod, "a", "b")
    pod.ok("create_edge", _edge("a", "b", "x"))  # "x" and both ends are known now
    bad_values: list[Any] = [
        ["not", "an", "object"],
        {"_source": ["a"], "_target": "b", "_name": "x"},
        {"_source": "a", "_target": "b", "_name": ["x"]},
        {"_source": "a", "_target": "b", "_name": "bad name"},
        {"_source": "a", "_target": "", "_name": "y"},
        {"_source": "a", "_name": "y"},
    ]
    for bad in bad_values:
        edges = [_edge("a", "b", "y"), _edge("a", "ghost", "y"), _edge("b", "a", "y"), bad]
        response = pod.call("bulk", {"createEdges": edges})
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["index"] == 3
    response = pod.call("bulk", {"createEdges": [_edge("a", "b", "y"), _edge("a", "ghost", "y")]})
    assert response.status_code == 404
    assert response.json()["index"] == 1
    assert "target 'ghost'" in response.json()["error"]
    assert _out(pod, "a") == [("x", "b")]


def test_edges_to_items_of_the_same_bulk_and_new_names(pod: PodCaller) -> None:
    _people(pod, "old")
    result = pod.ok(
        "bulk",
        {
            "createItems": [{"type": "Person", "id": f"p{n}"} for n in range(3)],
            "createEdges": [
                _edge("old", "p0", "first"),
                _edge("p0", "p1", "second"),
                _edge("p1", "old", "first"),
                _edge("p2", "p0", "third"),
            ],
        },
    )
    assert len(result["createEdges"]) == 4
    assert _out(pod, "old") == [("first", "p0")]
    assert _in(pod, "p0") == [("first", "old"), ("third", "p2")]


def test_a_name_from_a_rolled_back_bulk_is_not_remembered(pod: PodCaller) -> None:
    _people(pod, "a", "b")
    failed = pod.call(
        "bulk", {"createEdges": [_edge("a", "b", "brandNew"), _edge("a", "ghost", "brandNew")]}
    )
    assert failed.status_code == 404
    # The name's number was rolled back with the bulk; using it now must work.
    pod.ok("bulk", {"createEdges": [_edge("a", "b", "brandNew"), _edge("b", "a", "other")]})
    assert _out(pod, "a") == [("brandNew", "b")]
    assert _in(pod, "a") == [("other", "b")]
    assert pod.fails("delete_edge_by_source_target", _edge("a", "b", "neverUsed"), 404)


def test_restart_keeps_order_names_and_ids_and_resolves_uncached_ends(tmp_path: Path) -> None:
    owner, key = secrets.token_hex(32), secrets.token_hex(32)
    count = 1200  # more than one lookup chunk of uncached ids
    with _pod(tmp_path, owner, key) as pod:
        _people(pod, *(f"n{i}" for i in range(count)))
        before = pod.ok(
            "bulk", {"createEdges": [_edge("n0", f"n{i}", "early") for i in range(1, 4)]}
        )["createEdges"]
    with _pod(tmp_path, owner, key) as pod:  # empty caches: every end is looked up
        after = pod.ok(
            "bulk",
            {
                "createEdges": [_edge(f"n{i}", f"n{i - 1}", "chain") for i in range(1, count)]
                + [_edge("n0", "n5", "late"), _edge("n0", "n4", "early")]
            },
        )["createEdges"]
        assert _out(pod, "n0") == [
            ("early", "n1"),
            ("early", "n2"),
            ("early", "n3"),
            ("late", "n5"),
            ("early", "n4"),
        ]
        assert _in(pod, "n0") == [("chain", "n1")]
        assert _out(pod, f"n{count - 1}") == [("chain", f"n{count - 2}")]
        pod.fails("create_edge", _edge("n0", "n1", "early"), 409)
    assert len(set(before + after)) == len(before) + len(after)


# -- migration of format-1 stores ----------------------------------------------------

_V1_EDGES = """
CREATE TABLE edges (
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    source INTEGER NOT NULL,
    name TEXT NOT NULL,
    target INTEGER NOT NULL,
    UNIQUE (source, name, target)
);
CREATE INDEX edges_target ON edges (target, name);
"""


def _v1_store(data_dir: Path, owner: str, key: str, edges: list[tuple[str, str, str]]) -> None:
    """A format-1 store holding people ``a``..``e`` and ``edges`` in that creation order.

    Format 1 differs from the current one only in its edge tables, ``meta``
    rows and version: a current store is turned back into one.
    """
    owner_dir = data_dir / owner
    create_database(owner_dir, key)
    store = Store.open(owner_dir, key)
    try:
        store.bulk({"createItems": [{"type": "Person", "id": i} for i in "abcde"]})
    finally:
        store.close()
    conn = connect(owner_dir / DB_NAME, key)
    try:
        rids = dict(conn.execute("SELECT id, rid FROM items"))
        conn.executescript(
            "BEGIN; DROP TABLE edges; DROP TABLE edge_names;"
            + _V1_EDGES
            + "DELETE FROM meta WHERE key != 'last_ts'; PRAGMA user_version = 1; COMMIT;"
        )
        # Row ids out of key order, with a gap (a deleted edge), as in a used store.
        conn.executemany(
            "INSERT INTO edges (rid, id, source, name, target) VALUES (?, ?, ?, ?, ?)",
            [
                (10 * number, secrets.token_hex(16), rids[source], name, rids[target])
                for number, (source, target, name) in enumerate(edges, start=1)
            ],
        )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _raw(data_dir: Path, owner: str, key: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read without migrating (plain SQLCipher)."""
    conn = sqlcipher3.connect(str(data_dir / owner / DB_NAME))
    try:
        conn.execute(f"PRAGMA key = \"x'{key}'\"")
        rows: list[tuple[Any, ...]] = conn.execute(sql).fetchall()
        return rows
    finally:
        conn.close()


_OLD_EDGES = [
    ("a", "e", "knows"),
    ("a", "b", "likes"),
    ("c", "a", "knows"),
    ("a", "c", "knows"),
    ("d", "a", "likes"),
]


def test_a_format_1_store_is_migrated_on_open(tmp_path: Path) -> None:
    owner, key = secrets.token_hex(32), secrets.token_hex(32)
    _v1_store(tmp_path, owner, key, _OLD_EDGES)
    assert _raw(tmp_path, owner, key, "PRAGMA user_version") == [(1,)]
    with _pod(tmp_path, owner, key) as pod:
        assert _out(pod, "a") == [("knows", "e"), ("likes", "b"), ("knows", "c")]
        assert _in(pod, "a") == [("knows", "c"), ("likes", "d")]
        assert _searched_edges(pod, "a", "[[edges]]") == _out(pod, "a")
        # Old edges still count as existing; new ones come after them.
        pod.fails("create_edge", _edge("a", "b", "likes"), 409)
        new_id = pod.ok("create_edge", _edge("a", "d", "likes"))
        assert _EDGE_ID.fullmatch(new_id)
        assert _out(pod, "a")[-1] == ("likes", "d")
        assert pod.ok("delete_edge_by_source_target", _edge("a", "e", "knows")) == {}
        assert _out(pod, "a") == [("likes", "b"), ("knows", "c"), ("likes", "d")]
    assert _raw(tmp_path, owner, key, "PRAGMA user_version") == [(FORMAT_VERSION,)]
    tables = dict(_raw(tmp_path, owner, key, "SELECT name, sql FROM sqlite_master"))
    assert "WITHOUT ROWID" in tables["edges"] and "edges_v1" not in tables
    assert sorted(_raw(tmp_path, owner, key, "SELECT name FROM edge_names")) == [
        ("knows",),
        ("likes",),
    ]
    # The counter continues after the largest old row id (50), never below it.
    meta = dict(_raw(tmp_path, owner, key, "SELECT key, value FROM meta"))
    assert meta["edge_seq"] == 51
    # Opening a migrated store again changes nothing.
    with _pod(tmp_path, owner, key) as pod:
        assert _out(pod, "a") == [("likes", "b"), ("knows", "c"), ("likes", "d")]


def test_a_failed_migration_leaves_the_format_1_store_intact(tmp_path: Path) -> None:
    owner, key = secrets.token_hex(32), secrets.token_hex(32)
    _v1_store(tmp_path, owner, key, _OLD_EDGES)
    # A stray row makes the migration's last step fail, after edges were rebuilt.
    conn = sqlcipher3.connect(str(tmp_path / owner / DB_NAME))
    conn.execute(f"PRAGMA key = \"x'{key}'\"")
    conn.execute("INSERT INTO meta (key, value) VALUES ('edge_id_prefix', 7)")
    conn.commit()
    conn.close()
    before = _raw(tmp_path, owner, key, "SELECT rid, id, source, name, target FROM edges")
    with pytest.raises(sqlcipher3.IntegrityError):
        Store.open(tmp_path / owner, key)
    assert _raw(tmp_path, owner, key, "PRAGMA user_version") == [(1,)]
    assert _raw(tmp_path, owner, key, "SELECT rid, id, source, name, target FROM edges") == before
    names = {row[0] for row in _raw(tmp_path, owner, key, "SELECT name FROM sqlite_master")}
    assert "edges_v1" not in names and "edge_names" not in names
    # Once the cause is gone, the next open migrates.
    conn = sqlcipher3.connect(str(tmp_path / owner / DB_NAME))
    conn.execute(f"PRAGMA key = \"x'{key}'\"")
    conn.execute("DELETE FROM meta WHERE key = 'edge_id_prefix'")
    conn.commit()
    conn.close()
    with _pod(tmp_path, owner, key) as pod:
        assert _in(pod, "a") == [("knows", "c"), ("likes", "d")]


def test_a_store_of_a_newer_format_is_refused_untouched(tmp_path: Path) -> None:
    owner, key = secrets.token_hex(32), secrets.token_hex(32)
    create_database(tmp_path / owner, key)
    conn = sqlcipher3.connect(str(tmp_path / owner / DB_NAME))
    conn.execute(f"PRAGMA key = \"x'{key}'\"")
    conn.execute(f"PRAGMA user_version = {FORMAT_VERSION + 1}")
    conn.close()
    with pytest.raises(PodHTTPError) as raised:
        Store.open(tmp_path / owner, key)
    assert raised.value.status == 500
    assert f"unknown store format {FORMAT_VERSION + 1}" in raised.value.message
    assert key not in raised.value.message
    assert _raw(tmp_path, owner, key, "PRAGMA user_version") == [(FORMAT_VERSION + 1,)]
