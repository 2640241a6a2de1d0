"""The offline default as users get it: the real Gemma 3 270M plus the adapter shipped in the
package, answering Chinook questions through the app's own pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from finetune.eval import compare
from model.llm.pipeline.ask import ask
from model.llm.weights.registry import MODELS
from model.sqlite.db import Database

SHIPPED = MODELS["gemma-3-270m-sql"].adapter
assert SHIPPED is not None


def test_adapter_is_shipped_as_package_data() -> None:
    assert (SHIPPED / "adapter_config.json").is_file()
    assert (SHIPPED / "adapter_model.safetensors").is_file()
    assert (SHIPPED / "README.md").is_file()  # the model card: command, seed, data hash
    assert (SHIPPED / "answer_vocab.json").is_file()  # the tokens its training answers used
    assert (SHIPPED / "answer_drafts.json").is_file()  # and which followed which


@pytest.mark.slow
@pytest.mark.parametrize(
    ("question", "gold"),
    [
        ("How many albums are there?", "SELECT count(*) FROM albums"),
        ("How many customers are from Brazil?",
         "SELECT count(*) FROM customers WHERE Country = 'Brazil'"),
        ("How many playlists are there?", "SELECT count(*) FROM playlists"),
    ],
)
def test_default_model_answers_simple_chinook_questions(
    real_engine: Any, chinook: Path, question: str, gold: str
) -> None:
    assert SHIPPED in real_engine.adapters
    db = Database.open(chinook)
    answer = ask(real_engine, db, question)
    assert answer.ok, answer.raw
    correct, error = compare(db, gold, answer.sql)
    assert correct, (answer.sql, error)
