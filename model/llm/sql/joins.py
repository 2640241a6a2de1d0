"""Joins mended against the schema: the small model often picks the right columns but puts
them on the wrong table (`T2.Title` where T2 is `film_market_estimation`, not `film`), joins
two tables that share no column (`albums JOIN invoices ON T1.AlbumId = T2.AlbumId`), or joins
two tables off their key (`Patient.PCP = Appointment.Patient`, where the key is
`Appointment.Patient -> Patient.SSN`).

`mend_joins` rewrites a SELECT's FROM clause so that every column it reads exists where it
reads it: a column is moved to the one other table of the query that has it; an alias is
pointed at the table that holds every column read through it (the nearest name, when
several do); a join whose ON names missing columns, or equates two differently named columns
no foreign key pairs while keys join those tables (through one other table at most), is remade
along the schema's foreign keys, with the tables in between added; a column no table of the
query has is joined in from the nearest table that has it. Only foreign keys join, so no
join is invented. The caller checks the result as it checks any answer; it never runs here.
Of Spider's 6,904 training queries it changes 8: 6 wrong in Spider itself
(`albums.id = tracks.genre_id`), 2 joined through the table between, with the same rows.

sqlglot's optimizer (`qualify`) resolves names but cannot choose between tables; this module
makes that choice, which is why it is written by hand.
"""

from __future__ import annotations

import difflib

from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from model.llm.sql.parsing import (
    DIALECT,
    IMPLICIT_COLUMNS,
    scopes_of,
    select_aliases,
    single_statement,
)
from model.sqlite.schema import Edge, Schema, Table, foreign_key_graph, join_path

# Joins added to reach a column, at most: a longer path is a guess, not a mend.
MAX_BRIDGE = 2


def mend_joins(sql: str, schema: Schema) -> tuple[str, list[str]] | None:
    """(sql, what changed) with the FROM clauses mended as the module says; None when the SQL
    has nothing this can mend (or more than one statement)."""
    tree = single_statement(sql)
    if tree is None:
        return None
    graph = foreign_key_graph(schema)
    changes: list[str] = []
    owned: set[int] = set()  # columns of the scopes seen: inner first, as model.llm.sql.names
    for scope in scopes_of(tree):
        changes += _mend_scope(scope, schema, graph, owned)
    if not changes:
        return None
    return tree.sql(DIALECT), list(dict.fromkeys(changes))


def _columns(table: Table | None) -> set[str]:
    return {c.name.lower() for c in table.columns} if table is not None else set()


def _mend_scope(scope: Scope, schema: Schema, graph: dict[str, list[Edge]],
                owned: set[int]) -> list[str]:
    """The changes made to one SELECT; `owned` holds the columns inner scopes took (an outer
    scope also lists its subqueries' correlated columns)."""
    mine = [c for c in scope.columns if id(c) not in owned]
    owned.update(id(c) for c in mine)
    select = scope.expression
    if not isinstance(select, exp.Select) or select.args.get("from_") is None:
        return []
    sources = [select.args["from_"].this] + [j.this for j in select.args.get("joins") or []]
    if not all(isinstance(s, exp.Table) and isinstance(s.this, exp.Identifier) for s in sources):
        return []  # a subquery or table function in FROM: its columns are not the schema's
    if any(j.args.get("using") for j in select.args.get("joins") or []):
        return []
    skipped = select_aliases(scope) | IMPLICIT_COLUMNS
    columns = [c for c in mine
               if not isinstance(c.this, exp.Star) and c.name.lower() not in skipped]
    mend = _SelectMend(select, sources, columns, schema, graph)
    mend.move_misplaced()
    mend.repoint_aliases()
    mend.remake_joins()
    mend.join_missing()
    if mend.changes:
        _qualify_ambiguous(columns, mend.table_of, sources)
    return mend.changes


class _SelectMend:
    """One SELECT's FROM clause put right, a rule a method, in order; `changes` says what."""

    def __init__(self, select: exp.Select, sources: list[exp.Table], columns: list[exp.Column],
                 schema: Schema, graph: dict[str, list[Edge]]) -> None:
        self.select, self.sources, self.columns = select, sources, columns
        self.schema, self.graph = schema, graph
        self.alias_of = {id(s): s.alias_or_name.lower() for s in sources}
        self.table_of = {self.alias_of[id(s)]: schema.table(s.name) for s in sources}
        # aliases as the SQL has them
        self.written = {self.alias_of[id(s)]: s.alias_or_name for s in sources}
        self.in_on = {id(c) for j in select.args.get("joins") or []
                      for c in j.find_all(exp.Column)}
        self.changes: list[str] = []

    def holders(self, name: str) -> list[str]:
        return [a for a, t in self.table_of.items() if name.lower() in _columns(t)]

    def misplaced(self, c: exp.Column) -> bool:
        """Qualified by a table or alias of this query whose table lacks the column."""
        alias = c.table.lower()
        return alias in self.table_of and c.name.lower() not in _columns(self.table_of[alias])

    def move_misplaced(self) -> None:
        """1. A qualified column its table lacks, which exactly one other table here has."""
        for c in self.columns:
            if (self.misplaced(c) and id(c) not in self.in_on
                    and len(others := self.holders(c.name)) == 1):
                self.changes.append(f"{c.table}.{c.name} → {self.written[others[0]]}.{c.name}")
                c.set("table", exp.to_identifier(self.written[others[0]]))

    def repoint_aliases(self) -> None:
        """2. An alias that lacks columns read through it (outside ON): pointed at the table
        that has them all, the one whose name is nearest when several do."""
        for source in self.sources:
            alias = self.alias_of[id(source)]
            needed = {c.name.lower() for c in self.columns if id(c) not in self.in_on
                      and (c.table.lower() == alias
                           or (not c.table and len(self.sources) == 1))}
            if not needed or needed <= _columns(self.table_of[alias]):
                continue
            fits = [t for t in self.schema.tables if needed <= _columns(t)]
            if not fits:
                continue
            best = max(fits, key=lambda t: _similarity(t.name, source.name))
            self.changes.append(f"{source.name} → {best.name}")
            if not source.args.get("alias") and alias != best.name.lower():
                source.set("alias", exp.TableAlias(this=exp.to_identifier(source.name)))
            source.set("this", exp.to_identifier(best.name))
            self.table_of[alias] = best

    def remake_joins(self) -> None:
        """3. A join with no ON, or whose ON names a column its table lacks or equates columns
        off the key: remade along the foreign keys, with the tables in between joined first."""
        select, table_of, alias_of = self.select, self.table_of, self.alias_of
        for i, join in enumerate(list(select.args.get("joins") or [])):
            on, joined = join.args.get("on"), table_of[alias_of[id(join.this)]]
            broken = on is None or any(self.misplaced(col) for col in on.find_all(exp.Column))
            if joined is None or not (broken or _off_key(on, table_of, self.graph)):
                continue
            earlier = [table_of[alias_of[id(s)]] for s in self.sources[: i + 1]]
            path = join_path(self.graph, [t.name.lower() for t in earlier if t],
                             joined.name.lower(), MAX_BRIDGE + 1)
            if path is None:
                continue
            bridge, last = _bridge(path, table_of, self.written, alias_of[id(join.this)],
                                   self.schema)
            new_joins = select.args["joins"]
            at = new_joins.index(join)
            select.set("joins", new_joins[:at] + bridge + new_joins[at:])
            join.set("on", last)
            through = " through " + ", ".join(j.this.name for j in bridge) if bridge else ""
            self.changes.append(f"{join.this.name} joined by its foreign key{through}")

    def join_missing(self) -> None:
        """4. A column no table here has: joined from the nearest table that has it."""
        table_of = self.table_of
        for c in self.columns:
            if (c.table and not self.misplaced(c)) or self.holders(c.name) or id(c) in self.in_on:
                continue
            owners = [t for t in self.schema.tables if c.name.lower() in _columns(t)]
            present = [t.name.lower() for t in table_of.values() if t is not None]
            paths = [p for t in owners if (p := join_path(self.graph, present, t.name.lower(),
                                                          MAX_BRIDGE + 1)) is not None]
            if not paths:
                continue
            path = min(paths, key=len)
            target = next(t for t in owners if t.name.lower() == path[-1][2])
            alias = _free_alias(target.name, table_of)
            bridge, last = _bridge(path, table_of, self.written, alias, self.schema)
            table_of[alias.lower()], self.written[alias.lower()] = target, alias
            self.select.set("joins", (self.select.args.get("joins") or []) + bridge
                            + [exp.Join(this=_table(target.name, alias), on=last)])
            c.set("table", exp.to_identifier(alias))
            self.changes.append(f"{target.name} joined for {c.name}")


def _off_key(on: exp.Expression | None, table_of: dict[str, Table | None],
             graph: dict[str, list[Edge]]) -> bool:
    """Whether `on` equates two differently named columns that no foreign key pairs, of two
    tables foreign keys do join, directly (`Patient.PCP = Appointment.Patient`, where the key is
    Appointment.Patient -> Patient.SSN) or through one other table."""
    if not isinstance(on, exp.EQ):
        return False
    a, b = on.this, on.expression
    if not (isinstance(a, exp.Column) and isinstance(b, exp.Column)) \
            or a.name.lower() == b.name.lower():
        return False
    ta, tb = table_of.get(a.table.lower()), table_of.get(b.table.lower())
    if ta is None or tb is None or ta is tb:
        return False
    edges = [e for e in graph.get(ta.name.lower(), []) if e[2] == tb.name.lower()]
    pair = {(a.name.lower(), b.name.lower())}
    if edges:
        return not any((e[1].lower(), e[3].lower()) in pair for e in edges)
    return join_path(graph, [ta.name.lower()], tb.name.lower(), 2) is not None


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a.lower(), b.lower()).ratio()


def _free_alias(name: str, table_of: dict[str, Table | None]) -> str:
    alias, n = name, 1
    while alias.lower() in table_of:
        n += 1
        alias = f"{name}{n}"
    return alias


def _table(name: str, alias: str) -> exp.Table:
    table = exp.Table(this=exp.to_identifier(name))
    if alias.lower() != name.lower():
        table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    return table


def _bridge(path: list[Edge], table_of: dict[str, Table | None], written: dict[str, str],
            goal_alias: str, schema: Schema) -> tuple[list[exp.Join], exp.Expression]:
    """Joins for the tables between a path's start and its goal, and the goal's ON; the
    tables joined are added to `table_of` and `written`."""
    start = path[0][0]
    alias = next(written[a] for a, t in table_of.items()
                 if t is not None and t.name.lower() == start)
    joins = []
    for _, a_col, b_table, b_col in path[:-1]:
        table = schema.table(b_table)
        assert table is not None  # the graph holds the schema's tables only
        new_alias = _free_alias(table.name, table_of)
        table_of[new_alias.lower()], written[new_alias.lower()] = table, new_alias
        joins.append(exp.Join(this=_table(table.name, new_alias),
                              on=_equals(alias, a_col, new_alias, b_col)))
        alias = new_alias
    _, a_col, _, b_col = path[-1]
    return joins, _equals(alias, a_col, written.get(goal_alias.lower(), goal_alias), b_col)


def _equals(a: str, a_col: str, b: str, b_col: str) -> exp.Expression:
    return exp.EQ(this=exp.column(a_col, table=a), expression=exp.column(b_col, table=b))


def _qualify_ambiguous(columns: list[exp.Column], table_of: dict[str, Table | None],
                       sources: list[exp.Table]) -> None:
    """Unqualified columns that more than one table now has: given the first original one."""
    original = [s.alias_or_name for s in sources]
    for c in columns:
        if c.table:
            continue
        owners = [a for a in original if c.name.lower() in _columns(table_of.get(a.lower()))]
        if owners and sum(c.name.lower() in _columns(t) for t in table_of.values()) > 1:
            c.set("table", exp.to_identifier(owners[0]))
