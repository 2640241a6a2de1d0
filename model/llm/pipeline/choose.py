"""The choice among the model's answers once they have run: pure functions of their results.

Answers are grouped by what they returned (`group`); a result's support is how many answers
returned it (`support`); the best supported come first, the greedy answer's on a tie (`rank`).
The two best are then read back by the engine (`TextEngine.review`, in `pipeline.vote`), and
`choose` weighs each one's support by how likely it makes the question. Each result becomes an
`Alternative` the user can turn to. Nothing here runs SQL or a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from model.llm.pipeline.settings import Policy
from model.llm.sql.parsing import DIALECT, parse
from model.llm.sql.problem import Problem

CHECK_ROWS = 1_000  # rows a check run reads; results are compared on these
# The clauses that tell two alternatives apart, as the note under the editor names them.
_CLAUSES = (("expressions", "columns"), ("from_", "tables"), ("joins", "joins"),
            ("where", "WHERE"), ("group", "GROUP BY"), ("having", "HAVING"),
            ("order", "ORDER BY"), ("limit", "LIMIT"), ("distinct", "DISTINCT"))


@dataclass
class Candidate:
    """One of the model's answers, checked, and once run, what it returned."""

    sql: str
    raw: str = ""
    problems: list[Problem] = field(default_factory=list)
    corrected: list[str] = field(default_factory=list)
    mended: list[str] = field(default_factory=list)
    origin: str = "sample"  # "greedy" (the pipeline's own answer), "beam" or "sample"
    rows: list[tuple[Any, ...]] | None = None  # None: not run, or failed
    error: str = ""
    timed_out: bool = False

    @property
    def usable(self) -> bool:
        """It ran and returned something: a row, and not one row of NULLs and zeros alone
        (`count(*)`, `sum(x)` of nothing; `NULL` where no row matched)."""
        if not self.rows or not any(v is not None for row in self.rows for v in row):
            return False
        return len(self.rows) > 1 or any(v not in (None, 0) for v in self.rows[0])

    @property
    def loose(self) -> bool:
        """It takes a column from an arbitrary row (`sql.grouping`)."""
        return any(p.kind == "grouping" for p in self.problems)


Result = list[Candidate]  # the answers that returned one result, in the order they came


@dataclass
class Alternative:
    """A distinct answer (by its result) the user can turn to, best supported first."""

    sql: str
    rows: int  # rows its check run returned (CHECK_ROWS: at least that many)
    answers: int = 1  # how many answers returned this result
    differs: list[str] = field(default_factory=list)  # clauses unlike the first alternative's
    read_back: float | None = None  # log-probability of the question read back; None: not read

    @property
    def summary(self) -> str:
        """Its size in rows: "25 rows", "1 row", "1,000+ rows"."""
        more = "+" if self.rows >= CHECK_ROWS else ""
        return f"{self.rows:,}{more} row{'s' * (self.rows != 1)}"

    def to_dict(self) -> dict[str, Any]:
        return {"sql": self.sql, "rows": self.rows, "answers": self.answers,
                "summary": self.summary, "differs": self.differs, "read_back": self.read_back}


@dataclass(frozen=True)
class Choice:
    """The results best first, the read-back scores of those read (in that order), and how
    many answers ran."""

    results: list[Result]
    read_back: list[float]
    ran: int

    @property
    def chosen(self) -> Candidate:
        return self.results[0][0]

    @property
    def agreeing(self) -> int:
        """Answers returning the chosen result."""
        return len(self.results[0])

    @property
    def agreed(self) -> str:
        """"3 of 5": answers returning the chosen result, of those that ran."""
        return f"{self.agreeing} of {self.ran}"

    def alternatives(self) -> list[Alternative]:
        """One alternative a result: its first answer, its size, its support, its reading."""
        firsts = [result[0] for result in self.results]
        return [Alternative(c.sql, len(c.rows or []), len(result),
                            differences(firsts[0].sql, c.sql) if i else [],
                            self.read_back[i] if i < len(self.read_back) else None)
                for i, (c, result) in enumerate(zip(firsts, self.results, strict=True))]


def group(candidates: Sequence[Candidate]) -> list[Result]:
    """The usable candidates grouped by what they returned, in the order results first came."""
    results: dict[tuple[str, ...], Result] = {}
    for candidate in candidates:
        if candidate.usable:
            results.setdefault(result_key(candidate.rows or []), []).append(candidate)
    return list(results.values())


def support(result: Result, policy: Policy) -> float:
    """How many answers returned the result, loose ones at `policy.loose_weight`."""
    return sum(policy.loose_weight if c.loose else 1.0 for c in result)


def rank(results: Sequence[Result], policy: Policy) -> list[Result]:
    """The best supported result first; on a tie, the one holding the greedy answer."""
    return sorted(results, key=lambda r: (-support(r, policy),
                                          not any(c.origin == "greedy" for c in r)))


def choose(ranked: Sequence[Result], read_back: Sequence[float], policy: Policy,
           ran: int) -> Choice:
    """`ranked` (from `rank`) with the results read back (the first len(read_back)) in the
    order of their support times exp(review_weight x how much less likely than the best they
    make the question); on a tie, as they came. Read-back scores for fewer than two results
    change nothing."""
    head = list(ranked[:len(read_back)])
    if len(head) < 2:
        return Choice(list(ranked), [], ran)
    best = max(read_back)
    order = sorted(range(len(head)), key=lambda i: -support(head[i], policy)
                   * math.exp(policy.review_weight * (read_back[i] - best)))
    return Choice([head[i] for i in order] + list(ranked[len(head):]),
                  [read_back[i] for i in order], ran)


def led_by(alternatives: Sequence[Alternative], sql: str) -> list[Alternative]:
    """`alternatives` with the one of `sql` first (added, of no rows, when it returned none),
    the others after it as they came, each with the clauses it differs from `sql` in."""
    own = next((a for a in alternatives if a.sql == sql), Alternative(sql, 0, 1))
    others = [a for a in alternatives if a is not own]
    return [replace(own, differs=[]),
            *(replace(a, differs=differences(sql, a.sql)) for a in others)]


def result_key(rows: list[tuple[Any, ...]]) -> tuple[str, ...]:
    """Rows as a multiset, with their columns in a canonical order (`SELECT a, b` agrees with
    `SELECT b, a`)."""
    if not rows:
        return ()
    width = len(rows[0])
    order = sorted(range(width), key=lambda j: sorted(repr(row[j]) for row in rows))
    return tuple(sorted(repr(tuple(row[j] for j in order)) for row in rows))


def differences(first: str, other: str) -> list[str]:
    """The clauses in which `other` differs from `first` ("WHERE", "columns", ...)."""
    try:
        a, b = (next((t for t in parse(sql) if t is not None), None) for sql in (first, other))
    except (ParseError, TokenError):
        return []
    if not isinstance(a, exp.Select) or not isinstance(b, exp.Select):
        return ["form"] if type(a) is not type(b) else []
    return [name for key, name in _CLAUSES if _clause(a, key) != _clause(b, key)]


def _clause(tree: exp.Select, key: str) -> str:
    value = tree.args.get(key)
    if isinstance(value, list):
        return " ".join(v.sql(DIALECT).lower() for v in value)
    return value.sql(DIALECT).lower() if isinstance(value, exp.Expression) else str(value or "")
