"""One owner's store: items, edges, schema and file keys in a SQLCipher database.

Every method is synchronous and runs in a worker thread; one lock per store
serialises them (they share one connection).  Each write request is one
``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction, so a failure anywhere in a
bulk, or a killed process, leaves nothing of it behind.

``dateServerModified`` rule: every write transaction that changes items takes
``ts = max(now_ms, last_ts + 1)`` and stamps all the items it writes with it,
so timestamps strictly increase from one transaction to the next (even if the
clock steps back: ``last_ts`` is kept in the database) and the items of one
transaction share theirs.

Edges are numbered in creation order by a counter kept in ``meta``
(``edge_seq``); listings follow that order, and an edge's id is the store's
``edge_id_prefix`` and its number, both as 16 hex digits.  Edge names are
stored as numbers (``edge_names``), all of them kept in memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson
import sqlcipher3

from ._db import DB_NAME, UnknownFormat, connect
from ._errors import PodHTTPError, bad_request, conflict, not_found, shown, shutting_down
from ._files import BlobWriter, FileStore
from ._items import check_id, dumps, prepare_new_items, undeclared
from ._rows import insert_rows
from ._schema import SCHEMA_ITEM_TYPE, Schema, builtin_declarations, check_name, check_value
from ._search import ITEM_COLUMNS, compile_search, item_from_row, run_search
from ._tx import Transaction

__all__ = ["Store"]

_log = logging.getLogger(__name__)

_CHUNK = 500
_BULK_SECTIONS = ("createItems", "updateItems", "deleteItems", "createEdges", "search")
_IGNORED_ON_UPDATE = frozenset({"id", "type", "dateCreated", "dateServerModified"})
_INSERT_ITEM = (
    "INSERT INTO items"
    " (rid, id, type, dateCreated, dateModified, dateServerModified, deleted, props)"
)
_RID_CACHE_SIZE = 1 << 17
_HEX3 = tuple(f"{n:03x}" for n in range(4096))
_INSERT_EDGE = "INSERT INTO edges (source, name_id, target, seq)"
_SOURCE, _TARGET, _NAME = itemgetter("_source"), itemgetter("_target"), itemgetter("_name")
_FILE_BY_SHA = (
    "SELECT rid, props FROM items INDEXED BY items_sha256"
    " WHERE json_extract(props, '$.sha256') = ? AND type = 'File'"
)


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise bad_request(f"{what} must be a JSON list")
    return value


def _dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be a JSON object")
    return value


def _located(error: PodHTTPError, section: str | None, index: int | None) -> PodHTTPError:
    return error if section is None else error.at(section, index)


@dataclass(slots=True)
class _Row:
    """An existing item being changed in a transaction."""

    rid: int
    type: str
    date_modified: int
    deleted: bool
    props: dict[str, Any]


@dataclass(slots=True)
class _Upload:
    """Uploaded content waiting for its row; the flags change under the store's lock."""

    sha256: str
    writer: BlobWriter
    taken: bool = False
    """A group took it: recorded, refused, or (its transaction failed) neither."""
    recorded: bool = False
    refused: PodHTTPError | None = None


class Store:
    """The open database of one owner (see the module docstring)."""

    def __init__(self, owner_dir: Path, conn: Any) -> None:
        self.conn = conn
        self.files = FileStore(owner_dir / "files")
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queued: list[_Upload] = []
        """Uploads waiting for their rows (see :meth:`store_blob`)."""
        self._closed = False
        self._rid_cache: dict[str, int] = {}
        self._name_ids: dict[str, int] = dict(conn.execute("SELECT name, id FROM edge_names"))
        """Every edge name in the store and its number."""
        self.schema = Schema.of(conn.execute("SELECT item_type, property, value_type FROM schema"))
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        (max_ts,) = conn.execute("SELECT max(dateServerModified) FROM items").fetchone()
        self.last_ts: int = max(meta["last_ts"], max_ts or 0)
        self.edge_seq: int = meta["edge_seq"]
        self._edge_id_prefix = f"{meta['edge_id_prefix']:016x}"
        self._declare_builtins()

    @classmethod
    def open(cls, owner_dir: Path, database_key: str) -> Store:
        """Open the owner's database; :class:`~._db.WrongKey` if the key is wrong."""
        try:
            conn = connect(owner_dir / DB_NAME, database_key)
        except UnknownFormat as error:
            raise PodHTTPError(500, f"this Pod can't open the store: {error}") from None
        try:
            return cls(owner_dir, conn)
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        """Checkpoint and close; later calls get a 503 (the Pod is stopping)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self.conn.close()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise shutting_down()
            yield

    def _declare_builtins(self) -> None:
        """Add central declarations missing from this store (new properties in updates)."""
        with self._write() as tx:
            for item_type, props in builtin_declarations().items():
                for prop, value_type in props.items():
                    try:
                        tx.declare(item_type, prop, value_type)
                    except PodHTTPError as error:
                        _log.warning("built-in declaration skipped: %s", error.message)

    @contextmanager
    def _write(self) -> Iterator[Transaction]:
        with self._locked(), self._transaction() as tx:
            yield tx

    @contextmanager
    def _transaction(self) -> Iterator[Transaction]:
        """One atomic write; the caller holds the store's lock."""
        self.conn.execute("BEGIN IMMEDIATE")
        tx = Transaction(self.conn, self.schema, self.last_ts, self.edge_seq)
        try:
            yield tx
            if tx.stamp is not None:
                self.conn.execute("UPDATE meta SET value = ? WHERE key = 'last_ts'", (tx.stamp,))
            if tx.edge_seq != self.edge_seq:
                self.conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'edge_seq'", (tx.edge_seq,)
                )
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        if tx.stamp is not None:
            self.last_ts = tx.stamp
        self.edge_seq = tx.edge_seq
        if tx.pending is not None:
            self.schema = tx.pending
        if tx.learned:
            self._cache_rids(tx.learned)
        self._name_ids.update(tx.edge_names)

    # -- items ------------------------------------------------------------------

    def create_item(self, item: object) -> str:
        with self._write() as tx:
            return self._create_items(tx, [item], None)[0]

    def get_item(self, item_id: object) -> list[dict[str, Any]]:
        check_id(item_id)
        with self._locked():
            row = self.conn.execute(
                f"SELECT {ITEM_COLUMNS} FROM items WHERE id = ?", (item_id,)
            ).fetchone()
        return [] if row is None else [item_from_row(row)]

    def update_item(self, item: object) -> dict[str, Any]:
        with self._write() as tx:
            self._update_items(tx, [item], None)
        return {}

    def delete_item(self, item_id: object) -> dict[str, Any]:
        with self._write() as tx:
            self._delete_items(tx, [item_id], None)
        return {}

    def search(self, flt: object) -> list[dict[str, Any]]:
        with self._locked():
            return run_search(self.conn, compile_search(self.schema, flt))

    def bulk(self, payload: object) -> dict[str, Any]:
        """Apply a bulk in one transaction: all of it or, on any error, nothing."""
        payload = _dict(payload, "a bulk payload")
        unknown = sorted(set(payload) - set(_BULK_SECTIONS))
        if unknown:
            raise bad_request(f"unknown bulk sections: {', '.join(shown(k, 40) for k in unknown)}")
        result: dict[str, Any] = {}
        with self._write() as tx:
            if "createItems" in payload:
                items = self._section(payload, "createItems")
                result["createItems"] = self._create_items(tx, items, "createItems")
            if "updateItems" in payload:
                self._update_items(tx, self._section(payload, "updateItems"), "updateItems")
            if "deleteItems" in payload:
                self._delete_items(tx, self._section(payload, "deleteItems"), "deleteItems")
            if "createEdges" in payload:
                edges = self._section(payload, "createEdges")
                result["createEdges"] = self._create_edges(tx, edges, "createEdges")
            if "search" in payload:
                results = []
                for index, flt in enumerate(self._section(payload, "search")):
                    try:
                        results.append(run_search(tx.conn, compile_search(tx.schema, flt)))
                    except PodHTTPError as error:
                        raise error.at("search", index) from None
                result["search"] = results
        return result

    @staticmethod
    def _section(payload: dict[str, Any], name: str) -> list[Any]:
        try:
            return _list(payload[name], "the section")
        except PodHTTPError as error:
            raise error.at(name) from None

    def _create_items(
        self, tx: Transaction, raw_items: list[Any], section: str | None
    ) -> list[str]:
        prepared = prepare_new_items(tx, raw_items, lambda e, i: _located(e, section, i))
        if not prepared:
            return []
        shas = {p[5]["sha256"] for p in prepared if p[1] == "File" and "sha256" in p[5]}
        keys = self._blob_keys(shas) if shas else {}
        ts = tx.ts()
        (max_rid,) = tx.conn.execute("SELECT coalesce(max(rid), 0) FROM items").fetchone()
        rows = []
        rid = max_rid
        for item_id, item_type, created, modified, deleted, props, encoded in prepared:
            if keys and item_type == "File" and props.get("sha256") in keys:
                props["keystr"], props["nonce"] = keys[props["sha256"]]
                encoded = dumps(props)
            rid += 1
            rows.append((rid, item_id, item_type, created, modified, ts, deleted, encoded))
        try:
            insert_rows(tx.conn, _INSERT_ITEM, 8, rows)
        except sqlcipher3.IntegrityError:
            raise self._duplicate_item(tx, [r[1] for r in rows], max_rid, section) from None
        tx.learned.update((r[1], r[0]) for r in rows)
        return [r[1] for r in rows]

    @staticmethod
    def _duplicate_item(
        tx: Transaction, ids: list[str], max_rid: int, section: str | None
    ) -> PodHTTPError:
        seen: set[str] = set()
        for index, item_id in enumerate(ids):
            if item_id in seen:
                error = conflict(f"id {shown(item_id)} appears twice in this request")
                return _located(error, section, index)
            seen.add(item_id)
            row = tx.conn.execute("SELECT rid FROM items WHERE id = ?", (item_id,)).fetchone()
            if row is not None and row[0] <= max_rid:
                error = conflict(f"an item with id {shown(item_id)} already exists")
                return _located(error, section, index)
        return conflict("an item of this request already exists")

    def _update_items(self, tx: Transaction, raw_updates: list[Any], section: str | None) -> None:
        ids: list[str] = []
        for index, raw in enumerate(raw_updates):
            try:
                update = _dict(raw, "an update")
                if "id" not in update:
                    raise bad_request("an update needs the item's 'id'")
                ids.append(check_id(update["id"]))
            except PodHTTPError as error:
                raise _located(error, section, index) from None
        rows = self._load_rows(tx, ids)
        touched: dict[int, _Row] = {}
        for index, (item_id, raw) in enumerate(zip(ids, raw_updates, strict=True)):
            row = rows.get(item_id)
            try:
                if row is None:
                    raise not_found(f"no item with id {shown(item_id)}")
                self._apply_update(tx, row, raw)
            except PodHTTPError as error:
                raise _located(error, section, index) from None
            touched[row.rid] = row
        if not touched:
            return
        shas = {str(r.props["sha256"]) for r in touched.values() if "sha256" in r.props}
        keys = self._blob_keys(shas) if shas else {}
        for r in touched.values():
            if r.type == "File" and r.props.get("sha256") in keys:
                r.props["keystr"], r.props["nonce"] = keys[r.props["sha256"]]
        ts = tx.ts()
        tx.conn.executemany(
            "UPDATE items SET dateModified = ?, dateServerModified = ?, deleted = ?, props = ?"
            " WHERE rid = ?",
            [(r.date_modified, ts, r.deleted, dumps(r.props), r.rid) for r in touched.values()],
        )

    def _apply_update(self, tx: Transaction, row: _Row, update: dict[str, Any]) -> None:
        declared = tx.schema.types.get(row.type, {})
        modified: int | None = None
        for key, value in update.items():
            if key in _IGNORED_ON_UPDATE:
                continue
            if key == "dateModified":
                if value is not None:
                    modified = check_value(key, "DateTime", value)
                continue
            if key == "deleted":
                if value is not None:
                    row.deleted = check_value(key, "Bool", value)
                continue
            if row.type == SCHEMA_ITEM_TYPE:
                raise bad_request(
                    f"{SCHEMA_ITEM_TYPE} items can't be changed; declare another property instead"
                )
            value_type = declared.get(key)
            if value_type is None:
                raise undeclared(tx, row.type, key)
            if value is None:
                row.props.pop(key, None)
            else:
                row.props[key] = check_value(key, value_type, value)
        row.date_modified = tx.now if modified is None else modified

    @staticmethod
    def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
        unique = list(dict.fromkeys(values))
        for start in range(0, len(unique), _CHUNK):
            yield unique[start : start + _CHUNK]

    def _load_rows(self, tx: Transaction, ids: list[str]) -> dict[str, _Row]:
        rows: dict[str, _Row] = {}
        for chunk in self._chunks(ids):
            marks = ",".join("?" * len(chunk))
            for rid, item_id, item_type, modified, deleted, props in tx.conn.execute(
                "SELECT rid, id, type, dateModified, deleted, props FROM items"
                f" WHERE id IN ({marks})",
                chunk,
            ):
                rows[item_id] = _Row(rid, item_type, modified, bool(deleted), orjson.loads(props))
        return rows

    def _rids(self, ids: Iterable[str], tx: Transaction | None) -> dict[str, int]:
        """Row ids of the items with these ids (those that exist).

        An item's id and rid never change (items are only soft-deleted), so
        committed pairs are cached; pairs seen in a transaction are cached
        only once it commits.
        """
        cache = self._rid_cache
        found: dict[str, int] = {}
        missing: list[str] = []
        for item_id in ids:
            rid = cache.get(item_id)
            if rid is None:
                missing.append(item_id)
            else:
                found[item_id] = rid
        learned: dict[str, int] = {}
        for chunk in self._chunks(missing):
            marks = ",".join("?" * len(chunk))
            learned.update(
                self.conn.execute(f"SELECT id, rid FROM items WHERE id IN ({marks})", chunk)
            )
        found.update(learned)
        if tx is None:
            self._cache_rids(learned)
        else:
            tx.learned.update(learned)
        return found

    def _cache_rids(self, pairs: dict[str, int]) -> None:
        cache = self._rid_cache
        cache.update(pairs)
        if len(cache) > _RID_CACHE_SIZE:
            for item_id in list(islice(cache, len(cache) - _RID_CACHE_SIZE // 2)):
                del cache[item_id]

    def _delete_items(self, tx: Transaction, raw_ids: list[Any], section: str | None) -> None:
        ids: list[str] = []
        for index, raw in enumerate(raw_ids):
            try:
                ids.append(check_id(raw))
            except PodHTTPError as error:
                raise _located(error, section, index) from None
        rids = self._rids(ids, tx)
        for index, item_id in enumerate(ids):
            if item_id not in rids:
                raise _located(not_found(f"no item with id {shown(item_id)}"), section, index)
        if not ids:
            return
        ts = tx.ts()
        tx.conn.executemany(
            "UPDATE items SET deleted = 1, dateModified = ?, dateServerModified = ? WHERE rid = ?",
            [(tx.now, ts, rid) for rid in dict.fromkeys(rids[i] for i in ids)],
        )

    # -- edges ------------------------------------------------------------------

    @staticmethod
    def _parse_edge(raw: object) -> tuple[str, str, str]:
        edge = _dict(raw, "an edge")
        source = check_id(edge.get("_source"), "_source")
        target = check_id(edge.get("_target"), "_target")
        name = check_name(edge.get("_name"), "edge name (_name)")
        return source, target, name

    def _edge_rows(
        self, tx: Transaction, raw_edges: list[Any], first: int, section: str | None
    ) -> list[tuple[int, int, int, int]]:
        """Rows ``(source rid, name number, target rid, seq)``, numbered from ``first``.

        The common case (both ends in the rid cache or created in this
        transaction, either proving the id valid and existing, and a name
        the store has) is resolved for the whole bulk at once, mapping over
        it with no interpreter loop per edge.  The rest get the full check
        and a lookup, and errors name the first bad edge: a 400 before any
        404.  Row ids and name numbers start at 1: a miss (None) is the only
        false value.
        """
        try:
            source_rids = self._end_rids(tx, list(map(_SOURCE, raw_edges)))
            target_rids = self._end_rids(tx, list(map(_TARGET, raw_edges)))
            names = list(map(self._name_ids.get, map(_NAME, raw_edges)))
        except (KeyError, TypeError):  # not a dict, a key missing, an unhashable value
            rows: list[Any] = [None] * len(raw_edges)
            slow = list(range(len(raw_edges)))
        else:
            seqs = range(first, first + len(raw_edges))
            rows = list(zip(source_rids, names, target_rids, seqs, strict=True))
            if all(source_rids) and all(target_rids) and all(names):
                return rows
            slow = [index for index, (s, n, t, _) in enumerate(rows) if not (s and n and t)]
        self._resolve_edges(tx, raw_edges, rows, slow, first, section)
        return rows

    def _end_rids(self, tx: Transaction, ids: list[Any]) -> list[int | None]:
        """Each id's row id from the rid cache or this transaction's new items, or None."""
        rids = list(map(self._rid_cache.get, ids))
        if tx.learned and not all(rids):
            learned_get = tx.learned.get
            for index, rid in enumerate(rids):
                if rid is None:
                    rids[index] = learned_get(ids[index])
        return rids

    def _resolve_edges(
        self,
        tx: Transaction,
        raw_edges: list[Any],
        rows: list[Any],
        slow: list[int],
        first: int,
        section: str | None,
    ) -> None:
        """Fill ``rows[i]`` for the edges at ``slow`` indexes the mapped pass left."""
        parsed: list[tuple[str, str, str]] = []
        for index in slow:
            try:
                edge = self._parse_edge(raw_edges[index])
            except PodHTTPError as error:
                raise _located(error, section, index) from None
            parsed.append(edge)
        rids = self._rids((end for edge in parsed for end in edge[:2]), tx)
        for index, (source, target, name) in zip(slow, parsed, strict=True):
            for item_id, what in ((source, "source"), (target, "target")):
                if item_id not in rids:
                    missing = not_found(f"the edge's {what} {shown(item_id)} does not exist")
                    raise _located(missing, section, index)
            rows[index] = (rids[source], self._name_id(tx, name), rids[target], first + index)

    def _name_id(self, tx: Transaction, name: str) -> int:
        """The number of an edge name, numbering it in ``tx`` if it is new."""
        found = self._name_ids.get(name) or tx.edge_names.get(name)
        if found is None:
            cursor = tx.conn.execute("INSERT INTO edge_names (name) VALUES (?)", (name,))
            found = tx.edge_names[name] = cursor.lastrowid
        return found

    def edge_ids(self, first: int, count: int) -> list[str]:
        """The ids of the ``count`` edges numbered from ``first``.

        Per block of 4096 numbers only the last three hex digits change, so
        each id is one concatenation with a precomputed suffix (formatting
        every id took a few percent of an edge bulk).
        """
        ids: list[str] = []
        seq, end = first, first + count
        while seq < end:
            high, low = divmod(seq, 4096)
            n = min(end - seq, 4096 - low)
            ids += map(f"{self._edge_id_prefix}{high:013x}".__add__, _HEX3[low : low + n])
            seq += n
        return ids

    def _create_edges(
        self, tx: Transaction, raw_edges: list[Any], section: str | None
    ) -> list[str]:
        first = tx.edge_seqs(len(raw_edges))
        rows = self._edge_rows(tx, raw_edges, first, section)
        try:
            insert_rows(tx.conn, _INSERT_EDGE, 4, rows)
        except sqlcipher3.IntegrityError:
            raise self._duplicate_edge(tx, raw_edges, rows, first, section) from None
        return self.edge_ids(first, len(rows))

    @staticmethod
    def _duplicate_edge(
        tx: Transaction,
        raw_edges: list[Any],
        rows: list[tuple[int, int, int, int]],
        first: int,
        section: str | None,
    ) -> PodHTTPError:
        seen: set[tuple[int, int, int]] = set()
        for index, (source, name_id, target, _) in enumerate(rows):
            key = (source, name_id, target)
            if key in seen:
                return _located(conflict("this edge appears twice in this request"), section, index)
            seen.add(key)
            row = tx.conn.execute(
                "SELECT seq FROM edges WHERE source = ? AND name_id = ? AND target = ?", key
            ).fetchone()
            if row is not None and row[0] < first:
                name = raw_edges[index]["_name"]
                return _located(conflict(f"the edge {name!r} already exists"), section, index)
        return conflict("an edge of this request already exists")

    def create_edge(self, payload: object) -> str:
        with self._write() as tx:
            return self._create_edges(tx, [payload], None)[0]

    def get_edges(self, payload: object) -> list[dict[str, Any]]:
        request = _dict(payload, "the payload")
        item_id = check_id(request.get("item"), "item")
        direction = request.get("direction", "Outgoing")
        if direction not in ("Outgoing", "Incoming"):
            raise bad_request("direction must be 'Outgoing' or 'Incoming'")
        expand = request.get("expandItems", True)
        if type(expand) is not bool:
            raise bad_request("expandItems must be a bool")
        near, far = ("source", "target") if direction == "Outgoing" else ("target", "source")
        columns = ", ".join(f"i.{c.strip()}" for c in ITEM_COLUMNS.split(","))
        with self._locked():
            rid = self._rids([item_id], None).get(item_id)
            if rid is None:
                raise not_found(f"no item with id {shown(item_id)}")
            rows = self.conn.execute(
                f"SELECT n.name, {columns} FROM edges e"
                f" JOIN edge_names n ON n.id = e.name_id JOIN items i ON i.rid = e.{far}"
                f" WHERE e.{near} = ? ORDER BY e.seq",
                (rid,),
            ).fetchall()
        return [
            {"name": row[0], "item": item_from_row(row[1:]) if expand else {"id": row[2]}}
            for row in rows
        ]

    def delete_edge(self, payload: object) -> dict[str, Any]:
        source, target, name = self._parse_edge(payload)
        with self._write() as tx:
            rids = self._rids([source, target], tx)
            for item_id, what in ((source, "source"), (target, "target")):
                if item_id not in rids:
                    raise not_found(f"the edge's {what} {shown(item_id)} does not exist")
            name_id = self._name_ids.get(name)
            cursor = tx.conn.execute(
                "DELETE FROM edges WHERE source = ? AND name_id = ? AND target = ?",
                (rids[source], name_id, rids[target]),
            )
            if cursor.rowcount == 0:
                raise not_found(f"no edge {name!r} between these items")
        return {}

    # -- schema -----------------------------------------------------------------

    def add_schema(self, payload: object) -> dict[str, Any]:
        """The v5 schema call: declare all node properties at once, or none."""
        request = _dict(payload, "the payload")
        unknown = sorted(set(request) - {"nodes", "edges", "meta"})
        if unknown:
            raise bad_request(f"unknown schema keys: {', '.join(shown(k, 40) for k in unknown)}")
        nodes = _dict(request.get("nodes", {}), "nodes")
        for name, targets in _dict(request.get("edges", {}), "edges").items():
            check_name(name, "edge name")
            for target in _list(targets, f"edges.{name}"):
                spec = _dict(target, f"an entry of edges.{name}")
                check_name(spec.get("source"), "edge source type")
                check_name(spec.get("target"), "edge target type")
        _dict(request.get("meta", {}), "meta")
        with self._write() as tx:
            for item_type, spec in nodes.items():
                try:
                    node = _dict(spec, "a node")
                    properties = _dict(node.get("properties", {}), "properties")
                    for prop, value_type in properties.items():
                        tx.declare(item_type, prop, value_type)
                except PodHTTPError as error:
                    raise error.at(f"nodes.{item_type}") from None
        return {}

    # -- files ------------------------------------------------------------------

    def _blob_keys(self, shas: Iterable[str]) -> dict[str, tuple[str, str]]:
        keys: dict[str, tuple[str, str]] = {}
        for chunk in self._chunks(shas):
            marks = ",".join("?" * len(chunk))
            for sha, keystr, nonce in self.conn.execute(
                f"SELECT sha256, keystr, nonce FROM blobs WHERE sha256 IN ({marks})", chunk
            ):
                keys[sha] = (keystr, nonce)
        return keys

    def _check_upload(self, sha256: str) -> None:
        if self._blob_keys([sha256]):
            raise conflict("this content is already stored")
        query = _FILE_BY_SHA + " AND deleted = 0 LIMIT 1"
        if self.conn.execute(query, (sha256,)).fetchone() is None:
            raise not_found("no File item with this sha256; create it before uploading")

    def check_upload(self, sha256: str) -> None:
        """A 409 if the content is stored, a 404 if no File item announces it."""
        with self._locked():
            self._check_upload(sha256)

    def store_blob(self, sha256: str, writer: BlobWriter) -> None:
        """Keep uploaded content; key and nonce go to the blob table and File items.

        Group commit: uploads that finish while the store is busy (another
        upload's row committing, a bulk) queue up, and whichever of them
        takes the store's lock first records them all in one transaction
        after one flush of the files directory — one directory fsync and
        one WAL fsync for the group instead of one each.  Each upload still
        gets its own answer (a 409 or 404 refuses that upload only); if the
        group's transaction fails, each is recorded, or fails, on its own.
        """
        upload = _Upload(sha256, writer)
        with self._queue_lock:
            self._queued.append(upload)
        with self._locked():
            if not upload.taken:
                with self._queue_lock:
                    group, self._queued = self._queued, []
                self._record_group(group)
            if upload.refused is not None:
                raise upload.refused
            if not upload.recorded:  # its group's transaction failed
                if writer.placed:
                    self.files.flush_names()
                with self._transaction() as tx:
                    self._record_upload(tx, upload)

    def _record_group(self, group: list[_Upload]) -> None:
        for upload in group:
            upload.taken = True
        try:
            if any(upload.writer.placed for upload in group):
                self.files.flush_names()
            with self._transaction() as tx:
                for upload in group:
                    try:
                        self._record_upload(tx, upload)
                    except PodHTTPError as error:
                        upload.refused = error
        except Exception:
            for upload in group:
                upload.refused = None  # each tries again on its own
            return
        for upload in group:
            upload.recorded = upload.refused is None

    def _record_upload(self, tx: Transaction, upload: _Upload) -> None:
        sha256, writer = upload.sha256, upload.writer
        self._check_upload(sha256)
        # Content first, then its row: a crash in between leaves an unknown
        # file that the next upload of the same content replaces.
        writer.commit(sha256)
        keystr, nonce = writer.key.hex(), writer.nonce.hex()
        tx.conn.execute(
            "INSERT INTO blobs (sha256, keystr, nonce, size) VALUES (?, ?, ?, ?)",
            (sha256, keystr, nonce, writer.size),
        )
        ts = tx.ts()
        updates = []
        for rid, props in tx.conn.execute(_FILE_BY_SHA, (sha256,)).fetchall():
            values = orjson.loads(props)
            values["keystr"], values["nonce"] = keystr, nonce
            updates.append((ts, dumps(values), rid))
        tx.conn.executemany(
            "UPDATE items SET dateServerModified = ?, props = ? WHERE rid = ?", updates
        )

    def blob_key(self, sha256: str) -> tuple[bytes, bytes, int] | None:
        """Key, nonce and size of stored content, or None if it is not stored."""
        with self._locked():
            row = self.conn.execute(
                "SELECT keystr, nonce, size FROM blobs WHERE sha256 = ?", (sha256,)
            ).fetchone()
        if row is None:
            return None
        return bytes.fromhex(row[0]), bytes.fromhex(row[1]), row[2]
