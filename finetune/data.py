"""Training data: load text-to-SQL rows, render them in THE prompt format, tokenize, batch.

Sources: the hub data set `gretelai/synthetic_text_to_sql` (columns sql_prompt, sql_context,
sql), or a local .jsonl/.json/.parquet file with those columns or question/context/sql.
Every example goes through `prompting.prompt.training_text`, the function inference uses, so the
model is trained on exactly the text it is later asked. Loss is on the answer only: the
labels are -100 over the prompt.

`prepare_spider` turns Spider's training questions into a train file whose contexts are
rendered from the live database files as `ask` renders them (`training_context`: the values the
question names linked, its likeliest tables first), holding out whole databases as the eval
split.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from model.llm.prompting.context import (
    CONTEXT_BUDGET_TOKENS,
    Context,
    context_for,
    question_contexts,
)
from model.llm.prompting.prompt import QUESTION_FIRST, training_text
from model.sqlite.files import file_problem

if TYPE_CHECKING:
    from model.sqlite.db import Database

GRETEL = "gretelai/synthetic_text_to_sql"
IGNORE = -100  # label of positions that carry no loss (PyTorch cross_entropy's ignore_index)

# Column names of each accepted layout, mapped to ours.
_LAYOUTS = (
    {"question": "question", "context": "context", "sql": "sql"},
    {"sql_prompt": "question", "sql_context": "context", "sql": "sql"},
)


class DataError(Exception):
    """A data source that cannot be read, said in one line."""


class Tokenizer(Protocol):
    def __call__(self, text: str, add_special_tokens: bool = ...) -> Any: ...


@dataclass
class Example:
    question: str
    context: str
    sql: str
    db_id: str | None = None


@dataclass
class Tokenized:
    input_ids: list[int]
    labels: list[int]  # IGNORE on the prompt, the token itself on the answer
    prompt: str = ""  # the prompt's text: its words widen the answer vocabulary (train.py)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class LoadReport:
    """What happened to each row: kept, or skipped and why (counted, never a crash)."""

    read: int = 0
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    added: int = 0  # examples from the model's own right answers (--kept)

    def line(self) -> str:
        why = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
        if self.added:
            head = (f"{self.kept} of {self.read + self.added} examples kept ({self.read} rows, "
                    f"{self.added} from --kept)")
        else:
            head = f"{self.kept} of {self.read} rows kept"
        return head + (f" (skipped: {why})" if why else "")


# --- reading -------------------------------------------------------------------------------


def read_rows(source: str | Path, split: str = "train") -> Iterator[dict[str, Any]]:
    """Raw rows from a local .jsonl/.json/.parquet file, or a hub data set id."""
    path = Path(source).expanduser()
    if path.exists():
        if (problem := file_problem(path)) is not None:  # a FIFO would block the run forever
            raise DataError(f"{source}: {problem}")
        yield from _read_local(path)
        return
    if str(source).endswith((".jsonl", ".json", ".parquet")) or str(source).startswith(
        (".", "/", "~")
    ):
        raise DataError(f"{source}: no such file")
    yield from _read_hub(str(source), split)


def _read_local(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    elif path.suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as f:
            if path.suffix == ".json" and f.read(1) == "[":
                f.seek(0)
                yield from json.load(f)
                return
            f.seek(0)
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        yield {"__bad__": f"line {n} is not JSON"}
    else:
        raise DataError(f"{path}: expected a .jsonl, .json or .parquet file")


def _read_hub(repo_id: str, split: str) -> Iterator[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(repo_id, split=split)
    except Exception as e:  # datasets raises many types when offline; all mean the same here
        if _looks_offline(e):
            raise DataError(
                f"{repo_id}: cannot reach the Hugging Face hub and the data set is not cached;"
                " pass a local .jsonl or .parquet file instead"
            ) from None
        raise DataError(f"{repo_id}: {type(e).__name__}: {e}") from None
    yield from ds


def _looks_offline(e: Exception) -> bool:
    text = f"{type(e).__name__} {e}".lower()
    return any(
        word in text
        for word in ("connection", "offline", "resolve", "timed out", "couldn't reach",
                     "network", "max retries", "not find", "doesn't exist", "cannot find")
    )


def to_example(row: Any) -> Example | str:
    """The row as an Example, or the reason it is unusable."""
    if not isinstance(row, dict):  # a JSON line holding a number, a string, a list
        return "not a JSON object"
    if "__bad__" in row:
        return "not JSON"
    for layout in _LAYOUTS:
        if all(k in row for k in layout):
            values = {ours: row[theirs] for theirs, ours in layout.items()}
            break
    else:
        return "missing columns"
    if not all(isinstance(v, str) and v.strip() for v in values.values()):
        return "empty field"
    db_id = row.get("db_id")
    return Example(values["question"], values["context"], values["sql"],
                   db_id if isinstance(db_id, str) else None)


def load_examples(source: str | Path, split: str = "train") -> tuple[list[Example], LoadReport]:
    report = LoadReport()
    out = []
    for row in read_rows(source, split):
        report.read += 1
        ex = to_example(row)
        if isinstance(ex, str):
            report.skipped[ex] += 1
        else:
            out.append(ex)
    report.kept = len(out)
    return out, report


# --- tokenizing ----------------------------------------------------------------------------


def tokenize(tokenizer: Tokenizer, ex: Example, layout: str = QUESTION_FIRST) -> Tokenized:
    """Prompt (with BOS, as inference tokenizes it) then answer; loss on the answer only.

    The two halves are tokenized separately: the answer starts with a space (" SELECT") so
    the boundary is a token boundary either way, and the labels line up exactly.
    """
    prompt, answer = training_text(ex.question, ex.context, ex.sql, layout)
    p = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    a = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    return Tokenized(p + a, [IGNORE] * len(p) + a, prompt)


def tokenize_all(
    tokenizer: Tokenizer, examples: Iterable[Example], max_length: int, report: LoadReport,
    layout: str = QUESTION_FIRST,
) -> list[Tokenized]:
    """Tokenized examples; those over `max_length` are skipped (never cut: that would cut the
    answer) and counted in `report`."""
    out = []
    for ex in examples:
        t = tokenize(tokenizer, ex, layout)
        if len(t) > max_length:
            report.skipped[f"over {max_length} tokens"] += 1
            continue
        out.append(t)
    report.kept = len(out)
    return out


def data_hash(examples: Iterable[Example]) -> str:
    """A short sha256 of the examples' text, for the model card and metrics."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.question, ex.context, ex.sql]).encode())
    return h.hexdigest()[:16]


# --- batching ------------------------------------------------------------------------------


def length_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Batches of similar length (little padding), in a shuffled order fixed by seed+epoch.

    Sorting by length groups neighbours; shuffling the batches (not the examples) keeps the
    order random across lengths. Ties are broken by a seeded shuffle first, so same-length
    examples do not always share a batch.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    order.sort(key=lambda i: lengths[i])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(items: list[Tokenized], pad_id: int, multiple: int = 1) -> dict[str, Any]:
    """Right-padded input_ids, attention_mask, labels as tensors, `multiple` wide a step.

    Padding to a few widths bounds the distinct shapes a run computes with: CPU kernels keep
    state a shape (oneDNN's primitive cache, the allocator's blocks), and a width a batch grew
    the process without end (docs/training.md).
    """
    import torch

    width = -(-max(len(t) for t in items) // multiple) * multiple
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, t in enumerate(items):
        n = len(t)
        ids[row, :n] = torch.tensor(t.input_ids)
        labels[row, :n] = torch.tensor(t.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# --- Spider --------------------------------------------------------------------------------

HELDOUT_FILE = Path(__file__).parent / "data" / "spider_heldout.jsonl"


@dataclass
class SpiderSplit:
    train: int
    eval: int
    heldout_dbs: list[str]
    skipped: Counter[str]

    def line(self) -> str:
        why = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
        return (
            f"{self.train} train and {self.eval} eval examples; "
            f"{len(self.heldout_dbs)} databases held out; skipped: {why or 'none'}"
        )


def spider_db_path(db_root: Path, db_id: str) -> Path:
    return db_root / db_id / f"{db_id}.sqlite"


def choose_heldout(db_ids: Iterable[str], n: int, seed: int) -> list[str]:
    """`n` whole databases for the eval split, fixed by `seed` (sorted first: deterministic)."""
    pool = sorted(set(db_ids))
    return sorted(random.Random(seed).sample(pool, min(n, len(pool))))


def training_context(db: Database, question: str, sql: str,
                     budget_tokens: int = CONTEXT_BUDGET_TOKENS) -> Context:
    """The context the app answers `question` from: its likeliest tables first, as `ask` sends
    them; every table that fits when those lack one the gold SQL reads, as `ask` widens when
    the first answer fails (a context without the answer's table would teach guessing)."""
    contexts = question_contexts(db, question)
    focus = contexts.focus
    if focus is not None and gold_tables(sql) <= {t.lower() for t in focus.tables}:
        return focus
    if budget_tokens == CONTEXT_BUDGET_TOKENS:
        return contexts.whole
    return context_for(db.conn, db.schema(), question, budget_tokens, contexts.ranking)


def gold_tables(sql: str) -> set[str]:
    """The tables `sql` reads, lower-cased (its CTEs' names left out)."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except sqlglot.errors.ParseError:
        return {"?"}  # not read: no focused context can be shown to hold it
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    return {t.name.lower() for t in tree.find_all(exp.Table)} - ctes


def prepare_spider(
    source: Path,
    db_root: Path,
    train_out: Path = Path("runs/spider/train.jsonl"),
    eval_out: Path = HELDOUT_FILE,
    n_heldout: int = 20,
    seed: int = 0,
    budget_tokens: int = CONTEXT_BUDGET_TOKENS,
) -> SpiderSplit:
    """Write train.jsonl (question, context, sql, db_id) and eval.jsonl (question, sql, db_id).

    Contexts come from the live database, as `ask` renders them (`training_context`).
    Rows whose database file is missing or whose gold SQL does not execute are skipped.
    """
    from model.sqlite.db import Database

    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line]
    present = {r["db_id"] for r in rows if spider_db_path(db_root, r["db_id"]).exists()}
    heldout = set(choose_heldout(present, n_heldout, seed))
    skipped: Counter[str] = Counter()
    dbs: dict[str, Database] = {}
    train_out.parent.mkdir(parents=True, exist_ok=True)
    eval_out.parent.mkdir(parents=True, exist_ok=True)
    n_train = n_eval = 0
    with train_out.open("w", encoding="utf-8") as tr, eval_out.open("w", encoding="utf-8") as ev:
        for r in rows:
            db_id = r["db_id"]
            if db_id not in present:
                skipped["database file missing"] += 1
                continue
            if r.get("gold_executes") is False:
                skipped["gold does not execute"] += 1
                continue
            if db_id in heldout:
                ev.write(json.dumps({"question": r["question"], "sql": r["sql"],
                                     "db_id": db_id}) + "\n")
                n_eval += 1
                continue
            if db_id not in dbs:
                dbs[db_id] = Database.open(spider_db_path(db_root, db_id))
            ctx = training_context(dbs[db_id], r["question"], r["sql"], budget_tokens)
            tr.write(json.dumps({"question": r["question"], "context": ctx.text,
                                 "sql": r["sql"], "db_id": db_id}) + "\n")
            n_train += 1
    for db in dbs.values():
        db.close()
    return SpiderSplit(n_train, n_eval, sorted(heldout), skipped)
