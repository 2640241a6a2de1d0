"""The line under the editor that reads its SQL out in plain words (model/llm/sql/explain.py)
and, for the model's answer, says how sure it is (model/llm/pipeline/confidence.py).

The reading quotes the database's names and values and whatever the user typed: shown as
plain text, control characters drawn (tui/safe_text.py).
"""

from __future__ import annotations

from textual.message import Message
from textual.widgets import Static

from tui.safe_text import plain, shown


class SqlReading(Static):
    class Read(Message):
        """The editor's text read out, from a worker (`sql`: the text it read)."""

        def __init__(self, sql: str, reading: str) -> None:
            super().__init__()
            self.sql, self.reading = sql, reading

    def show(self, reading: str, verdict: str = "", unmatched: str = "",
             doubtful: bool = False) -> None:
        """`reading` (a line a statement), then the verdict ("5 of 8 answers agree") and the
        question's words the database has no name for; `doubtful` (an unsure or unchecked
        answer) shows it all in the warning colour."""
        text = plain(reading, lines=True)
        if verdict:
            text.append(f" · {verdict}", style="bold")
        if unmatched:
            text.append(f"\n{shown(unmatched)}", style="italic")
        self.update(text)
        self.set_class(doubtful, "-doubtful")

    def clear(self) -> None:
        self.update("")
        self.remove_class("-doubtful")
