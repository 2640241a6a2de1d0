from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from model.sqlite import export
from model.sqlite.db import Database

ROWS = [(1, "one", 1.5, None, b"\x01\x02"), (2, "two, \"quoted\"", None, "NULL", None)]
COLUMNS = ["id", "name", "score", "note", "data"]


def test_csv(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    assert export.write(out, COLUMNS, iter(ROWS)) == 2
    with out.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [COLUMNS, ["1", "one", "1.5", "", "0102"],
                    ["2", 'two, "quoted"', "", "NULL", ""]]


def test_json_is_an_array_of_objects(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    export.write(out, COLUMNS, iter(ROWS))
    assert json.loads(out.read_text()) == [
        {"id": 1, "name": "one", "score": 1.5, "note": None, "data": "0102"},
        {"id": 2, "name": 'two, "quoted"', "score": None, "note": "NULL", "data": None},
    ]


def test_parquet_types(tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    export.write(out, COLUMNS, iter(ROWS))
    table = pq.read_table(out)
    assert table.schema.field("id").type == "int64"
    assert table.schema.field("score").type == "double"
    assert table.to_pylist()[1] == {"id": 2, "name": 'two, "quoted"', "score": None,
                                    "note": "NULL", "data": None}


def test_parquet_streams_in_batches(tmp_path: Path) -> None:
    out = tmp_path / "big.parquet"
    n = export.BATCH_ROWS * 2 + 7
    assert export.write(out, ["n"], ((i,) for i in range(n))) == n
    assert pq.read_metadata(out).num_rows == n


def test_empty_result_still_has_columns(tmp_path: Path) -> None:
    for suffix in (".csv", ".json", ".parquet"):
        out = tmp_path / f"empty{suffix}"
        assert export.write(out, ["a", "b"], iter([])) == 0
    assert (tmp_path / "empty.csv").read_text().strip() == "a,b"
    assert json.loads((tmp_path / "empty.json").read_text()) == []
    assert pq.read_table(tmp_path / "empty.parquet").column_names == ["a", "b"]


def test_unknown_extension_and_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(export.ExportError, match="unknown format .xlsx"):
        export.write(tmp_path / "r.xlsx", ["a"], iter([]))
    with pytest.raises(export.ExportError, match="no such directory"):
        export.write(tmp_path / "nope" / "r.csv", ["a"], iter([]))


def test_cancel_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    with pytest.raises(export.ExportError, match="cancelled"):
        export.write(out, ["n"], ((i,) for i in range(5000)), cancelled=lambda: True)
    assert list(tmp_path.iterdir()) == []


def test_from_a_real_query(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (n)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1234)])
    conn.commit()
    conn.close()
    db = Database.open(path)
    out = tmp_path / "t.csv"
    assert export.write(out, ["n"], db.iter_rows("SELECT n FROM t")) == 1234
    assert len(out.read_text().splitlines()) == 1235
