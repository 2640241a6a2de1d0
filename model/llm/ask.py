"""One question to checked SQL: the pipeline the app, `gemma-sql ask` and `gemma-sql eval` share.

schema -> context (pruned to what the question needs) -> prompt -> streamed answer ->
extracted, pretty-printed, checked SQL. The model first sees only the few tables the question
most likely needs (`focused_context`): a prompt about half as long. When that answer fails the
check, or compares a column with text no row holds, the question is asked again with every
table that fits. When that check fails on names the schema spells differently (customer_id
for CustomerId), those names are corrected, and the correction shown. When it still fails, or
compares a column with text no row holds, the model's `beams` next most likely answers (beam
search on the same prompt) are checked and the first that passes cleanly is taken; failing
that, a failed question is asked again with the error attached (at most `max_repairs` times).
Every step after the first answer runs only while the question's time budget lasts, and
replaces the answer only when it finishes in time (`model.llm.budget`); the note says when the
budget stopped the chain. The first answer and the last have their FROM clause mended to the
schema's foreign keys when they read a column from a table that lacks it or join two tables
off their key (`model.llm.joins`), and the mended SQL passes the check; the change is shown. A
top N ranked by an aggregate it does not select gets that figure as its last column
(`model.llm.ranking`).
The SQL is never executed here: running it is the caller's choice (`model.sqlite.db`).
"""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from model.llm.answer import Answer
from model.llm.budget import DEFAULT_BUDGET_S, Budget, Deadline, OutOfTime
from model.llm.check import check
from model.llm.context import Context, context_for, focused_context, rank_tables
from model.llm.extract import extract_sql, is_echo
from model.llm.joins import mend_joins
from model.llm.names import apply_suggestions
from model.llm.parsing import pretty
from model.llm.problem import Problem
from model.llm.prompt import build_prompt, prompt_head, shared_prefix
from model.llm.ranking import show_ranked_figure

if TYPE_CHECKING:
    from model.llm.protocol import TextEngine
    from model.sqlite.db import Database

# How a failed attempt's error rides along with the question on the repair attempt. Short, so
# the prompt stays close to the trained format; names the error so the model can avoid it.
REPAIR_NOTE = "{question} (The query {sql} failed: {error}.)"
REPAIR_NOTE_NO_SQL = "{question} (Answer with one SQLite query.)"
RETRY_MARKER = "\n-- retrying: {error}\n"
CANDIDATES_MARKER = "\n-- {error}; checking {n} other answers\n"
WIDEN_MARKER = "\n-- {error}; asking again with every table\n"
# The small model sometimes copies the note's " failed: <error>" after its new SQL. Quoted
# strings and identifiers are matched first so that a " failed: " inside one is skipped.
_ECHOED_NOTE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(\s+failed:\s)")


def ask(
    engine: TextEngine,
    db: Database,
    question: str,
    on_chunk: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    max_repairs: int = 1,
    max_new_tokens: int = 256,
    beams: int = 4,
    focused: bool = True,
    budget: float = DEFAULT_BUDGET_S,
    clock: Callable[[], float] = time.perf_counter,
) -> Answer:
    """Write SQL for `question` about `db`. `on_chunk` sees the text as it streams (from a
    worker thread in the app), including a `-- ...` line before another candidate or a
    repair. `beams` other answers are checked when the first fails (0: none); `focused`: try
    the question's likeliest tables alone first. `budget`: seconds from the start after which
    no step beyond the first answer runs or is taken (0: unlimited), timed by `clock`."""
    timer = Budget(budget, clock)
    db = db.reader()  # the pipeline reads the data only through its own read-only connection
    schema = db.schema()
    ranking = rank_tables(schema, question)  # read once, for both contexts
    context = context_for(db.conn, schema, question, ranking=ranking)
    answer = Answer(question, tables_sent=list(context.tables), pruned=context.pruned,
                    model=engine.name)
    shared = shared_prefix(context.text, engine.prompt_layout)
    # The question's own tables first: a prompt about half as long, and fewer tables to mix up.
    # Not for a model that keeps the whole schema's part of the prompt read (`shared`).
    focus = None
    if not shared and focused:
        focus = focused_context(db.conn, schema, question, ranking=ranking)
    kept = shared or prompt_head(engine.prompt_layout)
    run = QuestionRun(engine, db, answer, on_chunk, cancel, max_new_tokens, timer, kept)
    try:
        if focus is None or not ask_focused(run, focus):
            ask_with_repairs(run, context, max_repairs, beams, widen=focus is not None)
    except OutOfTime:
        answer.out_of_time = timer.note()
    if answer.sql and not answer.cancelled:
        if answer.focused:
            show_figure(answer, db)  # its joins were mended, if need be, by ask_focused
        else:
            mend_last(answer, db)
    answer.seconds = clock() - timer.started
    return answer


@dataclass
class QuestionRun:
    """One question on its way through the pipeline: what each step reads, and the answer the
    steps fill in."""

    engine: TextEngine
    db: Database
    answer: Answer
    on_chunk: Callable[[str], None] | None
    cancel: threading.Event | None  # the user's, or a `Deadline` during a later step
    max_new_tokens: int
    budget: Budget
    kept: str  # the beginning of its prompts whose reading the engine keeps (`Engine.stream`)
    read_rate: float = 0.0  # seconds the last prompt took to read, a character of it

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    @contextmanager
    def step(self, later: bool = True, reading: str = "") -> Iterator[None]:
        """A step of the chain. One after the first answer (`later`) starts only while the
        budget lasts, and leaves time to read its prompt (`reading`, at the last prompt's rate:
        a prompt read cannot stop halfway); it runs under a `Deadline`; when the budget runs
        out before it ends, the answer is put back as it was before it (its figures kept) and
        OutOfTime ends the chain. A user's cancel is not the budget's: the cancelled answer
        stands, as it always has."""
        if not later:
            yield
            return
        if self.budget.spent or self.budget.left() < self.read_rate * len(reading):
            raise OutOfTime
        before, user_cancel = copy.deepcopy(self.answer), self.cancel
        self.cancel = Deadline(user_cancel, self.budget)
        try:
            yield
        finally:
            self.cancel = user_cancel
        if self.budget.spent and not self.cancelled:
            before.stats = self.answer.stats
            for f in fields(Answer):
                setattr(self.answer, f.name, getattr(before, f.name))
            raise OutOfTime

    def say(self, text: str) -> None:
        if self.on_chunk is not None:
            self.on_chunk(text)

    def prompt(self, question: str, context: Context) -> str:
        return build_prompt(question, context.text, self.engine.prompt_layout)

    def read(self, prompt: str) -> str:
        """The model's answer to `prompt`, streamed to `on_chunk`; its figures kept."""
        pieces: list[str] = []
        stream = self.engine.stream(prompt, cancel=self.cancel,
                                    max_new_tokens=self.max_new_tokens, shared=self.kept)
        for piece in stream:
            pieces.append(piece)
            self.say(piece)
            if is_echo("".join(pieces[-64:])):
                stream.close()  # no answer is coming: stop decoding now, not 256 tokens later
                break
        stats = self.engine.last_stats
        self.answer.stats.append(stats)
        if stats.first_token_s > 0:
            self.read_rate = stats.first_token_s / len(prompt)
        return "".join(pieces)


def ask_focused(run: QuestionRun, focus: Context) -> bool:
    """Ask with the question's likeliest tables alone. True when that settles the answer: it
    passes the check (joins mended if need be) with every value it compares found, or the user
    cancelled; otherwise it stands only until asking again with every table replaces it."""
    answer, db = run.answer, run.db
    answer.raw = run.read(run.prompt(answer.question, focus))
    answer.attempts = 1
    sql = extract_sql(answer.raw)
    if run.cancelled:
        answer.cancelled, answer.sql = True, sql  # partial: not worth checking
        return True
    sql, problems, corrected = checked(sql, db)
    if (mend := mended(sql, db, doubts=False)) is not None:
        sql, problems, answer.mended = mend
    answer.sql, answer.problems, answer.corrected = sql, problems, corrected
    answer.tables_sent, answer.pruned, answer.focused = list(focus.tables), True, True
    return not failures_of(answer)


def failures_of(answer: Answer) -> list[str]:
    """Why an answer from the question's tables alone does not settle the question."""
    return [p.message for p in answer.problems if p.fatal or p.kind == "value"]


def start_widening(run: QuestionRun, context: Context) -> None:
    """Make the answer the one about to come from every table (`context`)."""
    answer = run.answer
    run.say(WIDEN_MARKER.format(error="; ".join(failures_of(answer))))
    answer.widened, answer.focused, answer.mended, answer.corrected = True, False, [], []
    answer.tables_sent, answer.pruned = list(context.tables), context.pruned


def ask_with_repairs(run: QuestionRun, context: Context, max_repairs: int, beams: int,
                     widen: bool = False) -> None:
    """Ask with `context` (`widen`: after the answer from the question's tables failed);
    when the first answer fails or doubts a value, take the first of `beams` other answers
    that passes; while it fails, ask again with the error attached. Each a step of its own."""
    answer, question = run.answer, run.answer.question
    asked, error = question, ""
    for attempt in range(max_repairs + 1):
        prompt = run.prompt(asked, context)
        with run.step(later=widen or attempt > 0, reading=prompt):
            if attempt == 0 and widen:
                start_widening(run, context)
            if error:
                run.say(RETRY_MARKER.format(error=error))
            sql = read_attempt(run, prompt, attempt)
        if sql is None:
            return  # cancelled
        fatal = [p.message for p in answer.problems if p.fatal]
        doubts = [p.message for p in answer.problems if p.kind == "value"]
        if (fatal or doubts) and attempt == 0 and beams:
            with run.step():
                run.say(CANDIDATES_MARKER.format(error="; ".join(fatal or doubts), n=beams))
                texts = run.engine.beams(prompt, n=beams, cancel=run.cancel, shared=run.kept)
                taken = take_candidate(answer, texts, run.db, run.on_chunk)
            if taken:
                return
        if not fatal or attempt == max_repairs:
            return
        error = "; ".join(fatal)
        asked = repair_question(question, sql, error)


def read_attempt(run: QuestionRun, prompt: str, attempt: int) -> str | None:
    """The answer to `prompt`, checked, as the answer's; the SQL as written (None: the user
    cancelled, and the partial SQL stands unchecked)."""
    answer = run.answer
    answer.raw = run.read(prompt)
    answer.attempts = attempt + 1
    answer.repaired = attempt > 0
    sql = extract_sql(answer.raw)
    if attempt > 0:
        sql = cut_echoed_note(sql)
    if run.cancelled:
        answer.cancelled = True
        answer.sql, answer.problems = sql, []  # partial: not worth checking
        return None
    answer.sql, answer.problems, answer.corrected = checked(sql, run.db)
    return sql


def mend_last(answer: Answer, db: Database) -> None:
    """The last answer's FROM clause mended to the schema when it can be (values no row holds
    allowed when the answer already fails or doubts one), and its ranking figure shown."""
    doubtful = not answer.ok or any(p.kind == "value" for p in answer.problems)
    if (mend := mended(answer.sql, db, doubts=doubtful)) is not None:
        answer.sql, answer.problems, answer.mended = mend
    show_figure(answer, db)


def prepare(engine: TextEngine, db: Database) -> None:
    """Read the database's part of the prompt before the first question (the app does it while
    the user types): with a context-first model every question then reads only its own tokens.

    Nothing of the database is read for a schema cut to fit, since the cut depends on the
    question, nor for a model of the seed's layout, whose prompts share only their head: that
    head is read instead."""
    layout = engine.prompt_layout
    if not shared_prefix("", layout):
        engine.warm(prompt_head(layout))  # render no context for nothing
        return
    db = db.reader()
    context = context_for(db.conn, db.schema(), "")
    if not context.pruned:
        engine.warm(shared_prefix(context.text, layout))


def correct_names(
    sql: str, problems: list[Problem], db: Database
) -> tuple[str, list[Problem], list[str]]:
    """(sql, problems, corrections) with the schema's spelling put in for near-miss names, when
    that makes the SQL pass; unchanged (no corrections) when it does not.

    A few rounds: a corrected table name lets the check see its columns' misspellings."""
    fixed, fixed_problems, corrected = sql, problems, []
    for _ in range(3):
        fixed, changes = apply_suggestions(fixed, fixed_problems)
        if not changes:
            break
        corrected += changes
        fixed_problems = check(fixed, db.schema(), db.conn)
        if not any(p.fatal for p in fixed_problems):
            return fixed, fixed_problems, corrected
    return sql, problems, []


def checked(sql: str, db: Database) -> tuple[str, list[Problem], list[str]]:
    """(sql, problems, corrections): pretty-printed, checked, near-miss names corrected."""
    sql = pretty(sql) if sql else ""
    problems = check(sql, db.schema(), db.conn)
    if any(p.fatal for p in problems):
        return correct_names(sql, problems, db)
    return sql, problems, []


def mended(sql: str, db: Database, doubts: bool = True
           ) -> tuple[str, list[Problem], list[str]] | None:
    """(sql, problems, changes) with the FROM clause mended to the schema (`model.llm.joins`), when
    that changes it and passes the check (`doubts`: with values no row holds allowed); else
    None."""
    mend = mend_joins(sql, db.schema()) if sql else None
    if mend is None:
        return None
    fixed = pretty(mend[0])
    problems = check(fixed, db.schema(), db.conn)
    if any(p.fatal or (p.kind == "value" and not doubts) for p in problems):
        return None
    return fixed, problems, mend[1]


def show_figure(answer: Answer, db: Database) -> None:
    """Select the figure a passing top-N answer is ranked by, when it does not
    (`model.llm.ranking`)."""
    if answer.ok and (shown := show_ranked_figure(answer.sql)) is not None:
        answer.sql = pretty(shown[0])
        answer.problems = check(answer.sql, db.schema(), db.conn)
        answer.ranked_by = shown[1]


def take_candidate(
    answer: Answer, texts: list[str], db: Database, on_chunk: Callable[[str], None] | None
) -> bool:
    """Take the first candidate that passes the check (near-miss names corrected), differs
    from the answer and compares with no value that no row holds; failing that, when the answer
    itself fails, the first candidate that passes."""
    fallback = None  # the first that passes with a doubtful value
    for text in texts:
        sql, problems, corrected = checked(extract_sql(text), db)
        if not sql or sql == answer.sql or any(p.fatal for p in problems):
            continue
        if not any(p.kind == "value" for p in problems):
            choice = (text, sql, problems, corrected)
            break
        fallback = fallback or (text, sql, problems, corrected)
    else:  # no clean candidate: a doubtful one only replaces an answer that fails
        choice = None if answer.ok else fallback
    if choice is None:
        return False
    answer.raw, answer.sql, answer.problems, answer.corrected = choice
    answer.repaired = True
    if on_chunk is not None:
        on_chunk(answer.raw)
    return True


def repair_question(question: str, sql: str, error: str) -> str:
    """The question asked again after a failed attempt, with what went wrong."""
    if not sql:
        return REPAIR_NOTE_NO_SQL.format(question=question)
    return REPAIR_NOTE.format(question=question, sql=sql, error=error)


def cut_echoed_note(sql: str) -> str:
    """The SQL before a copied " failed: ..." of the repair note (not one inside a string)."""
    for match in _ECHOED_NOTE.finditer(sql):
        if match.group(1):
            return sql[: match.start(1)]
    return sql
