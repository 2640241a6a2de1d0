"""Database: read-only guard, paging, interrupt, changes_data, on real SQLite files."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from model.samples import CHINOOK
from model.sqlite.db import Database, DatabaseError, WriteRefused


@pytest.fixture
def chinook(tmp_path: Path) -> Path:
    path = tmp_path / "chinook.db"
    shutil.copy(CHINOOK, path)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("sql", [
    "DELETE FROM albums",
    "UPDATE artists SET Name = 'x'",
    "INSERT INTO genres (Name) VALUES ('x')",
    "DROP TABLE albums",
    "CREATE TABLE t (x)",
    "ATTACH DATABASE ':memory:' AS other",
    "PRAGMA user_version = 5",
    "SELECT load_extension('x')",
])
def test_read_only_refuses_writes(chinook: Path, sql: str) -> None:
    before = digest(chinook)
    db = Database.open(chinook)
    with pytest.raises(WriteRefused, match="read-only"):
        db.execute(sql)
    db.close()
    assert digest(chinook) == before


def test_reads_and_read_pragmas_are_allowed(chinook: Path) -> None:
    db = Database.open(chinook)
    assert db.fetch(db.execute("SELECT count(*) FROM albums")) == [(347,)]
    assert db.fetch(db.execute("PRAGMA table_info(albums)"))[0][1] == "AlbumId"


def test_paging_never_reads_ahead_more_than_a_page(chinook: Path) -> None:
    db = Database.open(chinook)
    result = db.execute("SELECT TrackId FROM tracks ORDER BY TrackId")
    first = db.fetch(result, 1000)
    assert len(first) == 1000 and not result.exhausted
    rest = db.fetch(result, 5000)
    assert len(rest) == 3503 - 1000 and result.exhausted
    assert db.fetch(result) == []


def test_exact_multiple_of_page_is_exhausted_on_last_page(chinook: Path) -> None:
    db = Database.open(chinook)
    result = db.execute("SELECT AlbumId FROM albums LIMIT 10")
    assert len(db.fetch(result, 5)) == 5 and not result.exhausted
    assert len(db.fetch(result, 5)) == 5 and result.exhausted


def test_changes_data(chinook: Path) -> None:
    db = Database.open(chinook, write=True)
    assert db.changes_data("DELETE FROM albums WHERE AlbumId = 1")
    assert db.changes_data("PRAGMA user_version = 3")
    assert not db.changes_data("SELECT * FROM albums")
    assert not db.changes_data("PRAGMA table_info(albums)")
    assert db.fetch(db.execute("SELECT count(*) FROM albums")) == [(347,)]  # nothing ran


def test_write_session_changes_the_file(chinook: Path) -> None:
    db = Database.open(chinook, write=True)
    result = db.execute("UPDATE artists SET Name = 'x' WHERE ArtistId = 1")
    assert result.rows_changed == 1 and result.columns == []
    assert db.fetch(db.execute("SELECT Name FROM artists WHERE ArtistId = 1")) == [("x",)]


def test_errors_are_one_line(chinook: Path) -> None:
    db = Database.open(chinook)
    with pytest.raises(DatabaseError, match="no such table: nope"):
        db.execute("SELECT * FROM nope")
    with pytest.raises(DatabaseError, match="nothing to run"):
        db.execute("  ;  ")


def test_interrupt_stops_a_long_query(chinook: Path) -> None:
    db = Database.open(chinook)
    sql = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
           "WHERE x < 1000000000) SELECT count(*) FROM c")
    errors: list[str] = []

    def run() -> None:
        try:
            db.execute(sql)
        except DatabaseError as e:
            errors.append(str(e))

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.3)
    db.interrupt()
    # That the cancel happened, not how fast: a loaded machine stretches any bound. The latency
    # is measured in bench/tui.py (cancel_latency).
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert errors == ["query cancelled"]
    assert db.fetch(db.execute("SELECT 1")) == [(1,)]  # usable afterwards


def test_missing_file_is_never_created(tmp_path: Path) -> None:
    for write in (False, True):
        with pytest.raises(DatabaseError, match="no such file"):
            Database.open(tmp_path / "x.db", write=write)
    assert list(tmp_path.iterdir()) == []


def test_a_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    path = tmp_path / "pipe.db"
    os.mkfifo(path)  # opening it for reading would wait for a writer forever
    with pytest.raises(DatabaseError, match="pipe.db: is a FIFO"):
        Database.open(path)


def _damage(path: Path) -> None:
    """Garble the page that holds TrackId 3490 (not the first page the query below reads)."""
    conn = sqlite3.connect(path)
    (name,) = conn.execute("SELECT Name FROM tracks WHERE TrackId = 3490").fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    data = bytearray(path.read_bytes())
    start = data.index(name.encode()) // page_size * page_size
    data[start:start + page_size] = bytes(range(256)) * (page_size // 256)
    path.write_bytes(bytes(data))


def test_a_damaged_page_is_a_one_line_error_while_paging(chinook: Path) -> None:
    _damage(chinook)
    db = Database.open(chinook)  # the schema's pages are intact
    result = db.execute("SELECT * FROM tracks WHERE TrackId > 3458")
    rows: list[tuple[object, ...]] = []
    with pytest.raises(DatabaseError, match="database disk image is malformed") as error:
        while page := db.fetch(result, 5):
            rows.extend(page)
    assert rows and "\n" not in str(error.value)  # some pages came before the damaged one
    assert result.exhausted and db.fetch(result) == []
    with pytest.raises(DatabaseError, match="malformed"):
        list(db.iter_rows("SELECT * FROM tracks WHERE TrackId > 3458"))
    assert db.fetch(db.execute("SELECT count(*) FROM albums")) == [(347,)]  # still usable


def test_a_hot_journal_is_refused_read_only_and_rolled_back_with_write(
    crashed_chinook: Path,
) -> None:
    before = digest(crashed_chinook)
    with pytest.raises(DatabaseError, match=r"crashed.db has an unfinished write \(a hot "
                       r"journal\); open it once with --write to roll it back"):
        Database.open(crashed_chinook)
    assert digest(crashed_chinook) == before  # the read-only attempt changed nothing
    Database.open(crashed_chinook, write=True).close()  # SQLite plays the journal back
    db = Database.open(crashed_chinook)
    edited = db.execute("SELECT count(*) FROM tracks WHERE Name LIKE '%(edited)'")
    assert db.fetch(edited) == [(0,)]


def _write_from_another_program(path: Path) -> subprocess.CompletedProcess[str]:
    code = (f"import sqlite3; conn = sqlite3.connect({str(path)!r}, timeout=1); "
            "conn.execute(\"INSERT INTO genres (Name) VALUES ('Polka')\"); conn.commit()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


def test_a_page_on_screen_does_not_lock_out_other_writers(chinook: Path) -> None:
    db = Database.open(chinook)
    result = db.execute("SELECT TrackId FROM tracks ORDER BY TrackId")
    assert len(db.fetch(result)) == 500 and not result.exhausted  # more below, on screen
    writer = _write_from_another_program(chinook)
    assert writer.returncode == 0, writer.stderr  # not "database is locked"
    assert db.fetch(result)[0] == (501,)  # the next page still comes
    while db.fetch(result):
        pass
    assert result.exhausted


def test_a_held_cursor_reads_straight_through(chinook: Path) -> None:
    db = Database.open(chinook)
    result = db.execute("SELECT TrackId FROM tracks ORDER BY TrackId")
    pages = [db.fetch(result, 1000, hold=True) for _ in range(4)]
    assert [len(p) for p in pages] == [1000, 1000, 1000, 503] and result.exhausted
    assert [r[0] for p in pages for r in p] == list(range(1, 3504))


def test_a_returning_write_is_paged_without_running_it_again(chinook: Path) -> None:
    db = Database.open(chinook, write=True)
    result = db.execute("INSERT INTO genres (Name) SELECT Name FROM artists RETURNING GenreId")
    other = sqlite3.connect(chinook)
    assert other.execute("SELECT count(*) FROM genres").fetchone() == (25 + 275,)  # committed
    other.close()
    rows = []
    while page := db.fetch(result, 100):
        rows += page
    assert len(rows) == 275 and result.exhausted
    assert db.fetch(db.execute("SELECT count(*) FROM genres")) == [(25 + 275,)]


@pytest.mark.parametrize("write", [False, True])
def test_run_bounded_refuses_writes_even_on_a_write_connection(chinook: Path, write: bool) -> None:
    before = digest(chinook)
    db = Database.open(chinook, write=write)
    for sql in ("DELETE FROM albums", "UPDATE artists SET Name = 'x'", "DROP TABLE albums"):
        with pytest.raises(WriteRefused):
            db.run_bounded(sql, max_rows=10, timeout_s=1.0)
    db.close()
    assert digest(chinook) == before


def test_run_bounded_caps_rows_and_reads_columns(chinook: Path) -> None:
    db = Database.open(chinook)
    columns, rows = db.run_bounded("SELECT TrackId, Name FROM tracks ORDER BY TrackId;", 5, 1.0)
    assert columns == ["TrackId", "Name"] and len(rows) == 5 and rows[0][0] == 1
    with pytest.raises(DatabaseError, match="no such column"):
        db.run_bounded("SELECT nope FROM tracks", 5, 1.0)
    db.close()


def test_run_bounded_cuts_off_a_query_that_never_ends(chinook: Path) -> None:
    db = Database.open(chinook)
    forever = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
               "SELECT count(*) FROM n")
    started = time.perf_counter()
    with pytest.raises(DatabaseError, match="cut off after"):
        db.run_bounded(forever, 5, 0.2)
    assert time.perf_counter() - started < 2.0
    # the handler is gone afterwards: the connection runs statements as before
    assert db.fetch(db.execute("SELECT count(*) FROM tracks a, tracks b WHERE a.TrackId < 400"
                               " AND b.TrackId < 400")) == [(399 * 399,)]
    db.close()


@pytest.mark.parametrize(("kind", "name", "reason"), [
    ("stale_view", "v", "no such table: main.y"),
    ("missing_function", "v", "no such function: no_such_fn"),
    ("missing_module", "vt", "no such module: vec0"),
])
def test_an_unreadable_object_is_marked_and_the_rest_opens(broken_db: Any, kind: str,
                                                          name: str, reason: str) -> None:
    path = broken_db(kind)
    for write in (False, True):
        db = Database.open(path, write=write)
        schema = db.schema()
        assert schema.names == ["x"] and schema.table("x").columns[0].name == "a"
        [unreadable] = schema.unreadable
        assert (unreadable.name, unreadable.problem) == (name, reason)
        assert db.fetch(db.execute("SELECT a FROM x")) == [(1,)]
        with pytest.raises(DatabaseError, match=reason):
            db.execute(f"SELECT * FROM {name}")
        db.close()


def test_a_count_of_a_view_that_never_ends_stops(broken_db: Any) -> None:
    """A view over an endless recursive CTE: cut off at the time limit, or when cancelled."""
    from model.sqlite.schema import row_count

    conn = sqlite3.connect(broken_db("infinite_view"))
    assert row_count(conn, "x", timeout_s=5.0) == 1
    assert row_count(conn, "v", timeout_s=0.2) is None
    calls: list[int] = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 3

    assert row_count(conn, "v", cancelled=cancelled) is None and len(calls) == 4
    assert row_count(conn, "x") == 1  # no handler left behind
    conn.close()
