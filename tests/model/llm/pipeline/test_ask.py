"""The question -> SQL pipeline, with a scripted engine (fast) and the real 270M (slow)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes import (
    FakeClock,
    ScriptedBeamEngine,
    ScriptedEngine,
    ScriptedReviewer,
    ScriptedSampler,
    TimedEngine,
)

from model.llm.pipeline.answer import Answer
from model.llm.pipeline.ask import CANDIDATES_MARKER, RETRY_MARKER, WIDEN_MARKER, ask
from model.llm.pipeline.settings import DEFAULT, Settings
from model.llm.pipeline.vote import CHECK_BUDGET_S, VOTE_MARKER
from model.llm.prompting.prompt import CONTEXT_FIRST
from model.llm.protocol import Sampled, TextEngine
from model.sqlite.db import Database, WriteRefused

SAMPLES = DEFAULT.samples


def ask_every_table(engine: TextEngine, db: Database, question: str,
                    settings: Settings = DEFAULT, **kwargs: Any) -> Answer:
    """The pipeline after the focused first try, which these scripted answers exercise."""
    return ask(engine, db, question, replace(settings, focused=False), **kwargs)


@pytest.fixture
def db(chinook: Path) -> Iterator[Database]:
    database = Database.open(chinook)
    yield database
    database.close()


def test_good_answer_is_pretty_and_checked(db: Database) -> None:
    engine = ScriptedEngine(" select Title from albums where AlbumId = 1 <end_of_turn>")
    chunks: list[str] = []
    answer = ask(engine, db, "Title of album 1?", on_chunk=chunks.append)
    assert answer.sql == "SELECT\n  Title\nFROM albums\nWHERE\n  AlbumId = 1"
    assert answer.ok and answer.problems == [] and answer.attempts == 1 and not answer.repaired
    assert "".join(chunks) == answer.raw
    assert "albums" in answer.tables_sent and answer.model == "scripted"
    assert answer.seconds > 0 and len(answer.stats) == 1
    assert "SQL Question: Title of album 1?" in engine.prompts[0]
    assert "CREATE TABLE" in engine.prompts[0]


def create_statements(prompt: str) -> set[str]:
    return set(re.findall(r"CREATE (?:TABLE|VIEW) \"?(\w+)", prompt))


def test_the_first_prompt_holds_only_the_questions_tables(db: Database) -> None:
    engine = ScriptedEngine(" SELECT Title FROM albums WHERE AlbumId = 1")
    answer = ask(engine, db, "Title of album 1?")
    every_table = set(db.schema().names)
    sent = create_statements(engine.prompts[0])
    assert "albums" in sent and len(sent) <= 4 < len(every_table)
    assert answer.ok and answer.pruned and set(answer.tables_sent) == sent
    assert len(engine.prompts) == 1 and not answer.widened and answer.notes == []
    whole = ScriptedEngine(" SELECT Title FROM albums WHERE AlbumId = 1")
    ask(whole, db, "Title of album 1?", settings=Settings(focused=False))
    assert create_statements(whole.prompts[0]) == every_table
    assert len(engine.prompts[0]) < len(whole.prompts[0]) * 0.7


@pytest.mark.parametrize(
    ("first", "error"),
    [(" SELECT Age FROM customers", "unknown column Age"),
     (" SELECT count(*) FROM tracks WHERE Composer = 'ACDC'",
      "no row of tracks has Composer = 'ACDC'"),
     ("I do not know.", "no SQL in the answer")],
)
def test_a_failed_focused_answer_asks_again_with_every_table(
    db: Database, first: str, error: str
) -> None:
    engine_answer = " SELECT CustomerId FROM customers"
    engine = ScriptedEngine(first, engine_answer)
    chunks: list[str] = []
    answer = ask(engine, db, "Customer ids?", settings=Settings(beams=0), on_chunk=chunks.append)
    assert len(engine.prompts) == 2 and answer.widened and answer.ok
    assert answer.sql == "SELECT\n  CustomerId\nFROM customers" and answer.attempts == 1
    assert len(create_statements(engine.prompts[0])) < len(db.schema().names)
    assert create_statements(engine.prompts[1]) == set(db.schema().names)
    assert set(answer.tables_sent) == set(db.schema().names) and not answer.pruned
    assert "".join(chunks) == first + WIDEN_MARKER.format(error=error) + engine_answer
    assert answer.notes == ["the answer from the question's tables failed the check; "
                            "asked with every table"]
    assert answer.to_dict()["widened"] is True


SEED_QUESTION = "Name the top 10 albums with the highest sales amount"
SEED_AS_WRITTEN = (" SELECT T1.Title FROM albums AS T1 JOIN invoices AS T2 ON T1.AlbumId ="
                   " T2.AlbumId GROUP BY T1.AlbumId ORDER BY SUM(T2.UnitPrice) DESC LIMIT 10")


def test_a_failed_focused_answer_whose_joins_mend_is_taken(db: Database) -> None:
    """The seed's question as the model answers it from its tables: invoices has no AlbumId
    and no UnitPrice; the line items, reached through tracks, have the price."""
    engine = ScriptedEngine(SEED_AS_WRITTEN)
    answer = ask(engine, db, SEED_QUESTION)
    assert len(engine.prompts) == 1 and answer.focused and not answer.widened and answer.ok
    assert answer.mended == ["invoices → invoice_items",
                             "invoice_items joined by its foreign key through tracks"]
    assert answer.notes == ["joins mended to the schema: invoices → invoice_items, "
                            "invoice_items joined by its foreign key through tracks"]
    assert answer.to_dict()["mended"] == answer.mended
    rows = db.conn.execute(answer.sql).fetchall()
    assert len(rows) == 10 and rows[0] == ("Battlestar Galactica (Classic), Season 1",)


def test_an_answer_that_passes_but_joins_off_the_key_is_mended(db: Database) -> None:
    engine = ScriptedEngine(" SELECT T1.Title FROM albums AS T1 JOIN tracks AS T2"
                            " ON T1.AlbumId = T2.GenreId WHERE T2.Name = 'Balls to the Wall'")
    answer = ask(engine, db, "Which album has the track Balls to the Wall?")
    assert answer.focused and answer.ok and answer.mended == ["tracks joined by its foreign key"]
    assert db.conn.execute(answer.sql).fetchall() == [("Balls to the Wall",)]
    unmended = ScriptedEngine(" SELECT T1.Title FROM albums AS T1 JOIN tracks AS T2"
                              " ON T1.AlbumId = T2.AlbumId WHERE T2.Name = 'Balls to the Wall'")
    assert ask(unmended, db, "Which album has the track Balls to the Wall?").mended == []


def test_a_failed_last_answer_is_mended_when_it_can_be(db: Database) -> None:
    wrong_side = (" SELECT T1.Name FROM albums AS T1 JOIN artists AS T2"
                  " ON T1.ArtistId = T2.ArtistId WHERE T1.Title = 'Facelift'")
    engine = ScriptedBeamEngine([" SELECT nope FROM albums"], wrong_side, wrong_side)
    answer = ask_every_table(engine, db, "Who made Facelift?",
                             settings=Settings(beams=4, max_repairs=1, check_runs=False))
    assert answer.attempts == 2 and len(engine.beam_prompts) == 1 and answer.ok
    assert answer.mended == ["T1.Name → T2.Name"]
    assert db.conn.execute(answer.sql).fetchall() == [("Alice In Chains",)]
    # Answers are run: the mended first answer returns a row, so neither beams nor a repair
    engine = ScriptedBeamEngine([" SELECT nope FROM albums"], wrong_side, wrong_side)
    ran = ask_every_table(engine, db, "Who made Facelift?",
                          settings=Settings(beams=4, max_repairs=1))
    assert ran.attempts == 1 and engine.beam_prompts == [] and ran.sql == answer.sql
    assert ran.mended == answer.mended and ran.agreed == "1 of 1"
    unmendable = ScriptedEngine(" SELECT Age FROM customers", " SELECT Age FROM customers")
    answer = ask_every_table(unmendable, db, "Ages?")
    assert not answer.ok and answer.mended == [] and answer.error == "unknown column Age"


def test_a_model_that_keeps_the_schema_read_gets_every_table_at_once(db: Database) -> None:
    engine = ScriptedEngine(" SELECT Title FROM albums WHERE AlbumId = 1")
    engine.prompt_layout = CONTEXT_FIRST
    answer = ask(engine, db, "Title of album 1?")
    assert create_statements(engine.prompts[0]) == set(db.schema().names) and answer.ok


def test_failed_sql_is_repaired_once_with_the_error(db: Database) -> None:
    engine = ScriptedEngine(
        " SELECT Age FROM customers",
        " SELECT CustomerId FROM customers",
    )
    chunks: list[str] = []
    answer = ask_every_table(engine, db, "Customer ids?", on_chunk=chunks.append)
    assert answer.attempts == 2 and answer.repaired and answer.ok
    assert answer.sql == "SELECT\n  CustomerId\nFROM customers"
    error = "unknown column Age"
    assert RETRY_MARKER.format(error=error) in "".join(chunks)
    assert error in engine.prompts[1] and "SELECT Age FROM customers" in engine.prompts[1]


def test_misspelt_names_are_corrected_without_asking_again(db: Database) -> None:
    engine = ScriptedBeamEngine([], " SELECT c.customer_id FROM customer AS c")
    answer = ask_every_table(engine, db, "Customer ids?", settings=Settings(beams=4))
    assert answer.sql == "SELECT\n  c.CustomerId\nFROM customers AS c" and answer.ok
    assert answer.corrected == ["customer → customers", "customer_id → CustomerId"]
    assert len(engine.prompts) == 1 and engine.beam_prompts == []
    assert answer.to_dict()["corrected"] == answer.corrected
    assert answer.notes == ["names corrected: customer → customers, customer_id → CustomerId"]


def test_a_failed_answer_takes_the_first_candidate_that_passes(db: Database) -> None:
    engine = ScriptedBeamEngine(
        [" SELECT Age FROM customers",  # the failed answer again: skipped
         " SELECT Id FROM customers",  # fails the check too
         " SELECT CustomerId FROM customers",
         " SELECT FirstName FROM customers"],
        " SELECT Age FROM customers",
    )
    chunks: list[str] = []
    answer = ask_every_table(engine, db, "Customer ids?",
                             settings=Settings(beams=4), on_chunk=chunks.append)
    assert answer.sql == "SELECT\n  CustomerId\nFROM customers" and answer.ok and answer.repaired
    assert len(engine.prompts) == 1 and engine.beam_prompts == engine.prompts  # same prompt
    error = "unknown column Age"
    assert "".join(chunks).endswith(
        CANDIDATES_MARKER.format(error=error, n=4) + " SELECT CustomerId FROM customers")


def test_a_candidate_with_misspelt_names_is_corrected_and_taken(db: Database) -> None:
    engine = ScriptedBeamEngine(
        [" SELECT nope FROM customers", " SELECT first_name FROM customer"],
        " SELECT Age FROM customers",
    )
    answer = ask_every_table(engine, db, "First names?", settings=Settings(beams=4))
    assert answer.sql == "SELECT\n  FirstName\nFROM customers" and answer.ok and answer.repaired
    assert answer.corrected == ["customer → customers", "first_name → FirstName"]
    assert answer.attempts == 1
    assert answer.notes == [
        "the first answer failed the check; this is the next most likely",
        "names corrected: customer → customers, first_name → FirstName"]


def test_a_comparison_that_is_never_true_fails_the_check(db: Database) -> None:
    right = (" SELECT count(*) FROM tracks JOIN genres ON tracks.GenreId = genres.GenreId"
             " WHERE genres.Name = 'Rock'")
    engine = ScriptedBeamEngine([right], " SELECT count(*) FROM tracks WHERE GenreId = 'Polka'")
    answer = ask_every_table(engine, db, "How many rock tracks?", settings=Settings(beams=4))
    assert answer.ok and answer.repaired and "genres.Name = 'Rock'" in answer.sql


def test_a_key_compared_with_the_name_it_stands_for_is_read_where_the_data_holds_it(
        db: Database) -> None:
    engine = ScriptedEngine(" SELECT count(*) FROM tracks WHERE GenreId = 'Rock'")
    answer = ask_every_table(engine, db, "How many rock tracks?")
    assert answer.ok and not answer.repaired and len(engine.prompts) == 1
    assert answer.corrected == ["GenreId = 'Rock' → genres.Name"]
    assert answer.notes == ["names corrected: GenreId = 'Rock' → genres.Name"]
    assert db.conn.execute(answer.sql).fetchall() == [(1297,)]


def test_text_no_row_holds_sends_for_a_candidate_that_matches(db: Database) -> None:
    doubtful = " SELECT count(*) FROM tracks WHERE Name = 'AC/DC'"
    engine = ScriptedBeamEngine(
        [doubtful, " SELECT count(*) FROM tracks WHERE Title = 'AC/DC'",  # fails
         " SELECT count(*) FROM tracks WHERE Composer = 'AC/DC'"], doubtful)
    answer = ask_every_table(engine, db, "How many tracks did AC/DC compose?",
                             settings=Settings(beams=4))
    assert answer.ok and answer.repaired and "Composer = 'AC/DC'" in answer.sql
    assert answer.problems == [] and answer.attempts == 1


def test_a_doubtful_answer_is_kept_when_no_candidate_is_better(db: Database) -> None:
    doubtful = " SELECT count(*) FROM tracks WHERE Name = 'AC/DC'"
    engine = ScriptedBeamEngine(
        [" SELECT count(*) FROM tracks WHERE Composer = 'ACDC'",  # doubtful too
         " SELECT count(*) FROM tracks WHERE Title = 'AC/DC'"], doubtful)
    answer = ask_every_table(engine, db, "How many tracks did AC/DC compose?",
                             settings=Settings(beams=4))
    assert answer.ok and not answer.repaired and answer.attempts == 1
    assert "Name = 'AC/DC'" in answer.sql and [p.kind for p in answer.problems] == ["value"]
    assert len(engine.beam_prompts) == 1 and len(engine.prompts) == 1  # no repair either


def test_a_failed_answer_prefers_a_candidate_whose_values_exist(db: Database) -> None:
    engine = ScriptedBeamEngine(
        [" SELECT count(*) FROM tracks WHERE Name = 'AC/DC'",
         " SELECT count(*) FROM tracks WHERE Composer = 'AC/DC'"],
        " SELECT count(*) FROM tracks WHERE Band = 'AC/DC'")
    answer = ask_every_table(engine, db, "How many tracks did AC/DC compose?",
                             settings=Settings(beams=4))
    assert answer.ok and "Composer = 'AC/DC'" in answer.sql
    # ...and takes a doubtful one when nothing else passes
    engine = ScriptedBeamEngine([" SELECT count(*) FROM tracks WHERE Name = 'AC/DC'"],
                                " SELECT count(*) FROM tracks WHERE Band = 'AC/DC'")
    answer = ask_every_table(engine, db, "How many tracks did AC/DC compose?",
                             settings=Settings(beams=4))
    assert answer.ok and "Name = 'AC/DC'" in answer.sql and answer.attempts == 1


def test_when_no_candidate_passes_the_question_is_repaired(db: Database) -> None:
    engine = ScriptedBeamEngine(
        [" SELECT nope FROM customers", "no SQL here"],
        " SELECT Age FROM customers",
        " SELECT CustomerId FROM customers",
    )
    answer = ask_every_table(engine, db, "Customer ids?", settings=Settings(beams=4))
    assert answer.attempts == 2 and answer.ok and len(engine.beam_prompts) == 1
    assert answer.notes == ["asked again: the first answer failed the check"]
    assert "failed: unknown column Age" in engine.prompts[1]
    engine = ScriptedBeamEngine([" SELECT Title FROM albums"], " SELECT nope FROM albums")
    assert ask_every_table(engine, db, "?",
                           settings=Settings(beams=0, max_repairs=0)).error == "unknown column nope"


def test_a_copied_repair_note_is_cut_from_the_repair(db: Database) -> None:
    engine = ScriptedEngine(
        " SELECT nope FROM albums",
        " SELECT Title FROM albums WHERE Title <> 'x failed: y' failed: unknown column nope",
    )
    answer = ask_every_table(engine, db, "Titles?")
    assert answer.ok and answer.repaired
    assert answer.sql == "SELECT\n  Title\nFROM albums\nWHERE\n  Title <> 'x failed: y'"


def test_repairs_are_bounded(db: Database) -> None:
    engine = ScriptedEngine(" SELECT nope FROM albums", " SELECT nope2 FROM albums", "unused")
    answer = ask_every_table(engine, db, "?", settings=Settings(max_repairs=1))
    assert answer.attempts == 2 and not answer.ok
    assert answer.error == "unknown column nope2"
    engine = ScriptedEngine(" SELECT nope FROM albums")
    assert ask_every_table(engine, db, "?", settings=Settings(max_repairs=0)).attempts == 1


def test_warnings_do_not_trigger_a_repair(db: Database) -> None:
    engine = ScriptedEngine(' SELECT * FROM invoices WHERE BillingAddress = "2010"')
    answer = ask_every_table(engine, db, "Invoices at 2010?")
    assert answer.attempts == 1 and answer.ok and len(answer.problems) == 2
    assert not answer.repaired


def test_no_sql_at_all(db: Database) -> None:
    answer = ask_every_table(ScriptedEngine("I do not know.", "Still no idea."), db, "?")
    assert answer.sql == "" and not answer.ok and answer.attempts == 2


def test_an_echoed_prompt_is_abandoned_early(db: Database) -> None:
    echo = " user You are a powerful text-to-SQL model. SQL Question: ?" + " blah" * 500
    answer = ask_every_table(ScriptedEngine(echo, echo), db, "?")
    assert answer.sql == "" and answer.attempts == 2
    assert len(answer.raw) < 100  # stopped reading at "SQL Question:", not 2,500 chars later


@pytest.mark.parametrize("focused", [True, False])
def test_cancel_stops_without_repair(db: Database, focused: bool) -> None:
    cancel = threading.Event()

    def on_chunk(piece: str) -> None:
        cancel.set()

    engine = ScriptedEngine(" SELECT Title FROM albums", "unused")
    answer = ask(engine, db, "Album titles?",
                 settings=Settings(focused=focused), on_chunk=on_chunk, cancel=cancel)
    assert answer.cancelled and answer.attempts == 1 and answer.problems == []
    assert len(engine.prompts) == 1 and not answer.widened


def test_every_prompt_of_the_seeds_layout_keeps_its_head_read(db: Database) -> None:
    """The head all the seed layout's prompts share is offered to the engine to keep (read
    once, then reused): the focused try, every table, the candidates and the repair."""
    from model.llm.prompting.prompt import prompt_head

    offered: list[str] = []

    class Recording(ScriptedBeamEngine):
        def stream(self, prompt: str, cancel: threading.Event | None = None,
                   max_new_tokens: int = 256, shared: str = "") -> Generator[str, None, None]:
            offered.append(shared)
            return super().stream(prompt, cancel, max_new_tokens, shared)

        def beams(self, prompt: str, n: int = 4, cancel: threading.Event | None = None,
                  max_new_tokens: int = 192, shared: str = "") -> list[str]:
            offered.append(shared)
            return super().beams(prompt, n, cancel, max_new_tokens, shared)

    failing = " SELECT Age FROM customers"
    engine = Recording([failing], failing, failing, failing)
    answer = ask(engine, db, "Customer ages?", settings=Settings(beams=4, max_repairs=1))
    assert answer.widened and answer.attempts == 2 and len(offered) == 4
    assert set(offered) == {prompt_head()} and all(p.startswith(prompt_head())
                                                   for p in engine.prompts)


def test_sql_is_never_executed(chinook: Path) -> None:
    db = Database.open(chinook, write=True)  # even with writes allowed
    engine = ScriptedEngine(" DELETE FROM albums", " DELETE FROM albums")
    answer = ask_every_table(engine, db, "Delete?")
    assert answer.sql.startswith("DELETE")
    db.close()
    with sqlite3.connect(chinook) as conn:
        assert conn.execute("SELECT count(*) FROM albums").fetchone()[0] == 347


# ------------------------------------------------------------------ the time budget


BUDGET_NOTE = "time budget of 8 s reached: further checks skipped"


def test_the_budget_stops_the_chain_and_the_first_answer_stands(db: Database) -> None:
    """The question's tables' answer fails; asking with every table would pass, but runs past
    the budget: it is cut off, and the first answer stands with a note saying why."""
    clock = FakeClock()
    first = " SELECT Age FROM customers"  # 7 pieces of 4 characters: 7 s
    engine = TimedEngine(clock, 1.0, 0.0, [], first, " SELECT CustomerId FROM customers")
    chunks: list[str] = []
    answer = ask(engine, db, "Customer ids?",
                 settings=Settings(budget=8), on_chunk=chunks.append, clock=clock)
    assert answer.raw == first and answer.error == "unknown column Age"  # read to its end
    assert answer.sql == "SELECT\n  Age\nFROM customers" and answer.focused
    assert not answer.widened and not answer.cancelled and answer.attempts == 1
    assert len(engine.prompts) == 2 and len(answer.stats) == 2  # the cut try was started
    assert engine.last_stats.stop == "cancel" and clock.now - 100 == 8
    assert "".join(chunks).startswith(first + WIDEN_MARKER.format(error="unknown column Age"))
    assert answer.notes == [BUDGET_NOTE] and answer.out_of_time == BUDGET_NOTE
    assert answer.to_dict()["out_of_time"] == BUDGET_NOTE
    assert answer.seconds == 8


def test_a_first_answer_past_the_budget_is_read_to_its_end_and_nothing_follows(
    db: Database
) -> None:
    clock = FakeClock()
    first = " SELECT Age FROM customers"
    engine = TimedEngine(clock, 2.0, 0.0, [], first, "never asked")
    answer = ask_every_table(engine, db, "Customer ids?", settings=Settings(budget=8), clock=clock)
    assert answer.raw == first and len(engine.prompts) == 1 and engine.beam_prompts == []
    assert answer.attempts == 1 and not answer.repaired and answer.notes == [BUDGET_NOTE]


def test_a_prompt_that_cannot_be_read_in_the_time_left_is_not_started(db: Database) -> None:
    """A prompt read cannot stop halfway: at the first prompt's reading rate, asking with every
    table (a prompt twice as long) would run past the budget, so it is never sent."""
    clock = FakeClock()

    class Reading(TimedEngine):
        """Reads a prompt of the first one's length in 2 s."""

        first = ""

        def stream(self, prompt: str, cancel: threading.Event | None = None,
                   max_new_tokens: int = 256, shared: str = "") -> Generator[str, None, None]:
            self.first = self.first or prompt
            seconds = 2.0 * len(prompt) / len(self.first)
            self.clock.tick(seconds)
            yield from super().stream(prompt, cancel, max_new_tokens, shared)
            self.last_stats.first_token_s = seconds

    engine = Reading(clock, 0.1, 0.0, [], " SELECT Age FROM customers", "never asked")
    answer = ask(engine, db, "Customer ids?", settings=Settings(budget=5), clock=clock)
    assert len(engine.prompts) == 1 and answer.focused
    # Stopped at once, before the budget: the note says when (the status line's time).
    assert answer.notes == ["checks stopped at 2.7 s: the next would not end within the 5 s "
                            "time budget"]
    assert clock.now - 100 < 3  # stopped at once, not after reading a prompt past the budget


def test_a_later_step_cut_by_the_budget_leaves_the_answer_it_found(db: Database) -> None:
    """Every table answered first (no focus); the beam search that would find a passing
    candidate ends past the budget: its candidate is not taken, and no repair follows."""
    clock = FakeClock()
    engine = TimedEngine(clock, 0.5, 10.0, [" SELECT CustomerId FROM customers"],
                         " SELECT Age FROM customers", "never asked")
    answer = ask_every_table(engine, db, "Customer ids?", settings=Settings(budget=8), clock=clock)
    assert engine.stopped == [True] and len(engine.prompts) == 1
    assert answer.error == "unknown column Age" and not answer.repaired
    assert answer.notes == [BUDGET_NOTE]


def test_steps_that_end_in_time_replace_the_answer(db: Database) -> None:
    clock = FakeClock()
    engine = TimedEngine(clock, 0.1, 1.0, [" SELECT CustomerId FROM customers"],
                         " SELECT Age FROM customers", " SELECT Age FROM customers")
    answer = ask(engine, db, "Customer ids?", settings=Settings(budget=8), clock=clock)
    assert answer.widened and answer.repaired and answer.ok and answer.out_of_time == ""
    assert answer.sql == "SELECT\n  CustomerId\nFROM customers"


def test_no_budget_lets_the_chain_run_to_its_end(db: Database) -> None:
    clock = FakeClock()
    engine = TimedEngine(clock, 1.0, 0.0, [], " SELECT Age FROM customers",
                         " SELECT CustomerId FROM customers")
    answer = ask(engine, db, "Customer ids?", settings=Settings(budget=0), clock=clock)
    assert answer.widened and answer.ok and answer.out_of_time == ""
    assert clock.now - 100 > 8


@pytest.mark.slow
def test_real_model_pipeline(real_engine: Any, db: Database) -> None:
    chunks: list[str] = []
    answer = ask(real_engine, db, "How many albums are there?",
                 settings=Settings(max_new_tokens=24), on_chunk=chunks.append)
    assert chunks and answer.raw and 1 <= answer.attempts <= 2
    assert answer.stats and all(s.tokens <= 24 for s in answer.stats)
    assert "albums" in answer.tables_sent


@pytest.mark.slow
def test_real_model_answers_are_voted_by_their_results(real_engine: Any, db: Database) -> None:
    """The mechanism, not the model's exact answer (which may hang on a kernel's rounding):
    answers are drawn and run, each alternative's result is what it says, and draws are
    seeded: the same prompt draws the same answers."""
    question = "How many customers are from Brazil?"
    answer = ask(real_engine, db, question,
                 settings=Settings(budget=0))  # no time limit: a busy CPU draws too
    assert answer.ok and answer.alternatives
    agreeing, ran = map(int, answer.agreed.split(" of "))
    assert 1 <= agreeing <= ran <= SAMPLES + 1 + 4  # greedy, drawn, and any beam candidates
    for alternative in answer.alternatives:
        assert len(db.conn.execute(alternative.sql).fetchall()) == alternative.rows
    prompt = f"<start_of_turn>user SQL Question: {question} <end_of_turn>\n<start_of_turn>model"
    drawn = real_engine.sample(prompt, n=3, max_new_tokens=24, seed=1)
    assert real_engine.sample(prompt, n=3, max_new_tokens=24, seed=1) == drawn


# ------------------------------------------------------------------ `gemma-sql ask`

GEMMA_SQL = Path(sys.executable).parent / "gemma-sql"


def run_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(GEMMA_SQL), "ask", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_cli_missing_db_is_one_line_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    result = run_cli(missing, "How many albums?")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == f"gemma-sql: {missing}: no such file"
    assert not missing.exists()


def test_cli_unavailable_model_is_one_line_exit_1(chinook: Path, tmp_path: Path) -> None:
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = run_cli(chinook, "How many albums?", "--model", "gemma-2-2b-sql", env=env)
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("gemma-sql: gemma-2-2b-sql needs DH21ML/gemma-2-2b-it-SQL-FineTuned")
    assert line.endswith("the offline default is gemma-3-270m-sql.")


@pytest.mark.slow
def test_cli_json_with_the_real_model(chinook: Path, base_checkpoint: Path) -> None:
    before = chinook.read_bytes()
    result = run_cli(chinook, "How many albums are there?", "--run", "--json")
    # Our own lines only: no library warnings (bitsandbytes, deprecations), no traceback.
    assert all(line.startswith("gemma-sql: ") for line in result.stderr.splitlines()), \
        result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"question", "sql", "columns", "rows", "error", "model", "dtype",
                        "seconds", "alternatives", "explanation", "confidence", "unmatched"}
    assert out["dtype"] in ("bf16", "fp32")
    assert out["model"] == "gemma-3-270m-sql" and out["seconds"] > 0
    # Either SQL that ran (exit 0) or a one-line reason (exit 1); never a changed database.
    assert (result.returncode == 0) == (out["error"] is None)
    assert chinook.read_bytes() == before


@pytest.mark.parametrize(("flag", "tables_in_first_prompt"), [("--focus", 3), ("--no-focus", 12)])
def test_cli_focus_flag_chooses_the_first_prompts_tables(
    chinook: Path, monkeypatch: pytest.MonkeyPatch, flag: str, tables_in_first_prompt: int
) -> None:
    from typer.testing import CliRunner

    import model.llm.decoding.loading
    from tui.cli import app

    engine = ScriptedEngine(" SELECT count(*) FROM albums")
    monkeypatch.setattr(model.llm.decoding.loading, "load_engine", lambda *a, **k: engine)
    result = CliRunner().invoke(app, ["ask", str(chinook), "How many albums are there?", flag])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("SELECT\n  COUNT(*)\nFROM albums;")
    assert len(create_statements(engine.prompts[0])) == tables_in_first_prompt


def test_cli_dtype_and_budget_reach_the_engine_and_the_pipeline(
    chinook: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import model.llm.decoding.loading
    import model.llm.pipeline.ask
    from model.llm.pipeline.settings import DEFAULT_BUDGET_S
    from tui.cli import app

    loads: list[dict[str, Any]] = []
    asked: list[Settings] = []
    pipeline = model.llm.pipeline.ask.ask

    def load_engine(*args: Any, **kwargs: Any) -> ScriptedEngine:
        loads.append(kwargs)
        return ScriptedEngine(" SELECT count(*) FROM albums")

    def ask_recorded(engine: TextEngine, db: Database, question: str, settings: Settings,
                     **kwargs: Any) -> Answer:
        asked.append(settings)
        return pipeline(engine, db, question, settings, **kwargs)

    monkeypatch.setattr(model.llm.decoding.loading, "load_engine", load_engine)
    monkeypatch.setattr(model.llm.pipeline.ask, "ask", ask_recorded)
    question = "How many albums are there?"
    result = CliRunner().invoke(app, ["ask", str(chinook), question, "--json",
                                      "--dtype", "fp32", "--budget", "2.5"])
    assert result.exit_code == 0, result.output
    assert loads[-1]["dtype"] == "fp32" and asked[-1].budget == 2.5
    assert json.loads(result.stdout)["dtype"] == "fp32"  # the engine's own word
    result = CliRunner().invoke(app, ["ask", str(chinook), question])
    assert loads[-1]["dtype"] is None and asked[-1].budget == DEFAULT_BUDGET_S
    result = CliRunner().invoke(app, ["ask", str(chinook), question, "--dtype", "int8"])
    assert result.exit_code == 2 and len(loads) == 2


def test_cli_prints_the_seeds_top_albums_with_their_sales(
    chinook: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed's answer as the model writes it when it selects the sums too, mended; the sum
    reads 35.82 as in the sqlite3 shell, not 35.81999999999999."""
    from typer.testing import CliRunner

    import model.llm.decoding.loading
    from tui.cli import app

    engine = ScriptedEngine(SEED_AS_WRITTEN.replace("T1.Title", "T1.Title, SUM(T2.UnitPrice)", 1))
    monkeypatch.setattr(model.llm.decoding.loading, "load_engine", lambda *a, **k: engine)
    result = CliRunner().invoke(app, ["ask", str(chinook), SEED_QUESTION, "--run"])
    assert result.exit_code == 0, result.output
    table = result.stdout.split("\n(10 rows)")[0].splitlines()
    header, first_row = table[-12], table[-10]
    assert first_row.split() == ["Battlestar", "Galactica", "(Classic),", "Season", "1", "35.82"]
    assert header.endswith("SUM(T2.UnitPrice)") and len(first_row) == len(header)  # numbers right
    assert "gemma-sql: note: joins mended to the schema: invoices → invoice_items" in result.stderr


def test_the_pipeline_reads_only_through_its_own_read_only_connection(chinook: Path) -> None:
    """In a --write session the model's checks (sample rows, value probes) never touch the
    user's read-write connection, and the connection they use refuses writes."""
    db = Database.open(chinook, write=True)
    seen: list[int] = []

    def record(action: int, *args: Any) -> int:
        seen.append(action)
        return sqlite3.SQLITE_OK

    db.conn.set_authorizer(record)
    engine = ScriptedEngine("SELECT Title FROM albums WHERE Title = 'Nowhere'",
                            "SELECT Title FROM albums WHERE Title = 'Nowhere'")
    answer = ask_every_table(engine, db, "Which album is called Nowhere?",
                             settings=Settings(beams=0))
    assert answer.sql and not seen  # probes ran (a value no row holds) elsewhere
    assert any(p.kind == "value" for p in answer.problems)
    with pytest.raises(WriteRefused):
        db.reader().execute("DELETE FROM albums")
    db.close()


# ---------------------------------------------------------- answers the database agrees with


ROCK = (" SELECT count(*) FROM tracks JOIN genres ON tracks.GenreId = genres.GenreId"
        " WHERE genres.Name = 'Rock'")


def test_the_result_most_answers_agree_on_wins(db: Database) -> None:
    """Two drawn answers agree (1,297 rock tracks, in two spellings) against the greedy answer
    (every track); a failing one and one returning no row drop out."""
    engine = ScriptedSampler(
        [ROCK, " SELECT count(*) FROM tracks AS t JOIN genres AS g ON t.GenreId = g.GenreId"
               " WHERE g.Name = 'Rock'",
         " SELECT count(nope) FROM tracks", " SELECT Name FROM genres WHERE Name = 'Rok'"],
        " SELECT count(*) FROM tracks")
    chunks: list[str] = []
    answer = ask(engine, db, "How many rock tracks?", on_chunk=chunks.append)
    assert answer.voted and answer.focused and answer.ok and "genres.Name = 'Rock'" in answer.sql
    assert db.conn.execute(answer.sql).fetchall() == [(1297,)]
    assert engine.sample_prompts == engine.prompts  # drawn on the answer's own prompt
    assert answer.agreed == "2 of 4"  # the greedy answer, two that agree, the empty one ran
    assert [a.answers for a in answer.alternatives] == [2, 1]
    assert answer.alternatives[1].sql == "SELECT\n  COUNT(*)\nFROM tracks"
    assert answer.alternatives[1].differs == ["joins", "WHERE"]
    assert answer.alternatives[0].summary == "1 row"
    assert "2 of 4 answers agree on this result; the first differs" in answer.notes
    assert "".join(chunks).endswith(VOTE_MARKER.format(n=4))
    assert answer.to_dict()["alternatives"][0]["answers"] == 2


ALL_TRACKS = "SELECT COUNT(*) FROM tracks"
LONG_TRACKS = "SELECT COUNT(*) FROM tracks WHERE Milliseconds > 300000"


@pytest.mark.parametrize(("long_score", "wins", "read_back"), [
    (-18.0, LONG_TRACKS, [-18.0, -20.0]), (-19.5, ALL_TRACKS, [-20.0, -19.5])])
def test_a_runner_up_that_reads_the_question_back_better_overtakes(
        db: Database, long_score: float, wins: str, read_back: list[float]) -> None:
    """Two answers agree on every track's count, one counts the long ones: 2 votes against
    1. Read back, the question is e^2 times likelier after the long ones' SQL: 1 x 1 beats
    2 x e^-2, and it wins; at e^0.5, 2 x e^-0.5 still beats 1 and the vote stands."""
    engine = ScriptedReviewer({ALL_TRACKS: -20.0, LONG_TRACKS: long_score},
                              [" " + ALL_TRACKS, " " + LONG_TRACKS], " " + ALL_TRACKS)
    answer = ask(engine, db, "How many tracks last over 300000 ms?")
    assert sorted(a.answers for a in answer.alternatives) == [1, 2]
    assert " ".join(answer.sql.split()) == wins and answer.voted == (wins == LONG_TRACKS)
    preferred = ("preferred to the 2 answers that agree on another result: the question reads"
                 " back likelier from this SQL")
    assert (preferred in answer.notes) == (wins == LONG_TRACKS)
    question, sqls = engine.reviewed[0]
    assert question == "How many tracks last over 300000 ms?" and len(sqls) == 2
    assert [a.read_back for a in answer.alternatives] == read_back
    assert answer.to_dict()["alternatives"][0]["read_back"] == answer.alternatives[0].read_back


def test_an_engine_that_cannot_read_back_leaves_the_vote_as_it_is(db: Database) -> None:
    engine = ScriptedReviewer({}, [" " + ALL_TRACKS, " " + LONG_TRACKS], " " + ALL_TRACKS)
    answer = ask(engine, db, "How many tracks last over 300000 ms?")
    assert " ".join(answer.sql.split()) == ALL_TRACKS and len(engine.reviewed) == 1
    assert [a.read_back for a in answer.alternatives] == [None, None]


def test_on_a_tie_the_greedy_answer_wins(db: Database) -> None:
    engine = ScriptedSampler([ROCK], " SELECT count(*) FROM tracks")
    answer = ask(engine, db, "How many tracks?")
    assert not answer.voted and answer.sql == "SELECT\n  COUNT(*)\nFROM tracks"
    assert len(answer.alternatives) == 2 and answer.agreed == "1 of 2"


def test_an_answer_that_returns_nothing_is_asked_again_with_every_table(db: Database) -> None:
    """The question's tables alone gave an answer no row satisfies, and so did the answers
    drawn beside it: every table is sent, and the answer that returns rows is taken."""
    nothing = " SELECT Title FROM albums WHERE AlbumId = 9999"
    engine = ScriptedSampler([nothing], nothing, " SELECT Title FROM albums WHERE AlbumId = 1")
    answer = ask(engine, db, "Title of album 1?")
    assert answer.widened and not answer.focused and len(engine.prompts) == 2
    assert db.conn.execute(answer.sql).fetchall() == [("For Those About To Rock We Salute You",)]
    assert len(engine.sample_prompts) == 2 and engine.sample_prompts[1] == engine.prompts[1]


def test_without_check_runs_nothing_is_drawn_or_run(db: Database,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    monkeypatch.setattr(Database, "run_bounded", lambda self, sql, *a: ran.append(sql))
    engine = ScriptedSampler([ROCK, ROCK], " SELECT count(*) FROM tracks")
    answer = ask(engine, db, "How many rock tracks?", settings=Settings(check_runs=False))
    assert answer.sql == "SELECT\n  COUNT(*)\nFROM tracks" and answer.alternatives == []
    assert ran == [] and engine.sample_prompts == []


def test_check_runs_never_write_even_in_a_write_session(chinook: Path) -> None:
    db = Database.open(chinook, write=True)
    engine = ScriptedSampler([" DELETE FROM albums", " DROP TABLE tracks"],
                             *[" DELETE FROM albums"] * 3)  # first try, every table, repair
    answer = ask(engine, db, "Delete the albums")
    assert answer.alternatives == []  # nothing ran to agree with
    db.close()
    with sqlite3.connect(chinook) as conn:
        assert conn.execute("SELECT count(*) FROM albums").fetchone()[0] == 347
        assert conn.execute("SELECT count(*) FROM tracks").fetchone()[0] == 3503


def test_an_answer_that_runs_forever_is_cut_off_within_the_budget(db: Database) -> None:
    forever = (" WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)"
               " SELECT count(*) FROM n")
    engine = ScriptedSampler([forever, forever, " SELECT count(*) FROM albums"],
                             " SELECT count(*) FROM albums")
    started = time.perf_counter()
    answer = ask(engine, db, "How many albums?")
    assert time.perf_counter() - started < CHECK_BUDGET_S + 2
    assert answer.sql == "SELECT\n  COUNT(*)\nFROM albums" and answer.agreed == "2 of 2"
    engine = ScriptedSampler([], forever)  # the greedy answer itself: too slow to judge
    answer = ask(engine, db, "How many numbers?", settings=Settings(focused=False))
    assert answer.sql.startswith("WITH RECURSIVE") and answer.alternatives == []


def test_values_the_question_names_are_shown_as_stored(db: Database) -> None:
    """'Prague' is a customer's City: customers gets a row of Prague in the first prompt."""
    engine = ScriptedSampler([], " SELECT count(*) FROM customers WHERE City = 'Prague'")
    answer = ask(engine, db, "How many customers live in prague or Prague?")
    assert "'Prague' in customers.City" in answer.linked
    inserts = re.search(r"INSERT INTO \"?customers\"? VALUES \((.*)", engine.prompts[0])
    assert inserts is not None and "'Prague'" in inserts.group(1).split("), (")[0]


def test_cli_json_lists_the_alternatives(chinook: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import model.llm.decoding.loading
    from tui.cli import app

    engine = ScriptedSampler([ROCK, ROCK], *[" SELECT count(*) FROM tracks"] * 3)
    monkeypatch.setattr(model.llm.decoding.loading, "load_engine", lambda *a, **k: engine)
    result = CliRunner().invoke(app, ["ask", str(chinook), "How many rock tracks?", "--json",
                                      "--run"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["rows"] == [[1297]] and len(out["alternatives"]) == 2
    first, other = out["alternatives"]
    assert first["answers"] == 2 and first["summary"] == "1 row" and first["differs"] == []
    assert other["sql"] == "SELECT\n  COUNT(*)\nFROM tracks" and other["answers"] == 1
    assert other["differs"] == ["joins", "WHERE"]
    plain = CliRunner().invoke(app, ["ask", str(chinook), "How many rock tracks?"])
    assert "gemma-sql: note: 1 more answer with other results (--json lists them)" in plain.stderr
    off = CliRunner().invoke(app, ["ask", str(chinook), "How many rock tracks?", "--json",
                                   "--no-check-runs"])
    assert json.loads(off.stdout)["alternatives"] == []


def test_no_answers_are_drawn_past_the_time_budget(db: Database,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow machine gets fewer votes, not a longer wait: nothing is drawn once the budget is
    spent, and the answer is still run and kept."""
    import model.llm.pipeline.plan

    monkeypatch.setattr(model.llm.pipeline.plan, "DRAW_BUDGET_S", 0.0)
    engine = ScriptedSampler([ROCK, ROCK], " SELECT count(*) FROM tracks")
    answer = ask(engine, db, "How many rock tracks?")
    assert engine.sample_prompts == [] and not answer.voted
    assert answer.agreed == "1 of 1" and len(answer.alternatives) == 1



class SureSampler(ScriptedSampler):
    """A scripted sampler whose greedy answers' least likely token had `min_logprob`."""

    def __init__(self, min_logprob: float, drawn: list[str], *answers: str) -> None:
        super().__init__(drawn, *answers)
        self.min_logprob = min_logprob

    def stream(self, prompt: str, cancel: threading.Event | None = None,
               max_new_tokens: int = 256, shared: str = "") -> Generator[str, None, None]:
        yield from super().stream(prompt, cancel, max_new_tokens, shared)
        self.last_stats.min_logprob = self.min_logprob


def test_an_answer_the_model_was_sure_of_is_taken_without_drawing(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drawing costs more than the answer: an answer whose every token was likely, and that
    returns a row, is run and taken alone. Below the line, or returning nothing, the others
    are drawn and voted on as before."""
    sure_logprob = DEFAULT.policy.sure_logprob

    tracks = " SELECT count(*) FROM tracks"
    sure = SureSampler(sure_logprob + 0.1, [ROCK, ROCK], tracks)
    answer = ask(sure, db, "How many rock tracks?")
    assert sure.sample_prompts == [] and not answer.voted
    assert answer.sql == "SELECT\n  COUNT(*)\nFROM tracks" and answer.agreed == "1 of 1"
    assert [a.rows for a in answer.alternatives] == [1]  # it was run

    unsure = SureSampler(sure_logprob - 0.1, [ROCK, ROCK], tracks)
    answer = ask(unsure, db, "How many rock tracks?")
    assert unsure.sample_prompts == unsure.prompts and answer.voted and "Rock" in answer.sql

    nothing = " SELECT Title FROM albums WHERE AlbumId = 9999"
    empty = SureSampler(0.0, [nothing], nothing, " SELECT Title FROM albums WHERE AlbumId = 1")
    ran: list[str] = []
    run_bounded = Database.run_bounded
    monkeypatch.setattr(Database, "run_bounded",
                        lambda self, sql, *a: ran.append(sql) or run_bounded(self, sql, *a))
    answer = ask(empty, db, "Title of album 1?")
    assert ran.count(ran[0]) == 1  # the sure answer's run is not repeated for its vote
    # sure, but of nothing: drawn; then sure of a row, from every table: taken alone
    assert empty.sample_prompts == empty.prompts[:1] and answer.widened
    assert db.conn.execute(answer.sql).fetchall() == [("For Those About To Rock We Salute You",)]


class TimedSampler(ScriptedSampler):
    """A scripted sampler whose greedy answer takes `seconds` of a fake clock to decode, in
    `passes` forward passes (0: one token a pass), and which records how many it is asked to
    draw."""

    def __init__(self, clock: FakeClock, seconds: float, passes: int = 0,
                 reading: float = 0.0) -> None:
        super().__init__([ROCK, ROCK], " SELECT count(*) FROM tracks")
        self.clock, self.seconds, self.passes, self.reading = clock, seconds, passes, reading
        self.draw_sizes: list[int] = []

    def stream(self, prompt: str, cancel: threading.Event | None = None,
               max_new_tokens: int = 256, shared: str = "") -> Generator[str, None, None]:
        yield from super().stream(prompt, cancel, max_new_tokens, shared)
        self.clock.tick(self.seconds)
        self.last_stats.seconds, self.last_stats.first_token_s = self.seconds, self.reading
        self.last_stats.passes = self.passes

    def sample(self, prompt: str, n: int = 4, **kwargs: Any) -> list[Sampled]:
        self.draw_sizes.append(n)
        return super().sample(prompt, n, **kwargs)


def test_a_draw_that_cannot_end_within_the_budget_is_not_started(db: Database) -> None:
    """The greedy answer took 3 s to decode; drawing would take draw_cost(n) times that: with
    2 s of the budget left not even half the answers fit, so nothing is drawn and the answer
    stands with the budget's note at once; with time for half, half are drawn; with time for
    all, all."""
    from model.llm.pipeline.plan import draw_cost

    clock = FakeClock()
    engine = TimedSampler(clock, 3.0)
    answer = ask(engine, db, "How many rock tracks?", settings=Settings(budget=5), clock=clock)
    assert engine.draw_sizes == [] and clock.now - 100 == 3.0
    assert answer.sql == "SELECT\n  COUNT(*)\nFROM tracks" and not answer.voted
    assert answer.notes == ["checks stopped at 3.0 s: the next would not end within the 5 s "
                            "time budget"]

    for budget, want in [(3.0 + draw_cost(SAMPLES // 2) * 3.0 + 0.5, SAMPLES // 2),
                         (3.0 + draw_cost(SAMPLES) * 3.0 + 0.5, SAMPLES)]:
        clock = FakeClock()
        engine = TimedSampler(clock, 3.0)
        answer = ask(engine, db, "How many rock tracks?",
                     settings=Settings(budget=budget), clock=clock)
        assert engine.draw_sizes == [want] and answer.voted


def test_a_draw_leaves_the_budget_time_to_read_the_question_back(db: Database) -> None:
    """Reading the question back from the two best answers is expected to take
    REVIEW_READ_COST times reading their text at the prompt's rate: a budget with room for
    every draw but not for that too draws half; with room for both, every one."""
    from model.llm.pipeline.plan import REVIEW_READ_COST, draw_cost

    question, first = "How many rock tracks?", "SELECT\n  COUNT(*)\nFROM tracks"
    probe = TimedSampler(FakeClock(), 3.0, reading=1.0)
    ask(probe, db, question, settings=Settings(budget=0))
    chars = DEFAULT.policy.reviewed * (len(first) + len(question))
    review = REVIEW_READ_COST / len(probe.prompts[0]) * chars
    for room, want in [(0.5, SAMPLES // 2), (1.5, SAMPLES)]:
        clock = FakeClock()
        engine = TimedSampler(clock, 3.0, reading=1.0)
        budget = 3.0 + draw_cost(SAMPLES) * 2.0 + room * review
        answer = ask(engine, db, question, settings=Settings(budget=budget), clock=clock)
        assert engine.draw_sizes == [want] and answer.voted


def test_a_draw_is_weighed_against_decoding_at_one_token_a_pass(db: Database) -> None:
    """A greedy answer decoded in 1.5 s by checking drafted guesses (3 passes for 7 tokens)
    would have taken 3.5 s one token a pass, as the draw decodes: the draw is weighed against
    that, and not started where only the drafted time would fit."""
    from model.llm.pipeline.plan import draw_cost

    clock = FakeClock()
    engine = TimedSampler(clock, 1.5, passes=3)
    answer = ask(engine, db, "How many rock tracks?",
                 settings=Settings(budget=1.5 + draw_cost(2) * 1.5 + 0.5), clock=clock)
    assert engine.last_stats.one_token_seconds == pytest.approx(3.5)
    assert engine.sample_prompts == [] and not answer.voted


def test_without_a_budget_every_draw_ends_however_slow_the_machine(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`eval` runs without a budget so that its accuracy does not hang on the machine's speed:
    there the draw's own time limits do not apply, and all the answers asked for are voted on."""
    import model.llm.pipeline.plan

    monkeypatch.setattr(model.llm.pipeline.plan, "DRAW_BUDGET_S", 0.0)
    monkeypatch.setattr(model.llm.pipeline.plan, "DRAW_MIN_S", 0.0)
    monkeypatch.setattr(model.llm.pipeline.plan, "DRAW_TIME_FACTOR", 0.0)
    engine = TimedSampler(FakeClock(), 30.0)
    answer = ask(engine, db, "How many rock tracks?", settings=Settings(budget=0))
    assert engine.draw_sizes == [SAMPLES] and answer.voted and "Rock" in answer.sql


def test_the_question_is_read_back_after_the_sql_with_its_tables_named(db: Database) -> None:
    aliased = " SELECT COUNT(*) FROM tracks AS T1 WHERE T1.Milliseconds > 300000"
    named = "SELECT COUNT(*) FROM tracks WHERE tracks.Milliseconds > 300000"
    engine = ScriptedReviewer({ALL_TRACKS: -20.0, named: -18.0},
                              [" " + ALL_TRACKS, aliased], " " + ALL_TRACKS)
    answer = ask(engine, db, "How many tracks last over 300000 ms?")
    assert engine.reviewed[0][1] == [ALL_TRACKS, named]
    assert answer.voted and "T1.Milliseconds > 300000" in answer.sql  # shown as written


def test_draw_more_draws_what_the_budget_skipped_and_keeps_the_answer_first(
        db: Database) -> None:
    """F7's pipeline half: an answer whose budget skipped the draws gets them on request, on
    its own prompt; its SQL stays first, the drawn result (1,297 rock tracks) follows."""
    from model.llm.pipeline.ask import draw_more

    clock = FakeClock()
    engine = TimedSampler(clock, 3.0)
    answer = ask(engine, db, "How many rock tracks?", settings=Settings(budget=4.0), clock=clock)
    assert engine.draw_sizes == [] and answer.alternatives == [] and answer.prompt
    more = draw_more(engine, db, answer, Settings(budget=4.0))
    assert engine.draw_sizes == [DEFAULT.samples] and engine.sample_prompts == [answer.prompt]
    assert more.sql == answer.sql and [a.sql for a in more.alternatives][0] == answer.sql
    assert len(more.alternatives) == 2 and more.alternatives[1].answers == 2
    assert "WHERE" in more.alternatives[1].differs and more.agreed == "1 of 3"
    cancel = threading.Event()
    cancel.set()
    assert draw_more(engine, db, answer, cancel=cancel) is answer  # cancelled: as it was
