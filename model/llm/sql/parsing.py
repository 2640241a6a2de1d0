"""sqlglot's view of a statement: parsing it (guarded), pretty-printing it, and its scopes.

Everything that reads SQL as a tree goes through `parse`, so that no input reaches sqlglot
that would keep it busy for minutes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import cast

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
    # sqlglot 30 types its trees as their base, Expr; each is an Expression.
    return cast(list[exp.Expression | None], sqlglot.parse(sql, read=DIALECT))


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


def single_statement(sql: str) -> exp.Expression | None:
    """The one statement `sql` parses into; None when it does not parse or holds several."""
    try:
        trees = [t for t in parse(sql) if t is not None]
    except (ParseError, TokenError):
        return None
    return trees[0] if len(trees) == 1 else None


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


def own_columns(scopes: list[Scope]) -> Iterator[tuple[Scope, exp.Column]]:
    """Each column reference once, with its scope: `scopes` come inner first (`scopes_of`), and
    an outer scope also lists its subqueries' unqualified (maybe correlated) columns."""
    owned: set[int] = set()
    for scope in scopes:
        for column in scope.columns:
            if id(column) not in owned:
                owned.add(id(column))
                yield scope, column


def unaliased(sql: str) -> str:
    """`sql` on one line with each table alias replaced by its table's name where the table
    appears once in its SELECT (`SELECT albums.Title FROM albums JOIN artists ...` for
    `SELECT T1.Title FROM albums AS T1 JOIN artists AS T2 ...`): the way a reader, or a
    language model reading the question back, takes it in. Unchanged when it does not parse."""
    try:
        trees = [t for t in parse(sql) if t is not None]
    except (ParseError, TokenError):
        return sql
    for tree in trees:
        for select in list(tree.find_all(exp.Select)):
            tables = _direct_tables(select)
            once = [t.name.lower() for t in tables.values()]
            named = {t.alias.lower(): t for t in tables.values()
                     if t.alias and once.count(t.name.lower()) == 1
                     and t.name.lower() not in tables}
            for column in list(select.find_all(exp.Column)):
                table = named.get(column.table.lower())
                if table is not None and _defined_in(column, column.table.lower()) is select:
                    column.set("table", exp.to_identifier(table.name))
            for table in named.values():
                table.set("alias", None)
    return " ".join(t.sql(DIALECT) for t in trees)


def _direct_tables(select: exp.Select) -> dict[str, exp.Table]:
    """The tables of the SELECT's own FROM and JOINs, by the name its columns use for them."""
    sources = [select.args.get("from_"), *(select.args.get("joins") or [])]
    tables = [s.this for s in sources if s is not None and isinstance(s.this, exp.Table)]
    return {t.alias_or_name.lower(): t for t in tables}


def _defined_in(column: exp.Column, name: str) -> exp.Select | None:
    """The innermost SELECT around `column` whose own FROM or JOINs define `name`."""
    select = column.find_ancestor(exp.Select)
    while select is not None and name not in _direct_tables(select):
        select = select.find_ancestor(exp.Select)
    return select


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
