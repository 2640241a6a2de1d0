"""The history of statements run, one JSON object a line in the user's data directory.

GEMMA_SQL_DATA_DIR overrides the directory (tests point it at a temporary one). The file is
the user's own (created 0600: it holds every statement run, values included). Lines end at
"\n" only: SQL may hold U+2028, which str.splitlines() would break at.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

MAX_READ = 1000


def data_dir() -> Path:
    override = os.environ.get("GEMMA_SQL_DATA_DIR")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("gemma-sql"))


@dataclass
class Entry:
    sql: str
    database: str
    timestamp: str  # ISO 8601, local time with offset
    seconds: float
    rows: int | None  # rows shown (first page) or changed; None when it failed
    error: str | None = None

    @classmethod
    def now(cls, sql: str, database: str, seconds: float, rows: int | None,
            error: str | None = None) -> Entry:
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        return cls(sql, database, stamp, round(seconds, 4), rows, error)


def _entry(line: bytes) -> Entry | None:
    """The entry a line holds; None for a damaged one (bad UTF-8 or JSON, a wrong type)."""
    try:
        data = json.loads(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        return None
    if not isinstance(data, dict):
        return None
    texts = ("sql", "database", "timestamp")
    if not all(isinstance(data.get(k), str) for k in texts) \
            or not isinstance(data.get("seconds"), int | float) \
            or not isinstance(data.get("rows"), int | None) \
            or not isinstance(data.get("error"), str | None):
        return None
    try:
        return Entry(**data)
    except TypeError:  # a key of its own
        return None


class History:
    """Append-only JSONL; reading skips a damaged line rather than losing the rest."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or data_dir() / "history.jsonl"
        self._lock = threading.Lock()  # workers append from threads

    def add(self, entry: Entry) -> None:
        """Append `entry`; OSError when the file cannot be written (the caller says so)."""
        record = asdict(entry)
        try:
            line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        except UnicodeEncodeError:  # a file name that is not UTF-8 (surrogate escapes)
            line = (json.dumps(record) + "\n").encode("ascii")  # \udcff: valid, round-trips
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "ab") as f:
                f.write(line)

    def entries(self, limit: int = MAX_READ) -> list[Entry]:
        """Newest first; a line that cannot be read is skipped."""
        try:
            lines = self.path.read_bytes().split(b"\n")
        except FileNotFoundError:
            return []
        except OSError:
            return []
        out: list[Entry] = []
        for line in reversed(lines):
            entry = _entry(line) if line.strip() else None
            if entry is not None:
                out.append(entry)
            if len(out) >= limit:
                break
        return out
