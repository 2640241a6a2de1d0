from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny import ROWS, tiny_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tok() -> Any:
    return tiny_tokenizer()


@pytest.fixture
def rows_file(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(
        json.dumps({"question": e.question, "context": e.context, "sql": e.sql}) + "\n"
        for e in ROWS
    ))
    return path
