"""The line under the editor: what the model was shown, and what is wrong with its SQL.

Table names and the checks' messages quote the database: shown with tui/safe_text.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.widgets import Static

from tui.safe_text import plain, shown

if TYPE_CHECKING:
    from model.llm.answer import Answer


class SqlNotes(Static):
    def clear(self) -> None:
        self.update("")
        self.remove_class("-warning")

    def show_answer(self, answer: Answer) -> None:
        text = plain("sent: " + ", ".join(answer.tables_sent))
        if answer.focused:
            text.append(" (the question's likeliest tables; ctrl+t asks with every table)",
                        style="dim")
        elif answer.pruned:
            text.append(" (the schema was cut to these tables)", style="dim")
        for note in answer.notes:
            text.append(f" · {shown(note)}", style="dim")
        for problem in answer.problems:
            text.append(f"\n{'✗' if problem.fatal else '⚠'} {shown(str(problem))}")
        self.update(text)
        self.set_class(bool(answer.problems), "-warning")
