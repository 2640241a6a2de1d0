"""Asks before a statement that changes data runs (write sessions only).

The statements and the file name are shown as they are (tui/safe_text.py): no markup, control
characters visible, so what is asked about is what runs.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from tui.safe_text import plain


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("escape,n", "dismiss(False)", "Cancel"),
        Binding("y", "dismiss(True)", "Run"),
    ]

    def __init__(self, statements: list[str], database: str) -> None:
        super().__init__()
        self.statements = statements
        self.database = database

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="dialog"):
            yield Label(plain(f"This changes data in {self.database}. Run it?"), classes="title")
            yield Static(plain("\n\n".join(self.statements), lines=True), id="confirm-sql")
            with Horizontal(classes="buttons"):
                yield Button("Run (y)", variant="error", id="confirm-run")
                yield Button("Cancel (n)", variant="primary", id="confirm-cancel")

    def on_mount(self) -> None:
        # The safe answer has the focus: a stray Enter does not change data.
        self.query_one("#confirm-cancel", Button).focus()

    @on(Button.Pressed, "#confirm-run")
    def _run(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-cancel")
    def _cancel(self) -> None:
        self.dismiss(False)
