"""The app and both command lines open their engine through model/llm/open.py, and only so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scripted_server import answering, models, scripted_server
from typer.testing import CliRunner

import model.llm.open
from tui import workers
from tui.cli import app
from tui.messages import ModelReady, ModelStatus


def test_the_app_and_both_command_lines_open_their_engine_through_it(
        chinook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real = model.llm.open.open_engine

    def recording(*args: Any, **kwargs: Any) -> Any:
        engine = real(*args, **kwargs)
        opened.append(engine.name)
        return engine

    monkeypatch.setattr(model.llm.open, "open_engine", recording)
    data = tmp_path / "q.jsonl"
    data.write_text(f'{{"question": "How many albums?", "sql": "SELECT count(*) FROM albums",'
                    f' "db": "{chinook}"}}\n')
    posted: list[object] = []
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": answering([" SELECT count(*) FROM albums"])}) as s:
        workers.load_model(None, None, None, posted.append, endpoint=s.url)
        asked = CliRunner().invoke(app, ["ask", str(chinook), "How many albums?",
                                         "--endpoint", s.url, "--no-check-runs"])
        scored = CliRunner().invoke(app, ["eval", str(data), "--endpoint", s.url,
                                          "--no-check-runs", "--json"])
    assert asked.exit_code == 0 and scored.exit_code == 0, asked.output + scored.output
    assert opened == ["gemma-sql"] * 3
    assert isinstance(posted[0], ModelStatus) and isinstance(posted[1], ModelReady)
