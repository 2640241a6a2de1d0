"""Values the question names, found in the data: 'Prague', 'Bossa Nova', AC/DC, 2012.

A question names things as the data holds them, not as the schema does: "customers from
Prague" means `City = 'Prague'`, which no table or column name says. Each database gets an
index of its distinct short text values (built once, lazily, from the pipeline's read-only
connection, and bounded: so many rows read a table, so many values kept a column). A
question's quoted strings, its runs of words and its years are looked up in it; what is found
brings its table into the question's context (`model.llm.prompting.context`) and is shown there in a
row that holds it, as stored ('Rock' for "rock").

A lower-case word alone ("rock") is only looked up among a column's few categories (genres,
countries), never among titles or names: a title can be any word ("Help", "Time").
"""

from __future__ import annotations

import re
import sqlite3
import threading
import weakref
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from model.sqlite.schema import Schema, quote

if TYPE_CHECKING:
    from model.sqlite.db import Database

ROWS_READ = 20_000  # rows of a table whose values are indexed (a bigger table: its first rows)
VALUES_A_COLUMN = 5_000  # distinct values kept a column
MAX_VALUE_CHARS = 60  # longer text is prose, not a name a question repeats
CATEGORIES = 100  # a column of at most this many values holds categories: "rock" finds 'Rock'
MAX_WORDS = 4  # the longest run of question words looked up
MAX_HITS = 6  # values linked a question: the longest matches first
_QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"")
_WORD = re.compile(r"[\w][\w/&.'-]*[\w]|[\w]")
_YEAR = re.compile(r"^(1[89]|20)\d\d$")
_DATE = re.compile(r"^(\d{4})-\d\d")
# Words that ask rather than name: never looked up alone.
_ASKING_WORDS = """
a an the of and or in on at for with by to from as is are was were be been what which who whom
whose how many much list show give find name names return tell count all each every any some
that this these those than more most less least number total average sum there their its
do does did has have had not no yes per between into over under about after before
"""
_ASKING = frozenset(_ASKING_WORDS.split())


@dataclass(frozen=True)
class ValueHit:
    """A value the question names, where the data holds it."""

    table: str
    column: str
    value: str  # as stored
    said: str = field(default="", compare=False)  # the question's words for it, lower-cased

    def __str__(self) -> str:
        return f"'{self.value}' in {self.table}.{self.column}"


@dataclass
class ValueIndex:
    """Lower-cased text -> where it is stored; years -> a date column holding them."""

    values: dict[str, list[ValueHit]]
    categories: set[tuple[str, str]]  # (table, column) of few values
    years: dict[str, list[ValueHit]]

    @classmethod
    def build(cls, conn: sqlite3.Connection, schema: Schema) -> ValueIndex:
        values: dict[str, list[ValueHit]] = defaultdict(list)
        categories: set[tuple[str, str]] = set()
        years: dict[str, list[ValueHit]] = defaultdict(list)
        for table in schema.tables:
            if table.kind != "table":
                continue  # a view's values are its tables', and reading it may be slow
            for column in table.columns:
                stored = _distinct_texts(conn, table.name, column.name)
                if len(stored) <= CATEGORIES:
                    categories.add((table.name, column.name))
                seen_years: set[str] = set()
                for value in stored:
                    values[value.lower()].append(ValueHit(table.name, column.name, value))
                    date = _DATE.match(value)
                    if date and date.group(1) not in seen_years:
                        seen_years.add(date.group(1))
                        years[date.group(1)].append(ValueHit(table.name, column.name, value))
        return cls(dict(values), categories, dict(years))

    def find(self, question: str, schema_words: frozenset[str] = frozenset()) -> list[ValueHit]:
        """The values `question` names (quoted, a run of words, a year), longest first; a
        single lower-case word only as a category, and never one of `schema_words`."""
        hits: list[ValueHit] = []
        for match in _QUOTED.finditer(question):
            said = (match.group(1) or match.group(2)).strip().lower()
            hits += [replace(hit, said=said) for hit in self.values.get(said, [])]
        unquoted = _QUOTED.sub(lambda m: " " * len(m.group()), question)  # same offsets
        words = [(m.group(), m.start()) for m in _WORD.finditer(unquoted)]
        taken: set[int] = set()  # word positions inside a longer match
        for n in range(min(MAX_WORDS, len(words)), 0, -1):
            for i in range(len(words) - n + 1):
                if taken & set(range(i, i + n)):
                    continue
                run = words[i : i + n]
                found = self._lookup(question, run, schema_words)
                if found:
                    hits += found
                    taken |= set(range(i, i + n))
        unique = list(dict.fromkeys(hits))
        return sorted(unique, key=lambda h: -len(h.value))[:MAX_HITS]

    def _lookup(self, question: str, run: list[tuple[str, int]],
                schema_words: frozenset[str]) -> list[ValueHit]:
        text = question[run[0][1] : run[-1][1] + len(run[-1][0])]
        if text.endswith("'s"):  # "Queen's albums"
            text = text[:-2]
        key = text.lower()
        if len(run) == 1:
            if _YEAR.match(key):
                return [replace(hit, said=key) for hit in self.years.get(key, [])]
            if (key in _ASKING or key in schema_words or key.rstrip("s") in schema_words
                    or len(key) < 2 or key.isdigit()):
                return []
        hits = self.values.get(key, [])
        if not any(c.isupper() or c.isdigit() for c in text):  # "rock": a category only
            hits = [h for h in hits if (h.table, h.column) in self.categories]
        return [replace(hit, said=key) for hit in hits]


def _distinct_texts(conn: sqlite3.Connection, table: str, column: str) -> list[str]:
    """Up to VALUES_A_COLUMN distinct short texts of a column, from its first ROWS_READ rows."""
    sql = (f"SELECT DISTINCT v FROM (SELECT {quote(column)} AS v FROM {quote(table)} "
           f"LIMIT {ROWS_READ}) WHERE typeof(v) = 'text' AND length(v) BETWEEN 1 AND "
           f"{MAX_VALUE_CHARS} LIMIT {VALUES_A_COLUMN}")
    try:
        return [str(v).strip() for (v,) in conn.execute(sql) if str(v).strip()]
    except sqlite3.Error:
        return []


_INDEXES: weakref.WeakKeyDictionary[Database, ValueIndex] = weakref.WeakKeyDictionary()
_BUILDING = threading.Lock()


def value_index(db: Database) -> ValueIndex:
    """`db`'s index, built on first use (callers are worker threads, never the UI's)."""
    with _BUILDING:  # one build a database, whoever asks first
        index = _INDEXES.get(db)
        if index is None:
            index = _INDEXES[db] = ValueIndex.build(db.conn, db.schema())
        return index
