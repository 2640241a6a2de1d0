"""A top N ranked by an aggregate shows that figure; other queries are left alone."""

import pytest

from model.llm.ranking import show_ranked_figure
from model.samples import CHINOOK
from model.sqlite.db import Database

TOP_ALBUMS = ("SELECT T1.Title FROM albums AS T1 JOIN tracks AS T2 ON T1.AlbumId = T2.AlbumId "
              "JOIN invoice_items AS T3 ON T2.TrackId = T3.TrackId GROUP BY T1.AlbumId "
              "ORDER BY SUM(T3.UnitPrice) DESC LIMIT 10")


def test_a_top_n_by_an_unselected_sum_selects_it_last() -> None:
    shown = show_ranked_figure(TOP_ALBUMS)
    assert shown is not None
    sql, figure = shown
    assert figure == "SUM(T3.UnitPrice)"
    assert sql.startswith("SELECT T1.Title, SUM(T3.UnitPrice) FROM albums")
    rows = Database.open(CHINOOK).conn.execute(sql).fetchall()
    assert len(rows) == 10 and rows[0][0] == "Battlestar Galactica (Classic), Season 1"
    assert round(rows[0][1], 2) == 35.82


@pytest.mark.parametrize("sql", [
    # one row: "the album with the most sales" asks for a name
    TOP_ALBUMS.replace("LIMIT 10", "LIMIT 1"),
    # the figure is selected already, by alias or as written
    "SELECT name, SUM(x) AS total FROM t GROUP BY name ORDER BY total DESC LIMIT 5",
    "SELECT name, sum(x) FROM t GROUP BY name ORDER BY SUM(x) DESC LIMIT 5",
    # ranked by a column, not an aggregate; not grouped; not a top N; not a SELECT
    "SELECT name FROM t ORDER BY x DESC LIMIT 5",
    "SELECT name FROM t ORDER BY (SELECT max(y) FROM u) DESC LIMIT 5",
    "SELECT name FROM t GROUP BY name ORDER BY count(*) DESC",
    "SELECT a FROM t UNION SELECT b FROM u",
    "not sql at all (",
])
def test_other_queries_are_left_alone(sql: str) -> None:
    assert show_ranked_figure(sql) is None
