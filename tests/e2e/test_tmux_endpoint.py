"""`gemma-sql --endpoint URL chinook.db` in a real terminal, the model a real server's
(tests/served.py): the SQL streams into the editor, escape cancels. Slow: the server loads the
270M and answers on CPU."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_tmux import GEMMA_SQL, SOCKET, send, tmux, wait_for

from model.samples import CHINOOK

pytestmark = pytest.mark.slow


@pytest.fixture
def endpoint_session(tmp_path: Path, served_model: str) -> Iterator[str]:
    db = tmp_path / "chinook.db"
    shutil.copy(CHINOOK, db)
    name = f"gemma-sql-test-{uuid.uuid4().hex[:8]}"
    env = f"GEMMA_SQL_DATA_DIR={tmp_path / 'data'} TERM=xterm-256color"
    tmux("new-session", "-d", "-s", name, "-x", "160", "-y", "48",
         f"env {env} {GEMMA_SQL} --endpoint {served_model} {db}")
    try:
        yield name
    finally:
        import subprocess

        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True)


def test_sql_from_a_server_streams_into_the_editor(endpoint_session: str,
                                                   served_model: str) -> None:
    session = endpoint_session
    wait_for(session, "gemma-3-270m-base+", timeout=60)  # the status bar: the served name
    send(session, "F3")
    send(session, "How many albums are there?", literal=True)
    send(session, "Enter")
    wait_for(session, "writing SQL", timeout=30)
    # The status line's start (the served name takes the rest of a narrow one).
    screen = wait_for(session, "SQL written in", timeout=300)
    assert "COUNT(*)" in screen and "FROM albums" in screen
    send(session, "F3")  # again, and cancelled while it writes
    send(session, "Enter")
    wait_for(session, "writing SQL", timeout=30)
    send(session, "Escape")
    wait_for(session, " generation ", timeout=60)  # "generation cancelled", maybe cut short
    send(session, "C-q")
