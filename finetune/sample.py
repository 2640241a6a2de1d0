"""The model's own right answers (rejection sampling): `gemma-sql finetune sample`.

For each training question (question, gold sql, db_id) the engine is asked exactly as `ask`
asks it first (`asked_context`: the question's likeliest tables, values it names found in the
data), greedily once and `k` answers drawn in one batched decode (`TextEngine.sample`); each
answer runs read-only, bounded, on its training database (`finetune.reward`), and the distinct
ones whose result equals the gold's are appended to a JSONL, one row an answer kept:

    question, db_id, gold, sql, context (as asked), greedy, greedy_correct, logprob, drawn

A question with none kept gets one row with "sql": null, so that a rerun skips every question
already in the file (resumable: kill it any time; a torn last line is cut off). Held-out
databases (`finetune/data/spider_heldout.jsonl`) are never sampled.

`mix_kept` turns such a file into training examples beside the gold ones (`--kept` on training).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.data import HELDOUT_FILE, DataError, Example, spider_db_path
from finetune.eval import GoldError
from finetune.reward import Gold, reward
from model.llm.prompting.context import Context, question_contexts
from model.llm.prompting.prompt import build_prompt, one_line, prompt_head, shared_prefix
from model.llm.sql.extract import extract_sql
from model.sqlite.db import Database
from model.sqlite.files import file_problem

if TYPE_CHECKING:
    from model.llm.protocol import TextEngine

K = 8
TEMPERATURE = 0.8
MAX_NEW_TOKENS = 160


@dataclass(frozen=True)
class Question:
    question: str
    sql: str  # the gold query
    db_id: str
    index: int = 0  # its line in the data file (seeds its draw: the same after a resume)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.db_id, self.question, self.sql)


def read_questions(path: Path) -> list[Question]:
    """The rows of a JSONL with question, sql and db_id (Spider's train file, or
    `prepare-spider`'s); ValueError naming the line that lacks them."""
    out: list[Question] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out.append(Question(row["question"], row["sql"], row["db_id"], len(out)))
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}:{n}: needs question, sql and db_id") from None
    return out


def asked_context(db: Database, question: str, layout: str) -> Context:
    """The context of the first prompt `model.llm.pipeline.ask.ask` sends for `question`
    (`question_contexts`: values the question names linked): its likeliest tables, or every
    table that fits where that is the whole schema or the layout keeps the schema's part read
    (`shared_prefix`)."""
    contexts = question_contexts(db, question, focused=not shared_prefix("", layout))
    return contexts.focus or contexts.whole


@dataclass
class Outcome:
    """One question's draw."""

    question: Question
    greedy: str
    greedy_correct: bool
    kept: list[tuple[str, float]]  # (sql, mean log-prob), distinct, right
    drawn: int
    context: str

    def rows(self) -> list[dict[str, Any]]:
        q = self.question
        base = {"question": q.question, "db_id": q.db_id, "gold": q.sql, "greedy": self.greedy,
                "greedy_correct": self.greedy_correct, "drawn": self.drawn,
                "context": self.context}
        if not self.kept:
            return [{**base, "sql": None, "logprob": None}]
        return [{**base, "sql": sql, "logprob": round(lp, 4)} for sql, lp in self.kept]


def draw(engine: TextEngine, db: Database, q: Question, k: int, temperature: float,
         max_new_tokens: int, seed: int) -> Outcome:
    """The greedy answer and `k` drawn ones for `q`, the drawn ones that are right kept."""
    context = asked_context(db, q.question, engine.prompt_layout)
    prompt = build_prompt(q.question, context.text, engine.prompt_layout)
    kept_head = prompt_head(engine.prompt_layout)  # read once, as ask keeps it
    greedy = extract_sql("".join(engine.stream(prompt, max_new_tokens=max_new_tokens,
                                               shared=kept_head)))
    gold = Gold.of(db, q.sql)
    drawn = engine.sample(prompt, n=k, temperature=temperature, max_new_tokens=max_new_tokens,
                          shared=kept_head, seed=seed + q.index)
    kept: dict[str, tuple[str, float]] = {}
    for s in drawn:
        sql = extract_sql(s.text)
        key = one_line(sql).rstrip(";").strip().lower()
        if s.finished and sql and key not in kept and reward(db, gold, sql) == 1.0:
            kept[key] = (one_line(sql), s.logprob)
    return Outcome(q, greedy, bool(greedy) and reward(db, gold, greedy) == 1.0,
                   list(kept.values()), len(drawn), context.text)


def done_keys(out: Path) -> set[tuple[str, str, str]]:
    """The questions already in `out`; a torn last line (a kill mid-write) is cut off first."""
    if not out.exists():
        return set()
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        out.write_bytes(data[: data.rfind(b"\n") + 1])
    keys = set()
    for line in out.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            keys.add((row["db_id"], row["question"], row["gold"]))
    return keys


def heldout_dbs() -> set[str]:
    if not HELDOUT_FILE.exists():
        return set()
    return {json.loads(line)["db_id"] for line in HELDOUT_FILE.read_text().splitlines() if line}


@dataclass
class SampleReport:
    questions: int = 0  # sampled by this run
    skipped_done: int = 0  # already in the output
    skipped_heldout: int = 0
    skipped_missing: int = 0  # their database file is not under --db-root
    gold_failed: int = 0
    greedy_correct: int = 0
    with_kept: int = 0  # questions with at least one answer kept
    kept: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        n = self.questions or 1
        rate = self.questions / (self.seconds / 60) if self.seconds else 0.0
        return (f"{self.questions} questions ({rate:.1f}/min): greedy right {self.greedy_correct}"
                f", some answer kept {self.with_kept}, {self.kept} kept ({self.kept / n:.2f} a "
                f"question); skipped {self.skipped_done} already done, {self.skipped_heldout} "
                f"held out, {self.skipped_missing} whose database is missing, "
                f"{self.gold_failed} whose gold failed")


def select(questions: list[Question], db_root: Path, start: int = 0, limit: int = 0,
           report: SampleReport | None = None) -> list[Question]:
    """questions[start:start+limit] whose database is not held out and whose file is under
    `db_root` (Spider's training set names two databases its copy here leaves out, as
    `prepare-spider` does: skipped and counted, not a failure an hour into a run)."""
    report = report if report is not None else SampleReport()
    heldout = heldout_dbs()
    chosen = questions[start: start + limit if limit else None]
    report.skipped_heldout += sum(q.db_id in heldout for q in chosen)
    chosen = [q for q in chosen if q.db_id not in heldout]
    present = {db for db in {q.db_id for q in chosen} if spider_db_path(db_root, db).is_file()}
    report.skipped_missing += sum(q.db_id not in present for q in chosen)
    return [q for q in chosen if q.db_id in present]


def pending(questions: list[Question], out: Path, db_root: Path, start: int = 0, limit: int = 0,
            report: SampleReport | None = None) -> list[Question]:
    """`select`'s questions not already in `out`."""
    report = report if report is not None else SampleReport()
    done = done_keys(out)
    chosen = select(questions, db_root, start, limit, report)
    report.skipped_done += sum(q.key in done for q in chosen)
    return [q for q in chosen if q.key not in done]


def sample_file(engine: TextEngine, todo: list[Question], db_root: Path, out: Path,
                k: int = K, temperature: float = TEMPERATURE,
                max_new_tokens: int = MAX_NEW_TOKENS, seed: int = 0,
                report: SampleReport | None = None,
                on_question: Callable[[Outcome | None], None] | None = None) -> SampleReport:
    """Draw for each of `todo` and append its rows to `out` as it is done (one write a
    question, flushed: a kill loses at most the question under way)."""
    report = report if report is not None else SampleReport()
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    dbs: dict[str, Database] = {}
    try:
        with out.open("a", encoding="utf-8") as f:
            for q in todo:
                if q.db_id not in dbs:
                    dbs[q.db_id] = Database.open(spider_db_path(db_root, q.db_id))
                try:
                    outcome = draw(engine, dbs[q.db_id], q, k, temperature, max_new_tokens, seed)
                except GoldError as e:
                    report.gold_failed += 1
                    report.failures.append(f"{q.db_id}: {q.question}: {e}")
                    if on_question:
                        on_question(None)
                    continue
                f.write("".join(json.dumps(r) + "\n" for r in outcome.rows()))
                f.flush()
                report.questions += 1
                report.greedy_correct += outcome.greedy_correct
                report.with_kept += bool(outcome.kept)
                report.kept += len(outcome.kept)
                report.seconds = time.perf_counter() - started
                if on_question:
                    on_question(outcome)
    finally:
        for db in dbs.values():
            db.close()
    return report


# --- mixing into training ------------------------------------------------------------------


def read_kept(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a `finetune sample` file; DataError naming the first bad line."""
    if (problem := file_problem(path)) is not None:
        raise DataError(f"{path}: {problem}")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if all(isinstance(row[k], str) for k in ("question", "db_id", "gold", "context")):
                    yield row
                    continue
            except (ValueError, KeyError, TypeError):
                pass
            raise DataError(f"{path}:{n}: not a row of `finetune sample` (question, db_id, "
                            "gold, sql, context, greedy_correct)")


def mix_kept(gold: list[Example], kept: Path, weight: int = 2) -> list[Example]:
    """The gold examples, then from `kept` (a `finetune sample` file), a question at a time:

    greedy answer wrong: its kept answers and its gold, each `weight` times (the gold then
      with the context the question was asked with, which the gold rows may not have);
    greedy answer right: its first kept answer, once (the model has that one already).

    Answers that are the gold's text are not added again. Order: as in the file (training
    shuffles)."""
    if weight < 1:
        raise ValueError(f"kept weight must be at least 1, not {weight}")
    out = list(gold)
    by_question: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in read_kept(kept):
        by_question.setdefault((row["db_id"], row["question"], row["gold"]), []).append(row)
    for rows in by_question.values():
        first = rows[0]
        gold_text = one_line(first["gold"]).lower()
        answers = [r["sql"] for r in rows
                   if r["sql"] and one_line(r["sql"]).lower() != gold_text]
        if first["greedy_correct"]:
            answers, times = answers[:1], 1
        else:
            answers, times = [*answers, first["gold"]], weight
        for sql in answers:
            out.extend([Example(first["question"], first["context"], sql, first["db_id"])] * times)
    return out
