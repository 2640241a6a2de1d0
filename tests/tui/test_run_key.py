"""ctrl+j runs exactly what the editor holds after every key typed before it.

Keys typed ahead (at tmux speed, or while the app was busy) reach the app as a burst: the
terminal driver's input thread posts each to the app's queue as soon as it is read. The app
then forwards typed keys into the editor's own queue, so a handler that read the editor at
once would see none of them. `Pilot.press` cannot show this: it waits for the app to go
idle after every key. `burst` delivers keys as the driver does.
"""

from __future__ import annotations

import sqlite3
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual import events
from textual.keys import _character_to_key

from tui.app import GemmaSqlApp
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.editor import SqlEditor
from tui.widgets.status import StatusBar

SIZE = (140, 44)


def burst(app: GemmaSqlApp, *keys: str) -> None:
    """Post `keys` to the app as the terminal driver does, none waiting for the one before."""
    assert app._driver is not None
    for key in keys:
        name = _character_to_key(key) if len(key) == 1 else key  # " " is "space", as typed
        event = events.Key(name, key if len(key) == 1 else None)
        event.set_sender(app)
        app._driver.send_message(event)


async def settle(app: GemmaSqlApp, pilot: Any) -> None:
    for _ in range(3):  # the run's worker may start only once the keys are through
        await pilot.pause()
        # Not the model's: it is still loading, on purpose.
        for worker in [w for w in app.workers if w.group != "model"]:
            await worker.wait()
    await pilot.pause()


async def loaded(app: GemmaSqlApp, pilot: Any, loading: threading.Event) -> None:
    """Let the model's load end (in failure), inside the test: the app waits for it on exit."""
    loading.set()
    await app.workers.wait_for_complete()
    await pilot.pause()


@pytest.fixture
def loading_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """A model that is still loading (in its thread worker) until the event is set."""
    loaded = threading.Event()
    engine_mod = types.ModuleType("model.llm.decoding.loading")

    def load_engine(progress: Callable[[str], None] | None = None, **_: object) -> None:
        loaded.wait(30)
        raise RuntimeError("no model in this test")

    engine_mod.load_engine = load_engine  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "model.llm.decoding.loading", engine_mod)
    yield loaded
    loaded.set()


async def test_typed_ahead_keys_are_in_the_statement_run(chinook, make_app, loading_model):
    app = make_app(chinook, load_model=True)
    async with app.run_test(size=SIZE) as pilot:
        assert app._busy("model")
        burst(app, *"SELECT 42 AS answer", "ctrl+j")
        await settle(app, pilot)
        assert app.query_one(StatusBar).message.startswith("1 row · ")
        assert app.result is not None and app.result.sql == "SELECT 42 AS answer"
        assert [str(c.label) for c in app.query_one("#results").columns.values()] == ["answer"]
        await loaded(app, pilot, loading_model)


async def test_confirmation_shows_what_the_editor_shows(chinook, make_app, loading_model):
    """The dangerous case: the statement asked about (and run) is the one on screen."""
    app = make_app(chinook, write=True, load_model=True)
    async with app.run_test(size=SIZE) as pilot:
        editor = app.query_one(SqlEditor)
        editor.text = "DELETE FROM genres"
        editor.move_cursor(editor.document.end)
        burst(app, *" WHERE GenreId = 25", "ctrl+j")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.statements == ["DELETE FROM genres WHERE GenreId = 25"]
        assert editor.text == "DELETE FROM genres WHERE GenreId = 25"
        await pilot.press("y")
        await settle(app, pilot)
        await loaded(app, pilot, loading_model)
    conn = sqlite3.connect(chinook)
    assert conn.execute("SELECT count(*) FROM genres").fetchone()[0] == 24
    conn.close()


async def test_editing_keys_in_a_burst_apply_in_order(chinook, make_app):
    """Backspace and arrows are bindings, printable keys are not: both kinds keep their order
    (Textual resolves a widget's bindings once the key has bubbled up to the app, after the
    editor has already inserted the characters typed after it)."""
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        burst(app, *"ELECT 42 AS answe", "backspace", "backspace", *"xy", "home", "S", "end",
              "ctrl+j")
        await settle(app, pilot)
        assert app.query_one(SqlEditor).text == "SELECT 42 AS ansxy"
        assert app.result is not None and app.result.sql == "SELECT 42 AS ansxy"


async def test_keys_typed_after_ctrl_j_are_not_in_the_statement(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        burst(app, *"SELECT 1 AS one", "ctrl+j", *" -- more")
        await settle(app, pilot)
        assert app.result is not None and app.result.sql == "SELECT 1 AS one"
        assert app.query_one(SqlEditor).text == "SELECT 1 AS one -- more"


async def test_ctrl_j_from_another_widget_runs_the_editor_statement(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        burst(app, *"SELECT 7 AS seven", "f5", "ctrl+j")
        await settle(app, pilot)
        assert app.focused is app.query_one("#results")
        assert app.result is not None and app.result.sql == "SELECT 7 AS seven"
