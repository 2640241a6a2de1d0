"""The line under the editor: what the model was shown, and what is wrong with its SQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

if TYPE_CHECKING:
    from model.llm.answer import Answer


class SqlNotes(Static):
    def clear(self) -> None:
        self.update("")
        self.remove_class("-warning")

    def show_answer(self, answer: Answer, alternative: int = 0) -> None:
        """What the model was shown and what was done to its answer; with several distinct
        answers, which of them the editor holds (`alternative`, 0 the chosen one)."""
        text = Text("sent: " + ", ".join(answer.tables_sent))
        if answer.focused:
            text.append(" (the question's likeliest tables; ctrl+t asks with every table)",
                        style="dim")
        elif answer.pruned:
            text.append(" (the schema was cut to these tables)", style="dim")
        for note in answer.notes:
            text.append(f" · {note}", style="dim")
        if answer.linked:
            text.append(" · values found: " + ", ".join(answer.linked), style="dim")
        if len(answer.alternatives) > 1:
            text.append("\n" + alternative_line(answer, alternative))
        if alternative == 0:  # the others passed the check and ran: nothing to say of them
            for problem in answer.problems:
                text.append(f"\n{'✗' if problem.fatal else '⚠'} {problem}")
        self.update(text)
        self.set_class(alternative == 0 and bool(answer.problems), "-warning")


def alternative_line(answer: Answer, index: int) -> str:
    """Which answer the editor holds: "2 of 4: 25 rows · differs from 1 in WHERE"."""
    shown = answer.alternatives[index]
    line = f"{index + 1} of {len(answer.alternatives)}: {shown.summary}"
    if index == 0:
        return line + f" · {answer.agreed} answers agree · F7: the next answer"
    if shown.differs:
        line += " · differs from 1 in " + ", ".join(shown.differs)
    return line + f" · {shown.answers} agree · F7: the next"
