"""Text compared to a column of numbers, read where the data holds it.

The small model often compares a key with the name it stands for: `GenreId = 'Rock'` for
"tracks in the Rock genre", `ArtistId = 'AC/DC'`. Such a comparison is never true (the check
says so, `model.llm.sql.probes`), and the data says what was meant: the text is a value of the
table the key refers to (`GenreId IN (SELECT genres.GenreId FROM genres WHERE genres.Name =
'Rock')`), or of another column of the same table (`artists.Name = 'AC/DC'` for
`artists.ArtistId`). Only a column that holds every compared text is taken, and only declared
foreign keys are followed. The caller checks the result as it checks any answer.
"""

from __future__ import annotations

import sqlite3

from sqlglot import exp

from model.llm.sql.parsing import DIALECT, scopes_of, single_statement
from model.llm.sql.probes import affinity, holds, never_equal, small_enough, text_comparisons
from model.sqlite.schema import Schema, Table


def mend_literals(sql: str, schema: Schema, conn: sqlite3.Connection
                  ) -> tuple[str, list[str]] | None:
    """(sql, what changed: "GenreId = 'Rock' → genres.Name") with each `=` or `IN` of a column
    of numbers with text moved to a column that holds the text; None when none could be (or
    the SQL is more than one statement)."""
    tree = single_statement(sql)
    if tree is None:
        return None
    changes: list[str] = []
    for compared in list(text_comparisons(scopes_of(tree), schema)):
        if isinstance(compared.operator, exp.NEQ) or not never_equal(conn, compared):
            continue
        said, column, texts = compared.operator.sql(DIALECT), compared.column, compared.texts
        # A foreign key stands for the row it refers to: look there first.
        for fk in compared.table.foreign_keys:
            target = schema.table(fk.ref_table)
            if fk.column.lower() != compared.target.name.lower() or target is None \
                    or not fk.ref_column:
                continue
            if (holder := _holder(conn, target, texts)) is not None:
                key = exp.column(fk.ref_column, table=target.name)
                inner = exp.select(key).from_(exp.to_table(target.name)).where(
                    _matching(exp.column(holder, table=target.name), texts))
                compared.operator.replace(
                    exp.In(this=column.copy(), query=exp.Subquery(this=inner)))
                changes.append(f"{said} → {target.name}.{holder}")
                break
        else:
            if (holder := _holder(conn, compared.table, texts)) is not None:
                moved = exp.column(holder, table=column.table or None)
                compared.operator.replace(_matching(moved, texts))
                changes.append(f"{said} → {compared.table.name}.{holder}")
    if not changes:
        return None
    return tree.sql(DIALECT), changes


def _matching(column: exp.Column, texts: list[str]) -> exp.Expression:
    """`column = 'text'`, or `column IN ('a', 'b')`."""
    literals = [exp.Literal.string(t) for t in texts]
    if len(literals) == 1:
        return exp.EQ(this=column, expression=literals[0])
    return exp.In(this=column, expressions=literals)


def _holder(conn: sqlite3.Connection, table: Table, texts: list[str]) -> str | None:
    """The first text column of `table` that holds every one of `texts` (None when the table
    is too big to search quickly)."""
    try:
        if not small_enough(conn, table.name):
            return None
        for col in table.columns:
            if affinity(col.type) == "TEXT" and all(
                    holds(conn, table.name, col.name, text) for text in texts):
                return col.name
    except sqlite3.Error:
        return None
    return None
