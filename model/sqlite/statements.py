"""Splitting SQL text into statements, and finding the one under the cursor.

A statement ends where SQLite's sqlite3_complete() says it does, so a `;` inside a string, a
comment or a trigger body never splits. Asking `sqlite3.complete_statement` at each `;` from the
statement's start was quadratic: after an unclosed comment or string every later `;` re-read
everything before it (0.6 MB took seconds). So its tokenizer and state machine (SQLite's
complete.c) run here once over the text; tests check they agree with SQLite. No UI here:
offsets are plain character indexes into the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# complete.c's tokens. An unclosed comment, string or [name] runs to the end, as there.
_TOKENS = re.compile(r"""
    (?P<semi>;)
  | (?P<ws>[ \t\n\f\r]+ | --[^\n]*+ | /\*.*?(?:\*/|\Z))
  | (?P<other>'[^']*+(?:'|\Z) | "[^"]*+(?:"|\Z) | `[^`]*+(?:`|\Z) | \[[^\]]*+(?:\]|\Z))
  | (?P<word>[A-Za-z0-9_$\x80-\U0010ffff]++)
  | (?P<char>.)
""", re.VERBOSE | re.DOTALL)
_SEMI, _WS, _OTHER, _EXPLAIN, _CREATE, _TEMP, _TRIGGER, _END = range(8)
_KEYWORDS = {"create": _CREATE, "trigger": _TRIGGER, "temp": _TEMP, "temporary": _TEMP,
             "end": _END, "explain": _EXPLAIN}
# complete.c's trans[state][token]; state 1 is "a statement just ended".
_TRANS = (
    (1, 0, 2, 3, 4, 2, 2, 2),  # 0 invalid (nothing yet)
    (1, 1, 2, 3, 4, 2, 2, 2),  # 1 start
    (1, 2, 2, 2, 2, 2, 2, 2),  # 2 normal
    (1, 3, 3, 2, 4, 2, 2, 2),  # 3 explain
    (1, 4, 2, 2, 2, 4, 5, 2),  # 4 create
    (6, 5, 5, 5, 5, 5, 5, 5),  # 5 trigger
    (6, 6, 5, 5, 5, 5, 5, 7),  # 6 semi (in a trigger)
    (1, 7, 5, 5, 5, 5, 5, 5),  # 7 end (of a trigger)
)


@dataclass(frozen=True)
class Statement:
    text: str  # stripped, without the closing semicolon
    start: int  # offset of the first character of the segment (after the previous `;`)
    end: int  # offset just past the closing `;` (or the end of the text)


def split(sql: str) -> list[Statement]:
    """Every non-empty statement in `sql`, in order, with its span. Linear in the text."""
    out = []
    for start, end, code in segments(sql):
        # Only comments and blanks would fail as "nothing to run": no statement.
        if code:
            text = sql[start:end].strip()
            while text.endswith(";"):
                text = text[:-1].rstrip()
            out.append(Statement(text, start, end))
    return out


def segments(sql: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, has code) of each piece of `sql` up to and including a `;` that ends a
    statement (where sqlite3.complete_statement(sql[start:end]) is true), then of the rest;
    has code: more than comments and blanks."""
    start, state, code = 0, 0, False
    for match in _TOKENS.finditer(sql):
        kind = match.lastgroup
        if kind == "semi":
            state = _TRANS[state][_SEMI]
            if state == 1:
                yield start, match.end(), code
                start, state, code = match.end(), 0, False
            continue
        if kind == "ws":
            token = _WS
        else:
            token = _KEYWORDS.get(match[0].lower(), _OTHER) if kind == "word" else _OTHER
            code = True
        state = _TRANS[state][token]
    yield start, len(sql), code


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
