"""Extracting SQL from model output, pretty-printing it, and checking it on real SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.llm.prompting.prompt import PROMPT
from model.llm.sql.check import check
from model.llm.sql.extract import extract_sql
from model.llm.sql.names import apply_suggestions
from model.llm.sql.parsing import pretty, unaliased
from model.llm.sql.problem import Problem
from model.sqlite.db import Database


@pytest.fixture
def db(chinook: Path) -> Iterator[Database]:
    database = Database.open(chinook)
    yield database
    database.close()


def problems(db: Database, sql: str) -> list[Problem]:
    return check(sql, db.schema(), db.conn)


# ----------------------------------------------------------------------------- extract


@pytest.mark.parametrize(
    ("text", "sql"),
    [
        (" SELECT count(*) FROM albums <end_of_turn>", "SELECT count(*) FROM albums"),
        (
            "```sql\nSELECT Title\nFROM albums;\n```\nThis lists titles.",
            "SELECT Title\nFROM albums",
        ),
        ("Here you go:\n```\nSELECT 1\n```", "SELECT 1"),
        ("```sqlite\nSELECT Title FROM albums", "SELECT Title FROM albums"),  # fence cut off
        (
            "SELECT Title FROM albums WHERE Title = 'a;b'; SELECT 2",
            "SELECT Title FROM albums WHERE Title = 'a;b'",
        ),
        ("SELECT Title\nFROM albums\nThis returns every album title.", "SELECT Title\nFROM albums"),
        ("I select the titles: SELECT Title FROM albums", "SELECT Title FROM albums"),
        (" model SELECT Name FROM artists LIMIT 5", "SELECT Name FROM artists LIMIT 5"),
        ("select name from artists<eos>", "select name from artists"),
        ("I cannot answer that.", ""),
        ("", ""),
    ],
)
def test_extract(text: str, sql: str) -> None:
    assert extract_sql(text) == sql


def test_extract_after_a_repeated_prompt() -> None:
    echo = PROMPT.format(question="How many albums?", context="CREATE TABLE albums (a INT);")
    echo = echo.replace("<start_of_turn>", "")
    # The base model repeats its prompt: the CREATE TABLE in it is not an answer ...
    cut = echo.split("Generated SQL Query:")[0]
    assert extract_sql(cut) == ""
    # ... but SQL after the repeated "Generated SQL Query:" is.
    assert extract_sql(echo.split(" model")[0] + " SELECT count(*) FROM albums") == (
        "SELECT count(*) FROM albums"
    )


# ------------------------------------------------------------------------------ pretty


def test_pretty() -> None:
    assert pretty("select Title from albums where AlbumId = 1") == (
        "SELECT\n  Title\nFROM albums\nWHERE\n  AlbumId = 1"
    )
    assert pretty("SELECT FROM WHERE nonsense (") == "SELECT FROM WHERE nonsense ("
    assert pretty("") == ""


@pytest.mark.parametrize(("sql", "named"), [
    ("SELECT T1.Title FROM albums AS T1 JOIN artists AS T2 ON T1.ArtistId = T2.ArtistId "
     "WHERE T2.Name = 'AC/DC'",
     "SELECT albums.Title FROM albums JOIN artists ON albums.ArtistId = artists.ArtistId "
     "WHERE artists.Name = 'AC/DC'"),
    # a table joined to itself keeps its aliases; a subquery's own alias is its own
    ("SELECT T1.FirstName FROM employees AS T1 JOIN employees AS T2 ON T1.ReportsTo = "
     "T2.EmployeeId", "SELECT T1.FirstName FROM employees AS T1 JOIN employees AS T2 ON "
     "T1.ReportsTo = T2.EmployeeId"),
    ("SELECT T1.Name FROM artists AS T1 WHERE T1.ArtistId IN (SELECT T1.ArtistId FROM albums "
     "AS T1)", "SELECT artists.Name FROM artists WHERE artists.ArtistId IN (SELECT "
     "albums.ArtistId FROM albums)"),
    ("SELECT\n  COUNT(*)\nFROM tracks", "SELECT COUNT(*) FROM tracks"),
    ("SELECT (", "SELECT ("),
])
def test_unaliased_names_each_table_used_once(sql: str, named: str) -> None:
    assert unaliased(sql) == named


def test_pretty_keeps_meaning(db: Database) -> None:
    sql = (
        "SELECT g.Name, count(*) AS n, ifnull(sum(t.Milliseconds), 0) / 60000 AS minutes "
        "FROM tracks t JOIN genres g ON g.GenreId = t.GenreId WHERE t.Name LIKE '%love%' "
        "GROUP BY g.Name HAVING n > 1 ORDER BY n DESC, 1 LIMIT 5"
    )
    assert db.conn.execute(pretty(sql)).fetchall() == db.conn.execute(sql).fetchall()


# ------------------------------------------------------------------------------- check


def test_clean_sql_has_no_problems(db: Database) -> None:
    for sql in [
        "SELECT c.FirstName, sum(i.Total) AS total FROM customers c "
        "JOIN invoices i ON i.CustomerId = c.CustomerId GROUP BY c.CustomerId ORDER BY total DESC",
        "SELECT Name FROM tracks WHERE Milliseconds > (SELECT avg(Milliseconds) FROM tracks)",
        "SELECT a.Title FROM albums a WHERE EXISTS "
        "(SELECT 1 FROM tracks t WHERE t.AlbumId = a.AlbumId AND Name = Title)",
        "SELECT Name FROM tracks UNION SELECT Title FROM albums ORDER BY 1",
        "SELECT rowid, main.albums.Title FROM main.albums",
        "SELECT a.Title, ar.Name FROM albums a JOIN artists ar USING (ArtistId)",
        "SELECT name FROM sqlite_master WHERE type = 'table'",
    ]:
        assert problems(db, sql) == [], sql


def test_unknown_column_is_flagged_with_a_suggestion(db: Database) -> None:
    sql = "SELECT customer_id FROM customers"
    [problem] = problems(db, sql)
    assert problem.message == "unknown column customer_id (did you mean CustomerId?)"
    assert problem.fatal and problem.kind == "column"
    assert sql[problem.start : problem.end] == "customer_id"


def test_suggestions_are_applied_where_each_name_was_written(db: Database) -> None:
    sql = ("SELECT T1.employee_id, count(*) FROM employees AS T1 JOIN customer AS T2 "
           "ON T1.employee_id = T2.SupportRepId GROUP BY T1.employee_id")
    fixed, changes = apply_suggestions(sql, problems(db, sql))
    assert fixed == ("SELECT T1.EmployeeId, count(*) FROM employees AS T1 JOIN customers AS T2 "
                     "ON T1.EmployeeId = T2.SupportRepId GROUP BY T1.EmployeeId")
    assert changes == ["employee_id → EmployeeId", "customer → customers"]
    assert problems(db, fixed) == []
    unfixable = "SELECT c.Foo FROM customers AS c"
    assert apply_suggestions(unfixable, problems(db, unfixable)) == (unfixable, [])


def test_a_degenerate_run_of_joins_is_left_to_sqlite(db: Database) -> None:
    """sqlglot would take hours over 40 JOINs without ON (exponential backtracking)."""
    joins = " ".join(f"JOIN artists AS T{i}" for i in range(2, 42))
    answer = f" SELECT T1.Name FROM artists AS T1 {joins} <end_of_turn>"
    sql = extract_sql(answer)
    assert sql.startswith("SELECT T1.Name") and sql.endswith("T41")
    assert pretty(sql) == sql
    [problem] = check(sql, db.schema())
    assert problem.message == "syntax error: more than 8 JOINs in a row without ON"
    assert check(sql, db.schema(), db.conn) == []  # SQLite prepares it: a (huge) cross join


def test_unknown_qualified_column_and_alias(db: Database) -> None:
    [problem] = problems(db, "SELECT c.Foo FROM customers AS c")
    assert problem.message == "unknown column c.Foo"
    [problem] = problems(db, "SELECT x.Name FROM customers c")
    assert problem.message == "unknown table or alias x (in x.Name)"


def test_unknown_table_is_flagged(db: Database) -> None:
    sql = "SELECT * FROM foo"
    [problem] = problems(db, sql)
    assert problem.message == "unknown table foo" and problem.fatal
    assert sql[problem.start : problem.end] == "foo"
    [problem] = problems(db, "SELECT * FROM album")
    assert problem.message == "unknown table album (did you mean albums?)"


def test_cte_and_select_aliases_are_not_unknown(db: Database) -> None:
    sql = (
        "WITH per_customer AS (SELECT CustomerId AS cid, count(*) AS n FROM invoices GROUP BY 1) "
        "SELECT per_customer.cid, n AS invoices FROM per_customer WHERE n > 5 ORDER BY invoices"
    )
    assert problems(db, sql) == []
    assert problems(db, "SELECT count(*) AS n FROM albums GROUP BY ArtistId HAVING n > 1") == []
    [problem] = problems(db, "WITH t AS (SELECT 1 AS a) SELECT b FROM t")
    assert problem.message == "unknown column b"


def test_double_quoted_text_is_a_warning(db: Database) -> None:
    # SQLite reads "2010" as a string only when no such column exists: legal but a mistake.
    problem, value = problems(db, 'SELECT * FROM invoices WHERE BillingAddress = "2010"')
    assert problem.message.startswith('unknown column "2010"') and "'2010'" in problem.message
    assert not problem.fatal
    assert value.message == "no row of invoices has BillingAddress = '2010'" and not value.fatal


def test_parse_error_is_caught(db: Database) -> None:
    sql = "SELECT FROM WHERE x"
    [problem] = problems(db, sql)
    assert problem.fatal and problem.kind == "sqlite" and "syntax error" in problem.message
    assert problem.start is not None
    [offline] = check(sql, db.schema(), None)  # without SQLite, sqlglot's own words
    assert offline.kind == "parse" and "syntax error" in offline.message


def test_explain_error_is_caught(db: Database) -> None:
    # Names are right, but SQLite rejects it: only EXPLAIN knows.
    [problem] = problems(db, "SELECT Title FROM albums GROUP BY nosuchfunction(Title)")
    assert problem.kind == "sqlite" and "no such function" in problem.message
    [problem] = problems(db, "SELECT Title FROM albums LIMIT 3 OFFSET")
    assert problem.fatal


def test_writes_are_refused_never_run(db: Database, chinook: Path) -> None:
    [problem] = problems(db, "DELETE FROM albums")
    assert problem.fatal and "read-only" in problem.message
    with sqlite3.connect(chinook) as conn:
        assert conn.execute("SELECT count(*) FROM albums").fetchone()[0] == 347


def test_every_statement_is_checked(db: Database) -> None:
    assert problems(db, "SELECT Title FROM albums; SELECT 1") == []
    [problem] = problems(db, "SELECT Title FROM albums; SELECT nope FROM albums")
    assert problem.message == "unknown column nope"


def test_empty_sql() -> None:
    from model.sqlite.schema import Schema

    [problem] = check("", Schema([]), None)
    assert problem.fatal and problem.message == "no SQL in the answer"


# ----------------------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("sql", "column"),
    [
        ("SELECT count(*) FROM tracks WHERE GenreId = 'Rock'", "GenreId"),
        ('SELECT count(*) FROM tracks WHERE GenreId = "Rock"', "GenreId"),  # as SQLite reads it
        ("SELECT t.Name FROM tracks AS t WHERE 'Rock' <> t.GenreId", "t.GenreId"),
        ("SELECT Name FROM tracks WHERE UnitPrice IN ('cheap', 'dear')", "UnitPrice"),
        ("SELECT Title FROM albums WHERE AlbumId IN "
         "(SELECT AlbumId FROM tracks WHERE MediaTypeId = 'MP3')", "MediaTypeId"),
    ],
)
def test_numbers_compared_with_text_are_flagged(db: Database, sql: str, column: str) -> None:
    found = [p for p in problems(db, sql) if p.kind == "type"]
    assert len(found) == 1 and found[0].fatal and found[0].name == column
    assert found[0].message.startswith(f"{column.split('.')[-1]} holds numbers")
    assert sql[found[0].start : found[0].end] == column.split(".")[-1]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT Name FROM tracks WHERE GenreId = '1'",  # SQLite converts '1' to 1
        "SELECT Name FROM tracks WHERE UnitPrice = '0.99'",
        "SELECT Name FROM tracks WHERE Name = 'Rock'",  # a text column
        "SELECT Total FROM invoices WHERE InvoiceDate = '2009-01-01'",  # DATETIME: NUMERIC
        "SELECT Name FROM tracks WHERE GenreId = AlbumId",
        "SELECT Name FROM tracks WHERE GenreId > 'Rock'",  # an order, not an equality
    ],
)
def test_comparisons_that_can_be_true_are_not_flagged(db: Database, sql: str) -> None:
    assert not [p for p in problems(db, sql) if p.kind == "type"]


def test_a_numeric_column_that_holds_text_is_not_flagged(tmp_path: Path) -> None:
    path = tmp_path / "mixed.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE room (id INTEGER, number INTEGER, floor INTEGER);"
                       "INSERT INTO room VALUES (1, 101, NULL), (2, 'B2', NULL);")
    conn.commit()
    conn.close()
    mixed = Database.open(path)
    try:
        assert problems(mixed, "SELECT id FROM room WHERE number = 'B2'") == []
        # no numbers yet: not a type problem, only a value no row holds
        assert [p.kind for p in problems(mixed, "SELECT id FROM room WHERE floor = 'B'")] == [
            "value"]
        assert [p.kind for p in problems(mixed, "SELECT number FROM room WHERE id = 'B2'")] == [
            "type"]
    finally:
        mixed.close()


def test_text_no_row_holds_is_a_warning(db: Database) -> None:
    [found] = problems(db, "SELECT count(*) FROM tracks WHERE Name = 'AC/DC'")
    assert (found.kind, found.fatal, found.name) == ("value", False, "Name")
    assert found.message == "no row of tracks has Name = 'AC/DC'"
    assert problems(db, "SELECT count(*) FROM tracks WHERE Composer = 'AC/DC'") == []
    assert problems(db, "SELECT count(*) FROM tracks WHERE Name <> 'AC/DC'") == []  # true
    assert problems(db, "SELECT count(*) FROM tracks WHERE Name LIKE 'AC/DC'") == []


def test_a_subquerys_column_is_probed_in_its_own_table_only(db: Database) -> None:
    inner = "SELECT count(*) FROM tracks WHERE GenreId IN (SELECT GenreId FROM genres WHERE {})"
    assert problems(db, inner.format("Name = 'Rock'")) == []  # tracks has a Name too
    assert [p.message for p in problems(db, inner.format("Name = 'Polka'"))] == [
        "no row of genres has Name = 'Polka'"]


def test_values_are_not_searched_in_big_tables(db: Database, monkeypatch) -> None:
    import model.llm.sql.probes

    monkeypatch.setattr(model.llm.sql.probes, "VALUE_PROBE_ROWS", 3502)  # tracks has 3503 rows
    assert problems(db, "SELECT count(*) FROM tracks WHERE Name = 'AC/DC'") == []
    monkeypatch.setattr(model.llm.sql.probes, "VALUE_PROBE_ROWS", 3503)
    assert [p.kind for p in problems(db, "SELECT count(*) FROM tracks WHERE Name = 'AC/DC'")] == [
        "value"]


@pytest.mark.parametrize(("sql", "column"), [
    ("SELECT genres.Name, count(*) FROM genres JOIN tracks ON genres.GenreId = tracks.GenreId",
     "genres.Name"),
    ("SELECT count(*), Name FROM (SELECT Name, sum(Milliseconds) FROM tracks GROUP BY Name)",
     "Name"),
    ("SELECT Name, max(Milliseconds), min(Milliseconds) FROM tracks", "Name"),
    ("SELECT Milliseconds / 60000 + sum(Bytes) FROM tracks", "Milliseconds"),
])
def test_a_column_beside_an_aggregate_without_group_by_is_a_warning(
        db: Database, sql: str, column: str) -> None:
    [found] = problems(db, sql)
    assert (found.kind, found.fatal, found.name) == ("grouping", False, column)
    assert found.message.startswith(f"{column} is neither grouped nor aggregated beside ")
    assert found.message.endswith(": SQLite takes it from an arbitrary row")
    assert sql[found.start:found.end] == column.rsplit(".", 1)[-1]


@pytest.mark.parametrize("sql", [
    "SELECT genres.Name, count(*) FROM genres JOIN tracks ON genres.GenreId = tracks.GenreId "
    "GROUP BY genres.GenreId",
    "SELECT Name, max(Milliseconds) FROM tracks",  # SQLite's rule: the longest track's name
    "SELECT Name, (SELECT count(*) FROM genres) FROM tracks",  # the aggregate is the subquery's
    "SELECT Name, count(*) OVER () FROM tracks",  # a window: every row stays
    "SELECT sum(Bytes) / count(*), 'total' FROM tracks",
    "SELECT Name FROM tracks WHERE Milliseconds = (SELECT max(Milliseconds) FROM tracks)",
])
def test_grouped_or_aggregated_columns_are_not_flagged(db: Database, sql: str) -> None:
    assert problems(db, sql) == []
