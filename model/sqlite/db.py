"""Database access: safe opening, a read-only guard, and two-phase paged queries.

Nothing here knows about the UI; the app, `gemma-sql ask` and `gemma-sql eval` share it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.sqlite.schema import Schema, read_schema

SQLITE_MAGIC = b"SQLite format 3\x00"
PAGE_SIZE = 500

# Authorizer action codes that change data or reach outside the file. Read-only sessions
# deny them all; SQLite asks for each one while preparing a statement, so this is checked
# on the parsed statement, not on the text.
_WRITE_ACTIONS = {
    getattr(sqlite3, name)
    for name in (
        "SQLITE_INSERT",
        "SQLITE_UPDATE",
        "SQLITE_DELETE",
        "SQLITE_CREATE_INDEX",
        "SQLITE_CREATE_TABLE",
        "SQLITE_CREATE_TEMP_INDEX",
        "SQLITE_CREATE_TEMP_TABLE",
        "SQLITE_CREATE_TEMP_TRIGGER",
        "SQLITE_CREATE_TEMP_VIEW",
        "SQLITE_CREATE_TRIGGER",
        "SQLITE_CREATE_VIEW",
        "SQLITE_CREATE_VTABLE",
        "SQLITE_DROP_INDEX",
        "SQLITE_DROP_TABLE",
        "SQLITE_DROP_TEMP_INDEX",
        "SQLITE_DROP_TEMP_TABLE",
        "SQLITE_DROP_TEMP_TRIGGER",
        "SQLITE_DROP_TEMP_VIEW",
        "SQLITE_DROP_TRIGGER",
        "SQLITE_DROP_VIEW",
        "SQLITE_DROP_VTABLE",
        "SQLITE_ALTER_TABLE",
        "SQLITE_REINDEX",
        "SQLITE_ANALYZE",
        "SQLITE_ATTACH",
        "SQLITE_DETACH",
    )
}
# PRAGMAs that only read when given no argument; with an argument most of them write.
_READ_PRAGMAS = {
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "database_list",
    "collation_list",
    "function_list",
    "module_list",
    "pragma_list",
    "compile_options",
    "table_list",
    "integrity_check",
    "quick_check",
    "foreign_key_check",
}


class DatabaseError(Exception):
    """A problem with a database file or a statement, said in one line."""


class WriteRefused(DatabaseError):
    """A statement that would change the database in a read-only session."""


@dataclass
class QueryResult:
    """A statement that has been executed; rows are fetched a page at a time."""

    sql: str
    columns: list[str]
    cursor: sqlite3.Cursor | None
    rows_changed: int = -1
    started: float = field(default_factory=time.perf_counter)
    exhausted: bool = False
    # One row read ahead, so `exhausted` is true as soon as the last page is fetched (a result
    # of exactly 2 pages would otherwise look unfinished until a third, empty fetch).
    _ahead: list[tuple[Any, ...]] = field(default_factory=list, repr=False)

    def fetch(self, n: int = PAGE_SIZE) -> list[tuple[Any, ...]]:
        """The next `n` rows (fewer at the end). Never reads the whole result."""
        if self.cursor is None or self.exhausted:
            return []
        rows = self._ahead + self.cursor.fetchmany(n + 1 - len(self._ahead))
        if len(rows) <= n:
            self.exhausted = True
            self._ahead = []
            return rows
        self._ahead = rows[n:]
        return rows[:n]

    def close(self) -> None:
        if self.cursor is not None:
            self.cursor.close()
            self.cursor = None
        self.exhausted = True


def shown_number(value: int | float) -> str:
    """A number as the sqlite3 shell prints it: a REAL to 15 significant digits, so a sum of
    prices reads 35.82 rather than Python's 35.81999999999999."""
    return f"{value:.15g}" if isinstance(value, float) else str(value)


def _check_file(path: Path) -> None:
    """Reject what SQLite would silently create or misreport, before connecting."""
    if not path.exists():
        raise DatabaseError(f"{path}: no such file")
    if path.is_dir():
        raise DatabaseError(f"{path}: is a directory, not a SQLite database")
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise DatabaseError(f"{path}: cannot read ({e.strerror})") from None
    if not header:
        raise DatabaseError(f"{path}: empty file, not a SQLite database")
    if header != SQLITE_MAGIC:
        raise DatabaseError(f"{path}: not a SQLite database")


class Database:
    """One SQLite file, opened read-only unless `write` is set."""

    def __init__(self, path: Path, conn: sqlite3.Connection, write: bool) -> None:
        self.path = path
        self.conn = conn
        self.write = write
        self._schema: Schema | None = None
        self._reader: Database | None = None

    @classmethod
    def open(cls, path: str | Path, write: bool = False, timeout: float = 1.0) -> Database:
        path = Path(path).expanduser()
        _check_file(path)
        mode = "rw" if write else "ro"
        try:
            # mode=ro/rw never creates the file, unlike a plain connect.
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode={mode}",
                uri=True,
                timeout=timeout,
                check_same_thread=False,  # queries run in worker threads
                isolation_level=None,  # autocommit: the user's statements stand alone
            )
        except sqlite3.Error as e:
            raise DatabaseError(f"{path}: {e}") from None
        db = cls(path, conn, write)
        conn.set_authorizer(db._authorize)
        try:
            # Reading the schema touches every page header SQLite needs: a corrupt or
            # locked file fails here, at open, with its name, not later in the UI.
            db.schema()
        except sqlite3.Error as e:
            conn.close()
            raise DatabaseError(f"{path}: {e}") from None
        return db

    def _authorize(self, action: int, arg1: Any, arg2: Any, dbname: Any, source: Any) -> int:
        if action == sqlite3.SQLITE_FUNCTION and arg2 == "load_extension":
            return sqlite3.SQLITE_DENY
        if self.write:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master":
            # SQLite itself asks this when it first builds a pragma table-valued function;
            # users cannot write sqlite_master anyway.
            return sqlite3.SQLITE_OK
        if action in _WRITE_ACTIONS:
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA:
            name = str(arg1).lower()
            if arg2 is not None and name not in _READ_PRAGMAS:
                return sqlite3.SQLITE_DENY
            if name in {
                "writable_schema",
                "journal_mode",
                "wal_checkpoint",
                "optimize",
                "incremental_vacuum",
                "shrink_memory",
            }:
                return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def reader(self) -> Database:
        """A second connection to the same file, read-only behind the authorizer, for what runs
        without the user asking (the model's value probes and candidate checks): it never
        writes, even in a --write session, and never queues behind or interrupts the user's
        query. Opened on first use, closed with this one."""
        if self._reader is None:
            self._reader = Database.open(self.path)
        return self._reader

    def schema(self, refresh: bool = False) -> Schema:
        if self._schema is None or refresh:
            self._schema = read_schema(self.conn)
        return self._schema

    def changes_data(self, sql: str) -> bool:
        """Whether `sql` would write, asked of SQLite itself (prepare under EXPLAIN)."""
        seen: list[int] = []

        def record(action: int, *args: Any) -> int:
            if action in _WRITE_ACTIONS or (
                action == sqlite3.SQLITE_PRAGMA
                and args[1] is not None
                and str(args[0]).lower() not in _READ_PRAGMAS
            ):
                seen.append(action)
            return sqlite3.SQLITE_OK

        self.conn.set_authorizer(record)
        try:
            self.conn.execute(f"EXPLAIN {sql}").close()
        except sqlite3.Error:
            pass  # the real run reports the error
        finally:
            self.conn.set_authorizer(self._authorize)
        return bool(seen)

    def execute(self, sql: str) -> QueryResult:
        """Run one statement; rows stay in SQLite until `fetch` asks for them."""
        sql = sql.strip().rstrip(";").strip()
        if not sql:
            raise DatabaseError("nothing to run")
        try:
            cursor = self.conn.execute(sql)
        except sqlite3.DatabaseError as e:
            message = str(e)
            if "not authorized" in message or "prohibited" in message:
                raise WriteRefused(
                    f"refused: {self.path.name} is open read-only (start with --write to change it)"
                ) from None
            if "readonly" in message.replace("-", "").replace(" ", ""):
                raise WriteRefused(f"refused: {self.path.name} is read-only") from None
            if "interrupted" in message:
                raise DatabaseError("query cancelled") from None
            raise DatabaseError(message) from None
        except sqlite3.Warning as e:  # e.g. "You can only execute one statement at a time."
            raise DatabaseError(str(e)) from None
        columns = [d[0] for d in cursor.description or []]
        if not columns:
            result = QueryResult(sql, [], None, rows_changed=cursor.rowcount)
            cursor.close()
            self._schema = None  # DDL may have changed it
            return result
        return QueryResult(sql, columns, cursor)

    def fetch(self, result: QueryResult, n: int = PAGE_SIZE) -> list[tuple[Any, ...]]:
        try:
            return result.fetch(n)
        except sqlite3.OperationalError as e:
            result.close()
            if "interrupted" in str(e):
                raise DatabaseError("query cancelled") from None
            raise DatabaseError(str(e)) from None

    def iter_rows(self, sql: str) -> Iterator[tuple[Any, ...]]:
        result = self.execute(sql)
        while page := self.fetch(result):
            yield from page

    def interrupt(self) -> None:
        """Stop whatever statement runs on this connection (safe from any thread)."""
        self.conn.interrupt()

    def run_bounded(self, sql: str, max_rows: int, timeout_s: float
                    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """(columns, at most `max_rows` rows) of one statement that only reads, stopped after
        `timeout_s` seconds: for checking SQL the user has not run (its result is not shown).

        A statement that would change data is refused (WriteRefused), on a write connection
        too; a slow one is cut off by SQLite's progress handler (DatabaseError)."""
        if self.changes_data(sql):
            raise WriteRefused("refused: a check run only reads")
        deadline = time.perf_counter() + timeout_s
        # Called every ~1,000 SQLite instructions; non-zero interrupts the statement.
        self.conn.set_progress_handler(lambda: time.perf_counter() > deadline, 1000)
        cursor: sqlite3.Cursor | None = None
        try:
            cursor = self.conn.execute(sql.strip().rstrip(";"))
            columns = [d[0] for d in cursor.description or []]
            rows = cursor.fetchmany(max_rows) if columns else []
        except sqlite3.OperationalError as e:
            if "interrupted" in str(e):
                raise DatabaseError(f"stopped after {timeout_s:g} s") from None
            raise DatabaseError(str(e)) from None
        except (sqlite3.Error, sqlite3.Warning) as e:
            raise DatabaseError(str(e)) from None
        finally:
            if cursor is not None:
                cursor.close()
            self.conn.set_progress_handler(None, 0)
        return columns, rows

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self.conn.close()
