"""The status line: what just happened on the left, the model's state on the right.

Both sides often carry data (a file name, SQLite's error about a table): shown as plain text,
never parsed as markup, control characters drawn visibly (tui/safe_text.py).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label

from tui.safe_text import plain


class StatusBar(Horizontal):
    def compose(self) -> ComposeResult:
        yield Label("", id="status-message")
        yield Label("", id="status-model")

    def say(self, text: str, severity: str = "information") -> None:
        label = self.query_one("#status-message", Label)
        label.update(plain(text))
        label.set_class(severity == "error", "-error")
        label.set_class(severity == "warning", "-warning")

    def model(self, text: str) -> None:
        self.query_one("#status-model", Label).update(plain(text))

    @property
    def message(self) -> str:
        return str(self.query_one("#status-message", Label).content)

    @property
    def model_text(self) -> str:
        return str(self.query_one("#status-model", Label).content)
