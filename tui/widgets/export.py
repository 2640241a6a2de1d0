"""Ctrl+E: asks where to export the current result; the extension picks the format.

A read-only statement runs again so every row is exported, not only the loaded pages. A
statement that changed data never runs again (issue 22): the rows it returned and the app
fetched are written as they are, and the dialog says so. An existing file is replaced only
once the user says so here (Export pressed again on the same path).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from model.sqlite.export import ExportError, format_for
from model.text import counted
from tui.safe_text import VisibleControls, plain


class ExportTarget(NamedTuple):
    path: str
    replace: bool  # the file existed and the user said to replace it


class ExportScreen(ModalScreen[ExportTarget | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, default_path: str, loaded_rows: int, runs_again: bool = True) -> None:
        super().__init__()
        self.default_path = default_path
        self.loaded_rows = loaded_rows
        self.runs_again = runs_again
        self._replace_asked = ""  # the existing path the user was asked about

    def compose(self) -> ComposeResult:
        if self.runs_again:
            what = (f"The query runs again and every row is streamed to the file, not only "
                    f"the {self.loaded_rows:,} loaded here.")
        else:
            what = (f"Writes the {counted(self.loaded_rows, 'row')} shown; the statement "
                    "changed data and is not run again.")
        with Vertical(id="export-box", classes="dialog"):
            yield Label("Export the result", classes="title")
            yield Static(
                f"{what} The extension picks the format: .csv, .json or .parquet; .png draws "
                "the chart (F4) of the loaded rows.",
                id="export-note",
            )
            yield Input(self.default_path, id="export-path", highlighter=VisibleControls())
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
        except ExportError as e:  # it quotes the path, which may hold anything
            self.query_one("#export-error", Label).update(plain(str(e)))
            return
        exists = Path(path).expanduser().exists()
        if exists and path != self._replace_asked:
            self._replace_asked = path
            self.query_one("#export-error", Label).update(
                plain(f"{path} exists: Export again to replace it"))
            self.query_one("#export-ok", Button).label = "Replace"
            return
        self.dismiss(ExportTarget(path, replace=exists))

    @on(Button.Pressed, "#export-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
