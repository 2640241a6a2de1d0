"""Splitting SQL text into statements, and finding the one under the cursor.

SQLite's own lexer decides where a statement ends (`sqlite3.complete_statement`), so a `;`
inside a string, a comment or a trigger body never splits. No UI here: offsets are plain
character indexes into the text.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class Statement:
    text: str  # stripped, without the closing semicolon
    start: int  # offset of the first character of the segment (after the previous `;`)
    end: int  # offset just past the closing `;` (or the end of the text)


def split(sql: str) -> list[Statement]:
    """Every non-empty statement in `sql`, in order, with its span."""
    out: list[Statement] = []
    start = 0
    for i, ch in enumerate(sql):
        # complete_statement is true only when the `;` closes a statement by SQLite's lexer.
        if ch == ";" and sqlite3.complete_statement(sql[start : i + 1]):
            _add(out, sql, start, i + 1)
            start = i + 1
    _add(out, sql, start, len(sql))
    return out


def _add(out: list[Statement], sql: str, start: int, end: int) -> None:
    text = sql[start:end].strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if _has_code(text):
        out.append(Statement(text, start, end))


def _has_code(text: str) -> bool:
    """False for segments of only comments/whitespace (they would fail as 'nothing to run')."""
    lines = [ln.split("--", 1)[0] for ln in text.splitlines()]
    stripped = "\n".join(lines).strip()
    while stripped.startswith("/*") and "*/" in stripped:
        stripped = stripped[stripped.index("*/") + 2 :].strip()
    return bool(stripped)


def statement_at(sql: str, offset: int) -> str:
    """The statement that contains `offset`.

    A cursor just after a `;` or on blank lines after the last statement belongs to the
    statement before it (as in harlequin and DBeaver); blank text gives "".
    """
    statements = split(sql)
    if not statements:
        return ""
    for st in statements:
        if st.start <= offset < st.end:
            # Cursor in the blank gap before this statement's first character: if the
            # previous statement ended on this same line, prefer it.
            head = sql[st.start : offset]
            if head.strip() == "" and "\n" not in head and st is not statements[0]:
                return statements[statements.index(st) - 1].text
            return st.text
    # Past the last statement's end (trailing blanks), or exactly at the very end.
    before = [st for st in statements if st.end <= offset]
    return (before[-1] if before else statements[0]).text


def offset_of(sql: str, line: int, column: int) -> int:
    """Character offset of a (line, column) location, as TextArea reports it."""
    lines = sql.split("\n")
    line = min(line, len(lines) - 1)
    return sum(len(ln) + 1 for ln in lines[:line]) + min(column, len(lines[line]))
