"""The app with `--endpoint`: the model is a server's (a real HTTP peer, scripted:
tests/scripted_server.py); SQL streams into the editor, escape cancels, and a server that is
not there or fails is one line in the status bar, the app staying a working SQL client."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from scripted_server import Handler, answering, completion, models, scripted_server

from tui.widgets.editor import SqlEditor
from tui.widgets.question import QuestionBox
from tui.widgets.status import StatusBar

SIZE = (140, 44)
COUNT_ALBUMS = [" SELECT", " count(*)", " FROM", " albums"]


def status(app: Any) -> StatusBar:
    return app.query_one(StatusBar)


async def ask(app: Any, pilot: Any, question: str, wait: bool = True) -> None:
    await pilot.press("f3")
    app.query_one(QuestionBox).value = question
    await pilot.press("enter")
    if wait:
        await app.workers.wait_for_complete()
        await pilot.pause()


async def test_sql_from_the_server_streams_into_the_editor(chinook, make_app):
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": answering(COUNT_ALBUMS)}) as server:
        app = make_app(chinook, load_model=True, endpoint=server.url)
        seen: list[str] = []
        async with app.run_test(size=SIZE,
                                message_hook=lambda m: seen.append(type(m).__name__)) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert status(app).model_text.startswith(f"gemma-sql · {server.url}")
            await ask(app, pilot, "How many albums are there?")
            assert app.query_one(SqlEditor).text == "SELECT\n  COUNT(*)\nFROM albums"
            assert seen.count("SqlChunk") >= len(COUNT_ALBUMS) and "SqlDone" in seen
            assert "ctrl+j runs it" in status(app).message
            assert status(app).model_text.endswith(" tok/s")  # the worker thread's figures


async def test_escape_closes_the_request(chinook, make_app):
    slow = lambda h, body: h.trickle([completion(" SELECT")])  # noqa: E731
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": slow}) as server:
        app = make_app(chinook, load_model=True, endpoint=server.url)
        async with app.run_test(size=SIZE) as pilot:
            await app.workers.wait_for_complete()
            await ask(app, pilot, "How many albums are there?", wait=False)
            await pilot.pause(0.5)
            await pilot.press("escape")
            # That the cancel happened (the server thinks for 30 s), within a generous bound.
            await asyncio.wait_for(app.workers.wait_for_complete(), timeout=10)
            await pilot.pause()
            assert status(app).message == "generation cancelled"
            assert server.gone.wait(10)  # the server saw the client go


async def test_an_unreachable_server_leaves_a_plain_sql_client(chinook, make_app):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = make_app(chinook, load_model=True, endpoint=f"http://127.0.0.1:{port}/v1")
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert status(app).model_text == (f"no model: cannot reach http://127.0.0.1:{port}/v1: "
                                          "connection refused (is the server running?)")
        assert app.engine is None  # never a silent fall back to a model loaded here
        await ask(app, pilot, "How many albums?")
        assert status(app).message.startswith("no model: cannot reach")
        app.query_one(SqlEditor).text = "SELECT 1"
        await pilot.press("ctrl+j")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.query_one("#results").row_count == 1


async def test_a_server_failing_mid_answer_is_one_line_in_the_status_bar(chinook, make_app):
    def fail(h: Handler, body: dict[str, Any]) -> None:
        h.json({"error": {"message": "model overloaded\ntry later"}}, 503)

    with scripted_server({"/v1/models": models("gemma-sql"), "/v1/completions": fail}) as server:
        app = make_app(chinook, load_model=True, endpoint=server.url)
        async with app.run_test(size=SIZE) as pilot:
            await app.workers.wait_for_complete()
            await ask(app, pilot, "How many albums?")
            assert status(app).message == (f"{server.url} answered 503: model overloaded "
                                           "try later")
            assert app.is_running
