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


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_two_columns_of_one_name_keep_both_values(tmp_path: Path, suffix: str) -> None:
    """As sqlite-utils names them: the later ones get _2, _3, skipping a real column's name."""
    out = tmp_path / f"r{suffix}"
    columns = ["FirstName", "FirstName", "FirstName_2", "FirstName"]
    export.write(out, columns, iter([("Luís", "Jane", "x", "Nancy")]))
    if suffix == ".parquet":
        [row] = pq.read_table(out).to_pylist()
    else:
        text = out.read_text()
        [row] = json.loads(text) if suffix == ".json" else [json.loads(text)]
    assert row == {"FirstName": "Luís", "FirstName_3": "Jane", "FirstName_2": "x",
                   "FirstName_4": "Nancy"}


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_non_finite_floats_are_valid_json(tmp_path: Path, suffix: str) -> None:
    """SELECT 1e999, -1e999: 9e999 as SQLite's json() writes it (reads back as infinity)."""
    out = tmp_path / f"r{suffix}"
    export.write(out, ["big", "small", "nan"], iter([(float("inf"), float("-inf"),
                                                      float("nan"))]))
    text = out.read_text()
    strict = json.loads(text, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    row = strict[0] if suffix == ".json" else strict
    assert row == {"big": float("inf"), "small": float("-inf"), "nan": None}


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_a_planted_symlink_is_never_written_through(tmp_path: Path, suffix: str) -> None:
    """The old temporary name (.NAME.partial) was predictable and opened with "w"."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    out = tmp_path / f"r{suffix}"
    (tmp_path / f".{out.name}.partial").symlink_to(victim)
    assert export.write(out, COLUMNS, iter(ROWS)) == 2
    assert victim.read_text() == "keep" and not out.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".{out.name}.partial", out.name, "victim.txt"])


def test_an_existing_file_is_replaced_only_when_asked(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    out.write_text("mine")
    with pytest.raises(export.FileExists, match="already exists"):
        export.write(out, COLUMNS, iter(ROWS), replace=False)
    assert out.read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["r.csv"]
    assert export.write(out, COLUMNS, iter(ROWS), replace=True) == 2
    assert out.read_text().startswith("id,name")
    fresh = tmp_path / "new.json"
    assert export.write(fresh, COLUMNS, iter(ROWS), replace=False) == 2
    assert oct(fresh.stat().st_mode & 0o777) != oct(0o600)  # as a plain open makes it
