"""The line under the editor: what the model was shown, and what is wrong with its SQL."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static


class SqlNotes(Static):
    def clear(self) -> None:
        self.update("")
        self.remove_class("-warning")

    def show_answer(self, answer: Any) -> None:
        """`answer` is a model.llm.ask.Answer (duck-typed: the model side may still change)."""
        text = Text("sent: " + ", ".join(getattr(answer, "tables_sent", []) or []))
        if getattr(answer, "focused", False):
            text.append(" (the question's likeliest tables; ctrl+t asks with every table)",
                        style="dim")
        elif getattr(answer, "pruned", False):
            text.append(" (the schema was cut to these tables)", style="dim")
        for note in getattr(answer, "notes", []):
            text.append(f" · {note}", style="dim")
        problems = list(getattr(answer, "problems", []) or [])
        for problem in problems:
            fatal = getattr(problem, "fatal", True)
            text.append(f"\n{'✗' if fatal else '⚠'} {problem}")
        self.update(text)
        self.set_class(bool(problems), "-warning")
