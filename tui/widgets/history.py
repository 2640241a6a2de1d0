"""F8: the statements run before, newest first; Enter puts one into the editor (never runs it).

Entries are shown with tui/safe_text.py: a statement or its error may quote hostile data.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from model.sqlite.history import Entry
from tui.safe_text import plain, shown


def _prompt(entry: Entry) -> Text:
    sql = " ".join(entry.sql.split())
    text = plain(sql[:120] + ("…" if len(sql) > 120 else ""))
    when = entry.timestamp.replace("T", " ")[:19]
    if entry.error:
        outcome = f"error: {entry.error}"
    else:
        outcome = f"{entry.rows} row{'s' * (entry.rows != 1)}"
    details = f"{when} · {entry.database} · {outcome} · {entry.seconds:.3f} s"
    text.append("\n  " + shown(details), style="dim")
    return text


class HistoryScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(self, entries: list[Entry]) -> None:
        super().__init__()
        self.entries = entries

    def compose(self) -> ComposeResult:
        with Vertical(id="history-box", classes="dialog"):
            yield Label("History: Enter puts a statement into the editor", classes="title")
            if self.entries:
                yield OptionList(*(Option(_prompt(e)) for e in self.entries), id="history-list")
            else:
                yield Label("Nothing run yet.", id="history-empty")

    def on_mount(self) -> None:
        if self.entries:
            options = self.query_one(OptionList)
            options.highlighted = 0
            options.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.entries[event.option_index].sql)
