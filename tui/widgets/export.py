"""Ctrl+E: asks where to export the current result; the extension picks the format."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from model.sqlite.export import ExportError, format_for


class ExportScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, default_path: str, loaded_rows: int) -> None:
        super().__init__()
        self.default_path = default_path
        self.loaded_rows = loaded_rows

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box", classes="dialog"):
            yield Label("Export the result", classes="title")
            yield Static(
                f"The query runs again and every row is streamed to the file, not only "
                f"the {self.loaded_rows:,} loaded here. The extension picks the format: "
                ".csv, .json or .parquet; .png draws the chart (F4) of the loaded rows.",
                id="export-note",
            )
            yield Input(self.default_path, id="export-path")
            yield Label("", id="export-error")
            with Horizontal(classes="buttons"):
                yield Button("Export", variant="primary", id="export-ok")
                yield Button("Cancel", id="export-cancel")

    @on(Input.Submitted, "#export-path")
    @on(Button.Pressed, "#export-ok")
    def _ok(self) -> None:
        path = self.query_one("#export-path", Input).value.strip()
        try:
            format_for(path)
        except ExportError as e:
            self.query_one("#export-error", Label).update(str(e))
            return
        self.dismiss(path)

    @on(Button.Pressed, "#export-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
