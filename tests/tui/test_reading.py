"""The SQL read out under the editor (issue 34): the model's answer with how sure it is, and
whatever the user types or edits, read again once the keys pause. The pipeline is the real
one over Chinook; the engine is scripted (tests/fakes.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fakes import FakeEngine

from tui.app import GemmaSqlApp
from tui.widgets.editor import SqlEditor
from tui.widgets.question import QuestionBox
from tui.widgets.reading import SqlReading

SIZE = (140, 44)
QUESTION = "Name the top 10 albums with the highest sales amount"
SQL = ("SELECT T1.Title FROM albums AS T1 JOIN tracks AS T2 ON T1.AlbumId = T2.AlbumId "
       "GROUP BY T1.AlbumId ORDER BY SUM(T2.UnitPrice) DESC LIMIT 10")
OTHER = "SELECT Title FROM albums LIMIT 10"


def reading(app: GemmaSqlApp) -> str:
    return str(app.query_one(SqlReading).content)


async def until(pilot: Any, done: Callable[[], bool]) -> None:
    """Wait, a frame at a time, until `done` (the reading follows the keys after a pause)."""
    for _ in range(200):
        await pilot.pause(0.05)
        await pilot.app.workers.wait_for_complete()
        if done():
            return
    raise AssertionError(f"never came; the reading is {reading(pilot.app)!r}")


async def test_the_model_answer_is_read_out_with_how_sure_it_is(
    chinook: Path, make_app: Callable[..., GemmaSqlApp]
) -> None:
    engine = FakeEngine([SQL], drawn=[SQL, SQL, OTHER])  # 3 of the 4 answers agree
    app = make_app(chinook, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        app.query_one(QuestionBox).value = QUESTION
        await pilot.press("enter")
        await until(pilot, lambda: "agree" in reading(app))
        said = reading(app)
        assert said.startswith("Shows albums.Title for each album (albums.AlbumId) from albums "
                               "joined with tracks")
        assert "the sum of tracks.UnitPrice (highest first)" in said
        assert "· 3 of 4 answers agree" in said
        assert "'sales': nothing by that name in this database" in said

        # An edit (LIMIT 10 -> LIMIT 1): it is read out again; the verdict was the model's
        # answer's, not the edit's.
        editor = app.query_one(SqlEditor)
        editor.focus()
        editor.move_cursor(editor.document.end)
        await pilot.press("backspace")
        await until(pilot, lambda: "the first row only" in reading(app))
        assert reading(app).startswith("Shows albums.Title for each album")
        assert "agree" not in reading(app) and "sales" not in reading(app)


async def test_sql_typed_without_a_model_is_read_out(
    chinook: Path, make_app: Callable[..., GemmaSqlApp]
) -> None:
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"select name from genres where genreid in (1, 2)")
        want = "Shows genres.Name from genres where genres.GenreId is one of 1, 2."
        await until(pilot, lambda: reading(app) == want)
        # A name from the database is data: "[b]" stays as typed, never markup.
        app.query_one(SqlEditor).replace_all("SELECT '[b]x[/b]' FROM genres")
        await until(pilot, lambda: reading(app) == "Shows '[b]x[/b]' from genres.")
