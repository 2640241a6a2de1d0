"""`gemma-sql ask` reads its SQL out and says how sure it is (issue 34): `explanation`,
`confidence` and `unmatched` in --json, the same on stderr without it. The pipeline is the
real one, over the bundled Chinook; the engine is scripted (tests/fakes.py)."""

from __future__ import annotations

import json

import pytest
from fakes import ScriptedSampler
from typer.testing import CliRunner

from model.samples import CHINOOK

QUESTION = "Name the top 10 albums with the highest sales amount"
SQL = ("SELECT T1.Title FROM albums AS T1 JOIN tracks AS T2 ON T1.AlbumId = T2.AlbumId "
       "GROUP BY T1.AlbumId ORDER BY SUM(T2.UnitPrice) DESC LIMIT 10")
OTHER = "SELECT Title FROM albums LIMIT 10"


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The greedy answer ranks albums by their tracks' prices; of the 4 answers drawn beside
    it, 3 agree with it and 1 returns something else."""
    import model.llm.decoding.loading

    engine = ScriptedSampler([SQL, SQL, SQL, OTHER], SQL)
    monkeypatch.setattr(model.llm.decoding.loading, "load_engine", lambda *a, **k: engine)


def ask(*options: str) -> tuple[int, str, str]:
    from tui.cli import app

    result = CliRunner().invoke(app, ["ask", str(CHINOOK), QUESTION, "--budget", "0",
                                      *options])
    return result.exit_code, result.stdout, result.stderr


def test_ask_json_reads_the_sql_out_and_says_how_sure(scripted: None) -> None:
    code, out, err = ask("--json")
    assert code == 0, err
    answer = json.loads(out)
    assert "the sum of tracks.UnitPrice" in answer["explanation"]
    assert "for each album" in answer["explanation"]
    assert answer["confidence"] == {"kind": "agree", "agreeing": 4, "drawn": 5,
                                    "phrase": "4 of 5 answers agree"}
    assert answer["unmatched"] == ["sales"]


def test_ask_prints_the_reading_and_the_verdict_on_stderr(scripted: None) -> None:
    code, out, err = ask()
    assert code == 0, err
    assert "gemma-sql: reading: Shows albums.Title for each album" in err
    assert "gemma-sql: 4 of 5 answers agree" in err
    assert "'sales': nothing by that name in this database" in err
    assert "reading" not in out  # stdout carries the SQL alone
