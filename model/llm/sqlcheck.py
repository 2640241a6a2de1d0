"""From model output to checked SQL: extract the statement, pretty-print it, check its names.

`check` never runs the SQL: it parses it with sqlglot, resolves every table and column
against the live schema, and asks SQLite to prepare it (`EXPLAIN`), which fails on exactly
what running it would fail on, without reading a row. Then it looks for comparisons that can
never be true, a column of numbers against text (`GenreId = 'Rock'`), and warns of text that
no row holds (`Name = 'AC/DC'` when AC/DC is a Composer): these read a bounded number of
rows through the same read-only connection.
"""

from __future__ import annotations

import difflib
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, replace

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.tokens import TokenType

from model.sqlite.schema import Column, Schema, Table, quote
from model.sqlite.statements import split

DIALECT = "sqlite"
# sqlglot 30's parser backtracks exponentially over JOINs without ON or USING: each one doubles
# the time (12 take 0.1 s, 30 would take days), and a degenerate answer repeats "JOIN t AS Tn"
# up to its token limit. Longer runs are not handed to sqlglot; SQLite's EXPLAIN still checks.
MAX_BARE_JOINS = 8
# Rows looked at to tell whether a numeric column holds only numbers (the check stays instant
# on a table of millions; text first seen after these rows would go unnoticed).
TEXT_PROBE_ROWS = 10_000
# Tables up to this many rows are searched for a compared value (`Name = 'AC/DC'`); bigger
# ones are not (a full scan on every answer would make the check slow).
VALUE_PROBE_ROWS = 100_000
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")

# Markers that end an answer (the model's turn is over) or show it repeating its prompt.
_TURN_MARKERS = ("<end_of_turn>", "<start_of_turn>", "<eos>")
_ANSWER_LABEL = "Generated SQL Query:"
_ECHO_LABELS = ("SQL Question:", "SQL Context:")
_FENCE = re.compile(r"```[ \t]*(?:sql|sqlite)?[ \t]*\n?(.*?)(?:```|$)", re.IGNORECASE | re.DOTALL)
_SQL_START = re.compile(
    r"\b(SELECT|WITH|VALUES|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|PRAGMA|EXPLAIN)\b",
    re.IGNORECASE,
)
# SQLite tables always have these, unnamed in the schema.
IMPLICIT_COLUMNS = {"rowid", "oid", "_rowid_"}
_SYSTEM_TABLES = {
    "sqlite_master": ["type", "name", "tbl_name", "rootpage", "sql"],
    "sqlite_schema": ["type", "name", "tbl_name", "rootpage", "sql"],
    "sqlite_temp_master": ["type", "name", "tbl_name", "rootpage", "sql"],
    "sqlite_sequence": ["name", "seq"],
}


@dataclass(frozen=True)
class Problem:
    """Something wrong with a statement, said in one line.

    `fatal` problems stop SQLite from running it (a parse error, or EXPLAIN failing) or make
    it answer nothing (a comparison that is never true); the others are warnings, e.g.
    `"2010"` that SQLite reads as a string only for compatibility.
    `start`/`end` are character offsets into the checked SQL (end exclusive), when known.
    """

    message: str
    kind: str  # "parse", "table", "column", "sqlite", "type" or "value"
    fatal: bool = True
    start: int | None = None
    end: int | None = None
    name: str = ""  # the table or column at fault, as written ("c.Foo", "foo")
    suggestion: str = ""  # the schema's name it most likely means ("CustomerId")

    def __str__(self) -> str:
        return self.message


# ----------------------------------------------------------------------------- extract


def is_echo(text: str) -> bool:
    """Whether an answer (so far) is the model repeating its prompt instead of answering.

    The base model without its adapter does this; its SQL, if any, would only come after
    the repeated schema, hundreds of tokens later, so callers stop reading early.
    """
    return any(label in text for label in _ECHO_LABELS)


def extract_sql(text: str) -> str:
    """The first SQL statement in a model's answer, without fences, prose or a repeated prompt.

    Returns "" when the answer holds no SQL (e.g. the model only echoed its prompt).
    """
    for marker in _TURN_MARKERS:
        text = text.split(marker, 1)[0]
    if _ANSWER_LABEL in text:
        # The model repeated its prompt: the answer, if any, follows the last label.
        text = text.rsplit(_ANSWER_LABEL, 1)[1]
    elif any(label in text for label in _ECHO_LABELS):
        return ""  # an echo cut off before the answer: any SQL in it is the schema's
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1)
    # The first keyword that starts a statement sqlglot can parse ("I select the albums:
    # SELECT ..." starts at the second); failing that, the first keyword at all.
    first = ""
    for match in _SQL_START.finditer(text):
        statements = split(text[match.start() :])
        if not statements:
            break
        candidate = _drop_trailing_prose(statements[0].text)
        if _parses(candidate):
            return candidate
        first = first or candidate
    return first


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


def _parses(sql: str) -> bool:
    try:
        return bool(parse(sql))
    except (ParseError, TokenError):
        return False


def _drop_trailing_prose(sql: str) -> str:
    """Cut lines of prose after the SQL ("This query counts ..."): the longest prefix of
    whole lines that parses wins; if none parses, the text is kept for `check` to report."""
    lines = sql.splitlines()
    if len(lines) == 1 or _parses(sql):
        return sql.strip()
    for end in range(len(lines) - 1, 0, -1):
        head = "\n".join(lines[:end]).strip()
        if head and _parses(head):
            return head
    return sql.strip()


# ------------------------------------------------------------------------------ pretty


def pretty(sql: str) -> str:
    """sqlglot's pretty SQLite; the input unchanged when sqlglot cannot parse it."""
    if not sql.strip():
        return sql
    try:
        out = [t.sql(dialect=DIALECT, pretty=True) for t in parse(sql) if t is not None]
    except (ParseError, TokenError):
        return sql
    return ";\n\n".join(s for s in out if s) or sql


# ------------------------------------------------------------------------------- check


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
        problems.extend(_check_names(tree, scopes, schema))
    if conn is None:
        return problems
    error = explain_error(sql, conn)
    if error is None:
        # SQLite prepares it, so naming problems are warnings (e.g. a "string" in quotes).
        warnings = [replace(p, fatal=False) for p in problems]
        return [*warnings, *_check_values([s for _, scopes in scoped for s in scopes], schema,
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


# -------------------------------------------------------------------------- name check


def _span(node: exp.Expression) -> tuple[int | None, int | None]:
    meta = node.meta if node.meta else {}
    if "start" in meta and "end" in meta:
        return meta["start"], meta["end"] + 1
    return None, None


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


def _check_names(tree: exp.Expression, scopes: list[Scope], schema: Schema) -> list[Problem]:
    problems: list[Problem] = []
    ctes = _cte_names(tree)
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # a table-valued function such as json_each(...)
        name = table.name
        if name.lower() in ctes or _table_columns(schema, name) is not None:
            continue
        start, end = _span(table.this)
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


def scopes_of(tree: exp.Expression) -> list[Scope]:
    """The statement's scopes, inner first; none when sqlglot gives up on its shape (SQLite's
    EXPLAIN still checks it)."""
    try:
        return list(traverse_scope(tree))
    except Exception:
        return []


def _check_columns(scopes: list[Scope], schema: Schema) -> list[Problem]:
    problems: list[Problem] = []
    owned: set[int] = set()
    # traverse_scope yields inner scopes first: a column belongs to the first scope listing it
    # (an outer scope also lists its subqueries' correlated columns).
    for scope in scopes:
        aliases = select_aliases(scope)
        for column in scope.columns:
            if id(column) in owned or isinstance(column.this, exp.Star):
                continue
            owned.add(id(column))
            problem = _check_column(column, scope, schema, aliases)
            if problem is not None:
                problems.append(problem)
    return problems


def select_aliases(scope: Scope) -> set[str]:
    """The scope's `AS name`s, lower-cased (SQLite lets WHERE, ORDER BY ... use them)."""
    selects = getattr(scope.expression, "selects", [])
    return {s.alias.lower() for s in selects if isinstance(s, exp.Alias)}


def _visible_sources(scope: Scope) -> Iterable[tuple[str, object]]:
    """This scope's sources, then its enclosing scopes' (correlated subqueries)."""
    current: Scope | None = scope
    while current is not None:
        yield from current.sources.items()
        current = current.parent


def _check_column(
    column: exp.Column, scope: Scope, schema: Schema, aliases: set[str]
) -> Problem | None:
    name = column.name
    lowered = name.lower()
    start, end = _span(column.this)
    if lowered in IMPLICIT_COLUMNS:
        return None
    qualifier = column.table
    if qualifier:
        for source_name, source in _visible_sources(scope):
            if source_name.lower() == qualifier.lower():
                columns = _source_columns(source, schema)
                if columns is None or lowered in {c.lower() for c in columns}:
                    return None
                guess = _suggest(name, columns)
                return Problem(f"unknown column {qualifier}.{name}{_hint(guess)}", "column",
                               True, start, end, name, guess)
        q_start, q_end = _span(column.args["table"])
        return Problem(
            f"unknown table or alias {qualifier} (in {qualifier}.{name})",
            "table",
            True,
            q_start,
            q_end,
            f"{qualifier}.{name}",
        )
    if lowered in aliases:
        return None  # SQLite lets WHERE, GROUP BY, HAVING and ORDER BY use select aliases
    candidates: list[str] = []
    for _, source in _visible_sources(scope):
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


# ---------------------------------------------------------------------------- values


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


def _check_values(scopes: list[Scope], schema: Schema, conn: sqlite3.Connection) -> list[Problem]:
    """Comparisons of a table's column with text that cannot or does not match.

    `=`, `<>` and `IN` between a column of numbers (numeric affinity, holding numbers and no
    text) and text that is not a number are never true: SQLite compares them as different
    types (text affinity converts the number instead; no affinity converts neither way). A
    fatal "type" problem. `=` with text that no row holds is a "value" warning: the question
    may well ask about something absent, but more often the model picked the wrong column.
    """
    problems: list[Problem] = []
    searchable: dict[str, bool] = {}  # table -> small enough to search (counted once)
    for scope in scopes:
        for column in scope.columns:
            parent = column.parent
            if isinstance(parent, exp.EQ | exp.NEQ):
                values = [parent.expression if parent.this is column else parent.this]
            elif isinstance(parent, exp.In) and parent.this is column:
                values = list(parent.expressions)
            else:
                continue
            texts = [_text(v, scope, schema) for v in values]
            found = _resolve(column, scope, schema)
            if not texts or None in texts or found is None or found[0].kind == "view":
                continue  # not all text, or not a table's column (probing a view runs it)
            table, col = found
            start, end = _span(column.this)
            name = column.sql(dialect=DIALECT)
            text = str(texts[0])
            if (not any(_NUMBER.fullmatch(str(t)) for t in texts)
                    and affinity(col.type) not in ("TEXT", "BLOB")
                    and _holds_only_numbers(conn, table.name, col.name)):
                problems.append(Problem(
                    f"{col.name} holds numbers, so it never equals the text '{text}'",
                    "type", True, start, end, name))
            elif isinstance(parent, exp.EQ) and _never_holds(conn, table.name, col.name, text,
                                                             searchable):
                problems.append(Problem(f"no row of {table.name} has {col.name} = '{text}'",
                                        "value", False, start, end, name))
    return problems


def _text(node: exp.Expression, scope: Scope, schema: Schema) -> str | None:
    """The text a value stands for: a 'string', or a "string" that names no column."""
    if isinstance(node, exp.Literal) and node.is_string:
        return str(node.this)
    quoted_name = (isinstance(node, exp.Column) and not node.table
                   and node.this.args.get("quoted"))
    if quoted_name and _check_column(node, scope, schema, select_aliases(scope)) is not None:
        return node.name  # names no column, so SQLite reads it as text
    return None


def _resolve(column: exp.Column, scope: Scope, schema: Schema) -> tuple[Table, Column] | None:
    """The schema table and column a column reference reads, when it is a plain table's."""
    qualifier = column.table.lower()
    for name, source in _visible_sources(scope):
        if qualifier and name.lower() != qualifier:
            continue
        if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
            table = schema.table(source.name)
            found = table.column(column.name) if table is not None else None
            if found is not None:
                return table, found
    return None


def _never_holds(conn: sqlite3.Connection, table: str, column: str, value: str,
                 searchable: dict[str, bool]) -> bool:
    """Whether no row has column = value (False when the table is too big to tell quickly).
    `searchable` remembers each table's size verdict across the calls for one statement."""
    try:
        if table not in searchable:
            (rows,) = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {quote(table)} "
                                   f"LIMIT {VALUE_PROBE_ROWS + 1})").fetchone()
            searchable[table] = rows <= VALUE_PROBE_ROWS
        if not searchable[table]:
            return False
        found = conn.execute(f"SELECT 1 FROM {quote(table)} WHERE {quote(column)} = ? LIMIT 1",
                             (value,)).fetchone()
    except sqlite3.Error:
        return False
    return found is None


def _holds_only_numbers(conn: sqlite3.Connection, table: str, column: str) -> bool:
    """Numbers and no text in the column's first TEXT_PROBE_ROWS rows (NULLs aside)."""
    probe = (f"SELECT max(typeof(v) IN ('integer', 'real')), max(typeof(v) IN ('text', 'blob')) "
             f"FROM (SELECT {quote(column)} AS v FROM {quote(table)} LIMIT {TEXT_PROBE_ROWS})")
    try:
        numbers, text = conn.execute(probe).fetchone()
    except sqlite3.Error:
        return False  # cannot tell: say nothing
    return bool(numbers) and not text
