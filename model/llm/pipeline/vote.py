"""Drawing more answers, running them read-only, and settling on one (self-consistency).

The greedy answer and a few sampled ones (and beam candidates, when they were read) are checked
and mended as the pipeline's own answer is, then run read-only on the pipeline's own connection,
each under a row cap and a time limit, all of them under a budget (`Database.run_bounded`).
Their results are neither shown nor kept beyond the choice, which `pipeline.choose` makes:
a 270M model's answers are right or wrong in many different ways and right in fewer, so
agreement marks the right one more often than the greedy answer alone does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from model.llm.pipeline.choose import (
    CHECK_ROWS,
    Alternative,
    Candidate,
    Choice,
    choose,
    group,
    rank,
)
from model.llm.pipeline.settings import Settings
from model.llm.sql.extract import extract_sql
from model.llm.sql.mend import Checked, checked, mended
from model.llm.sql.parsing import unaliased
from model.llm.sql.results import comparable
from model.sqlite.db import DatabaseError

if TYPE_CHECKING:
    from model.llm.protocol import GenerationStats, TextEngine
    from model.sqlite.db import Database

CHECK_SECONDS = 1.0  # one candidate's run is stopped after this
CHECK_BUDGET_S = 3.0  # all the check runs of one question together
VOTE_MARKER = "\n-- {n} more answers drawn: comparing what each returns\n"


@dataclass
class Settled:
    """The candidate chosen, and the alternatives the user can turn to (none when nothing
    was run)."""

    chosen: Candidate
    alternatives: list[Alternative] = field(default_factory=list)
    agreeing: int = 0  # candidates returning the chosen result
    ran: int = 0  # candidates that ran

    @classmethod
    def of(cls, choice: Choice) -> Settled:
        return cls(choice.chosen, choice.alternatives(), choice.agreeing, choice.ran)


class _Until(threading.Event):
    """The user's cancel, or a deadline: what `TextEngine.sample` checks between steps."""

    def __init__(self, cancel: threading.Event | None, deadline: float) -> None:
        super().__init__()
        self.cancel, self.deadline = cancel, deadline

    def is_set(self) -> bool:
        return (self.cancel is not None and self.cancel.is_set()) or \
            time.perf_counter() > self.deadline


def settle(engine: TextEngine, db: Database, prompt: str, first: Candidate,
           settings: Settings, extra: Sequence[str] = (), n: int = 0, max_new_tokens: int = 128,
           shared: str = "", cancel: threading.Event | None = None,
           on_chunk: Callable[[str], None] | None = None,
           deadline: float = float("inf"), question: str = "") -> Settled | None:
    """`first` (the pipeline's answer), the `extra` answers already read (beam candidates) and
    `n` drawn on `prompt` (those that end by `deadline`, a `time.perf_counter()` time), run and
    chosen among (`pipeline.choose`), the best supported read back against `question` (not
    after a `cancel`). `first` alone when the database is too slow to judge by running it (its
    run was cut off) or the user cancelled; None when none returned anything."""
    drawn = []
    if n > 0 and time.perf_counter() < deadline:
        drawn = engine.sample(prompt, n=n, temperature=settings.temperature,
                              cancel=_Until(cancel, deadline),
                              max_new_tokens=max_new_tokens, shared=shared)
    if cancel is not None and cancel.is_set():
        return Settled(first)
    drawn = sorted((d for d in drawn if d.finished), key=lambda d: -d.logprob)
    if drawn and on_chunk is not None:
        on_chunk(VOTE_MARKER.format(n=len(drawn)))
    texts = [*extra, *(d.text for d in drawn)]
    candidates = [first, *read_candidates(texts, db, settings, len(extra))]
    run_candidates(db, candidates)
    if first.timed_out:
        return Settled(first)
    ranked = rank(group(candidates), settings.policy)
    if not ranked:
        return None
    read_back = read_back_scores(engine, question, ranked[:settings.policy.reviewed], cancel)
    ran = sum(c.rows is not None for c in candidates)
    return Settled.of(choose(ranked, read_back, settings.policy, ran))


def read_back_scores(engine: TextEngine, question: str, results: Sequence[list[Candidate]],
                     cancel: threading.Event | None = None) -> list[float]:
    """The log-probability of `question` read back after each result's SQL, its tables named
    for their aliases (`unaliased`); [] for fewer than two, when the engine cannot tell, or on
    `cancel`."""
    if not question or len(results) < 2 or (cancel is not None and cancel.is_set()):
        return []
    scores = engine.review(question, [unaliased(result[0].sql) for result in results], cancel)
    return scores if len(scores) == len(results) else []


def sure_of(first: Candidate, stats: GenerationStats | None, db: Database,
            settings: Settings) -> Settled | None:
    """`first` alone, settled, when the model was sure of it (`Policy.sure_logprob`) and its
    check run returns a row; None when the others are to be drawn."""
    sure = settings.policy.sure_logprob
    if stats is None or stats.min_logprob is None or stats.min_logprob < sure:
        return None
    run_candidates(db, [first])
    if first.timed_out:
        return Settled(first)
    if not first.usable:
        return None
    return Settled.of(Choice([[first]], [], 1))


def read_candidates(texts: Sequence[str], db: Database, settings: Settings,
                    beams: int = 0) -> list[Candidate]:
    """Each text's SQL, checked, names corrected and joins mended as the pipeline's own answer
    is (`sql.mend`); the first `beams` are beam candidates, the rest samples."""
    seen: dict[str, Checked] = {}
    candidates = []
    for i, text in enumerate(texts):
        sql = extract_sql(text)
        if sql not in seen:
            ready = checked(sql, db)
            if settings.mend_joins and (mend := mended(ready, db)) is not None:
                ready = mend
            seen[sql] = ready
        known = seen[sql]
        candidates.append(Candidate(known.sql, text, known.problems, known.corrected,
                                    known.mended, origin="beam" if i < beams else "sample"))
    return candidates


def run_candidates(db: Database, candidates: Sequence[Candidate],
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
            candidate.rows = [tuple(comparable(v) for v in row) for row in rows]
        except DatabaseError as e:
            candidate.error = str(e)
            candidate.timed_out = time.perf_counter() - started >= limit
        done[candidate.sql] = candidate
