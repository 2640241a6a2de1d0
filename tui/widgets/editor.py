"""The SQL editor: a tree-sitter highlighted TextArea that knows its statement under the cursor."""

from __future__ import annotations

from textual import events
from textual.widgets import TextArea

from model.sqlite.statements import offset_of, split, statement_at


class SqlEditor(TextArea):
    def statements_to_run(self) -> list[str]:
        """The selection's statements if there is a selection, else the one under the cursor."""
        if self.selected_text.strip():
            return [s.text for s in split(self.selected_text)]
        row, col = self.cursor_location
        sql = statement_at(self.text, offset_of(self.text, row, col))
        return [sql] if sql else []

    def append(self, text: str) -> None:
        self.insert(text, self.document.end)

    def replace_all(self, text: str) -> None:
        # replace() rather than load_text() keeps the undo history: ctrl+z brings back
        # what the user had before the model wrote.
        self.replace(text, (0, 0), self.document.end)
        self.move_cursor(self.document.end)

    def insert_name(self, text: str) -> None:
        self.insert(text)
        self.focus()

    async def _on_key(self, event: events.Key) -> None:
        # Textual calls each class's _on_key along the MRO; TextArea's runs after this one
        # unless prevented. TextArea would move focus on escape; here escape cancels a
        # running query or generation, as everywhere else in the app.
        if event.key == "escape":
            event.stop()
            event.prevent_default()
            await self.app.run_action("cancel")
