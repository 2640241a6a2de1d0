"""Messages that workers post to the app. Widget messages live nested in their widgets.

Dataclasses, as Textual's own messages are: Message.__post_init__ sets up the base.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

from model.sqlite.db import QueryResult

if TYPE_CHECKING:  # the model side loads lazily: the app runs as a plain SQL client without it
    from model.llm.pipeline.answer import Answer
    from model.llm.protocol import TextEngine


@dataclass
class QueryRan(Message):
    """A statement ran; `rows` is its first page (empty for statements without rows)."""

    result: QueryResult
    rows: list[tuple[Any, ...]]
    seconds: float
    remaining: int = 0  # statements of a selection still to run after this one
    changed_data: bool = False  # never to be run again, not even by an export (issue 22)


@dataclass
class RowsFetched(Message):
    """A further page of the current result."""

    result: QueryResult
    rows: list[tuple[Any, ...]]


@dataclass
class QueryFailed(Message):
    sql: str
    error: str
    cancelled: bool = False


@dataclass
class ConfirmWrite(Message):
    """Statements that change data, waiting for the user's yes (write sessions only)."""

    statements: list[str]


@dataclass
class RowCounted(Message):
    table: str
    count: int | None


@dataclass
class ModelStatus(Message):
    """Loading progress or failure, one line for the status bar."""

    text: str
    failed: bool = False


@dataclass
class ModelReady(Message):
    engine: TextEngine


@dataclass
class SqlChunk(Message):
    text: str


@dataclass
class SqlDone(Message):
    """The model's answer, checked: what the editor and the notes under it show."""

    answer: Answer


@dataclass
class MoreAnswers(Message):
    """The answer on screen with the answers its time budget skipped, drawn on request (F7)."""

    answer: Answer
    cancelled: bool = False


@dataclass
class GenerationFailed(Message):
    error: str
    cancelled: bool = False


@dataclass
class HistoryNotSaved(Message):
    """A statement ran (its outcome is posted as usual) but its history line was not written."""

    error: str


@dataclass
class Exported(Message):
    """An export ended: `rows` written to `path`, or `error` (and no rows)."""

    path: str
    rows: int
    error: str | None = None
