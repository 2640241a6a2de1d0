from __future__ import annotations

import pytest

from model.sqlite.statements import offset_of, split, statement_at


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
