"""What the model is shown of a database for one question: which tables, and which of them
with rows, within a budget of tokens.

A question's words are read against the schema once (`rank_tables`): each table scored by the
words it shares with the question and the values it names that the table holds
(`prompting.values`). Both of a question's contexts choose from that one ranking: the first,
`focused_context`, only the likeliest tables; the fallback, `context_for`, as much of the
schema as fits. The text of a context is `model.llm.prompting.prompt`'s (`render_context`).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model.llm.prompting.prompt import render_context
from model.llm.prompting.values import ValueHit, value_index
from model.sqlite.schema import Schema, Table

if TYPE_CHECKING:
    from model.sqlite.db import Database

# In estimated tokens (see estimate_tokens): 850 keep the whole prompt under ~1,000 real
# tokens, which the 270M model reads in about a second on two CPU cores, and which fits the
# 1,024-token examples it was trained on.
CONTEXT_BUDGET_TOKENS = 850
# The first prompt's context (`focused_context`): the question's 3 likeliest tables, with rows
# for as many of them as fit 450 estimated tokens (half of Chinook's whole-schema prompt). On
# the eval sets, 3 or 4 tables and 350-600 tokens scored within a question or two of each other.
FOCUS_TABLES = 3
FOCUS_BUDGET_TOKENS = 450
_TOKEN_LIKE = re.compile(r"[A-Za-z]+|[0-9]+|[^\sA-Za-z0-9]")


def estimate_tokens(text: str) -> int:
    """Words, numbers and punctuation marks: within ~10 % of Gemma's count on schema DDL.

    Characters alone mislead: quoted, underscored Spider DDL runs 2.4 characters a token,
    plain Chinook DDL 3.5. A tokenizer is not at hand here (the model may still be loading).
    """
    return len(_TOKEN_LIKE.findall(text))


_WORD = re.compile(r"[A-Za-z][a-z]*|[0-9]+")
_STOP = {
    "the",
    "of",
    "and",
    "or",
    "in",
    "on",
    "for",
    "with",
    "by",
    "to",
    "what",
    "which",
    "who",
    "how",
    "many",
    "is",
    "are",
    "was",
    "were",
    "list",
    "show",
    "give",
    "all",
    "each",
    "id",
}


def _words(text: str) -> set[str]:
    """Lower-case word stems: splits snake_case and CamelCase, drops a plural 's' ("-ies" gives
    both stems: countries -> country, movies -> movie)."""
    out = set()
    for w in _WORD.findall(text):
        w = w.lower()
        if len(w) > 4 and w.endswith("ies"):
            out.add(w[:-3] + "y")
        if len(w) > 3 and w.endswith("s"):
            w = w[:-1]
        if len(w) > 1 and w not in _STOP:
            out.add(w)
    return out


def _column_words(table: Table) -> set[str]:
    return set().union(*(_words(c.name) for c in table.columns))


def schema_words(schema: Schema) -> frozenset[str]:
    """The word stems of every table and column name."""
    return frozenset(set().union(*(_words(t.name) | _column_words(t) for t in schema.tables)))


@dataclass(frozen=True)
class Ranking:
    """A question's words read against a schema, once: every table's score, best first."""

    schema: Schema
    scores: dict[str, int]  # by table name
    ranked: list[Table]  # best scored first; the schema's order among equals
    linked: tuple[ValueHit, ...] = ()  # values the question names, where they are stored

    @property
    def shown(self) -> dict[str, list[tuple[str, str]]]:
        """Per table, the (column, value) pairs its rows in the context should show."""
        shown: dict[str, list[tuple[str, str]]] = {}
        for hit in self.linked:
            shown.setdefault(hit.table, []).append((hit.column, hit.value))
        return shown

    def pick(self, max_tables: int = 6) -> list[str]:
        """The tables the question most likely needs, plus the tables that join them.

        Scored by words shared between the question and a table's name (weighted) and column
        names. Small schemas are sent whole. Best first; the context renders tables in the
        schema's own order, whatever this order.
        """
        schema, scores, ranked = self.schema, self.scores, self.ranked
        if len(schema.tables) <= max_tables:
            return schema.names
        chosen = [t.name for t in ranked if scores[t.name] > 0][: max(1, max_tables // 2)]
        if not chosen:
            chosen = [ranked[0].name]
        # Add foreign-key neighbours (both directions) so joins between chosen tables exist.
        neighbours: list[str] = []
        for t in schema.tables:
            for fk in t.foreign_keys:
                if t.name in chosen and fk.ref_table not in chosen:
                    neighbours.append(fk.ref_table)
                elif fk.ref_table in chosen and t.name not in chosen:
                    neighbours.append(t.name)
        real = {t.name.lower(): t.name for t in schema.tables}
        for n in sorted(neighbours, key=lambda n: -scores.get(real.get(n.lower()) or n, 0)):
            name = real.get(n.lower())
            if name and name not in chosen and len(chosen) < max_tables:
                chosen.append(name)
        for t in ranked:  # fill remaining room with the next best scored tables
            if len(chosen) >= max_tables or scores[t.name] <= 0:
                break
            if t.name not in chosen:
                chosen.append(t.name)
        return chosen


def rank_tables(schema: Schema, question: str, linked: tuple[ValueHit, ...] = ()) -> Ranking:
    """The schema's tables scored for the question: 3 a word shared with the table's name, 3 for
    holding a value the question names (`linked`, from `prompting.values`), 1 a word shared
    with its columns."""
    q = _words(question)
    holders = {hit.table for hit in linked}
    scores: dict[str, int] = {}
    for t in schema.tables:
        name_hits = len(q & _words(t.name)) + (t.name in holders)
        scores[t.name] = 3 * name_hits + len(q & _column_words(t))
    ranked = sorted(schema.tables, key=lambda t: -scores[t.name])
    return Ranking(schema, scores, ranked, linked)


def prune(schema: Schema, question: str, max_tables: int = 6) -> list[str]:
    """`Ranking.pick` for a question not ranked yet."""
    return rank_tables(schema, question).pick(max_tables)


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
    ranking: Ranking | None = None,
) -> Context:
    """The largest context that fits the budget, tried in this order:

    every table with rows; every table, rows only for the tables the question needs; only
    the tables the question needs (fewer and fewer) with their rows. `ranking`: the
    question's, when the caller has it already (`rank_tables`).
    """
    if ranking is None:
        ranking = rank_tables(schema, question)
    shown = ranking.shown
    everything = render_context(conn, schema, schema.names, shown=shown)
    if estimate_tokens(everything) <= budget_tokens:
        return Context(everything, schema.names, False)
    needed = ranking.pick()
    for k in range(len(needed), -1, -1):
        text = render_context(conn, schema, schema.names, sampled=needed[:k], shown=shown)
        if estimate_tokens(text) <= budget_tokens:
            return Context(text, schema.names, False)
    for max_tables in (6, 5, 4, 3, 2, 1):
        tables = ranking.pick(max_tables)
        text = render_context(conn, schema, tables, shown=shown)
        if estimate_tokens(text) <= budget_tokens:
            return Context(text, tables, True)
    # Even one table is too big: send its CREATE TABLE alone.
    return Context(render_context(None, schema, tables), tables, True)


def focused_context(
    conn: sqlite3.Connection | None,
    schema: Schema,
    question: str,
    max_tables: int = FOCUS_TABLES,
    budget_tokens: int = FOCUS_BUDGET_TOKENS,
    ranking: Ranking | None = None,
) -> Context | None:
    """Only the tables the question most likely needs, with rows for as many of them as fit
    `budget_tokens`; None when that would be the whole schema anyway. `ranking`: the
    question's, when the caller has it already (`rank_tables`)."""
    if ranking is None:
        ranking = rank_tables(schema, question)
    tables = ranking.pick(max_tables)
    if len(tables) >= len(schema.tables):
        return None
    # The likeliest tables get rows first (measured: rows for the tables with the most text
    # instead turned 5 of the 960 held-out answers right, 7 wrong).
    sampled = rows_that_fit(conn, schema, tables, budget_tokens)
    return Context(render_context(conn, schema, tables, sampled=sampled, shown=ranking.shown),
                   tables, True)


def rows_that_fit(conn: sqlite3.Connection | None, schema: Schema, tables: list[str],
                  budget_tokens: int) -> list[str]:
    """Which of `tables` get their rows in a context of `budget_tokens`: the longest run from
    the first that fits.

    A table's rows cost the same tokens in any company, so runs are sized without rendering.
    """
    bare = estimate_tokens(render_context(None, schema, tables))
    cost = {t: estimate_tokens(render_context(conn, schema, [t])) -
            estimate_tokens(render_context(None, schema, [t])) for t in tables}
    for k in range(len(tables), 0, -1):
        if bare + sum(cost[t] for t in tables[:k]) <= budget_tokens:
            return tables[:k]
    return []


@dataclass(frozen=True)
class QuestionContexts:
    """What `pipeline.ask` shows the model for one question: the question's likeliest tables
    first (`focus`, None when that is the whole schema), then every table that fits (`whole`)."""

    ranking: Ranking
    whole: Context
    focus: Context | None


def question_contexts(db: Database, question: str, link_values: bool = True,
                      focused: bool = True) -> QuestionContexts:
    """The contexts `ask` renders for `question` (the values it names linked first), so that
    training shows the model what the app will (finetune/data.py)."""
    schema = db.schema()
    linked = tuple(value_index(db).find(question, schema_words(schema))) if link_values else ()
    ranking = rank_tables(schema, question, linked)
    whole = context_for(db.conn, schema, question, ranking=ranking)
    focus = focused_context(db.conn, schema, question, ranking=ranking) if focused else None
    return QuestionContexts(ranking, whole, focus)
