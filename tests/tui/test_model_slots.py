"""The model slots: loading on mount, question -> streamed SQL, cancel, and no model at all.

decoding.loading / pipeline.ask belong to the model engineer; these tests put small stand-ins in
sys.modules so the app's side of the contract is tested on its own (SQLite stays real).
"""

from __future__ import annotations

import asyncio
import threading
import types
from collections.abc import Callable
from typing import Any

import pytest
from fakes import FakeEngine

from model.llm.pipeline.answer import Answer
from model.llm.pipeline.settings import DEFAULT, Settings
from model.llm.sql.problem import Problem
from tui.widgets.editor import SqlEditor
from tui.widgets.question import QuestionBox
from tui.widgets.status import StatusBar

SIZE = (140, 44)


def fake_ask(engine: FakeEngine, db: Any, question: str, settings: Settings = DEFAULT,
             on_chunk: Callable[[str], None] | None = None,
             cancel: threading.Event | None = None) -> Answer:
    engine.budgets.append(settings.budget)
    focused = settings.focused
    text = ""
    for chunk in engine.stream(question, cancel or threading.Event()):
        text += chunk
        if on_chunk:
            on_chunk(chunk)
    problems = [Problem("unknown column: Nme", "column")] if "Nme" in text else []
    if focused and "albums" in question:  # as pipeline.ask: the question's tables answered it
        return Answer(question, text.strip().upper(), tables_sent=["albums", "artists"],
                      problems=problems, seconds=0.5, focused=True)
    return Answer(question, text.strip().upper(), tables_sent=["albums", "artists"],
                  problems=problems, seconds=0.5)


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    calls: dict[str, Any] = {}
    loading_mod = types.ModuleType("model.llm.decoding.loading")

    def load_engine(model: str = "default", adapter: Any = None, device: Any = None,
                    progress: Callable[[str], None] | None = None,
                    dtype: str | None = None) -> FakeEngine:
        calls["load"] = (model, adapter, device)
        calls["dtype"] = dtype
        if progress:
            progress("Loading fake on cpu…")
        return FakeEngine(["select ", "title ", "from albums"])

    loading_mod.load_engine = load_engine  # type: ignore[attr-defined]
    ask_mod = types.ModuleType("model.llm.pipeline.ask")
    ask_mod.ask = fake_ask  # type: ignore[attr-defined]
    ask_mod.prepare = (  # type: ignore[attr-defined]
        lambda engine, db: calls.setdefault("prepared", (engine, db)))
    monkeypatch.setitem(__import__("sys").modules, "model.llm.decoding.loading", loading_mod)
    monkeypatch.setitem(__import__("sys").modules, "model.llm.pipeline.ask", ask_mod)
    return calls


def status(app: Any) -> StatusBar:
    return app.query_one(StatusBar)


async def ask(app: Any, pilot: Any, question: str) -> None:
    await pilot.press("f3")
    app.query_one(QuestionBox).value = question
    await pilot.press("enter")
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_model_loads_on_mount_and_answers(chinook, make_app, fake_model):
    app = make_app(chinook, load_model=True, device="cpu")
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert fake_model["load"] == ("default", None, "cpu")
        # the database's part of the prompt is read while the user types the first question
        assert fake_model["prepared"] == (app.engine, app.database)
        assert status(app).model_text == "fake-270m · cpu · fp32"
        app.query_one(SqlEditor).text = "old text"
        await ask(app, pilot, "titles of albums")
        assert app.query_one(SqlEditor).text == "SELECT TITLE FROM ALBUMS"  # the pretty SQL
        assert str(app.query_one("#sql-notes").render()).startswith(
            "sent: albums, artists (the question's likeliest tables")
        assert status(app).model_text == "fake-270m · cpu · fp32 · 42.0 tok/s"
        assert "ctrl+j runs it" in status(app).message
        assert app.result is None  # nothing ran: model SQL is never executed automatically


async def test_dtype_and_budget_reach_the_engine_and_the_pipeline(chinook, make_app, fake_model):
    from model.llm.pipeline.settings import DEFAULT_BUDGET_S

    app = make_app(chinook, load_model=True, dtype="fp32",
                   settings=Settings(budget=3.0))
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert fake_model["dtype"] == "fp32"
        await ask(app, pilot, "titles of albums")
        assert app.engine.budgets == [3.0]
    app = make_app(chinook, load_model=True)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert fake_model["dtype"] is None  # the machine's, chosen by the engine
        await ask(app, pilot, "titles of albums")
        assert app.engine.budgets == [DEFAULT_BUDGET_S]


async def test_ctrl_t_asks_with_every_table(chinook, make_app, fake_model):
    app = make_app(chinook, engine=FakeEngine(["select ", "title ", "from albums"]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+t")
        assert "type a question first" in status(app).message
        await ask(app, pilot, "titles of albums")
        notes = str(app.query_one("#sql-notes").render())
        assert notes == ("sent: albums, artists (the question's likeliest tables; ctrl+t asks"
                         " with every table)")
        app.query_one(SqlEditor).text = "edited"
        await pilot.press("ctrl+t")  # from the editor: the question still in the box
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert str(app.query_one("#sql-notes").render()) == "sent: albums, artists"
        assert app.query_one(SqlEditor).text == "SELECT TITLE FROM ALBUMS"


async def test_chunks_stream_into_a_cleared_editor(chinook, make_app, fake_model):
    engine = FakeEngine(["SELECT ", "Nme ", "FROM artists"])
    app = make_app(chinook, engine=engine)
    seen: list[str] = []
    async with app.run_test(size=SIZE, message_hook=lambda m: seen.append(type(m).__name__)) \
            as pilot:
        app.query_one(SqlEditor).text = "old"
        await ask(app, pilot, "artist names")
        assert "old" not in app.query_one(SqlEditor).text
        assert seen.count("SqlChunk") == 3 and "SqlDone" in seen
        notes = app.query_one("#sql-notes")
        assert "unknown column: Nme" in str(notes.render())
        assert notes.has_class("-warning")


async def test_escape_cancels_generation(chinook, make_app, fake_model):
    engine = FakeEngine(["SELECT "] * 200, delay=0.02)
    app = make_app(chinook, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        app.query_one(QuestionBox).value = "anything"
        await pilot.press("enter")
        await pilot.pause(0.2)
        await pilot.press("escape")
        # That the cancel happened (the status says so; uncancelled, the 200 chunks end in 4 s
        # as an answer), within a bound generous for a loaded machine; bench/ measures speed.
        await asyncio.wait_for(app.workers.wait_for_complete(), timeout=10)
        await pilot.pause()
        assert status(app).message == "generation cancelled"


async def test_no_model_says_why(chinook, make_app):
    app = make_app(chinook)  # load_model=False, as --no-model
    async with app.run_test(size=SIZE) as pilot:
        assert status(app).model_text == "no model: started with --no-model"
        await ask(app, pilot, "how many albums?")
        assert status(app).message == "no model: started with --no-model"
        assert app.query_one(SqlEditor).text == ""


async def test_failing_engine_import_leaves_a_plain_sql_client(chinook, make_app,
                                                               monkeypatch):
    broken = types.ModuleType("model.llm.decoding.loading")  # no load_engine: the import fails
    monkeypatch.setitem(__import__("sys").modules, "model.llm.decoding.loading", broken)
    app = make_app(chinook, load_model=True)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert status(app).model_text.startswith("no model: cannot import name 'load_engine'")
        app.query_one(SqlEditor).text = "SELECT 1"
        await pilot.press("ctrl+j")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.query_one("#results").row_count == 1


async def test_real_ask_pipeline_with_an_engine_like_object(chinook, make_app):
    """The model engineer's pipeline.ask with a scripted engine: the contract between the two."""
    pytest.importorskip("model.llm.pipeline.ask")
    engine = FakeEngine([" SELECT Title ", "FROM albums ", "WHERE AlbumId = 1 <end_of_turn>"])
    app = make_app(chinook, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await ask(app, pilot, "What is the title of album 1?")
        sql = app.query_one(SqlEditor).text
        assert "SELECT" in sql and "albums" in sql and "AlbumId = 1" in sql
        assert str(app.query_one("#sql-notes").render()).startswith("sent: albums")
        await pilot.press("ctrl+j")
        await app.workers.wait_for_complete()
        await pilot.pause()
        cell = app.query_one("#results").get_cell_at((0, 0))
        assert cell.plain == "For Those About To Rock We Salute You"


async def test_corrected_names_are_shown_under_the_editor(chinook, make_app):
    engine = FakeEngine([" SELECT Title FROM album WHERE album_id = 1 <end_of_turn>"])
    app = make_app(chinook, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await ask(app, pilot, "What is the title of album 1?")
        assert "FROM albums" in app.query_one(SqlEditor).text
        notes = str(app.query_one("#sql-notes").render())
        assert "names corrected: album → albums, album_id → AlbumId" in notes


async def test_a_mended_join_is_in_the_editor_and_said_under_it(chinook, make_app):
    engine = FakeEngine([" SELECT T1.Title FROM albums AS T1 JOIN invoices AS T2 ON T1.AlbumId"
                         " = T2.AlbumId GROUP BY T1.AlbumId ORDER BY SUM(T2.UnitPrice) DESC"
                         " LIMIT 10 <end_of_turn>"])
    app = make_app(chinook, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await ask(app, pilot, "Name the top 10 albums with the highest sales amount")
        sql = app.query_one(SqlEditor).text
        assert "JOIN invoice_items AS T2" in sql and "JOIN tracks" in sql
        notes = str(app.query_one("#sql-notes").render())
        assert "joins mended to the schema: invoices → invoice_items" in notes
        await pilot.press("ctrl+j")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.query_one("#results").get_cell_at((0, 0)).plain == (
            "Battlestar Galactica (Classic), Season 1")


async def test_a_comparison_that_is_never_true_is_flagged_not_run(chinook, make_app):
    engine = FakeEngine([" SELECT count(*) FROM tracks WHERE GenreId = 'Polka' <end_of_turn>"])
    app = make_app(chinook, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await ask(app, pilot, "How many polka tracks are there?")
        assert "GenreId = 'Polka'" in app.query_one(SqlEditor).text  # no table holds 'Polka'
        notes = str(app.query_one("#sql-notes").render())
        assert "asked again: the first answer failed the check" in notes
        assert "✗ GenreId holds numbers, so it never equals the text 'Polka'" in notes
        assert app.query_one("#results").row_count == 0  # nothing ran


async def test_a_key_compared_with_a_name_is_read_where_the_name_is(chinook, make_app):
    engine = FakeEngine([" SELECT count(*) FROM tracks WHERE GenreId = 'Rock' <end_of_turn>"])
    app = make_app(chinook, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await ask(app, pilot, "How many rock tracks are there?")
        assert "genres.Name = 'Rock'" in app.query_one(SqlEditor).text
        notes = str(app.query_one("#sql-notes").render())
        assert "names corrected: GenreId = 'Rock' → genres.Name" in notes
        assert app.query_one("#results").row_count == 0  # shown, not run
        await pilot.press("ctrl+j")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.query_one("#results").get_cell_at((0, 0)).plain == "1297"


async def test_f7_turns_the_editor_to_the_other_answers(chinook, make_app):
    """Two drawn answers agree on one album, the greedy answer names another: the editor gets
    the agreed one, F7 the greedy one with how it differs, F7 again the first."""
    one, two = (f" SELECT Title FROM albums WHERE AlbumId = {i}" for i in (1, 2))
    engine = FakeEngine([one], drawn=[two, two])
    app = make_app(chinook, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await ask(app, pilot, "What is the title of album 2?")
        editor, notes = app.query_one(SqlEditor), app.query_one("#sql-notes")
        assert "AlbumId = 2" in editor.text
        assert "1 of 2: 1 row · 2 of 3 answers agree · F7: the next answer" in str(notes.render())
        await pilot.press("f7")
        assert "AlbumId = 1" in editor.text
        assert "2 of 2: 1 row · differs from 1 in WHERE · 1 agree" in str(notes.render())
        await pilot.press("f7")
        assert "AlbumId = 2" in editor.text and "1 of 2" in str(notes.render())
        await pilot.press("ctrl+j")  # the user runs what the editor holds
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.query_one("#results").get_cell_at((0, 0)).plain == "Balls to the Wall"


async def test_f7_without_other_answers_says_so(chinook, make_app):
    app = make_app(chinook, engine=FakeEngine([" SELECT Title FROM albums WHERE AlbumId = 1"]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f7")
        assert status(app).message == "no other answers to show"
        await ask(app, pilot, "What is the title of album 1?")
        await pilot.press("f7")
        assert "all agree" in status(app).message
        assert "AlbumId = 1" in app.query_one(SqlEditor).text


async def test_f7_after_a_budget_cut_answer_draws_and_shows_a_second(chinook, make_app):
    """The budget ran out before any answer was drawn: F7 draws them then (the status says so,
    escape would cancel) and turns the editor to the second result they agree on."""
    one, two = (f" SELECT Title FROM albums WHERE AlbumId = {i}" for i in (1, 2))
    engine = FakeEngine([one], drawn=[two, two])
    app = make_app(chinook, engine=engine, settings=Settings(budget=1e-6))
    async with app.run_test(size=SIZE) as pilot:
        await ask(app, pilot, "What is the title of album 2?")
        editor, notes = app.query_one(SqlEditor), app.query_one("#sql-notes")
        assert "AlbumId = 1" in editor.text and app.answer.alternatives == []
        assert "time budget" in str(notes.render())
        await pilot.press("f7")
        assert status(app).message.startswith("drawing 8 more answers")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "AlbumId = 2" in editor.text
        assert "2 of 2: 1 row · differs from 1 in WHERE · 2 agree" in str(notes.render())
        await pilot.press("f7")  # drawn once: F7 now only turns
        assert "AlbumId = 1" in editor.text and "1 of 2" in str(notes.render())
