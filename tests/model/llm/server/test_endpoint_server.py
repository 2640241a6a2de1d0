"""The real model behind a real server process: `transformers serve` with the shipped model
(tests/served.py), asked through the endpoint client, `gemma-sql ask --endpoint` and the app.
Slow: the server loads the 270M and answers on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from model.llm.pipeline.ask import ask
from model.llm.pipeline.settings import Settings
from model.llm.server.endpoint import connect
from model.sqlite.db import Database

pytestmark = pytest.mark.slow
GEMMA_SQL = Path(sys.executable).parent / "gemma-sql"


def test_the_pipeline_streams_sql_from_the_server(served_model: str, chinook: Path) -> None:
    engine = connect(served_model)
    assert engine.name.startswith("gemma-3-270m-base+")  # the merged checkpoint's folder
    chunks: list[str] = []
    db = Database.open(chinook)
    try:
        answer = ask(engine, db, "How many albums are there?", Settings(max_new_tokens=48),
                     on_chunk=chunks.append)
    finally:
        db.close()
    assert engine.route == "/completions"  # our own prompt text, not a chat template's
    assert len(chunks) > 3  # streamed, a piece at a time
    assert answer.ok and "albums" in answer.sql.lower() and "count" in answer.sql.lower()
    assert answer.stats[0].tokens > 3 and answer.stats[0].stop in ("eos", "length")


def test_cancel_stops_the_answer_and_the_server_answers_the_next(served_model: str) -> None:
    engine = connect(served_model)
    prompt = "<start_of_turn>user Count from one to a thousand in words.<end_of_turn>\n" \
             "<start_of_turn>model\n"
    cancel = threading.Event()
    pieces: list[str] = []
    started = time.monotonic()
    for piece in engine.stream(prompt, cancel=cancel, max_new_tokens=400):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()
    assert engine.last_stats.stop == "cancel" and len(pieces) < 10
    assert time.monotonic() - started < 120
    # The server stopped that answer (the client went) and is free for the next.
    assert "".join(engine.stream(prompt, max_new_tokens=4))


def test_no_candidates_from_a_server_without_n(served_model: str) -> None:
    """transformers serve ignores `n` (one choice): greedy alone, as the README's table says."""
    engine = connect(served_model)
    assert engine.beams("<start_of_turn>user Hi<end_of_turn>\n<start_of_turn>model\n", n=2,
                        max_new_tokens=2) == []
    assert engine.samples is False


def test_cli_ask_json_through_the_server(served_model: str, chinook: Path) -> None:
    result = subprocess.run(
        [str(GEMMA_SQL), "ask", str(chinook), "How many albums are there?", "--endpoint",
         served_model, "--run", "--json"],
        capture_output=True, text=True, timeout=600, env={**os.environ})
    assert result.stderr == "" or result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"question", "sql", "columns", "rows", "error", "model", "dtype",
                        "seconds", "alternatives", "explanation", "confidence", "unmatched"}
    assert out["model"].startswith("gemma-3-270m-base+")
    assert (result.returncode == 0) == (out["error"] is None)
    assert out["rows"] == [[347]], out
