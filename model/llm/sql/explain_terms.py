"""The terms of a statement read out: expressions, columns, conditions, functions; the
word tables they use. `sql.explain` reads the clauses around them (one reader, split in two
modules to stay short)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlglot import exp

from model.llm.sql.parsing import DIALECT
from model.sqlite.schema import Schema, Table

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
ORDINALS = {1: "st", 2: "nd", 3: "rd"}


@dataclass
class Source:
    """A table or subquery a SELECT reads, and how its columns are named."""

    shown: str  # the prefix of its columns: the table's name, or its alias when needed
    table: Table | None = None  # the schema's table (None: a subquery, a CTE, an unknown name)
    outputs: set[str] = field(default_factory=set)  # a subquery's column names, lower-cased


@dataclass
class Frame:
    """What a SELECT's column names can refer to."""

    sources: dict[str, Source]  # by the name its columns use, lower-cased
    aliases: dict[str, exp.Expression]  # its `AS name`s, lower-cased
    outputs: list[exp.Expression] = field(default_factory=list)  # what it selects (ORDER BY 2)
    prefer_alias: bool = False  # ORDER BY: SQLite takes an alias before a column


class Terms:
    """Reads the expressions of a statement; `sql.explain._Reader` adds the clauses."""

    def __init__(self, schema: Schema | None) -> None:
        self.schema = schema
        self.frames: list[Frame] = []
        self.ctes: dict[str, exp.Expression] = {}
        self.unread: list[str] = []

    def query(self, node: exp.Expr) -> str:
        raise NotImplementedError  # the clauses' reader

    def select(self, node: exp.Select, outputs: bool = True) -> str:
        raise NotImplementedError

    def output(self, e: exp.Expression) -> str:
        raise NotImplementedError

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
                return quote_text(name)
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

    def source_of(self, c: exp.Column) -> Source | None:
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


def quote_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _arguments(e: exp.Func) -> list[exp.Expression]:
    """A function's arguments in their written order."""
    out = []
    for value in e.args.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, exp.Expression) and not isinstance(item, exp.DataType):
                out.append(item)
    return out


def _literal(e: exp.Literal) -> str:
    return quote_text(e.this) if e.is_string else str(e.this)
