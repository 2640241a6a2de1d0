"""The app's model half: asking, the SQL streaming into the editor, F7's other answers and
the SQL read out under the editor. `GemmaSqlApp` (tui/app.py) composes the widgets on top of it;
the work itself is in tui/workers.py.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from model.llm.pipeline.settings import Settings
from model.sqlite.db import Database
from tui import messages as m
from tui import workers
from tui.widgets.editor import SqlEditor
from tui.widgets.notes import SqlNotes
from tui.widgets.question import QuestionBox
from tui.widgets.reading import SqlReading
from tui.widgets.status import StatusBar

if TYPE_CHECKING:  # the model side loads lazily: the app runs as a plain SQL client without it
    from model.llm.pipeline.answer import Answer
    from model.llm.pipeline.confidence import ReadOut
    from model.llm.protocol import TextEngine
    from model.sqlite.schema import Schema

_ACTIVE = (WorkerState.PENDING, WorkerState.RUNNING)
# The editor's SQL is read out this long after the last key (a worker reads it).
READING_DELAY_S = 0.3


class AnsweringApp(App[None]):
    """The model's side of the app; its state is set by `GemmaSqlApp.__init__`."""

    database: Database
    settings: Settings
    model_name: str | None
    adapter: str | Path | None
    device: str | None
    endpoint: str | None
    endpoint_model: str | None
    dtype: str | None
    engine: TextEngine | None
    answer: Answer | None  # the model's last answer, and which of its
    alternative: int  # alternatives the editor shows (F7 turns to the next)
    said: ReadOut | None  # the model's answer read out, and how sure it is
    read_text: str | None  # the editor text the reading under it is of
    _reading_timer: Timer | None
    cancel_generation: threading.Event

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    def _active(self, group: str) -> list[Worker[Any]]:
        return [w for w in self.workers if w.group == group and w.state in _ACTIVE]

    def _busy(self, group: str) -> bool:
        return bool(self._active(group))

    @work(thread=True, group="model", exit_on_error=False)
    def load_engine(self) -> None:
        workers.load_model(self.model_name, self.adapter, self.device, self.post_message,
                           self.database, self.endpoint, self.endpoint_model, self.dtype)

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def generate(self, engine: TextEngine, question: str, cancel: threading.Event,
                 every_table: bool) -> None:
        workers.generate(engine, self.database, question, cancel, self.post_message,
                         replace(self.settings, focused=not every_table))

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def draw_more(self, engine: TextEngine, answer: Answer, cancel: threading.Event) -> None:
        workers.draw_more(engine, self.database, answer, cancel, self.post_message,
                          self.settings)

    def _may_draw(self, answer: Answer) -> bool:
        """Whether the time budget skipped the answers to draw beside `answer`."""
        return (self.engine is not None and self.settings.check_runs and bool(answer.prompt)
                and bool(answer.out_of_time) and not self._busy("generate")
                and answer.ran <= 1)

    @on(m.MoreAnswers)
    def _more_answers(self, message: m.MoreAnswers) -> None:
        if message.answer.prompt != (self.answer.prompt if self.answer else None):
            return  # another question was asked meanwhile
        if message.cancelled:
            self.status.say("drawing cancelled", "warning")
            return
        from model.llm.pipeline.confidence import read_out

        self.answer, self.alternative = message.answer, 0
        self.said = read_out(message.answer, self.database, self.settings.policy)
        if len(message.answer.alternatives) < 2:
            self.status.say(f"no other answer: the answers drawn agree "
                            f"({message.answer.agreed})", "warning")
            self.query_one(SqlNotes).show_answer(message.answer)
            return
        self.action_next_answer()

    @work(thread=True, exclusive=True, group="reading", exit_on_error=False)
    def read_sql(self, sql: str, schema: Schema) -> None:
        from model.llm.sql.explain import explain

        self.post_message(SqlReading.Read(sql, explain(sql, schema)))

    def action_next_answer(self) -> None:
        """The editor turns to the model's next distinct answer (by result), round to the first;
        the answers the time budget skipped are drawn first (escape cancels)."""
        answer = self.answer
        if answer is not None and len(answer.alternatives) < 2 and self._may_draw(answer):
            self.cancel_generation = threading.Event()
            self.status.say(f"drawing {self.settings.samples} more answers… (escape cancels)")
            assert self.engine is not None  # _may_draw
            self.draw_more(self.engine, answer, self.cancel_generation)
            return
        if answer is None or len(answer.alternatives) < 2:
            self.status.say("no other answer: the model's answers that ran all agree"
                            if answer is not None and answer.alternatives
                            else "no other answers to show", "warning")
            return
        self.alternative = (self.alternative + 1) % len(answer.alternatives)
        shown = answer.alternatives[self.alternative]
        self.query_one(SqlEditor).replace_all(answer.sql if self.alternative == 0 else shown.sql)
        self.query_one(SqlNotes).show_answer(answer, self.alternative)

    @on(m.ModelStatus)
    def _model_status(self, message: m.ModelStatus) -> None:
        self.status.model(message.text)

    @on(m.ModelReady)
    def _model_ready(self, message: m.ModelReady) -> None:
        self.engine = message.engine
        self.status.model(workers.describe_engine(self.engine))

    def action_ask_every_table(self) -> None:
        """The question box's question again, with every table of the schema in the prompt."""
        question = self.query_one(QuestionBox).value.strip()
        if not question:
            self.status.say("type a question first (F3)", "warning")
            return
        self._ask(question, every_table=True)

    @on(QuestionBox.Asked)
    def _asked(self, message: QuestionBox.Asked) -> None:
        self._ask(message.question, every_table=False)

    def _ask(self, question: str, every_table: bool) -> None:
        engine = self.engine
        if engine is None:
            reason = self.status.model_text
            waiting = self._busy("model")
            self.status.say("model loading…" if waiting else reason or "no model", "warning")
            return
        self.cancel_generation = threading.Event()
        self.query_one(SqlEditor).replace_all("")
        self.query_one(SqlNotes).clear()
        self.query_one(SqlReading).clear()
        self.said = None
        self.status.say("writing SQL… (escape cancels)")
        self.generate(engine, question, self.cancel_generation, every_table)

    @on(m.SqlChunk)
    def _sql_chunk(self, message: m.SqlChunk) -> None:
        self.query_one(SqlEditor).append(message.text)

    @on(m.SqlDone)
    def _sql_done(self, message: m.SqlDone) -> None:
        answer, editor = message.answer, self.query_one(SqlEditor)
        assert self.engine is not None  # it wrote the answer
        self.status.model(workers.describe_engine(self.engine))
        if answer.cancelled:
            self.status.say("generation cancelled", "warning")
            return
        if not answer.sql:  # leave the model's text in the editor to read
            said = "; ".join(filter(None, ["the model wrote no SQL", answer.out_of_time]))
            self.status.say(said, "warning")
            return
        editor.replace_all(answer.sql)
        editor.focus()
        self.answer, self.alternative = answer, 0
        self.query_one(SqlNotes).show_answer(answer)
        from model.llm.pipeline.confidence import read_out

        self.said = read_out(answer, self.database, self.settings.policy)  # index: built
        self._show_reading(editor.text, self.said.explanation)
        self.status.say(f"SQL written in {answer.seconds:.1f} s: review it, then ctrl+j runs it")

    @on(m.GenerationFailed)
    def _generation_failed(self, message: m.GenerationFailed) -> None:
        self.status.say(message.error, "warning" if message.cancelled else "error")

    # The SQL read out under the editor: the model's answer with how sure it is, and whatever
    # the user types or edits, read by a worker once the keys pause.

    @on(SqlEditor.Changed, "#editor")
    def _editor_changed(self) -> None:
        if self._reading_timer is not None:
            self._reading_timer.stop()
        if self._busy("generate"):  # the model is writing: its answer is read when done
            return
        self._reading_timer = self.set_timer(READING_DELAY_S, self._read_editor)

    def _read_editor(self) -> None:
        editors = self.query(SqlEditor)  # none while the app closes, its timer still set
        if editors and editors.first().text != self.read_text:
            self.read_sql(editors.first().text, self.database.schema())

    @on(SqlReading.Read)
    def _sql_read(self, message: SqlReading.Read) -> None:
        if message.sql == self.query_one(SqlEditor).text:  # not overtaken by more keys
            self._show_reading(message.sql, message.reading)

    def _show_reading(self, sql: str, reading: str) -> None:
        """`reading` of `sql`; with the verdict while `sql` is the model's chosen answer."""
        from model.llm.pipeline.confidence import unmatched_phrase

        self.read_text = sql
        said, answer = self.said, self.answer
        if said is None or answer is None or sql != answer.sql:
            self.query_one(SqlReading).show(reading)
            return
        self.query_one(SqlReading).show(reading, said.verdict.phrase,
                                        unmatched_phrase(said.unmatched),
                                        doubtful=said.verdict.kind in ("unsure", "unchecked"))
