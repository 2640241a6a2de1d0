"""Values the question names, found in a real SQLite file's data (model.llm.prompting.values)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from model.llm.prompting.context import focused_context, rank_tables, schema_words
from model.llm.prompting.values import VALUES_A_COLUMN, ValueHit, ValueIndex, value_index
from model.sqlite.db import Database


@pytest.fixture
def music(tmp_path: Path) -> Database:
    path = tmp_path / "music.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE genre (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE artist (id INTEGER PRIMARY KEY, name TEXT, city TEXT);
        CREATE TABLE song (id INTEGER PRIMARY KEY, title TEXT, artist_id INTEGER
            REFERENCES artist (id), genre_id INTEGER REFERENCES genre (id), released TEXT);
        CREATE TABLE label (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE studio (id INTEGER PRIMARY KEY, name TEXT);
        CREATE VIEW loud AS SELECT title FROM song;
        INSERT INTO genre (name) VALUES ('Rock'), ('Bossa Nova'), ('Jazz');
        INSERT INTO artist (name, city) VALUES ('Queen', 'London'), ('Elis Regina', 'Prague');
        INSERT INTO label (name) VALUES ('Sony');
    """)
    # a column of titles: more values than categories hold, among them a common word
    conn.executemany("INSERT INTO song (title, artist_id, genre_id, released) VALUES (?, 1, 1, ?)",
                     [(f"Song {i}", f"20{10 + i % 5}-0{1 + i % 9}-01") for i in range(150)]
                     + [("Help", "2012-05-01")])
    conn.commit()
    conn.close()
    db = Database.open(path)
    yield db
    db.close()


def find(db: Database, question: str) -> list[str]:
    return [str(h) for h in value_index(db).find(question, schema_words(db.schema()))]


def test_names_quoted_capitalised_or_in_runs_of_words_are_found_as_stored(music):
    assert find(music, "Songs by 'queen'?") == ["'Queen' in artist.name"]
    assert find(music, "How many artists come from Prague?") == ["'Prague' in artist.city"]
    assert find(music, "Songs in the bossa nova genre") == ["'Bossa Nova' in genre.name"]
    assert find(music, "Songs of Elis Regina") == ["'Elis Regina' in artist.name"]  # not 'Elis'
    assert find(music, "Queen's songs") == ["'Queen' in artist.name"]


def test_a_lower_case_word_is_only_a_category(music):
    assert find(music, "How many rock songs?") == ["'Rock' in genre.name"]
    assert find(music, "Songs that help?") == []  # a title, not a category
    assert find(music, "Songs called Help") == ["'Help' in song.title"]


def test_words_that_ask_or_name_the_schema_are_not_values(music):
    assert find(music, "List the names of all genres") == []
    assert find(music, "Name the song titles") == []


def test_a_year_finds_a_date_column(music):
    [hit] = find(music, "Songs released in 2012")  # one stored value shows the format
    assert hit.startswith("'2012-") and hit.endswith("' in song.released")
    assert find(music, "Songs released in 1999") == []


def test_the_index_is_built_once_and_bounded(music, monkeypatch):
    assert value_index(music) is value_index(music)
    monkeypatch.setattr("model.llm.prompting.values.VALUES_A_COLUMN", 10)
    index = ValueIndex.build(music.conn, music.schema())
    assert sum(h.column == "title" for hits in index.values.values() for h in hits) == 10
    assert all(h.table != "loud" for hits in index.values.values() for h in hits)  # no views
    assert VALUES_A_COLUMN >= 1000


def test_a_named_value_brings_its_table_and_row_into_the_first_prompt(music):
    """The question names no table but song; the tables holding 'Rock' and 'Prague' score as
    if named, and their rows holding the values show even where no other rows fit."""
    question = "Which rock songs come from Prague?"
    hits = tuple(value_index(music).find(question, schema_words(music.schema())))
    assert set(hits) == {ValueHit("artist", "city", "Prague"), ValueHit("genre", "name", "Rock")}
    plain = rank_tables(music.schema(), question)
    linked = rank_tables(music.schema(), question, hits)
    assert plain.scores["artist"] == plain.scores["genre"] == 0
    assert linked.scores["artist"] == linked.scores["genre"] == plain.scores["song"] == 3
    assert set(linked.pick(3)) == {"song", "artist", "genre"}
    tight = 60  # too small for any table's rows
    without = focused_context(music.conn, music.schema(), question, ranking=plain,
                              budget_tokens=tight)
    focus = focused_context(music.conn, music.schema(), question, ranking=linked,
                            budget_tokens=tight)
    assert without is not None and "INSERT" not in without.text
    assert focus is not None and focus.text.count("INSERT") == 2
    assert "INSERT INTO \"artist\" VALUES (2, 'Elis Regina', 'Prague');" in focus.text
    assert "INSERT INTO \"genre\" VALUES (1, 'Rock');" in focus.text


def test_what_the_question_said_is_kept(music):
    hits = value_index(music).find("Rock songs by 'Queen' in 2012", schema_words(music.schema()))
    said = {h.said: h.value for h in hits}
    assert said["queen"] == "Queen" and said["rock"] == "Rock"
    assert said["2012"].startswith("2012-") and len(hits) == 3
