"""The execution reward on a real Spider training database (shared/, beside the checkout)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from finetune.eval import GoldError
from finetune.reward import PARTIAL, Gold, reward
from model.sqlite.db import Database

# shared/ sits beside the checkout (here and in CI); the data is not part of the repo.
SPIDER_DBS = Path(__file__).resolve().parents[3] / "shared" / "data" / "spider_train_databases"
DB = SPIDER_DBS / "department_management" / "department_management.sqlite"
pytestmark = pytest.mark.skipif(not DB.exists(), reason="Spider data not on this machine")

GOLD = "SELECT name FROM head WHERE age > 56"  # 5 of the 10 heads


@pytest.fixture
def db() -> Iterator[Database]:
    opened = Database.open(DB)
    yield opened
    opened.close()


def test_the_gold_result_however_written_earns_one(db: Database) -> None:
    gold = Gold.of(db, GOLD)
    assert reward(db, gold, GOLD) == 1.0
    assert reward(db, gold, "SELECT T.name FROM head AS T WHERE 56 < T.age;") == 1.0


def test_partial_credit_for_the_right_columns_and_overlapping_rows(db: Database) -> None:
    gold = Gold.of(db, GOLD)
    # the right column, the WHERE left out: columns 1, rows 5 of 10
    assert reward(db, gold, "SELECT name FROM head") == PARTIAL * (1 + 0.5) / 2
    # one column too many, the right rows on the matched one: columns 1/2, rows 5/5
    assert reward(db, gold, "SELECT name, age FROM head WHERE age > 56") == PARTIAL * 0.75
    # a column named otherwise that holds the same values matches it
    assert reward(db, gold, "SELECT name AS who, age FROM head WHERE age > 56") == PARTIAL * 0.75
    # the key where the name was asked: nothing right
    assert reward(db, gold, "SELECT head_id FROM head WHERE age > 56") == 0.0


def test_an_error_no_sql_or_a_timeout_earns_nothing(db: Database) -> None:
    gold = Gold.of(db, GOLD)
    assert reward(db, gold, "SELECT nme FROM head") == 0.0
    assert reward(db, gold, "") == 0.0
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    assert reward(db, gold, endless, timeout_s=0.05) == 0.0


def test_a_write_is_refused_even_on_a_writable_connection(tmp_path: Path) -> None:
    copy = tmp_path / "dm.sqlite"
    shutil.copy(DB, copy)
    writable = Database.open(copy, write=True)
    try:
        gold = Gold.of(writable, GOLD)
        assert reward(writable, gold, "DELETE FROM head") == 0.0
        assert reward(writable, gold, "UPDATE head SET age = 99") == 0.0
        assert writable.conn.execute("SELECT count(*), max(age) FROM head").fetchone() == (10, 69)
    finally:
        writable.close()


def test_a_gold_that_fails_is_said(db: Database) -> None:
    with pytest.raises(GoldError):
        Gold.of(db, "SELECT nope FROM head")
