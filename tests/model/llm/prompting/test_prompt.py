"""The prompt format is the seed's, character for character, and contexts fit the budget."""

import shutil
import sqlite3
from pathlib import Path

import pytest

from model.llm.prompting.context import (
    CONTEXT_BUDGET_TOKENS,
    context_for,
    estimate_tokens,
    focused_context,
    prune,
    rows_that_fit,
)
from model.llm.prompting.prompt import (
    CONTEXT_FIRST,
    QUESTION_FIRST,
    build_prompt,
    read_layout,
    render_context,
    shared_prefix,
    sql_literal,
    training_text,
    write_layout,
)
from model.samples import CHINOOK
from model.sqlite.db import Database

SEED_QUESTION = "Name the top 10 albums with the highest sales amount"
SEED_CONTEXT = (
    "CREATE TABLE albums (AlbumId INT, Title TEXT); "
    "INSERT INTO albums VALUES (1, 'For Those About To Rock We Salute You');"
)
SEED_SQL = "SELECT Title FROM albums LIMIT 10"

# Written out by hand from the original fine-tune's notes (design.md), not from our constant.
SEED_TEXT = (
    "<start_of_turn>user You are a powerful text-to-SQL model. Your job is to answer questions "
    "about a database. You are given a question and context regarding one or more tables:\n"
    "\n"
    " SQL Question: Name the top 10 albums with the highest sales amount \n"
    "\n"
    " SQL Context: CREATE TABLE albums (AlbumId INT, Title TEXT); "
    "INSERT INTO albums VALUES (1, 'For Those About To Rock We Salute You');\n"
    "\n"
    " Generated SQL Query: <end_of_turn>\n"
    "\n"
    "<start_of_turn> model SELECT Title FROM albums LIMIT 10 <end_of_turn>"
)


def test_seed_prompt_matches_character_for_character() -> None:
    prompt, answer = training_text(SEED_QUESTION, SEED_CONTEXT, SEED_SQL)
    assert prompt + answer == SEED_TEXT
    assert build_prompt(SEED_QUESTION, SEED_CONTEXT) == prompt
    assert SEED_TEXT.startswith(prompt)


def test_context_first_is_the_seed_text_with_question_and_context_swapped() -> None:
    prompt, answer = training_text(SEED_QUESTION, SEED_CONTEXT, SEED_SQL, CONTEXT_FIRST)
    lines = SEED_TEXT.split("\n\n")
    assert lines[1].startswith(" SQL Question:") and lines[2].startswith(" SQL Context:")
    lines[1], lines[2] = lines[2], lines[1]
    assert prompt + answer == "\n\n".join(lines)
    # Everything before the question depends on the context alone (the seed's: nothing to keep).
    assert prompt.startswith(shared_prefix(SEED_CONTEXT, CONTEXT_FIRST))
    assert shared_prefix(SEED_CONTEXT, CONTEXT_FIRST).endswith(" SQL Question:")
    assert SEED_CONTEXT in shared_prefix(SEED_CONTEXT, CONTEXT_FIRST)
    assert shared_prefix(SEED_CONTEXT, QUESTION_FIRST) == ""
    with pytest.raises(ValueError, match="unknown prompt layout 'sideways'"):
        build_prompt(SEED_QUESTION, SEED_CONTEXT, "sideways")


def test_an_adapter_records_its_layout(tmp_path: Path) -> None:
    assert read_layout(tmp_path) is None  # no record: the seed's layout
    write_layout(tmp_path, CONTEXT_FIRST)
    assert read_layout(tmp_path) == CONTEXT_FIRST
    (tmp_path / "prompt_layout.json").write_text('{"layout": "sideways"}')
    assert read_layout(tmp_path) is None


def test_whitespace_is_normalised() -> None:
    prompt, answer = training_text(
        "How many\r\n albums?", SEED_CONTEXT, "SELECT\r\n  count(*)\tFROM albums"
    )
    assert "\r" not in prompt + answer
    assert "SQL Question: How many albums? \n" in prompt
    assert answer == " SELECT count(*) FROM albums <end_of_turn>"


def test_literals() -> None:
    assert sql_literal(None) == "NULL"
    assert sql_literal("it's") == "'it''s'"
    assert sql_literal(3) == "3"
    assert sql_literal(b"\x00\x01") == "NULL"
    assert len(sql_literal("x" * 500)) < 50


def test_chinook_context_has_creates_and_rows() -> None:
    db = Database.open(CHINOOK)
    schema = db.schema()
    text = render_context(db.conn, schema, ["albums"])
    create, insert = text.splitlines()
    assert create.startswith('CREATE TABLE "albums"') and "\n" not in create
    assert insert.startswith('INSERT INTO "albums" VALUES (1, \'For Those About To Rock')


@pytest.mark.parametrize(
    "question",
    ["Name the top 10 albums with the highest sales amount", "How many customers are from Brazil?"],
)
def test_context_fits_budget_and_keeps_every_table_of_chinook(question: str) -> None:
    db = Database.open(CHINOOK)
    context = context_for(db.conn, db.schema(), question)
    assert estimate_tokens(context.text) <= CONTEXT_BUDGET_TOKENS
    # Chinook's DDL fits, so every table is there; rows only for some.
    assert "invoice_items" in context.tables and "customers" in context.tables
    assert not context.pruned


def test_big_schema_is_pruned_to_the_question(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    conn = sqlite3.connect(path)
    for i in range(60):
        conn.execute(
            f"CREATE TABLE filler_{i} (id INTEGER PRIMARY KEY, "
            + ", ".join(f"c{j} TEXT" for j in range(15))
            + ")"
        )
    conn.execute("CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT)")
    conn.execute(
        "CREATE TABLE concert (concert_id INTEGER PRIMARY KEY,"
        " singer_id INTEGER REFERENCES singer(singer_id), year INT)"
    )
    conn.commit()
    conn.close()
    db = Database.open(path)
    context = context_for(db.conn, db.schema(), "How many concerts did each singer give?")
    assert context.pruned
    assert set(context.tables) >= {"singer", "concert"}
    assert estimate_tokens(context.text) <= CONTEXT_BUDGET_TOKENS


def test_focused_context_is_the_questions_tables_with_rows_as_fit() -> None:
    db = Database.open(CHINOOK)
    question = "How many tracks are in the Rock genre?"
    focus = focused_context(db.conn, db.schema(), question, max_tables=3, budget_tokens=450)
    assert focus is not None and focus.pruned
    assert {"tracks", "genres"} <= set(focus.tables) and len(focus.tables) <= 3
    assert estimate_tokens(focus.text) <= 450
    assert """INSERT INTO "genres" VALUES (1, 'Rock')""" in focus.text
    assert 'CREATE TABLE "customers"' not in focus.text
    tight = focused_context(db.conn, db.schema(), question, max_tables=3, budget_tokens=10)
    assert tight is not None and "INSERT" not in tight.text and "CREATE TABLE" in tight.text


@pytest.mark.parametrize(("question", "table"), [("How many countries are there?", "country"),
                                                 ("List all movies.", "movie")])
def test_plurals_in_ies_name_their_table(tmp_path: Path, question: str, table: str) -> None:
    path = tmp_path / "league.db"
    conn = sqlite3.connect(path)
    for name in ("album", "band", "club", "movie", "country"):
        conn.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()
    db = Database.open(path)
    assert prune(db.schema(), question, max_tables=2)[0] == table


def test_rows_go_to_the_likeliest_tables_first(tmp_path: Path) -> None:
    path = tmp_path / "rows.db"
    conn = sqlite3.connect(path)
    for name, width in (("short", 1), ("middle", 8), ("long", 20)):
        conn.execute(f"CREATE TABLE {name} (v TEXT)")
        conn.executemany(f"INSERT INTO {name} VALUES (?)", [(" ".join(["w"] * width),)] * 3)
    conn.commit()
    conn.close()
    db = Database.open(path)
    likeliest = ["long", "middle", "short"]
    bare = estimate_tokens(render_context(None, db.schema(), likeliest))
    cost = {t: estimate_tokens(render_context(db.conn, db.schema(), [t])) -
            estimate_tokens(render_context(None, db.schema(), [t])) for t in likeliest}

    def fit(budget: int) -> list[str]:
        return rows_that_fit(db.conn, db.schema(), likeliest, bare + budget)

    # The longest run from the first that fits, even where other tables' rows would fit.
    assert fit(sum(cost.values())) == likeliest
    assert fit(cost["long"] + cost["middle"]) == ["long", "middle"]
    assert fit(cost["long"]) == ["long"]
    assert fit(cost["long"] - 1) == []


def test_a_schema_of_few_tables_has_no_focused_context(tmp_path: Path) -> None:
    path = tmp_path / "small.db"
    conn = sqlite3.connect(path)
    for name in ("singer", "concert", "stadium"):
        conn.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()
    db = Database.open(path)
    assert focused_context(db.conn, db.schema(), "Singer names?", max_tables=3) is None


def test_training_and_inference_render_the_same_context(tmp_path: Path) -> None:
    # finetune renders Spider contexts with context_for over the live file, as the app does.
    copy = tmp_path / "c.db"
    shutil.copy(CHINOOK, copy)
    db = Database.open(copy)
    a = context_for(db.conn, db.schema(), SEED_QUESTION)
    b = context_for(Database.open(copy).conn, db.schema(), SEED_QUESTION)
    assert a == b
