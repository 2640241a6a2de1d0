"""The execution reward of a candidate SQL on a training database: what `finetune sample` keeps
and `finetune grpo` learns from.

The candidate runs read-only and bounded (`Database.run_bounded`: a statement that would write
is refused, a run over `TIMEOUT_S` is cut off, at most `MAX_ROWS` rows are read), never on a
connection that could write. Its result is scored against the gold query's:

    1.0   the gold's result, compared as `gemma-sql eval` compares (`finetune.eval.same_result`:
          rows as a multiset, in order where the gold has a top-level ORDER BY, columns in any
          order)
    0.0   no SQL, an error, a write (refused), a timeout, more than MAX_ROWS rows
    else  PARTIAL * (columns + rows) / 2, below 1 whatever the overlap:
          columns = matched columns / max(gold's columns, candidate's columns), a gold column
                    matched by an unused candidate column of the same name (case and table
                    prefix aside), else by one holding the same values (`count(*)` for
                    `count(id)`);
          rows    = |gold rows & candidate rows| / max(|gold rows|, |candidate rows|), rows
                    read on the matched columns only, as multisets (0 without a matched column)

Partial credit is dense: a small model's samples are rarely all right, and "the right columns
but a missing WHERE" is worth more to learn from than a wrong table (Think2SQL, FINER-SQL).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from finetune.eval import GoldError, normalized, same_result
from model.llm.sql.results import has_order_by
from model.sqlite.db import Database, DatabaseError

PARTIAL = 0.5  # the most a result that is not the gold's earns
MAX_ROWS = 10_000  # a result longer than this is not compared (a cross join, most likely)
TIMEOUT_S = 5.0  # a run is cut off after this (SQLite's progress handler)

Rows = list[tuple[Any, ...]]


@dataclass(frozen=True)
class Result:
    """A query's result as compared: column names (lower case, no table prefix) and rows."""

    columns: list[str]
    rows: Rows


def run(db: Database, sql: str, timeout_s: float = TIMEOUT_S) -> Result:
    """`sql`'s result, bounded; DatabaseError (WriteRefused for a write) when it cannot be had."""
    if not sql.strip():
        raise DatabaseError("no SQL")
    columns, rows = db.run_bounded(sql, MAX_ROWS + 1, timeout_s)
    if not columns:
        raise DatabaseError("not a query (returns no rows)")
    if len(rows) > MAX_ROWS:
        raise DatabaseError(f"more than {MAX_ROWS} rows")
    return Result([c.lower().rsplit(".", 1)[-1] for c in columns], normalized(rows))


@dataclass(frozen=True)
class Gold:
    """The gold query's result, run once and scored against many candidates."""

    sql: str
    result: Result
    ordered: bool

    @classmethod
    def of(cls, db: Database, sql: str) -> Gold:
        """Raises GoldError when the gold query itself fails."""
        try:
            return cls(sql, run(db, sql), has_order_by(sql))
        except DatabaseError as e:
            raise GoldError(str(e)) from None


def reward(db: Database, gold: Gold, sql: str, timeout_s: float = TIMEOUT_S) -> float:
    """The candidate `sql`'s reward against `gold` (see the module's docstring)."""
    try:
        got = run(db, sql, timeout_s)
    except DatabaseError:  # WriteRefused among them
        return 0.0
    return score(gold, got)


def score(gold: Gold, got: Result) -> float:
    """1.0 for the gold's result, else the partial credit (see the module's docstring)."""
    if same_result(gold.result.rows, got.rows, ordered=gold.ordered):
        return 1.0
    pairs = match_columns(gold.result, got)
    columns = len(pairs) / max(len(gold.result.columns), len(got.columns))
    rows = 0.0
    if pairs:
        want = Counter(tuple(row[i] for i, _ in pairs) for row in gold.result.rows)
        have = Counter(tuple(row[j] for _, j in pairs) for row in got.rows)
        both = sum((want & have).values())
        rows = both / max(len(gold.result.rows), len(got.rows), 1)
    return PARTIAL * (columns + rows) / 2


def match_columns(gold: Result, got: Result) -> list[tuple[int, int]]:
    """(gold column, candidate column) pairs: by name first, then by equal values; each
    candidate column used once."""
    pairs: dict[int, int] = {}
    used: set[int] = set()
    for i, name in enumerate(gold.columns):
        j = next((j for j, c in enumerate(got.columns) if c == name and j not in used), None)
        if j is not None:
            pairs[i] = j
            used.add(j)
    for i in range(len(gold.columns)):
        if i in pairs:
            continue
        values = Counter(row[i] for row in gold.rows)
        j = next((j for j in range(len(got.columns))
                  if j not in used and Counter(row[j] for row in got.rows) == values), None)
        if j is not None:
            pairs[i] = j
            used.add(j)
    return sorted(pairs.items())
