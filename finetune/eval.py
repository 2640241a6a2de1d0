"""Execution accuracy: `gemma-sql eval DATA.jsonl [--db-root DIR] ...`.

Each line of DATA.jsonl holds `question`, `sql` (the gold query) and either `db` (a path;
relative paths resolve against the JSONL file's folder) or `db_id` (DIR/<db_id>/<db_id>.sqlite).
The model answers through `pipeline.ask.ask`, the pipeline the app and `gemma-sql ask` use. A
prediction is correct when its result equals the gold result as a multiset of rows (as a list
where the gold query has a top-level ORDER BY), its columns taken in any order, as Spider's
test-suite evaluation does (`SELECT avg(x), kind` answers `SELECT kind, avg(x)`). A gold query
that fails is reported and left out, not counted wrong. Top-3 counts a question right when
the answer or one of the next two alternatives the app offers (`Answer.alternatives`) is.
"""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from model.llm.pipeline.settings import EVAL, Settings
from model.llm.sql.results import comparable, has_order_by
from model.sqlite.db import Database, DatabaseError
from model.sqlite.files import file_problem

MAX_ROWS = 100_000  # a prediction returning more than this is not compared (nor held)
TIMEOUT_S = 10.0  # a runaway prediction (an accidental cross join) is interrupted
MAX_PERMUTATIONS = 1_000  # column orders tried (many all-NULL columns could mean millions)


class GoldError(Exception):
    """The gold query itself failed: the example cannot be scored."""


@dataclass
class Record:
    question: str
    gold: str
    pred: str
    correct: bool
    error: str | None
    seconds: float
    db: str = ""
    corrected: bool = False  # misspelt names were put right by the schema check
    repaired: bool = False  # from another candidate or a repair attempt
    focused: bool = False  # from a prompt with the question's tables alone
    mended: bool = False  # its FROM clause was mended to the schema (model.llm.sql.joins)
    out_of_time: bool = False  # the time budget stopped the checks (model.llm.pipeline.budget)
    top3: bool = False  # it or one of the next two alternatives is right
    voted: bool = False  # the agreement of the answers run chose another than the pipeline's
    agreed: str = ""  # "3 of 5": the answers run that returned the chosen result
    linked: list[str] = field(default_factory=list)  # values of the question found in the data
    alternatives: list[str] = field(default_factory=list)  # their SQL, the answer's first


@dataclass
class EvalReport:
    model: str
    dtype: str = ""  # the engine's compute dtype (model.llm.weights.dtype)
    records: list[Record] = field(default_factory=list)
    gold_failed: list[dict[str, str]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.records)

    def summary(self) -> dict[str, Any]:
        n = self.n or 1
        return {
            "execution_accuracy": sum(r.correct for r in self.records) / n,
            "top3_accuracy": sum(r.top3 for r in self.records) / n,
            "n": self.n,
            "valid_sql_rate": sum(r.error is None for r in self.records) / n,
            "mean_seconds": sum(r.seconds for r in self.records) / n,
            "median_seconds": statistics.median([r.seconds for r in self.records] or [0.0]),
            "corrected": sum(r.corrected for r in self.records),
            "repaired": sum(r.repaired for r in self.records),
            "focused": sum(r.focused for r in self.records),
            "mended": sum(r.mended for r in self.records),
            "out_of_time": sum(r.out_of_time for r in self.records),
            "voted": sum(r.voted for r in self.records),
            "linked": sum(bool(r.linked) for r in self.records),
            "gold_failed": len(self.gold_failed),
            "model": self.model,
            "dtype": self.dtype,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "records": [asdict(r) for r in self.records],
                "gold_failures": self.gold_failed}


# --- comparing results ---------------------------------------------------------------------


def normalized(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with their values as results are compared (`comparable`: floats rounded)."""
    return [tuple(comparable(v) for v in row) for row in rows]


def run_sql(db: Database, sql: str, max_rows: int = MAX_ROWS,
            timeout: float = TIMEOUT_S) -> list[tuple[Any, ...]]:
    """All rows of `sql` (at most max_rows), interrupted after `timeout` seconds."""
    timer = threading.Timer(timeout, db.interrupt)
    timer.start()
    try:
        result = db.execute(sql)
        if not result.columns:
            raise DatabaseError("not a query (returns no rows)")
        rows: list[tuple[Any, ...]] = []
        while page := db.fetch(result, hold=True):  # read straight through, once
            rows.extend(tuple(comparable(v) for v in row) for row in page)
            if len(rows) > max_rows:
                result.close()
                raise DatabaseError(f"more than {max_rows} rows")
        return rows
    finally:
        timer.cancel()


def compare(db: Database, gold_sql: str, pred_sql: str) -> tuple[bool, str | None]:
    """(correct, error): error is the prediction's failure, or None when it executed.

    Raises GoldError when the gold query fails.
    """
    try:
        gold = run_sql(db, gold_sql)
    except DatabaseError as e:
        raise GoldError(str(e)) from None
    if not pred_sql.strip():
        return False, "no SQL"
    try:
        pred = run_sql(db, pred_sql)
    except DatabaseError as e:
        return False, str(e)
    return same_result(gold, pred, ordered=has_order_by(gold_sql)), None


def same_result(gold: list[tuple[Any, ...]], pred: list[tuple[Any, ...]], ordered: bool) -> bool:
    """Equal rows (in order when `ordered`) under some order of the prediction's columns.

    Written here because the reference (test-suite-sql-eval's `result_eq`) is not a package.
    Only orders that pair columns holding the same values are tried, at most MAX_PERMUTATIONS."""
    if len(gold) != len(pred):
        return False
    if not gold:
        return True
    width = len(gold[0])
    if len(pred[0]) != width:
        return False
    gold_columns = [Counter(row[i] for row in gold) for i in range(width)]
    pred_columns = [Counter(row[j] for row in pred) for j in range(width)]
    choices = [[j for j in range(width) if pred_columns[j] == gold_columns[i]]
               for i in range(width)]
    # Equal columns form groups; a group needs as many prediction columns as gold ones. Then
    # every partial order extends to a full one, and the search below never backtracks.
    if any(len(choices[i]) != gold_columns.count(gold_columns[i]) for i in range(width)):
        return False
    want = gold if ordered else Counter(gold)
    for order in itertools.islice(_orders(choices, ()), MAX_PERMUTATIONS):
        rows = [tuple(row[j] for j in order) for row in pred]
        if (rows if ordered else Counter(rows)) == want:
            return True
    return False


def _orders(choices: list[list[int]], taken: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """Each way to pick one column per choice list, no column twice."""
    if len(taken) == len(choices):
        yield taken
        return
    for j in choices[len(taken)]:
        if j not in taken:
            yield from _orders(choices, (*taken, j))


# --- the run -------------------------------------------------------------------------------


@dataclass
class Item:
    question: str
    sql: str
    db: Path
    line: int = 0  # in DATA.jsonl, for errors


def read_items(path: Path, db_root: Path | None = None, limit: int = 0) -> Iterator[Item]:
    """Items of DATA.jsonl with their database paths resolved; a bad line is a ValueError
    naming the file and line (`evaluate` reads them all before scoring any)."""
    with path.open(encoding="utf-8") as f:
        n = 0
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                raise ValueError(f"{path}:{lineno}: not JSON") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: not a JSON object")
            for key in ("question", "sql"):
                if not isinstance(row.get(key), str) or not row[key].strip():
                    raise ValueError(f"{path}:{lineno}: needs a `{key}` string")
            if not isinstance(row.get("db", row.get("db_id", "")), str):
                raise ValueError(f"{path}:{lineno}: db or db_id is not a string")
            if "db" in row:
                db = Path(row["db"]).expanduser()
                if not db.is_absolute():
                    db = path.parent / db
            elif "db_id" in row:
                if db_root is None:
                    raise ValueError(f"{path}:{lineno}: has db_id; pass --db-root DIR")
                db = db_root / row["db_id"] / f"{row['db_id']}.sqlite"
            else:
                raise ValueError(f"{path}:{lineno}: needs db or db_id")
            if (problem := file_problem(db)) is not None:
                raise ValueError(f"{path}:{lineno}: {db}: {problem}")
            yield Item(row["question"], row["sql"], db, lineno)
            n += 1
            if limit and n >= limit:
                return


def evaluate(
    path: Path,
    engine: Any,
    db_root: Path | None = None,
    limit: int = 0,
    model_name: str = "",
    on_record: Callable[[Record], None] | None = None,
    settings: Settings = EVAL,
) -> EvalReport:
    """Ask the engine every question of DATA.jsonl through the pipeline (`pipeline.ask`, with
    no time budget unless `settings` give one) and score the SQL (and the next two
    alternatives, for top-3)."""
    from model.llm.pipeline.ask import ask

    report = EvalReport(model_name, dtype=getattr(engine, "dtype", ""))
    dbs: dict[Path, Database] = {}
    try:
        # Every line read and every database opened before the first question: a bad line is
        # one error up front, not a failure that loses the questions already scored.
        items = list(read_items(path, db_root, limit))
        for item in items:
            if item.db not in dbs:
                try:
                    dbs[item.db] = Database.open(item.db)
                except DatabaseError as e:
                    raise ValueError(f"{path}:{item.line}: {e}") from None
        for item in items:
            db = dbs[item.db]
            t0 = time.perf_counter()
            answer = ask(engine, db, item.question, settings)
            seconds = time.perf_counter() - t0
            pred = answer.sql or ""
            try:
                correct, error = compare(db, item.sql, pred)
            except GoldError as e:
                report.gold_failed.append(
                    {"question": item.question, "gold": item.sql, "error": str(e)})
                continue
            others = [a.sql for a in answer.alternatives[1:3]]
            record = Record(item.question, item.sql, pred, correct, error, round(seconds, 3),
                            str(item.db), bool(answer.corrected), answer.repaired,
                            answer.focused, bool(answer.mended), bool(answer.out_of_time),
                            correct or any(compare(db, item.sql, sql)[0] for sql in others),
                            answer.voted, answer.agreed, answer.linked, [pred, *others])
            report.records.append(record)
            if on_record:
                on_record(record)
    finally:
        for db in dbs.values():
            db.close()
    return report
