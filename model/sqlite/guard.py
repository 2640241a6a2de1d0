"""What a statement may do: the authorizer's policy for read-only and --write sessions.

SQLite asks the authorizer about each action while it prepares a statement, so these rules
apply to the parsed statement, never to its text. One action has no authorizer code: VACUUM
(also VACUUM INTO, which writes a new file even from a read-only connection); it is found in
the statement's compiled program instead (`vacuums`).
"""

from __future__ import annotations

import sqlite3
from typing import Any

# Authorizer action codes that change data or reach outside the file.
WRITE_ACTIONS = {
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
# BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE: a read-only session never holds a transaction
# open (and with it a lock that makes other programs' writes fail with "database is locked").
TRANSACTION_ACTIONS = {sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT}
# PRAGMAs that only read, also when given an argument (a table name, a limit).
READ_PRAGMAS = {
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
# PRAGMAs that act even without an argument (any other PRAGMA without one only reads a
# setting, e.g. `PRAGMA journal_mode`). shrink_memory writes nothing but is no reader's business.
ACTING_PRAGMAS = {"wal_checkpoint", "optimize", "incremental_vacuum", "shrink_memory"}
# Never run, in any session: load_extension loads native code; fts3_tokenizer with two
# arguments installs a tokenizer from a pointer (SQLite's docs advise denying it).
FORBIDDEN_FUNCTIONS = {"load_extension", "fts3_tokenizer"}
# Users cannot write sqlite_master unless writable_schema is set, itself a PRAGMA write; SQLite
# asks UPDATE on it when it first builds a pragma table-valued function (pragma_table_info).
_SCHEMA_TABLES = {"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"}


def _acting_pragma_table(table: Any) -> bool:
    # `SELECT * FROM pragma_optimize` acts as PRAGMA optimize does, yet SQLite asks only READ
    # on the table-valued function, never PRAGMA.
    name = str(table).lower()
    return name.startswith("pragma_") and name.removeprefix("pragma_") in ACTING_PRAGMAS


def writes(action: int, arg1: Any, arg2: Any, schema_writable: bool = False) -> bool:
    """Whether an authorizer request is part of a statement that changes data.

    `schema_writable`: PRAGMA writable_schema is on, so an UPDATE of sqlite_master is a write.
    """
    if action == sqlite3.SQLITE_UPDATE and arg1 in _SCHEMA_TABLES:
        return schema_writable
    if action == sqlite3.SQLITE_READ and _acting_pragma_table(arg1):
        return True
    if action in WRITE_ACTIONS:
        return True
    if action == sqlite3.SQLITE_PRAGMA:
        name = str(arg1).lower()
        return name in ACTING_PRAGMAS or (arg2 is not None and name not in READ_PRAGMAS)
    return False


def forbidden(action: int, arg2: Any) -> bool:
    return action == sqlite3.SQLITE_FUNCTION and str(arg2).lower() in FORBIDDEN_FUNCTIONS


def verdict(write_session: bool, action: int, arg1: Any, arg2: Any) -> int:
    """The authorizer's answer: a read-only session denies writes and transaction control."""
    if forbidden(action, arg2):
        return sqlite3.SQLITE_DENY
    if write_session:
        return sqlite3.SQLITE_OK
    if writes(action, arg1, arg2) or action in TRANSACTION_ACTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def vacuums(program: list[tuple[Any, ...]]) -> bool:
    """Whether an EXPLAIN listing holds the Vacuum opcode: VACUUM reaches no authorizer code,
    and Python's sqlite3 has no sqlite3_stmt_readonly, so the compiled program is asked."""
    return any(op[1] == "Vacuum" for op in program)
