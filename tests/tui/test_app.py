"""The app over real SQLite files, driven with Textual's Pilot."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.text import Text
from textual.coordinate import Coordinate
from textual.pilot import Pilot

from model.sqlite.history import History
from tui.app import GemmaSqlApp
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.editor import SqlEditor
from tui.widgets.export import ExportScreen
from tui.widgets.history import HistoryScreen
from tui.widgets.results import ResultsTable
from tui.widgets.schema_tree import SchemaTree
from tui.widgets.status import StatusBar

SIZE = (140, 44)
# Counts to a billion: runs for minutes unless cancelled.
LONG_QUERY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
    "WHERE x < 1000000000) SELECT count(*) FROM c"
)

CHINOOK_TABLES = [
    "albums", "artists", "customers", "employees", "genres", "invoice_items", "invoices",
    "limit15", "media_types", "playlist_track", "playlists", "tracks",
]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def settle(app: GemmaSqlApp, pilot: Pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


async def run_sql(app: GemmaSqlApp, pilot: Pilot, sql: str) -> None:
    app.query_one(SqlEditor).text = sql
    await pilot.press("ctrl+j")
    await settle(app, pilot)


def status(app: GemmaSqlApp) -> str:
    return app.query_one(StatusBar).message


def results(app: GemmaSqlApp) -> ResultsTable:
    return app.query_one(ResultsTable)


async def test_tree_lists_tables_with_columns_keys_and_counts(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        tree = app.query_one(SchemaTree)
        names = [node.data.name for node in tree.root.children]
        assert names == CHINOOK_TABLES
        albums = tree.root.children[0]
        # counted lazily, once on screen: the count's worker starts after a refresh
        for _ in range(100):
            if str(albums.label) != "albums":
                break
            await app.workers.wait_for_complete()
            await pilot.pause(0.05)
        assert str(albums.label) == "albums  347"
        albums.expand()
        await pilot.pause()
        columns = [str(c.label) for c in albums.children]
        assert columns == [
            "AlbumId INTEGER PK",
            "Title NVARCHAR(160) NOT NULL",
            "ArtistId INTEGER NOT NULL -> artists.ArtistId",
        ]


async def test_enter_on_tree_node_inserts_quoted_name(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        assert app.focused is app.query_one(SchemaTree)
        await pilot.press("down", "enter")  # second table: artists
        assert app.query_one(SqlEditor).text == '"artists"'
        assert app.focused is app.query_one(SqlEditor)


async def test_query_shows_rows_count_and_time(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "SELECT AlbumId, Title FROM albums WHERE AlbumId <= 3")
        table = results(app)
        assert [str(c.label) for c in table.columns.values()] == ["AlbumId", "Title"]
        assert table.row_count == 3
        assert table.get_cell_at(Coordinate(0, 1)).plain == "For Those About To Rock We Salute You"
        assert table.border_subtitle.startswith("3 rows · ")
        assert table.border_subtitle.endswith(" s")


async def test_statement_under_cursor_runs(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        editor = app.query_one(SqlEditor)
        editor.text = "SELECT 1 AS one;\nSELECT 2 AS two;\nSELECT 3 AS three;"
        editor.move_cursor((1, 3))
        await pilot.press("ctrl+j")
        await settle(app, pilot)
        assert [str(c.label) for c in results(app).columns.values()] == ["two"]


async def test_results_are_paged(numbers_db, make_app):
    app = make_app(numbers_db)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "SELECT * FROM numbers")
        table = results(app)
        assert table.row_count == 500
        assert "more below" in table.border_subtitle
        await pilot.press("f5")
        for expected in (1000, 1500, 2000):
            await pilot.press("ctrl+end")  # cursor to the last loaded row
            await settle(app, pilot)
            assert table.row_count == expected
        assert table.border_subtitle.startswith("2,000 rows · ")
        assert table.get_cell_at(Coordinate(1999, 1)).plain == "row 2000"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [("SELEC 1", 'near "SELEC": syntax error'), ("SELECT * FROM nope", "no such table: nope")],
)
async def test_errors_are_shown_and_the_app_keeps_running(chinook, make_app, sql, expected):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, sql)
        assert status(app) == f"error: {expected}"
        await run_sql(app, pilot, "SELECT 42")
        assert results(app).get_cell_at(Coordinate(0, 0)).plain == "42"


async def test_read_only_refuses_writes_and_file_is_unchanged(chinook, make_app):
    before = sha(chinook)
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "DELETE FROM albums")
        assert status(app).startswith("error: refused: chinook.db is open read-only")
        await run_sql(app, pilot, "SELECT count(*) FROM albums")
        assert results(app).get_cell_at(Coordinate(0, 0)).plain == "347"
    assert sha(chinook) == before


@pytest.mark.parametrize("confirm", [True, False])
async def test_write_needs_confirmation(chinook, make_app, confirm):
    before = sha(chinook)
    app = make_app(chinook, write=True)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "UPDATE artists SET Name = 'Changed' WHERE ArtistId = 1")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y" if confirm else "n")
        await settle(app, pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        expected_status = "done · 1 row changed" if confirm else "not run"
        assert status(app).startswith(expected_status)
    conn = sqlite3.connect(chinook)
    name = conn.execute("SELECT Name FROM artists WHERE ArtistId = 1").fetchone()[0]
    conn.close()
    assert name == ("Changed" if confirm else "AC/DC")
    if not confirm:
        assert sha(chinook) == before


async def test_a_write_sqlite_cannot_explain_is_asked_first(chinook, make_app):
    """90 parentheses deep, EXPLAIN overflows SQLite's parser stack: the gate cannot tell, so
    it asks (issue 35)."""
    deep = "DELETE FROM genres WHERE " + "(" * 90 + "GenreId = 25" + ")" * 90
    before = sha(chinook)
    app = make_app(chinook, write=True)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, deep)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(app, pilot)
        assert status(app).startswith("not run")
    assert sha(chinook) == before


async def test_a_y_typed_before_the_confirmation_does_not_answer_it(chinook, make_app):
    """The dialog opens a moment after ctrl+j: a `y` read in that moment was meant for the
    editor. It is delivered late here, as a busy app would (issue 35)."""
    from textual import events

    before = sha(chinook)
    app = make_app(chinook, write=True)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(SqlEditor).text = "DELETE FROM genres WHERE GenreId = 25"
        early = events.Key("y", "y")  # read now, before the dialog exists
        await pilot.press("ctrl+j")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen)
        early.set_sender(app)
        app.post_message(early)
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen)  # still asking
        assert sha(chinook) == before
        await pilot.press("y")  # typed at the dialog
        await settle(app, pilot)
        assert status(app).startswith("done · 1 row changed")


async def test_write_session_runs_reads_without_asking(chinook, make_app):
    app = make_app(chinook, write=True)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "SELECT count(*) FROM artists")
        assert not isinstance(app.screen, ConfirmScreen)
        assert results(app).get_cell_at(Coordinate(0, 0)).plain == "275"


async def test_escape_cancels_a_long_query(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(SqlEditor).text = LONG_QUERY
        await pilot.press("ctrl+j")
        await asyncio.sleep(0.3)  # let SQLite get going
        assert app._busy("query")
        await pilot.press("escape")
        # That the cancel happened, within a generous bound; how fast is bench/'s to measure
        # (a loaded machine stretches any tight bound).
        await asyncio.wait_for(app.workers.wait_for_complete(), timeout=10)
        await pilot.pause()
        assert status(app) == "query cancelled"
        await run_sql(app, pilot, "SELECT 1")  # the connection is fine afterwards
        assert results(app).row_count == 1


async def test_quitting_stops_a_running_query(chinook, make_app):
    """Python waits for worker threads before the process ends: a query left running kept it
    alive, screen gone, until the query finished (minutes, for this one)."""
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(SqlEditor).text = LONG_QUERY
        await pilot.press("ctrl+j")
        await asyncio.sleep(0.3)  # let SQLite get going
        assert app._busy("query")
        await pilot.press("ctrl+q")
    for _ in range(100):  # the worker's thread records how its query ended
        if app.history.entries():
            break
        await asyncio.sleep(0.1)
    assert [e.error for e in app.history.entries()] == ["query cancelled"]


async def test_a_damaged_history_still_opens_with_f8(chinook, make_app, data_dir):
    data_dir.mkdir(parents=True)
    good = {"sql": "SELECT 1", "database": "chinook.db", "timestamp": "2026-01-01T00:00:00",
            "seconds": 0.1, "rows": 1, "error": None}
    (data_dir / "history.jsonl").write_bytes(
        b'\xff\xfe not UTF-8\n{"sql": null}\n' + json.dumps(good).encode() + b"\n"
        + json.dumps(good | {"sql": None}).encode() + b"\n")
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f8")
        assert isinstance(app.screen, HistoryScreen)
        await pilot.press("enter")
        assert app.query_one(SqlEditor).text == "SELECT 1"


async def test_a_history_that_cannot_be_written_does_not_stop_a_write(chinook, make_app,
                                                                       tmp_path):
    """The write is done and said so (not "running…" forever, so nobody runs it again); the
    history's failure is a warning."""
    (tmp_path / "not-a-dir").write_text("")
    app = make_app(chinook, write=True, history=History(tmp_path / "not-a-dir" / "h.jsonl"))
    before = genre_count(chinook)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await run_sql(app, pilot, "INSERT INTO genres (Name) VALUES ('x')")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("tab", "enter")  # the Run button
        await settle(app, pilot)
        assert status(app).startswith("done · 1 row changed")
        await pilot.pause()
        assert any("History not saved" in str(t.render()) or "not-a-dir" in str(t.render())
                   for t in app.screen.query("Toast"))
        await run_sql(app, pilot, "SELECT count(*) FROM genres")
        assert status(app).startswith("1 row · ")
    assert genre_count(chinook) == before + 1


async def test_history_is_persisted_and_reusable(chinook, make_app, data_dir):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "SELECT 1")
        await run_sql(app, pilot, "SELECT Name FROM artists LIMIT 2")
        await run_sql(app, pilot, "SELECT * FROM nope")
    lines = (data_dir / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["sql"] for line in lines] == [
        "SELECT 1", "SELECT Name FROM artists LIMIT 2", "SELECT * FROM nope"]
    assert json.loads(lines[1])["rows"] == 2
    assert json.loads(lines[2])["error"] == "no such table: nope"

    app = make_app(chinook)  # a new session sees the old one's history
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f8")
        assert isinstance(app.screen, HistoryScreen)
        await pilot.press("down", "enter")  # newest first: the second is the artists query
        assert not isinstance(app.screen, HistoryScreen)
        assert app.query_one(SqlEditor).text == "SELECT Name FROM artists LIMIT 2"


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
async def test_export_streams_every_row(numbers_db, make_app, tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    app = make_app(numbers_db)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "SELECT n, label FROM numbers ORDER BY n")
        assert results(app).row_count == 500
        await pilot.press("ctrl+e")
        assert isinstance(app.screen, ExportScreen)
        assert "every row" in str(app.screen.query_one("#export-note").render())
        app.screen.query_one("#export-path").value = str(out)
        await pilot.press("enter")
        await settle(app, pilot)
        assert status(app) == f"exported 2,000 rows to {out}"
    if suffix == ".csv":
        lines = out.read_text().splitlines()
        assert lines[0] == "n,label" and lines[1] == "1,row 1" and len(lines) == 2001
    elif suffix == ".json":
        data = json.loads(out.read_text())
        assert len(data) == 2000 and data[-1] == {"n": 2000, "label": "row 2000"}
    else:
        table = pq.read_table(out)
        assert table.num_rows == 2000 and table.column("n").to_pylist()[-1] == 2000


async def test_json_export_keeps_both_columns_of_one_name(chinook, make_app, tmp_path):
    out = tmp_path / "names.json"
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "SELECT c.FirstName, e.FirstName FROM customers c "
                                  "JOIN employees e ON c.SupportRepId = e.EmployeeId "
                                  "ORDER BY c.CustomerId LIMIT 2")
        await export_to(app, pilot, out)
        assert status(app) == f"exported 2 rows to {out}"
    assert json.loads(out.read_text()) == [{"FirstName": "Luís", "FirstName_2": "Jane"},
                                           {"FirstName": "Leonie", "FirstName_2": "Steve"}]


async def test_an_existing_file_is_replaced_only_when_confirmed(chinook, make_app, tmp_path):
    out = tmp_path / "mine.csv"
    out.write_text("keep me")
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "SELECT Name FROM genres LIMIT 1")
        await export_to(app, pilot, out)
        assert isinstance(app.screen, ExportScreen)  # still asking
        assert str(app.screen.query_one("#export-error").render()) == \
            f"{out} exists: Export again to replace it"
        assert out.read_text() == "keep me"
        await pilot.press("escape")
        await export_to(app, pilot, out)
        await pilot.press("enter")  # the second Export: replace
        await settle(app, pilot)
        assert status(app) == f"exported 1 row to {out}"
    assert out.read_text().splitlines() == ["Name", "Rock"]


async def test_ctrl_j_in_a_large_unclosed_buffer_splits_off_the_ui_thread(chinook, make_app,
                                                                         monkeypatch):
    """0.6 MB after a comment that never closes (issue 35): found in a thread, in one pass."""
    import threading

    import tui.widgets.editor as editor_module

    on_ui_thread: list[bool] = []
    real = editor_module.statement_at

    def watched(text: str, offset: int) -> str:
        on_ui_thread.append(threading.current_thread() is threading.main_thread())
        return real(text, offset)

    monkeypatch.setattr(editor_module, "statement_at", watched)
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        editor = app.query_one(SqlEditor)
        editor.text = "SELECT 41 + 1;\n/* never closed " + "SELECT 2;\n" * 60_000
        editor.move_cursor((0, 3))
        await pilot.press("ctrl+j")
        for _ in range(50):  # the thread's message, then the query it asks for
            await settle(app, pilot)
            if status(app) != "gemma-sql" and not status(app).startswith("chinook.db"):
                break
        assert status(app).startswith("1 row · ") and on_ui_thread == [False]
        assert results(app).get_cell_at(Coordinate(0, 0)).plain == "42"


def genre_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM genres").fetchone()[0]
    finally:
        conn.close()


async def export_to(app: GemmaSqlApp, pilot: Pilot, out: Path) -> str:
    """ctrl+e to `out`; the dialog's note."""
    await pilot.press("ctrl+e")
    assert isinstance(app.screen, ExportScreen)
    note = str(app.screen.query_one("#export-note").render())
    app.screen.query_one("#export-path").value = str(out)
    await pilot.press("enter")
    await settle(app, pilot)
    return note


async def test_export_never_runs_a_statement_that_changed_data_again(chinook, make_app,
                                                                     tmp_path):
    """Issue 22: INSERT … RETURNING, confirmed once, then exported: one row inserted."""
    before = genre_count(chinook)
    app = make_app(chinook, write=True)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "INSERT INTO genres(Name) VALUES('Xdup') RETURNING GenreId")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(app, pilot)
        assert genre_count(chinook) == before + 1
        note = await export_to(app, pilot, tmp_path / "inserted.csv")
        assert genre_count(chinook) == before + 1  # asked once, done once
        assert not isinstance(app.screen, ConfirmScreen)
        assert "Writes the 1 row shown; the statement changed data and is not run again" in note
        assert status(app) == f"exported 1 row to {tmp_path / 'inserted.csv'}"
        # A read in the same write session still runs again, for every row.
        await run_sql(app, pilot, "SELECT GenreId FROM genres ORDER BY GenreId")
        note = await export_to(app, pilot, tmp_path / "all.csv")
        assert "every row" in note
    assert (tmp_path / "inserted.csv").read_text().splitlines() == ["GenreId", str(before + 1)]
    assert len((tmp_path / "all.csv").read_text().splitlines()) == 1 + before + 1
    assert genre_count(chinook) == before + 1


async def test_history_puts_a_statement_back_without_running_it(chinook, make_app):
    before = genre_count(chinook)
    app = make_app(chinook, write=True)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "INSERT INTO genres(Name) VALUES('Once')")
        await pilot.press("y")
        await settle(app, pilot)
        app.query_one(SqlEditor).text = ""
        await pilot.press("f8", "enter")
        await settle(app, pilot)
        assert app.query_one(SqlEditor).text == "INSERT INTO genres(Name) VALUES('Once')"
        assert not isinstance(app.screen, ConfirmScreen)
        assert len(app.history.entries()) == 1
    assert genre_count(chinook) == before + 1


async def test_null_blob_and_long_text_rendering(numbers_db, make_app):
    app = make_app(numbers_db)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "SELECT v FROM odd")
        table = results(app)
        null, text_null, blob, long = (table.get_cell_at(Coordinate(i, 0)) for i in range(4))
        assert isinstance(null, Text) and null.plain == "∅" and null.style == "dim italic"
        assert text_null.plain == "NULL" and not text_null.style  # plain text, no special style
        assert isinstance(blob, Text) and blob.plain == "<blob 1.2 KB>"
        assert len(long) == 80 and long.plain.endswith("…")


async def test_reals_read_as_the_sqlite3_shell_prints_them(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "SELECT 0.1 + 0.2, 7, 1.5e-7")
        cells = [results(app).get_cell_at(Coordinate(0, i)).plain for i in range(3)]
        assert cells == ["0.3", "7", "1.5e-07"]
        await pilot.press("f5", "ctrl+c")
        assert app.clipboard == "0.30000000000000004"  # copying keeps the raw value


async def test_copy_cell_and_row(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "SELECT ArtistId, Name FROM artists WHERE ArtistId = 1")
        await pilot.press("f5", "right", "ctrl+c")
        assert app.clipboard == "AC/DC"
        await pilot.press("y")
        assert app.clipboard == "1\tAC/DC"


async def test_f1_shows_the_bindings(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        assert app.screen.query("HelpPanel")
        await pilot.press("f1")
        assert not app.screen.query("HelpPanel")


def test_history_dir_comes_from_env(data_dir):
    assert History().path == data_dir / "history.jsonl"


async def test_second_run_while_busy_is_refused_not_queued(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(SqlEditor).text = LONG_QUERY
        await pilot.press("ctrl+j")
        await pilot.press("ctrl+j")
        assert status(app) == "a query is running: escape cancels it"
        await pilot.press("escape")
        await asyncio.wait_for(app.workers.wait_for_complete(), timeout=5)
        await pilot.pause()
        assert status(app) == "query cancelled"
