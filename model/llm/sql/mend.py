"""An answer's SQL made ready for the user: pretty-printed, checked against the schema and the
data (`model.llm.sql.check`), near-miss names corrected (`model.llm.sql.names`), text compared to a
key moved to the column that holds it (`model.llm.sql.literals`), its FROM clause mended to the
foreign keys (`model.llm.sql.joins`). Each step is kept only when the SQL then
passes the check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from model.llm.sql.check import check
from model.llm.sql.joins import mend_joins
from model.llm.sql.literals import mend_literals
from model.llm.sql.names import apply_suggestions
from model.llm.sql.parsing import pretty
from model.llm.sql.problem import Problem

if TYPE_CHECKING:
    from model.sqlite.db import Database


def correct_names(
    sql: str, problems: list[Problem], db: Database
) -> tuple[str, list[Problem], list[str]]:
    """(sql, problems, corrections) with the schema's spelling put in for near-miss names, when
    that makes the SQL pass; unchanged (no corrections) when it does not.

    A few rounds: a corrected table name lets the check see its columns' misspellings."""
    fixed, fixed_problems, corrected = sql, problems, []
    for _ in range(3):
        fixed, changes = apply_suggestions(fixed, fixed_problems)
        if not changes:
            break
        corrected += changes
        fixed_problems = check(fixed, db.schema(), db.conn)
        if not any(p.fatal for p in fixed_problems):
            return fixed, fixed_problems, corrected
    return sql, problems, []


def checked(sql: str, db: Database) -> tuple[str, list[Problem], list[str]]:
    """(sql, problems, corrections): pretty-printed, checked, near-miss names corrected, text
    compared to a column of numbers read where the data holds it."""
    sql = pretty(sql) if sql else ""
    problems = check(sql, db.schema(), db.conn)
    if not any(p.fatal for p in problems):
        return sql, problems, []
    sql, problems, corrected = correct_names(sql, problems, db)
    if any(p.kind == "type" for p in problems) and \
            (mend := mend_literals(sql, db.schema(), db.conn)) is not None:
        fixed = pretty(mend[0])
        fixed_problems = check(fixed, db.schema(), db.conn)
        if not any(p.fatal for p in fixed_problems):
            return fixed, fixed_problems, corrected + mend[1]
    return sql, problems, corrected


def mended(sql: str, db: Database, doubts: bool = True
           ) -> tuple[str, list[Problem], list[str]] | None:
    """(sql, problems, changes) with the FROM clause mended to the schema (`sql.joins`), when
    that changes it and passes the check (`doubts`: with values no row holds allowed); else
    None."""
    mend = mend_joins(sql, db.schema()) if sql else None
    if mend is None:
        return None
    fixed = pretty(mend[0])
    problems = check(fixed, db.schema(), db.conn)
    if any(p.fatal or (p.kind == "value" and not doubts) for p in problems):
        return None
    return fixed, problems, mend[1]
