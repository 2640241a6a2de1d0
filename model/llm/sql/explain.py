"""SQL read out in plain words, from sqlglot's tree: what a reader who does not read SQL needs
to judge an answer ("how many rows of customers where customers.Country is 'Brazil'").

Deterministic and without a model: a small model cannot explain reliably, but SQL has a
grammar, so its meaning can be read out exactly. Which rows (the tables and the join path),
the filters, the grouping ("for each album"), what is computed ("the sum of
tracks.UnitPrice"), the order ("highest first"), the limit, DISTINCT; subqueries and set
operations read the same way, in parentheses. Columns are named as the schema spells them,
with their table (an alias is read as its table). A construct it cannot read is named ("a
window function") or quoted as SQL, never guessed. `explain` never raises.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from model.llm.sql.explain_terms import ORDINALS, Frame, Source, Terms
from model.llm.sql.parsing import DIALECT, parse
from model.sqlite.schema import Schema, Table

NOT_PARSED = "not read out: sqlglot does not parse it"
NOT_READ = "not read out: a construct this reading does not know"
NOT_STATEMENT = "not read out: not a statement"

# What each aggregate computes, as "<words> <its argument>".
def explain(sql: str, schema: Schema | None = None) -> str:
    """`sql` read out, a sentence a statement; "" for none. With `schema`, columns are named
    as it spells them, with their table, and text columns sort "A to Z"."""
    if not sql.strip():
        return ""
    try:
        trees = [t for t in parse(sql) if t is not None]
    except (ParseError, TokenError):
        return NOT_PARSED
    try:
        return "\n".join(_Reader(schema).statement(tree) for tree in trees)
    except Exception:  # never guess, never raise: a tree shape this reader did not foresee
        return NOT_READ


class _Reader(Terms):
    def statement(self, tree: exp.Expression) -> str:
        if isinstance(tree, exp.Query):
            with_ = tree.args.get("with_")
            if with_ is None:
                text = "Shows " + self.query(tree)
            else:  # "With t being (…), shows …" (the tree is explain's own parse)
                tree.set("with_", None)
                text = "With " + self.ctes_read(with_) + ", shows " + self.query(tree)
        elif isinstance(tree, exp.Insert):
            text = self.insert(tree)
        elif isinstance(tree, exp.Update):
            text = self.update(tree)
        elif isinstance(tree, exp.Delete):
            text = self.delete(tree)
        elif isinstance(tree, exp.Create | exp.Drop):
            verb = "Creates" if isinstance(tree, exp.Create) else "Drops"
            kind = str(tree.args.get("kind") or "").lower()
            text = f"{verb} the {kind} {tree.this.sql(DIALECT) if tree.this else ''}".rstrip()
        elif isinstance(tree, exp.Command | exp.Pragma | exp.Transaction | exp.Commit):
            text = f"a {tree.sql(DIALECT).split()[0].upper()} statement, not read out"
        else:  # an expression alone ("s", while the user types "select")
            return NOT_STATEMENT
        if self.unread:
            text += " …and " + " and ".join(dict.fromkeys(self.unread)) + ", not read out"
        return text + "."

    # Queries

    def query(self, node: exp.Expr) -> str:
        """A query's reading without "Shows": "albums.Title from albums where …"."""
        with_ = node.args.get("with_")
        prefix = "" if with_ is None else "with " + self.ctes_read(with_) + ": "
        if isinstance(node, exp.Subquery):
            return prefix + self.query(node.this) + self.modifiers(node, None)
        if isinstance(node, exp.SetOperation):
            return prefix + self.set_operation(node)
        if isinstance(node, exp.Select):
            return prefix + self.select(node)
        return prefix + self.named(node)

    def ctes_read(self, with_: exp.Expression) -> str:
        """"t being (…); u being (…)", each CTE then known by its name."""
        parts = []
        for cte in with_.expressions:
            parts.append(f"{cte.alias} being ({self.query(cte.this)})")
            self.ctes[cte.alias.lower()] = cte.this
        return "; ".join(parts)

    def set_operation(self, node: exp.SetOperation) -> str:
        left, right = self.query(node.this), self.query(node.expression)
        if isinstance(node, exp.Union):
            kept = "duplicates kept" if not node.args.get("distinct") else "without duplicates"
            text = f"the rows of ({left}) and of ({right}), {kept}"
        elif isinstance(node, exp.Intersect):
            text = f"the rows found both in ({left}) and in ({right})"
        else:
            text = f"the rows of ({left}) that are not in ({right})"
        return text + self.modifiers(node, None)

    def select(self, node: exp.Select, outputs: bool = True) -> str:
        """`outputs`: False reads which rows alone ("rows from tracks where …", for EXISTS)."""
        frame = Frame({}, {}, list(node.expressions))
        sources = self.sources(node)
        repeated = _repeated([s for _, s in sources])
        for name, source in sources:
            if source.table is not None and source.table.name.lower() in repeated:
                source.shown = name
            frame.sources[name.lower()] = source
        for e in node.expressions:
            if isinstance(e, exp.Alias):
                frame.aliases[e.alias.lower()] = e.this
        self.frames.append(frame)
        try:
            return self._select(node, frame, repeated, outputs)
        finally:
            self.frames.pop()

    def _select(self, node: exp.Select, frame: Frame, repeated: set[str],
                outputs: bool) -> str:
        shown = [self.output(e) for e in node.expressions] if outputs else []
        if not outputs:
            text = "rows"
        elif node.args.get("distinct") is not None:
            text = ("the different values of " if len(shown) == 1
                    else "the different combinations of ") + ", ".join(shown)
        else:
            text = ", ".join(shown)
        group = node.args.get("group")
        if group is not None and group.expressions:
            text += " " + self.grouping(group.expressions)
        if node.args.get("from_") is not None:
            text += " from " + self.from_clause(node, repeated)
        if (where := node.args.get("where")) is not None:
            text += " where " + self.expr(where.this)
        if (having := node.args.get("having")) is not None:
            text += ", keeping the groups where " + self.expr(having.this)
        return text + self.modifiers(node, frame)

    def modifiers(self, node: exp.Expression, frame: Frame | None) -> str:
        """ORDER BY, LIMIT and OFFSET: ", sorted by … (highest first), the first 10 rows"."""
        text = ""
        order = node.args.get("order")
        if order is not None and order.expressions:
            if frame is not None:
                frame.prefer_alias = True
            keys = [self.order_key(o, frame) for o in order.expressions]
            text += ", sorted by " + ", then by ".join(keys)
        limit, offset = node.args.get("limit"), node.args.get("offset")
        if offset is not None:
            text += f", skipping the first {self.expr(offset.expression)}"
        if limit is not None:
            n = limit.expression
            if isinstance(n, exp.Literal) and n.this == "1":
                text += ", the first row only"
            else:
                text += f", the first {self.expr(n)} rows"
        return text

    def order_key(self, ordered: exp.Expression, frame: Frame | None) -> str:
        key = ordered.this if isinstance(ordered, exp.Ordered) else ordered
        desc = isinstance(ordered, exp.Ordered) and bool(ordered.args.get("desc"))
        if frame is None:  # a set operation's: by the columns of its result
            direction = "descending" if desc else "ascending"
            if isinstance(key, exp.Literal) and not key.is_string and key.this.isdigit():
                return f"the {_ordinal(int(key.this))} column ({direction})"
            if isinstance(key, exp.Column):
                return f"the column {key.name} ({direction})"
            return f"{self.expr(key)} ({direction})"
        if isinstance(key, exp.Literal) and not key.is_string and frame is not None:
            position = int(key.this) if key.this.isdigit() else 0
            if 0 < position <= len(frame.outputs):  # ORDER BY 2: the second column shown
                key = frame.outputs[position - 1]
                key = key.this if isinstance(key, exp.Alias) else key
        kind = self.kind_of(key)
        if kind == "text":
            direction = "Z to A" if desc else "A to Z"
        elif kind == "date":
            direction = "latest first" if desc else "earliest first"
        else:
            direction = "highest first" if desc else "lowest first"
        return f"{self.expr(key)} ({direction})"

    def grouping(self, keys: list[exp.Expression]) -> str:
        frame = self.frames[-1]
        read = []
        for key in keys:
            if isinstance(key, exp.Literal) and not key.is_string and key.this.isdigit() \
                    and 0 < int(key.this) <= len(frame.outputs):  # GROUP BY 1
                key = frame.outputs[int(key.this) - 1]
                key = key.this if isinstance(key, exp.Alias) else key
            read.append(self.group_key(key))
        if len(read) == 1:
            return "for each " + read[0]
        return "for each combination of " + ", ".join(read)

    def group_key(self, key: exp.Expression) -> str:
        """"album (albums.AlbumId)" for a table's key, else the column read."""
        text = self.expr(key)
        if isinstance(key, exp.Column):
            source = self.source_of(key)
            if source is not None and source.table is not None and \
                    _is_key(source.table, key.name):
                return f"{_singular(source.shown)} ({text})"
            return text
        return "value of " + text

    def output(self, e: exp.Expression) -> str:
        if isinstance(e, exp.Alias):
            return f"{self.expr(e.this)} (as {e.alias})"
        return self.expr(e)

    # FROM and the joins

    def sources(self, node: exp.Select) -> list[tuple[str, Source]]:
        """Each source of the SELECT by the name its columns use for it."""
        out = []
        from_ = node.args.get("from_")
        items = ([from_.this] if from_ is not None else []) + \
            [j.this for j in node.args.get("joins") or []]
        for item in items:
            if isinstance(item, exp.Table):
                out.append((item.alias_or_name, self.table_source(item)))
            else:
                outputs = _output_names(item.this if isinstance(item, exp.Subquery) else item)
                out.append((item.alias_or_name, Source(item.alias_or_name, None, outputs)))
        return out

    def table_source(self, table: exp.Table) -> Source:
        cte = self.ctes.get(table.name.lower())
        if cte is not None:
            return Source(table.alias_or_name if table.alias else table.name, None,
                           _output_names(cte))
        known = self.schema.table(table.name) if self.schema is not None else None
        return Source(known.name if known is not None else table.name, known)

    def table_name(self, table: exp.Expression) -> str:
        if isinstance(table, exp.Table):
            source = self.table_source(table)
            name = source.table.name if source.table is not None else table.name
            return f"{name} (as {table.alias})" if table.alias and \
                source.shown.lower() != table.alias.lower() and self.is_repeated(table) \
                else name
        if isinstance(table, exp.Subquery):
            alias = f" (as {table.alias})" if table.alias else ""
            return f"({self.query(table.this)}){alias}"
        return self.named(table)

    def is_repeated(self, table: exp.Table) -> bool:
        frame = self.frames[-1] if self.frames else None
        if frame is None:
            return False
        source = frame.sources.get(table.alias_or_name.lower())
        return source is not None and source.shown.lower() == table.alias_or_name.lower() \
            and source.table is not None and source.table.name.lower() != source.shown.lower()

    def from_clause(self, node: exp.Select, repeated: set[str]) -> str:
        text = self.table_name(node.args["from_"].this)
        joins = node.args.get("joins") or []
        for i, join in enumerate(joins):
            other = self.table_name(join.this)
            side, kind = join.args.get("side") or "", join.args.get("kind") or ""
            on, using = join.args.get("on"), join.args.get("using")
            bare = (on is None or (isinstance(on, exp.Boolean) and on.this)) and not using \
                and join.args.get("method") != "NATURAL"
            # "a JOIN b JOIN c ON <both conditions>": b's condition is c's ON.
            later_on = any(_has_on(j) for j in joins[i + 1:])
            if kind.upper() == "CROSS" or (bare and not later_on):
                text += f" paired with every row of {other}"
                continue
            text += f" joined with {other}"
            if bare:
                continue
            if join.args.get("method") == "NATURAL":
                text += " on their same-named columns"
            elif using:
                text += " on the same " + ", ".join(u.name for u in using)
            else:
                text += " on " + self.expr(on)
            text += {"LEFT": " (rows without a match kept)",
                     "RIGHT": f" (rows of {other} without a match kept)",
                     "FULL": " (rows without a match on either side kept)"}.get(side.upper(), "")
        return text

    def insert(self, e: exp.Insert) -> str:
        target = e.this.this if isinstance(e.this, exp.Schema) else e.this
        name = self.table_name(target)
        source = e.expression
        if isinstance(source, exp.Values):
            rows = len(source.expressions)
            return f"Adds {rows} row{'s' * (rows != 1)} to {name}"
        if isinstance(source, exp.Query):
            return f"Adds to {name} the rows of ({self.query(source)})"
        return f"Adds rows to {name}"

    def update(self, e: exp.Update) -> str:
        frame = Frame({e.this.alias_or_name.lower(): self.table_source(e.this)}, {})
        self.frames.append(frame)
        try:
            sets = ", ".join(f"{self.expr(s.this)} to {self.expr(s.expression)}"
                             for s in e.expressions if isinstance(s, exp.EQ))
            text = f"Changes {self.table_name(e.this)}: sets {sets}"
            where = e.args.get("where")
            return text + (f" where {self.expr(where.this)}" if where is not None
                           else " in every row")
        finally:
            self.frames.pop()

    def delete(self, e: exp.Delete) -> str:
        frame = Frame({e.this.alias_or_name.lower(): self.table_source(e.this)}, {})
        self.frames.append(frame)
        try:
            where = e.args.get("where")
            if where is None:
                return f"Deletes every row of {self.table_name(e.this)}"
            return f"Deletes the rows of {self.table_name(e.this)} where {self.expr(where.this)}"
        finally:
            self.frames.pop()


def _output_names(query: exp.Expression) -> set[str]:
    """The lower-cased column names a subquery gives its reader."""
    while isinstance(query, exp.Subquery | exp.SetOperation):
        query = query.this
    if not isinstance(query, exp.Select):
        return set()
    return {e.alias_or_name.lower() for e in query.expressions if e.alias_or_name}


def _repeated(sources: Iterable[Source]) -> set[str]:
    """The tables a SELECT reads more than once (their columns are named by alias)."""
    names = [s.table.name.lower() for s in sources if s.table is not None]
    return {n for n in names if names.count(n) > 1}


def _ordinal(n: int) -> str:
    suffix = "th" if n % 100 in (11, 12, 13) else ORDINALS.get(n % 10, "th")
    return f"{n}{suffix}"


def _has_on(join: exp.Expression) -> bool:
    on = join.args.get("on")
    return on is not None and not (isinstance(on, exp.Boolean) and on.this)


def _is_key(table: Table, column: str) -> bool:
    keys = [c.name.lower() for c in table.columns if c.primary_key]
    return keys == [column.lower()]


def _singular(name: str) -> str:
    """"albums" -> "album", "countries" -> "country": the grouping said of one row."""
    lowered = name.lower()
    if lowered.endswith("ies") and len(name) > 4:
        return name[:-3] + "y"
    if lowered.endswith("ses") or lowered.endswith("xes"):
        return name[:-2]
    if lowered.endswith("s") and not lowered.endswith("ss"):
        return name[:-1]
    return name
