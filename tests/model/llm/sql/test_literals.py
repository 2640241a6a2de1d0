"""Text compared to a key, read where the data holds it (model.llm.sql.literals), on real SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from model.llm.sql.check import check
from model.llm.sql.literals import mend_literals
from model.sqlite.db import Database


@pytest.fixture
def db(chinook: Path) -> Iterator[Database]:
    database = Database.open(chinook)
    yield database
    database.close()


def mended(db: Database, sql: str) -> tuple[str, list[str]] | None:
    return mend_literals(sql, db.schema(), db.conn)


def rows(db: Database, sql: str) -> list[tuple]:
    assert [p for p in check(sql, db.schema(), db.conn) if p.fatal] == []
    return db.conn.execute(sql).fetchall()


def test_a_foreign_key_compared_with_a_name_reads_the_table_it_refers_to(db: Database) -> None:
    sql, changes = mended(db, "SELECT count(*) FROM tracks AS t WHERE t.GenreId = 'Rock'")
    assert sql == ("SELECT COUNT(*) FROM tracks AS t WHERE t.GenreId IN "
                   "(SELECT genres.GenreId FROM genres WHERE genres.Name = 'Rock')")
    assert changes == ["t.GenreId = 'Rock' → genres.Name"]
    assert rows(db, sql) == [(1297,)]


def test_a_list_of_names_is_read_as_one(db: Database) -> None:
    sql, changes = mended(db, "SELECT count(*) FROM tracks WHERE GenreId IN ('Rock', 'Jazz')")
    assert "genres.Name IN ('Rock', 'Jazz')" in sql
    assert rows(db, sql) == [(1297 + 130,)]


def test_a_tables_own_key_compared_with_a_name_reads_the_column_holding_it(
        db: Database) -> None:
    sql, changes = mended(db, "SELECT ArtistId FROM artists WHERE ArtistId = \"AC/DC\"")
    assert sql == "SELECT ArtistId FROM artists WHERE Name = 'AC/DC'"
    assert changes == ['ArtistId = "AC/DC" → artists.Name']
    assert rows(db, sql) == [(1,)]


def test_the_table_a_key_refers_to_is_looked_at_first(db: Database) -> None:
    # 'Let There Be Rock' is an album and one of its tracks: the album is meant
    sql, _ = mended(db, "SELECT Name FROM tracks WHERE AlbumId = 'Let There Be Rock'")
    assert "albums.Title = 'Let There Be Rock'" in sql
    assert len(rows(db, sql)) == 8


@pytest.mark.parametrize("sql", [
    "SELECT count(*) FROM tracks WHERE GenreId = 'Polka'",  # no row holds it
    "SELECT count(*) FROM tracks WHERE GenreId <> 'Rock'",  # true already
    "SELECT count(*) FROM tracks WHERE GenreId = 1",
    "SELECT count(*) FROM tracks WHERE Composer = 'AC/DC'",  # text column: nothing to mend
    "SELECT 1; SELECT count(*) FROM tracks WHERE GenreId = 'Rock'",
])
def test_what_cannot_be_read_elsewhere_is_left(db: Database, sql: str) -> None:
    assert mended(db, sql) is None


def test_big_tables_are_not_searched(db: Database, monkeypatch) -> None:
    import model.llm.sql.probes

    monkeypatch.setattr(model.llm.sql.probes, "VALUE_PROBE_ROWS", 24)  # genres has 25 rows
    assert mended(db, "SELECT count(*) FROM tracks WHERE GenreId = 'Rock'") is None
