"""Apps over throwaway copies of real SQLite files; history in a temporary data dir."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from model.samples import CHINOOK
from model.sqlite.db import Database
from tui.app import GemmaSqlApp


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("GEMMA_SQL_DATA_DIR", str(path))
    return path


@pytest.fixture
def chinook(tmp_path: Path) -> Path:
    path = tmp_path / "chinook.db"
    shutil.copy(CHINOOK, path)
    return path


@pytest.fixture
def make_app() -> Callable[..., GemmaSqlApp]:
    opened: list[Database] = []

    def make(path: Path, write: bool = False, **kwargs: object) -> GemmaSqlApp:
        db = Database.open(path, write=write)
        opened.append(db)
        kwargs.setdefault("load_model", False)
        return GemmaSqlApp(db, **kwargs)  # type: ignore[arg-type]

    yield make
    for db in opened:
        db.close()


@pytest.fixture
def numbers_db(tmp_path: Path) -> Path:
    """2,000 rows, with NULL, the text 'NULL', a blob and a long text."""
    path = tmp_path / "numbers.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE numbers (n INTEGER PRIMARY KEY, label TEXT, data BLOB)")
    conn.executemany("INSERT INTO numbers VALUES (?, ?, ?)",
                     [(i, f"row {i}", None) for i in range(1, 2001)])
    conn.execute("CREATE TABLE odd (v, label TEXT)")
    conn.executemany("INSERT INTO odd VALUES (?, ?)", [
        (None, "real null"), ("NULL", "text null"), (b"\x00" * 1229, "blob"),
        ("x" * 200, "long"),
    ])
    conn.commit()
    conn.close()
    return path
