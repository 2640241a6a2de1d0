"""Loading, rendering, labelling and batching training data; Spider preparation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finetune.data import (
    IGNORE,
    DataError,
    Example,
    LoadReport,
    choose_heldout,
    collate,
    length_batches,
    load_examples,
    prepare_spider,
    read_rows,
    tokenize,
    tokenize_all,
)
from model.llm.prompting.prompt import training_text

# shared/ sits beside the checkout (here and in CI); the data is not part of the repo.
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SPIDER = SHARED / "train" / "spider_train.jsonl"
SPIDER_DBS = SHARED / "spider_train_databases"
needs_spider = pytest.mark.skipif(not SPIDER.exists(), reason="Spider data not on this machine")

# The first row of Spider train, as the data set has it.
REAL = Example(
    "How many heads of the departments are older than 56 ?",
    'CREATE TABLE "head" (\n"head_ID" int,\n"name" text,\n"born_state" text,\n"age" real,\n'
    'PRIMARY KEY ("head_ID")\n);',
    "SELECT count(*) FROM head WHERE age  >  56",
)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gretel_columns_and_bad_rows_are_counted(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "gretel.jsonl", [
        {"sql_prompt": "How many?", "sql_context": "CREATE TABLE t (a int);",
         "sql": "SELECT count(*) FROM t", "domain": "x"},
        {"sql_prompt": "", "sql_context": "CREATE TABLE t (a int);", "sql": "SELECT 1"},
        {"prompt": "wrong layout"},
        {"sql_prompt": "Q", "sql_context": "C", "sql": None},
    ])
    with path.open("a") as f:
        f.write("{not json\n42\n[1, 2]\n")  # the last two JSON, but not objects
    examples, report = load_examples(path)
    assert examples == [Example("How many?", "CREATE TABLE t (a int);", "SELECT count(*) FROM t")]
    assert report.read == 7 and report.kept == 1
    assert report.skipped == {"empty field": 2, "missing columns": 1, "not JSON": 1,
                              "not a JSON object": 2}
    assert "1 of 7 rows kept" in report.line()


def test_question_context_sql_columns_from_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist([
        {"question": "Q1", "context": "C1", "sql": "SELECT 1", "db_id": "d"},
        {"question": "Q2", "context": "C2", "sql": "SELECT 2", "db_id": "d"},
    ]), path)
    examples, report = load_examples(path)
    assert [e.sql for e in examples] == ["SELECT 1", "SELECT 2"]
    assert examples[0].db_id == "d" and report.kept == 2


def test_missing_local_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        list(read_rows(tmp_path / "absent.jsonl"))


def test_offline_hub_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as e:
        list(read_rows("gretelai/synthetic_text_to_sql-not-cached-here"))
    assert "\n" not in str(e.value) and "local" in str(e.value)


def test_labels_mask_the_prompt_exactly(tok: Any) -> None:
    prompt, answer = training_text(REAL.question, REAL.context, REAL.sql)
    t = tokenize(tok, REAL)
    n_prompt = len(tok(prompt)["input_ids"])
    assert t.input_ids[0] == tok.bos_token_id  # as inference encodes the prompt
    assert t.labels[:n_prompt] == [IGNORE] * n_prompt
    assert t.labels[n_prompt:] == t.input_ids[n_prompt:]
    answer_ids = [i for i in t.labels if i != IGNORE]
    assert tok.decode(answer_ids) == tok.decode(tok(answer, add_special_tokens=False)["input_ids"])
    assert answer.endswith("<end_of_turn>") and answer_ids[-1] == tok.convert_tokens_to_ids(
        "<end_of_turn>")
    # prompt + answer is the seed format, and the prompt is what inference sends
    assert tok.decode(t.input_ids, skip_special_tokens=False) == "<bos>" + prompt + answer


def test_over_length_examples_are_skipped_and_counted(tok: Any) -> None:
    report = LoadReport(read=2, kept=2)
    long = Example("q " * 200, REAL.context, REAL.sql)
    out = tokenize_all(tok, [REAL, long], max_length=len(tokenize(tok, REAL)), report=report)
    assert len(out) == 1 and report.kept == 1
    assert sum(report.skipped.values()) == 1


def test_length_batches_cover_everything_once_and_are_deterministic() -> None:
    lengths = [5, 100, 7, 98, 6, 99, 50, 51, 52]
    a = length_batches(lengths, 3, seed=1, epoch=0)
    assert sorted(i for b in a for i in b) == list(range(len(lengths)))
    assert a == length_batches(lengths, 3, seed=1, epoch=0)
    assert a != length_batches(lengths, 3, seed=1, epoch=1) or len(a) < 3
    for b in a:  # similar lengths together
        spread = max(lengths[i] for i in b) - min(lengths[i] for i in b)
        assert spread <= 3


def test_collate_pads_right_with_ignored_labels(tok: Any) -> None:
    other = Example("Q?", "CREATE TABLE t (a int);", "SELECT a FROM t")
    items = [tokenize(tok, REAL), tokenize(tok, other)]
    batch = collate(items, pad_id=0)
    short = min(range(2), key=lambda i: len(items[i]))
    n = len(items[short])
    assert batch["attention_mask"][short, n:].sum() == 0
    assert (batch["labels"][short, n:] == IGNORE).all()


def test_heldout_choice_is_fixed_by_seed() -> None:
    ids = [f"db{i}" for i in range(40)]
    assert choose_heldout(ids, 15, 0) == choose_heldout(reversed(ids), 15, 0)
    assert choose_heldout(ids, 15, 0) != choose_heldout(ids, 15, 1)


@needs_spider
def test_spider_prep_holds_out_whole_databases(tmp_path: Path) -> None:
    from model.llm.prompting.context import context_for
    from model.sqlite.db import Database

    train, held = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    split = prepare_spider(SPIDER, SPIDER_DBS, train, held, n_heldout=15, seed=0)
    train_rows = [json.loads(line) for line in train.read_text().splitlines()]
    eval_rows = [json.loads(line) for line in held.read_text().splitlines()]
    train_dbs, eval_dbs = {r["db_id"] for r in train_rows}, {r["db_id"] for r in eval_rows}
    assert len(eval_dbs) == 15 and not train_dbs & eval_dbs
    assert set(split.heldout_dbs) == eval_dbs
    assert split.skipped["database file missing"] > 0  # baseball_1, soccer_1
    assert split.skipped["gold does not execute"] == 3
    assert "baseball_1" not in train_dbs | eval_dbs
    assert set(eval_rows[0]) == {"question", "sql", "db_id"}
    assert split.train == len(train_rows) and split.eval == len(eval_rows)
    # the train context is exactly what inference sends for that question
    row = train_rows[0]
    db = Database.open(SPIDER_DBS / row["db_id"] / f"{row['db_id']}.sqlite")
    try:
        assert row["context"] == context_for(db.conn, db.schema(), row["question"]).text
    finally:
        db.close()
    # deterministic
    again = prepare_spider(SPIDER, SPIDER_DBS, tmp_path / "t2.jsonl", tmp_path / "e2.jsonl",
                           n_heldout=15, seed=0)
    assert again.heldout_dbs == split.heldout_dbs
    assert (tmp_path / "t2.jsonl").read_text() == train.read_text()
