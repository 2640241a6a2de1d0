"""What each rule of the pipeline is worth: an eval set with one rule switched off, against a
run with everything on.

    .venv/bin/python bench/rules.py ON.json DATA.jsonl [--db-root DIR] --off RULE [--both]
                                    [--json OUT]

ON.json is `gemma-sql eval DATA.jsonl --json` with every rule on (the shipped pipeline). Only the
questions the rule can touch are asked again, with the rule off; the others would get the same
answer (the pipeline is deterministic: greedy decoding, seeded samples):

    mend    joins mended to the foreign keys (`model.llm.sql.joins`): every question (a mended
            candidate may have been voted for)
    values  values the question names linked to their columns (`model.llm.prompting.values`): the
            questions where some were found
    vote    answers drawn and run to choose by agreement (`--no-check-runs`): every question

A rule is switched off through the pipeline's `Settings`. Prints one line
per rule: questions asked again, right with the rule on and off, gained and lost, top-3.
`--both` asks those questions with the rule on as well, back to back: the answers drawn within
the pipeline's time budget then see the same machine load on and off.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from finetune.eval import evaluate, read_items  # noqa: E402
from model.llm.decoding.loading import load_engine  # noqa: E402
from model.llm.pipeline.settings import EVAL, Settings  # noqa: E402
from model.llm.weights.registry import DEFAULT_MODEL  # noqa: E402

RULES = ("mend", "values", "vote")


def switched_off(rule: str) -> Settings:
    """`eval`'s settings with `rule` off."""
    field = {"mend": "mend_joins", "values": "link_values", "vote": "check_runs"}[rule]
    return replace(EVAL, **{field: False})


def touched(rule: str, record: dict[str, Any]) -> bool:
    """Whether the rule can change this question's answer."""
    if rule == "values":
        return bool(record["linked"])
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("on", type=Path, help="eval --json report with every rule on")
    parser.add_argument("data", type=Path)
    parser.add_argument("--db-root", type=Path, default=None)
    parser.add_argument("--off", choices=RULES, required=True)
    parser.add_argument("--json", type=Path, default=None, help="write the off run's report")
    parser.add_argument("--both", action="store_true", help="ask with the rule on too")
    args = parser.parse_args()
    on = json.loads(args.on.read_text())["records"]
    items = list(read_items(args.data, args.db_root))
    by_question = {(i.question, str(i.db)): i for i in items}
    subset = []
    for record in on:
        if touched(args.off, record):
            subset.append((record, by_question[(record["question"], record["db"])]))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "subset.jsonl"
        data.write_text("".join(json.dumps({"question": i.question, "sql": i.sql,
                                            "db": str(i.db.resolve())}) + "\n"
                                for _, i in subset))
        engine = load_engine(DEFAULT_MODEL)
        before = [r for r, _ in subset]
        if args.both:
            before = [vars(r) for r in evaluate(data, engine, model_name=DEFAULT_MODEL).records]
        report = evaluate(data, engine, model_name=DEFAULT_MODEL,
                          settings=switched_off(args.off))
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=1))
    after = report.records
    gained = sum(not b["correct"] and a.correct for b, a in zip(before, after, strict=True))
    lost = sum(b["correct"] and not a.correct for b, a in zip(before, after, strict=True))
    print(f"{args.off}: {len(subset)} of {len(on)} questions asked again; right with it on "
          f"{sum(b['correct'] for b in before)}, off {sum(a.correct for a in after)} "
          f"(off gains {gained}, loses {lost}); top-3 on {sum(b['top3'] for b in before)}, "
          f"off {sum(a.top3 for a in after)}")


if __name__ == "__main__":
    main()
