"""`--endpoint` on the command line: `ask` and `eval` through a real HTTP server (scripted:
tests/scripted_server.py) give what the local path gives, and every failure is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from scripted_server import Handler, answering, models, scripted_server
from typer.testing import CliRunner

from model.llm.pipeline.settings import DEFAULT
from tui.cli import app

GEMMA_SQL = Path(sys.executable).parent / "gemma-sql"
COUNT_ALBUMS = [" SELECT", " count(*)", " FROM", " albums"]


def test_ask_json_through_an_endpoint_gives_the_local_fields(chinook: Path) -> None:
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": answering(COUNT_ALBUMS)}) as server:
        result = CliRunner().invoke(app, ["ask", str(chinook), "How many albums are there?",
                                          "--endpoint", server.url, "--run", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    # as the local path (tests/model/llm/pipeline/test_ask.py, test_cli_json_with_the_real_model)
    assert set(out) == {"question", "sql", "columns", "rows", "error", "model", "dtype",
                        "seconds", "alternatives", "explanation", "confidence", "unmatched"}
    assert (out["sql"], out["rows"], out["error"]) == ("SELECT\n  COUNT(*)\nFROM albums",
                                                       [[347]], None)
    assert out["model"] == "gemma-sql"
    # the greedy answer and those drawn to vote on came from the server (one request with `n`)
    assert [a["answers"] for a in out["alternatives"]] == [1 + DEFAULT.samples]
    assert "How many albums are there?" in server.requests[-1].body["prompt"]


def test_an_answer_the_served_model_is_sure_of_is_taken_without_a_draw(chinook: Path) -> None:
    # as with a local model (model.llm.pipeline.vote.sure_of): every token at p > 0.5, and a row
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": answering(COUNT_ALBUMS, logprob=-0.1)}) as server:
        result = CliRunner().invoke(app, ["ask", str(chinook), "How many albums are there?",
                                          "--endpoint", server.url, "--json"])
    assert result.exit_code == 0, result.output
    assert [a["answers"] for a in json.loads(result.stdout)["alternatives"]] == [1]
    assert [r.body["stream"] for r in server.requests if r.path == "/v1/completions"] == [True]


def test_the_endpoint_may_come_from_the_environment(chinook: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": answering(COUNT_ALBUMS)}) as server:
        monkeypatch.setenv("GEMMA_SQL_ENDPOINT", server.url)
        result = CliRunner().invoke(app, ["ask", str(chinook), "How many albums are there?"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "SELECT\n  COUNT(*)\nFROM albums;\n"


def test_an_unreachable_endpoint_is_one_line_exit_1(chinook: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        [str(GEMMA_SQL), "ask", str(chinook), "How many albums?", "--endpoint",
         f"http://127.0.0.1:{port}/v1"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "GEMMA_SQL_CACHE": str(tmp_path / "no-cache")})
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (f"gemma-sql: cannot reach http://127.0.0.1:{port}/v1: connection "
                             "refused (is the server running?)\n")
    assert not (tmp_path / "no-cache").exists()  # no silent fall back to a local model


def test_a_server_failing_mid_answer_is_one_line_exit_1(chinook: Path) -> None:
    def fail(h: Handler, body: dict[str, Any]) -> None:
        h.json({"error": {"message": "model overloaded"}}, 503)

    with scripted_server({"/v1/models": models("gemma-sql"), "/v1/completions": fail}) as server:
        result = CliRunner().invoke(app, ["ask", str(chinook), "How many albums?",
                                          "--endpoint", server.url])
    assert result.exit_code == 1
    assert result.stderr == f"gemma-sql: {server.url} answered 503: model overloaded\n"


@pytest.mark.parametrize("option", [["--model", "gemma-3-270m"], ["--device", "cpu"]])
def test_a_local_model_option_with_an_endpoint_is_a_usage_error(chinook: Path,
                                                                 option: list[str]) -> None:
    for command in (["ask", str(chinook), "q?"], ["eval", str(chinook)], ["open", str(chinook)]):
        result = CliRunner().invoke(app, [*command, "--endpoint", "http://h:1/v1", *option])
        assert result.exit_code == 2
        assert result.stderr.startswith("gemma-sql: --endpoint asks a server: --model and "
                                        "--device are for a model loaded here")


def test_eval_through_an_endpoint_scores_the_set(chinook: Path, tmp_path: Path) -> None:
    data = tmp_path / "set.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in [
        {"question": "How many albums are there?", "sql": "SELECT count(*) FROM albums",
         "db": str(chinook)},
        {"question": "How many artists are there?", "sql": "SELECT count(*) FROM artists",
         "db": str(chinook)},
    ]))
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": answering(COUNT_ALBUMS)}) as server:
        result = CliRunner().invoke(app, ["eval", str(data), "--endpoint", server.url,
                                          "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["n"], report["execution_accuracy"]) == (2, 0.5)
    assert report["model"] == f"gemma-sql @ {server.url}"


ESC_TITLE = "\x1b]2;PWNED\x07"  # would retitle the terminal window


def test_a_servers_sql_and_error_text_reach_the_terminal_drawn(chinook: Path) -> None:
    """What a server sends is data: printed with its control characters drawn (model/text.py),
    never obeyed by the terminal, on stdout (the SQL) and on stderr (its error)."""
    hostile = [" SELECT", f" '{ESC_TITLE}'", " AS", " t"]
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": answering(hostile)}) as server:
        result = CliRunner().invoke(app, ["ask", str(chinook), "Say hi", "--endpoint",
                                          server.url])
    assert result.exit_code == 0, result.output
    assert "␛]2;PWNED␇" in result.stdout
    assert not any(c in result.stdout + result.stderr for c in "\x1b\x07")

    def fail(h: Handler, body: dict[str, Any]) -> None:
        h.json({"error": {"message": f"overloaded {ESC_TITLE}\x9b7m"}}, 503)

    with scripted_server({"/v1/models": models("gemma-sql"), "/v1/completions": fail}) as server:
        result = CliRunner().invoke(app, ["ask", str(chinook), "Say hi", "--endpoint",
                                          server.url])
    assert result.exit_code == 1
    assert result.stderr == f"gemma-sql: {server.url} answered 503: overloaded ␛]2;PWNED␇\ufffd7m\n"


def test_an_api_key_for_plain_http_to_another_machine_is_warned_of(chinook: Path) -> None:
    result = subprocess.run(
        [str(GEMMA_SQL), "ask", str(chinook), "How many albums?", "--endpoint",
         "http://gpu-box.invalid:8000/v1"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "GEMMA_SQL_API_KEY": "sk-secret"})
    assert result.returncode == 1
    warning, error = result.stderr.splitlines()
    assert warning == ("gemma-sql: warning: the API key ($GEMMA_SQL_API_KEY) goes to "
                       "gpu-box.invalid over plain http, readable on the way: use https")
    assert error.startswith("gemma-sql: cannot reach http://gpu-box.invalid:8000/v1")
