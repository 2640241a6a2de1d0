"""Every key the app answers, written once: the app's bindings, the actions dead behind a dialog,
the words F1 shows and README.md's Keys table (tests/tui/test_keys.py) all come from KEYS."""

from __future__ import annotations

import re
from dataclasses import dataclass

from textual.binding import Binding, BindingType

from tui.widgets.editor import RUN_KEYS


@dataclass(frozen=True)
class Key:
    key: str  # as Textual names it; several comma-separated ("ctrl+j,ctrl+enter")
    action: str  # the action it runs, on the app, or on `widget` where one is named
    description: str  # the footer's word
    does: str  # what it does: README.md's line, and F1's beside the description
    main_screen_only: bool = False  # makes no sense behind a modal dialog
    priority: bool = False  # before the focused widget's own key (the editor's ctrl+e, f6)
    widget: str = ""  # a key one widget binds itself: the reader's line only, no app binding
    shown: str = ""  # README's key column where the key alone says too little

    @property
    def readme_key(self) -> str:
        if self.shown:
            return self.shown
        return " / ".join(f"`{_readme_name(k)}`" for k in self.key.split(","))


def _readme_name(key: str) -> str:
    """A key as README.md writes it: function keys in capitals (`F2`), the rest as Textual does."""
    return key.upper() if re.fullmatch(r"f\d+", key) else key


KEYS: tuple[Key, ...] = (
    # Not a priority key: the editor takes ctrl+j from its own queue, after the keys typed
    # before it (see tui/widgets/editor.py); this binding serves the other widgets.
    Key(",".join(RUN_KEYS), "run_query", "Run",
        "run the statement under the cursor, or the selection", main_screen_only=True,
        shown="`ctrl+j` (or `ctrl+enter` where the terminal sends it)"),
    Key("enter", "submit", "Ask",
        "ask the model for SQL (it is written into the editor, never run)",
        widget="QuestionBox", shown="`Enter` in the question box"),
    Key("escape", "cancel", "Cancel", "cancel the running query or generation"),
    Key("f1", "toggle_keys", "Keys", "show every key binding"),
    Key("f2", "focus('editor')", "Editor", "focus the editor", main_screen_only=True,
        priority=True),
    Key("f3", "focus('question')", "Ask", "focus the question box", main_screen_only=True,
        priority=True),
    Key("ctrl+t", "ask_every_table", "Ask, every table",
        "ask the question box's question with every table of the schema at once (`Enter` tries"
        " the question's likeliest tables first)", main_screen_only=True, priority=True),
    Key("f4", "toggle_chart", "Chart", "the results as a chart, and back (see [Charts](#charts))",
        main_screen_only=True, priority=True),
    Key("f5", "focus('results')", "Results", "focus the results", main_screen_only=True,
        priority=True),
    Key("f6", "focus('schema')", "Schema", "focus the schema", main_screen_only=True,
        priority=True),
    Key("f7", "next_answer", "Next answer",
        "the model's next answer: the editor turns to the next distinct result among its answers"
        " (\"2 of 4: 25 rows · differs from 1 in WHERE\"), round to the first; when the time"
        " budget skipped drawing them, they are drawn first (escape cancels)",
        main_screen_only=True, priority=True),
    Key("enter", "choose", "Insert name",
        "insert its quoted name into the editor (`space` expands)", widget="SchemaTree",
        shown="`Enter` on a schema node"),
    Key("f8", "history", "History",
        "history: every statement run; `Enter` puts one back into the editor",
        main_screen_only=True, priority=True),
    Key("ctrl+e", "export", "Export",
        "export the result to `.csv`, `.json` or `.parquet` (re-runs a read for all rows; a"
        " statement that changed data is never re-run: the rows shown are written), or its"
        " chart to `.png`", main_screen_only=True, priority=True),
    Key("ctrl+c", "copy_cell", "Copy cell", "copy the cell (OSC 52: works over SSH)",
        widget="ResultsTable", shown="`ctrl+c` in the results"),
    Key("y", "copy_row", "Copy row", "copy the row (OSC 52)", widget="ResultsTable",
        shown="`y` in the results"),
    Key("ctrl+q", "quit", "Quit", "quit", priority=True),
)


def _plain(markdown: str) -> str:
    """README's words as F1 shows them: no backticks, a link's text without its target."""
    return re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", markdown).replace("`", "")


def app_bindings() -> list[BindingType]:
    """The app's BINDINGS, each with its README line as the tooltip F1 shows."""
    return [Binding(k.key, k.action, k.description, priority=k.priority, tooltip=_plain(k.does))
            for k in KEYS if not k.widget]


# Action names as `check_action` receives them: without their parameters.
MAIN_SCREEN_ONLY = frozenset(k.action.split("(")[0] for k in KEYS if k.main_screen_only)


def readme_table() -> str:
    """README.md's Keys table, as the test compares it."""
    rows = [f"| {k.readme_key} | {k.does} |" for k in KEYS]
    return "\n".join(["| key | does |", "|---|---|", *rows])
