"""F4's chart of the loaded rows, its PNG export, and `ask --chart`, over a real Chinook."""

from __future__ import annotations

import sqlite3
import sys
import types
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest
from test_app import SIZE, results, run_sql, settle, status
from textual.color import Color
from textual.widgets import ContentSwitcher
from typer.testing import CliRunner

from tui.app import GemmaSqlApp
from tui.widgets.chart import ChartPlot, ResultsChart, theme_colors
from tui.widgets.export import ExportScreen

GENRES = ("SELECT g.Name AS genre, count(*) AS tracks FROM tracks t "
          "JOIN genres g USING (GenreId) GROUP BY g.Name")
# Every bar at least a few pixels wide in a PNG (Opera's 1 track of Rock's 1,297 is not).
BIG_GENRES = GENRES + " HAVING tracks >= 20"
MONTHS = ("SELECT strftime('%Y-%m', InvoiceDate) AS month, sum(Total) AS revenue "
          "FROM invoices GROUP BY month ORDER BY revenue DESC")
TEN_MILLION = ("WITH RECURSIVE c(label, n) AS (SELECT 'row 1', 1 UNION ALL "
               "SELECT 'row ' || (n + 1), n + 1 FROM c WHERE n < 10000000) SELECT * FROM c")


def genre_counts(db: Path, sql: str = GENRES) -> list[tuple[str, int]]:
    """The genres' track counts as SQLite gives them, largest first."""
    conn = sqlite3.connect(db)
    rows = conn.execute(sql + " ORDER BY tracks DESC, genre").fetchall()
    conn.close()
    return rows


def showing(app: GemmaSqlApp) -> str | None:
    return app.query_one("#results-area", ContentSwitcher).current


def plot_lines(app: GemmaSqlApp) -> list[str]:
    plot = app.query_one(ChartPlot)
    return ["".join(s.text for s in plot.render_line(y)) for y in range(plot.size.height)]


def drawn_bars(app: GemmaSqlApp) -> list[tuple[str, int, str]]:
    """Each bar on screen, top down: its label, its length in cells and the text after it."""
    bars = []
    for line in plot_lines(app):
        label, tick, rest = line.partition("┤")
        if tick and "█" in rest:
            body = rest.rstrip("│ ")
            bars.append((label.strip(), body.count("█"), body.replace("█", "").strip()))
    return bars


def png_bars(path: Path, color: str) -> list[int]:
    """The widths in pixels of the bars of `color` in a PNG, top down."""
    image = matplotlib.image.imread(path)[:, :, :3]
    rgb = np.array(Color.parse(color).rgb) / 255
    mask = (np.abs(image - rgb) < 0.02).all(axis=2)
    widths, current = [], 0
    for row in mask.sum(axis=1):
        if row:
            current = max(current, int(row))
        elif current:
            widths.append(current)
            current = 0
    return widths


def assert_proportional(lengths: list[int], values: list[int], slack: float) -> None:
    for length, value in zip(lengths, values, strict=True):
        assert abs(length / lengths[0] - value / values[0]) <= slack / lengths[0], \
            (length, value)


async def test_label_and_number_show_bars_longest_first(chinook, make_app):
    expected = genre_counts(chinook)
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, GENRES)
        await pilot.press("f4")
        await pilot.pause()
        assert showing(app) == "chart"
        assert app.query_one(ResultsChart).border_subtitle == "25 rows"
        bars = drawn_bars(app)
        # No ORDER BY: longest first, one bar a genre, its value at its end.
        assert [label for label, _, _ in bars] == [name for name, _ in expected]
        assert [text for _, _, text in bars] == [f"{n:,}" for _, n in expected]
        lengths = [length for _, length, _ in bars]
        assert lengths == sorted(lengths, reverse=True) and lengths[0] > 40
        assert_proportional(lengths, [n for _, n in expected], slack=1.5)  # cells
        await pilot.press("f4")  # back to the table, as it was
        assert showing(app) == "results" and results(app).row_count == 25


async def test_an_order_by_keeps_the_querys_order(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, GENRES + " ORDER BY genre DESC")
        await pilot.press("f4")
        await pilot.pause()
        labels = [label for label, _, _ in drawn_bars(app)]
        assert labels == sorted(labels, reverse=True) and labels[0] == "World"


async def test_date_and_number_show_a_line_sorted_by_date(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, MONTHS)
        await pilot.press("f4")
        await pilot.pause()
        chart = app.query_one(ChartPlot).chart
        assert chart is not None and chart.kind == "line" and chart.x_is_date
        assert chart.labels == sorted(chart.labels) and len(chart.labels) == 60
        assert chart.x == sorted(chart.x)
        lines = plot_lines(app)
        assert sum(1 for line in lines for ch in line if "\u2801" <= ch <= "\u28ff") > 60
        assert not any("█" in line for line in lines)
        assert "2009-01" in lines[-2] and "2013-12" in lines[-2]  # dates along x


async def test_one_column_says_why_there_is_no_chart(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        assert status(app) == "no chart: no rows: run a query first"
        await run_sql(app, pilot, "SELECT Name FROM artists")
        await pilot.press("f4")
        assert status(app) == "no chart: needs a label or date column and a number column"
        assert showing(app) == "results"


async def test_a_null_in_every_row_says_why_and_the_app_keeps_running(chinook, make_app):
    """Each column has a value, no row has both: nothing to draw (issue 35)."""
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, "SELECT 'a' AS n, NULL AS v UNION ALL SELECT NULL, 5")
        await pilot.press("f4")
        await settle(app, pilot)
        assert status(app) == "no chart: every row has a NULL in a charted column (n, v)"
        assert showing(app) == "results" and app.is_running
        await run_sql(app, pilot, "SELECT 1 AS n")
        assert status(app).startswith("1 row · ")


async def test_the_legend_shows_column_names_literally(chinook, make_app):
    app = make_app(chinook)
    names = ["[b]g[/b]\x1b[7m", "$\\frac{$", "[/x]\x07"]
    sql = (f'SELECT Name AS "{names[0]}", GenreId AS "{names[1]}", MediaTypeId AS "{names[2]}" '
           "FROM tracks LIMIT 3")
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, sql)
        await pilot.press("f4")
        await settle(app, pilot)
        assert showing(app) == "chart"
        legend = app.query_one("#chart-legend").render()
        assert str(legend) == "[b]g[/b]␛[7m → ■ $\\frac{$  ■ [/x]␇"


async def test_a_new_result_redraws_or_leaves_the_chart(chinook, make_app):
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, GENRES)
        await pilot.press("f4")
        await run_sql(app, pilot, "SELECT Name, Milliseconds FROM tracks LIMIT 3")
        assert showing(app) == "chart" and len(drawn_bars(app)) == 3
        await run_sql(app, pilot, "SELECT Name FROM artists")
        assert showing(app) == "results" and status(app).startswith("no chart: ")


async def test_ten_million_rows_chart_only_the_loaded_page(chinook, make_app, monkeypatch):
    app = make_app(chinook)
    fetched: list[int] = []
    fetch = app.database.fetch

    def counting_fetch(result: Any, *args: Any) -> list[tuple[Any, ...]]:
        rows = fetch(result, *args)
        fetched.append(len(rows))
        return rows

    monkeypatch.setattr(app.database, "fetch", counting_fetch)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, TEN_MILLION)
        assert fetched == [500]
        await pilot.press("f4")
        await settle(app, pilot)
        assert showing(app) == "chart"
        caption = app.query_one(ResultsChart).border_subtitle
        assert caption == "50 of 500 rows · more rows not loaded"
        bars = drawn_bars(app)
        assert len(bars) == 50 and bars[0][:1] == ("row 500",) and bars[-1][0] == "row 451"
        assert fetched == [500] and len(results(app).raw) == 500
        assert app.result is not None and not app.result.exhausted


async def test_png_export_draws_the_same_bars(chinook, make_app, tmp_path):
    expected = genre_counts(chinook, BIG_GENRES)
    out = tmp_path / "genres.png"
    app = make_app(chinook)
    async with app.run_test(size=SIZE) as pilot:
        await run_sql(app, pilot, BIG_GENRES)
        await pilot.press("f4")
        await pilot.press("ctrl+e")
        assert isinstance(app.screen, ExportScreen)
        assert ".png" in str(app.screen.query_one("#export-note").render())
        app.screen.query_one("#export-path").value = str(out)
        await pilot.press("enter")
        await settle(app, pilot)
        assert status(app) == f"exported {len(expected)} rows to {out}"
        color = theme_colors(app)[0]
    image = matplotlib.image.imread(out)
    assert image.shape[0] >= 400 and image.shape[1] >= 800
    assert image[:, :, :3].std() > 0.1  # not blank
    widths = png_bars(out, color)
    assert len(widths) == len(expected) == 20
    assert widths == sorted(widths, reverse=True) and widths[0] > 500
    assert_proportional(widths, [n for _, n in expected], slack=3)


def fake_model(monkeypatch: pytest.MonkeyPatch, sql: str) -> None:
    """`ask` without a model: the pipeline answers `sql` (its own tests are in tests/model)."""
    import model.llm.decoding.loading
    from model.llm.pipeline.answer import Answer

    answer = Answer("", sql=sql, seconds=0.1)
    fake_ask = types.ModuleType("model.llm.pipeline.ask")
    fake_ask.ask = lambda engine, db, question, settings: answer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "model.llm.pipeline.ask", fake_ask)
    monkeypatch.setattr(model.llm.decoding.loading, "load_engine",
                        lambda *a, **k: types.SimpleNamespace(name="fake"))


def test_ask_run_chart_writes_a_png(chinook: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from tui.cli import app

    fake_model(monkeypatch, BIG_GENRES)
    out = tmp_path / "genres.png"
    result = CliRunner().invoke(app, ["ask", str(chinook), "tracks per genre?", "--run",
                                      "--chart", str(out)])
    assert result.exit_code == 0, result.output
    assert "(20 rows)" in result.stdout
    widths = png_bars(out, "#1f77b4")  # matplotlib's first colour
    expected = genre_counts(chinook, BIG_GENRES)
    assert len(widths) == len(expected) == 20
    assert_proportional(widths, [n for _, n in expected], slack=3)


def test_ask_chart_without_a_chart_is_one_line_exit_1(chinook: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tui.cli import app

    fake_model(monkeypatch, "SELECT Name FROM artists")
    out = tmp_path / "artists.png"
    result = CliRunner().invoke(app, ["ask", str(chinook), "artists?", "--chart", str(out)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "gemma-sql: no chart: needs a label or date column and a number column")
    assert not out.exists()
    result = CliRunner().invoke(app, ["ask", str(chinook), "artists?", "--chart", "a.jpg"])
    assert result.exit_code == 2 and "--chart writes a .png" in result.stderr
