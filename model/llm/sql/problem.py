"""What every check of a statement reports: one `Problem` per thing wrong with it."""

from __future__ import annotations

from dataclasses import dataclass


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
