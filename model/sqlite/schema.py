"""The live schema of a database, and pruning it to what a question needs."""

from __future__ import annotations

import re
import sqlite3
from collections import deque
from collections.abc import Iterable
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

    def column(self, name: str) -> Column | None:
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)


@dataclass
class Schema:
    tables: list[Table]

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
    """Tables and views with columns and foreign keys, from the catalog (no row reads)."""
    entries = conn.execute(
        "SELECT name, type, coalesce(sql, '') FROM sqlite_master "
        "WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    tables = []
    for name, kind, sql in entries:
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
        tables.append(Table(name, kind, sql, columns, fks))
    # Fill in implicit foreign-key targets (REFERENCES t with no column means its primary key).
    by_name = {t.name.lower(): t for t in tables}
    for t in tables:
        for fk in t.foreign_keys:
            target = by_name.get(fk.ref_table.lower())
            if not fk.ref_column and target:
                fk.ref_column = next((c.name for c in target.columns if c.primary_key), "")
    return Schema(tables)


def row_count(conn: sqlite3.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0]


_WORD = re.compile(r"[A-Za-z][a-z]*|[0-9]+")
_STOP = {
    "the",
    "of",
    "and",
    "or",
    "in",
    "on",
    "for",
    "with",
    "by",
    "to",
    "what",
    "which",
    "who",
    "how",
    "many",
    "is",
    "are",
    "was",
    "were",
    "list",
    "show",
    "give",
    "all",
    "each",
    "id",
}


# Words of buying and selling (stems, as `_words` gives them). A question asks for "sales" where
# the schema keeps invoices or orders: Chinook's sales are its invoice_items. Such a word points
# at the tables named for trade only when nothing in the schema is named by it (where a column
# is called `revenue`, that column is what "revenue" means) and it is not quoted as a value.
TRADE_WORDS = frozenset({
    "sale", "sold", "sell", "selling", "revenue", "earning", "earned", "income", "spent",
    "spend", "bought", "buy", "purchase", "purchased",
})
TRADE_TABLES = frozenset({"invoice", "order", "payment", "purchase", "transaction", "sale"})
_QUOTED = re.compile(r"(?<!\w)'[^']*'(?!\w)|\"[^\"]*\"")  # a value: 'Sales Support Agent'


def speaks_of_trade(schema: Schema, question: str) -> bool:
    """Whether the question asks about buying or selling in a word the schema has no name for."""
    named = set().union(*(_words(t.name) | _column_words(t) for t in schema.tables))
    return bool((_words(_QUOTED.sub(" ", question)) & TRADE_WORDS) - named)


def _column_words(table: Table) -> set[str]:
    return set().union(*(_words(c.name) for c in table.columns))


def _trade_path(schema: Schema, chosen: list[str], room: int) -> list[str]:
    """The tables on the shortest foreign-key path from `chosen` to a table of trade, that one
    last; none when a table of trade is chosen already or none is within `room` steps."""
    trade = [t.name.lower() for t in schema.tables if _words(t.name) & TRADE_TABLES]
    start = [c.lower() for c in chosen]
    if room <= 0 or not trade or set(trade) & set(start):
        return []
    graph = foreign_key_graph(schema)
    paths = [p for t in trade if (p := join_path(graph, start, t, max_steps=room))]
    if not paths:
        return []
    real = {t.name.lower(): t.name for t in schema.tables}
    return [real[edge[2]] for edge in min(paths, key=len)]


def _words(text: str) -> set[str]:
    """Lower-case word stems: splits snake_case and CamelCase, drops a plural 's' ("-ies" gives
    both stems: countries -> country, movies -> movie)."""
    out = set()
    for w in _WORD.findall(text):
        w = w.lower()
        if len(w) > 4 and w.endswith("ies"):
            out.add(w[:-3] + "y")
        if len(w) > 3 and w.endswith("s"):
            w = w[:-1]
        if len(w) > 1 and w not in _STOP:
            out.add(w)
    return out


def prune(schema: Schema, question: str, max_tables: int = 6) -> list[str]:
    """The tables a question most likely needs, plus the tables that join them.

    Scored by words shared between the question and a table's name (weighted) and column
    names; a word of trade that names nothing in the schema ("sales") names its tables of
    trade, which join the best scored table with the tables between. Small schemas are sent
    whole. Best first; the context renders tables in the schema's own order, whatever this
    order.
    """
    if len(schema.tables) <= max_tables:
        return schema.names
    q = _words(question)
    trading = speaks_of_trade(schema, question)
    scores: dict[str, float] = {}
    for t in schema.tables:
        name_hits = len(q & _words(t.name)) + (trading and bool(_words(t.name) & TRADE_TABLES))
        scores[t.name] = 3 * name_hits + len(q & _column_words(t))
    ranked = sorted(schema.tables, key=lambda t: -scores[t.name])
    chosen = [t.name for t in ranked if scores[t.name] > 0][: max(1, max_tables // 2)]
    if not chosen:
        chosen = [ranked[0].name]
    if trading:
        chosen += _trade_path(schema, chosen, max_tables - len(chosen))
    # Add foreign-key neighbours (both directions) so joins between chosen tables exist.
    neighbours: list[str] = []
    for t in schema.tables:
        for fk in t.foreign_keys:
            if t.name in chosen and fk.ref_table not in chosen:
                neighbours.append(fk.ref_table)
            elif fk.ref_table in chosen and t.name not in chosen:
                neighbours.append(t.name)
    real = {t.name.lower(): t.name for t in schema.tables}
    for n in sorted(neighbours, key=lambda n: -scores.get(real.get(n.lower(), n), 0)):
        n = real.get(n.lower())
        if n and n not in chosen and len(chosen) < max_tables:
            chosen.append(n)
    for t in ranked:  # fill remaining room with the next best scored tables
        if len(chosen) >= max_tables or scores[t.name] <= 0:
            break
        if t.name not in chosen:
            chosen.append(t.name)
    return chosen
