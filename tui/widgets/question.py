"""The one-line question box: Enter asks the model (never runs anything)."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.message import Message
from textual.widgets import Input

from tui.safe_text import VisibleControls


class QuestionBox(Input):
    class Asked(Message):
        def __init__(self, question: str) -> None:
            super().__init__()
            self.question = question

    def __init__(self, **kwargs: Any) -> None:
        # A pasted control character is drawn visibly, not sent to the terminal.
        super().__init__(placeholder="Ask about this database…",
                         highlighter=VisibleControls(), **kwargs)

    @on(Input.Submitted)
    def _asked(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self.post_message(self.Asked(event.value.strip()))
