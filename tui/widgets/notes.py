"""The line under the editor: what the model was shown, and what is wrong with its SQL.

Table names and the checks' messages quote the database: shown with tui/safe_text.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.widgets import Static

from tui.safe_text import plain, shown

if TYPE_CHECKING:
    from model.llm.pipeline.answer import Answer


class SqlNotes(Static):
    def clear(self) -> None:
        self.update("")
        self.remove_class("-warning")

    def show_answer(self, answer: Answer, alternative: int = 0) -> None:
        """What the model was shown and what was done to its answer; with several distinct
        answers, which of them the editor holds (`alternative`, 0 the chosen one)."""
        text = plain("sent: " + ", ".join(answer.tables_sent))
        if answer.focused:
            text.append(" (the question's likeliest tables; ctrl+t asks with every table)",
                        style="dim")
        elif answer.pruned:
            text.append(" (the schema was cut to these tables)", style="dim")
        for note in answer.notes:
            text.append(f" · {shown(note)}", style="dim")
        if answer.linked:  # values from the database
            text.append(" · values found: " + shown(", ".join(answer.linked)), style="dim")
        if len(answer.alternatives) > 1:
            text.append("\n" + alternative_line(answer, alternative))
        if alternative == 0:  # the others passed the check and ran: nothing to say of them
            for problem in answer.problems:
                text.append(f"\n{'✗' if problem.fatal else '⚠'} {shown(str(problem))}")
        self.update(text)
        self.set_class(alternative == 0 and bool(answer.problems), "-warning")


def alternative_line(answer: Answer, index: int) -> str:
    """Which answer the editor holds: "2 of 4: 25 rows · differs from 1 in WHERE"."""
    alt = answer.alternatives[index]
    line = f"{index + 1} of {len(answer.alternatives)}: {alt.summary}"
    if index == 0:
        return line + f" · {answer.agreed} answers agree · F7: the next answer"
    if alt.differs:
        line += " · differs from 1 in " + ", ".join(alt.differs)
    return line + f" · {alt.answers} agree · F7: the next"
