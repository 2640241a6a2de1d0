"""Running the answers and choosing among them by their results (pipeline.vote, pipeline.choose),
on real SQLite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.llm.pipeline.choose import (
    Candidate,
    Result,
    choose,
    differences,
    group,
    rank,
    result_key,
)
from model.llm.pipeline.settings import DEFAULT, Policy
from model.llm.pipeline.vote import CHECK_BUDGET_S, read_candidates, run_candidates
from model.sqlite.db import Database


@pytest.fixture
def db(chinook: Path) -> Iterator[Database]:
    database = Database.open(chinook)
    yield database
    database.close()


def ran(db: Database, *sqls: str) -> list[Candidate]:
    candidates = read_candidates(sqls, db, DEFAULT)
    candidates[0].origin = "greedy"
    run_candidates(db, candidates)
    return candidates


def vote(candidates: list[Candidate], policy: Policy = DEFAULT.policy) -> list[Result]:
    return rank(group(candidates), policy)


def test_the_majority_result_wins_and_failures_empties_and_nulls_drop_out(db: Database) -> None:
    candidates = ran(db, "SELECT count(*) FROM albums",  # greedy: 347
                     "SELECT count(*) FROM artists",  # 275
                     "SELECT count(AlbumId) FROM albums",  # 347
                     "SELECT count(*) FROM artists",  # 275
                     "SELECT count(*) FROM genres WHERE 0",  # a count of nothing: 0
                     "SELECT count(*) FROM artists a, artists b WHERE a.ArtistId = b.ArtistId",
                     "SELECT Title FROM albums WHERE AlbumId < 0",  # no row
                     "SELECT NULL FROM albums",  # only NULLs
                     "SELECT nope FROM albums")  # fails the check: never run
    assert candidates[-1].rows is None and candidates[6].rows == []
    assert candidates[4].rows == [(0,)] and not candidates[4].usable
    groups = vote(candidates)
    assert [len(g) for g in groups] == [3, 2]
    assert [c.sql for c in groups[0]] == [candidates[1].sql, candidates[3].sql, candidates[5].sql]


def test_a_tie_goes_to_the_greedy_answer(db: Database) -> None:
    groups = vote(ran(db, "SELECT count(*) FROM albums", "SELECT count(*) FROM artists"))
    assert groups[0][0].origin == "greedy"


def test_an_answer_taking_a_column_from_an_arbitrary_row_counts_a_quarter(db: Database) -> None:
    loose = "SELECT genres.Name, count(*) FROM genres JOIN tracks USING (GenreId)"  # one row
    grouped = ("SELECT genres.Name, count(*) FROM genres JOIN tracks USING (GenreId) "
               "GROUP BY genres.GenreId")
    candidates = ran(db, loose, grouped)  # greedy loose, as many answers: a quarter of one
    assert [p.kind for p in candidates[0].problems] == ["grouping"]
    assert [c.sql for c in vote(candidates)[0]] == [candidates[1].sql]
    tie = ran(db, grouped, loose, loose, loose, loose)  # four quarters against one: a tie
    assert vote(tie)[0][0].origin == "greedy"
    outvoted = ran(db, loose, grouped, loose, loose, loose, loose)  # five quarters against one
    assert vote(outvoted)[0][0].origin == "greedy"


def test_results_agree_whatever_their_column_order(db: Database) -> None:
    a = db.conn.execute("SELECT Name, GenreId FROM genres").fetchall()
    b = db.conn.execute("SELECT GenreId, Name FROM genres ORDER BY Name").fetchall()
    assert result_key(a) == result_key(b) != result_key(a[1:])
    assert result_key([(2.0,)]) != result_key([(2.5,)])


def test_check_runs_stay_within_their_budget(db: Database) -> None:
    forever = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
               "SELECT count(*) FROM n WHERE i > {}")
    candidates = read_candidates([forever.format(k) for k in range(6)], db, DEFAULT)
    started = time.perf_counter()
    run_candidates(db, candidates)
    assert time.perf_counter() - started < CHECK_BUDGET_S + 1
    assert all(c.rows is None for c in candidates)
    assert candidates[0].timed_out and candidates[-1].timed_out  # cut off, then never started


def test_differences_name_the_clauses(db: Database) -> None:
    first = "SELECT Name FROM artists WHERE ArtistId = 1"
    assert differences(first, "SELECT Name FROM artists WHERE ArtistId = 2") == ["WHERE"]
    assert differences(first, "SELECT Title FROM albums") == ["columns", "tables", "WHERE"]
    assert differences(first, "SELECT Name FROM artists WHERE ArtistId = 1 LIMIT 3") == [
        "LIMIT"]


def test_the_read_back_lets_a_runner_up_that_accounts_for_the_question_overtake(
        db: Database) -> None:
    """Support 2 against 1: a runner-up read back more than ln 2 likelier wins; less, not."""
    ranked = vote(ran(db, "SELECT count(*) FROM artists", "SELECT count(*) FROM albums",
                      "SELECT count(*) FROM albums"))
    assert [len(r) for r in ranked] == [2, 1]
    overtaken = choose(ranked, [-10.0, -9.0], DEFAULT.policy, ran=3)
    assert overtaken.chosen.sql == ranked[1][0].sql and overtaken.read_back == [-9.0, -10.0]
    assert overtaken.agreed == "1 of 3" and overtaken.alternatives()[1].read_back == -10.0
    kept = choose(ranked, [-10.0, -9.5], DEFAULT.policy, ran=3)
    assert kept.chosen.sql == ranked[0][0].sql and kept.agreed == "2 of 3"
    unread = choose(ranked, [], DEFAULT.policy, ran=3)
    assert unread.results == ranked and unread.alternatives()[0].read_back is None


def test_the_policy_is_what_weighs_loose_answers(db: Database) -> None:
    """The weights are the policy's, passed in: a loose answer counting one outvotes."""
    loose = "SELECT genres.Name, count(*) FROM genres JOIN tracks USING (GenreId)"
    grouped = ("SELECT genres.Name, count(*) FROM genres JOIN tracks USING (GenreId) "
               "GROUP BY genres.GenreId")
    candidates = ran(db, grouped, loose, loose)
    assert vote(candidates)[0][0].sql == candidates[0].sql
    assert vote(candidates, Policy(loose_weight=1.0))[0][0].sql == candidates[1].sql
