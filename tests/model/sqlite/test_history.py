from __future__ import annotations

from pathlib import Path

import pytest

from model.sqlite.history import Entry, History, data_dir


def test_data_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMMA_SQL_DATA_DIR", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d"
    assert History().path == tmp_path / "d" / "history.jsonl"


def test_round_trip_newest_first(tmp_path: Path) -> None:
    history = History(tmp_path / "sub" / "h.jsonl")
    assert history.entries() == []
    history.add(Entry.now("SELECT 1", "a.db", 0.0123456, 1))
    history.add(Entry.now("SELECT x", "a.db", 0.5, None, "no such column: x"))
    entries = History(tmp_path / "sub" / "h.jsonl").entries()
    assert [e.sql for e in entries] == ["SELECT x", "SELECT 1"]
    assert entries[1].seconds == 0.0123 and entries[1].rows == 1
    assert entries[0].error == "no such column: x"
    assert "T" in entries[0].timestamp


def test_damaged_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    history = History(path)
    history.add(Entry.now("SELECT 1", "a.db", 0.1, 1))
    with path.open("a") as f:
        f.write("{not json\n")
    history.add(Entry.now("SELECT 2", "a.db", 0.1, 1))
    assert [e.sql for e in history.entries()] == ["SELECT 2", "SELECT 1"]
    assert len(history.entries(limit=1)) == 1


def test_bad_lines_are_skipped_never_raised(tmp_path: Path) -> None:
    """A non-UTF-8 byte, JSON of the wrong shape or types: each line skipped, the rest read."""
    path = tmp_path / "h.jsonl"
    history = History(path)
    history.add(Entry.now("SELECT 1", "a.db", 0.1, 1))
    with path.open("ab") as f:
        f.write(b'{"sql": "SELECT \xff", "database": "a.db"}\n\xfe\xff\n')
        f.write(b'{"sql": null}\n{"sql": null, "database": "a.db", "timestamp": "t", '
                b'"seconds": 1, "rows": 1, "error": null}\n[1, 2]\n"text"\n')
        f.write(b'{"sql": "SELECT 2", "database": "a.db", "timestamp": "t", "seconds": "x", '
                b'"rows": 1}\n{"sql": "SELECT 3", "database": 5, "timestamp": "t", '
                b'"seconds": 1, "rows": 1}\n')
    history.add(Entry.now("SELECT 4", "a.db", 0.1, 1))
    assert [e.sql for e in history.entries()] == ["SELECT 4", "SELECT 1"]


def test_sql_with_line_separators_round_trips(tmp_path: Path) -> None:
    history = History(tmp_path / "h.jsonl")
    sql = "SELECT 'a\u2028b\u2029c\x85d\x0ce'"
    history.add(Entry.now(sql, "a.db", 0.1, 1))
    assert [e.sql for e in history.entries()] == [sql]


def test_the_file_is_the_users_own(tmp_path: Path) -> None:
    path = tmp_path / "data" / "h.jsonl"
    History(path).add(Entry.now("SELECT 1", "a.db", 0.1, 1))
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_database_name_that_is_not_utf8_is_kept(tmp_path: Path) -> None:
    name = b"caf\xe9.db".decode("utf-8", "surrogateescape")  # as os.fsdecode gives it
    history = History(tmp_path / "h.jsonl")
    history.add(Entry.now("SELECT 1", name, 0.1, 1))
    assert [e.database for e in history.entries()] == [name]


def test_a_history_that_cannot_be_written_raises_oserror(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        History(tmp_path / "file" / "h.jsonl").add(Entry.now("SELECT 1", "a.db", 0.1, 1))
