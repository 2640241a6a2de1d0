"""The gemma-sql app: composes the widgets and routes messages between them and the workers.

Work happens in tui/workers.py (thread workers over model/); widgets live in tui/widgets/.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import ContentSwitcher, Footer
from textual.worker import Worker, WorkerState, get_current_worker

from model.llm.pipeline.settings import DEFAULT, Settings
from model.sqlite.chart import Chart, NoChart
from model.sqlite.db import Database, QueryResult
from model.sqlite.export import format_for
from model.sqlite.history import History
from model.text import counted
from tui import messages as m
from tui import workers
from tui.answering import AnsweringApp
from tui.keys import MAIN_SCREEN_ONLY, app_bindings
from tui.safe_text import shown
from tui.widgets.chart import ResultsChart, chart_of, theme_colors
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.editor import SqlEditor
from tui.widgets.export import ExportScreen, ExportTarget
from tui.widgets.history import HistoryScreen
from tui.widgets.notes import SqlNotes
from tui.widgets.question import QuestionBox
from tui.widgets.reading import SqlReading
from tui.widgets.results import ResultsTable
from tui.widgets.schema_tree import SchemaTree
from tui.widgets.status import StatusBar

if TYPE_CHECKING:  # the model side loads lazily: the app runs as a plain SQL client without it
    from model.llm.pipeline.answer import Answer
    from model.llm.pipeline.confidence import ReadOut
    from model.llm.protocol import TextEngine

_ACTIVE = (WorkerState.PENDING, WorkerState.RUNNING)


class GemmaSqlApp(AnsweringApp):
    CSS_PATH = "app.tcss"
    TITLE = "gemma-sql"
    BINDINGS = app_bindings()  # tui/keys.py: every key, written once

    def __init__(self, database: Database, model: str | None = None,
                 adapter: str | Path | None = None, device: str | None = None,
                 load_model: bool = True, engine: TextEngine | None = None,
                 history: History | None = None, endpoint: str | None = None,
                 endpoint_model: str | None = None, dtype: str | None = None,
                 settings: Settings = DEFAULT) -> None:
        super().__init__()
        self.database = database
        self.model_name, self.adapter, self.device = model, adapter, device
        self.endpoint, self.endpoint_model = endpoint, endpoint_model  # a server's model
        self.dtype = dtype  # the model's compute dtype
        self.load_model = load_model
        self.engine = engine  # None until loaded; tests pass a scripted one
        self.settings = settings  # how far the pipeline goes for a question (budget, draws)
        self.answer: Answer | None = None  # the model's last answer, and which of its
        self.alternative = 0  # alternatives the editor shows (F7 turns to the next)
        self.said: ReadOut | None = None  # the model's answer read out, and how sure it is
        self.read_text: str | None = None  # the editor text the reading under it is of
        self._reading_timer: Timer | None = None
        self.history = history or History()
        self.result: QueryResult | None = None  # the result on screen, maybe half fetched
        self.result_changed_data = False  # its statement wrote: never run it again
        self.cancel_generation = threading.Event()

    def compose(self) -> ComposeResult:
        db = self.database
        with Horizontal(id="main"):
            yield SchemaTree(db.schema(), db.path.name, id="schema")
            with Vertical(id="right"):
                yield QuestionBox(id="question")
                yield SqlEditor.code_editor(language="sql", id="editor")
                yield SqlReading(id="sql-reading")
                yield SqlNotes(id="sql-notes")
                with ContentSwitcher(initial="results", id="results-area"):
                    yield ResultsTable(id="results")
                    yield ResultsChart(id="chart")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        mode = "read-write" if self.database.write else "read-only"
        self.title = f"gemma-sql · {shown(self.database.path.name)}"
        self.status.say(f"{self.database.path.name} ({mode}) · F1 keys")
        if self.engine is not None:
            self.status.model(workers.describe_engine(self.engine))
        elif self.load_model:
            self.status.model("model loading…")
            self.load_engine()
        else:
            self.status.model("no model: started with --no-model")
        self.query_one(SqlEditor).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in MAIN_SCREEN_ONLY and isinstance(self.screen, ModalScreen))

    # Workers: thin wrappers; the work itself is in tui/workers.py.

    @work(thread=True, exclusive=True, group="query", exit_on_error=False)
    def run_statements(self, statements: list[str], confirmed: bool = False) -> None:
        previous, self.result = self.result, None
        workers.run_statements(self.database, self.history, statements, confirmed, previous,
                               self.post_message)

    @work(thread=True, exclusive=True, group="query", exit_on_error=False)
    def fetch_more(self, result: QueryResult) -> None:
        workers.fetch_more(self.database, result, self.post_message)

    @work(thread=True, group="count", exit_on_error=False)
    def count_rows(self, tables: list[str]) -> None:
        worker = get_current_worker()  # cancelled as the app exits: a count stops at once
        workers.count_rows(self.database, tables, self.post_message, lambda: worker.is_cancelled)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def export(self, sql: str, columns: list[str], path: str,
               fetched: list[tuple[Any, ...]] | None = None, replace: bool = False) -> None:
        worker = get_current_worker()
        workers.export_result(self.database, sql, columns, path, lambda: worker.is_cancelled,
                              self.post_message, fetched, replace)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def export_chart(self, chart: Chart, path: str, colors: list[str], replace: bool) -> None:
        workers.export_chart(chart, path, colors, self.post_message, replace)

    # Actions

    def action_run_query(self) -> None:
        self.query_one(SqlEditor).want_run()

    @on(SqlEditor.RunWanted)
    def _run_wanted(self, message: SqlEditor.RunWanted) -> None:
        if isinstance(self.screen, ModalScreen):  # a dialog opened while it was on its way
            return
        if self._busy("query"):  # one connection: a second statement would queue behind it
            self.status.say("a query is running: escape cancels it", "warning")
            return
        statements = message.statements
        if not statements:
            self.status.say("nothing to run", "warning")
            return
        self.status.say("running…")
        self.run_statements(statements)

    def action_cancel(self) -> None:
        if self._busy("generate"):
            self.cancel_generation.set()
            self.status.say("cancelling generation…")
        for worker in self._active("query"):
            self.status.say("cancelling query…")
            self._interrupt_query(worker)
        self.workers.cancel_group(self, "export")

    def _interrupt_query(self, worker: Worker[Any], tries: int = 20) -> None:
        # SQLite drops an interrupt that arrives before the statement starts stepping, so
        # repeat it every 50 ms until that worker has ended (it stops within ~1 ms).
        if worker.state in _ACTIVE:
            self.database.interrupt()
            if tries > 1:
                self.set_timer(0.05, lambda: self._interrupt_query(worker, tries - 1))

    async def action_quit(self) -> None:
        # Python waits for worker threads before the process ends: a query or generation left
        # running would keep it alive, screen gone, until done. (A model still loading cannot
        # be stopped: quitting waits for it.)
        self.action_cancel()
        await super().action_quit()

    def action_toggle_keys(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def action_history(self) -> None:
        def chosen(sql: str | None) -> None:
            if sql:
                self.query_one(SqlEditor).replace_all(sql)
                self.query_one(SqlEditor).focus()

        self.push_screen(HistoryScreen(self.history.entries()), chosen)

    def action_export(self) -> None:
        result, table = self.result, self.query_one(ResultsTable)
        if result is None or not result.columns:
            self.status.say("no result to export: run a query first", "warning")
            return
        # A statement that changed data (INSERT … RETURNING) is never run again: the rows
        # on screen are the export. Reads run again, for every row (issue 22).
        fetched = list(table.raw) if self.result_changed_data else None

        def chosen(target: ExportTarget | None) -> None:
            if target is None:
                return
            path = target.path
            if format_for(path) == "png":
                self._export_chart(path, target.replace)
            else:
                self.status.say(f"exporting to {path}…")
                self.export(result.sql, result.columns, path, fetched, target.replace)

        default = str(Path.cwd() / f"{self.database.path.stem}-result.csv")
        self.push_screen(ExportScreen(default, len(table.raw), runs_again=fetched is None),
                         chosen)

    # The chart (F4): of the rows loaded, never fetching more

    def _chart(self) -> Chart | NoChart:
        return chart_of(self.query_one(ResultsTable), self.result.sql if self.result else None)

    @property
    def _charting(self) -> bool:
        return self.query_one("#results-area", ContentSwitcher).current == "chart"

    def action_toggle_chart(self) -> None:
        if self._charting:
            self.query_one("#results-area", ContentSwitcher).current = "results"
        else:
            self._show_chart()

    def _show_chart(self, quiet: bool = False) -> None:
        """The chart in the results' place, or the table and one line saying why not."""
        chart, switcher = self._chart(), self.query_one("#results-area", ContentSwitcher)
        if isinstance(chart, NoChart):
            switcher.current = "results"
            if not quiet:
                self.status.say(f"no chart: {chart.reason}", "warning")
            return
        self.query_one(ResultsChart).show(chart)
        switcher.current = "chart"

    def _export_chart(self, path: str, replace: bool = False) -> None:
        chart = self._chart()
        if isinstance(chart, NoChart):
            self.status.say(f"no chart to export: {chart.reason}", "warning")
            return
        self.status.say(f"exporting the chart to {path}…")
        self.export_chart(chart, path, theme_colors(self), replace)

    # Messages from workers

    @on(m.QueryRan)
    def _query_ran(self, message: m.QueryRan) -> None:
        result, table = message.result, self.query_one(ResultsTable)
        if self.result is not None and self.result is not result:
            self.result.close()
        self.result = result
        self.result_changed_data = message.changed_data
        if result.columns:
            table.show(result.columns, message.rows, not result.exhausted, message.seconds)
            self.status.say(f"{table.border_subtitle}")
        else:
            changed = result.rows_changed
            text = f"done · {changed} row{'s' * (changed != 1)} changed" if changed >= 0 \
                else "done"
            table.show_message(f"{text} · {message.seconds:.3f} s")
            self.status.say(text)
            if self.database.write:  # DDL may have changed the schema
                self.query_one(SchemaTree).load(self.database.schema(refresh=True))
        if self._charting:  # the chart follows the new rows; a statement without rows: quiet
            self._show_chart(quiet=not result.columns)

    @on(m.RowsFetched)
    def _rows_fetched(self, message: m.RowsFetched) -> None:
        if message.result is self.result:
            self.query_one(ResultsTable).append(message.rows, not message.result.exhausted)
            if self._charting:
                self._show_chart()

    @on(ResultsTable.MoreWanted)
    def _more_wanted(self) -> None:
        if self.result is not None and not self.result.exhausted and not self._busy("query"):
            self.fetch_more(self.result)

    @on(m.QueryFailed)
    def _query_failed(self, message: m.QueryFailed) -> None:
        if message.cancelled:
            self.status.say("query cancelled", "warning")
        else:
            self.status.say(f"error: {message.error}", "error")
            self.notify(shown(message.error), title="Query failed", severity="error",
                        markup=False)

    @on(m.ConfirmWrite)
    def _confirm_write(self, message: m.ConfirmWrite) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.status.say("running…")
                self.run_statements(message.statements, confirmed=True)
            else:
                self.status.say("not run: cancelled at the confirmation", "warning")

        self.push_screen(ConfirmScreen(message.statements, self.database.path.name), answered)

    @on(SchemaTree.CountsWanted)
    def _counts_wanted(self, message: SchemaTree.CountsWanted) -> None:
        self.count_rows(message.tables)

    @on(m.RowCounted)
    def _row_counted(self, message: m.RowCounted) -> None:
        self.query_one(SchemaTree).set_count(message.table, message.count)

    @on(SchemaTree.NameChosen)
    def _name_chosen(self, message: SchemaTree.NameChosen) -> None:
        self.query_one(SqlEditor).insert_name(message.text)

    @on(m.HistoryNotSaved)
    def _history_not_saved(self, message: m.HistoryNotSaved) -> None:
        self.notify(shown(message.error), title="History not saved", severity="warning",
                    markup=False)

    @on(m.Exported)
    def _exported(self, message: m.Exported) -> None:
        if message.error:
            self.status.say(f"export failed: {message.error}", "error")
            self.notify(shown(message.error), title="Export failed", severity="error",
                        markup=False)
        else:
            self.status.say(f"exported {counted(message.rows, 'row')} to {message.path}")
