"""How sure an answer is (model/llm/pipeline/confidence.py): the verdict from what the pipeline
measured, and the question's words the database has no name for."""

from __future__ import annotations

import pytest

from model.llm.pipeline.answer import Answer
from model.llm.pipeline.confidence import (
    Verdict,
    unmatched,
    unmatched_phrase,
    verdict,
)
from model.llm.pipeline.settings import DEFAULT, Policy
from model.llm.pipeline.vote import Alternative
from model.llm.prompting.values import value_index
from model.llm.protocol import GenerationStats
from model.llm.sql.problem import Problem
from model.samples import CHINOOK
from model.sqlite.db import Database

SQL = "SELECT count(*) FROM albums"


def answer(agreed: str = "", rows: list[int] | None = None, answers: list[int] | None = None,
           min_logprob: float | None = None, out_of_time: str = "") -> Answer:
    alternatives = [Alternative(SQL, r, a) for r, a in zip(rows or [], answers or [], strict=True)]
    agreeing, ran = map(int, agreed.split(" of ")) if agreed else (0, 0)
    return Answer("q", sql=SQL, alternatives=alternatives, agreeing=agreeing, ran=ran,
                  out_of_time=out_of_time, stats=[GenerationStats(min_logprob=min_logprob)])


def test_sure_of_every_token_with_rows() -> None:
    sure = answer("1 of 1", [1], [1], min_logprob=DEFAULT.policy.sure_logprob / 2)
    assert verdict(sure) == Verdict("sure", 1, 1, "sure")
    assert verdict(sure).to_dict() == {"kind": "sure", "agreeing": 1, "drawn": 1,
                                       "phrase": "sure"}


def test_sure_by_the_policy_it_was_asked_with() -> None:
    doubtful = answer("1 of 1", [1], [1], min_logprob=DEFAULT.policy.sure_logprob * 2)
    assert verdict(doubtful).kind == "unchecked"
    lax = Policy(sure_logprob=DEFAULT.policy.sure_logprob * 3)
    assert verdict(doubtful, lax).kind == "sure"


def test_most_answers_agreeing() -> None:
    assert verdict(answer("5 of 8", [3, 7], [5, 3], min_logprob=-3.0)) == \
        Verdict("agree", 5, 8, "5 of 8 answers agree")


def test_no_majority_is_unsure() -> None:
    assert verdict(answer("3 of 8", [3, 7, 1], [3, 3, 2], min_logprob=-3.0)) == \
        Verdict("unsure", 3, 8, "unsure: 3 different results")
    # One result among those that ran, but most of the answers returned nothing.
    assert verdict(answer("1 of 4", [3], [1])).phrase == \
        "unsure: 3 of 4 answers returned nothing"


def test_a_budget_cut_answer_is_unchecked() -> None:
    cut = answer(out_of_time="time budget of 6 s reached: further checks skipped",
                 min_logprob=-3.0)
    assert verdict(cut) == Verdict("unchecked", 0, 0, "unchecked: the time budget ran out")
    # Sure of its tokens, but its result was never run: not "sure".
    assert verdict(answer(min_logprob=-0.01)).kind == "unchecked"


def test_an_answer_failing_the_check_is_unsure() -> None:
    failed = answer("1 of 1", [1], [1], min_logprob=-0.01)
    failed.problems = [Problem("no such table: album", kind="table")]
    assert verdict(failed).phrase == "unsure: the SQL fails the check"


@pytest.fixture(scope="module")
def chinook_db() -> Database:
    return Database.open(CHINOOK)


@pytest.mark.parametrize(("question", "words"), [
    ("Name the top 10 albums with the highest sales amount", ["sales"]),
    ("How many customers are from Brazil?", []),  # a stored value
    ("List the tracks by AC/DC in the Rock genre", []),
    ("Who is the Sales Manager?", []),  # 'Sales Manager' is an employee's title
    ("How many tracks are longer than 5 minutes?", ["minutes"]),  # the data has Milliseconds
    ("Which employee sold the most invoices?", ["sold"]),
])
def test_the_words_nothing_in_the_database_is_named(chinook_db: Database, question: str,
                                                    words: list[str]) -> None:
    assert unmatched(question, chinook_db.schema(), value_index(chinook_db)) == words


def test_the_unmatched_phrase() -> None:
    assert unmatched_phrase(["sales"]) == "'sales': nothing by that name in this database"
    assert unmatched_phrase([]) == ""
