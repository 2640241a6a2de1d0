"""Ten thousand generated writes, through the path the app runs statements on, never change a
read-only database nor create a file.

The app splits the editor's text with model.sqlite.statements.split, runs each statement with
Database.execute and fetches a page; this does the same on a read-only copy of Chinook (with a
trigger added, so DROP TRIGGER has one to drop). Statements are generated from a seeded random
generator: every kind of write, comments, odd casing, several statements in one string.
"""

from __future__ import annotations

import hashlib
import random
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from model.samples import CHINOOK
from model.sqlite.db import Database, DatabaseError, WriteRefused
from model.sqlite.statements import split

SEED = 20_240_611
STATEMENTS = 10_000
TABLES = {  # table: (key, a text column)
    "albums": ("AlbumId", "Title"),
    "artists": ("ArtistId", "Name"),
    "genres": ("GenreId", "Name"),
    "media_types": ("MediaTypeId", "Name"),
    "playlists": ("PlaylistId", "Name"),
    "tracks": ("TrackId", "Name"),
}
INDEXES = ["IFK_AlbumArtistId", "IFK_TrackAlbumId", "IFK_InvoiceLineTrackId"]
PRAGMA_WRITES = [
    "user_version = 7", "application_id = 42", "journal_mode = WAL", "journal_mode = OFF",
    "writable_schema = ON", "schema_version = 99", "page_size = 8192", "auto_vacuum = FULL",
    "cache_size = 10", "foreign_keys = ON", "locking_mode = EXCLUSIVE", "synchronous = OFF",
    "wal_checkpoint", "wal_checkpoint(TRUNCATE)", "optimize", "incremental_vacuum(5)",
    "secure_delete = ON", "temp_store = MEMORY", "main.user_version = 1", "shrink_memory",
]
Generator = Callable[[random.Random, Path], str]


def _table(rng: random.Random) -> tuple[str, str, str]:
    table = rng.choice(list(TABLES))
    return (table, *TABLES[table])


def _text(rng: random.Random) -> str:
    return "'" + rng.choice(["x", "it''s", "Zoë", "; DROP TABLE albums; --", ""]) + "'"


def _where(rng: random.Random, key: str) -> str:
    return rng.choice([f" WHERE {key} = {rng.randint(1, 400)}", f" WHERE {key} > 0", "",
                       " WHERE 0", f" WHERE {key} IN (SELECT {key} LIMIT 3)"])


def _returning(rng: random.Random, key: str) -> str:
    return rng.choice(["", "", f" RETURNING {key}", " RETURNING *"])


def insert(rng: random.Random, _: Path) -> str:
    table, key, text = _table(rng)
    verb = rng.choice(["INSERT", "INSERT OR REPLACE", "INSERT OR IGNORE", "REPLACE",
                       "INSERT OR ABORT"])
    body = rng.choice([
        f"({text}) VALUES ({_text(rng)})",
        f"({key}, {text}) VALUES ({rng.randint(1, 10**6)}, {_text(rng)})",
        f"({text}) SELECT {text} FROM {table} LIMIT {rng.randint(1, 5)}",
        "DEFAULT VALUES",
    ])
    if body == "DEFAULT VALUES" and table in ("albums", "tracks"):
        body = f"({text}) VALUES ({_text(rng)})"  # NOT NULL columns: DEFAULT VALUES fails first
    return f"{verb} INTO {table} {body}{_returning(rng, key)}"


def upsert(rng: random.Random, _: Path) -> str:
    table, key, text = _table(rng)
    return (f"INSERT INTO {table} ({key}, {text}) VALUES (1, {_text(rng)}) ON CONFLICT({key}) "
            f"DO UPDATE SET {text} = excluded.{text}{_returning(rng, key)}")


def update(rng: random.Random, _: Path) -> str:
    table, key, text = _table(rng)
    verb = rng.choice(["UPDATE", "UPDATE OR IGNORE", "UPDATE OR REPLACE"])
    return f"{verb} {table} SET {text} = {_text(rng)}{_where(rng, key)}{_returning(rng, key)}"


def delete(rng: random.Random, _: Path) -> str:
    table, key, _text_column = _table(rng)
    return f"DELETE FROM {table}{_where(rng, key)}{_returning(rng, key)}"


def cte_dml(rng: random.Random, path: Path) -> str:
    table, key, _text_column = _table(rng)
    dml = rng.choice([insert, update, delete, upsert])(rng, path)
    return (f"WITH picked AS (SELECT {key} FROM {table} LIMIT {rng.randint(1, 9)}) {dml}")


def create(rng: random.Random, _: Path) -> str:
    table, key, text = _table(rng)
    name = f"fuzz_{rng.randint(0, 10**9)}"
    temp = rng.choice(["", "TEMP ", "TEMPORARY "])
    return rng.choice([
        f"CREATE {temp}TABLE {name} (x INTEGER PRIMARY KEY, y TEXT)",
        f"CREATE {temp}TABLE IF NOT EXISTS {name} AS SELECT * FROM {table}",
        f"CREATE INDEX {name} ON {table} ({text})",
        f"CREATE UNIQUE INDEX IF NOT EXISTS {name} ON {table} ({key}, {text})",
        f"CREATE {temp}VIEW {name} AS SELECT {text} FROM {table}",
        f"CREATE {temp}TRIGGER {name} AFTER INSERT ON {table} BEGIN "
        f"DELETE FROM {table} WHERE {key} = new.{key}; END",
        f"CREATE VIRTUAL TABLE {name} USING fts5(body)",
    ])


def drop(rng: random.Random, _: Path) -> str:
    return rng.choice([
        f"DROP TABLE {rng.choice(list(TABLES))}",
        f"DROP TABLE IF EXISTS {rng.choice(list(TABLES))}",
        f"DROP INDEX {rng.choice(INDEXES)}",
        "DROP VIEW limit15",
        "DROP TRIGGER fuzz_keep",
        "DROP TRIGGER IF EXISTS main.fuzz_keep",
    ])


def alter(rng: random.Random, _: Path) -> str:
    table, key, text = _table(rng)
    return rng.choice([
        f"ALTER TABLE {table} RENAME TO fuzz_{rng.randint(0, 10**6)}",
        f"ALTER TABLE {table} ADD COLUMN fuzz_{rng.randint(0, 10**6)} TEXT",
        f"ALTER TABLE {table} RENAME COLUMN {text} TO fuzz_{rng.randint(0, 10**6)}",
        f"ALTER TABLE {table} RENAME {text} TO fuzz_{rng.randint(0, 10**6)}",
        "ALTER TABLE albums DROP COLUMN Title",
    ])


def pragma(rng: random.Random, _: Path) -> str:
    return "PRAGMA " + rng.choice(PRAGMA_WRITES)


def attach(rng: random.Random, targets: Path) -> str:
    name = f"other{rng.randint(0, 99)}"
    return rng.choice([
        f"ATTACH DATABASE '{targets / (name + '.db')}' AS {name}",
        f"ATTACH '{targets / 'x.db'}' AS x",
        f"ATTACH 'file:{targets / 'uri.db'}?mode=rwc' AS u",
        "ATTACH ':memory:' AS mem",
        f"DETACH DATABASE {name}",
        "DETACH main",
    ])


def vacuum(rng: random.Random, targets: Path) -> str:
    return rng.choice([
        "VACUUM",
        "VACUUM main",
        f"VACUUM INTO '{targets / f'copy{rng.randint(0, 99)}.db'}'",
        f"VACUUM main INTO '{targets / 'main.db'}'",
        f"VACUUM INTO 'file:{targets / 'uri.db'}'",
    ])


def transaction(rng: random.Random, _: Path) -> str:
    return rng.choice([
        "BEGIN", "BEGIN TRANSACTION", "BEGIN DEFERRED", "BEGIN IMMEDIATE TRANSACTION",
        "BEGIN EXCLUSIVE", "COMMIT", "COMMIT TRANSACTION", "END", "ROLLBACK",
        "ROLLBACK TRANSACTION", f"SAVEPOINT s{rng.randint(0, 9)}", f"RELEASE s{rng.randint(0, 9)}",
        f"RELEASE SAVEPOINT s{rng.randint(0, 9)}", f"ROLLBACK TO s{rng.randint(0, 9)}",
    ])


def maintenance(rng: random.Random, _: Path) -> str:
    return rng.choice(["REINDEX", f"REINDEX {rng.choice(INDEXES)}", "ANALYZE", "ANALYZE main",
                       f"ANALYZE {rng.choice(list(TABLES))}",
                       "SELECT load_extension('/nonexistent')",
                       "SELECT fts3_tokenizer('simple')"])


WRITES: list[Generator] = [insert, upsert, update, delete, cte_dml, create, drop, alter, pragma,
                           attach, vacuum, transaction, maintenance]


def odd_casing(rng: random.Random, sql: str) -> str:
    """Keywords (the templates' upper-case words) in random case; names and strings as they are."""
    def recase(match: re.Match[str]) -> str:
        return "".join(c.lower() if rng.random() < 0.5 else c for c in match.group())
    return re.sub(r"\b[A-Z_]{2,}\b", recase, sql)


def dressed(rng: random.Random, sql: str) -> str:
    before = rng.choice(["", "", "  ", "\n", "/* why */ ", "-- a note\n", "/* a; b */\n"])
    after = rng.choice(["", "", " ", " -- done\n", " /* end */", "\n\n"])
    return before + odd_casing(rng, sql) + after


def scripts(rng: random.Random, targets: Path) -> list[tuple[str, int]]:
    """(text of one or more statements, how many) until STATEMENTS statements are made."""
    out, made = [], 0
    while made < STATEMENTS:
        count = min(rng.choice([1, 1, 1, 2, 3]), STATEMENTS - made)
        parts = [dressed(rng, rng.choice(WRITES)(rng, targets)) for _ in range(count)]
        out.append((";".join(parts) + rng.choice(["", ";", ";\n", " ; "]), count))
        made += count
    return out


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    (home := tmp_path / "db").mkdir()
    (targets := tmp_path / "targets").mkdir()
    path = home / "chinook.db"
    path.write_bytes(CHINOOK.read_bytes())
    conn = sqlite3.connect(path)
    conn.execute("CREATE TRIGGER fuzz_keep AFTER DELETE ON genres BEGIN SELECT 1; END")
    conn.commit()
    conn.close()
    return path, targets


def test_generated_writes_never_change_a_read_only_database(folders: tuple[Path, Path]) -> None:
    path, targets = folders
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    rng = random.Random(SEED)
    db = Database.open(path)
    not_refused: list[str] = []
    ran = 0
    for text, count in scripts(rng, targets):
        statements = split(text)
        assert len(statements) == count, text
        for statement in statements:
            ran += 1
            try:
                result = db.execute(statement.text)
                if result.columns:
                    db.fetch(result)
                    result.close()
            except WriteRefused:
                continue
            except DatabaseError as e:
                not_refused.append(f"{statement.text!r}: failed otherwise: {e}")
                continue
            not_refused.append(f"{statement.text!r}: ran")
    db.close()
    assert ran == STATEMENTS
    assert not not_refused, f"{len(not_refused)} writes not refused:\n" + "\n".join(
        not_refused[:40])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert [p.name for p in path.parent.iterdir()] == ["chinook.db"]  # no journal, no WAL
    assert list(targets.iterdir()) == []  # no VACUUM INTO copy, no ATTACHed file
