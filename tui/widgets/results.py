"""The results table: a page of rows at a time, more as the cursor nears the end.

Cells are rendered for reading: NULL is a dim italic ∅ (the text 'NULL' stays plain text),
blobs show their size, long text is cut, REALs read as the sqlite3 shell prints them. Text and
column names are data: never markup, control characters drawn visibly (tui/safe_text.py).
Copying uses the raw value.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from model.sqlite.db import shown_number
from model.text import counted
from tui.safe_text import plain

MAX_CELL_CHARS = 80
# Ask for the next page when the cursor or the view comes within this many rows of the end.
PREFETCH_ROWS = 100
FIRST_PAINT_ROWS = 60

NULL = Text("∅", style="dim italic")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # unreachable


def render_cell(value: Any) -> Text:
    if value is None:
        return NULL
    if isinstance(value, bytes):
        return Text(f"<blob {human_size(len(value))}>", style="dim")
    if isinstance(value, int | float):
        return Text(shown_number(value), justify="right")
    # Enough of a long text to fill the cell (each ↵ may stand for two characters).
    text = str(value)[: 2 * MAX_CELL_CHARS + 2].replace("\r\n", "↵").replace("\n", "↵")
    if len(text) > MAX_CELL_CHARS:
        text = text[: MAX_CELL_CHARS - 1] + "…"
    return plain(text)


def copy_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class ResultsTable(DataTable[Any]):
    BINDINGS = [
        Binding("ctrl+c", "copy_cell", "Copy cell"),
        Binding("y", "copy_row", "Copy row"),
    ]

    class MoreWanted(Message):
        """The user is near the end of the loaded rows and the result has more."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(zebra_stripes=True, **kwargs)
        self.columns_names: list[str] = []
        self.raw: list[tuple[Any, ...]] = []
        self.more = False
        self._waiting = False  # a MoreWanted is out; don't ask twice for the same page
        self._generation = 0  # bumped by each new result; late row batches of older ones drop
        self.seconds = 0.0
        self.border_title = "Results"

    def on_mount(self) -> None:
        self.watch(self, "scroll_y", self._maybe_more, init=False)

    def show(self, columns: list[str], rows: list[tuple[Any, ...]], more: bool,
             seconds: float) -> None:
        self.clear(columns=True)
        self._generation += 1
        self.raw = []
        self.columns_names = columns
        self.seconds = seconds
        self.add_columns(*(plain(name) for name in columns))
        self.more = False
        self.append(rows, more)

    def show_message(self, text: str) -> None:
        """A statement without rows: say what it did instead."""
        self.clear(columns=True)
        self._generation += 1
        self.raw = []
        self.columns_names = []
        self.more = False
        self.border_subtitle = text

    def append(self, rows: list[tuple[Any, ...]], more: bool) -> None:
        self.raw.extend(rows)
        # DataTable measures every new cell before the next paint (~0.2 ms a row), so a
        # screenful goes in now and the rest of the page right after that first paint.
        now = max(self.size.height, FIRST_PAINT_ROWS)
        self._add(self._generation, rows[:now])
        if rows[now:]:
            self.call_after_refresh(self._add, self._generation, rows[now:])
        self.more = more
        self._waiting = False
        n = len(self.raw)
        rows_text = f"{n:,} rows loaded, more below" if more else counted(n, "row")
        self.border_subtitle = f"{rows_text} · {self.seconds:.3f} s"
        self._maybe_more()

    def _add(self, generation: int, rows: list[tuple[Any, ...]]) -> None:
        if generation == self._generation:  # not a page of a result since replaced
            self.add_rows([render_cell(v) for v in row] for row in rows)

    def _maybe_more(self) -> None:
        if not self.more or self._waiting or not self.raw:
            return
        last_visible = int(self.scroll_y) + self.size.height
        near_end = len(self.raw) - PREFETCH_ROWS
        if self.cursor_row >= near_end or last_visible >= near_end:
            self._waiting = True
            self.post_message(self.MoreWanted())

    @on(DataTable.CellHighlighted)
    def _cursor_moved(self) -> None:
        self._maybe_more()

    def action_copy_cell(self) -> None:
        if self.raw:
            row, col = self.cursor_coordinate
            self.app.copy_to_clipboard(copy_text(self.raw[row][col]))
            self.notify("cell copied", timeout=2)

    def action_copy_row(self) -> None:
        if self.raw:
            row = self.raw[self.cursor_row]
            self.app.copy_to_clipboard("\t".join(copy_text(v) for v in row))
            self.notify("row copied", timeout=2)
