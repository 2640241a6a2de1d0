"""Mending an answer's FROM clause to the schema, on real SQLite files."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.llm.sql.check import check
from model.llm.sql.joins import mend_joins
from model.sqlite.db import Database

FILMS = """
CREATE TABLE film (Film_ID INTEGER PRIMARY KEY, Title TEXT, Studio TEXT);
CREATE TABLE market (Market_ID INTEGER PRIMARY KEY, Country TEXT);
CREATE TABLE film_market_estimation (
    Estimation_ID INTEGER PRIMARY KEY, Year INTEGER,
    Film_ID INTEGER REFERENCES film (Film_ID), Market_ID INTEGER REFERENCES market (Market_ID));
CREATE TABLE review (Review_ID INTEGER PRIMARY KEY, Stars INTEGER);
INSERT INTO film VALUES (1, 'Jaws', 'Universal'), (2, 'Rocky', 'United Artists');
INSERT INTO market VALUES (1, 'Japan'), (2, 'France');
INSERT INTO film_market_estimation VALUES (1, 1995, 1, 1), (2, 1996, 2, 2), (3, 1997, 2, 1);
"""


@pytest.fixture
def films(tmp_path: Path) -> Iterator[Database]:
    path = tmp_path / "films.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(FILMS)
    conn.close()
    database = Database.open(path)
    yield database
    database.close()


@pytest.fixture
def db(chinook: Path) -> Iterator[Database]:
    database = Database.open(chinook)
    yield database
    database.close()


def mend(sql: str, db: Database) -> tuple[str, list[str], list[tuple]]:
    """The mended SQL, what changed, and its rows (it must pass the check first)."""
    result = mend_joins(sql, db.schema())
    assert result is not None
    fixed, changes = result
    assert not [p for p in check(fixed, db.schema(), db.conn) if p.fatal]
    return fixed, changes, db.conn.execute(fixed).fetchall()


def test_a_column_no_table_here_has_is_joined_along_the_foreign_key(films: Database) -> None:
    sql = "SELECT Year FROM film_market_estimation WHERE Country = 'Japan' ORDER BY Year DESC"
    fixed, changes, rows = mend(sql, films)
    assert rows == [(1997,), (1995,)]
    assert changes == ["market joined for Country"]
    assert "market.Country = 'Japan'" in fixed


def test_a_qualified_column_no_table_here_has_is_joined_in(films: Database) -> None:
    """T1 reads Title and Year, which no one table has: film is joined in for Title."""
    sql = ("SELECT T1.Title, T1.Year FROM film_market_estimation AS T1 JOIN market AS T2 "
           "ON T1.Market_ID = T2.Market_ID WHERE T2.Country = 'Japan' ORDER BY T1.Year")
    fixed, changes, rows = mend(sql, films)
    assert changes == ["film joined for Title"] and "SELECT film.Title, T1.Year" in fixed
    assert rows == [("Jaws", 1995), ("Rocky", 1997)]


def test_a_lone_table_is_replaced_by_the_one_that_has_every_column_read(
    films: Database,
) -> None:
    _, changes, rows = mend("SELECT Country FROM film WHERE Market_ID = 2", films)
    assert changes == ["film → market"] and rows == [("France",)]


def test_an_alias_is_pointed_at_the_table_that_has_its_columns(films: Database) -> None:
    sql = ("SELECT T2.Title FROM film_market_estimation AS T1 JOIN film_market_estimation AS T2 "
           "ON T1.Film_ID = T2.Film_ID WHERE T1.Year = 1996")
    fixed, changes, rows = mend(sql, films)
    assert rows == [("Rocky",)]
    assert changes == ["film_market_estimation → film"]


def test_a_join_on_columns_the_tables_lack_is_remade_through_the_table_between(
    db: Database,
) -> None:
    """The seed's question as the small model writes it: invoices joined by an AlbumId
    neither invoices nor invoice_items has; the line items are reached through tracks."""
    sql = ("SELECT T1.Title FROM albums AS T1 JOIN invoices AS T2 ON T1.AlbumId = T2.AlbumId "
           "GROUP BY T1.AlbumId ORDER BY SUM(T2.UnitPrice) DESC LIMIT 10")
    fixed, changes, rows = mend(sql, db)
    assert changes == ["invoices → invoice_items",
                       "invoice_items joined by its foreign key through tracks"]
    assert rows[0] == ("Battlestar Galactica (Classic), Season 1",)
    total = db.conn.execute(fixed.replace("T1.Title", "T1.Title, SUM(T2.UnitPrice)")).fetchone()
    assert total[1] == pytest.approx(35.82)


def test_a_column_on_the_wrong_side_of_a_join_moves_to_the_table_that_has_it(
    db: Database,
) -> None:
    sql = ("SELECT T1.Name, COUNT(*) FROM albums AS T1 JOIN artists AS T2 "
           "ON T1.ArtistId = T2.ArtistId GROUP BY T1.Name ORDER BY COUNT(*) DESC LIMIT 1")
    _, changes, rows = mend(sql, db)
    assert changes == ["T1.Name → T2.Name"]
    assert rows == [("Iron Maiden", 21)]


def test_a_bare_column_made_ambiguous_by_the_join_is_qualified(db: Database) -> None:
    sql = "SELECT Name FROM genres WHERE Title = 'Facelift'"
    fixed, changes, rows = mend(sql, db)
    assert changes == ["albums joined for Title"]
    assert "SELECT genres.Name FROM genres JOIN tracks" in fixed  # tracks has a Name too
    assert rows == [("Rock",)] * 12  # Facelift's 12 tracks


def test_a_join_off_the_foreign_key_is_remade_on_it(db: Database) -> None:
    """Spider's own training set has this one: albums joined to tracks by genre."""
    sql = ("SELECT T1.Title FROM albums AS T1 JOIN tracks AS T2 ON T1.AlbumId = T2.GenreId "
           "WHERE T2.Name = 'Balls to the Wall'")
    fixed, changes, rows = mend(sql, db)
    assert changes == ["tracks joined by its foreign key"]
    assert "ON T1.AlbumId = T2.AlbumId" in fixed and rows == [("Balls to the Wall",)]
    # Two tables a foreign key joins only through a third: joined through it.
    sql = ("SELECT DISTINCT T1.Title FROM albums AS T1 JOIN invoice_items AS T2 "
           "ON T1.AlbumId = T2.InvoiceLineId WHERE T2.InvoiceId = 1")
    fixed, changes, rows = mend(sql, db)
    assert changes == ["invoice_items joined by its foreign key through tracks"]
    assert rows == [("Balls to the Wall",), ("Restless and Wild",)]
    # Same-named columns, and tables no foreign key joins, are the model's own choice.
    for kept in ("SELECT T1.Name FROM artists AS T1 JOIN genres AS T2 ON T1.Name = T2.Name",
                 "SELECT T1.Name FROM artists AS T1 JOIN genres AS T2 ON T1.ArtistId = "
                 "T2.GenreId", "SELECT T1.Title FROM albums AS T1 JOIN tracks AS T2 "
                 "ON T1.AlbumId = T2.AlbumId"):
        assert mend_joins(kept, db.schema()) is None


def test_a_subquerys_columns_are_its_own(films: Database) -> None:
    """The outer query is mended for Country; the subquery's Year stays where it is."""
    sql = ("SELECT Title FROM film WHERE Country = 'Japan' AND Film_ID IN "
           "(SELECT Film_ID FROM film_market_estimation WHERE Year = 1997)")
    fixed, changes, rows = mend(sql, films)
    assert changes == ["market joined for Country"] and rows == [("Rocky",)]
    assert "(SELECT Film_ID FROM film_market_estimation WHERE Year = 1997)" in fixed


@pytest.mark.parametrize(
    "sql",
    ["SELECT Title FROM film",  # nothing wrong
     "SELECT Age FROM film",  # no table has Age
     # review has no Film_ID, and no foreign key leads from film to it
     "SELECT T2.Stars FROM film AS T1 JOIN review AS T2 ON T1.Film_ID = T2.Film_ID",
     "SELECT a.x FROM (SELECT 1 AS x) AS a",  # a subquery in FROM: not the schema's
     "SELECT 1; SELECT 2",
     "SELEC nonsense ((("],
)
def test_nothing_to_mend(films: Database, sql: str) -> None:
    assert mend_joins(sql, films.schema()) is None
