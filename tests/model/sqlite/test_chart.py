"""Which chart a result makes (model/sqlite/chart.py), and its PNG (export.write_chart)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pytest

from model.sqlite import export
from model.sqlite.chart import MAX_BARS, NO_CHART, Chart, NoChart, chart_for, value_text


def chart(columns: list[str], rows: list[tuple], ordered: bool = False,
          more: bool = False) -> Chart:
    result = chart_for(columns, rows, ordered=ordered, more=more)
    assert isinstance(result, Chart), result
    return result


def test_label_and_numbers_make_bars_longest_first() -> None:
    c = chart(["genre", "tracks", "hours"], [("Jazz", 130, 1.5), ("Rock", 1297, 9.0),
                                              ("Latin", 579, 4.25)])
    assert c.kind == "bars" and c.x_name == "genre"
    assert c.labels == ["Rock", "Latin", "Jazz"]
    assert [(s.name, s.values) for s in c.series] == [("tracks", [1297, 579, 130]),
                                                      ("hours", [9.0, 4.25, 1.5])]
    assert c.caption == "3 rows"


def test_an_ordered_query_keeps_its_order() -> None:
    c = chart(["genre", "tracks"], [("Jazz", 130), ("Rock", 1297)], ordered=True)
    assert c.labels == ["Jazz", "Rock"]


def test_nulls_are_skipped_and_counted() -> None:
    c = chart(["country", "total"], [("France", 10.5), (None, 3.0), ("Chile", None),
                                     ("Peru", 2)], more=True)
    assert c.labels == ["France", "Peru"]
    assert c.caption == "2 rows · 2 with NULL skipped · more rows not loaded"


def test_more_than_fifty_bars_are_cut() -> None:
    rows = [(f"album {i}", i) for i in range(412)]
    c = chart(["album", "sales"], rows)
    assert len(c.labels) == MAX_BARS == 50 and c.labels[0] == "album 411"
    assert c.caption == "50 of 412 rows"


def test_long_labels_are_cut_and_ids_are_not_measures() -> None:
    c = chart(["AlbumId", "Title", "sales"], [(1, "A very long album title\nindeed, yes", 3)])
    assert c.labels == ["A very long album title…"]
    assert [s.name for s in c.series] == ["sales"]  # AlbumId numbers rows, measures nothing


def test_dates_make_a_line_sorted_by_date() -> None:
    c = chart(["month", "revenue"], [("2010-02", 5.0), ("2009-12", 7.5), ("2010-01", 1)])
    assert c.kind == "line" and c.x_is_date
    assert c.labels == ["2009-12", "2010-01", "2010-02"]
    assert c.x == sorted(c.x) and c.x[1] - c.x[0] == 31
    assert c.series[0].values == [7.5, 1, 5.0] and c.caption == "3 points"
    full = chart(["at", "n"], [("2009-01-01 00:00:00", 1), ("2009-01-02 12:00:00", 2)])
    assert full.kind == "line" and full.x[1] - full.x[0] == 1.5


def test_numbers_alone_make_a_line_over_the_first() -> None:
    c = chart(["year", "total", "count"], [(2011, 5.5, 2), (2009, 1.0, 1)])
    assert c.kind == "line" and not c.x_is_date
    assert c.labels == ["2009", "2011"] and c.x == [2009.0, 2011.0]
    assert [s.name for s in c.series] == ["total", "count"]


@pytest.mark.parametrize(("columns", "rows", "reason"), [
    (["name"], [("AC/DC",)], NO_CHART),
    (["n"], [(1,)], NO_CHART),
    (["name", "data"], [("a", b"\x00")], NO_CHART),
    (["name", "mixed"], [("a", 1), ("b", "two")], NO_CHART),
    (["name", "n"], [], "no rows to chart"),
])
def test_no_chart_says_why(columns: list[str], rows: list[tuple], reason: str) -> None:
    assert chart_for(columns, rows, ordered=False) == NoChart(reason)


def test_value_text() -> None:
    assert [value_text(v) for v in (1297, 35.81999999999999, 2.93398361111111, 1234.5,
                                    0.0012, 100.0)] == \
        ["1,297", "35.82", "2.93", "1,234.5", "0.0012", "100"]


def test_write_chart_is_a_png_and_rows_go_elsewhere(tmp_path: Path) -> None:
    c = chart(["month", "revenue", "n"], [(f"2009-{m:02}", m * 1.5, m) for m in range(1, 13)])
    out = tmp_path / "line.png"
    assert export.write_chart(out, c) == 12
    image = matplotlib.image.imread(out)
    assert image.shape[1] >= 800 and image[:, :, :3].std() > 0.05
    assert export.format_for(out) == "png"
    with pytest.raises(export.ExportError, match="chart of the loaded rows"):
        export.write(out, ["a"], iter([(1,)]))
    with pytest.raises(export.ExportError, match="a chart is written as .png"):
        export.write_chart(tmp_path / "x.csv", c)
    with pytest.raises(export.ExportError, match="no such directory"):
        export.write_chart(tmp_path / "nope" / "x.png", c)


def test_every_row_with_a_null_in_a_charted_column_says_why() -> None:
    # SELECT 'a' AS n, NULL AS v UNION ALL SELECT NULL, 5: each column has a value, no row both.
    assert chart_for(["n", "v"], [("a", None), (None, 5)], ordered=False) == \
        NoChart("every row has a NULL in a charted column (n, v)")
    assert chart_for(["day", "v"], [("2009-01-01", None), (None, 5)], ordered=False) == \
        NoChart("every row has a NULL in a charted column (day, v)")


@pytest.mark.parametrize("kind", ["bars", "line"])
def test_png_labels_are_text_never_math(tmp_path: Path, kind: str) -> None:
    """matplotlib reads $...$ as math; malformed math ($\\frac{$) would raise at savefig."""
    bad = "$\\frac{$"
    first = "2009-01" if kind == "line" else bad
    c = chart([f"{bad} x", f"${bad}", "_hidden"], [(first, 1.5, 2), ("2009-02", 3.0, 4)])
    assert c.kind == kind and len(c.series) == 2
    assert export.write_chart(tmp_path / "c.png", c) == 2
