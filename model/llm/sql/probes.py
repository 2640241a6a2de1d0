"""The value probes: comparisons that can never be true, a column of numbers against text
(`GenreId = 'Rock'`), and text that no row holds (`Name = 'AC/DC'` when AC/DC is a Composer).

They read a bounded number of rows through the caller's (read-only) connection.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from model.llm.sql.names import check_column
from model.llm.sql.parsing import DIALECT, own_columns, select_aliases, span, visible_sources
from model.llm.sql.problem import Problem
from model.sqlite.schema import Column, Schema, Table, quote

# Rows looked at to tell whether a numeric column holds only numbers (the check stays instant
# on a table of millions; text first seen after these rows would go unnoticed).
TEXT_PROBE_ROWS = 10_000
# Tables up to this many rows are searched for a compared value (`Name = 'AC/DC'`); bigger
# ones are not (a full scan on every answer would make the check slow).
VALUE_PROBE_ROWS = 100_000
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def affinity(declared: str) -> str:
    """SQLite's column affinity for a declared type (its rules, in their order)."""
    upper = declared.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(k in upper for k in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in upper or not upper:
        return "BLOB"
    if any(k in upper for k in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def check_values(scopes: list[Scope], schema: Schema, conn: sqlite3.Connection) -> list[Problem]:
    """Comparisons of a table's column with text that cannot or does not match.

    `=`, `<>` and `IN` between a column of numbers (numeric affinity, holding numbers and no
    text) and text that is not a number are never true: SQLite compares them as different
    types (text affinity converts the number instead; no affinity converts neither way). A
    fatal "type" problem. `=` with text that no row holds is a "value" warning: the question
    may well ask about something absent, but more often the model picked the wrong column.
    """
    problems: list[Problem] = []
    searchable: dict[str, bool] = {}  # table -> small enough to search (counted once)
    for compared in text_comparisons(scopes, schema):
        column, table, col = compared.column, compared.table, compared.target
        start, end = span(column.this)
        name = column.sql(dialect=DIALECT)
        text = compared.texts[0]
        if never_equal(conn, compared):
            problems.append(Problem(
                f"{col.name} holds numbers, so it never equals the text '{text}'",
                "type", True, start, end, name))
        elif isinstance(compared.operator, exp.EQ) and _never_holds(
                conn, table.name, col.name, text, searchable):
            problems.append(Problem(f"no row of {table.name} has {col.name} = '{text}'",
                                    "value", False, start, end, name))
    return problems


@dataclass
class TextComparison:
    """A table's column compared with text: `column = 'x'`, `column <> 'x'`, `column IN (...)`."""

    column: exp.Column
    operator: exp.Expression  # the EQ, NEQ or In node
    texts: list[str]
    table: Table
    target: Column  # the schema's column it reads


def text_comparisons(scopes: list[Scope], schema: Schema) -> Iterator[TextComparison]:
    """Every comparison of a table's column (not a view's: probing a view runs it) with text
    alone, in the scope the column belongs to."""
    for scope, column in own_columns(scopes):
        parent = column.parent
        if isinstance(parent, exp.EQ | exp.NEQ):
            values = [parent.expression if parent.this is column else parent.this]
        elif isinstance(parent, exp.In) and parent.this is column:
            values = list(parent.expressions)
        else:
            continue
        texts = [_text(v, scope, schema) for v in values]
        found = _resolve(column, scope, schema)
        if texts and None not in texts and found is not None and found[0].kind != "view":
            yield TextComparison(column, parent, [str(t) for t in texts], *found)


def never_equal(conn: sqlite3.Connection, compared: TextComparison) -> bool:
    """Whether the texts, none of them a number, are compared with a column of numbers."""
    return (not any(_NUMBER.fullmatch(t) for t in compared.texts)
            and affinity(compared.target.type) not in ("TEXT", "BLOB")
            and holds_only_numbers(conn, compared.table.name, compared.target.name))


def _text(node: exp.Expression, scope: Scope, schema: Schema) -> str | None:
    """The text a value stands for: a 'string', or a "string" that names no column."""
    if isinstance(node, exp.Literal) and node.is_string:
        return str(node.this)
    if isinstance(node, exp.Column) and not node.table and node.this.args.get("quoted") \
            and check_column(node, scope, schema, select_aliases(scope)) is not None:
        return node.name  # a quoted name that names no column: SQLite reads it as text
    return None


def _resolve(column: exp.Column, scope: Scope, schema: Schema) -> tuple[Table, Column] | None:
    """The schema table and column a column reference reads, when it is a plain table's."""
    qualifier = column.table.lower()
    for name, source in visible_sources(scope):
        if qualifier and name.lower() != qualifier:
            continue
        if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
            table = schema.table(source.name)
            found = table.column(column.name) if table is not None else None
            if table is not None and found is not None:
                return table, found
    return None


def _never_holds(conn: sqlite3.Connection, table: str, column: str, value: str,
                 searchable: dict[str, bool]) -> bool:
    """Whether no row has column = value (False when the table is too big to tell quickly).
    `searchable` remembers each table's size verdict across the calls for one statement."""
    try:
        if table not in searchable:
            searchable[table] = small_enough(conn, table)
        return searchable[table] and not holds(conn, table, column, value)
    except sqlite3.Error:
        return False


def small_enough(conn: sqlite3.Connection, table: str) -> bool:
    """Whether `table` has at most VALUE_PROBE_ROWS rows, to be searched for a value."""
    (rows,) = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {quote(table)} "
                           f"LIMIT {VALUE_PROBE_ROWS + 1})").fetchone()
    return bool(rows <= VALUE_PROBE_ROWS)


def holds(conn: sqlite3.Connection, table: str, column: str, value: str) -> bool:
    """Whether a row of `table` has `column` = `value`."""
    return conn.execute(f"SELECT 1 FROM {quote(table)} WHERE {quote(column)} = ? LIMIT 1",
                        (value,)).fetchone() is not None


def holds_only_numbers(conn: sqlite3.Connection, table: str, column: str) -> bool:
    """Numbers and no text in the column's first TEXT_PROBE_ROWS rows (NULLs aside)."""
    probe = (f"SELECT max(typeof(v) IN ('integer', 'real')), max(typeof(v) IN ('text', 'blob')) "
             f"FROM (SELECT {quote(column)} AS v FROM {quote(table)} LIMIT {TEXT_PROBE_ROWS})")
    try:
        numbers, text = conn.execute(probe).fetchone()
    except sqlite3.Error:
        return False  # cannot tell: say nothing
    return bool(numbers) and not text
