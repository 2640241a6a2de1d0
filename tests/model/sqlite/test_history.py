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
