"""The keys table (tui/keys.py) is what the app binds, what F1 says and what README.md lists."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console
from textual.binding import Binding

from tui import keys
from tui.app import GemmaSqlApp
from tui.widgets.history import HistoryScreen
from tui.widgets.question import QuestionBox
from tui.widgets.results import ResultsTable
from tui.widgets.schema_tree import SchemaTree

SIZE = (140, 44)
README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readmes_keys_table_is_the_keys_table() -> None:
    section = README.read_text().split("\n## Keys\n", 1)[1]
    table = re.search(r"^\| key \| does \|\n(?:\|.*\n?)*", section, re.MULTILINE)
    assert table is not None, "README.md's ## Keys has no | key | does | table"
    assert table.group().strip() == keys.readme_table()


def test_the_app_binds_every_app_key_and_no_other() -> None:
    bound = [(b.key, b.action) for b in GemmaSqlApp.BINDINGS if isinstance(b, Binding)]
    assert bound == [(k.key, k.action) for k in keys.KEYS if not k.widget]


def test_every_widget_key_is_bound_by_its_widget() -> None:
    widgets = {"QuestionBox": QuestionBox, "ResultsTable": ResultsTable, "SchemaTree": SchemaTree}
    for key in (k for k in keys.KEYS if k.widget):
        chain = [b for cls in widgets[key.widget].__mro__
                 for b in getattr(cls, "BINDINGS", []) if isinstance(b, Binding)]
        assert any(key.key in b.key.split(",") and b.action == key.action for b in chain), key


async def test_f1_says_what_each_key_does(chinook: Path, make_app) -> None:
    app = make_app(chinook)
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.press("f1")
        console = Console(width=60, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
        console.print(app.screen.query_one("BindingsTable").render())
        said = " ".join(console.export_text().split())
    assert "Run run the statement under the cursor" in said
    assert "see Charts" in said and "`" not in said  # README's markdown is not shown


async def test_the_main_screen_keys_do_nothing_behind_a_dialog(chinook: Path, make_app) -> None:
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f8")
        history = app.screen
        assert isinstance(history, HistoryScreen)
        for key in (k for k in keys.KEYS if k.main_screen_only and not k.widget):
            await pilot.press(key.key.split(",")[0])
            assert app.screen is history and len(app.screen_stack) == 2, key.key
