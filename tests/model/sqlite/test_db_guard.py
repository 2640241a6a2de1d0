"""The gate: VACUUM, transaction control, forbidden functions, read PRAGMAs, bounded checks."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from model.sqlite.db import Database, DatabaseError, WriteRefused

READ_ONLY = "is open read-only"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_vacuum_counts_as_a_change_in_a_write_session(chinook: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    db = Database.open(chinook, write=True)
    assert db.changes_data("VACUUM")
    assert db.changes_data(f"VACUUM INTO '{target}'")
    assert db.changes_data("vacuum main")
    assert not db.changes_data("SELECT 'VACUUM'")
    assert not target.exists()  # asking ran nothing


@pytest.mark.parametrize("sql", ["VACUUM", "VACUUM INTO '{target}'", "/* tidy */ vacuum main"])
def test_read_only_refuses_vacuum(chinook: Path, tmp_path: Path, sql: str) -> None:
    target = tmp_path / "copy.db"
    before = digest(chinook)
    db = Database.open(chinook)
    with pytest.raises(WriteRefused, match=f"refused: chinook.db {READ_ONLY}"):
        db.execute(sql.format(target=target))
    assert not target.exists() and digest(chinook) == before


@pytest.mark.parametrize("sql", [
    "BEGIN", "BEGIN IMMEDIATE", "BEGIN EXCLUSIVE", "BEGIN DEFERRED TRANSACTION", "COMMIT",
    "END", "ROLLBACK", "SAVEPOINT s", "RELEASE s", "ROLLBACK TO s",
])
def test_read_only_refuses_transaction_control(chinook: Path, sql: str) -> None:
    db = Database.open(chinook)
    with pytest.raises(WriteRefused, match=f"refused: chinook.db {READ_ONLY}"):
        db.execute(sql)
    assert not db.conn.in_transaction


@pytest.mark.parametrize("write", [False, True])
def test_fts3_tokenizer_is_never_run(chinook: Path, write: bool) -> None:
    db = Database.open(chinook, write=write)
    with pytest.raises(WriteRefused, match="fts3_tokenizer is never run"):
        db.execute("SELECT fts3_tokenizer('simple')")


def test_journal_mode_reads_but_does_not_set(chinook: Path) -> None:
    db = Database.open(chinook)
    assert db.fetch(db.execute("PRAGMA journal_mode")) == [("delete",)]
    assert db.fetch(db.execute("PRAGMA main.journal_mode")) == [("delete",)]
    with pytest.raises(WriteRefused, match=READ_ONLY):
        db.execute("PRAGMA journal_mode = wal")


INFINITE = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM c")


@pytest.mark.parametrize("write", [False, True])
def test_run_bounded_cuts_off_a_runaway_check(chinook: Path, write: bool) -> None:
    db = Database.open(chinook, write=write).reader()
    started = time.perf_counter()
    with pytest.raises(DatabaseError, match=r"check run cut off after 0.2 s"):
        db.run_bounded(INFINITE, max_rows=10, timeout_s=0.2)
    assert time.perf_counter() - started < 5  # cut off, not run to the end (that never comes)
    assert db.run_bounded("SELECT 1", 10, 0.2) == (["1"], [(1,)])  # the next check runs


@pytest.mark.parametrize("write", [False, True])
def test_run_bounded_caps_the_rows(chinook: Path, write: bool) -> None:
    db = Database.open(chinook, write=write)
    columns, rows = db.run_bounded("SELECT TrackId, Name FROM tracks ORDER BY TrackId", 7, 5.0)
    assert columns == ["TrackId", "Name"] and [r[0] for r in rows] == list(range(1, 8))
    assert db.run_bounded("SELECT 1 WHERE 0", 7, 5.0) == (["1"], [])


@pytest.mark.parametrize("sql", [
    "DELETE FROM invoice_items", "VACUUM INTO '{target}'", "PRAGMA user_version = 9",
    "INSERT INTO genres (Name) VALUES ('x') RETURNING GenreId",
])
def test_run_bounded_refuses_changes_even_on_a_write_connection(
    chinook: Path, tmp_path: Path, sql: str
) -> None:
    target = tmp_path / "copy.db"
    before = digest(chinook)
    db = Database.open(chinook, write=True)
    with pytest.raises(WriteRefused, match="refused: a check runs only statements that read"):
        db.run_bounded(sql.format(target=target), 10, 5.0)
    db.close()
    assert digest(chinook) == before and not target.exists()


def test_run_bounded_leaves_no_statement_open(chinook: Path) -> None:
    db = Database.open(chinook)
    db.run_bounded("SELECT * FROM tracks", 3, 5.0)
    # An open cursor would hold a read transaction; a write on the same file would wait.
    writer = Database.open(chinook, write=True, timeout=0.1)
    writer.execute("INSERT INTO genres (Name) VALUES ('Polka')")
    assert not db.conn.in_transaction


# 90 parentheses deep: the statement compiles, its EXPLAIN overflows SQLite's parser stack.
DEEP_DELETE = "DELETE FROM genres WHERE " + "(" * 90 + "GenreId = 25" + ")" * 90


def test_a_statement_explain_cannot_compile_counts_as_a_change(chinook: Path) -> None:
    """Fail closed: when SQLite cannot say, the write session asks and the read-only one
    refuses; a plain mistake is still the run's own error."""
    before = digest(chinook)
    db = Database.open(chinook, write=True)
    assert db.changes_data(DEEP_DELETE)
    assert not db.changes_data("SELECT nope FROM genres")  # the run says "no such column"
    assert not db.changes_data("EXPLAIN SELECT * FROM genres")
    reader = Database.open(chinook)
    with pytest.raises(WriteRefused, match=READ_ONLY):
        reader.execute(DEEP_DELETE)
    with pytest.raises(DatabaseError, match="no such column: nope"):
        reader.execute("SELECT nope FROM genres")
    assert reader.fetch(reader.execute("EXPLAIN SELECT 1"))
    with pytest.raises(WriteRefused):
        db.run_bounded(DEEP_DELETE, max_rows=5, timeout_s=1.0)
    db.close()
    reader.close()
    assert digest(chinook) == before  # asking ran nothing


def test_pragma_optimize_as_a_table_counts_as_a_change(chinook: Path) -> None:
    before = digest(chinook)
    db = Database.open(chinook, write=True)
    db.fetch(db.execute("SELECT * FROM tracks WHERE AlbumId = 3"))  # gives optimize work
    for sql in ("SELECT * FROM pragma_optimize", "SELECT count(*) FROM pragma_optimize(0x10002)"):
        assert db.changes_data(sql)
    assert not db.changes_data("SELECT * FROM pragma_table_info('tracks')")
    reader = Database.open(chinook)
    with pytest.raises(WriteRefused, match=READ_ONLY):
        reader.execute("SELECT * FROM pragma_optimize")
    db.close()
    reader.close()
    assert digest(chinook) == before


def test_sqlite_master_is_asked_about_once_writable_schema_is_on(chinook: Path) -> None:
    db = Database.open(chinook, write=True)
    update = "UPDATE sqlite_master SET sql = sql WHERE name = 'genres'"
    db.execute("PRAGMA writable_schema = ON")
    assert db.changes_data(update)
    db.execute("PRAGMA writable_schema = OFF")
    assert db.fetch(db.execute("SELECT count(*) FROM pragma_table_info('genres')")) == [(2,)]
