"""The one prompt format, used by inference and by training alike.

It is the format of the original fine-tune (DH21ML/gemma-2-2b-it-SQL-FineTuned), character
for character; the context is CREATE TABLE statements followed by a few rows as INSERT
statements, as in gretelai/synthetic_text_to_sql.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from model.schema import Schema, prune, quote

PROMPT = (
    "<start_of_turn>user You are a powerful text-to-SQL model. Your job is to answer questions"
    " about a database. You are given a question and context regarding one or more tables:\n\n"
    " SQL Question: {question} \n\n"
    " SQL Context: {context}\n\n"
    " Generated SQL Query: <end_of_turn>\n\n"
    "<start_of_turn> model"
)
# The answer follows the prompt directly: " {sql} <end_of_turn>". The space before the SQL
# belongs to the answer so that it tokenizes as Gemma's usual " SELECT".
ANSWER = " {sql} <end_of_turn>"
END_OF_TURN = "<end_of_turn>"

SAMPLE_ROWS = 3
MAX_VALUE_CHARS = 40
# In estimated tokens (see estimate_tokens): 850 keep the whole prompt under ~1,000 real
# tokens, which the 270M model reads in about a second on two CPU cores, and which fits the
# 1,024-token examples it was trained on.
CONTEXT_BUDGET_TOKENS = 850
_TOKEN_LIKE = re.compile(r"[A-Za-z]+|[0-9]+|[^\sA-Za-z0-9]")


def estimate_tokens(text: str) -> int:
    """Words, numbers and punctuation marks: within ~10 % of Gemma's count on schema DDL.

    Characters alone mislead: quoted, underscored Spider DDL runs 2.4 characters a token,
    plain Chinook DDL 3.5. A tokenizer is not at hand here (the model may still be loading).
    """
    return len(_TOKEN_LIKE.findall(text))


def one_line(text: str) -> str:
    """Collapse all whitespace (including stray \\r) to single spaces."""
    return re.sub(r"\s+", " ", text).strip()


def build_prompt(question: str, context: str) -> str:
    """The prompt up to where the model's answer starts."""
    return PROMPT.format(question=one_line(question), context=context.strip())


def training_text(question: str, context: str, sql: str) -> tuple[str, str]:
    """(prompt, answer) for one training example; their concatenation is the seed format."""
    return build_prompt(question, context), ANSWER.format(sql=one_line(sql))


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


def sample_inserts(conn: sqlite3.Connection, table: str, n: int = SAMPLE_ROWS) -> str:
    try:
        rows = conn.execute(f"SELECT * FROM {quote(table)} LIMIT {n}").fetchall()
    except sqlite3.Error:
        return ""
    if not rows:
        return ""
    values = ", ".join("(" + ", ".join(sql_literal(v) for v in row) + ")" for row in rows)
    return f"INSERT INTO {quote(table)} VALUES {values};"


def render_context(
    conn: sqlite3.Connection | None,
    schema: Schema,
    tables: list[str],
    sampled: list[str] | None = None,
) -> str:
    """CREATE TABLE statements, then a few rows of each table as INSERTs (gretel's layout).

    `sampled` limits which tables get rows (all of `tables` by default); no `conn`, no rows.
    """
    chosen = [t for t in schema.tables if t.name in set(tables)]
    with_rows = set(tables if sampled is None else sampled)
    creates = [create_statement(t.sql, t.name, [c.name for c in t.columns]) for t in chosen]
    inserts = []
    if conn is not None:
        inserts = [
            sample_inserts(conn, t.name)
            for t in chosen
            if t.kind == "table" and t.name in with_rows
        ]
    return "\n".join(s for s in creates + inserts if s)


@dataclass
class Context:
    text: str
    tables: list[str]  # the tables sent, so the user can see what the model saw
    pruned: bool


def context_for(
    conn: sqlite3.Connection | None,
    schema: Schema,
    question: str,
    budget_tokens: int = CONTEXT_BUDGET_TOKENS,
) -> Context:
    """The largest context that fits the budget, tried in this order:

    every table with rows; every table, rows only for the tables the question needs; only
    the tables the question needs (fewer and fewer) with their rows.
    """
    everything = render_context(conn, schema, schema.names)
    if estimate_tokens(everything) <= budget_tokens:
        return Context(everything, schema.names, False)
    needed = prune(schema, question)
    for k in range(len(needed), -1, -1):
        text = render_context(conn, schema, schema.names, sampled=needed[:k])
        if estimate_tokens(text) <= budget_tokens:
            return Context(text, schema.names, False)
    for max_tables in (6, 5, 4, 3, 2, 1):
        tables = prune(schema, question, max_tables=max_tables)
        text = render_context(conn, schema, tables)
        if estimate_tokens(text) <= budget_tokens:
            return Context(text, tables, True)
    # Even one table is too big: send its CREATE TABLE alone.
    return Context(render_context(None, schema, tables), tables, True)
