"""Asks before a statement that changes data runs (write sessions only).

The statements and the file name are shown as they are (tui/safe_text.py): no markup, control
characters visible, so what is asked about is what runs.

`y` runs it only when typed at this dialog: the dialog opens a moment after ctrl+j (the write
check runs in a thread), and a `y` typed into the editor in that moment must not answer a
question not yet on screen. Each key carries the time it was read; one read before the dialog
was drawn is dropped.
"""

from __future__ import annotations

from textual import _time, events, on  # _time: the clock Textual stamps each key with
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from tui.safe_text import plain


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("escape,n", "dismiss(False)", "Cancel"),
    ]

    def __init__(self, statements: list[str], database: str) -> None:
        super().__init__()
        self.statements = statements
        self.database = database
        self._drawn_at: float | None = None  # when the dialog was first on screen

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
        self.call_after_refresh(self._drawn)

    def _drawn(self) -> None:
        self._drawn_at = _time.get_time()

    def on_key(self, event: events.Key) -> None:
        if event.key == "y":
            event.stop()
            if self._drawn_at is not None and event.time >= self._drawn_at:
                self.dismiss(True)

    @on(Button.Pressed, "#confirm-run")
    def _run(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-cancel")
    def _cancel(self) -> None:
        self.dismiss(False)
