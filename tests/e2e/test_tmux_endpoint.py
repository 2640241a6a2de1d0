"""`gemma-sql --endpoint URL chinook.db` in a real terminal, the model a real server's
(tests/served.py): the SQL streams into the editor, escape cancels. Slow: the server loads the
270M and answers on CPU."""

from __future__ import annotations

import shutil
import time
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


def test_sql_from_a_server_streams_into_the_editor(endpoint_session: str) -> None:
    session = endpoint_session
    wait_for(session, "gemma-3-270m-base+", timeout=60)  # the status bar: the served name
    send(session, "F3")
    send(session, "How many albums are there?", literal=True)
    send(session, "Enter")
    # (No wait for the transient "writing SQL…": a fast server's answer can replace it before
    # the pane is read.) The pretty-printed SQL replaces the streamed text when the answer is done.
    screen = wait_for(session, "COUNT(*)", timeout=300)
    assert "FROM albums" in screen
    send(session, "F3")  # again, and cancelled while it writes
    send(session, "Enter")
    deadline = time.monotonic() + 30  # the editor is cleared for the new answer
    while "COUNT(*)" in tmux("capture-pane", "-p", "-t", session):
        assert time.monotonic() < deadline, "the second question was not asked"
        time.sleep(0.1)
    send(session, "Escape")
    # An answer not cancelled would be in the editor, pretty-printed, by now (the first took a
    # few seconds). The status line cannot tell: the served name and URL fill it.
    time.sleep(15)
    assert "COUNT(*)" not in tmux("capture-pane", "-p", "-t", session)
    send(session, "C-q")
