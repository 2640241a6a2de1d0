"""The seed's question in the app, answered by the offline default as users get it: the real
Gemma 3 270M with the shipped adapter, the app's own pipeline, the bundled Chinook.

Which SQL the model writes for "sales" hangs on one kernel's rounding: the same weights write
one query on one CPU and another on the next (2026-12-01: `SUM(Quantity)` on this project's
AVX512-BF16 machine, `SUM(UnitPrice)` on the one before), and whether it is the right query is
the eval's business, not this test's. So the test checks what the pipeline guarantees on every
CPU: the SQL is streamed into the editor and passes the check, nothing is run before ctrl+j,
and after it the results table shows the rows SQLite gives for the editor's SQL."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from tui.widgets.editor import SqlEditor
from tui.widgets.question import QuestionBox
from tui.widgets.results import render_cell

SIZE = (140, 44)
QUESTION = "Name the top 10 albums with the highest sales amount"
COMPARED_ROWS = 10


@pytest.mark.slow
async def test_the_seeds_question_is_written_checked_and_run_as_shown(
        chinook: Any, make_app: Any, real_engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks: list[str] = []
    append = SqlEditor.append

    def streamed(editor: SqlEditor, text: str) -> None:
        chunks.append(text)
        append(editor, text)

    monkeypatch.setattr(SqlEditor, "append", streamed)
    app = make_app(chinook, engine=real_engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        app.query_one(QuestionBox).value = QUESTION
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        sql = app.query_one(SqlEditor).text
        assert len(chunks) > 1 and "SELECT" in "".join(chunks).upper()  # streamed as written
        assert sql.strip().upper().startswith(("SELECT", "WITH")), sql
        notes = str(app.query_one("#sql-notes").render())
        assert "✗" not in notes, notes  # it passes the check: no error under the editor
        results = app.query_one("#results")
        assert results.row_count == 0  # written, not run: the user runs it
        await pilot.press("ctrl+j")
        await app.workers.wait_for_complete()
        await pilot.pause()
        conn = sqlite3.connect(f"file:{chinook}?mode=ro", uri=True)
        try:
            cursor = conn.execute(sql)
            columns = [d[0] for d in cursor.description]
            expected = cursor.fetchmany(COMPARED_ROWS)
            more = cursor.fetchone() is not None
        finally:
            conn.close()
        assert results.columns_names == columns, sql
        if more:
            assert results.row_count > len(expected)
        else:
            assert results.row_count == len(expected)
        shown = [[results.get_cell_at((row, col)).plain for col in range(len(columns))]
                 for row in range(len(expected))]
        assert shown == [[render_cell(v).plain for v in row] for row in expected]
        assert [tuple(row) for row in results.raw[:COMPARED_ROWS]] == expected
