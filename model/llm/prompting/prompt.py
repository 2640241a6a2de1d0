"""The one prompt format, used by inference and by training alike.

It is the format of the original fine-tune (DH21ML/gemma-2-2b-it-SQL-FineTuned), character
for character, or the same text with the question after the context (`CONTEXT_FIRST`). The
context is CREATE TABLE statements followed by a few rows as INSERT statements, as in
gretelai/synthetic_text_to_sql; which tables, and which with rows, is `prompting.context`'s
choice.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from model.llm import adapter_files
from model.sqlite.schema import Schema, quote
from model.text import one_line

# Gemma's turn markers and the prompt's section labels, named once: `model.llm.sql.extract` finds
# by them where an answer ends and whether the model is repeating its prompt.
START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"
QUESTION_LABEL = "SQL Question:"
CONTEXT_LABEL = "SQL Context:"
ANSWER_LABEL = "Generated SQL Query:"

_HEAD = (
    START_OF_TURN + "user You are a powerful text-to-SQL model. Your job is to answer questions"
    " about a database. You are given a question and context regarding one or more tables:\n\n"
)
_QUESTION = f" {QUESTION_LABEL}"  # then " {question} \n\n"
_CONTEXT = " " + CONTEXT_LABEL + " {context}\n\n"
_TAIL = f" {ANSWER_LABEL} {END_OF_TURN}\n\n{START_OF_TURN} model"
PROMPT = _HEAD + _QUESTION + " {question} \n\n" + _CONTEXT + _TAIL

# Two layouts of the same text. The seed's asks the question before the context; the other
# swaps the two sections, so that everything before the question depends only on the database:
# the model reads that part once (its KV cache is kept) and then only each question's ~20 tokens,
# instead of ~1,000 a question. An adapter says which it was trained on (`write_layout`).
QUESTION_FIRST = "question-first"
CONTEXT_FIRST = "context-first"
LAYOUTS = (QUESTION_FIRST, CONTEXT_FIRST)
LAYOUT_FILE = adapter_files.LAYOUT
# The answer follows the prompt directly: " {sql} <end_of_turn>". The space before the SQL
# belongs to the answer so that it tokenizes as Gemma's usual " SELECT".
ANSWER = " {sql} " + END_OF_TURN

# The model reading a question back from an answer (`Engine.review`): the answer's SQL, then
# the question, whose log-probability after it is the answer's score. A plain layout, not the
# fine-tune's: the base model, which reads it, was never trained on ours.
REVIEW = "SQL: {sql}\nQuestion:"

SAMPLE_ROWS = 3
MAX_VALUE_CHARS = 40


def review_prompt(sql: str, question: str) -> tuple[str, str]:
    """The text an answer's review reads (`REVIEW`), and the question as it follows it."""
    return REVIEW.format(sql=one_line(sql)), " " + one_line(question)


def shared_prefix(context: str, layout: str = QUESTION_FIRST) -> str:
    """The prompt's beginning up to the question, the same for every question that gets the
    same context (see `Engine.stream`'s `shared`); "" for the seed's layout, whose prompts
    share only their head (`prompt_head`)."""
    if layout == CONTEXT_FIRST:
        return _HEAD + _CONTEXT.format(context=context.strip()) + _QUESTION
    return ""


def prompt_head(layout: str = QUESTION_FIRST) -> str:
    """The beginning of every prompt of `layout`, whatever the database and the question.

    The engine reads it once and keeps its KV cache (`Engine.stream`'s `shared`): 41 tokens of
    the seed's layout, ~8 % of a focused prompt, which took its time to first token from 3.10
    to 2.65 s (median of 20 Chinook prompts, fp32 on an emulated AVX2 CPU) with the same
    greedy answers in fp32 and bf16 (bench/README.md, "Read less")."""
    return _HEAD + _QUESTION if layout == QUESTION_FIRST else _HEAD


def build_prompt(question: str, context: str, layout: str = QUESTION_FIRST) -> str:
    """The prompt up to where the model's answer starts."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown prompt layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    asked = f" {one_line(question)} \n\n"
    if layout == CONTEXT_FIRST:
        return shared_prefix(context, layout) + asked + _TAIL
    return _HEAD + _QUESTION + asked + _CONTEXT.format(context=context.strip()) + _TAIL


def user_turn(prompt: str) -> str:
    """The text of `prompt`'s user turn, without Gemma's turn markers: what a chat endpoint
    gets as the user's message, its own template adding the markers back (`server.endpoint`).
    A prompt that is not one of ours is returned whole."""
    head = START_OF_TURN + "user"
    if prompt.startswith(head) and END_OF_TURN in prompt:
        return prompt[len(head) : prompt.rindex(END_OF_TURN)].strip()
    return prompt


def training_text(
    question: str, context: str, sql: str, layout: str = QUESTION_FIRST
) -> tuple[str, str]:
    """(prompt, answer) for one training example; their concatenation is the seed format
    (question-first) or the same text with context and question swapped."""
    return build_prompt(question, context, layout), ANSWER.format(sql=one_line(sql))


def write_layout(folder: Path, layout: str) -> None:
    """Record next to an adapter the prompt layout it was trained on."""
    (folder / LAYOUT_FILE).write_text(json.dumps({"layout": layout}) + "\n")


def read_layout(folder: Path) -> str | None:
    """The layout recorded in `folder`; None when there is no record (the seed's then)."""
    try:
        layout = json.loads((folder / LAYOUT_FILE).read_text()).get("layout")
    except (OSError, ValueError, AttributeError):
        return None
    return layout if layout in LAYOUTS else None


def sql_literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return "NULL"  # blobs say nothing useful to the model and cost many tokens
    if isinstance(value, int | float):
        return repr(value)
    text = one_line(str(value))
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS]
    return "'" + text.replace("'", "''") + "'"


_NO_ACTION = re.compile(r"\s+ON (?:DELETE|UPDATE) NO ACTION", re.IGNORECASE)


def create_statement(sql: str, name: str, columns: list[str]) -> str:
    if sql:
        # "ON DELETE NO ACTION" is SQLite's default: dropping it saves tokens, means the same.
        return _NO_ACTION.sub("", one_line(sql)).rstrip(";") + ";"
    return f"CREATE TABLE {quote(name)} ({', '.join(quote(c) for c in columns)});"


def sample_inserts(conn: sqlite3.Connection, table: str, n: int = SAMPLE_ROWS,
                   shown: Sequence[tuple[str, str]] = ()) -> str:
    """A few rows of `table` as one INSERT: first a row holding each (column, value) of
    `shown` (values the question names), then the table's first rows."""
    rows: list[tuple[object, ...]] = []
    try:
        for column, value in shown:
            rows += conn.execute(f"SELECT * FROM {quote(table)} WHERE {quote(column)} = ? "
                                 "LIMIT 1", (value,)).fetchall()
        rows += conn.execute(f"SELECT * FROM {quote(table)} LIMIT {n}").fetchall()
    except sqlite3.Error:
        return ""
    rows = list(dict.fromkeys(rows))[: max(n, len(shown))]
    if not rows:
        return ""
    values = ", ".join("(" + ", ".join(sql_literal(v) for v in row) + ")" for row in rows)
    return f"INSERT INTO {quote(table)} VALUES {values};"


def render_context(
    conn: sqlite3.Connection | None,
    schema: Schema,
    tables: list[str],
    sampled: list[str] | None = None,
    shown: dict[str, list[tuple[str, str]]] | None = None,
) -> str:
    """CREATE TABLE statements, then a few rows of each table as INSERTs (gretel's layout).

    `sampled` limits which tables get rows (all of `tables` by default); no `conn`, no rows.
    `shown`: per table, (column, value) pairs its rows should show (`sample_inserts`), also
    when it gets no other rows.
    """
    chosen = [t for t in schema.tables if t.name in set(tables)]
    with_rows = set(tables if sampled is None else sampled)
    creates = [create_statement(t.sql, t.name, [c.name for c in t.columns]) for t in chosen]
    shown = shown or {}
    inserts = []
    if conn is not None:
        # A table without rows still shows the rows holding the values the question names.
        inserts = [
            sample_inserts(conn, t.name, SAMPLE_ROWS if t.name in with_rows else 0,
                           shown.get(t.name, []))
            for t in chosen
            if t.kind == "table" and (t.name in with_rows or t.name in shown)
        ]
    return "\n".join(s for s in creates + inserts if s)
