"""Database access: safe opening, a read-only guard, and two-phase paged queries.

Nothing here knows about the UI; the app, `gemma-sql ask` and `gemma-sql eval` share it. The
rules on what a statement may do are in guard.py; `Database` is the one gate that applies
them: every statement the app, the CLI or the model's checks run goes through it.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.sqlite import guard
from model.sqlite.files import file_problem
from model.sqlite.schema import Schema, read_schema

SQLITE_MAGIC = b"SQLite format 3\x00"
PAGE_SIZE = 500
_SKIP_CHUNK = 1000  # rows skipped a step when a released result is read again
_DENIED_FUNCTION = "not authorized to use function:"  # SQLite's words, from the authorizer
# A statement that is an EXPLAIN itself (EXPLAIN never runs what it lists), after comments.
_EXPLAIN = re.compile(r"(?:\s|--[^\n]*+|/\*.*?\*/)*+explain\b", re.IGNORECASE | re.DOTALL)


class DatabaseError(Exception):
    """A problem with a database file or a statement, said in one line."""


class WriteRefused(DatabaseError):
    """A statement that would change the database in a read-only session."""


@dataclass
class QueryResult:
    """A statement that has been executed; rows are fetched a page at a time.

    Between pages the cursor is released (closed) unless the caller holds it: a half-read
    cursor keeps a read transaction open, and on a rollback-journal database that SHARED lock
    makes every other program's write fail with "database is locked" for as long as the page
    is on screen. The next page runs the statement again and skips the rows already read. The
    trade-off: that re-run sees the data as it is then, so rows another program changed in
    between may be missed or shown twice, and each page costs a run up to its rows (a sort of
    the whole table, for an ORDER BY on no index). Readers straight through (exports, eval)
    hold the cursor and read once.
    """

    sql: str
    columns: list[str]
    cursor: sqlite3.Cursor | None
    rows_changed: int = -1
    started: float = field(default_factory=time.perf_counter)
    exhausted: bool = False
    # Rows read from SQLite but not handed out yet: one row read ahead, so `exhausted` is true
    # as soon as the last page is fetched (a result of exactly 2 pages would otherwise look
    # unfinished until a third, empty fetch); or every row of a write's RETURNING.
    _ahead: list[tuple[Any, ...]] = field(default_factory=list, repr=False)
    _read: int = field(default=0, repr=False)  # rows read from SQLite, `_ahead` included
    # Runs the statement again after a release; None: the rows are all in `_ahead`.
    _rerun: Callable[[], sqlite3.Cursor] | None = field(default=None, repr=False)

    def fetch(self, n: int = PAGE_SIZE, hold: bool = False) -> list[tuple[Any, ...]]:
        """The next `n` rows (fewer at the end). Never reads the whole result. Unless `hold`,
        the cursor is released after the page (see the class's docstring)."""
        if self.exhausted:
            return []
        if self.cursor is None and self._rerun is not None:
            self.cursor = self._rerun()
            self._skip(self._read)
        fresh = self.cursor.fetchmany(n + 1 - len(self._ahead)) if self.cursor else []
        self._read += len(fresh)
        rows = self._ahead + fresh
        if len(rows) <= n:
            self.close()
            return rows
        self._ahead = rows[n:]
        if not hold:
            self.release()
        return rows[:n]

    def _skip(self, count: int) -> None:
        assert self.cursor is not None
        while count > 0 and (skipped := len(self.cursor.fetchmany(min(count, _SKIP_CHUNK)))):
            count -= skipped

    def release(self) -> None:
        """Close the cursor, keeping the place: the next fetch runs the statement again."""
        if self.cursor is not None and self._rerun is not None:
            self.cursor.close()
            self.cursor = None

    def close(self) -> None:
        if self.cursor is not None:
            self.cursor.close()
            self.cursor = None
        self._ahead = []
        self.exhausted = True


def shown_number(value: int | float) -> str:
    """A number as the sqlite3 shell prints it: a REAL to 15 significant digits, so a sum of
    prices reads 35.82 rather than Python's 35.81999999999999."""
    return f"{value:.15g}" if isinstance(value, float) else str(value)


def _check_file(path: Path) -> None:
    """Reject what SQLite would silently create, misreport or block on, before connecting."""
    problem = file_problem(path)
    if problem is not None:
        raise DatabaseError(f"{path}: {problem}")
    with path.open("rb") as f:
        header = f.read(len(SQLITE_MAGIC))
    if not header:
        raise DatabaseError(f"{path}: empty file, not a SQLite database")
    if header != SQLITE_MAGIC:
        raise DatabaseError(f"{path}: not a SQLite database")


def _hot_journal(path: Path) -> str:
    # A crash mid-write left a journal SQLite must play back first; only a writer may.
    return (f"{path} has an unfinished write (a hot journal); open it once with --write to "
            "roll it back")


def _clean(sql: str) -> str:
    sql = sql.strip().rstrip(";").strip()
    if not sql:
        raise DatabaseError("nothing to run")
    return sql


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
            if getattr(e, "sqlite_errorname", None) == "SQLITE_READONLY_ROLLBACK":
                raise DatabaseError(_hot_journal(path)) from None
            raise DatabaseError(f"{path}: {e}") from None
        return db

    def _authorize(self, action: int, arg1: Any, arg2: Any, dbname: Any, source: Any) -> int:
        return guard.verdict(self.write, action, arg1, arg2)

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
        """Whether `sql` would write (VACUUM included), asked of SQLite itself: the statement
        is compiled under EXPLAIN, never run. True also when SQLite cannot tell (the file is
        locked or damaged, or the statement compiles only without EXPLAIN): the caller asks
        before running it."""
        try:
            return self._writes(sql)
        except (sqlite3.Error, sqlite3.Warning):
            return True

    def _writes(self, sql: str) -> bool:
        """changes_data, raising what SQLite said when it could not compile the statement for
        a reason the run itself may not meet (a lock, a damaged page)."""
        seen: list[int] = []
        # Read before the authorizer changes: the callback may not use the connection.
        schema_writable = self.write and bool(
            self.conn.execute("PRAGMA writable_schema").fetchone()[0])

        def record(action: int, arg1: Any, arg2: Any, dbname: Any, source: Any) -> int:
            if guard.writes(action, arg1, arg2, schema_writable):
                seen.append(action)
                return sqlite3.SQLITE_DENY  # answer known; and no PRAGMA acts while compiling
            return self._authorize(action, arg1, arg2, dbname, source)

        self.conn.set_authorizer(record)
        try:
            program = self.conn.execute(f"EXPLAIN {sql}").fetchall()
        except sqlite3.Error as e:
            if seen:
                return True
            if getattr(e, "sqlite_errorname", None) not in ("SQLITE_ERROR", "SQLITE_AUTH"):
                raise
            # A mistake the run reports itself, a statement the authorizer denies on the run
            # too, or one EXPLAIN cannot take though the statement alone compiles: its parser
            # stack overflows 90 parentheses deep, or it is an EXPLAIN already. That last kind
            # cannot be told from the rest: it is taken as writing (fail closed).
            compiles = self._compiles(sql)
            return bool(seen) or (compiles and not _EXPLAIN.match(sql))
        finally:
            self.conn.set_authorizer(self._authorize)
        return guard.vacuums(program)

    def _compiles(self, sql: str) -> bool:
        """Whether SQLite compiles `sql`, never running it: given more parameters than any
        statement may have, Python's sqlite3 prepares it, then refuses before the first step."""
        too_many = self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) + 1
        try:
            self.conn.execute(sql, (None,) * too_many).close()
        except sqlite3.ProgrammingError as e:
            return getattr(e, "sqlite_errorname", None) is None  # the count refused: compiled
        except (sqlite3.Error, sqlite3.Warning):
            return False  # the run fails the same way
        return False  # nothing in it to run (only comments)

    def _error(self, e: sqlite3.Error | sqlite3.Warning) -> DatabaseError:
        """What SQLite said, as one line; a refusal as WriteRefused."""
        name = getattr(e, "sqlite_errorname", None) or ""
        message = " ".join(str(e).split()) or type(e).__name__
        if message.startswith(_DENIED_FUNCTION):  # SQLite gives no code of its own for it
            function = message.removeprefix(_DENIED_FUNCTION).strip()
            return WriteRefused(f"refused: {function} is never run (not in a read-only "
                                "session, nor with --write)")
        if name == "SQLITE_READONLY_ROLLBACK":
            return DatabaseError(_hot_journal(self.path))
        if name == "SQLITE_AUTH" or (name.startswith("SQLITE_READONLY") and not self.write):
            return self._read_only()
        if name.startswith("SQLITE_READONLY"):
            return WriteRefused(f"refused: {self.path.name} is read-only")
        if name == "SQLITE_INTERRUPT":
            return DatabaseError("query cancelled")
        return DatabaseError(message)

    def _read_only(self) -> WriteRefused:
        return WriteRefused(f"refused: {self.path.name} is open read-only (start with --write "
                            "to change it)")

    def execute(self, sql: str) -> QueryResult:
        """Run one statement; rows stay in SQLite until `fetch` asks for them."""
        sql = _clean(sql)
        try:
            writes = self._writes(sql)
            if writes and not self.write:
                raise self._read_only()
            cursor = self.conn.execute(sql)
            columns = [d[0] for d in cursor.description or []]
            if writes and columns:
                # RETURNING: SQLite has done the write and holds its rows; reading them all now
                # ends the statement, so the change commits now, not when the last page is read.
                rows = cursor.fetchall()
                cursor.close()
                return QueryResult(sql, columns, None, _ahead=rows)
        except (sqlite3.Error, sqlite3.Warning) as e:
            raise self._error(e) from None
        if not columns:
            result = QueryResult(sql, [], None, rows_changed=cursor.rowcount)
            cursor.close()
            self._schema = None  # DDL may have changed it
            return result
        return QueryResult(sql, columns, cursor, _rerun=lambda: self.conn.execute(sql))

    def fetch(self, result: QueryResult, n: int = PAGE_SIZE,
              hold: bool = False) -> list[tuple[Any, ...]]:
        """The next page of `result`; the cursor is released after it unless `hold` (see
        QueryResult). Any failure, a damaged page included, is a one-line DatabaseError."""
        try:
            return result.fetch(n, hold)
        except (sqlite3.Error, sqlite3.Warning) as e:
            result.close()
            raise self._error(e) from None

    def iter_rows(self, sql: str) -> Iterator[tuple[Any, ...]]:
        """Every row of `sql`, read straight through on one cursor (exports)."""
        result = self.execute(sql)
        try:
            while page := self.fetch(result, hold=True):
                yield from page
        finally:
            result.close()

    def run_bounded(self, sql: str, max_rows: int,
                    timeout_s: float) -> tuple[list[str], list[tuple[Any, ...]]]:
        """(columns, at most `max_rows` rows) of `sql`, for checking a candidate statement: one
        that would change data is refused (WriteRefused), also on a --write connection, and a
        run longer than `timeout_s` is cut off (DatabaseError). The cursor is always closed."""
        sql = _clean(sql)
        try:
            if self._writes(sql):
                raise WriteRefused("refused: a check runs only statements that read")
        except (sqlite3.Error, sqlite3.Warning) as e:
            raise self._error(e) from None
        deadline = time.monotonic() + timeout_s
        cut_off = False

        def over_time() -> int:
            nonlocal cut_off
            cut_off = time.monotonic() > deadline
            return int(cut_off)  # non-zero interrupts the statement

        cursor: sqlite3.Cursor | None = None
        self.conn.set_progress_handler(over_time, 1000)
        try:
            cursor = self.conn.execute(sql)
            columns = [d[0] for d in cursor.description or []]
            rows = cursor.fetchmany(max_rows) if columns and max_rows > 0 else []
        except (sqlite3.Error, sqlite3.Warning) as e:
            if cut_off:
                raise DatabaseError(f"check run cut off after {timeout_s:g} s") from None
            raise self._error(e) from None
        finally:
            self.conn.set_progress_handler(None, 0)
            if cursor is not None:
                cursor.close()
        return columns, rows

    def interrupt(self) -> None:
        """Stop whatever statement runs on this connection (safe from any thread)."""
        self.conn.interrupt()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self.conn.close()
