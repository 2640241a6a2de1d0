"""The history of statements run, one JSON object a line in the user's data directory.

GEMMA_SQL_DATA_DIR overrides the directory (tests point it at a temporary one).
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


class History:
    """Append-only JSONL; reading tolerates a damaged line rather than losing the rest."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or data_dir() / "history.jsonl"
        self._lock = threading.Lock()  # workers append from threads

    def add(self, entry: Entry) -> None:
        line = json.dumps(asdict(entry), ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)

    def entries(self, limit: int = MAX_READ) -> list[Entry]:
        """Newest first."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out: list[Entry] = []
        for line in reversed(lines):
            try:
                out.append(Entry(**json.loads(line)))
            except (ValueError, TypeError):
                continue
            if len(out) >= limit:
                break
        return out
