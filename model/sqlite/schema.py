"""The live schema of a database, read from SQLite's catalog, and the foreign-key paths
between its tables."""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass
class Column:
    name: str
    type: str
    primary_key: bool = False
    not_null: bool = False


@dataclass
class ForeignKey:
    column: str
    ref_table: str
    ref_column: str


@dataclass
class Table:
    name: str
    kind: str  # "table" or "view"
    sql: str
    columns: list[Column] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    # Why SQLite cannot read it (a view over a dropped table, a function or a virtual
    # table's module this SQLite lacks); "" when it can. Such objects are in Schema.unreadable.
    problem: str = ""

    def column(self, name: str) -> Column | None:
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)


@dataclass
class Schema:
    tables: list[Table]  # what SQLite can read: what prompts, joins and checks see
    unreadable: list[Table] = field(default_factory=list)  # shown in the tree with the reason

    def table(self, name: str) -> Table | None:
        lowered = name.lower()
        return next((t for t in self.tables if t.name.lower() == lowered), None)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tables]


# A foreign-key step: (from table, its column, to table, its column); tables lower-cased.
Edge = tuple[str, str, str, str]


def foreign_key_graph(schema: Schema) -> dict[str, list[Edge]]:
    """Each table's foreign-key steps, both ways (lower-cased table names as keys)."""
    graph: dict[str, list[Edge]] = {t.name.lower(): [] for t in schema.tables}
    for t in schema.tables:
        for fk in t.foreign_keys:
            a, b = t.name.lower(), fk.ref_table.lower()
            if b not in graph or not fk.ref_column or a == b:
                continue
            graph[a].append((a, fk.column, b, fk.ref_column))
            graph[b].append((b, fk.ref_column, a, fk.column))
    return graph


def join_path(graph: dict[str, list[Edge]], start: Iterable[str], goal: str,
              max_steps: int) -> list[Edge] | None:
    """The shortest foreign-key path from any table in `start` to `goal` (breadth first, in
    the schema's order), at most `max_steps` long; None when there is none or `goal` is in
    `start`. Table names lower-cased."""
    start = list(start)
    if goal in start:
        return None
    queue: deque[tuple[str, list[Edge]]] = deque((t, []) for t in start)
    seen = set(start)
    while queue:
        table, path = queue.popleft()
        if len(path) >= max_steps:
            continue
        for edge in graph.get(table, []):
            if edge[2] in seen:
                continue
            if edge[2] == goal:
                return [*path, edge]
            seen.add(edge[2])
            queue.append((edge[2], [*path, edge]))
    return None


def quote(name: str) -> str:
    """An identifier quoted for SQLite."""
    return '"' + name.replace('"', '""') + '"'


def read_schema(conn: sqlite3.Connection) -> Schema:
    """Tables and views with columns and foreign keys, from the catalog (no row reads).

    An object SQLite cannot read does not stop the rest, as in the sqlite3 shell: it goes to
    `Schema.unreadable` with SQLite's reason. Only a catalog that cannot be read at all raises.
    """
    entries = conn.execute(
        "SELECT name, type, coalesce(sql, '') FROM sqlite_master "
        "WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    tables, unreadable = [], []
    for name, kind, sql in entries:
        try:
            tables.append(_read_table(conn, name, kind, sql))
        except sqlite3.Error as e:
            reason = " ".join(str(e).split()) or type(e).__name__
            unreadable.append(Table(name, kind, sql, problem=reason))
    # Fill in implicit foreign-key targets (REFERENCES t with no column means its primary key).
    by_name = {t.name.lower(): t for t in tables}
    for t in tables:
        for fk in t.foreign_keys:
            target = by_name.get(fk.ref_table.lower())
            if not fk.ref_column and target:
                fk.ref_column = next((c.name for c in target.columns if c.primary_key), "")
    return Schema(tables, unreadable)


def _read_table(conn: sqlite3.Connection, name: str, kind: str, sql: str) -> Table:
    columns = [
        Column(c_name, c_type or "", bool(pk), bool(notnull))
        for _, c_name, c_type, notnull, _, pk in conn.execute(
            'SELECT cid, name, type, "notnull", dflt_value, pk FROM pragma_table_info(?)',
            (name,),
        )
    ]
    fks = [
        ForeignKey(row[3], row[2], row[4] or "")
        for row in conn.execute("SELECT * FROM pragma_foreign_key_list(?)", (name,))
    ]
    return Table(name, kind, sql, columns, fks)


def row_count(conn: sqlite3.Connection, table: str, timeout_s: float | None = None,
              cancelled: Callable[[], bool] = lambda: False) -> int | None:
    """count(*) of a table or view; None when SQLite cannot (a view over a missing table), when
    it runs past `timeout_s` (a view over an endless recursive CTE) or once `cancelled()`."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def stop() -> int:  # non-zero interrupts the statement
        return int(cancelled() or (deadline is not None and time.monotonic() > deadline))

    conn.set_progress_handler(stop, 10_000)
    try:
        return conn.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0]
    except sqlite3.Error:
        return None
    finally:
        conn.set_progress_handler(None, 0)
