"""What the pipeline (`pipeline.ask`) hands back for one question: the SQL, what was sent to
the model, what the checks found, what each step did to the answer, the other answers the user
can turn to, and the figures.

The app shows it (the editor, the note under it), `gemma-sql ask` prints it, `eval` scores it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from model.llm.sql.problem import Problem

if TYPE_CHECKING:
    from model.llm.pipeline.vote import Alternative
    from model.llm.protocol import GenerationStats


@dataclass
class Answer:
    question: str
    sql: str = ""  # pretty-printed; "" when the model wrote no SQL
    raw: str = ""  # the model's text, last attempt
    tables_sent: list[str] = field(default_factory=list)
    pruned: bool = False  # whether tables were left out of the context
    problems: list[Problem] = field(default_factory=list)
    focused: bool = False  # the SQL comes from a prompt with the question's tables alone
    widened: bool = False  # the answer from the question's tables alone failed: all were sent
    repaired: bool = False  # the SQL comes from a repair attempt or another candidate
    corrected: list[str] = field(default_factory=list)  # names put right: "album → albums"
    mended: list[str] = field(default_factory=list)  # FROM clause remade: "player → match_season"
    linked: list[str] = field(default_factory=list)  # values found: "'Prague' in customers.City"
    # The distinct results of the answers run, the chosen one first (empty: none were run).
    alternatives: list[Alternative] = field(default_factory=list)
    agreeing: int = 0  # answers returning the chosen result,
    ran: int = 0  # of those that ran (0: none was run)
    voted: bool = False  # the agreement chose another answer than the pipeline's own
    out_of_time: str = ""  # the note, when the time budget stopped the chain before its end
    attempts: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    model: str = ""
    stats: list[GenerationStats] = field(default_factory=list)  # one per attempt
    # The prompt the SQL answers and its kept beginning: what more answers are drawn on later
    # (`pipeline.ask.draw_more`).
    prompt: str = ""
    kept: str = ""

    @property
    def agreed(self) -> str:
        """"3 of 5": answers returning the chosen result, of those that ran."""
        return f"{self.agreeing} of {self.ran}" if self.ran else ""

    @property
    def ok(self) -> bool:
        """SQL that SQLite can prepare (warnings allowed)."""
        return bool(self.sql) and not any(p.fatal for p in self.problems)

    @property
    def notes(self) -> list[str]:
        """What the pipeline did to the model's first answer, a line each (the app shows them
        under the editor, `gemma-sql ask` on stderr)."""
        notes = []
        if self.widened:
            notes.append("the answer from the question's tables failed the check; "
                         "asked with every table")
        if self.repaired:
            notes.append("asked again: the first answer failed the check" if self.attempts > 1
                         else "the first answer failed the check; this is the next most likely")
        if self.voted:
            notes.append(f"{self.agreed} answers agree on this result; the first differs")
        if len(self.alternatives) > 1 and \
                self.alternatives[1].answers > self.alternatives[0].answers:
            notes.append(f"preferred to the {self.alternatives[1].answers} answers that agree on "
                         "another result: the question reads back likelier from this SQL")
        if self.corrected:
            notes.append("names corrected: " + ", ".join(self.corrected))
        if self.mended:
            notes.append("joins mended to the schema: " + ", ".join(self.mended))
        if self.out_of_time:
            notes.append(self.out_of_time)
        return notes

    @property
    def error(self) -> str:
        return "; ".join(p.message for p in self.problems if p.fatal)

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "sql": self.sql,
            "tables_sent": self.tables_sent,
            "pruned": self.pruned,
            "problems": [
                {"message": p.message, "kind": p.kind, "fatal": p.fatal, "start": p.start}
                for p in self.problems
            ],
            "focused": self.focused,
            "widened": self.widened,
            "repaired": self.repaired,
            "corrected": self.corrected,
            "mended": self.mended,
            "linked": self.linked,
            "alternatives": [a.to_dict() for a in self.alternatives],
            "agreed": self.agreed,
            "voted": self.voted,
            "out_of_time": self.out_of_time,
            "attempts": self.attempts,
            "seconds": round(self.seconds, 3),
            "cancelled": self.cancelled,
            "model": self.model,
            "stats": [s.to_dict() for s in self.stats],
        }
