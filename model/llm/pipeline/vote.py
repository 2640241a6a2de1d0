"""Choosing among the model's answers by what the database says of them (self-consistency).

The greedy answer and a few sampled ones (and beam candidates, when they were read) are run
read-only on the pipeline's own connection, each under a row cap and a time limit, the whole
lot under a budget (`Database.run_bounded`). Their results are neither shown nor kept beyond
the vote. An answer that fails, returns no row or only NULLs drops out; the others are grouped
by their result (a multiset of rows, columns in any order) and the group most answers agree on
wins, the greedy answer's group on a tie (an answer that takes a column from an arbitrary row,
`model.llm.sql.grouping`, counts a quarter). A 270M model's answers are right or wrong in many
different ways, and right in fewer: agreement marks the right one more often than the greedy
answer alone does. The two best supported results are then read back: the base model's
likelihood of the question after each one's SQL (`TextEngine.review`) weighs its support, so a
runner-up that accounts for the question much better overtakes (an answer that leaves out the
question's filter reads back poorly). Each group is an alternative the user can turn to in the
app.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from model.llm.sql.extract import extract_sql
from model.llm.sql.mend import checked, mended
from model.llm.sql.parsing import DIALECT, parse, unaliased
from model.llm.sql.problem import Problem
from model.sqlite.db import DatabaseError

if TYPE_CHECKING:
    from model.llm.protocol import GenerationStats, TextEngine
    from model.sqlite.db import Database

# Answers drawn beside the greedy one. 8 against 4 (eval, 2026-12-01): Chinook bf16 69.4 ->
# 68.1 %, fp32 65.3 -> 69.4 %; Spider sample bf16 43.3 -> 45.8 %, fp32 49.2 -> 50.0 %; top-3 up
# 2-6 points on each; 0.6-1.3 s more a drawn question (docs/experiments.md).
SAMPLES = 8
TEMPERATURE = 0.7
# Under a time budget, drawing takes at most twice as long as the greedy answer took (at least
# a second), and ends by 15 s after the question was asked; what has ended by then is voted on,
# so a slow or busy machine gets fewer votes, not a longer wait. Without one (`eval`), every
# draw ends. No draw runs past 1.5 times the greedy answer's tokens and 16 more.
DRAW_TIME_FACTOR = 2.0


def draw_cost(n: int) -> float:
    """Drawing `n` answers (a batch of n rows a step; the prompt's reading kept), in units of the
    greedy answer's decoding at one token a pass: measured 1.5-2.0x for 4 rows, 1.9-2.7x for 8
    (bench/README.md). A draw that cannot end within the time budget is not started."""
    return 1.1 + 0.15 * n


DRAW_MIN_S = 1.0
DRAW_BUDGET_S = 15.0
# The two best supported results are read back (`reviewed`); each one's `support` is
# multiplied by exp(REVIEW_WEIGHT x its log-probability of the question, less the better one's).
# Replayed on every recorded vote (docs/experiments.md, "Reading the question back"): the
# held-out 960 423 -> 438, Chinook 50 -> 51, Spider sample 60 -> 65; more than two: no better;
# read with table names for aliases, with the grouping weight below: 441 -> 444, 52 -> 53, 66 -> 65.
REVIEWED = 2
REVIEW_WEIGHT = 1.0
# An answer that selects a column beside an aggregate without GROUP BY (`model.llm.sql.grouping`)
# counts this much of an answer. Replayed on every recorded vote, with the read-back: the
# held-out 960 438 -> 441, Chinook 51 -> 52, Spider sample 65 -> 66 at 0.5; with the SQL read
# back with its tables named, 0.25 (= 0.1 = 0) one more on the 960 and the sample, none fewer;
# in bf16 a half let four loose answers outweigh three grouped ones on Chinook
# (docs/experiments.md). Of 62 such results in the recorded votes none was right.
LOOSE_WEIGHT = 0.25
# Reading back costs this many times reading as many characters of a long prompt (one forward
# pass over a few dozen tokens, the output layer at each of the question's): 3.6-6.1 measured
# in fp32, bf16 and emulated-AVX2 fp32 on 2 cores. A draw leaves that much of the budget to it.
REVIEW_READ_COST = 6.0
VOTE_MARKER = "\n-- {n} more answers drawn: comparing what each returns\n"

# A greedy answer none of whose tokens the model chose with a log-probability below this, and
# that returns a row, is taken without drawing others: drawing costs more time than the
# greedy answer itself, and on such answers the vote almost never chose another
# (docs/experiments.md, "The sure answers").
SURE_LOGPROB = -0.7

CHECK_ROWS = 1_000  # rows a check run reads; results are compared on these
CHECK_SECONDS = 1.0  # one candidate's run is stopped after this
CHECK_BUDGET_S = 3.0  # all the check runs of one question together
FLOAT_DIGITS = 6  # 0.1 + 0.2 agrees with 0.3
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


@dataclass
class Settled:
    """The candidate chosen, and the alternatives the user can turn to (none when nothing
    was run)."""

    chosen: Candidate
    alternatives: list[Alternative] = field(default_factory=list)
    agreed: str = ""  # "3 of 5": candidates returning the chosen result, of those that ran


class _Until:
    """The user's cancel, or a deadline: what `TextEngine.sample` checks between steps."""

    def __init__(self, cancel: threading.Event | None, deadline: float) -> None:
        self.cancel, self.deadline = cancel, deadline

    def is_set(self) -> bool:
        return (self.cancel is not None and self.cancel.is_set()) or \
            time.perf_counter() > self.deadline


def settle(engine: TextEngine, db: Database, prompt: str, first: Candidate,
           extra: Sequence[str] = (), n: int = SAMPLES, max_new_tokens: int = 128,
           shared: str = "", cancel: threading.Event | None = None,
           on_chunk: Callable[[str], None] | None = None,
           deadline: float = float("inf"), question: str = "") -> Settled | None:
    """`first` (the pipeline's answer), the `extra` answers already read (beam candidates) and
    `n` drawn on `prompt` (those that end by `deadline`, a `time.perf_counter()` time), run and
    voted on; the two best supported read back against `question` (`reviewed`; not after a
    `cancel`).
    `first` alone when the database is too slow to judge by running it (its run was cut off)
    or the user cancelled; None when none returned anything."""
    drawn = []
    if n > 0 and time.perf_counter() < deadline:
        drawn = engine.sample(prompt, n=n, temperature=TEMPERATURE,
                              cancel=_Until(cancel, deadline),  # type: ignore[arg-type]
                              max_new_tokens=max_new_tokens, shared=shared)
    if cancel is not None and cancel.is_set():
        return Settled(first)
    drawn = sorted((d for d in drawn if d.finished), key=lambda d: -d.logprob)
    if drawn and on_chunk is not None:
        on_chunk(VOTE_MARKER.format(n=len(drawn)))
    texts = [*extra, *(d.text for d in drawn)]
    candidates = [first, *read_candidates(texts, db, len(extra))]
    run_checks(db, candidates)
    if first.timed_out:
        return Settled(first)
    groups = vote(candidates)
    if not groups:
        return None
    groups, read_back = reviewed(engine, question, groups, cancel) if question else (groups, [])
    ran = sum(c.rows is not None for c in candidates)
    choices = alternatives(groups)
    for alternative, score in zip(choices, read_back, strict=False):
        alternative.read_back = score
    return Settled(groups[0][0], choices, f"{len(groups[0])} of {ran}")


def sure_of(first: Candidate, stats: GenerationStats | None, db: Database) -> Settled | None:
    """`first` alone, settled, when the model was sure of it (SURE_LOGPROB) and its check run
    returns a row; None when the others are to be drawn."""
    if stats is None or stats.min_logprob is None or stats.min_logprob < SURE_LOGPROB:
        return None
    run_checks(db, [first])
    if first.timed_out:
        return Settled(first)
    if not first.usable:
        return None
    return Settled(first, alternatives([[first]]), "1 of 1")


def read_candidates(texts: Sequence[str], db: Database, beams: int = 0) -> list[Candidate]:
    """Each text's SQL, checked, names corrected and joins mended as the pipeline's own answer
    is (`model.llm.sql.mend`); the first `beams` are beam candidates, the rest samples."""
    seen: dict[str, Candidate] = {}
    candidates = []
    for i, text in enumerate(texts):
        sql = extract_sql(text)
        if sql not in seen:
            sql_, problems, corrected = checked(sql, db)
            changes: list[str] = []
            if (mend := mended(sql_, db)) is not None:
                sql_, problems, changes = mend
            seen[sql] = Candidate(sql_, text, problems, corrected, changes)
        known = seen[sql]
        candidates.append(Candidate(known.sql, text, known.problems, known.corrected,
                                    known.mended, origin="beam" if i < beams else "sample"))
    return candidates


def run_checks(db: Database, candidates: Sequence[Candidate],
               budget_s: float = CHECK_BUDGET_S) -> None:
    """Run each candidate that passed the check, once a distinct SQL, within `budget_s` in all;
    what is left when the budget is spent is not run, and what ran before (`sure_of`'s run of
    the greedy answer) is not run again."""
    deadline = time.perf_counter() + budget_s
    done: dict[str, Candidate] = {}
    for candidate in candidates:
        if not candidate.sql or any(p.fatal for p in candidate.problems):
            continue
        if candidate.rows is not None or candidate.error:
            done.setdefault(candidate.sql, candidate)
            continue
        same = done.get(candidate.sql)
        if same is not None:
            candidate.rows, candidate.error = same.rows, same.error
            candidate.timed_out = same.timed_out
            continue
        left = deadline - time.perf_counter()
        if left <= 0.05:
            candidate.timed_out = True
            continue
        limit = min(CHECK_SECONDS, left)
        started = time.perf_counter()
        try:
            _, rows = db.run_bounded(candidate.sql, CHECK_ROWS, limit)
            candidate.rows = [tuple(_value(v) for v in row) for row in rows]
        except DatabaseError as e:
            candidate.error = str(e)
            candidate.timed_out = time.perf_counter() - started >= limit
        done[candidate.sql] = candidate


def vote(candidates: Sequence[Candidate]) -> list[list[Candidate]]:
    """The usable candidates grouped by result, the best supported group first (on a tie, the
    one holding the greedy answer). Within a group, candidates keep their order."""
    groups: dict[tuple[str, ...], list[Candidate]] = {}
    for candidate in candidates:
        if candidate.usable:
            groups.setdefault(result_key(candidate.rows or []), []).append(candidate)
    return sorted(groups.values(),
                  key=lambda g: (-support(g), not any(c.origin == "greedy" for c in g)))


def support(group: Sequence[Candidate]) -> float:
    """How many answers returned the group's result, those the grouping check warns of at
    LOOSE_WEIGHT."""
    return sum(LOOSE_WEIGHT if any(p.kind == "grouping" for p in c.problems) else 1.0
               for c in group)


def reviewed(engine: TextEngine, question: str, groups: list[list[Candidate]],
             cancel: threading.Event | None = None) -> tuple[list[list[Candidate]], list[float]]:
    """`groups` with the REVIEWED best supported in the order of their `support` times
    exp(REVIEW_WEIGHT x how much less likely than the best they make the question) (on a tie,
    as they came), and their scores in that order; as they came, and no scores, when there is
    one, the engine cannot tell, or on `cancel`. The SQL is read with its tables' names for
    their aliases (`unaliased`)."""
    head = groups[:REVIEWED]
    if len(head) < 2 or (cancel is not None and cancel.is_set()):
        return groups, []
    scores = engine.review(question, [unaliased(group[0].sql) for group in head], cancel)
    if len(scores) != len(head):
        return groups, []
    best = max(scores)
    order = sorted(range(len(head)), key=lambda i: -support(head[i])
                   * math.exp(REVIEW_WEIGHT * (scores[i] - best)))
    return [head[i] for i in order] + groups[len(head):], [scores[i] for i in order]


def alternatives(groups: list[list[Candidate]]) -> list[Alternative]:
    """One alternative a group: its first candidate, its result's size and its support."""
    chosen = [group[0] for group in groups]
    return [Alternative(c.sql, len(c.rows or []), len(group),
                        differences(chosen[0].sql, c.sql) if i else [])
            for i, (c, group) in enumerate(zip(chosen, groups, strict=True))]


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
    changed = []
    for key, name in _CLAUSES:
        if _clause(a, key) != _clause(b, key):
            changed.append(name)
    return changed


def _clause(tree: exp.Select, key: str) -> str:
    value = tree.args.get(key)
    if isinstance(value, list):
        return " ".join(v.sql(DIALECT).lower() for v in value)
    return value.sql(DIALECT).lower() if isinstance(value, exp.Expression) else str(value or "")


def _value(v: Any) -> Any:
    """Floats rounded, whole ones as ints (`avg` of 2 and 2 agrees with `max`)."""
    if isinstance(v, float):
        return int(v) if v.is_integer() else round(v, FLOAT_DIGITS)
    return v
