"""`finetune sample`: the model's own right answers kept, resumably, on a real Spider database;
mixing them into training."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes import ScriptedEngine

from finetune.data import Example
from finetune.sample import asked_context, mix_kept, pending, read_questions, sample_file
from model.llm.pipeline.ask import ask
from model.llm.pipeline.settings import Settings
from model.llm.prompting.prompt import QUESTION_FIRST, build_prompt, one_line
from model.llm.protocol import GenerationStats, Sampled
from model.sqlite.db import Database

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SPIDER = SHARED / "train" / "spider_train.jsonl"
SPIDER_DBS = SHARED / "spider_train_databases"
pytestmark = pytest.mark.skipif(not SPIDER.exists(), reason="Spider data not on this machine")


class DrawingEngine:
    """Answers every question greedily with a wrong SQL and draws, for the gold `sql` of the
    prompt's question: the gold itself, the same again, a differently written right one, a
    wrong one and an unfinished one. Stops (as Ctrl+C would) at question `stop_at`."""

    name, device, dtype, prompt_layout = "drawing", "cpu", "fp32", QUESTION_FIRST

    def __init__(self, golds: dict[str, str], stop_at: int = -1) -> None:
        self.golds, self.stop_at = golds, stop_at
        self.asked: list[str] = []  # the prompts, in order
        self.last_stats = GenerationStats()

    def _gold(self, prompt: str) -> str:
        return next(sql for q, sql in self.golds.items() if f" {q} " in prompt)

    def stream(self, prompt: str, cancel: threading.Event | None = None,
               max_new_tokens: int = 256, shared: str = ""):  # noqa: ANN201
        if len(self.asked) == self.stop_at:
            raise KeyboardInterrupt
        self.asked.append(prompt)
        yield " SELECT 1"

    def sample(self, prompt: str, n: int = 4, temperature: float = 0.7,
               cancel: threading.Event | None = None, max_new_tokens: int = 128,
               shared: str = "", seed: int = 0) -> list[Sampled]:
        gold = self._gold(prompt)
        drawn = [gold, gold + " ", f"SELECT * FROM ({gold})", "SELECT 2", gold]
        return [Sampled(" " + text, -0.5, finished=i < 4) for i, text in enumerate(drawn)][:n]


def questions_file(tmp_path: Path, n: int, start: int = 0) -> Path:
    path = tmp_path / "train.jsonl"
    rows = [json.loads(line) for line in SPIDER.read_text().splitlines()[start: start + n]]
    path.write_text("".join(json.dumps({k: r[k] for k in ("question", "sql", "db_id")}) + "\n"
                            for r in rows))
    return path


def test_sample_keeps_distinct_right_answers_and_resumes_where_it_stopped(tmp_path: Path) -> None:
    # student_assessment: 9 tables, so each question is asked with its likeliest ones alone
    data, out = questions_file(tmp_path, 5, start=56), tmp_path / "kept.jsonl"
    questions = read_questions(data)
    golds = {q.question: q.sql for q in questions}

    first = DrawingEngine(golds, stop_at=2)
    with pytest.raises(KeyboardInterrupt):
        sample_file(first, pending(questions, out, SPIDER_DBS), SPIDER_DBS, out, k=5)
    assert len(first.asked) == 2
    with out.open("a") as f:
        f.write('{"question": "torn by a ki')  # a kill in the middle of a line

    again = DrawingEngine(golds)
    todo = pending(questions, out, SPIDER_DBS)
    assert [q.question for q in todo] == [q.question for q in questions[2:]]
    report = sample_file(again, todo, SPIDER_DBS, out, k=5)
    assert report.questions == 3 and len(again.asked) == 3
    assert pending(questions, out, SPIDER_DBS) == []  # a third run has nothing left

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # each question once, in order, its two right answers kept (the duplicate, the wrong one
    # and the unfinished one are not), each with the context it was asked with
    assert [r["question"] for r in rows] == [q.question for q in questions for _ in range(2)]
    db = Database.open(SPIDER_DBS / "student_assessment" / "student_assessment.sqlite")
    for r in rows:
        assert r["greedy"] == "SELECT 1" and r["greedy_correct"] is False
        assert r["sql"] in (one_line(r["gold"]), one_line(f"SELECT * FROM ({r['gold']})"))
        context = asked_context(db, r["question"], QUESTION_FIRST)
        assert r["context"] == context.text
    # the prompt is the first one `ask` sends for the question
    asked = again.asked[0]
    assert asked == build_prompt(questions[2].question, rows[4]["context"], QUESTION_FIRST)
    app_engine = ScriptedEngine(*[" " + questions[2].sql] * 4)
    ask(app_engine, db, questions[2].question, Settings(check_runs=False, budget=0))
    assert app_engine.prompts[0] == asked
    db.close()


def test_held_out_databases_are_never_sampled(tmp_path: Path) -> None:
    held = json.loads((Path("finetune/data/spider_heldout.jsonl")).read_text().splitlines()[0])
    data = tmp_path / "mixed.jsonl"
    data.write_text(json.dumps(held) + "\n" + questions_file(tmp_path, 1).read_text())
    todo = pending(read_questions(data), tmp_path / "kept.jsonl", SPIDER_DBS)
    assert [q.db_id for q in todo] == ["department_management"]


def test_questions_whose_database_is_missing_are_skipped_and_counted(tmp_path: Path) -> None:
    """Spider's soccer_1 is in the training questions but not under the shared databases (its
    file is over 4 MiB): its questions are left out up front, not a crash mid-run."""
    from finetune.sample import SampleReport

    soccer = next(line for line in SPIDER.read_text().splitlines() if '"soccer_1"' in line)
    assert not (SPIDER_DBS / "soccer_1" / "soccer_1.sqlite").exists()
    data = tmp_path / "mixed.jsonl"
    data.write_text(soccer + "\n" + questions_file(tmp_path, 1).read_text())
    report = SampleReport()
    todo = pending(read_questions(data), tmp_path / "kept.jsonl", SPIDER_DBS, report=report)
    assert [q.db_id for q in todo] == ["department_management"]
    assert report.skipped_missing == 1 and "1 whose database is missing" in report.line()


def test_mixing_weights_the_questions_the_greedy_answer_gets_wrong(tmp_path: Path) -> None:
    def row(q: str, sql: str | None, greedy_correct: bool) -> str:
        return json.dumps({"question": q, "db_id": "d", "gold": "SELECT a FROM t",
                           "sql": sql, "greedy_correct": greedy_correct, "context": "C"}) + "\n"

    kept = tmp_path / "kept.jsonl"
    kept.write_text(row("hard", "SELECT t.a FROM t", False) + row("hard", "SELECT a FROM t", False)
                    + row("easy", "SELECT (a) FROM t", True) + row("easy", "SELECT a FROM t AS x",
                                                                    True)
                    + row("none", None, False))
    gold = [Example("hard", "whole schema", "SELECT a FROM t", "d")]
    mixed = mix_kept(gold, kept, weight=3)
    assert mixed[0] == gold[0]
    sqls = [(e.question, e.sql) for e in mixed[1:]]
    assert sqls == ([("hard", "SELECT t.a FROM t")] * 3 + [("hard", "SELECT a FROM t")] * 3
                    + [("easy", "SELECT (a) FROM t")] + [("none", "SELECT a FROM t")] * 3)
    assert all(e.context == "C" for e in mixed[1:])


def test_training_with_kept_answers_sees_them_beside_the_gold(
        tok: Any, rows_file: Path, tmp_path: Path) -> None:
    from tiny import tiny_gemma

    from finetune.config import TrainConfig
    from finetune.data import DataError
    from finetune.train import train

    kept = tmp_path / "kept.jsonl"
    kept.write_text(json.dumps({"question": "How many singers are there?", "db_id": "s",
                                "gold": "SELECT count(*) FROM singer", "context": "C",
                                "sql": "SELECT count(id) FROM singer", "greedy_correct": False})
                    + "\n")
    cfg = TrainConfig(base="tiny", quant="none", data=str(rows_file), output=str(tmp_path / "o"),
                      batch_size=2, max_steps=1, save_every=0, lora_r=4, lora_alpha=8,
                      gradient_checkpointing=False, kept=str(kept), kept_weight=2)
    metrics = train(cfg, tiny_gemma(tok), tok, say=lambda _: None)
    assert metrics["examples"] == 6 + 2 * 2  # the gold rows; the kept answer and gold, twice
    assert metrics["data_report"] == "10 of 10 examples kept (6 rows, 4 from --kept)"

    kept.write_text('{"question": "no gold"}\n')
    with pytest.raises(DataError, match=r"kept.jsonl:1: not a row of `finetune sample`"):
        train(replace(cfg, output=str(tmp_path / "bad")), tiny_gemma(tok), tok)
    assert not (tmp_path / "bad").exists()


def test_sample_command_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tui.cli import app

    runner = CliRunner()
    out = tmp_path / "kept.jsonl"
    missing = runner.invoke(app, ["finetune", "sample", str(tmp_path / "nope.jsonl"),
                                  "--db-root", str(SPIDER_DBS), "--out", str(out)])
    assert missing.exit_code == 2 and "nope.jsonl" in missing.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "sql": "SELECT 1"}\n')
    result = runner.invoke(app, ["finetune", "sample", str(bad), "--db-root", str(SPIDER_DBS),
                                 "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"gemma-sql: {bad}:1: needs question, sql and db_id"]
    assert not out.exists()
