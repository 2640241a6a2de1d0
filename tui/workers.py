"""What the app's thread workers do, as plain functions over model/.

They never touch widgets: every outcome, failures included, goes back as a message through
`post` (thread-safe). The app wraps each in `@work(thread=True, exit_on_error=False)`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.message import Message

from model.llm.pipeline.settings import DEFAULT, Settings
from model.sqlite import export, guard
from model.sqlite.chart import Chart
from model.sqlite.db import Database, DatabaseError, QueryResult
from model.sqlite.history import Entry, History
from model.sqlite.schema import row_count
from model.text import one_line
from tui.messages import (
    ConfirmWrite,
    Exported,
    GenerationFailed,
    HistoryNotSaved,
    ModelReady,
    ModelStatus,
    MoreAnswers,
    QueryFailed,
    QueryRan,
    RowCounted,
    RowsFetched,
    SqlChunk,
    SqlDone,
)

if TYPE_CHECKING:  # the model side loads lazily: the app runs as a plain SQL client without it
    from model.llm.pipeline.answer import Answer
    from model.llm.protocol import TextEngine

Post = Callable[[Message], Any]
# Seconds a row count of one table or view may take at start-up (a view may never end).
COUNT_LIMIT_S = 5.0


def run_statements(db: Database, history: History, statements: list[str], confirmed: bool,
                   previous: QueryResult | None, post: Post) -> None:
    if previous is not None:
        # Close the old cursor first: a statement left open would keep SQLite's "running"
        # count above zero, and an interrupt meant for it would hit the new query too.
        previous.close()
    if db.write and not confirmed and any(db.changes_data(s) for s in statements):
        post(ConfirmWrite(statements))
        return
    for i, sql in enumerate(statements):
        # Asked just before it runs, after the statements before it (which may create what it
        # writes to). Read-only sessions refuse every write: nothing they show changed data.
        changed_data = db.write and db.changes_data(sql)
        started = time.perf_counter()
        try:
            result = db.execute(sql)
            rows = db.fetch(result) if result.columns else []
        except DatabaseError as e:
            message = one_line(e)
            post(QueryFailed(sql, message, cancelled=message == "query cancelled"))
            _remember(history, Entry.now(sql, db.path.name, time.perf_counter() - started,
                                         None, message), post)
            return
        seconds = time.perf_counter() - started
        post(QueryRan(result, rows, seconds, remaining=len(statements) - i - 1,
                      changed_data=changed_data))
        _remember(history, Entry.now(sql, db.path.name, seconds,
                                     len(rows) if result.columns else result.rows_changed), post)


def _remember(history: History, entry: Entry, post: Post) -> None:
    """Add `entry` to the history after its outcome is posted: a history that cannot be written
    (a full or read-only data folder) is a warning, never a query left "running…"."""
    try:
        history.add(entry)
    except (OSError, ValueError) as e:
        post(HistoryNotSaved(f"{history.path}: {one_line(e)}"))


def fetch_more(db: Database, result: QueryResult, post: Post) -> None:
    try:
        rows = db.fetch(result)
    except DatabaseError as e:
        message = one_line(e)
        post(QueryFailed(result.sql, message, cancelled=message == "query cancelled"))
        return
    post(RowsFetched(result, rows))


def count_rows(db: Database, tables: list[str], post: Post,
               cancelled: Callable[[], bool] = lambda: False,
               timeout_s: float | None = None) -> None:
    """Counts on a connection of their own, so they never queue behind (or get interrupted
    with) the user's query; read-only behind the same authorizer. Each count stops after
    `timeout_s` (default COUNT_LIMIT_S: a view may never end) and all stop once `cancelled()`
    (the app quits)."""
    limit = COUNT_LIMIT_S if timeout_s is None else timeout_s
    try:
        conn = sqlite3.connect(f"{db.path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return
    conn.set_authorizer(lambda action, arg1, arg2, *_: guard.verdict(False, action, arg1, arg2))
    try:
        for table in tables:
            if cancelled():
                return
            # None (a view over a missing table, or past the limit) is shown as "?".
            post(RowCounted(table, row_count(conn, table, limit, cancelled)))
    finally:
        conn.close()


def export_result(db: Database, sql: str, columns: list[str], path: str,
                  cancelled: Callable[[], bool], post: Post,
                  fetched: list[tuple[Any, ...]] | None = None, replace: bool = False) -> None:
    """Run `sql` again and stream every row to `path`; or, given `fetched`, write just those
    rows (a statement that changed data must not run twice). An existing `path` is replaced
    only with `replace` (the user said so)."""
    try:
        rows = fetched if fetched is not None else db.iter_rows(sql)
        n = export.write(path, columns, rows, cancelled, replace)
    except (export.ExportError, DatabaseError) as e:
        post(Exported(path, 0, one_line(e)))
        return
    post(Exported(path, n))


def export_chart(chart: Chart, path: str, colors: list[str], post: Post,
                 replace: bool = False) -> None:
    try:
        n = export.write_chart(path, chart, colors, replace)
    except export.ExportError as e:
        post(Exported(path, 0, one_line(e)))
        return
    post(Exported(path, n))


def load_model(model: str | None, adapter: str | Path | None, device: str | None, post: Post,
               db: Database | None = None, endpoint: str | None = None,
               endpoint_model: str | None = None, dtype: str | None = None) -> None:
    """Load the model (in `dtype`, None: the machine's; with `endpoint`: connect to the
    server that has it), then read `db`'s part of the prompt ahead of the first question."""
    engine = _open(model, adapter, device, post, endpoint, endpoint_model, dtype)
    if engine is None:
        return
    post(ModelReady(engine))
    if db is not None:
        try:
            from model.llm.pipeline.ask import prepare

            prepare(engine, db)
        except Exception:  # only a head start: the first question reads the schema itself
            pass


def _open(model: str | None, adapter: str | Path | None, device: str | None, post: Post,
          endpoint: str | None, endpoint_model: str | None,
          dtype: str | None) -> TextEngine | None:
    """model/llm/open.py's engine, its progress on the status line. With an endpoint, never a
    fall back to a model loaded here: the status line says why there is none."""
    post(ModelStatus(f"model loading… connecting to {endpoint}" if endpoint else "model loading…"))
    try:
        from model.llm.open import open_engine

        return open_engine(model, adapter, device, endpoint, endpoint_model,
                           lambda message: post(ModelStatus(f"model loading… {message}")), dtype)
    except Exception as e:  # ModelUnavailable, no torch, anything: one line, app keeps going
        post(ModelStatus(f"no model: {one_line(e)}", failed=True))
        return None


def generate(engine: TextEngine, db: Database, question: str, cancel: threading.Event,
             post: Post, settings: Settings = DEFAULT) -> None:
    try:
        from model.llm.pipeline.ask import ask
    except Exception as e:
        post(GenerationFailed(f"no model: {one_line(e)}"))
        return
    try:
        answer = ask(engine, db, question, settings, on_chunk=lambda t: post(SqlChunk(t)),
                     cancel=cancel)
    except Exception as e:  # the model's failure is shown, never raised into the UI
        post(GenerationFailed(one_line(e), cancelled=cancel.is_set()))
        return
    if cancel.is_set():
        post(GenerationFailed("generation cancelled", cancelled=True))
        return
    post(SqlDone(answer))


def draw_more(engine: TextEngine, db: Database, answer: Answer, cancel: threading.Event,
              post: Post, settings: Settings = DEFAULT) -> None:
    """The answers `answer`'s time budget skipped, drawn now (F7), posted as MoreAnswers."""
    try:
        from model.llm.pipeline.ask import draw_more

        more = draw_more(engine, db, answer, settings, cancel=cancel)
    except Exception as e:  # the model's failure is shown, never raised into the UI
        post(GenerationFailed(one_line(e), cancelled=cancel.is_set()))
        return
    post(MoreAnswers(more, cancelled=cancel.is_set()))


def describe_engine(engine: TextEngine) -> str:
    """name · device · compute dtype · the last answer's decoding rate."""
    parts = [engine.name, engine.device, engine.dtype]
    rate = engine.last_stats.tokens_per_s
    if rate > 0:  # 0 until the first generation
        parts.append(f"{rate:.1f} tok/s")
    return " · ".join(parts)
