"""Search filters: parsing a filter object into SQL, running it, shaping items.

Results are ordered by ``dateServerModified`` and then by insertion order
(``rid``), both in the requested direction, so pages are deterministic.
``_limit`` returns the first n items plus every further item sharing the last
one's ``dateServerModified``: a write transaction stamps all its items with one
timestamp, so a page never ends inside a transaction's items and a client can
continue from the next timestamp without missing or repeating anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ._db import INDEXED_PROPERTIES
from ._errors import bad_request, shown
from ._schema import INT_MAX, NAME_RE, Schema, check_value

__all__ = ["ITEM_COLUMNS", "Query", "compile_search", "item_from_row", "run_search"]

ITEM_COLUMNS = "rid, id, type, dateCreated, dateModified, dateServerModified, deleted, props"

_CHUNK = 500

_COLUMN_FILTERS: dict[str, tuple[str, str]] = {
    "id": ("id = ?", "Text"),
    "type": ("type = ?", "Text"),
    "deleted": ("deleted = ?", "Bool"),
    "dateCreated": ("dateCreated = ?", "DateTime"),
    "dateModified": ("dateModified = ?", "DateTime"),
    "dateServerModified": ("dateServerModified = ?", "DateTime"),
    "dateServerModified>=": ("dateServerModified >= ?", "DateTime"),
    "dateServerModified<": ("dateServerModified < ?", "DateTime"),
}


@dataclass(slots=True)
class Query:
    """A parsed search filter."""

    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    desc: bool = False
    limit: int | None = None
    offset: int = 0
    out_edges: bool = False
    in_edges: bool = False
    index: str | None = None
    """An index to force: SQLite would rather walk (type, dateServerModified)
    in order than look up a selective property and sort the few matches."""


def _count(value: object, key: str) -> int:
    """A ``_limit``/``_offset``: SQLite takes signed 64-bit values, so bigger is a 400."""
    if type(value) is not int or not 0 <= value <= INT_MAX:
        raise bad_request(f"{key} must be an integer from 0 to 2**63-1, got {shown(value, 40)}")
    return value


def _property_expr(name: str) -> str:
    # Same spelling as the expression indexes, so SQLite can use them.
    return f"json_extract(props, '$.{name}')"


def compile_search(schema: Schema, flt: object) -> Query:
    """Parse a search filter; a 400 for anything unknown or ill-typed."""
    if not isinstance(flt, dict):
        raise bad_request("a search filter must be a JSON object")
    query = Query()
    for key, value in flt.items():
        column = _COLUMN_FILTERS.get(key)
        if column is not None:
            sql, value_type = column
            checked = check_value(key, value_type, value)
            query.where.append(sql)
            query.params.append(int(checked) if value_type == "Bool" else checked)
        elif key == "_sortOrder":
            if value not in ("Asc", "Desc"):
                raise bad_request(f"_sortOrder must be 'Asc' or 'Desc', got {shown(value, 40)}")
            query.desc = value == "Desc"
        elif key == "_limit":
            query.limit = _count(value, key)
        elif key == "_offset":
            query.offset = _count(value, key)
        elif key in ("[[edges]]", "~[[edges]]"):
            if value != {}:
                raise bad_request(f"{key} takes an empty object {{}}")
            if key == "[[edges]]":
                query.out_edges = True
            else:
                query.in_edges = True
        elif NAME_RE.fullmatch(key):
            declared = schema.by_name.get(key)
            if declared is None:
                raise bad_request(f"unknown search key: property {key!r} is not declared")
            if value is None:
                query.where.append(f"{_property_expr(key)} IS NULL")
            else:
                checked = check_value(key, declared, value)
                query.where.append(f"{_property_expr(key)} = ?")
                query.params.append(int(checked) if declared == "Bool" else checked)
                if key in INDEXED_PROPERTIES and query.index is None:
                    query.index = f"items_{key}"
        else:
            raise bad_request(f"unknown search key {shown(key, 60)}")
    if "id" in flt:
        query.index = None  # the unique index on id is the best there is
    return query


def item_from_row(row: tuple[Any, ...]) -> dict[str, Any]:
    """The API form of an item row selected with :data:`ITEM_COLUMNS`."""
    item: dict[str, Any] = {
        "id": row[1],
        "type": row[2],
        "dateCreated": row[3],
        "dateModified": row[4],
        "dateServerModified": row[5],
        "deleted": bool(row[6]),
    }
    item.update(orjson.loads(row[7]))
    return item


def run_search(conn: Any, query: Query) -> list[dict[str, Any]]:
    """Run a parsed search on ``conn``; items in API form."""
    where = " AND ".join(query.where) if query.where else "1"
    direction = "DESC" if query.desc else "ASC"
    source = "items" if query.index is None else f"items INDEXED BY {query.index}"
    sql = (
        f"SELECT {ITEM_COLUMNS} FROM {source} WHERE {where} "
        f"ORDER BY dateServerModified {direction}, rid {direction}"
    )
    params = list(query.params)
    if query.limit is not None or query.offset:
        sql += " LIMIT ? OFFSET ?"
        params += [-1 if query.limit is None else query.limit, query.offset]
    rows = conn.execute(sql, params).fetchall()
    if query.limit and len(rows) == query.limit:
        last = rows[-1]
        # The tie rule: every further item sharing the last one's timestamp.
        rows += conn.execute(
            f"SELECT {ITEM_COLUMNS} FROM {source} WHERE {where} "
            f"AND dateServerModified = ? AND rid {'<' if query.desc else '>'} ? "
            f"ORDER BY rid {direction}",
            [*query.params, last[5], last[0]],
        ).fetchall()
    items = [item_from_row(row) for row in rows]
    if query.out_edges or query.in_edges:
        rids = [row[0] for row in rows]
        if query.out_edges:
            _attach_edges(conn, rids, items, "[[edges]]", incoming=False)
        if query.in_edges:
            _attach_edges(conn, rids, items, "~[[edges]]", incoming=True)
    return items


def _attach_edges(
    conn: Any, rids: list[int], items: list[dict[str, Any]], key: str, *, incoming: bool
) -> None:
    """Each item's edges, in creation order, as ``{"_edge": name, "_item": item}``."""
    near, far = ("target", "source") if incoming else ("source", "target")
    found: dict[int, list[dict[str, Any]]] = {}
    unique = sorted(set(rids))
    columns = ", ".join(f"i.{c.strip()}" for c in ITEM_COLUMNS.split(","))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT e.{near}, n.name, {columns} FROM edges e "
            f"JOIN edge_names n ON n.id = e.name_id JOIN items i ON i.rid = e.{far} "
            f"WHERE e.{near} IN ({marks}) ORDER BY e.seq",
            chunk,
        ):
            found.setdefault(row[0], []).append({"_edge": row[1], "_item": item_from_row(row[2:])})
    for rid, item in zip(rids, items, strict=True):
        item[key] = found.get(rid, [])
