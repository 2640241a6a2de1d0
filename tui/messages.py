"""Messages that workers post to the app. Widget messages live nested in their widgets."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from model.sqlite.db import QueryResult


class QueryRan(Message):
    """A statement ran; `rows` is its first page (empty for statements without rows)."""

    def __init__(self, result: QueryResult, rows: list[tuple[Any, ...]], seconds: float,
                 remaining: int = 0) -> None:
        super().__init__()
        self.result = result
        self.rows = rows
        self.seconds = seconds
        self.remaining = remaining  # statements of a selection still to run after this one


class RowsFetched(Message):
    """A further page of the current result."""

    def __init__(self, result: QueryResult, rows: list[tuple[Any, ...]]) -> None:
        super().__init__()
        self.result = result
        self.rows = rows


class QueryFailed(Message):
    def __init__(self, sql: str, error: str, cancelled: bool = False) -> None:
        super().__init__()
        self.sql = sql
        self.error = error
        self.cancelled = cancelled


class ConfirmWrite(Message):
    """Statements that change data, waiting for the user's yes (write sessions only)."""

    def __init__(self, statements: list[str]) -> None:
        super().__init__()
        self.statements = statements


class RowCounted(Message):
    def __init__(self, table: str, count: int | None) -> None:
        super().__init__()
        self.table = table
        self.count = count


class ModelStatus(Message):
    """Loading progress or failure, one line for the status bar."""

    def __init__(self, text: str, failed: bool = False) -> None:
        super().__init__()
        self.text = text
        self.failed = failed


class ModelReady(Message):
    def __init__(self, engine: Any) -> None:
        super().__init__()
        self.engine = engine


class SqlChunk(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class SqlDone(Message):
    """The model's answer (model.llm.ask.Answer: .sql, .tables_sent, .problems, .seconds)."""

    def __init__(self, answer: Any) -> None:
        super().__init__()
        self.answer = answer


class GenerationFailed(Message):
    def __init__(self, error: str, cancelled: bool = False) -> None:
        super().__init__()
        self.error = error
        self.cancelled = cancelled


class Exported(Message):
    def __init__(self, path: str, rows: int | None, error: str | None = None) -> None:
        super().__init__()
        self.path = path
        self.rows = rows
        self.error = error
