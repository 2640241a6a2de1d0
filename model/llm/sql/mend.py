"""An answer's SQL made ready for the user: pretty-printed, checked against the schema and the
data (`model.llm.sql.check`), near-miss names corrected (`model.llm.sql.names`), text compared to a
key moved to the column that holds it (`model.llm.sql.literals`), its FROM clause mended to the
foreign keys (`model.llm.sql.joins`). Each step is kept only when the SQL then
passes the check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from model.llm.sql.check import check
from model.llm.sql.joins import mend_joins
from model.llm.sql.literals import mend_literals
from model.llm.sql.names import apply_suggestions
from model.llm.sql.parsing import pretty
from model.llm.sql.problem import Problem

if TYPE_CHECKING:
    from model.sqlite.db import Database


@dataclass(frozen=True)
class Checked:
    """SQL made ready for the user: pretty-printed, what the check found, and what was changed
    to make it pass."""

    sql: str
    problems: list[Problem] = field(default_factory=list)
    corrected: list[str] = field(default_factory=list)  # names put right: "album → albums"
    mended: list[str] = field(default_factory=list)  # FROM clause remade: "player → match"

    @property
    def fatal(self) -> bool:
        return any(p.fatal for p in self.problems)


def correct_names(ready: Checked, db: Database) -> Checked:
    """`ready` with the schema's spelling put in for near-miss names, when that makes the SQL
    pass; unchanged when it does not.

    A few rounds: a corrected table name lets the check see its columns' misspellings."""
    fixed, fixed_problems, corrected = ready.sql, ready.problems, list(ready.corrected)
    for _ in range(3):
        fixed, changes = apply_suggestions(fixed, fixed_problems)
        if not changes:
            break
        corrected += changes
        fixed_problems = check(fixed, db.schema(), db.conn)
        if not any(p.fatal for p in fixed_problems):
            return Checked(fixed, fixed_problems, corrected)
    return ready


def checked(sql: str, db: Database) -> Checked:
    """`sql` pretty-printed and checked; near-miss names corrected and text compared to a
    column of numbers read where the data holds it, when the check fails."""
    sql = pretty(sql) if sql else ""
    ready = Checked(sql, check(sql, db.schema(), db.conn))
    if not ready.fatal:
        return ready
    ready = correct_names(ready, db)
    if any(p.kind == "type" for p in ready.problems) and \
            (mend := mend_literals(ready.sql, db.schema(), db.conn)) is not None:
        fixed = pretty(mend[0])
        literal = Checked(fixed, check(fixed, db.schema(), db.conn), ready.corrected + mend[1])
        if not literal.fatal:
            return literal
    return ready


def mended(ready: Checked, db: Database, doubts: bool = True) -> Checked | None:
    """`ready` with its FROM clause mended to the schema (`sql.joins`), when that changes it
    and passes the check (`doubts`: with values no row holds allowed); else None."""
    mend = mend_joins(ready.sql, db.schema()) if ready.sql else None
    if mend is None:
        return None
    fixed = pretty(mend[0])
    problems = check(fixed, db.schema(), db.conn)
    if any(p.fatal or (p.kind == "value" and not doubts) for p in problems):
        return None
    return Checked(fixed, problems, ready.corrected, mend[1])
