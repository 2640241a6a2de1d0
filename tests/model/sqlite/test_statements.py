from __future__ import annotations

import pytest

from model.sqlite.statements import offset_of, segments, split, statement_at


def test_split_respects_strings_comments_and_triggers() -> None:
    sql = (
        "SELECT 'a;b' AS x; -- a comment; with a semicolon\n"
        "SELECT \"c;d\" FROM t /* ; */;\n"
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 1; END;\n"
        "SELECT 3"
    )
    assert [s.text for s in split(sql)] == [
        "SELECT 'a;b' AS x",
        "-- a comment; with a semicolon\nSELECT \"c;d\" FROM t /* ; */",
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 1; END",
        "SELECT 3",
    ]


def test_blank_and_comment_only_segments_are_dropped() -> None:
    assert split("  ;\n-- only a comment\n;  /* c */ ;") == []
    assert split("") == []


SQL = "SELECT 1;\nSELECT 2;\n\nSELECT 3"


@pytest.mark.parametrize(
    ("line", "column", "expected"),
    [
        (0, 0, "SELECT 1"),
        (0, 9, "SELECT 1"),  # just after the semicolon: still the first statement
        (1, 3, "SELECT 2"),
        (2, 0, "SELECT 3"),  # blank line before a statement belongs to the next one
        (3, 8, "SELECT 3"),
    ],
)
def test_statement_at_cursor(line: int, column: int, expected: str) -> None:
    assert statement_at(SQL, offset_of(SQL, line, column)) == expected


def test_trailing_blank_lines_belong_to_the_last_statement() -> None:
    sql = "SELECT 1;\nSELECT 2;\n\n\n"
    assert statement_at(sql, len(sql)) == "SELECT 2"
    assert statement_at("   ", 1) == ""


def test_offset_of_clamps_to_line_end() -> None:
    assert offset_of("ab\ncd", 1, 99) == 5
    assert offset_of("ab\ncd", 0, 1) == 1


def _ends_by_sqlite(sql: str) -> list[int]:
    """Where SQLite's own sqlite3_complete ends each statement (the old, quadratic way)."""
    import sqlite3

    ends, start = [], 0
    for i, ch in enumerate(sql):
        if ch == ";" and sqlite3.complete_statement(sql[start : i + 1]):
            ends.append(i + 1)
            start = i + 1
    return ends


PIECES = ["SELECT 1", ";", " ", "\n", "'", '"', "`", "[", "]", "--", "/*", "*/", "x", "-",
          "/", "CREATE", "TEMP", "TRIGGER", "END", "EXPLAIN", "BEGIN", "temporary", "é",
          "trigger_x", "end2", ";;"]


def test_statement_ends_agree_with_sqlite() -> None:
    """The scanner is SQLite's complete.c: on 5,000 random mixes of what matters to it (quotes,
    comments, trigger keywords), every statement ends where sqlite3.complete_statement says."""
    import random

    rng = random.Random(35)
    for _ in range(5000):
        sql = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 30)))
        ends = [end for _, end, _ in segments(sql)][:-1]  # the last piece is the rest
        assert ends == _ends_by_sqlite(sql), sql


@pytest.mark.parametrize(("opener", "statements"), [
    ("/* unclosed ", 0), ("SELECT 'unclosed ", 1), ("CREATE TRIGGER t ", 1)])
def test_a_large_buffer_that_never_closes_splits_in_one_pass(opener: str, statements: int) -> None:
    """6 MB and 500,000 semicolons after an unclosed comment, string or trigger body: once over
    the text (the old split re-read everything before each `;`: days). Run apart so a slow
    split is stopped; the bound is two orders of magnitude above a loaded machine's time."""
    import subprocess
    import sys

    code = ("from model.sqlite.statements import split\n"
            f"s = split({opener!r} + 'SELECT 1;\\n' * 500_000)\n"
            f"assert len(s) == {statements} and all(x.start == 0 for x in s)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
