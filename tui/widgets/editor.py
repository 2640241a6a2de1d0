"""The SQL editor: a tree-sitter highlighted TextArea that knows its statement under the cursor.

Keys are applied in the order typed. Textual (8.x) forwards each key into the editor's own
queue, but resolves a widget's bindings (backspace, arrows, undo) only once the key has bubbled
back up to the app through each parent's queue, by which time the editor may have inserted
characters typed after it; and an app-level priority ctrl+j read the editor before the keys
typed ahead of it were in. So the editor applies its own bindings as it takes each key from
its queue, and reads the statement for ctrl+j there too, handing it to the app in a
`RunWanted`. The text is read there, in order with the keys; finding the statement in a large
buffer (split is linear, yet 6 MB is a quarter second) is left to a thread.
"""

from __future__ import annotations

from functools import partial

from rich.text import Text
from textual import events
from textual.message import Message
from textual.widgets import TextArea

from model.sqlite.statements import offset_of, split, statement_at
from tui.safe_text import shown

RUN_KEYS = ("ctrl+j", "ctrl+enter")
# Above this many characters the statement is found in a thread; below, at once (well under
# a frame's time, and a pilot test's ctrl+j needs no extra wait).
THREAD_ABOVE = 20_000


def statements_in(text: str, selected: str, offset: int) -> list[str]:
    """The selection's statements if there is a selection, else the one at `offset`."""
    if selected.strip():
        return [s.text for s in split(selected)]
    sql = statement_at(text, offset)
    return [sql] if sql else []


class SqlEditor(TextArea):
    class RunWanted(Message):
        """ctrl+j: the statements to run, read once every key typed before it was in."""

        def __init__(self, statements: list[str]) -> None:
            super().__init__()
            self.statements = statements

    def statements_to_run(self) -> list[str]:
        """The selection's statements if there is a selection, else the one under the cursor."""
        text = self.text
        return statements_in(text, self.selected_text, offset_of(text, *self.cursor_location))

    def want_run(self) -> None:
        """Ask for a run of what the editor holds once the keys already sent to it are in
        (for ctrl+j pressed in another widget)."""
        self.call_later(self._post_run_wanted)  # queued behind those keys

    def _post_run_wanted(self) -> None:
        text, selected = self.text, self.selected_text
        if len(text) <= THREAD_ABOVE:
            self.post_message(self.RunWanted(self.statements_to_run()))
            return
        find = partial(statements_in, text, selected, offset_of(text, *self.cursor_location))
        self.run_worker(lambda: self.post_message(self.RunWanted(find())), thread=True,
                        group="statements", exit_on_error=False)

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

    def get_line(self, line_index: int) -> Text:
        # Control characters (in a pasted value, a table's name) drawn visibly, one for one,
        # so the cursor stays on its character (highlighting after one may shift: tree-sitter
        # counts UTF-8 bytes). Tabs stay tabs.
        return Text(shown(self.document.get_line(line_index), lines=True), end="",
                    no_wrap=True)

    async def _on_key(self, event: events.Key) -> None:
        # Textual calls each class's _on_key along the MRO; TextArea's runs after this one
        # unless prevented.
        if event.key == "escape":
            # TextArea would move focus on escape; here escape cancels a running query or
            # generation, as everywhere else in the app.
            event.stop()
            event.prevent_default()
            await self.app.run_action("cancel")
        elif event.key in RUN_KEYS:
            event.stop()
            event.prevent_default()
            self._post_run_wanted()
        elif not event.is_printable and await self._run_own_binding(event.key):
            event.stop()  # handled here: the app must not run it again when it bubbles up
            event.prevent_default()

    async def _run_own_binding(self, key: str) -> bool:
        # As App._check_bindings does for this widget (the app sets no keymap).
        for binding in self._bindings.key_to_bindings.get(key, ()):
            if not binding.priority and await self.app.run_action(binding.action, self):
                return True
        return False
