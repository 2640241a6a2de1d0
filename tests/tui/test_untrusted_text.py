"""Data is data: what a database holds (names, values), what SQLite says about it and what the
model writes are shown literally everywhere, never parsed as Rich markup and never sent to the
terminal as control codes (tui/safe_text.py)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from textual.coordinate import Coordinate

from model.sqlite.schema import quote
from tui.app import GemmaSqlApp
from tui.safe_text import shown
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.editor import SqlEditor
from tui.widgets.export import ExportScreen
from tui.widgets.history import HistoryScreen
from tui.widgets.notes import SqlNotes
from tui.widgets.question import QuestionBox
from tui.widgets.results import ResultsTable
from tui.widgets.schema_tree import SchemaTree
from tui.widgets.status import StatusBar

SIZE = (140, 44)
ESC, BEL = "\x1b", "\x07"
TITLE = f"{ESC}]2;PWNED{BEL}"  # would retitle the terminal window
INVERSE = f"{ESC}[7m"  # would restyle everything after it
# Control characters the terminal must never be sent from data (tab and newline are layout).
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


async def settle(app: GemmaSqlApp, pilot: Any) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


async def counted(app: GemmaSqlApp, pilot: Any, label: Any, timeout: float = 10.0) -> str:
    """The tree label `label()` once its row count is in: the count is asked for after the
    tree's first refresh, which a busy machine may paint after `settle` returned."""
    for _ in range(int(timeout / 0.05)):
        if "  " in str(label()):
            break
        await pilot.pause(0.05)
        await app.workers.wait_for_complete()
    return str(label())


async def run_sql(app: GemmaSqlApp, pilot: Any, sql: str) -> None:
    app.query_one(SqlEditor).text = sql
    await pilot.press("ctrl+j")
    await settle(app, pilot)


def status(app: GemmaSqlApp) -> str:
    return app.query_one(StatusBar).message


def labels(app: GemmaSqlApp) -> list[str]:
    return [str(c.label) for c in app.query_one(ResultsTable).columns.values()]


def row(app: GemmaSqlApp, index: int = 0) -> list[Any]:
    table = app.query_one(ResultsTable)
    return [table.get_cell_at(Coordinate(index, i)) for i in range(len(table.columns))]


async def toasts(app: GemmaSqlApp, pilot: Any) -> str:
    await pilot.pause()  # notify() posts: the toast is mounted a moment later
    return "\n".join(str(toast.render()) for toast in app.screen.query("Toast"))


def assert_nothing_raw(app: GemmaSqlApp) -> None:
    """Every character on screen, as drawn: styles are CSS classes in the SVG screenshot, so
    a control character in it can only have come from data."""
    drawn = app.export_screenshot()
    assert RAW.search(drawn) is None, repr(RAW.search(drawn))


async def test_markup_in_values_and_column_names_is_shown_literally(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await run_sql(app, pilot, "SELECT '[/oops]' AS x, '[bold]B[/bold]' AS \"[/c]\", "
                                  "'[link=https://example.com]L[/link]' AS \"[b]b[/b]\", "
                                  "':thumbs_up:' AS e")
        assert status(app).startswith("1 row · ")
        assert labels(app) == ["x", "[/c]", "[b]b[/b]", "e"]
        cells = row(app)
        assert [c.plain for c in cells] == [
            "[/oops]", "[bold]B[/bold]", "[link=https://example.com]L[/link]", ":thumbs_up:"]
        assert all(not c.spans and not c.style for c in cells)  # no bold, no link
        assert_nothing_raw(app)


async def test_markup_in_an_error_is_shown_literally(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await run_sql(app, pilot, 'SELECT * FROM "[/nope]"')
        assert status(app) == "error: no such table: [/nope]"
        assert "no such table: [/nope]" in await toasts(app, pilot)
        await run_sql(app, pilot, "SELECT 1")  # still running
        assert status(app).startswith("1 row")


@pytest.fixture
def marked_up_db(tmp_path: Path) -> Path:
    path = tmp_path / "[red]db[b].db"  # no "/" in a file name: no closing tags
    conn = sqlite3.connect(path)
    conn.execute('CREATE TABLE "[/t]" ("[b]c[/b]" "ty[/p]", ref REFERENCES "[/t]"("[b]c[/b]"))')
    conn.execute("""INSERT INTO "[/t]" VALUES ('[link=https://example.com]L[/link]', NULL)""")
    conn.commit()
    conn.close()
    return path


async def test_markup_in_names_everywhere(marked_up_db, make_app, tmp_path):
    app = make_app(marked_up_db, write=True)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app, pilot)
        assert status(app) == "[red]db[b].db (read-write) · F1 keys"
        tree = app.query_one(SchemaTree)
        table = tree.root.children[0]
        assert await counted(app, pilot, lambda: table.label) == "[/t]  1"
        table.expand()
        await pilot.pause()
        assert [str(c.label) for c in table.children] == [
            "[b]c[/b] ty[/p]", 'ref ANY -> [/t].[b]c[/b]']
        # Enter on the tree puts the quoted name in the editor
        await pilot.press("f6", "enter")
        assert app.query_one(SqlEditor).text == '"[/t]"'

        await run_sql(app, pilot, 'UPDATE "[/t]" SET "[b]c[/b]" = \'[/v]\'')
        assert isinstance(app.screen, ConfirmScreen)
        assert "This changes data in [red]db[b].db. Run it?" in str(
            app.screen.query_one(".title").render())
        assert str(app.screen.query_one("#confirm-sql").render()) == (
            'UPDATE "[/t]" SET "[b]c[/b]" = \'[/v]\'')
        await pilot.press("y")
        await settle(app, pilot)
        assert status(app) == "done · 1 row changed"

        await run_sql(app, pilot, 'SELECT "[b]c[/b]" FROM "[/t]" RETURNING')  # an error
        assert status(app).startswith('error: near "RETURNING"')
        await pilot.press("f8")
        assert isinstance(app.screen, HistoryScreen)
        shown_history = str(app.screen.query_one("OptionList").get_option_at_index(1).prompt)
        assert shown_history.startswith('UPDATE "[/t]" SET "[b]c[/b]" = \'[/v]\'\n')
        assert "[red]db[b].db" in shown_history
        await pilot.press("escape")

        await run_sql(app, pilot, 'SELECT "[b]c[/b]" FROM "[/t]"')
        await pilot.press("ctrl+e")
        assert isinstance(app.screen, ExportScreen)
        app.screen.query_one("#export-path").value = str(tmp_path / "[/bad]")
        await pilot.press("enter")
        assert "[/bad]: unknown format" in str(app.screen.query_one("#export-error").render())
        await pilot.press("escape")
        assert not app.screen.is_modal


async def test_control_characters_are_drawn_never_sent(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sql = (f"SELECT char(27)||']2;PWNED'||char(7) AS title, 'x'||char(27)||'[7my' AS "
               f'"{INVERSE}col", char(155)||\'31m\' AS c1, char(0)||\'n\' AS nul, '
               "'a'||char(9)||'b'||char(13)||char(10)||'c'||char(127) AS layout")
        await run_sql(app, pilot, sql)
        assert labels(app) == ["title", "␛[7mcol", "c1", "nul", "layout"]
        assert [c.plain for c in row(app)] == ["␛]2;PWNED␇", "x␛[7my", "\ufffd31m", "␀n",
                                                "a␉b↵c␡"]
        assert_nothing_raw(app)  # the editor shows the statement with its ESC too

        await run_sql(app, pilot, f'SELECT * FROM "{TITLE}"')
        assert status(app) == "error: no such table: ␛]2;PWNED␇"
        assert "no such table: ␛]2;PWNED␇" in await toasts(app, pilot)
        app.query_one(QuestionBox).value = f"{INVERSE}pasted"
        await pilot.pause()
        assert_nothing_raw(app)

        await pilot.press("f8")
        assert isinstance(app.screen, HistoryScreen)
        assert_nothing_raw(app)


async def test_bidirectional_controls_are_drawn_never_obeyed(chinook, make_app):
    """RLO (U+202E) would show 'invoice_exe.txt' stored as 'invoice_\u202etxt.exe'."""
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "SELECT 'invoice_'||char(8238)||'txt.exe' AS \"a"
                                  + "\u2067" + "b\"")
        assert labels(app) == ["a\ufffdb"]
        assert [c.plain for c in row(app)] == ["invoice_\ufffdtxt.exe"]
    assert shown("\u200f\u202a\u2069x", lines=True) == "\ufffd\ufffd\ufffdx"


async def test_the_confirmation_draws_control_characters(chinook, make_app):
    app = make_app(chinook, write=True)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await run_sql(app, pilot, f"UPDATE genres SET Name = '{INVERSE}X{BEL}'\n"
                                  "WHERE GenreId = 1")
        assert isinstance(app.screen, ConfirmScreen)
        assert str(app.screen.query_one("#confirm-sql").render()) == (
            "UPDATE genres SET Name = '␛[7mX␇'\nWHERE GenreId = 1")
        assert_nothing_raw(app)
        await pilot.press("n")


@pytest.fixture
def hostile_db(tmp_path: Path) -> tuple[Path, str, list[str]]:
    """Markup, control characters, 10,000-character names, a 50 MB blob."""
    table = f"[/t]{TITLE}{INVERSE}"
    columns = ["[/c]", TITLE, "C" * 10_000, "data"]
    path = tmp_path / f"[red]{INVERSE}.db"
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE {quote(table)} ({', '.join(map(quote, columns))})")
    conn.execute(f"CREATE TABLE {quote('T' * 10_000)} (x)")
    conn.execute(f"CREATE VIEW {quote('[b]v[/b]' + BEL)} AS SELECT 1 AS {quote(INVERSE)}")
    insert = f"INSERT INTO {quote(table)} VALUES (?, ?, ?, ?)"
    conn.executemany(insert, [
        ("[bold]B[/bold]", f"{INVERSE}INVERSE{ESC}[0m{BEL}", "\x9b31m" + "z" * 100_000,
         b"\x00" + INVERSE.encode()),
        ("[/oops]", TITLE, "[link=https://example.com]L[/link]", None),
    ])
    conn.execute(f"INSERT INTO {quote(table)} (data) VALUES (zeroblob(50 * 1024 * 1024))")
    conn.commit()
    conn.close()
    return path, table, columns


async def test_a_hostile_database_opens_and_shows(hostile_db, make_app):
    path, table, columns = hostile_db
    app = make_app(path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app, pilot)
        assert status(app) == "[red]␛[7m.db (read-only) · F1 keys"
        tree = app.query_one(SchemaTree)
        nodes = {node.data.name: node for node in tree.root.children}
        assert set(nodes) == {table, "T" * 10_000, f"[b]v[/b]{BEL}"}
        assert await counted(app, pilot, lambda: nodes[table].label) == f"{shown(table)}  3"
        assert str(nodes[f"[b]v[/b]{BEL}"].label).startswith("[b]v[/b]␇ view")
        nodes[table].expand()
        await pilot.pause()
        assert [str(c.label) for c in nodes[table].children] == [
            "[/c] ANY", "␛]2;PWNED␇ ANY", f"{'C' * 10_000} ANY", "data ANY"]
        assert_nothing_raw(app)

        # Enter on the table: its quoted name, ESC and all, into the editor, drawn visibly.
        await pilot.press("f6")
        tree.move_cursor(nodes[table])
        await pilot.press("enter")
        assert app.query_one(SqlEditor).text == quote(table)
        assert_nothing_raw(app)

        await run_sql(app, pilot, f"SELECT * FROM {quote(table)}")
        assert status(app).startswith("3 rows · ")
        assert labels(app) == [shown(c) for c in columns]
        first, second, third = row(app, 0), row(app, 1), row(app, 2)
        assert first[0].plain == "[bold]B[/bold]" and not first[0].spans
        assert first[1].plain == "␛[7mINVERSE␛[0m␇"
        assert first[2].plain == "\ufffd31m" + "z" * 75 + "…"
        assert first[3].plain == "<blob 5 B>"
        assert second[1].plain == "␛]2;PWNED␇" and second[3].plain == "∅"
        assert third[3].plain == "<blob 50.0 MB>"
        assert_nothing_raw(app)

        await run_sql(app, pilot, f"SELECT * FROM {quote('[b]v[/b]' + BEL)}")
        assert labels(app) == ["␛[7m"]
        await pilot.press("ctrl+e")  # the default path is named after the file
        assert isinstance(app.screen, ExportScreen)
        assert_nothing_raw(app)
        await pilot.press("escape")
        await run_sql(app, pilot, f"SELECT nope FROM {quote(table)}")
        assert status(app) == "error: no such column: nope"
        await pilot.press("f8")
        assert_nothing_raw(app)


async def test_the_notes_under_the_editor_show_names_literally(chinook, make_app):
    """The model's answer names the tables it was shown and what its checks found."""
    from model.llm.pipeline.ask import Answer
    from model.llm.sql.problem import Problem

    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        answer = Answer("q", "SELECT 1", tables_sent=["[/t]", TITLE], corrected=["[/a] → b"],
                        problems=[Problem(f"unknown column: [/c]{INVERSE}", "column")])
        app.query_one(SqlNotes).show_answer(answer)
        await pilot.pause()
        notes = str(app.query_one(SqlNotes).render())
        assert notes.startswith("sent: [/t], ␛]2;PWNED␇")
        assert "[/a] → b" in notes and "unknown column: [/c]␛[7m" in notes
        assert_nothing_raw(app)


async def test_the_screen_check_sees_a_raw_control_character(chinook, make_app):
    """The check above is not vacuous: text that skips tui/safe_text.py is caught."""
    from rich.text import Text
    from textual.widgets import Static

    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await app.screen.mount(Static(Text(f"raw {INVERSE}here")))
        await pilot.pause()
        with pytest.raises(AssertionError):
            assert_nothing_raw(app)


@pytest.mark.parametrize(("kind", "name", "reason"), [
    ("stale_view", "v", "no such table: main.y"),
    ("missing_function", "v", "no such function: no_such_fn"),
    ("missing_module", "vt", "no such module: vec0"),
])
async def test_a_database_with_an_unreadable_object_opens_with_its_tables(
        broken_db, make_app, kind, name, reason):
    """As the sqlite3 shell does: the object is marked with SQLite's reason, the rest works."""
    app = make_app(broken_db(kind))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        nodes = {node.data.name: node for node in app.query_one(SchemaTree).root.children}
        assert set(nodes) == {"x", name}
        assert str(nodes[name].label).endswith(f"  unreadable: {reason}")
        assert await counted(app, pilot, lambda: nodes["x"].label) == "x  1"
        await run_sql(app, pilot, "SELECT a FROM x")
        assert status(app).startswith("1 row · ")
        await run_sql(app, pilot, f"SELECT * FROM {name}")
        assert status(app) == f"error: {reason}"


async def test_an_endless_view_is_counted_with_a_limit_and_never_holds_up_quit(
        broken_db, make_app, monkeypatch):
    """Row counts at start-up: a view over an endless recursive CTE shows "?" at the time
    limit; with no limit in sight, quitting stops its count (Python waits for worker
    threads: the process would live on, screen gone)."""
    import threading

    import tui.workers

    path = broken_db("infinite_view")
    monkeypatch.setattr(tui.workers, "COUNT_LIMIT_S", 0.3)
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        nodes = {node.data.name: node for node in app.query_one(SchemaTree).root.children}
        assert await counted(app, pilot, lambda: nodes["v"].label) == "v view  ?"

    monkeypatch.setattr(tui.workers, "COUNT_LIMIT_S", 3600.0)
    started, ended = threading.Event(), threading.Event()
    count = tui.workers.row_count

    def watched(conn: Any, table: str, *args: Any) -> int | None:
        if table != "v":
            return count(conn, table, *args)
        started.set()
        try:
            return count(conn, table, *args)
        finally:
            ended.set()

    monkeypatch.setattr(tui.workers, "row_count", watched)
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(200):
            if started.is_set():
                break
            await pilot.pause(0.05)
        assert started.is_set() and not ended.is_set()
        await pilot.press("ctrl+q")
    assert ended.wait(timeout=30)
