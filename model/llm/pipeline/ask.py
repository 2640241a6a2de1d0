"""One question to checked SQL: the pipeline the app, `gemma-sql ask` and `gemma-sql eval` share.

    schema -> context (the question's tables first) -> prompt -> streamed answer ->
    extracted, pretty-printed, checked SQL -> the answer the database agrees with

docs/architecture.md follows a question through it step by step and defines its words (focus,
widen, draw, vote, read back, repair, mend). Every step after the first answer runs only while
the question's time budget lasts (`QuestionRun.step`). The SQL is never run for the user here,
nor on the user's connection: that is the caller's choice.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from model.llm.pipeline.answer import Answer
from model.llm.pipeline.budget import Budget, OutOfTime
from model.llm.pipeline.choose import Candidate, led_by
from model.llm.pipeline.plan import draw_tokens
from model.llm.pipeline.question_run import QuestionRun
from model.llm.pipeline.settings import DEFAULT, Settings
from model.llm.pipeline.vote import Settled, settle
from model.llm.prompting.context import (
    Context,
    context_for,
    focused_context,
    rank_tables,
    schema_words,
)
from model.llm.prompting.prompt import prompt_head, shared_prefix
from model.llm.prompting.values import ValueHit, value_index
from model.llm.sql.extract import extract_sql
from model.llm.sql.mend import Checked, checked, mended

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
NO_ROWS = "neither it nor the answers drawn beside it returned a row"
# The small model sometimes copies the note's " failed: <error>" after its new SQL. Quoted
# strings and identifiers are matched first so that a " failed: " inside one is skipped.
_ECHOED_NOTE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(\s+failed:\s)")


def ask(
    engine: TextEngine,
    db: Database,
    question: str,
    settings: Settings = DEFAULT,
    on_chunk: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Answer:
    """Write SQL for `question` about `db`, as far as `settings` go. `on_chunk` sees the text
    as it streams (from a worker thread in the app), including a `-- ...` line before another
    candidate or a repair; `cancel` stops it; the time budget is timed by `clock`."""
    timer = Budget(settings.budget, clock)
    db = db.reader()  # the pipeline reads the data only through its own read-only connection
    schema = db.schema()
    linked: tuple[ValueHit, ...] = ()
    if settings.link_values:
        linked = tuple(value_index(db).find(question, schema_words(schema)))
    ranking = rank_tables(schema, question, linked)  # read once, for both contexts
    context = context_for(db.conn, schema, question, ranking=ranking)
    answer = Answer(question, tables_sent=list(context.tables), pruned=context.pruned,
                    model=engine.name, linked=[str(hit) for hit in linked])
    shared = shared_prefix(context.text, engine.prompt_layout)
    # The question's own tables first: a prompt about half as long, and fewer tables to mix up.
    # Not for a model that keeps the whole schema's part of the prompt read (`shared`).
    focus = None
    if not shared and settings.focused:
        focus = focused_context(db.conn, schema, question, ranking=ranking)
    run = QuestionRun(engine, db, answer, settings, on_chunk, cancel, timer,
                      kept=shared or prompt_head(engine.prompt_layout))
    try:
        if focus is None or not ask_focused(run, focus):
            settled = ask_with_repairs(run, context, widen=focus is not None)
            if not settled and run.answer.sql and not run.answer.cancelled:
                settle_last(run)
    except OutOfTime:
        run.answer.out_of_time = timer.note()
    answer = run.answer
    answer.cancelled = answer.cancelled or run.cancelled
    if answer.sql and not answer.cancelled and not answer.focused:
        mend_last(run)  # a no-op on an answer mended before its vote
    answer.seconds = clock() - timer.started
    answer.prompt, answer.kept = run.last_prompt, run.kept
    return answer


def draw_more(engine: TextEngine, db: Database, answer: Answer, settings: Settings = DEFAULT,
              on_chunk: Callable[[str], None] | None = None,
              cancel: threading.Event | None = None) -> Answer:
    """`answer` with the answers its time budget skipped: `settings.samples` drawn now on its
    prompt, run and voted on with it (no budget: the user asked for them; `cancel` stops
    them). The answer's own SQL stays first among the alternatives, the others follow in the
    vote's order; unchanged when nothing could be drawn or the user cancelled."""
    if not answer.prompt or not answer.sql:
        return answer
    tokens = answer.stats[-1].tokens if answer.stats else settings.max_new_tokens
    settled = settle(engine, db.reader(), answer.prompt, answer_candidate(answer), settings,
                     n=settings.samples, shared=answer.kept, cancel=cancel, on_chunk=on_chunk,
                     max_new_tokens=draw_tokens(tokens, settings.max_new_tokens),
                     question=answer.question)
    if settled is None or (cancel is not None and cancel.is_set()):
        return answer
    alternatives = led_by(settled.alternatives, answer.sql)
    own = alternatives[0].answers if alternatives[0].rows else 0
    return replace(answer, alternatives=alternatives, agreeing=own, ran=settled.ran)


def answer_candidate(answer: Answer) -> Candidate:
    """The pipeline's own answer, as the first of the candidates."""
    return Candidate(answer.sql, answer.raw, answer.problems, answer.corrected, answer.mended,
                     origin="greedy")


def take(answer: Answer, settled: Settled) -> None:
    """The chosen candidate's SQL into the answer, with the alternatives."""
    chosen = settled.chosen
    answer.sql, answer.problems = chosen.sql, chosen.problems
    answer.corrected, answer.mended = chosen.corrected, chosen.mended
    answer.alternatives = settled.alternatives
    answer.agreeing, answer.ran = settled.agreeing, settled.ran
    if chosen.origin != "greedy":
        answer.raw, answer.voted = chosen.raw, True


def ask_focused(run: QuestionRun, focus: Context) -> bool:
    """Ask with the question's likeliest tables alone. True when that settles the answer: it
    passes the check (joins mended if need be) with every value it compares found, and it or
    an answer drawn beside it returns a row (when run), or the user cancelled; otherwise it
    stands only until asking again with every table replaces it (`run.unsettled` says why)."""
    run.answer.raw = run.read(run.prompt(run.answer.question, focus))
    run.answer.attempts = 1
    sql = extract_sql(run.answer.raw)
    if run.cancelled:
        run.answer.cancelled, run.answer.sql = True, sql  # partial: not worth checking
        return True
    ready = checked(sql, run.db)
    if run.settings.mend_joins and (mend := mended(ready, run.db, doubts=False)) is not None:
        ready = mend
    answer = run.answer
    answer.sql, answer.problems = ready.sql, ready.problems
    answer.corrected, answer.mended = ready.corrected, ready.mended
    answer.tables_sent, answer.pruned, answer.focused = list(focus.tables), True, True
    run.unsettled = [p.message for p in ready.problems if p.fatal or p.kind == "value"]
    if run.unsettled:
        return False
    if (settled := run.vote(answer_candidate(answer))) is None:
        run.unsettled = [NO_ROWS]
        return False
    take(run.answer, settled)
    return True


def start_widening(run: QuestionRun, context: Context) -> None:
    """Make the answer the one about to come from every table (`context`)."""
    answer = run.answer
    run.say(WIDEN_MARKER.format(error="; ".join(run.unsettled)))
    answer.widened, answer.focused, answer.mended, answer.corrected = True, False, [], []
    answer.tables_sent, answer.pruned = list(context.tables), context.pruned


def ask_with_repairs(run: QuestionRun, context: Context, widen: bool = False) -> bool:
    """Ask with `context` (`widen`: after the answer from the question's tables failed); when
    the first answer fails or doubts a value, vote among it and the answers drawn beside it
    (when they are run), else take the first of the beams that passes; while it fails, ask
    again with the error attached. Each a step of its own. True when the vote settled the
    answer."""
    question, settings = run.answer.question, run.settings
    asked, error = question, ""
    for attempt in range(settings.max_repairs + 1):
        prompt = run.prompt(asked, context)
        with run.step(later=widen or attempt > 0, reading=prompt):
            if attempt == 0 and widen:
                start_widening(run, context)
            if error:
                run.say(RETRY_MARKER.format(error=error))
            sql = read_attempt(run, prompt, attempt)
        if sql is None:
            return False  # cancelled
        fatal = [p.message for p in run.answer.problems if p.fatal]
        doubts = [p.message for p in run.answer.problems if p.kind == "value"]
        # Answers drawn on the same prompt first: more varied than the beams, which are near
        # copies of this one; the beams when none of the drawn answers returns anything.
        if (fatal or doubts) and attempt == 0:
            if run.drawing and settle_last(run):
                return True
            if settings.beams and take_beam(run, prompt, fatal or doubts):
                return False
        if not fatal or attempt == settings.max_repairs:
            return False
        error = "; ".join(fatal)
        asked = repair_question(question, sql, error)
    return False


def take_beam(run: QuestionRun, prompt: str, errors: list[str]) -> bool:
    """A step: the first of the beams (other answers to `prompt`) that passes, taken
    (`take_candidate`); the beams kept for a later vote."""
    beams = run.settings.beams
    with run.step():
        run.say(CANDIDATES_MARKER.format(error="; ".join(errors), n=beams))
        run.beam_texts = run.engine.beams(prompt, n=beams, cancel=run.cancel, shared=run.kept)
        taken = take_candidate(run.answer, run.beam_texts, run.db, run.on_chunk)
    return taken


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
    ready = checked(sql, run.db)
    answer.sql, answer.problems, answer.corrected = ready.sql, ready.problems, ready.corrected
    return sql


def mend_last(run: QuestionRun) -> None:
    """The last answer's FROM clause mended to the schema when it can be (values no row holds
    allowed when the answer already fails or doubts one)."""
    answer = run.answer
    if not answer.sql or not run.settings.mend_joins:
        return
    doubtful = not answer.ok or any(p.kind == "value" for p in answer.problems)
    ready = Checked(answer.sql, answer.problems, answer.corrected)
    if (mend := mended(ready, run.db, doubts=doubtful)) is not None:
        answer.sql, answer.problems, answer.mended = mend.sql, mend.problems, mend.mended


def settle_last(run: QuestionRun) -> bool:
    """The last answer, its joins mended (`mend_last`), voted on with the answers drawn beside
    it (`QuestionRun.vote`). True when one of them returned something."""
    mend_last(run)
    if (settled := run.vote(answer_candidate(run.answer))) is None:
        return False
    take(run.answer, settled)
    return True


def prepare(engine: TextEngine, db: Database) -> None:
    """Read the database before the first question (the app does it while the user types):
    index its values (`prompting.values`), and with a context-first model read the database's
    part of the prompt, so that every question then reads only its own tokens.

    No part of the database is read for a schema cut to fit, since the cut depends on the
    question, nor for a model of the seed's layout, whose prompts share only their head: that
    head is read instead."""
    db = db.reader()
    value_index(db)
    layout = engine.prompt_layout
    if not shared_prefix("", layout):
        engine.warm(prompt_head(layout))  # render no context for nothing
        return
    context = context_for(db.conn, db.schema(), "")
    if not context.pruned:
        engine.warm(shared_prefix(context.text, layout))


def take_candidate(
    answer: Answer, texts: list[str], db: Database, on_chunk: Callable[[str], None] | None
) -> bool:
    """Take the first candidate that passes the check (near-miss names corrected), differs
    from the answer and compares with no value that no row holds; failing that, when the answer
    itself fails, the first candidate that passes."""
    fallback: tuple[str, Checked] | None = None  # the first that passes with a doubtful value
    choice: tuple[str, Checked] | None
    for text in texts:
        ready = checked(extract_sql(text), db)
        if not ready.sql or ready.sql == answer.sql or ready.fatal:
            continue
        if not any(p.kind == "value" for p in ready.problems):
            choice = (text, ready)
            break
        fallback = fallback or (text, ready)
    else:  # no clean candidate: a doubtful one only replaces an answer that fails
        choice = None if answer.ok else fallback
    if choice is None:
        return False
    answer.raw, ready = choice
    answer.sql, answer.problems, answer.corrected = ready.sql, ready.problems, ready.corrected
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
