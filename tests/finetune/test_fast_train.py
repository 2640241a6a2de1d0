"""Training that fits a CPU: the decoder's softmax trained, the app's contexts, few shapes,
the machine's dtype (issue 33, item 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from test_data import SPIDER, SPIDER_DBS, needs_spider
from tiny import ROWS, tiny_gemma

from finetune.config import TrainConfig
from finetune.data import IGNORE, collate, gold_tables, tokenize, training_context
from finetune.lora import add_lora, train_dtype
from finetune.loss import ROW_MULTIPLE, AnswerLoss, answer_rows
from finetune.train import train
from model.llm.decoding.engine import stop_ids_for
from model.llm.decoding.vocab import AnswerVocab
from model.llm.weights.dtype import machine_dtype


def test_loss_is_the_softmax_the_decoder_takes(tok: Any) -> None:
    """Over each example's own rows (what `AnswerVocab.for_prompt` lets the decoder choose),
    equal to the full logits with every other row masked out; an answer token outside the
    vocabulary is still scored (a row is added for it)."""
    model = add_lora(tiny_gemma(tok).float(), TrainConfig(quant="none", lora_r=4, lora_alpha=8,
                                                           gradient_checkpointing=False))
    items = [tokenize(tok, e) for e in ROWS[:3]]
    outside = items[0].labels[-2]  # an answer token the vocabulary below leaves out
    kept = {t for d in items for t in d.labels if t != IGNORE} - {outside}
    vocab = AnswerVocab(tok, tok.convert_ids_to_tokens(sorted(kept)))
    stops = stop_ids_for(model, tok)
    rows, allowed = answer_rows(items, vocab, stops)
    assert outside in rows.tolist() and len(rows) < len(tok)
    assert len(rows) % ROW_MULTIPLE == 0  # padded with rows no example allows: few shapes
    b = collate(items, tok.pad_token_id)
    got, n = AnswerLoss(model)(b["input_ids"], b["attention_mask"], b["labels"], rows, allowed)

    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1]
    targets = b["labels"][:, 1:]
    keep = targets != IGNORE
    mask = torch.full((len(items), logits.shape[-1]), float("-inf"))
    for k, t in enumerate(items):
        prompt_ids = [i for i, label in zip(t.input_ids, t.labels, strict=True) if label == IGNORE]
        ids = vocab.for_prompt(t.prompt, prompt_ids, also=stops) + [i for i in t.labels if i >= 0]
        mask[k, ids] = 0.0
    expected = F.cross_entropy((logits + mask[:, None, :])[keep], targets[keep], reduction="sum")
    assert int(n) == int(keep.sum())
    assert torch.allclose(got, expected, atol=1e-4)
    full = F.cross_entropy(logits[keep], targets[keep], reduction="sum")
    assert got < full  # fewer rows share the probability


def test_training_uses_the_answer_vocabulary_and_learns(tok: Any, rows_file: Path,
                                                        tmp_path: Path) -> None:
    cfg = TrainConfig(base="tiny", quant="none", data=str(rows_file), output=str(tmp_path / "o"),
                      batch_size=2, lr=5e-3, warmup_steps=1, max_steps=8, save_every=0,
                      lora_r=4, lora_alpha=8, gradient_checkpointing=False)
    seen: list[int] = []
    model = tiny_gemma(tok)
    loss_forward = AnswerLoss.forward

    def recording(self: AnswerLoss, *a: Any) -> Any:
        seen.append(0 if a[3] is None else len(a[3]))
        return loss_forward(self, *a)

    AnswerLoss.forward = recording  # type: ignore[method-assign]
    try:
        metrics = train(cfg, model, tok, say=lambda _: None)
    finally:
        AnswerLoss.forward = loss_forward  # type: ignore[method-assign]
    assert seen and all(0 < n < len(tok) for n in seen)
    losses = [h["loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0]


def test_batches_are_padded_to_a_few_widths(tok: Any) -> None:
    items = [tokenize(tok, e) for e in ROWS[:2]]
    b = collate(items, tok.pad_token_id, 32)
    assert b["input_ids"].shape[1] % 32 == 0
    assert b["input_ids"].shape[1] - max(len(t) for t in items) < 32
    assert int(b["attention_mask"].sum()) == sum(len(t) for t in items)


def test_dtype_is_the_one_inference_picks() -> None:
    cpu = torch.device("cpu")
    assert train_dtype("auto", cpu) == machine_dtype("cpu")
    assert train_dtype("fp32", cpu) == "fp32"
    with pytest.raises(ValueError, match="dtype must be"):
        train_dtype("int8", cpu)


def test_gold_tables_leave_out_ctes() -> None:
    sql = "WITH t AS (SELECT * FROM singer) SELECT name FROM t JOIN Concert ON 1"
    assert gold_tables(sql) == {"singer", "concert"}


@needs_spider
def test_training_context_is_what_ask_sends(tmp_path: Path) -> None:
    """The prompt trained on is the one `ask` sends for the same question: the focused one
    first, or, when it lacks a table the gold SQL reads, the one `ask` widens to."""
    from fakes import ScriptedEngine

    from model.llm.pipeline.ask import ask
    from model.llm.prompting.context import question_contexts
    from model.llm.prompting.prompt import build_prompt
    from model.sqlite.db import Database

    rows = [json.loads(line) for line in SPIDER.read_text().splitlines()[:400]]
    rows = [r for r in rows if r["db_id"] in ("bike_1", "flight_1", "student_assessment",
                                              "product_catalog", "department_management")][::9]
    firsts = seconds = 0
    for r in rows:
        db = Database.open(SPIDER_DBS / r["db_id"] / f"{r['db_id']}.sqlite")
        try:
            ctx = training_context(db, r["question"], r["sql"])
            focus = question_contexts(db, r["question"]).focus
            # an answer the check refuses: ask widens to every table, then repairs
            engine = ScriptedEngine(*["SELECT no_such FROM nowhere"] * 4)
            ask(engine, db, r["question"])
        finally:
            db.close()
        prompt = build_prompt(r["question"], ctx.text)
        if focus is not None and ctx.text == focus.text:
            assert prompt == engine.prompts[0]
            firsts += 1
        else:  # widened: ask's second prompt, or its first when the schema is small
            assert prompt == engine.prompts[0 if focus is None else 1]
            seconds += 1
    assert firsts and seconds


def test_a_run_leaves_what_an_adapter_folder_holds(tok: Any, rows_file: Path,
                                                   tmp_path: Path) -> None:
    """The files named once in model/llm/adapter_files.py: a run writes them all, and the
    shipped adapter holds them."""
    from model.llm import adapter_files

    out = tmp_path / "o"
    cfg = TrainConfig(base="tiny", quant="none", data=str(rows_file), output=str(out),
                      batch_size=2, max_steps=1, save_every=0, lora_r=4, lora_alpha=8,
                      gradient_checkpointing=False, prompt_layout="context-first")
    train(cfg, tiny_gemma(tok), tok, say=lambda _: None)
    assert all((out / name).is_file() for name in (*adapter_files.SHIPPED, adapter_files.LAYOUT))
    shipped = Path(__file__).resolve().parents[2] / "model" / "adapters" / "gemma-3-270m-sql"
    assert all((shipped / name).is_file() for name in adapter_files.SHIPPED)
