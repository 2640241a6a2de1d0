"""`gemma-sql [open] DB`: bad inputs exit 2 with one line naming the file, and create nothing."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from model.samples import CHINOOK

GEMMA_SQL = Path(sys.executable).parent / "gemma-sql"


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GEMMA_SQL), "--no-model", *map(str, args)], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def assert_one_line_error(result: subprocess.CompletedProcess[str], path: Path) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gemma-sql: ") and path.name in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_missing_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    result = run(path)
    assert_one_line_error(result, path)
    assert "no such file" in result.stderr
    assert not path.exists()


def test_explicit_open_command_behaves_the_same(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    result = subprocess.run([str(GEMMA_SQL), "open", "--no-model", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert_one_line_error(result, path)
    assert not path.exists()


def _directory(tmp: Path) -> Path:
    (tmp / "a_dir").mkdir()
    return tmp / "a_dir"


def _fifo(tmp: Path) -> Path:
    path = tmp / "pipe.db"
    os.mkfifo(path)
    return path


def _text(tmp: Path) -> Path:
    path = tmp / "notes.txt"
    path.write_text("just some text, not a database\n")
    return path


def _empty(tmp: Path) -> Path:
    path = tmp / "empty.db"
    path.touch()
    return path


def _truncated(tmp: Path) -> Path:
    path = tmp / "truncated.db"
    shutil.copy(CHINOOK, path)
    with path.open("r+b") as f:
        f.truncate(2000)
    return path


def _scrambled(tmp: Path) -> Path:
    """A valid header page, every other page garbage."""
    path = tmp / "scrambled.db"
    data = bytearray(CHINOOK.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = bytes((b * 7 + 13) & 255 for b in data[page:])
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_directory, "is a directory"),
        (_text, "not a SQLite database"),
        (_empty, "empty file"),
        (_truncated, "malformed"),
        (_scrambled, "malformed"),
        (_fifo, "is a FIFO"),  # opening it to read would wait forever
    ],
    ids=["directory", "text", "empty", "truncated", "scrambled", "fifo"],
)
def test_bad_files_exit_2_naming_the_file(
    tmp_path: Path, make: Callable[[Path], Path], reason: str
) -> None:
    path = make(tmp_path)
    before = path.read_bytes() if path.is_file() else None
    result = run(path)
    assert_one_line_error(result, path)
    assert reason in result.stderr
    if before is not None:
        assert path.read_bytes() == before  # opening never "repairs" or rewrites a file


def test_locked_database_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    shutil.copy(CHINOOK, path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = run(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_one_line_error(result, path)
    assert "locked" in result.stderr


def test_write_flag_still_refuses_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    result = run("--write", path)
    assert_one_line_error(result, path)
    assert not path.exists()


def _unreadable(tmp: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root reads a chmod 000 file")
    path = tmp / "secret.db"
    shutil.copy(CHINOOK, path)
    path.chmod(0)
    return path


def _missing(tmp: Path) -> Path:
    return tmp / "missing.db"


BAD_PATHS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (_missing, "no such file"),
    "directory": (_directory, "is a directory"),
    "fifo": (_fifo, "is a FIFO"),
    "unreadable": (_unreadable, "Permission denied"),
    "text": (_text, "not a SQLite database"),
    "empty": (_empty, "empty file"),
}
# eval reads JSONL, so a text or an empty file is no bad path for it.
COMMANDS = {"open": (["--no-model"], []), "ask": ([], ["how many albums?"]), "eval": ([], [])}


@pytest.mark.parametrize("kind", list(BAD_PATHS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_bad_path_is_one_line_exit_2_and_creates_nothing(
    tmp_path: Path, command: str, kind: str
) -> None:
    """Never a hang (a FIFO is not opened), a traceback or typer's usage box."""
    if command == "eval" and kind in ("text", "empty"):
        pytest.skip("a valid JSONL path for eval")
    make, reason = BAD_PATHS[kind]
    path = make(tmp_path)
    before = sorted(tmp_path.iterdir())
    options, rest = COMMANDS[command]
    result = subprocess.run([str(GEMMA_SQL), command, *options, str(path), *rest],
                            capture_output=True, text=True, timeout=60)
    assert_one_line_error(result, path)
    assert reason in result.stderr
    assert sorted(tmp_path.iterdir()) == before


def test_a_character_device_is_refused_without_reading_it() -> None:
    path = Path("/dev/zero")  # reading it would never end
    result = run(path)
    assert_one_line_error(result, path)
    assert "character device" in result.stderr


def test_a_hot_journal_says_how_to_roll_it_back(crashed_chinook: Path) -> None:
    path = crashed_chinook
    result = run(path)
    assert_one_line_error(result, path)
    assert ("has an unfinished write (a hot journal); open it once with --write to roll it back"
            in result.stderr)


def test_ask_run_draws_control_characters_in_its_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """`gemma-sql ask --run` prints a table for reading: data never reaches the terminal raw
    (an ESC]2;…BEL would retitle it)."""
    import types

    from typer.testing import CliRunner

    import model.llm.decoding.loading
    import model.llm.pipeline.ask
    from model.llm.pipeline.ask import Answer
    from tui.cli import app

    sql = "SELECT char(27)||']2;PWNED'||char(7) AS t, 'a'||char(155)||'b' AS \"c\""
    monkeypatch.setattr(model.llm.decoding.loading, "load_engine",
                        lambda *a, **k: types.SimpleNamespace(name="scripted"))
    monkeypatch.setattr(model.llm.pipeline.ask, "ask",
                        lambda engine, db, question, settings: Answer(question, sql))
    result = CliRunner().invoke(app, ["ask", str(CHINOOK), "anything", "--run"])
    assert result.exit_code == 0, result.output
    assert "␛]2;PWNED␇" in result.stdout and "a\ufffdb" in result.stdout
    assert not any(c in result.stdout for c in "\x1b\x07\x9b")


def test_open_and_eval_take_a_dtype_and_a_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typing import Any

    from typer.testing import CliRunner

    import finetune.eval
    import model.llm.decoding.loading
    import tui.app
    from finetune.eval import EvalReport
    from model.llm.pipeline.settings import DEFAULT_BUDGET_S
    from tui.cli import app

    seen: dict[str, dict[str, Any]] = {}

    class App:
        def __init__(self, database: Any, **kwargs: Any) -> None:
            seen["open"] = kwargs

        def run(self) -> None:
            pass

    def load_engine(*args: Any, **kwargs: Any) -> str:
        seen["load"] = kwargs
        return "engine"

    def evaluate(data: Path, engine: str, **kwargs: Any) -> EvalReport:
        seen["eval"] = kwargs
        return EvalReport("m", dtype="fp32")

    monkeypatch.setattr(tui.app, "GemmaSqlApp", App)
    monkeypatch.setattr(model.llm.decoding.loading, "load_engine", load_engine)
    monkeypatch.setattr(finetune.eval, "evaluate", evaluate)
    runner = CliRunner()
    assert runner.invoke(app, [str(CHINOOK), "--dtype", "bf16", "--budget", "0"]).exit_code == 0
    assert seen["open"]["dtype"] == "bf16" and seen["open"]["settings"].budget == 0
    assert runner.invoke(app, [str(CHINOOK)]).exit_code == 0
    assert seen["open"]["dtype"] is None and seen["open"]["settings"].budget == DEFAULT_BUDGET_S
    data = tmp_path / "eval.jsonl"
    data.write_text('{"question": "q", "sql": "SELECT 1", "db": "x.db"}\n')
    result = runner.invoke(app, ["eval", str(data), "--dtype", "FP32", "--budget", "8"])
    assert result.exit_code == 0, result.output
    assert seen["load"]["dtype"] == "fp32" and seen["eval"]["settings"].budget == 8
    assert "(fp32)" in result.stdout
    runner.invoke(app, ["eval", str(data)])
    assert seen["load"]["dtype"] is None and seen["eval"]["settings"].budget == 0  # eval: no limit
    assert runner.invoke(app, ["eval", str(data), "--budget", "-1"]).exit_code == 2


def test_an_open_error_quoting_a_hostile_name_draws_its_control_characters(
    tmp_path: Path,
) -> None:
    """SQLite's message quotes the schema: an ESC]2;…BEL in a name is drawn, never sent."""
    path = tmp_path / "hostile.db"
    shutil.copy(CHINOOK, path)
    name = "\x1b]2;PWNED\x07"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("INSERT INTO sqlite_master VALUES ('table', ?, ?, 0, 'CREATE TABLE (')",
                 (name, name))
    conn.close()
    result = run(path)
    assert_one_line_error(result, path)
    assert "␛]2;PWNED␇" in result.stderr and not any(c in result.stderr for c in "\x1b\x07")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unreadable_file_is_one_line_not_typers_usage_box(command: str) -> None:
    """Typer's own readability check printed a 6-line usage box; ours says it in one line.
    Root reads any file: then the command runs as nobody (setpriv), on a file in a folder
    nobody can enter."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root reads a chmod 000 file, and no setpriv to run as nobody")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "secret.db"
        shutil.copy(CHINOOK, path)
        path.chmod(0)
        Path(folder).chmod(0o755)
        options, rest = COMMANDS[command]
        result = subprocess.run([*prefix, str(GEMMA_SQL), command, *options, str(path), *rest],
                                capture_output=True, text=True, timeout=60)
    assert_one_line_error(result, path)
    assert "cannot read (Permission denied)" in result.stderr


ENDLESS = ("WITH RECURSIVE c(x) AS (SELECT started() UNION ALL SELECT x + 1 FROM c) "
           "SELECT count(*) FROM c")


def ask_endless(monkeypatch: pytest.MonkeyPatch, started: Callable[[], object]) -> None:
    """`ask` answers ENDLESS (a query that never ends), whose first step calls `started`."""
    import types

    import model.llm.decoding.loading
    import model.llm.pipeline.ask
    from model.llm.pipeline.ask import Answer
    from model.sqlite.db import Database

    def answer(engine: object, db: Database, question: str, *args: object,
               **kwargs: object) -> Answer:
        db.conn.create_function("started", 0, started)
        return Answer(question, ENDLESS)

    monkeypatch.setattr(model.llm.decoding.loading, "load_engine",
                        lambda *a, **k: types.SimpleNamespace(name="scripted", dtype="fp32"))
    monkeypatch.setattr(model.llm.pipeline.ask, "ask", answer)


@pytest.mark.parametrize("option", ["--run", "--chart"])
def test_ask_run_stops_a_query_past_its_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, option: str
) -> None:
    from typer.testing import CliRunner

    from tui.cli import app

    ask_endless(monkeypatch, lambda: 1)
    extra = [str(tmp_path / "c.png")] if option == "--chart" else []
    result = CliRunner().invoke(app, ["ask", str(CHINOOK), "count forever", option, *extra,
                                      "--timeout", "0.2"])
    assert result.exit_code == 1, result.output
    assert result.stderr == "gemma-sql: the query ran longer than 0.2 s (--timeout)\n"
    assert not (tmp_path / "c.png").exists()


@pytest.fixture
def python_sigint() -> Iterator[None]:
    """SIGINT raising KeyboardInterrupt, as in a fresh `gemma-sql` process: an earlier test's
    server (uvicorn) may have left a handler of its own in this one."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("python_sigint")
def test_ctrl_c_stops_ask_run_while_sqlite_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl+C (SIGINT) once the query runs: one line, exit 130, the query stopped."""
    import signal
    import threading

    from typer.testing import CliRunner

    from tui.cli import app

    started = threading.Event()

    def interrupt_once_running() -> None:
        if started.wait(60):
            os.kill(os.getpid(), signal.SIGINT)

    ask_endless(monkeypatch, lambda: started.set() or 1)
    threading.Thread(target=interrupt_once_running, daemon=True).start()
    result = CliRunner().invoke(app, ["ask", str(CHINOOK), "count forever", "--run",
                                      "--timeout", "0"])
    assert started.is_set()
    assert result.exit_code == 130, result.output
    assert result.stderr == "gemma-sql: interrupted\n"


@pytest.mark.usefixtures("python_sigint")
def test_ctrl_c_handed_to_the_sqlite_thread_stops_ask_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal's SIGINT goes to whichever thread the kernel picks: sent to the thread
    running SQLite, it stops the query as well (one endless join never saw it; only the
    --timeout ended the wait)."""
    import signal
    import threading
    import time

    from typer.testing import CliRunner

    from tui.cli import app

    sent = threading.Event()

    def interrupt_this_thread() -> int:
        if not sent.is_set():
            sent.set()
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        return 1

    ask_endless(monkeypatch, interrupt_this_thread)
    began = time.monotonic()
    result = CliRunner().invoke(app, ["ask", str(CHINOOK), "count forever", "--run",
                                      "--timeout", "60"])
    assert sent.is_set()
    assert result.exit_code == 130, result.output
    assert time.monotonic() - began < 30, "the interrupt waited for --timeout"
