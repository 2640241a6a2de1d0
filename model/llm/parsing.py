"""sqlglot's view of a statement: parsing it (guarded), pretty-printing it, and its scopes.

Everything that reads SQL as a tree goes through `parse`, so that no input reaches sqlglot
that would keep it busy for minutes.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.tokens import TokenType

DIALECT = "sqlite"
# sqlglot 30's parser backtracks exponentially over JOINs without ON or USING: each one doubles
# the time (12 take 0.1 s, 30 would take days), and a degenerate answer repeats "JOIN t AS Tn"
# up to its token limit. Longer runs are not handed to sqlglot; SQLite's EXPLAIN still checks.
MAX_BARE_JOINS = 8
# SQLite tables always have these, unnamed in the schema.
IMPLICIT_COLUMNS = {"rowid", "oid", "_rowid_"}


def parse(sql: str) -> list[exp.Expression | None]:
    """sqlglot.parse, refusing (ParseError) the input it would take minutes over."""
    if _bare_join_run(sql) > MAX_BARE_JOINS:
        raise ParseError(f"more than {MAX_BARE_JOINS} JOINs in a row without ON")
    return sqlglot.parse(sql, read=DIALECT)


def _bare_join_run(sql: str) -> int:
    """The longest run of JOIN keywords with no ON or USING between them."""
    try:
        tokens = sqlglot.tokenize(sql, read=DIALECT)
    except TokenError:
        return 0
    run = longest = 0
    for token in tokens:
        if token.token_type == TokenType.JOIN:
            run += 1
            longest = max(longest, run)
        elif token.token_type in (TokenType.ON, TokenType.USING):
            run = 0
    return longest


def parses(sql: str) -> bool:
    """Whether sqlglot parses `sql` into at least one statement."""
    try:
        return bool(parse(sql))
    except (ParseError, TokenError):
        return False


def pretty(sql: str) -> str:
    """sqlglot's pretty SQLite; the input unchanged when sqlglot cannot parse it."""
    if not sql.strip():
        return sql
    try:
        out = [t.sql(dialect=DIALECT, pretty=True) for t in parse(sql) if t is not None]
    except (ParseError, TokenError):
        return sql
    return ";\n\n".join(s for s in out if s) or sql


def scopes_of(tree: exp.Expression) -> list[Scope]:
    """The statement's scopes, inner first; none when sqlglot gives up on its shape (SQLite's
    EXPLAIN still checks it)."""
    try:
        return list(traverse_scope(tree))
    except Exception:
        return []


def select_aliases(scope: Scope) -> set[str]:
    """The scope's `AS name`s, lower-cased (SQLite lets WHERE, ORDER BY ... use them)."""
    selects = getattr(scope.expression, "selects", [])
    return {s.alias.lower() for s in selects if isinstance(s, exp.Alias)}


def visible_sources(scope: Scope) -> Iterable[tuple[str, object]]:
    """This scope's sources, then its enclosing scopes' (correlated subqueries)."""
    current: Scope | None = scope
    while current is not None:
        yield from current.sources.items()
        current = current.parent


def span(node: exp.Expression) -> tuple[int | None, int | None]:
    """The node's character offsets in the parsed SQL (end exclusive), when sqlglot kept them."""
    meta = node.meta if node.meta else {}
    if "start" in meta and "end" in meta:
        return meta["start"], meta["end"] + 1
    return None, None
