"""Execution accuracy on a small real SQLite file with known gold/pred pairs."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from finetune.eval import GoldError, compare, evaluate, has_order_by, same_result
from model.sqlite.db import Database


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price REAL, kind TEXT);
        INSERT INTO item VALUES (1, 'pen', 1.5, 'office'), (2, 'ink', 0.1, NULL),
            (3, 'pad', 3.25, 'office'), (4, 'pen', 0.2, 'gift'), (5, 'cup', NULL, 'gift');
    """)
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def db(db_file: Path) -> Iterator[Database]:
    database = Database.open(db_file)
    yield database
    database.close()


def test_order_matters_only_when_the_gold_orders(db: Database) -> None:
    ordered = "SELECT name FROM item ORDER BY price DESC"
    assert compare(db, ordered, "SELECT name FROM item ORDER BY price DESC") == (True, None)
    assert compare(db, ordered, "SELECT name FROM item ORDER BY price ASC") == (False, None)
    # unordered gold: any order of the same rows is right
    assert compare(db, "SELECT name FROM item", ordered) == (True, None)
    assert compare(db, "SELECT name FROM item", "SELECT name FROM item ORDER BY name") == (
        True, None)


def test_order_by_inside_a_subquery_is_not_top_level() -> None:
    assert has_order_by("SELECT name FROM item ORDER BY price")
    assert has_order_by("SELECT a FROM x UNION SELECT b FROM y ORDER BY 1")
    assert not has_order_by("SELECT name FROM (SELECT name FROM item ORDER BY price LIMIT 2)")
    assert not has_order_by("SELECT count(*) FROM item WHERE id IN "
                            "(SELECT id FROM item ORDER BY price LIMIT 2)")


def test_results_are_multisets(db: Database) -> None:
    # 'pen' twice in the gold; DISTINCT drops one: wrong
    assert compare(db, "SELECT name FROM item", "SELECT DISTINCT name FROM item") == (
        False, None)
    assert compare(db, "SELECT name FROM item WHERE name = 'pen'",
                   "SELECT 'pen' UNION ALL SELECT 'pen'") == (True, None)


def test_nulls_compare_as_values(db: Database) -> None:
    assert compare(db, "SELECT kind FROM item", "SELECT kind FROM item") == (True, None)
    assert compare(db, "SELECT kind FROM item", "SELECT coalesce(kind, '') FROM item") == (
        False, None)
    assert compare(db, "SELECT price FROM item WHERE price IS NULL",
                   "SELECT NULL") == (True, None)


def test_floats_are_rounded_and_ints_equal_floats(db: Database) -> None:
    assert compare(db, "SELECT sum(price) FROM item WHERE price < 1",
                   "SELECT 0.1 + 0.2") == (True, None)  # 0.30000000000000004
    assert compare(db, "SELECT count(*) FROM item", "SELECT 5.0") == (True, None)


def test_failing_pred_is_invalid_and_failing_gold_raises(db: Database) -> None:
    correct, error = compare(db, "SELECT name FROM item", "SELECT nme FROM item")
    assert not correct and error and "nme" in error
    assert compare(db, "SELECT 1", "") == (False, "no SQL")
    correct, error = compare(db, "SELECT 1", "DELETE FROM item")  # read-only: refused
    assert not correct and error
    with pytest.raises(GoldError):
        compare(db, "SELECT nope FROM item", "SELECT 1")


@dataclass
class FakeAnswer:
    sql: str
    corrected: tuple[str, ...] = ()
    repaired: bool = False
    focused: bool = False
    mended: tuple[str, ...] = ()
    out_of_time: str = ""
    alternatives: tuple[Any, ...] = ()
    voted: bool = False
    agreed: str = ""
    linked: tuple[str, ...] = ()


@dataclass
class FakeAlternative:
    sql: str


def test_evaluate_excludes_failing_golds_and_reports(
    db_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole run with a stand-in for pipeline.ask (it maps each question to a fixed SQL)."""
    preds = {"how many items": "SELECT count(*) FROM item", "names": "SELECT nme FROM item",
             "kinds": "SELECT kind FROM item", "broken gold": "SELECT 1"}
    fake = types.ModuleType("model.llm.pipeline.ask")

    def ask(engine: Any, db: Database, question: str, settings: Any) -> FakeAnswer:
        assert engine == "engine" and db.path.name == "shop.sqlite"
        return FakeAnswer(preds[question])

    fake.ask = ask  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "model.llm.pipeline.ask", fake)
    data = tmp_path / "data" / "eval.jsonl"
    data.parent.mkdir()
    lines = [
        {"question": "how many items", "sql": "SELECT count(*) FROM item", "db": "../shop.sqlite"},
        {"question": "names", "sql": "SELECT name FROM item", "db": str(db_file)},
        {"question": "kinds", "sql": "SELECT DISTINCT kind FROM item", "db": "../shop.sqlite"},
        {"question": "broken gold", "sql": "SELECT nope FROM item", "db": "../shop.sqlite"},
    ]
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = evaluate(data, "engine", model_name="fake")
    s = report.summary()
    assert s["n"] == 3 and s["gold_failed"] == 1
    assert s["execution_accuracy"] == pytest.approx(1 / 3)
    assert s["valid_sql_rate"] == pytest.approx(2 / 3)
    out = report.to_json()
    assert set(out) >= {"execution_accuracy", "n", "valid_sql_rate", "mean_seconds",
                        "gold_failed", "model", "records"}
    assert set(out["records"][0]) >= {"question", "gold", "pred", "correct", "error", "seconds"}
    assert [r["correct"] for r in out["records"]] == [True, False, False]


def test_db_id_resolves_against_db_root(tmp_path: Path, db_file: Path) -> None:
    from finetune.eval import read_items

    root = tmp_path / "root"
    (root / "shop").mkdir(parents=True)
    shutil.copy(db_file, root / "shop" / "shop.sqlite")
    data = tmp_path / "e.jsonl"
    data.write_text(json.dumps({"question": "q", "sql": "SELECT 1", "db_id": "shop"}) + "\n")
    [item] = list(read_items(data, root))
    assert item.db == root / "shop" / "shop.sqlite"
    with pytest.raises(ValueError, match="--db-root"):
        list(read_items(data, None))


def test_columns_may_come_in_any_order(db: Database) -> None:
    # Spider's test-suite evaluation: the same result with its columns in another order is right
    gold = "SELECT kind, avg(price) FROM item GROUP BY kind"
    assert compare(db, gold, "SELECT avg(price), kind FROM item GROUP BY kind") == (True, None)
    assert compare(db, "SELECT id, name FROM item ORDER BY id",
                   "SELECT name, id FROM item ORDER BY id") == (True, None)
    # ...but each column must still be the gold's: same values, not merely the same count
    assert compare(db, gold, "SELECT sum(price), kind FROM item GROUP BY kind") == (False, None)
    assert compare(db, "SELECT id, name FROM item", "SELECT id, kind FROM item") == (False, None)
    assert compare(db, "SELECT id, name FROM item", "SELECT id FROM item") == (False, None)
    # rows must stay whole: columns that match one by one but pair differently are wrong
    assert compare(db, "SELECT id, id + 1 FROM item",
                   "SELECT id, (id % 5) + 2 FROM item") == (False, None)


def test_many_identical_columns_do_not_blow_up() -> None:
    width = 40
    gold = [tuple([None] * width)] * 3
    assert same_result(gold, list(gold), ordered=True)
    pred = [tuple([None] * (width - 1) + [1])] * 3
    assert not same_result(gold, pred, ordered=False)
    shifted = [tuple(range(width))] * 2
    assert same_result(shifted, [tuple(reversed(range(width)))] * 2, ordered=False)


def test_top3_counts_the_next_two_alternatives(
    db_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right when the answer or one of the next two alternatives is; the fourth is not shown."""
    wrong = "SELECT name FROM item WHERE id = 1"
    alternatives = {
        "second": [wrong, "SELECT count(*) FROM item", "SELECT count(*) FROM item"],
        "third": [wrong, "SELECT 0", "SELECT count(*) FROM item"],
        "fourth": [wrong, "SELECT 0", "SELECT 1", "SELECT count(*) FROM item"],
    }
    fake = types.ModuleType("model.llm.pipeline.ask")

    def ask(engine: Any, db: Database, question: str, settings: Any) -> FakeAnswer:
        sqls = alternatives[question]
        return FakeAnswer(sqls[0], alternatives=tuple(FakeAlternative(s) for s in sqls))

    fake.ask = ask  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "model.llm.pipeline.ask", fake)
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps({"question": q, "sql": "SELECT count(*) FROM item",
                                        "db": str(db_file)}) + "\n" for q in alternatives))
    report = evaluate(data, "engine")
    assert [(r.correct, r.top3) for r in report.records] == [
        (False, True), (False, True), (False, False)]
    assert report.summary()["top3_accuracy"] == pytest.approx(2 / 3)
    assert report.records[2].alternatives == [wrong, "SELECT 0", "SELECT 1"]


@pytest.mark.parametrize(("bad", "reason"), [
    ({"question": "q", "sql": "SELECT 1", "db": "missing.sqlite"}, "missing.sqlite: no such file"),
    ({"question": "q", "db": "shop.sqlite"}, "needs a `sql` string"),
    (["not", "an", "object"], "not a JSON object"),
    ("{not json", "not JSON"),
], ids=["missing db", "no sql", "not an object", "not JSON"])
def test_a_bad_line_is_one_error_before_any_question_is_asked(
    db_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: Any, reason: str
) -> None:
    """Validated first: the error names the file and line, and nothing was scored (no report
    is lost to a traceback after an hour of questions)."""
    asked: list[str] = []
    fake = types.ModuleType("model.llm.pipeline.ask")
    fake.ask = lambda engine, db, question, *a, **k: asked.append(question)  # type: ignore
    monkeypatch.setitem(sys.modules, "model.llm.pipeline.ask", fake)
    good = {"question": "how many items", "sql": "SELECT count(*) FROM item", "db": "shop.sqlite"}
    data = tmp_path / "eval.jsonl"
    data.write_text(json.dumps(good) + "\n\n" + (bad if isinstance(bad, str) else json.dumps(bad))
                    + "\n")
    with pytest.raises(ValueError) as error:
        evaluate(data, "engine", model_name="fake")
    expected = f"{tmp_path}/{reason}" if reason.endswith("no such file") else reason
    assert str(error.value) == f"{data}:3: {expected}"
    assert asked == []
