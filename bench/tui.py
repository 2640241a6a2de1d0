"""TUI figures: first paint, a 1,000-table schema, the first page of a 10-million-row SELECT,
keystroke-to-screen latency while a model loads.

    .venv/bin/python bench/tui.py            # generated databases are cached (see CACHE)

Prints figures; asserts nothing (targets: paint <= 0.5 s, schema <= 1 s, first page <= 0.1 s
with memory that does not grow with the table). Generating the 10M-row table takes a minute
once and ~250 MB of disk under $GEMMA_SQL_BENCH_CACHE (default /tmp/gemma-sql-bench).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GEMMA_SQL_DATA_DIR", tempfile.mkdtemp(prefix="gemma-sql-bench-"))

from model.samples import CHINOOK  # noqa: E402
from model.sqlite.db import Database, DatabaseError  # noqa: E402
from model.sqlite.schema import read_schema  # noqa: E402

CACHE = Path(os.environ.get("GEMMA_SQL_BENCH_CACHE", "/tmp/gemma-sql-bench"))
SIZE = (160, 48)

# Run in a fresh interpreter: time from process start (before any import) to the screen
# being composed and refreshed once, headless.
_PAINT = """
import time, sys, asyncio
t0 = time.perf_counter()
from model.sqlite.db import Database
from tui.app import GemmaSqlApp
async def main():
    app = GemmaSqlApp(Database.open(sys.argv[1]), load_model=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        print(time.perf_counter() - t0)
asyncio.run(main())
"""


def first_paint(db: Path) -> tuple[float, float]:
    """(seconds inside the process, seconds including interpreter start) for the best of 3."""
    inner, outer = [], []
    for _ in range(3):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _PAINT, str(db)], capture_output=True,
                             text=True, check=True, cwd=ROOT).stdout
        outer.append(time.perf_counter() - started)
        inner.append(float(out.strip().splitlines()[-1]))
    return min(inner), min(outer)


def cached_db(name: str, build: Callable[[sqlite3.Connection], None]) -> Path:
    """A generated database, built once into the cache (via a temp file: never half-built)."""
    path = CACHE / name
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    build(conn)
    conn.close()
    tmp.replace(path)
    return path


def wide_schema(tables: int = 1000, columns: int = 20) -> Path:
    def build(conn: sqlite3.Connection) -> None:
        with conn:
            for t in range(tables):
                cols = ", ".join(
                    [f"id{t} INTEGER PRIMARY KEY"]
                    + [f"c{c} TEXT NOT NULL" for c in range(1, columns - 1)]
                    + [f"ref INTEGER REFERENCES t{max(t - 1, 0):04d}(id{max(t - 1, 0)})"]
                )
                conn.execute(f"CREATE TABLE t{t:04d} ({cols})")

    return cached_db(f"schema_{tables}x{columns}.db", build)


def big_table(rows: int) -> Path:
    def build(conn: sqlite3.Connection) -> None:
        print(f"  generating {rows:,} rows into {CACHE} (once)…", flush=True)
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        with conn:  # one transaction, one recursive-CTE INSERT
            conn.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, name TEXT, value REAL, "
                         "category INTEGER)")
            conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                "INSERT INTO big SELECT i, 'name ' || i, i * 0.5, i % 97 FROM n", (rows,))

    return cached_db(f"rows_{rows}.db", build)


async def _first_page(db_path: Path, trace: bool, sql: str = "SELECT * FROM big"
                      ) -> tuple[float, int]:
    """Seconds from the run action to the frame with the first rows; traced peak bytes."""
    from tui.app import GemmaSqlApp
    from tui.widgets.editor import SqlEditor
    from tui.widgets.results import ResultsTable

    db = Database.open(db_path)
    app = GemmaSqlApp(db, load_model=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()  # row counts of the tree, before timing
        await pilot.pause()
        app.query_one(SqlEditor).text = sql
        if trace:
            tracemalloc.start()
        table = app.query_one(ResultsTable)
        started = time.perf_counter()
        # The run action, as ctrl+j triggers it (Pilot.press would add its own idle waits).
        app.action_run_query()
        while table.row_count == 0:
            await asyncio.sleep(0.001)
        painted = asyncio.Event()
        table.call_after_refresh(painted.set)  # the frame with the first rows is out
        await painted.wait()
        seconds = time.perf_counter() - started
        await app.workers.wait_for_complete()
        await pilot.pause()
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        tracemalloc.stop()
        assert table.row_count in (1, 500)
    db.close()
    return seconds, peak


def first_page(db_path: Path) -> tuple[float, float, int]:
    """(best app seconds of 3, database-only seconds, traced peak bytes)."""
    app_s = min(asyncio.run(_first_page(db_path, trace=False))[0] for _ in range(3))
    db = Database.open(db_path)
    started = time.perf_counter()
    result = db.execute("SELECT * FROM big")
    assert len(db.fetch(result)) == 500
    db_s = time.perf_counter() - started
    db.close()
    peak = asyncio.run(_first_page(db_path, trace=True))[1]
    return app_s, db_s, peak


def cancel_latency(runs: int = 5) -> float:
    """Median seconds from Database.interrupt to the cancelled statement's return (the tests
    only assert that a cancel happens: a loaded machine stretches any bound)."""
    sql = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
           "WHERE x < 1000000000) SELECT count(*) FROM c")
    db = Database.open(CHINOOK)

    def run() -> None:
        with contextlib.suppress(DatabaseError):  # "query cancelled", expected
            db.execute(sql)

    figures = []
    for _ in range(runs):
        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(0.2)
        started = time.perf_counter()
        db.interrupt()
        thread.join()
        figures.append(time.perf_counter() - started)
    db.close()
    return sorted(figures)[runs // 2]


def page_after_release(db_path: Path, depth: int) -> float:
    """Seconds for the page after `depth` rows: between pages the cursor is released (no lock
    held), so the next page runs the statement again and skips the rows already read."""
    db = Database.open(db_path)
    result = db.execute("SELECT * FROM big")
    db.fetch(result, depth)  # and released, as the app's pages are
    started = time.perf_counter()
    db.fetch(result)
    seconds = time.perf_counter() - started
    db.close()
    return seconds


def _busy_python(stop: threading.Event) -> None:
    """A model load as the GIL sees it: importing torch and building the model run Python
    bytecode in the loader's thread (the weights' copies release the GIL; this never does)."""
    while not stop.is_set():
        total = 0
        for i in range(1000):
            total += i * i


async def _keystroke_latency(loading: bool, keys: int = 60) -> list[float]:
    """Seconds from a key leaving the terminal driver to the refresh that shows it in the
    editor, one key at a time, with or without a load running in a thread."""
    from textual import events

    from tui.app import GemmaSqlApp
    from tui.widgets.editor import SqlEditor

    db = Database.open(CHINOOK)
    app = GemmaSqlApp(db, load_model=False)
    stop = threading.Event()
    seconds = []
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        editor = app.query_one(SqlEditor)
        loader = threading.Thread(target=_busy_python, args=(stop,), daemon=True)
        if loading:
            loader.start()
        assert app._driver is not None
        for _ in range(keys):
            expected = editor.text + "x"
            key = events.Key("x", "x")
            key.set_sender(app)
            started = time.perf_counter()
            app._driver.send_message(key)  # as the driver's input thread does
            while editor.text != expected:
                await asyncio.sleep(0)
            shown = asyncio.Event()
            editor.call_after_refresh(shown.set)
            await shown.wait()
            seconds.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)  # typing speed, not a burst
        stop.set()
    db.close()
    return seconds


def keystroke_latency(loading: bool) -> tuple[float, float]:
    """(median, 95th percentile) seconds."""
    seconds = sorted(asyncio.run(_keystroke_latency(loading)))
    return statistics.median(seconds), seconds[int(len(seconds) * 0.95)]


def main() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"cancel, interrupt to return:    {cancel_latency() * 1000:.1f} ms (median of 5)")
    inner, outer = first_paint(CHINOOK)
    print(f"first paint, Chinook:           {inner:.3f} s in process, {outer:.3f} s with "
          "interpreter start")

    wide = wide_schema()
    conn = sqlite3.connect(wide)
    started = time.perf_counter()
    schema = read_schema(conn)
    read_s = time.perf_counter() - started
    conn.close()
    from tui.widgets.schema_tree import SchemaTree

    started = time.perf_counter()
    SchemaTree(schema, "wide.db")
    tree_s = time.perf_counter() - started
    print(f"schema, 1,000 tables x 20 cols: read_schema {read_s:.3f} s + tree {tree_s:.3f} s "
          f"= {read_s + tree_s:.3f} s")
    inner, outer = first_paint(wide)
    print(f"first paint, 1,000 tables:      {inner:.3f} s in process, {outer:.3f} s with "
          "interpreter start")

    for loading in (False, True):
        median, p95 = keystroke_latency(loading)
        during = "during a simulated model load" if loading else "idle"
        print(f"keystroke to screen, {during + ':':31} median {median * 1000:.1f} ms, "
              f"p95 {p95 * 1000:.1f} ms")

    floor = min(asyncio.run(_first_page(big_table(100_000), False, "SELECT 1"))[0]
                for _ in range(3))
    print(f"one-row SELECT 1 through the same path (run to painted): {floor:.3f} s")
    for rows in (100_000, 10_000_000):
        app_s, db_s, peak = first_page(big_table(rows))
        print(f"first page, SELECT * of {rows:>10,} rows: {app_s:.3f} s in the app "
              f"(execute + fetch 500: {db_s * 1000:.1f} ms), traced peak "
              f"{peak / 2**20:.1f} MiB")
    for depth in (500, 10_000, 90_000):
        print(f"next page after {depth:>7,} rows read (a re-run that skips them): "
              f"{page_after_release(big_table(100_000), depth) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
