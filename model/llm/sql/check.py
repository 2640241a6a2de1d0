"""Checking a statement without running it: its syntax, its names, its compared values.

`check` parses the SQL with sqlglot, resolves every table and column against the live schema
(`model.llm.sql.names`), and asks SQLite to prepare it (`EXPLAIN`), which fails on exactly what
running it would fail on, without reading a row. Then it looks for comparisons that can never
be true or match no row (`model.llm.sql.probes`) and columns an aggregate query takes from an
arbitrary row (`model.llm.sql.grouping`).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace

from sqlglot.errors import ParseError, TokenError

from model.llm.sql.grouping import check_grouping
from model.llm.sql.names import check_names
from model.llm.sql.parsing import parse, scopes_of
from model.llm.sql.probes import check_values
from model.llm.sql.problem import Problem
from model.sqlite.schema import Schema
from model.sqlite.statements import split


def check(sql: str, schema: Schema, conn: sqlite3.Connection | None = None) -> list[Problem]:
    """Problems with `sql` against `schema`, and against SQLite itself when `conn` is given.

    With a connection SQLite has the last word on syntax: text sqlglot cannot parse but
    SQLite prepares is fine (sqlglot does not know every SQLite form).
    """
    if not sql.strip():
        return [Problem("no SQL in the answer", "parse")]
    try:
        trees = [t for t in parse(sql) if t is not None]
    except (ParseError, TokenError) as e:
        problem = _parse_problem(sql, e)
        if conn is None:
            return [problem]
        error = explain_error(sql, conn)
        if error is None:
            return []
        return [replace(problem, message=error, kind="sqlite")]
    scoped = [(tree, scopes_of(tree)) for tree in trees]
    problems: list[Problem] = []
    for tree, scopes in scoped:
        problems.extend(check_names(tree, scopes, schema))
        problems.extend(check_grouping(scopes))
    if conn is None:
        return problems
    error = explain_error(sql, conn)
    if error is None:
        # SQLite prepares it, so naming problems are warnings (e.g. a "string" in quotes).
        warnings = [replace(p, fatal=False) for p in problems]
        return [*warnings, *check_values([s for _, scopes in scoped for s in scopes], schema,
                                         conn)]
    confirmed = _confirmed_by(error, problems)
    warnings = [replace(p, fatal=False) for p in problems if p is not confirmed]
    if confirmed is not None:
        # SQLite fails on a name we already explain (with a suggestion): say it once.
        return [confirmed, *warnings]
    return [*warnings, Problem(error, "sqlite")]


def explain_error(sql: str, conn: sqlite3.Connection) -> str | None:
    """SQLite's error preparing `sql`, or None. EXPLAIN compiles the statement and lists its
    program; it reads no rows, and the connection's read-only authorizer still applies."""
    for statement in split(sql):
        try:
            conn.execute(f"EXPLAIN {statement.text}").close()
        except (sqlite3.Error, sqlite3.Warning) as e:
            message = str(e)
            if "not authorized" in message:
                return "refused: the statement would change the database (read-only session)"
            return message
    return None


def _confirmed_by(error: str, problems: list[Problem]) -> Problem | None:
    """The name problem that SQLite's "no such column: x" / "no such table: x" is about."""
    match = re.match(r"no such (?:column|table): (.+)", error)
    if not match:
        return None
    name = match.group(1).strip().lower()
    for p in problems:
        if p.name and p.name.lower() in (name, name.rsplit(".", 1)[-1]):
            return p
    return None


def _parse_problem(sql: str, error: ParseError | TokenError) -> Problem:
    errors = getattr(error, "errors", None) or []
    if not errors:
        return Problem(f"syntax error: {_first_line(str(error))}", "parse")
    first = errors[0]
    description = re.sub(r"\s*<Token .*", "", str(first.get("description", ""))).strip()
    near = first.get("highlight") or ""
    message = f"syntax error near {near!r}" if near else "syntax error"
    if description and description.lower() != "invalid expression / unexpected token":
        message += f": {description[0].lower()}{description[1:]}"
    start = _offset(sql, first.get("line"), first.get("col"), len(near))
    return Problem(message, "parse", True, start, None if start is None else start + len(near))


def _offset(sql: str, line: int | None, col: int | None, width: int) -> int | None:
    """sqlglot reports 1-based line and the column of a token's last character."""
    if not line or not col:
        return None
    lines = sql.split("\n")
    if line > len(lines):
        return None
    return sum(len(x) + 1 for x in lines[: line - 1]) + max(0, col - width)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown"
