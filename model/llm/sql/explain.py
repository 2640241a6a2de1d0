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

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from model.llm.sql.parsing import DIALECT, parse
from model.sqlite.schema import Schema, Table

NOT_PARSED = "not read out: sqlglot does not parse it"
NOT_READ = "not read out: a construct this reading does not know"
NOT_STATEMENT = "not read out: not a statement"

# What each aggregate computes, as "<words> <its argument>".
AGGREGATES: dict[type[exp.Expr], str] = {
    exp.Sum: "the sum of",
    exp.Avg: "the average of",
    exp.Min: "the smallest",
    exp.Max: "the largest",
    exp.GroupConcat: "the list of",
}
_COMPARISONS: dict[type[exp.Expr], str] = {
    exp.EQ: "is", exp.NEQ: "is not", exp.GT: "is more than", exp.GTE: "is at least",
    exp.LT: "is less than", exp.LTE: "is at most", exp.NullSafeEQ: "is",
    exp.NullSafeNEQ: "is not",
}
_SYMBOLS: dict[type[exp.Expr], str] = {
    exp.EQ: "=", exp.NEQ: "!=", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<=",
    exp.Add: "+", exp.Sub: "-", exp.Mul: "×", exp.Div: "/", exp.Mod: "modulo",
}
_SCALAR: dict[type[exp.Expr], str] = {
    exp.Lower: "{} in lower case", exp.Upper: "{} in upper case",
    exp.Length: "the length of {}", exp.Abs: "the absolute value of {}",
}
# Constructs named rather than read ("…and a window function").
_NAMED: dict[type[exp.Expr], str] = {exp.Window: "a window function"}
_TEXT_TYPES = ("char", "text", "clob", "string")
_DATE_TYPES = ("date", "time")
_DATE_PARTS = {"%Y": "the year", "%m": "the month number", "%d": "the day of the month",
               "%Y-%m": "the year and month", "%Y-%m-%d": "the date", "%H": "the hour"}
_ORDINALS = {1: "st", 2: "nd", 3: "rd"}


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


@dataclass
class _Source:
    """A table or subquery a SELECT reads, and how its columns are named."""

    shown: str  # the prefix of its columns: the table's name, or its alias when needed
    table: Table | None = None  # the schema's table (None: a subquery, a CTE, an unknown name)
    outputs: set[str] = field(default_factory=set)  # a subquery's column names, lower-cased


@dataclass
class _Frame:
    """What a SELECT's column names can refer to."""

    sources: dict[str, _Source]  # by the name its columns use, lower-cased
    aliases: dict[str, exp.Expression]  # its `AS name`s, lower-cased
    outputs: list[exp.Expression] = field(default_factory=list)  # what it selects (ORDER BY 2)
    prefer_alias: bool = False  # ORDER BY: SQLite takes an alias before a column


class _Reader:
    def __init__(self, schema: Schema | None) -> None:
        self.schema = schema
        self.frames: list[_Frame] = []
        self.ctes: dict[str, exp.Expression] = {}
        self.unread: list[str] = []

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
        frame = _Frame({}, {}, list(node.expressions))
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

    def _select(self, node: exp.Select, frame: _Frame, repeated: set[str],
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

    def modifiers(self, node: exp.Expression, frame: _Frame | None) -> str:
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

    def order_key(self, ordered: exp.Expression, frame: _Frame | None) -> str:
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

    def sources(self, node: exp.Select) -> list[tuple[str, _Source]]:
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
                out.append((item.alias_or_name, _Source(item.alias_or_name, None, outputs)))
        return out

    def table_source(self, table: exp.Table) -> _Source:
        cte = self.ctes.get(table.name.lower())
        if cte is not None:
            return _Source(table.alias_or_name if table.alias else table.name, None,
                           _output_names(cte))
        known = self.schema.table(table.name) if self.schema is not None else None
        return _Source(known.name if known is not None else table.name, known)

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

    # Expressions

    def expr(self, e: exp.Expression | None) -> str:
        if e is None:
            return ""
        for kind, name in _NAMED.items():
            if isinstance(e, kind):
                self.unread.append(name)
                inner = e.this.sql_name().lower() if isinstance(e.this, exp.Func) else ""
                return f"{name} ({inner})" if inner else name
        reader = self._readers().get(type(e))
        if reader is not None:
            return reader(e)
        if isinstance(e, exp.AggFunc):
            return self.aggregate(e)
        if isinstance(e, exp.Binary) and type(e) in _COMPARISONS:
            return self.comparison(e)
        if isinstance(e, exp.Binary) and type(e) in _SYMBOLS:
            return f"{self.expr(e.this)} {_SYMBOLS[type(e)]} {self.expr(e.expression)}"
        if isinstance(e, exp.Func):
            return self.function(e)
        if isinstance(e, exp.Query):
            return f"({self.query(e)})"
        return self.named(e)

    def _readers(self) -> dict[type[exp.Expression], Callable[..., str]]:
        return {
            exp.Column: self.column, exp.Star: lambda e: "every column",
            exp.Literal: _literal, exp.Null: lambda e: "NULL",
            exp.Boolean: lambda e: "true" if e.this else "false",
            exp.Paren: lambda e: f"({self.expr(e.this)})",
            exp.Neg: lambda e: f"-{self.expr(e.this)}",
            exp.And: lambda e: self.logical(e, "and"), exp.Or: lambda e: self.logical(e, "or"),
            exp.Not: self.negation, exp.Is: self.is_, exp.Like: self.like,
            exp.ILike: self.like, exp.Glob: self.like, exp.In: self.in_,
            exp.Between: lambda e: f"{self.expr(e.this)} is between "
                                   f"{self.expr(e.args['low'])} and {self.expr(e.args['high'])}",
            exp.Exists: self.exists, exp.TimeToStr: self.time_to_str,
            exp.TsOrDsToTimestamp: lambda e: self.expr(e.this),
            exp.Subquery: lambda e: f"({self.query(e)})",
            exp.Count: self.count, exp.Case: self.case, exp.If: self.if_,
            exp.Cast: lambda e: f"{self.expr(e.this)} as {e.args['to'].sql(DIALECT)}",
            exp.DPipe: lambda e: f"{self.expr(e.this)} followed by {self.expr(e.expression)}",
            exp.Coalesce: lambda e: ", or else ".join(
                self.expr(a) for a in [e.this, *e.expressions]),
            exp.Round: self.round_, exp.Distinct: lambda e: "different " + ", ".join(
                self.expr(a) for a in e.expressions),
            exp.Anonymous: self.anonymous, exp.Alias: self.output,
        }

    def column(self, c: exp.Column) -> str:
        name = c.name
        frame_alias = self.alias_target(c)
        if frame_alias is not None:
            return self.expr(frame_alias)
        source = self.source_of(c)
        if source is None:
            if not c.table and c.this.args.get("quoted"):  # SQLite: "Bob" naming no column
                return _quote(name)
            return c.sql(DIALECT)
        if source.table is not None and (known := source.table.column(name)) is not None:
            name = known.name
        return f"{source.shown}.{name}"

    def alias_target(self, c: exp.Column) -> exp.Expression | None:
        """The selected expression an unqualified name refers to, where it is an alias."""
        if c.table or not self.frames:
            return None
        frame, key = self.frames[-1], c.name.lower()
        target = frame.aliases.get(key)
        if target is None or (isinstance(target, exp.Column) and target.name.lower() == key):
            return None
        if frame.prefer_alias or self.source_of(c) is None:
            return target
        return None

    def source_of(self, c: exp.Column) -> _Source | None:
        """Where a column comes from: its table's alias, else the innermost SELECT one of whose
        tables or subqueries has it (correlated subqueries see outer ones)."""
        if c.table:
            for frame in reversed(self.frames):
                if (source := frame.sources.get(c.table.lower())) is not None:
                    return source
            return None
        name = c.name.lower()
        for frame in reversed(self.frames):
            for source in frame.sources.values():
                if source.table is not None and source.table.column(name) is not None:
                    return source
                if name in source.outputs:
                    return source
            if self.schema is None and len(frame.sources) == 1:
                return next(iter(frame.sources.values()))
        return None

    def kind_of(self, e: exp.Expression) -> str:
        """"text", "date" or "" (a number, or not known), by the column's declared type."""
        if isinstance(e, exp.Alias | exp.Min | exp.Max):
            return self.kind_of(e.this)
        if isinstance(e, exp.Lower | exp.Upper | exp.DPipe):
            return "text"
        if not isinstance(e, exp.Column):
            return ""
        source = self.source_of(e)
        known = source.table.column(e.name) if source and source.table else None
        declared = known.type.lower() if known is not None else ""
        if any(t in declared for t in _DATE_TYPES):
            return "date"
        return "text" if any(t in declared for t in _TEXT_TYPES) else ""

    def logical(self, e: exp.Expression, word: str) -> str:
        parts = []
        for side in (e.this, e.expression):
            text = self.expr(side)
            # An OR inside an AND (and the reverse) is bracketed, as it binds.
            if isinstance(side, exp.And | exp.Or) and not isinstance(side, type(e)):
                text = f"({text})"
            parts.append(text)
        return f" {word} ".join(parts)

    def comparison(self, e: exp.Binary) -> str:
        left, right = e.this, e.expression
        if isinstance(left, exp.Column) and isinstance(right, exp.Column) \
                and not (right.this.args.get("quoted") and self.source_of(right) is None):
            return f"{self.expr(left)} {_SYMBOLS.get(type(e), '=')} {self.expr(right)}"
        return f"{self.expr(left)} {_COMPARISONS[type(e)]} {self.expr(right)}"

    def negation(self, e: exp.Not) -> str:
        inner = e.this
        if isinstance(inner, exp.Is):
            return self.is_(inner, negate=True)
        if isinstance(inner, exp.In):
            return self.in_(inner, negate=True)
        if isinstance(inner, exp.Like | exp.Glob | exp.ILike):
            return self.like(inner, negate=True)
        if isinstance(inner, exp.Between):
            return self.expr(inner).replace(" is between ", " is not between ", 1)
        if isinstance(inner, exp.Exists):
            return self.exists(inner, negate=True)
        return f"not ({self.expr(inner)})"

    def exists(self, e: exp.Exists, negate: bool = False) -> str:
        """"there are rows (from tracks where …)": what EXISTS selects does not matter."""
        inner = e.this.this if isinstance(e.this, exp.Subquery) else e.this
        if isinstance(inner, exp.Select):
            which = self.select(inner, outputs=False).removeprefix("rows ")
        else:
            which = "of " + self.query(inner)
        return f"there are {'no ' * negate}rows ({which})"

    def time_to_str(self, e: exp.Expression) -> str:
        """strftime('%Y', d): "the year of d"; other formats quoted."""
        form = e.args.get("format")
        part = _DATE_PARTS.get(form.this) if isinstance(form, exp.Literal) else None
        if part is not None:
            return f"{part} of {self.expr(e.this)}"
        return f"{self.expr(e.this)} written as {self.expr(form)}"

    def is_(self, e: exp.Is, negate: bool = False) -> str:
        return f"{self.expr(e.this)} is {'not ' * negate}{self.expr(e.expression)}"

    def like(self, e: exp.Expression, negate: bool = False) -> str:
        negate = negate or bool(e.args.get("negate"))
        verb = "does not match" if negate else "matches"
        return f"{self.expr(e.this)} {verb} {self.expr(e.expression)}"

    def in_(self, e: exp.In, negate: bool = False) -> str:
        negate = negate or bool(e.args.get("negate"))
        query = e.args.get("query")
        if query is not None:
            inner = query.this if isinstance(query, exp.Subquery) else query
            return f"{self.expr(e.this)} is {'not ' * negate}among ({self.query(inner)})"
        values = ", ".join(self.expr(v) for v in e.expressions)
        return f"{self.expr(e.this)} is {'not ' * negate}one of {values}"

    def count(self, e: exp.Count) -> str:
        arg = e.this
        if arg is None or isinstance(arg, exp.Star):
            return "how many rows"
        if isinstance(arg, exp.Distinct):
            return "how many different " + ", ".join(self.expr(a) for a in arg.expressions)
        return f"how many rows with a {self.expr(arg)}"

    def aggregate(self, e: exp.AggFunc) -> str:
        words = next((w for kind, w in AGGREGATES.items() if isinstance(e, kind)), None)
        if words is None:
            return self.function(e)
        arg = e.this
        if isinstance(arg, exp.Distinct):
            return f"{words} the different " + ", ".join(self.expr(a) for a in arg.expressions)
        return f"{words} {self.expr(arg)}"

    def anonymous(self, e: exp.Anonymous) -> str:
        if str(e.this).lower() == "total" and len(e.expressions) == 1:  # SQLite's sum
            return f"the sum of {self.expr(e.expressions[0])}"
        return self.function(e)

    def function(self, e: exp.Func) -> str:
        template = _SCALAR.get(type(e))
        args = [self.expr(a) for a in _arguments(e)]
        if template is not None and len(args) == 1:
            return template.format(args[0])
        name = e.name if isinstance(e, exp.Anonymous) else e.sql_name()
        return f"{name.lower()}({', '.join(args)})"

    def round_(self, e: exp.Round) -> str:
        places = e.args.get("decimals")
        text = f"{self.expr(e.this)} rounded"
        return text + (f" to {self.expr(places)} places" if places is not None else "")

    def case(self, e: exp.Case) -> str:
        subject = e.this
        parts = []
        for branch in e.args.get("ifs") or []:
            test = (f"{self.expr(subject)} is {self.expr(branch.this)}" if subject is not None
                    else self.expr(branch.this))
            parts.append(f"when {test}: {self.expr(branch.args.get('true'))}")
        default = e.args.get("default")
        parts.append(f"otherwise {self.expr(default) if default is not None else 'NULL'}")
        return "(" + "; ".join(parts) + ")"

    def if_(self, e: exp.If) -> str:
        false = e.args.get("false")
        return (f"({self.expr(e.args.get('true'))} when {self.expr(e.this)}; otherwise "
                f"{self.expr(false) if false is not None else 'NULL'})")

    def named(self, e: exp.Expr) -> str:
        """A construct not read: its SQL, quoted, and named at the end of the reading."""
        self.unread.append(f"a {e.key} expression")
        return f"`{e.sql(DIALECT)}`"

    # Statements that change data

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
        frame = _Frame({e.this.alias_or_name.lower(): self.table_source(e.this)}, {})
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
        frame = _Frame({e.this.alias_or_name.lower(): self.table_source(e.this)}, {})
        self.frames.append(frame)
        try:
            where = e.args.get("where")
            if where is None:
                return f"Deletes every row of {self.table_name(e.this)}"
            return f"Deletes the rows of {self.table_name(e.this)} where {self.expr(where.this)}"
        finally:
            self.frames.pop()


def _literal(e: exp.Literal) -> str:
    return _quote(e.this) if e.is_string else str(e.this)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _arguments(e: exp.Func) -> list[exp.Expression]:
    """A function's arguments in their written order."""
    out = []
    for value in e.args.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, exp.Expression) and not isinstance(item, exp.DataType):
                out.append(item)
    return out


def _output_names(query: exp.Expression) -> set[str]:
    """The lower-cased column names a subquery gives its reader."""
    while isinstance(query, exp.Subquery | exp.SetOperation):
        query = query.this
    if not isinstance(query, exp.Select):
        return set()
    return {e.alias_or_name.lower() for e in query.expressions if e.alias_or_name}


def _repeated(sources: Iterable[_Source]) -> set[str]:
    """The tables a SELECT reads more than once (their columns are named by alias)."""
    names = [s.table.name.lower() for s in sources if s.table is not None]
    return {n for n in names if names.count(n) > 1}


def _ordinal(n: int) -> str:
    suffix = "th" if n % 100 in (11, 12, 13) else _ORDINALS.get(n % 10, "th")
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
