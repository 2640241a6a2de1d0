"""Fixtures shared across the test packages. Keep this small; append, do not reorganise."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Tests never reach the Hugging Face hub: set before huggingface_hub reads it at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The real 270M checkpoint is converted once (~1 min) into a stable directory and reused by
# later runs; never into the user's own cache. CI may point GEMMA_SQL_CACHE elsewhere.
os.environ.setdefault("GEMMA_SQL_CACHE", str(Path.home() / ".cache" / "gemma-sql-test"))


@pytest.fixture
def chinook(tmp_path: Path) -> Path:
    """A private, writable copy of the bundled Chinook sample."""
    from model.samples import CHINOOK

    path = tmp_path / "chinook.db"
    shutil.copy(CHINOOK, path)
    path.chmod(0o644)
    return path


@pytest.fixture(scope="session")
def base_checkpoint() -> Path:
    """The real Gemma 3 270M as a bf16 checkpoint (converted on the first run only)."""
    from model.llm.weights.registry import ensure_base_checkpoint

    return ensure_base_checkpoint()


@pytest.fixture(scope="session")
def real_engine(base_checkpoint: Path) -> Iterator[Any]:
    """The real default engine on CPU, loaded once per session (a few seconds)."""
    from model.llm.decoding.loading import load_engine

    yield load_engine(device="cpu")


@pytest.fixture
def crashed_chinook(tmp_path: Path) -> Path:
    """A copy of Chinook whose writer was killed (SIGKILL) mid-transaction: a hot journal."""
    from model.samples import CHINOOK

    path = tmp_path / "crashed.db"
    shutil.copy(CHINOOK, path)
    writer = (
        "import os, signal, sqlite3\n"
        f"conn = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "conn.execute('PRAGMA journal_mode = DELETE')\n"
        "conn.execute('PRAGMA cache_size = 10')  # spill changed pages into the file\n"
        "conn.execute('BEGIN')\n"
        "conn.execute(\"UPDATE tracks SET Name = Name || ' (edited)'\")\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    died = subprocess.run([sys.executable, "-c", writer], capture_output=True, timeout=60)
    assert died.returncode == -signal.SIGKILL, died.stderr
    journal = path.with_name(path.name + "-journal")
    assert journal.is_file() and journal.stat().st_size > 0
    return path


@pytest.fixture(scope="session")
def served_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API root of a real `transformers serve` with the shipped model (tests/served.py),
    started once per session. Missing serving packages skip, except in CI."""
    from served import serving_missing, transformers_serve

    from model.llm.weights.registry import PACKAGED_ADAPTERS, ensure_merged_checkpoint

    if missing := serving_missing():
        message = f"transformers serve needs {', '.join(missing)} (pip install -e '.[dev]')"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    weights = ensure_merged_checkpoint(PACKAGED_ADAPTERS / "gemma-3-270m-sql")
    with transformers_serve(weights, tmp_path_factory.mktemp("serve") / "server.log") as url:
        yield url


# Databases users have that the sqlite3 shell opens, each with one object SQLite cannot read
# (or, "infinite", one that never ends): the hostile-database corpus (issue 35).
HOSTILE_SCHEMAS = {
    "stale_view": "CREATE TABLE x (a); CREATE TABLE y (b); CREATE VIEW v AS SELECT b FROM y;"
                  " DROP TABLE y;",
    "missing_function": "CREATE TABLE x (a); CREATE VIEW v AS SELECT no_such_fn(a) FROM x;",
    "missing_module": "CREATE TABLE x (a);",  # plus a vec0 virtual table, written below
    "infinite_view": "CREATE TABLE x (a); CREATE VIEW v AS WITH RECURSIVE n(i) AS (SELECT 1"
                     " UNION ALL SELECT i + 1 FROM n) SELECT i FROM n;",
}


@pytest.fixture
def broken_db(tmp_path: Path) -> Any:
    """broken_db(kind) -> the path of a fresh database of HOSTILE_SCHEMAS[kind] with one
    row in x."""
    import sqlite3

    def make(kind: str) -> Path:
        path = tmp_path / f"{kind}.db"
        conn = sqlite3.connect(path)
        conn.executescript(HOSTILE_SCHEMAS[kind])
        conn.execute("INSERT INTO x VALUES (1)")
        if kind == "missing_module":
            # As a database made by a program with sqlite-vec loaded leaves it.
            conn.execute("PRAGMA writable_schema = ON")
            conn.execute("INSERT INTO sqlite_master VALUES ('table', 'vt', 'vt', 0, "
                         "'CREATE VIRTUAL TABLE vt USING vec0(e float[4])')")
        conn.commit()
        conn.close()
        return path

    return make
