"""The name checks: every table and column a statement names, resolved against the schema,
with the schema's name a near miss most likely means (`customer_id` -> `CustomerId`)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from model.llm.sql.parsing import (
    DIALECT,
    IMPLICIT_COLUMNS,
    own_columns,
    select_aliases,
    span,
    visible_sources,
)
from model.llm.sql.problem import Problem
from model.sqlite.schema import Schema

_SYSTEM_TABLES = {
    "sqlite_master": ["type", "name", "tbl_name", "rootpage", "sql"],
    "sqlite_schema": ["type", "name", "tbl_name", "rootpage", "sql"],
    "sqlite_temp_master": ["type", "name", "tbl_name", "rootpage", "sql"],
    "sqlite_sequence": ["name", "seq"],
}


def _suggest(name: str, candidates: Iterable[str]) -> str:
    """The candidate a near miss means (customer_id -> CustomerId), or ""."""

    def norm(s: str) -> str:
        return s.lower().replace("_", "")

    by_norm = {norm(c): c for c in candidates}
    close = difflib.get_close_matches(norm(name), list(by_norm), n=1, cutoff=0.75)
    return by_norm[close[0]] if close else ""


def _hint(suggestion: str) -> str:
    return f" (did you mean {suggestion}?)" if suggestion else ""


def apply_suggestions(sql: str, problems: list[Problem]) -> tuple[str, list[str]]:
    """`sql` with every misspelt name that has a suggestion replaced by it, and what changed
    ("customer_id → CustomerId"). Offsets are into `sql`, so the edits go back to front."""
    fixable = [p for p in problems
               if p.suggestion and p.start is not None and p.end is not None
               and sql[p.start:p.end].strip('"[]`') == p.name]
    fixable.sort(key=lambda p: p.start or 0)
    for p in reversed(fixable):
        sql = sql[: p.start] + exp.to_identifier(p.suggestion).sql(DIALECT) + sql[p.end :]
    changes = [f"{p.name} → {p.suggestion}" for p in fixable]
    return sql, list(dict.fromkeys(changes))


def _table_columns(schema: Schema, name: str) -> list[str] | None:
    table = schema.table(name)
    if table is not None:
        return [c.name for c in table.columns]
    return _SYSTEM_TABLES.get(name.lower())


def _cte_names(tree: exp.Expression) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def check_names(tree: exp.Expression, scopes: list[Scope], schema: Schema) -> list[Problem]:
    """The statement's unknown tables, then its unknown columns (`scopes` are the tree's)."""
    problems: list[Problem] = []
    ctes = _cte_names(tree)
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # a table-valued function such as json_each(...)
        name = table.name
        if name.lower() in ctes or _table_columns(schema, name) is not None:
            continue
        start, end = span(table.this)
        guess = _suggest(name, schema.names)
        problems.append(Problem(f"unknown table {name}{_hint(guess)}", "table", True, start, end,
                                name, guess))
    problems.extend(_check_columns(scopes, schema))
    return problems


def _source_columns(source: object, schema: Schema) -> list[str] | None:
    """Column names a FROM source offers; None when unknown (anything goes)."""
    if isinstance(source, exp.Table):
        if not isinstance(source.this, exp.Identifier):
            return None
        return _table_columns(schema, source.name)
    if isinstance(source, Scope):
        selects = getattr(source.expression, "named_selects", None)
        if not selects or "*" in selects:
            return None
        return list(selects)
    return None


def _check_columns(scopes: list[Scope], schema: Schema) -> list[Problem]:
    problems: list[Problem] = []
    for scope, column in own_columns(scopes):
        if isinstance(column.this, exp.Star):
            continue
        problem = check_column(column, scope, schema, select_aliases(scope))
        if problem is not None:
            problems.append(problem)
    return problems


def check_column(
    column: exp.Column, scope: Scope, schema: Schema, aliases: set[str]
) -> Problem | None:
    """What is wrong with one column reference of `scope`; None when it names a column there
    (or in a source we cannot see into). `aliases` are the scope's select aliases."""
    name = column.name
    lowered = name.lower()
    start, end = span(column.this)
    if lowered in IMPLICIT_COLUMNS:
        return None
    if column.table:
        return _check_qualified(column, scope, schema)
    if lowered in aliases:
        return None  # SQLite lets WHERE, GROUP BY, HAVING and ORDER BY use select aliases
    candidates: list[str] = []
    for _, source in visible_sources(scope):
        columns = _source_columns(source, schema)
        if columns is None:
            return None  # a source we cannot see into may well have it
        if lowered in {c.lower() for c in columns}:
            return None
        candidates.extend(columns)
    if column.this.args.get("quoted"):
        return Problem(
            f"unknown column \"{name}\" (double quotes name a column; write '{name}' for text)",
            "column",
            True,
            start,
            end,
            name,
        )
    guess = _suggest(name, candidates)
    return Problem(f"unknown column {name}{_hint(guess)}", "column", True, start, end, name,
                   guess)


def _check_qualified(column: exp.Column, scope: Scope, schema: Schema) -> Problem | None:
    """`check_column` for a column written with its table or alias (`c.Name`)."""
    name = column.name
    qualifier = column.table
    for source_name, source in visible_sources(scope):
        if source_name.lower() == qualifier.lower():
            columns = _source_columns(source, schema)
            if columns is None or name.lower() in {c.lower() for c in columns}:
                return None
            start, end = span(column.this)
            guess = _suggest(name, columns)
            return Problem(f"unknown column {qualifier}.{name}{_hint(guess)}", "column",
                           True, start, end, name, guess)
    q_start, q_end = span(column.args["table"])
    return Problem(
        f"unknown table or alias {qualifier} (in {qualifier}.{name})",
        "table",
        True,
        q_start,
        q_end,
        f"{qualifier}.{name}",
    )
