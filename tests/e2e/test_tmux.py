"""The real program in a real terminal: tmux runs `gemma-sql`, keys go in, the screen is read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.samples import CHINOOK

GEMMA_SQL = Path(sys.executable).parent / "gemma-sql"

if shutil.which("tmux") is None:
    if os.environ.get("CI"):
        pytest.fail("tmux is missing in CI (.ci/run installs it)", pytrace=False)
    pytest.skip("tmux is not installed", allow_module_level=True)


# A private server (-L) with no config (-f): the user's tmux options and sessions can't change
# the window size or the keys.
SOCKET = f"gemma-sql-test-{os.getpid()}"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", SOCKET, "-f", "/dev/null", *args],
                          capture_output=True, text=True, check=True).stdout


def send(session: str, *keys: str, literal: bool = False) -> None:
    tmux("send-keys", "-t", session, *(["-l"] if literal else []), *keys)
    # Keys sent back to back can arrive in one read; a moment apart, Textual sees an F-key's
    # escape sequence on its own and never mistakes it for escape + letters.
    time.sleep(0.3)


def wait_for(session: str, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-p", "-t", session)
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not on screen after {timeout} s:\n{screen}")


@pytest.fixture
def session(tmp_path: Path) -> Iterator[str]:
    db = tmp_path / "chinook.db"
    shutil.copy(CHINOOK, db)
    name = f"gemma-sql-test-{uuid.uuid4().hex[:8]}"
    env = f"GEMMA_SQL_DATA_DIR={tmp_path / 'data'} TERM=xterm-256color"
    for attempt in range(10):  # the previous test's server may still be shutting down
        try:
            tmux("new-session", "-d", "-s", name, "-x", "160", "-y", "48",
                 f"env {env} {GEMMA_SQL} --no-model {db}")
            break
        except subprocess.CalledProcessError:
            if attempt == 9:
                raise
            time.sleep(0.2)
    try:
        yield name
    finally:
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True)


def test_query_in_a_real_terminal(session: str) -> None:
    wait_for(session, "albums")
    send(session, "F2")
    send(session, "SELECT Title FROM albums WHERE AlbumId = 1", literal=True)
    send(session, "C-j")
    wait_for(session, "For Those About To Rock We Salute You")
    screen = wait_for(session, "1 row · ")
    assert "Balls to the Wall" not in screen  # only the one row
    send(session, "C-q")


def test_a_statement_typed_ahead_of_ctrl_j_runs_as_typed(session: str) -> None:
    wait_for(session, "albums")
    send(session, "F2")
    # The text and ctrl+j in one go (a fast typist, a script): they reach the app together.
    tmux("send-keys", "-t", session, "-l", "SELECT 42 AS answer", ";",
         "send-keys", "-t", session, "C-j")
    screen = wait_for(session, "1 row · ")
    assert "nothing to run" not in screen
    send(session, "C-q")


def test_data_cannot_retitle_the_terminal(session: str) -> None:
    wait_for(session, "albums")
    title = tmux("display", "-p", "-t", session, "#{pane_title}")
    send(session, "F2")
    send(session, "SELECT char(27)||']2;PWNED'||char(7) AS t", literal=True)
    send(session, "C-j")
    wait_for(session, "1 row · ")
    assert tmux("display", "-p", "-t", session, "#{pane_title}") == title
    send(session, "C-q")
