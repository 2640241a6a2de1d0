"""The SQL read out in plain words (model/llm/sql/explain.py): hand-checked readings on Chinook,
and every gold SQL of the Spider training set and of the Chinook eval read without a failure,
naming each table it reads and each aggregate it computes."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from sqlglot import exp

from model.llm.sql.explain import NOT_PARSED, NOT_READ, explain
from model.llm.sql.parsing import parse
from model.samples import CHINOOK
from model.sqlite.db import Database
from model.sqlite.schema import Schema, read_schema

ROOT = Path(__file__).resolve().parents[4]
# shared/ sits beside the checkout, here and in CI (which gets a copy of it).
SHARED = ROOT.parent / "shared" / "data"
SPIDER = SHARED / "train" / "spider_train.jsonl"
SPIDER_DBS = SHARED / "spider_train_databases"
CHINOOK_EVAL = ROOT / "finetune" / "data" / "chinook_eval.jsonl"
# What each aggregate is read as.
AGGREGATE_WORDS: dict[type[exp.Expression], str] = {
    exp.Count: "how many", exp.Sum: "the sum of", exp.Avg: "the average of",
    exp.Min: "the smallest", exp.Max: "the largest", exp.GroupConcat: "the list of",
}


@pytest.fixture(scope="module")
def schema() -> Schema:
    db = Database.open(CHINOOK)
    try:
        return db.schema()
    finally:
        db.close()


GOLDEN = [
    ("SELECT count(*) FROM customers WHERE Country = 'Brazil'",
     "Shows how many rows from customers where customers.Country is 'Brazil'."),
    ('SELECT albums.Title FROM albums JOIN artists ON albums.ArtistId = artists.ArtistId '
     "WHERE artists.Name = 'AC/DC'",
     'Shows albums.Title from albums joined with artists on albums.ArtistId = '
     "artists.ArtistId where artists.Name is 'AC/DC'."),
    ('SELECT T1.Title FROM albums AS T1 JOIN tracks AS T2 ON T1.AlbumId = T2.AlbumId GROUP '
     'BY T1.AlbumId ORDER BY SUM(T2.UnitPrice) DESC LIMIT 10',
     'Shows albums.Title for each album (albums.AlbumId) from albums joined with tracks on '
     'albums.AlbumId = tracks.AlbumId, sorted by the sum of tracks.UnitPrice (highest '
     'first), the first 10 rows.'),
    ('SELECT BillingCountry, sum(Total) AS revenue FROM invoices GROUP BY BillingCountry '
     'HAVING count(*) > 5 ORDER BY revenue DESC',
     'Shows invoices.BillingCountry, the sum of invoices.Total (as revenue) for each '
     'invoices.BillingCountry from invoices, keeping the groups where how many rows is more '
     'than 5, sorted by the sum of invoices.Total (highest first).'),
    ('SELECT e.FirstName, m.FirstName FROM employees AS e JOIN employees AS m ON e.ReportsTo '
     '= m.EmployeeId',
     'Shows e.FirstName, m.FirstName from employees (as e) joined with employees (as m) on '
     'e.ReportsTo = m.EmployeeId.'),
    ('SELECT Name FROM tracks WHERE Milliseconds > (SELECT avg(Milliseconds) FROM tracks)',
     'Shows tracks.Name from tracks where tracks.Milliseconds is more than (the average of '
     'tracks.Milliseconds from tracks).'),
    ('SELECT Name FROM artists WHERE ArtistId NOT IN (SELECT ArtistId FROM albums)',
     'Shows artists.Name from artists where artists.ArtistId is not among (albums.ArtistId '
     'from albums).'),
    ('SELECT Title FROM albums AS a WHERE EXISTS (SELECT 1 FROM tracks AS t WHERE t.AlbumId '
     '= a.AlbumId AND t.Composer IS NULL)',
     'Shows albums.Title from albums where there are rows (from tracks where tracks.AlbumId '
     '= albums.AlbumId and tracks.Composer is NULL).'),
    ('SELECT Name FROM artists EXCEPT SELECT artists.Name FROM artists JOIN albums ON '
     'albums.ArtistId = artists.ArtistId',
     'Shows the rows of (artists.Name from artists) that are not in (artists.Name from '
     'artists joined with albums on albums.ArtistId = artists.ArtistId).'),
    ('SELECT FirstName FROM customers UNION SELECT FirstName FROM employees ORDER BY 1 LIMIT '
     '5',
     'Shows the rows of (customers.FirstName from customers) and of (employees.FirstName '
     'from employees), without duplicates, sorted by the 1st column (ascending), the first 5 '
     'rows.'),
    ('SELECT City FROM customers INTERSECT SELECT City FROM employees',
     'Shows the rows found both in (customers.City from customers) and in (employees.City '
     'from employees).'),
    ('SELECT Email FROM customers UNION ALL SELECT Email FROM employees',
     'Shows the rows of (customers.Email from customers) and of (employees.Email from '
     'employees), duplicates kept.'),
    ("SELECT Name, CASE WHEN Milliseconds > 300000 THEN 'long' ELSE 'short' END AS length "
     'FROM tracks',
     "Shows tracks.Name, (when tracks.Milliseconds is more than 300000: 'long'; otherwise "
     "'short') (as length) from tracks."),
    ('SELECT Name, rank() OVER (ORDER BY Milliseconds DESC) FROM tracks',
     'Shows tracks.Name, a window function (rank) from tracks …and a window function, not '
     'read out.'),
    ('SELECT DISTINCT Country FROM customers',
     'Shows the different values of customers.Country from customers.'),
    ('SELECT DISTINCT City, Country FROM customers ORDER BY Country, City DESC',
     'Shows the different combinations of customers.City, customers.Country from customers, '
     'sorted by customers.Country (A to Z), then by customers.City (Z to A).'),
    ('SELECT count(DISTINCT Composer) FROM tracks',
     'Shows how many different tracks.Composer from tracks.'),
    ('SELECT count(Fax) FROM customers',
     'Shows how many rows with a customers.Fax from customers.'),
    ('SELECT min(Milliseconds), max(Milliseconds) FROM tracks',
     'Shows the smallest tracks.Milliseconds, the largest tracks.Milliseconds from tracks.'),
    ("SELECT Name FROM tracks WHERE Name LIKE '%love%' AND UnitPrice BETWEEN 0.5 AND 1",
     "Shows tracks.Name from tracks where tracks.Name matches '%love%' and tracks.UnitPrice "
     'is between 0.5 and 1.'),
    ('SELECT Name FROM genres WHERE GenreId IN (1, 2, 3)',
     'Shows genres.Name from genres where genres.GenreId is one of 1, 2, 3.'),
    ('SELECT FirstName FROM customers WHERE Company IS NOT NULL OR State = "SP" AND Fax IS '
     'NULL',
     'Shows customers.FirstName from customers where customers.Company is not NULL or '
     "(customers.State is 'SP' and customers.Fax is NULL)."),
    ('SELECT InvoiceDate, Total FROM invoices ORDER BY InvoiceDate DESC LIMIT 1',
     'Shows invoices.InvoiceDate, invoices.Total from invoices, sorted by '
     'invoices.InvoiceDate (latest first), the first row only.'),
    ('SELECT Title FROM albums ORDER BY Title LIMIT 10 OFFSET 20',
     'Shows albums.Title from albums, sorted by albums.Title (A to Z), skipping the first '
     '20, the first 10 rows.'),
    ('SELECT a.Title, t.n FROM albums AS a JOIN (SELECT AlbumId, count(*) AS n FROM tracks '
     'GROUP BY AlbumId) AS t ON t.AlbumId = a.AlbumId',
     'Shows albums.Title, t.n from albums joined with (tracks.AlbumId, how many rows (as n) '
     'for each tracks.AlbumId from tracks) (as t) on t.AlbumId = albums.AlbumId.'),
    ('WITH long AS (SELECT * FROM tracks WHERE Milliseconds > 600000) SELECT count(*) FROM '
     'long',
     'With long being (every column from tracks where tracks.Milliseconds is more than '
     '600000), shows how many rows from long.'),
    ('SELECT customers.FirstName, invoices.Total FROM customers LEFT JOIN invoices ON '
     'invoices.CustomerId = customers.CustomerId',
     'Shows customers.FirstName, invoices.Total from customers joined with invoices on '
     'invoices.CustomerId = customers.CustomerId (rows without a match kept).'),
    ('SELECT * FROM albums, artists WHERE albums.ArtistId = artists.ArtistId',
     'Shows every column from albums paired with every row of artists where albums.ArtistId '
     '= artists.ArtistId.'),
    ('SELECT g.Name, count(*) FROM tracks t JOIN genres g USING (GenreId) GROUP BY g.Name',
     'Shows genres.Name, how many rows for each genres.Name from tracks joined with genres '
     'on the same GenreId.'),
    ('SELECT round(avg(UnitPrice), 2), upper(Name) FROM tracks',
     'Shows the average of tracks.UnitPrice rounded to 2 places, tracks.Name in upper case '
     'from tracks.'),
    ("SELECT FirstName || ' ' || LastName FROM employees",
     "Shows employees.FirstName followed by ' ' followed by employees.LastName from "
     'employees.'),
    ("SELECT strftime('%Y', InvoiceDate), sum(Total) FROM invoices GROUP BY 1",
     'Shows the year of invoices.InvoiceDate, the sum of invoices.Total for each value of '
     'the year of invoices.InvoiceDate from invoices.'),
    ('UPDATE tracks SET UnitPrice = 0.99 WHERE GenreId = 1',
     'Changes tracks: sets tracks.UnitPrice to 0.99 where tracks.GenreId is 1.'),
    ("DELETE FROM playlists WHERE Name = 'Music'",
     "Deletes the rows of playlists where playlists.Name is 'Music'."),
    ("INSERT INTO genres (Name) VALUES ('Polka'), ('Ska')",
     'Adds 2 rows to genres.'),
    ('SELECT nosuchcolumn FROM nosuchtable',
     'Shows nosuchcolumn from nosuchtable.'),
]


@pytest.mark.parametrize(("sql", "reading"), GOLDEN)
def test_golden_readings(schema: Schema, sql: str, reading: str) -> None:
    assert explain(sql, schema) == reading


def test_the_issue_example_names_the_summed_column_and_the_grouping(schema: Schema) -> None:
    reading = explain("SELECT T1.Title FROM albums AS T1 JOIN tracks AS T2 ON T1.AlbumId = "
                      "T2.AlbumId GROUP BY T1.AlbumId ORDER BY SUM(T2.UnitPrice) DESC LIMIT 10",
                      schema)
    assert "the sum of tracks.UnitPrice" in reading and "for each album" in reading
    assert "T1" not in reading and "T2" not in reading  # aliases read as their tables


def test_names_are_spelled_as_the_schema_spells_them(schema: Schema) -> None:
    assert explain("select title from ALBUMS where albumid = 3", schema) == \
        "Shows albums.Title from albums where albums.AlbumId is 3."


def test_without_a_schema_a_lone_table_still_owns_its_columns() -> None:
    assert explain("SELECT Name FROM artists AS a WHERE a.ArtistId > 5") == \
        "Shows artists.Name from artists where artists.ArtistId is more than 5."


def test_a_double_quoted_word_naming_no_column_is_read_as_text(schema: Schema) -> None:
    # SQLite takes "Prague" as a string when no column has that name; City stays a column.
    assert explain('SELECT "City" FROM customers WHERE City = "Prague"', schema) == \
        "Shows customers.City from customers where customers.City is 'Prague'."


def test_several_statements_are_read_a_line_each(schema: Schema) -> None:
    assert explain("SELECT 1; DELETE FROM genres", schema) == \
        "Shows 1.\nDeletes every row of genres."


@pytest.mark.parametrize("sql", [
    "", "   ", "SELECT", "SELECT * FROM", ";;", "SELECT (((((1)))))",
    "PRAGMA table_info(tracks)", "CREATE TABLE t (a INT)", "DROP TABLE tracks", "BEGIN",
    "SELECT json_extract(Name, '$.a') FROM tracks", "SELECT Name COLLATE NOCASE FROM tracks",
    "SELECT * FROM tracks t1 JOIN tracks t1 ON 1", "SELECT x.* FROM (SELECT 1) x",
    "VALUES (1, 2)", "SELECT * FROM a JOIN b JOIN c JOIN d JOIN e JOIN f JOIN g JOIN h JOIN i "
    "JOIN j JOIN k", "SELECT '\x1b[31m' || Name FROM tracks",
])
def test_it_never_raises(schema: Schema, sql: str) -> None:
    assert isinstance(explain(sql, schema), str)
    assert isinstance(explain(sql), str)


def test_what_does_not_parse_says_so(schema: Schema) -> None:
    assert explain("SELEC broken (", schema) == NOT_PARSED
    assert explain("", schema) == ""


def _missing(sql: str, reading: str, schema: Schema) -> list[str]:
    """The tables and aggregates of `sql` its reading does not name."""
    tree = parse(sql)[0]
    assert tree is not None
    ctes = {cte.alias.lower() for cte in tree.find_all(exp.CTE)}
    missing = []
    for table in tree.find_all(exp.Table):
        known = schema.table(table.name)
        name = known.name if known is not None else table.name
        if table.name.lower() not in ctes and name not in reading:
            missing.append(name)
    for aggregate in tree.find_all(exp.AggFunc):
        words = AGGREGATE_WORDS.get(type(aggregate), type(aggregate).__name__)
        if words not in reading:
            missing.append(words)
    return missing


def _spider_schema(row: dict[str, str]) -> Schema:
    path = SPIDER_DBS / row["db_id"] / f"{row['db_id']}.sqlite"
    if path.exists():
        db = Database.open(path)
        try:
            return db.schema()
        finally:
            db.close()
    # Two databases are too big to ship: their schema is the row's own DDL.
    conn = sqlite3.connect(":memory:")
    conn.executescript(row["context"])
    return read_schema(conn)


def test_every_gold_sql_is_read_naming_its_tables_and_aggregates(schema: Schema) -> None:
    if not SPIDER.exists() and not os.environ.get("CI"):
        pytest.skip("Spider data not on this machine (CI has it)")
    rows = [json.loads(line) for line in SPIDER.read_text().splitlines()]
    assert len(rows) == 7000
    chinook = [json.loads(line) for line in CHINOOK_EVAL.read_text().splitlines()]
    schemas: dict[str, Schema] = {}
    failures = []
    for row in rows + [{"db_id": "", **r} for r in chinook]:
        if row["db_id"]:
            if row["db_id"] not in schemas:
                schemas[row["db_id"]] = _spider_schema(row)
            row_schema = schemas[row["db_id"]]
        else:
            row_schema = schema
        reading = explain(row["sql"], row_schema)
        if reading in (NOT_READ, NOT_PARSED) or "not read out" in reading:
            failures.append((row["sql"], reading))
        elif missing := _missing(row["sql"], reading, row_schema):
            failures.append((row["sql"], f"{reading} (missing {missing})"))
    assert not failures, failures[:5]
