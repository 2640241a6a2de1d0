"""From a model's answer to its SQL: cut at the end of its turn, past a repeated prompt, out of
a code fence, and without the prose around the statement."""

from __future__ import annotations

import re

from model.llm.prompting.prompt import (
    ANSWER_LABEL,
    CONTEXT_LABEL,
    END_OF_TURN,
    QUESTION_LABEL,
    START_OF_TURN,
)
from model.llm.sql.parsing import parses
from model.sqlite.statements import split

# Markers that end an answer (the model's turn is over; <eos> ends Gemma's document).
_TURN_MARKERS = (END_OF_TURN, START_OF_TURN, "<eos>")
# Labels that only a repeated prompt holds.
_ECHO_LABELS = (QUESTION_LABEL, CONTEXT_LABEL)
_FENCE = re.compile(r"```[ \t]*(?:sql|sqlite)?[ \t]*\n?(.*?)(?:```|$)", re.IGNORECASE | re.DOTALL)
_SQL_START = re.compile(
    r"\b(SELECT|WITH|VALUES|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|PRAGMA|EXPLAIN)\b",
    re.IGNORECASE,
)


def is_echo(text: str) -> bool:
    """Whether an answer (so far) is the model repeating its prompt instead of answering.

    The base model without its adapter does this; its SQL, if any, would only come after
    the repeated schema, hundreds of tokens later, so callers stop reading early.
    """
    return any(label in text for label in _ECHO_LABELS)


def extract_sql(text: str) -> str:
    """The first SQL statement in a model's answer, without fences, prose or a repeated prompt.

    Returns "" when the answer holds no SQL (e.g. the model only echoed its prompt).
    """
    for marker in _TURN_MARKERS:
        text = text.split(marker, 1)[0]
    if ANSWER_LABEL in text:
        # The model repeated its prompt: the answer, if any, follows the last label.
        text = text.rsplit(ANSWER_LABEL, 1)[1]
    elif is_echo(text):
        return ""  # an echo cut off before the answer: any SQL in it is the schema's
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1)
    # The first keyword that starts a statement sqlglot can parse ("I select the albums:
    # SELECT ..." starts at the second); failing that, the first keyword at all.
    first = ""
    for match in _SQL_START.finditer(text):
        statements = split(text[match.start() :])
        if not statements:
            break
        candidate = _drop_trailing_prose(statements[0].text)
        if parses(candidate):
            return candidate
        first = first or candidate
    return first


def _drop_trailing_prose(sql: str) -> str:
    """Cut lines of prose after the SQL ("This query counts ..."): the longest prefix of
    whole lines that parses wins; if none parses, the text is kept for `check` to report."""
    lines = sql.splitlines()
    if len(lines) == 1 or parses(sql):
        return sql.strip()
    for end in range(len(lines) - 1, 0, -1):
        head = "\n".join(lines[:end]).strip()
        if head and parses(head):
            return head
    return sql.strip()
