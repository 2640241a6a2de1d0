"""One question to checked SQL: the pipeline the app, `gemma-sql ask` and `gemma-sql eval` share.

schema -> context (pruned to what the question needs) -> prompt -> streamed answer ->
extracted, pretty-printed, checked SQL -> the answer the database agrees with.

Values the question names that the data holds ('Prague') bring their tables into the context,
shown in a row as stored (`prompting.values`). The model first sees only the few tables the
question most likely needs (`focused_context`): a prompt about half as long. Its answer is
checked (`model.llm.sql.mend`: names misspelt are corrected, joins off the foreign keys mended);
when it passes with every value it compares found, it is run read-only, bounded, on the
pipeline's own connection; if the model was sure of every token and it returns a row, it is
taken; otherwise a few more answers are drawn on the same prompt and run the same way: the
result most of them agree on wins (`pipeline.vote`). When the answer fails the check, compares
a column with text no row holds, or neither it nor any answer drawn beside it returns anything,
the question is asked again with every table that fits; that answer is voted on with the
answers drawn beside it in the same way. When none of those returns anything, the model's
`beams` next most likely answers (beam search on the same prompt) are checked and the first
that passes cleanly is taken; failing that, a failed question is asked again with the error
attached (at most `max_repairs` times), and the last answer is voted on with the beams.

Every step after the first answer (drawing and voting included) runs only while the
question's time budget lasts, and replaces the answer only when it finishes in time
(`model.llm.pipeline.budget`); the note says when the budget stopped the chain. The seed layout's
prompt head is read once and kept (`prompt_head`).

The distinct results are kept as alternatives the user can turn to. `check_runs=False` runs
nothing and draws nothing: the answer is the checked greedy one, a beam candidate or a repair,
as before the vote. The SQL is never run for the user here, nor on the user's connection: that
is the caller's choice (`model.sqlite.db`).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from model.llm.pipeline.answer import Answer
from model.llm.pipeline.budget import DEFAULT_BUDGET_S, Budget, OutOfTime
from model.llm.pipeline.question_run import QuestionRun
from model.llm.pipeline.vote import SAMPLES, Candidate, Settled
from model.llm.prompting.context import (
    Context,
    context_for,
    focused_context,
    rank_tables,
    schema_words,
)
from model.llm.prompting.prompt import prompt_head, shared_prefix
from model.llm.prompting.values import value_index
from model.llm.sql.extract import extract_sql
from model.llm.sql.mend import checked, mended

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
    on_chunk: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    max_repairs: int = 1,
    max_new_tokens: int = 256,
    beams: int = 4,
    focused: bool = True,
    samples: int = SAMPLES,
    check_runs: bool = True,
    budget: float = DEFAULT_BUDGET_S,
    clock: Callable[[], float] = time.perf_counter,
) -> Answer:
    """Write SQL for `question` about `db`. `on_chunk` sees the text as it streams (from a
    worker thread in the app), including a `-- ...` line before another candidate or a
    repair. `beams` other answers are checked when the first fails (0: none); `focused`: try
    the question's likeliest tables alone first; `samples` answers are drawn beside the
    greedy one and, with `check_runs`, the answers are run read-only to choose among them.
    `budget`: seconds from the start after which no step beyond the first answer runs or is
    taken (0: unlimited), timed by `clock`."""
    timer = Budget(budget, clock)
    db = db.reader()  # the pipeline reads the data only through its own read-only connection
    schema = db.schema()
    linked = tuple(value_index(db).find(question, schema_words(schema)))
    ranking = rank_tables(schema, question, linked)  # read once, for both contexts
    context = context_for(db.conn, schema, question, ranking=ranking)
    answer = Answer(question, tables_sent=list(context.tables), pruned=context.pruned,
                    model=engine.name, linked=[str(hit) for hit in linked])
    shared = shared_prefix(context.text, engine.prompt_layout)
    # The question's own tables first: a prompt about half as long, and fewer tables to mix up.
    # Not for a model that keeps the whole schema's part of the prompt read (`shared`).
    focus = None
    if not shared and focused:
        focus = focused_context(db.conn, schema, question, ranking=ranking)
    run = QuestionRun(engine, db, answer, on_chunk, cancel, max_new_tokens, timer,
                      kept=shared or prompt_head(engine.prompt_layout),
                      samples=samples if check_runs else -1)
    try:
        if focus is None or not ask_focused(run, focus):
            settled = ask_with_repairs(run, context, max_repairs, beams, widen=focus is not None)
            if not settled and answer.sql and not answer.cancelled:
                settle_last(run)
    except OutOfTime:
        answer.out_of_time = timer.note()
    answer.cancelled = answer.cancelled or run.cancelled
    if answer.sql and not answer.cancelled and not answer.focused:
        mend_last(answer, db)  # a no-op on an answer mended before its vote
    answer.seconds = clock() - timer.started
    return answer


def answer_candidate(answer: Answer) -> Candidate:
    """The pipeline's own answer, as the first of the candidates."""
    return Candidate(answer.sql, answer.raw, answer.problems, answer.corrected, answer.mended,
                     origin="greedy")


def take(answer: Answer, settled: Settled) -> None:
    """The chosen candidate's SQL into the answer, with the alternatives."""
    chosen = settled.chosen
    answer.sql, answer.problems = chosen.sql, chosen.problems
    answer.corrected, answer.mended = chosen.corrected, chosen.mended
    answer.alternatives, answer.agreed = settled.alternatives, settled.agreed
    if chosen.origin != "greedy":
        answer.raw, answer.voted = chosen.raw, True


def ask_focused(run: QuestionRun, focus: Context) -> bool:
    """Ask with the question's likeliest tables alone. True when that settles the answer: it
    passes the check (joins mended if need be) with every value it compares found, and it or
    an answer drawn beside it returns a row (when run), or the user cancelled; otherwise it
    stands only until asking again with every table replaces it (`run.unsettled` says why)."""
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
    run.unsettled = [p.message for p in problems if p.fatal or p.kind == "value"]
    if run.unsettled:
        return False
    if (settled := run.vote(answer_candidate(answer))) is None:
        run.unsettled = [NO_ROWS]
        return False
    take(answer, settled)
    return True


def start_widening(run: QuestionRun, context: Context) -> None:
    """Make the answer the one about to come from every table (`context`)."""
    answer = run.answer
    run.say(WIDEN_MARKER.format(error="; ".join(run.unsettled)))
    answer.widened, answer.focused, answer.mended, answer.corrected = True, False, [], []
    answer.tables_sent, answer.pruned = list(context.tables), context.pruned


def ask_with_repairs(run: QuestionRun, context: Context, max_repairs: int, beams: int,
                     widen: bool = False) -> bool:
    """Ask with `context` (`widen`: after the answer from the question's tables failed); when
    the first answer fails or doubts a value, vote among it and the answers drawn beside it
    (when they are run), else take the first of `beams` other answers that passes; while it
    fails, ask again with the error attached. Each a step of its own. True when the vote
    settled the answer."""
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
            return False  # cancelled
        fatal = [p.message for p in answer.problems if p.fatal]
        doubts = [p.message for p in answer.problems if p.kind == "value"]
        # Answers drawn on the same prompt first: more varied than the beams, which are near
        # copies of this one; the beams when none of the drawn answers returns anything.
        if (fatal or doubts) and attempt == 0:
            if run.samples >= 0 and settle_last(run):
                return True
            if beams and take_beam(run, prompt, beams, fatal or doubts):
                return False
        if not fatal or attempt == max_repairs:
            return False
        error = "; ".join(fatal)
        asked = repair_question(question, sql, error)
    return False


def take_beam(run: QuestionRun, prompt: str, beams: int, errors: list[str]) -> bool:
    """A step: the first of `beams` other answers to `prompt` that passes, taken
    (`take_candidate`); the beams kept for a later vote."""
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
    answer.sql, answer.problems, answer.corrected = checked(sql, run.db)
    return sql


def mend_last(answer: Answer, db: Database) -> None:
    """The last answer's FROM clause mended to the schema when it can be (values no row holds
    allowed when the answer already fails or doubts one)."""
    doubtful = not answer.ok or any(p.kind == "value" for p in answer.problems)
    if answer.sql and (mend := mended(answer.sql, db, doubts=doubtful)) is not None:
        answer.sql, answer.problems, answer.mended = mend


def settle_last(run: QuestionRun) -> bool:
    """The last answer, its joins mended (`mend_last`), voted on with the answers drawn beside
    it (`QuestionRun.vote`). True when one of them returned something."""
    mend_last(run.answer, run.db)
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
