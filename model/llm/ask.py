"""One question to checked SQL: the pipeline the app, `gemma-sql ask` and `gemma-sql eval` share.

schema -> context (pruned to what the question needs) -> prompt -> streamed answer ->
extracted, pretty-printed, checked SQL -> the answer the database agrees with.

Values the question names that the data holds ('Prague') bring their tables into the context,
shown in a row as stored (`model.llm.values`). The model first sees only the few tables the
question most likely needs (`focused_context`): a prompt about half as long. Its answer is
checked (`model.llm.review`: names misspelt are corrected, joins off the foreign keys mended);
when it passes with every value it compares found, a few more answers are drawn on the same
prompt and all are run read-only, bounded, on the pipeline's own connection: the result most
of them agree on wins (`model.llm.vote`). When the answer fails the check, compares a column
with text no row holds, or neither it nor any answer drawn beside it returns anything, the
question is asked again with every table that fits; that answer is voted on with the answers
drawn beside it in the same way. When none of those returns anything, the model's `beams` next
most likely answers (beam search on the same prompt) are checked and the first that passes
cleanly is taken; failing that, a failed question is asked again with the error attached (at
most `max_repairs` times), and the last answer is voted on with the beams.

The distinct results are kept as alternatives the user can turn to. `check_runs=False` runs
nothing and draws nothing: the answer is the checked greedy one, a beam candidate or a repair,
as before the vote. A top N ranked by an aggregate it does not select gets that figure as its
last column (`model.llm.ranking`). The SQL is never run for the user here, nor on the user's
connection: that is the caller's choice (`model.sqlite.db`).
"""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from model.llm.answer import Answer
from model.llm.check import check
from model.llm.context import Context, context_for, focused_context, rank_tables, schema_words
from model.llm.extract import extract_sql, is_echo
from model.llm.parsing import pretty
from model.llm.prompt import build_prompt, shared_prefix
from model.llm.ranking import show_ranked_figure
from model.llm.review import checked, mended
from model.llm.values import value_index
from model.llm.vote import (
    DRAW_BUDGET_S,
    DRAW_MIN_S,
    DRAW_TIME_FACTOR,
    SAMPLES,
    Candidate,
    Settled,
    settle,
)

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
) -> Answer:
    """Write SQL for `question` about `db`. `on_chunk` sees the text as it streams (from a
    worker thread in the app), including a `-- ...` line before another candidate or a
    repair. `beams` other answers are checked when the first fails (0: none); `focused`: try
    the question's likeliest tables alone first; `samples` answers are drawn beside the
    greedy one and, with `check_runs`, the answers are run read-only to choose among them."""
    started = time.perf_counter()
    db = db.reader()  # the pipeline reads the data only through its own read-only connection
    schema = db.schema()
    linked = tuple(value_index(db).find(question, schema_words(schema)))
    ranking = rank_tables(schema, question, linked)  # read once, for both contexts
    context = context_for(db.conn, schema, question, ranking=ranking)
    answer = Answer(question, tables_sent=list(context.tables), pruned=context.pruned,
                    model=engine.name, linked=[str(hit) for hit in linked])
    run = QuestionRun(engine, db, answer, on_chunk, cancel, max_new_tokens,
                      samples if check_runs else -1, started,
                      named=list(dict.fromkeys(hit.said for hit in linked)))
    shared = shared_prefix(context.text, engine.prompt_layout)
    # The question's own tables first: a prompt about half as long, and fewer tables to mix up.
    # Not for a model that keeps the whole schema's part of the prompt read (`shared`).
    focus = None
    if not shared and focused:
        focus = focused_context(db.conn, schema, question, ranking=ranking)
    if focus is None or not ask_focused(run, focus):
        settled = ask_with_repairs(run, context, shared, max_repairs, beams)
        if not settled and answer.sql and not answer.cancelled:
            settle_last(run, shared)
    answer.cancelled = answer.cancelled or run.cancelled
    if not answer.cancelled:
        show_figure(answer, db)
    answer.seconds = time.perf_counter() - started
    return answer


@dataclass
class QuestionRun:
    """One question on its way through the pipeline: what each step reads, and the answer the
    steps fill in."""

    engine: TextEngine
    db: Database
    answer: Answer
    on_chunk: Callable[[str], None] | None
    cancel: threading.Event | None
    max_new_tokens: int
    samples: int  # answers drawn beside the greedy one; -1: none, and nothing run
    started: float = field(default_factory=time.perf_counter)
    named: list[str] = field(default_factory=list)  # the question's words for values found
    last_prompt: str = ""
    beam_texts: list[str] = field(default_factory=list)  # of the last prompt, when read
    drawn_on: set[str] = field(default_factory=set)  # the prompts answers were drawn on

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def say(self, text: str) -> None:
        if self.on_chunk is not None:
            self.on_chunk(text)

    def prompt(self, question: str, context: Context) -> str:
        self.last_prompt = build_prompt(question, context.text, self.engine.prompt_layout)
        self.beam_texts = []
        return self.last_prompt

    def read(self, prompt: str, kept: str = "") -> str:
        """The model's answer to `prompt` (whose beginning `kept` the engine may have read
        before), streamed to `on_chunk`; its figures kept."""
        pieces: list[str] = []
        stream = self.engine.stream(prompt, cancel=self.cancel,
                                    max_new_tokens=self.max_new_tokens, shared=kept)
        for piece in stream:
            pieces.append(piece)
            self.say(piece)
            if is_echo("".join(pieces[-64:])):
                stream.close()  # no answer is coming: stop decoding now, not 256 tokens later
                break
        self.answer.stats.append(self.engine.last_stats)
        return "".join(pieces)

    def settle(self, first: Candidate, shared: str = "") -> Settled | None:
        """The answer the database agrees with, among `first` (the pipeline's own), the beams
        read for the last prompt and `samples` drawn on it (`model.llm.vote.settle`); `first`
        alone when nothing is to be run; None when none of them returned a row."""
        if self.samples < 0 or self.cancelled:
            return Settled(first)
        last = self.answer.stats[-1] if self.answer.stats else None
        tokens = last.tokens if last is not None else self.max_new_tokens
        took = max(DRAW_MIN_S, DRAW_TIME_FACTOR * (last.seconds if last is not None else 0.0))
        deadline = min(time.perf_counter() + took, self.started + DRAW_BUDGET_S)
        drawn = self.last_prompt in self.drawn_on  # the same seed would draw the same again
        self.drawn_on.add(self.last_prompt)
        return settle(self.engine, self.db, self.last_prompt, first, self.beam_texts,
                      n=0 if drawn else self.samples,
                      max_new_tokens=min(self.max_new_tokens, tokens * 3 // 2 + 16),
                      shared=shared, cancel=self.cancel, on_chunk=self.on_chunk,
                      deadline=deadline, named=self.named)


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
    an answer drawn beside it returns a row (when run), or the user cancelled; otherwise the
    answer is marked widened, for asking again with every table."""
    answer, db = run.answer, run.db
    answer.raw = run.read(run.prompt(answer.question, focus))
    answer.attempts = 1
    sql = extract_sql(answer.raw)
    if run.cancelled:
        answer.cancelled, answer.sql = True, sql  # partial: not worth checking
        return True
    sql, problems, corrected = checked(sql, db)
    changes: list[str] = []
    if (mend := mended(sql, db, doubts=False)) is not None:
        sql, problems, changes = mend
    failures = [p.message for p in problems if p.fatal or p.kind == "value"]
    if not failures:
        first = Candidate(sql, answer.raw, problems, corrected, changes, origin="greedy")
        if (settled := run.settle(first)) is not None:
            take(answer, settled)
            answer.tables_sent, answer.pruned, answer.focused = list(focus.tables), True, True
            return True
        failures = [NO_ROWS]
    answer.widened = True
    run.say(WIDEN_MARKER.format(error="; ".join(failures)))
    return False


def ask_with_repairs(run: QuestionRun, context: Context, shared: str, max_repairs: int,
                     beams: int) -> bool:
    """Ask with `context`; when the first answer fails or doubts a value, vote among it and
    the answers drawn beside it (when they are run), else take the first of `beams` other
    answers that passes; while it fails, ask again with the error attached. True when the
    vote settled the answer."""
    answer, question = run.answer, run.answer.question
    asked = question
    for attempt in range(max_repairs + 1):
        prompt = run.prompt(asked, context)
        answer.raw = run.read(prompt, shared)
        answer.attempts = attempt + 1
        answer.repaired = attempt > 0
        sql = extract_sql(answer.raw)
        if attempt > 0:
            sql = cut_echoed_note(sql)
        if run.cancelled:
            answer.cancelled = True
            answer.sql, answer.problems = sql, []  # partial: not worth checking
            return False
        answer.sql, answer.problems, answer.corrected = checked(sql, run.db)
        fatal = [p.message for p in answer.problems if p.fatal]
        doubts = [p.message for p in answer.problems if p.kind == "value"]
        # Answers drawn on the same prompt first: more varied than the beams, which are near
        # copies of this one; the beams when none of the drawn answers returns anything.
        if (fatal or doubts) and attempt == 0 and run.samples >= 0 and settle_last(run, shared):
            return True
        if (fatal or doubts) and attempt == 0 and beams:
            run.say(CANDIDATES_MARKER.format(error="; ".join(fatal or doubts), n=beams))
            run.beam_texts = run.engine.beams(prompt, n=beams, cancel=run.cancel, shared=shared)
            if take_candidate(answer, run.beam_texts, run.db, run.on_chunk):
                return False
        if not fatal or attempt == max_repairs:
            return False
        error = "; ".join(fatal)
        run.say(RETRY_MARKER.format(error=error))
        asked = repair_question(question, sql, error)


def settle_last(run: QuestionRun, shared: str) -> bool:
    """The last answer's FROM clause mended to the schema when it can be (values no row holds
    allowed when the answer already fails or doubts one), then voted on with the answers
    drawn beside it (`QuestionRun.settle`). True when one of them returned something."""
    answer = run.answer
    doubtful = not answer.ok or any(p.kind == "value" for p in answer.problems)
    if answer.sql and (mend := mended(answer.sql, run.db, doubts=doubtful)) is not None:
        answer.sql, answer.problems, answer.mended = mend
    if (settled := run.settle(answer_candidate(answer), shared)) is None:
        return False
    take(answer, settled)
    return True


def prepare(engine: TextEngine, db: Database) -> None:
    """Read the database before the first question (the app does it while the user types):
    index its values (`model.llm.values`), and with a context-first model read the database's
    part of the prompt, so that every question then reads only its own tokens.

    No prompt is read for a schema cut to fit, since the cut depends on the question, nor for
    a model of the seed's layout, whose prompts share no more than their head."""
    db = db.reader()
    value_index(db)
    layout = engine.prompt_layout
    if not shared_prefix("", layout):
        return  # prompts of this layout share no beginning: render no context for nothing
    context = context_for(db.conn, db.schema(), "")
    if not context.pruned:
        engine.warm(shared_prefix(context.text, layout))


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
