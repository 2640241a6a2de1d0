"""How sure an answer is, and why, in one short phrase: "sure", "5 of 8 answers agree",
"unsure: 3 different results", "unchecked: the time budget ran out"; and the question's words
that name nothing in the database ("'sales': nothing by that name in this database").

Pure functions of what the pipeline already measured (`Answer`): the model's least likely
token, the answers that ran and what they returned. The app shows the phrase beside the SQL
read out (`model.llm.sql.explain`), `gemma-sql ask` prints it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from model.llm.pipeline.settings import DEFAULT, Policy
from model.llm.prompting.context import schema_words
from model.llm.prompting.values import ValueIndex, value_index
from model.llm.sql.explain import explain

if TYPE_CHECKING:
    from model.llm.pipeline.answer import Answer
    from model.sqlite.db import Database
    from model.sqlite.schema import Schema


@dataclass(frozen=True)
class Verdict:
    kind: str  # "sure", "agree", "unsure" or "unchecked"
    agreeing: int  # answers that returned the chosen result
    drawn: int  # answers that ran (the greedy one included); 0: none ran
    phrase: str  # "5 of 8 answers agree"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(answer: Answer, policy: Policy = DEFAULT.policy) -> Verdict:
    """How sure `answer` is: "sure" when the model was sure of every token (by the line
    `policy` draws between a sure answer and one to draw beside) and its result has rows;
    "agree" when most of the answers that ran returned its result; "unsure" when they mostly
    did not, or it fails the check; "unchecked" when nothing was compared."""
    agreeing, drawn = answer.agreeing, answer.ran
    results = len(answer.alternatives)
    if not answer.ok:
        return Verdict("unsure", agreeing, drawn, "unsure: the SQL fails the check")
    stats = answer.stats[-1] if answer.stats else None
    sure = stats is not None and stats.min_logprob is not None and \
        stats.min_logprob >= policy.sure_logprob
    if drawn > 1:
        if agreeing * 2 > drawn:
            return Verdict("agree", agreeing, drawn, f"{agreeing} of {drawn} answers agree")
        if results > 1:
            return Verdict("unsure", agreeing, drawn, f"unsure: {results} different results")
        return Verdict("unsure", agreeing, drawn,
                       f"unsure: {drawn - agreeing} of {drawn} answers returned nothing")
    if sure and results and answer.alternatives[0].rows > 0:
        return Verdict("sure", agreeing, drawn, "sure")
    if answer.out_of_time:
        return Verdict("unchecked", agreeing, drawn, "unchecked: the time budget ran out")
    if drawn == 1:
        return Verdict("unchecked", agreeing, drawn, "unchecked: no other answer ran")
    return Verdict("unchecked", agreeing, drawn, "unchecked: not run to compare")


# Words of a question that ask rather than name (beside `values`' and `context`'s own).
_ASKING_WORDS = """
a an the of and or in on at for with by to from as is are was were be been being what which who
whom whose how many much list show give find name names return tell count all each every any
some that this these those than more most less least number total average sum there their its
it they them do does did has have had not no yes per between into over under about after before
top highest lowest largest smallest biggest greatest best worst first last maximum minimum max
min mean only also both either ever order ordered sort sorted descending ascending amount value
values times kind type different distinct same other others ones one two three ten where when
get display please me my i we our you your can could would should will get whose along together
their respective corresponding associated whether if but so such like than then out up down
live lives lived work works worked belong belongs contain contains located named called born
longer shorter older younger bigger smaller larger higher lower greater fewer cheaper dearer
"""
_ASKING = frozenset(_ASKING_WORDS.split())
_QUESTION_WORD = re.compile(r"[A-Za-z][A-Za-z']*")
_STEM_WORD = re.compile(r"[A-Za-z][a-z]*|[0-9]+")


def unmatched(question: str, schema: Schema, values: ValueIndex | None = None) -> list[str]:
    """The question's words (lower-cased, in order, once) that match no table or column name
    and no stored value (`ValueIndex.find`'s matches, or a value of that one word): what the
    database may not hold ("sales")."""
    names = schema_words(schema)
    found: set[str] = set()
    if values is not None:
        for hit in values.find(question, names):
            found.update(_QUESTION_WORD.findall(hit.said))
    out: list[str] = []
    for word in _QUESTION_WORD.findall(question):
        lowered = word.lower().removesuffix("'s").strip("'")
        if len(lowered) < 3 or lowered in _ASKING or lowered in out or lowered in found:
            continue
        if _stems(word) & names or (values is not None and lowered in values.values):
            continue
        out.append(lowered)
    return out


def unmatched_phrase(words: list[str]) -> str:
    """"'sales': nothing by that name in this database"; "" for none."""
    if not words:
        return ""
    return ", ".join(f"'{w}'" for w in words) + ": nothing by that name in this database"


def _stems(word: str) -> set[str]:
    """The word's stems as `schema_words` makes them (CamelCase split, a plural 's' dropped)."""
    out = set()
    for part in _STEM_WORD.findall(word):
        part = part.lower()
        if len(part) > 4 and part.endswith("ies"):
            out.add(part[:-3] + "y")
        if len(part) > 3 and part.endswith("s"):
            out.add(part[:-1])
        out.add(part)
    return out


@dataclass(frozen=True)
class ReadOut:
    """What is said beside an answer: its SQL in words, how sure it is, and what the
    question names that the database does not."""

    explanation: str
    verdict: Verdict
    unmatched: list[str]


def read_out(answer: Answer, db: Database, policy: Policy = DEFAULT.policy) -> ReadOut:
    """`answer` read out against `db` (the value index is the pipeline's, already built),
    judged by the `policy` it was asked with."""
    schema = db.schema()
    return ReadOut(explain(answer.sql, schema) if answer.sql else "", verdict(answer, policy),
                   unmatched(answer.question, schema, value_index(db.reader())))
